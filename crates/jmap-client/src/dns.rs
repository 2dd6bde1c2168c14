//! A minimal DNS SRV client (one UDP query per server) for `_jmap._tcp` discovery
//! (RFC 8620 §2.2), so discovery needs no resolver dependency. Failures simply yield no
//! targets; discovery then falls back to `https://host/.well-known/jmap`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// One SRV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvTarget {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    pub(crate) host: String,
}

const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// Name servers from `/etc/resolv.conf`.
pub(crate) fn system_nameservers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|s| parse_resolv_conf(&s))
        .unwrap_or_default()
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("nameserver"))
                .then(|| it.next())
                .flatten()
        })
        // Strip an IPv6 zone id; we cannot use it for a plain UDP socket address anyway.
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Looks up SRV records, trying each server in turn; results are sorted by priority, then
/// by descending weight. A target of `.` ("service not available") yields nothing.
pub(crate) async fn lookup_srv(
    name: &str,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Vec<SrvTarget> {
    for server in servers {
        match tokio::time::timeout(timeout, query(name, *server)).await {
            Ok(Some(mut targets)) => {
                targets.retain(|t| !t.host.is_empty() && t.host != ".");
                targets.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
                return targets;
            }
            Ok(None) => continue,
            Err(_) => {
                tracing::debug!(%server, "DNS SRV query timed out");
                continue;
            }
        }
    }
    Vec::new()
}

async fn query(name: &str, server: SocketAddr) -> Option<Vec<SrvTarget>> {
    let id: u16 = rand::random();
    let packet = build_query(id, name)?;
    let bind: SocketAddr = match server.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(bind).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(&packet).await.ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Ignore stray datagrams with another id (spoofing or late answers).
        if let Some(answer) = buf.get(..n)
            && let Some(result) = parse_response(id, answer)
        {
            return Some(result);
        }
    }
}

pub(crate) fn build_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut p = Vec::with_capacity(name.len() + 18);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // RD
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT=1
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        p.push(len);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&TYPE_SRV.to_be_bytes());
    p.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(p)
}

fn u16_at(buf: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(pos)?, *buf.get(pos + 1)?]))
}

/// Reads a possibly compressed name; returns it and the position after it.
fn read_name(buf: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *buf.get(pos)?;
        match len {
            0 => {
                end.get_or_insert(pos + 1);
                break;
            }
            l if l & 0xC0 == 0xC0 => {
                let target = usize::from(u16_at(buf, pos)? & 0x3FFF);
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 16 {
                    return None;
                }
                pos = target;
            }
            l if l & 0xC0 == 0 => {
                let l = usize::from(l);
                let bytes = buf.get(pos + 1..pos + 1 + l)?;
                labels.push(String::from_utf8_lossy(bytes).into_owned());
                pos += 1 + l;
            }
            _ => return None,
        }
    }
    Some((labels.join("."), end?))
}

pub(crate) fn parse_response(id: u16, buf: &[u8]) -> Option<Vec<SrvTarget>> {
    if u16_at(buf, 0)? != id {
        return None;
    }
    let flags = u16_at(buf, 2)?;
    if flags & 0x8000 == 0 {
        return None; // not a response
    }
    let rcode = flags & 0x000F;
    if rcode != 0 {
        // NXDOMAIN and friends: a valid answer with no targets.
        return Some(Vec::new());
    }
    let qdcount = u16_at(buf, 4)?;
    let ancount = u16_at(buf, 6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        let (_, next) = read_name(buf, pos)?;
        pos = next + 4;
    }
    let mut out = Vec::new();
    for _ in 0..ancount {
        let (_, next) = read_name(buf, pos)?;
        let rtype = u16_at(buf, next)?;
        let rdlen = usize::from(u16_at(buf, next + 8)?);
        let rdata = next + 10;
        if rtype == TYPE_SRV && rdlen >= 7 {
            let (host, _) = read_name(buf, rdata + 6)?;
            out.push(SrvTarget {
                priority: u16_at(buf, rdata)?,
                weight: u16_at(buf, rdata + 2)?,
                port: u16_at(buf, rdata + 4)?,
                host,
            });
        }
        pos = rdata + rdlen;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an answer the way a real server does (question echoed, answer names compressed).
    pub(crate) fn answer(id: u16, name: &str, records: &[(u16, u16, u16, &str)]) -> Vec<u8> {
        let mut p = build_query(id, name).unwrap();
        p[2] = 0x81;
        p[3] = 0x80;
        p[7] = u8::try_from(records.len()).unwrap();
        for (prio, weight, port, target) in records {
            p.extend_from_slice(&[0xC0, 12]); // pointer to the question name
            p.extend_from_slice(&TYPE_SRV.to_be_bytes());
            p.extend_from_slice(&CLASS_IN.to_be_bytes());
            p.extend_from_slice(&300u32.to_be_bytes());
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&prio.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            for label in target.split('.') {
                rdata.push(u8::try_from(label.len()).unwrap());
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            p.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
            p.extend_from_slice(&rdata);
        }
        p
    }

    #[test]
    fn parses_srv_answers_and_rejects_garbage() {
        let a = answer(
            7,
            "_jmap._tcp.example.org",
            &[
                (10, 5, 443, "jmap.example.org"),
                (0, 1, 8443, "a.example.org"),
            ],
        );
        let r = parse_response(7, &a).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            SrvTarget {
                priority: 10,
                weight: 5,
                port: 443,
                host: "jmap.example.org".into()
            }
        );
        assert_eq!(parse_response(8, &a), None);
        for cut in 0..a.len() {
            // Every truncation cuts into the last record: no panic, and no partial answer.
            assert_eq!(parse_response(7, &a[..cut]), None, "truncated at {cut}");
        }
        // a compression loop: the last target's final label becomes a pointer to itself
        let mut looped = a.clone();
        let at = looped.len() - 5; // the length byte of "org" in "a.example.org"
        assert_eq!(looped.get(at..), Some(&b"\x03org\x00"[..]));
        let [hi, lo] = u16::try_from(at).unwrap().to_be_bytes();
        looped[at] = 0xC0 | hi;
        looped[at + 1] = lo;
        assert_eq!(parse_response(7, &looped), None);
        assert!(build_query(1, &"x".repeat(64)).is_none());
        assert_eq!(
            parse_resolv_conf("# c\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch x\n")
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn lookup_against_a_local_udp_server() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            assert!(buf[..n].windows(5).any(|w| w == b"_jmap"));
            let reply = answer(
                id,
                "_jmap._tcp.example.org",
                &[(1, 1, 8443, "jmap.example.org")],
            );
            server.send_to(&reply, peer).await.unwrap();
        });
        let r = lookup_srv("_jmap._tcp.example.org", &[addr], Duration::from_secs(5)).await;
        task.await.unwrap();
        assert_eq!(
            r,
            vec![SrvTarget {
                priority: 1,
                weight: 1,
                port: 8443,
                host: "jmap.example.org".into()
            }]
        );
    }
}
