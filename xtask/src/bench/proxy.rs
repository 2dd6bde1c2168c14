//! A counting TCP proxy in front of Dovecot: every line a client sends is recorded, so the
//! commands and round trips of a sync can be counted exactly without server-side logging.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Result;

/// What the clients sent through the proxy.
#[derive(Debug, Default)]
pub struct Log {
    /// Client lines (first 100 bytes each, credentials redacted), in order, all connections
    /// interleaved.
    pub lines: Vec<String>,
    /// Round trips: client sends separated by server data (a pipelined burst counts once).
    pub round_trips: u64,
    /// Connections accepted.
    pub connections: u64,
}

/// A running proxy; lives until the process ends.
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
}

impl Proxy {
    pub fn start(upstream: (String, u16)) -> Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let log = Arc::new(Mutex::new(Log::default()));
        let lg = log.clone();
        thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    continue;
                };
                if let Ok(mut g) = lg.lock() {
                    g.connections += 1;
                }
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                // server chunks forwarded so far: a client line sent after new server data
                // starts a new round trip
                let chunks = Arc::new(AtomicU64::new(0));
                let ch = chunks.clone();
                thread::spawn(move || {
                    let mut from = server;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || c2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        ch.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = c2.shutdown(Shutdown::Both);
                });
                let lg = lg.clone();
                thread::spawn(move || {
                    let mut r = BufReader::new(client);
                    let mut line = Vec::new();
                    let mut seen = u64::MAX;
                    loop {
                        line.clear();
                        match r.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let now = chunks.load(Ordering::SeqCst);
                        if let Ok(mut g) = lg.lock() {
                            if now != seen {
                                g.round_trips += 1;
                                seen = now;
                            }
                            g.lines.push(redact(&line));
                        }
                        if s2.write_all(&line).is_err() {
                            break;
                        }
                    }
                    let _ = s2.shutdown(Shutdown::Both);
                });
            }
        });
        Ok(Proxy { port, log })
    }

    /// Empties the log and returns what it held.
    pub fn take(&self) -> Log {
        self.log
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }
}

/// The first 100 bytes of a client line, with credentials replaced: LOGIN and AUTHENTICATE
/// arguments, and any line that is not `tag COMMAND` (SASL continuations, literals).
fn redact(line: &[u8]) -> String {
    let n = line.len().min(100);
    let text = String::from_utf8_lossy(&line[..n]).into_owned();
    let mut words = text.split_whitespace();
    let (tag, cmd) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let cmd_like = !cmd.is_empty() && cmd.chars().all(|c| c.is_ascii_alphabetic());
    if !cmd_like {
        "<continuation or literal, not shown>".into()
    } else if cmd.eq_ignore_ascii_case("LOGIN") || cmd.eq_ignore_ascii_case("AUTHENTICATE") {
        format!("{tag} {cmd} ***")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_never_reach_the_log() {
        assert_eq!(redact(b"M1 LOGIN bob secret\r\n"), "M1 LOGIN ***");
        assert_eq!(
            redact(b"M1 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n"),
            "M1 AUTHENTICATE ***"
        );
        assert_eq!(
            redact(b"AGJvYgBzZWNyZXQ=\r\n"),
            "<continuation or literal, not shown>"
        );
        assert_eq!(
            redact(b"M5 UID STORE 1:9 +FLAGS (\\Seen)\r\n"),
            "M5 UID STORE 1:9 +FLAGS (\\Seen)\r\n"
        );
    }
}
