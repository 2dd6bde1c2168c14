//! A bare-bones blocking IMAP client over plain TCP (loopback test servers only): enough to
//! log in, run commands, read literals, count messages, and bulk-append with MULTIAPPEND.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::Error;

/// One response to a tagged command.
#[derive(Clone, Debug)]
pub struct Response {
    /// Untagged (`* ...`) and continuation lines, with literals inlined, without CRLF.
    pub untagged: Vec<Vec<u8>>,
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The tagged line after the status (response code and text).
    pub text: String,
}

impl Response {
    /// Untagged lines as (lossy) text.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.untagged
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
    }
}

/// A plain-TCP IMAP connection with its own tag counter.
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    next_tag: u32,
    peer: String,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Quotes a mailbox name as an IMAP quoted string, modified-UTF-7 encoding non-ASCII.
pub fn quote_mailbox(name: &str) -> String {
    quote(&mutf7(name))
}

/// An IMAP quoted string (escapes `"` and `\`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 3501 modified UTF-7 (mailbox names).
pub fn mutf7(name: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for k in 0..chars {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

impl ImapClient {
    /// Connects (5 s connect timeout, 120 s I/O timeouts) and reads the `* OK` greeting.
    pub fn connect(host: &str, port: u16) -> Result<ImapClient, Error> {
        let peer = format!("{host}:{port}");
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(Error::io(format!("resolving {peer}")))?
            .next()
            .ok_or_else(|| Error::Protocol {
                expected: format!("an address for {peer}"),
                got: String::new(),
            })?;
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(Error::io(
                format!("connecting to {peer} (are the test servers up? `cargo xtask servers up`)"),
            ))?;
        let io = |e| Error::io(format!("configuring {peer}"))(e);
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(120)))
            .map_err(Error::io(format!("configuring {peer}")))?;
        stream
            .set_nodelay(true)
            .map_err(Error::io(format!("configuring {peer}")))?;
        let writer = BufWriter::with_capacity(
            256 * 1024,
            stream
                .try_clone()
                .map_err(Error::io(format!("cloning {peer}")))?,
        );
        let mut client = ImapClient {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            next_tag: 1,
            peer,
        };
        let greeting = client.read_response_line()?;
        if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
            return Err(Error::Protocol {
                expected: format!("an IMAP greeting from {}", client.peer),
                got: String::from_utf8_lossy(&greeting).into_owned(),
            });
        }
        Ok(client)
    }

    /// Connects and logs in.
    pub fn login(host: &str, port: u16, user: &str, password: &str) -> Result<ImapClient, Error> {
        let mut c = ImapClient::connect(host, port)?;
        let tag = c.tag();
        let line = format!("{tag} LOGIN {} {}\r\n", quote(user), quote(password));
        c.send(line.as_bytes())?;
        c.finish(&tag, &format!("LOGIN {user} ***"))?;
        Ok(c)
    }

    fn tag(&mut self) -> String {
        let t = format!("T{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let io = Error::io(format!("writing to {}", self.peer));
        self.writer.write_all(bytes).map_err(io)?;
        self.writer
            .flush()
            .map_err(Error::io(format!("writing to {}", self.peer)))
    }

    /// Reads one response line with any literals inlined (CRLF stripped).
    fn read_response_line(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .map_err(Error::io(format!("reading from {}", self.peer)))?;
            if n == 0 {
                return Err(Error::Protocol {
                    expected: format!("a response line from {}", self.peer),
                    got: format!(
                        "connection closed after {:?}",
                        String::from_utf8_lossy(&out)
                    ),
                });
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            let literal = literal_len(&line);
            out.extend_from_slice(&line);
            match literal {
                Some(len) => {
                    out.extend_from_slice(b"\r\n");
                    let start = out.len();
                    out.resize(start + len, 0);
                    self.reader
                        .read_exact(&mut out[start..])
                        .map_err(Error::io(format!("reading a literal from {}", self.peer)))?;
                }
                None => return Ok(out),
            }
        }
    }

    /// Reads until the tagged response of `tag`; returns it whatever its status.
    fn collect(&mut self, tag: &str) -> Result<Response, Error> {
        let mut untagged = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let line = self.read_response_line()?;
            if let Some(rest) = line.strip_prefix(prefix.as_bytes()) {
                let rest = String::from_utf8_lossy(rest).into_owned();
                let (status, text) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                return Ok(Response {
                    untagged,
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                });
            }
            if line.starts_with(b"* BYE") {
                untagged.push(line.clone());
                // The server closes after BYE; the tagged line may still come (LOGOUT).
                continue;
            }
            untagged.push(line);
        }
    }

    fn finish(&mut self, tag: &str, command: &str) -> Result<Response, Error> {
        let r = self.collect(tag)?;
        if r.status == "OK" {
            Ok(r)
        } else {
            Err(Error::Imap {
                command: command.to_string(),
                response: format!("{} {}", r.status, r.text),
            })
        }
    }

    /// Runs one command line (without tag and CRLF); NO/BAD become [`Error::Imap`].
    pub fn command(&mut self, command: &str) -> Result<Response, Error> {
        let r = self.command_any(command)?;
        if r.status == "OK" {
            Ok(r)
        } else {
            Err(Error::Imap {
                command: command.to_string(),
                response: format!("{} {}", r.status, r.text),
            })
        }
    }

    /// Runs one command line and returns the response whatever its status.
    pub fn command_any(&mut self, command: &str) -> Result<Response, Error> {
        let tag = self.tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        self.collect(&tag)
    }

    /// The post-login CAPABILITY list (upper-cased atoms).
    pub fn capabilities(&mut self) -> Result<Vec<String>, Error> {
        let r = self.command("CAPABILITY")?;
        Ok(r.lines()
            .filter_map(|l| l.strip_prefix("* CAPABILITY ").map(str::to_string))
            .flat_map(|l| {
                l.split_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Creates a mailbox; an existing one is fine.
    pub fn create_mailbox(&mut self, mailbox: &str) -> Result<(), Error> {
        if mailbox.eq_ignore_ascii_case("INBOX") {
            return Ok(());
        }
        let cmd = format!("CREATE {}", quote_mailbox(mailbox));
        let r = self.command_any(&cmd)?;
        let exists = r.text.to_ascii_lowercase();
        if r.status == "OK"
            || (r.status == "NO"
                && (exists.contains("alreadyexists") || exists.contains("already exists")))
        {
            Ok(())
        } else {
            Err(Error::Imap {
                command: cmd,
                response: format!("{} {}", r.status, r.text),
            })
        }
    }

    /// Deletes a mailbox.
    pub fn delete_mailbox(&mut self, mailbox: &str) -> Result<(), Error> {
        self.command(&format!("DELETE {}", quote_mailbox(mailbox)))
            .map(|_| ())
    }

    /// `STATUS mailbox (MESSAGES)`.
    pub fn message_count(&mut self, mailbox: &str) -> Result<u32, Error> {
        let cmd = format!("STATUS {} (MESSAGES)", quote_mailbox(mailbox));
        let r = self.command(&cmd)?;
        r.lines()
            .filter(|l| l.starts_with("* STATUS "))
            .find_map(|l| status_item(&l, "MESSAGES"))
            .ok_or_else(|| Error::Protocol {
                expected: format!("* STATUS ... MESSAGES n for {cmd}"),
                got: r.lines().collect::<Vec<_>>().join(" | "),
            })
    }

    /// SELECT; returns the EXISTS count.
    pub fn select(&mut self, mailbox: &str) -> Result<u32, Error> {
        let cmd = format!("SELECT {}", quote_mailbox(mailbox));
        let r = self.command(&cmd)?;
        let exists = r.lines().find_map(|l| {
            l.strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXISTS"))
                .and_then(|n| n.trim().parse().ok())
        });
        exists.ok_or_else(|| Error::Protocol {
            expected: format!("* n EXISTS after {cmd}"),
            got: r.text,
        })
    }

    /// Appends messages with MULTIAPPEND + LITERAL+, `chunk` messages (and at most ~32 MB) per
    /// APPEND command. Returns how many were appended. The mailbox must exist.
    pub fn append_bulk<I, M>(
        &mut self,
        mailbox: &str,
        messages: I,
        chunk: usize,
    ) -> Result<usize, Error>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<[u8]>,
    {
        const MAX_COMMAND_BYTES: usize = 32 * 1024 * 1024;
        let chunk = chunk.max(1);
        let quoted = quote_mailbox(mailbox);
        let mut total = 0;
        let mut iter = messages.into_iter().peekable();
        while iter.peek().is_some() {
            let tag = self.tag();
            let io = |peer: &str| Error::io(format!("sending APPEND to {peer}"));
            let peer = self.peer.clone();
            write!(self.writer, "{tag} APPEND {quoted}").map_err(|e| io(&peer)(e))?;
            let (mut n, mut bytes) = (0usize, 0usize);
            while n < chunk && bytes < MAX_COMMAND_BYTES {
                let Some(m) = iter.next() else { break };
                let m = m.as_ref();
                write!(self.writer, " () {{{}+}}\r\n", m.len()).map_err(|e| io(&peer)(e))?;
                self.writer.write_all(m).map_err(|e| io(&peer)(e))?;
                n += 1;
                bytes += m.len();
            }
            let sent = self
                .writer
                .write_all(b"\r\n")
                .and_then(|_| self.writer.flush());
            // Even if writing failed, the server may have said why before closing.
            let r = self.collect(&tag);
            sent.map_err(io(&peer))?;
            let r = r?;
            if r.status != "OK" {
                return Err(Error::Imap {
                    command: format!("APPEND {quoted} ({n} messages, after {total} appended)"),
                    response: format!("{} {}", r.status, r.text),
                });
            }
            total += n;
        }
        Ok(total)
    }

    /// LOGOUT (errors ignored: the server closes the connection).
    pub fn logout(mut self) {
        let tag = self.tag();
        let _ = self.send(format!("{tag} LOGOUT\r\n").as_bytes());
        let _ = self.collect(&tag);
    }
}

/// `{123}` or `{123+}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|b| *b == b'{')?;
    let digits = line.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The number after `item` in a STATUS line.
fn status_item(line: &str, item: &str) -> Option<u32> {
    let open = line.rfind('(')?;
    let mut words = line
        .get(open + 1..)?
        .trim_end_matches(')')
        .split_whitespace();
    while let Some(w) = words.next() {
        let v = words.next()?;
        if w.eq_ignore_ascii_case(item) {
            return v.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_matches_rfc3501_examples() {
        assert_eq!(mutf7("INBOX"), "INBOX");
        assert_eq!(
            mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mutf7("A&B"), "A&-B");
        assert_eq!(mutf7("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn literal_and_status_parsing() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"A APPEND x {7+}"), Some(7));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(
            status_item("* STATUS \"a b\" (MESSAGES 42 UIDNEXT 7)", "MESSAGES"),
            Some(42)
        );
        assert_eq!(status_item("* STATUS INBOX (UIDNEXT 7)", "MESSAGES"), None);
    }
}
