//! Fast bulk loaders: IMAP MULTIAPPEND (any server), LMTP (Cyrus) and direct Maildir writes
//! plus `doveadm index` (Dovecot).

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::imap::{ImapClient, mutf7};

/// Logs in to `host:port` over plain TCP, creates `mailbox` if missing and appends `messages`
/// with MULTIAPPEND + LITERAL+, `chunk` messages per APPEND command (500-1000 is fast).
/// Returns the number appended. A NO/BAD answer is an [`Error::Imap`] naming the server's text.
///
/// About 10,000 small messages per second into Dovecot on loopback.
pub fn imap_append_bulk<I, M>(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    mailbox: &str,
    messages: I,
    chunk: usize,
) -> Result<usize, Error>
where
    I: IntoIterator<Item = M>,
    M: AsRef<[u8]>,
{
    let mut c = ImapClient::login(host, port, user, password)?;
    let caps = c.capabilities()?;
    for needed in ["MULTIAPPEND", "LITERAL+"] {
        if !caps.iter().any(|c| c == needed) {
            return Err(Error::Protocol {
                expected: format!("{needed} in the CAPABILITY of {host}:{port}"),
                got: caps.join(" "),
            });
        }
    }
    c.create_mailbox(mailbox)?;
    let n = c.append_bulk(mailbox, messages, chunk)?;
    c.logout();
    Ok(n)
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Delivers each message to `rcpt` over one LMTP session. `addr` is `host:port` (Cyrus' lmtpd
/// on TCP runs with `-a`, preauthorized) or the path of a unix socket. Returns the count.
/// Cyrus autocreates a missing account on the first delivery; `rcpt` may be `user` or
/// `user@domain` (domains are ignored with `virtdomains: off`).
pub fn lmtp_deliver<I, M>(addr: &str, rcpt: &str, messages: I) -> Result<usize, Error>
where
    I: IntoIterator<Item = M>,
    M: AsRef<[u8]>,
{
    let conn = if addr.starts_with('/') {
        Conn::Unix(UnixStream::connect(addr).map_err(Error::io(format!("connecting to {addr}")))?)
    } else {
        Conn::Tcp(TcpStream::connect(addr).map_err(Error::io(format!(
            "connecting to {addr} (are the test servers up?)"
        )))?)
    };
    let timeout = Some(Duration::from_secs(60));
    let (reader, writer): (Box<dyn std::io::Read>, Box<dyn Write>) = match conn {
        Conn::Tcp(s) => {
            s.set_read_timeout(timeout)
                .map_err(Error::io("socket option"))?;
            let w = s.try_clone().map_err(Error::io("socket clone"))?;
            (Box::new(s), Box::new(w))
        }
        Conn::Unix(s) => {
            s.set_read_timeout(timeout)
                .map_err(Error::io("socket option"))?;
            let w = s.try_clone().map_err(Error::io("socket clone"))?;
            (Box::new(s), Box::new(w))
        }
    };
    let mut lmtp = Lmtp {
        reader: BufReader::new(reader),
        writer: BufWriter::with_capacity(256 * 1024, writer),
        peer: addr.to_string(),
    };
    lmtp.expect("greeting", "220")?;
    lmtp.send("LHLO testkit.localhost\r\n")?;
    lmtp.expect("LHLO", "250")?;
    let mut n = 0;
    for m in messages {
        let m = m.as_ref();
        lmtp.send("MAIL FROM:<testkit@example.test>\r\n")?;
        lmtp.expect("MAIL FROM", "250")?;
        lmtp.send(&format!("RCPT TO:<{rcpt}>\r\n"))?;
        lmtp.expect(&format!("RCPT TO:<{rcpt}>"), "250")?;
        lmtp.send("DATA\r\n")?;
        lmtp.expect("DATA", "354")?;
        lmtp.data(m)?;
        lmtp.expect(&format!("delivery of message {n} to {rcpt}"), "250")?;
        n += 1;
    }
    lmtp.send("QUIT\r\n")?;
    let _ = lmtp.read_reply();
    Ok(n)
}

struct Lmtp {
    reader: BufReader<Box<dyn std::io::Read>>,
    writer: BufWriter<Box<dyn Write>>,
    peer: String,
}

impl Lmtp {
    fn send(&mut self, line: &str) -> Result<(), Error> {
        self.writer
            .write_all(line.as_bytes())
            .and_then(|_| self.writer.flush())
            .map_err(Error::io(format!("writing to {}", self.peer)))
    }

    /// The message, dot-stuffed, CRLF-terminated, followed by `.`.
    fn data(&mut self, m: &[u8]) -> Result<(), Error> {
        let io = |peer: &str| Error::io(format!("writing DATA to {peer}"));
        let peer = self.peer.clone();
        for line in m.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                self.writer.write_all(b".").map_err(|e| io(&peer)(e))?;
            }
            self.writer.write_all(line).map_err(|e| io(&peer)(e))?;
        }
        if !m.ends_with(b"\n") {
            self.writer.write_all(b"\r\n").map_err(|e| io(&peer)(e))?;
        }
        self.writer.write_all(b".\r\n").map_err(|e| io(&peer)(e))?;
        self.writer.flush().map_err(|e| io(&peer)(e))
    }

    /// A full (possibly multi-line) reply.
    fn read_reply(&mut self) -> Result<String, Error> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(Error::io(format!("reading from {}", self.peer)))?;
            if n == 0 {
                return Err(Error::Protocol {
                    expected: format!("an LMTP reply from {}", self.peer),
                    got: format!("connection closed after {all:?}"),
                });
            }
            all.push_str(&line);
            // "250-..." continues, "250 ..." ends
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all.trim_end().to_string());
            }
        }
    }

    fn expect(&mut self, command: &str, code: &str) -> Result<(), Error> {
        let reply = self.read_reply()?;
        let last = reply.lines().last().unwrap_or_default();
        if last.starts_with(code) {
            Ok(())
        } else {
            Err(Error::Smtp {
                command: command.to_string(),
                response: reply,
            })
        }
    }
}

/// Writes messages straight into a Dovecot user's Maildir (`<mail_root>/<user>/Maildir`,
/// Maildir++ folders for other mailboxes), owned like `mail_root`, then runs
/// `doveadm -c <conf> index -u <user> <mailbox>` so the first SELECT is instant. UIDs follow
/// the iteration order. Needs root (or the mail uid). Returns the count.
pub fn maildir_populate<I, M>(
    dovecot_conf: &Path,
    mail_root: &Path,
    user: &str,
    mailbox: &str,
    messages: I,
) -> Result<usize, Error>
where
    I: IntoIterator<Item = M>,
    M: AsRef<[u8]>,
{
    let owner = fs::metadata(mail_root).map_err(Error::io(format!(
        "Dovecot mail root {}",
        mail_root.display()
    )))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let home = mail_root.join(user);
    let maildir = home.join("Maildir");
    let boxdir = if mailbox.eq_ignore_ascii_case("INBOX") {
        maildir.clone()
    } else {
        maildir.join(format!(".{}", mutf7(mailbox).replace('/', ".")))
    };
    let mut dirs = vec![home.clone(), maildir.clone(), boxdir.clone()];
    dirs.extend(["cur", "new", "tmp"].map(|s| boxdir.join(s)));
    for d in &dirs {
        fs::create_dir_all(d).map_err(Error::io(format!("creating {}", d.display())))?;
        std::os::unix::fs::chown(d, Some(uid), Some(gid))
            .map_err(Error::io(format!("chown {}", d.display())))?;
    }
    if boxdir != maildir {
        let f = boxdir.join("maildirfolder");
        fs::write(&f, b"").map_err(Error::io(format!("creating {}", f.display())))?;
    }
    // <secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>:2, -- Dovecot assigns UIDs to new files in
    // name order, so increasing stamps keep the iteration order; the host part is unique per
    // call so repeated calls never collide.
    let nonce = crate::unique_name("testkit");
    let mut count = 0usize;
    for (k, m) in messages.into_iter().enumerate() {
        let m = m.as_ref();
        let name = format!(
            "{}.M{k}P{}Q{k}.{nonce},S={}:2,",
            1_600_000_000 + k as u64,
            std::process::id(),
            m.len()
        );
        let path = boxdir.join("cur").join(name);
        fs::write(&path, m).map_err(Error::io(format!("writing {}", path.display())))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .map_err(Error::io(format!("chown {}", path.display())))?;
        count += 1;
    }
    crate::doveadm(dovecot_conf, &["index", "-u", user, mailbox])?;
    Ok(count)
}
