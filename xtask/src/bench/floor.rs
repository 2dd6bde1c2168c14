//! The raw protocol floor: one plain-TCP IMAP connection, LOGIN, SELECT, one command, the bytes
//! read and discarded (literals skipped by length), LOGOUT. Runs as its own process
//! (`cargo xtask bench floor ...`) so it is timed exactly like the clients.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Items of the headers-only floor (what an envelope database needs).
pub const HEADERS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE";
/// Items of the full-body floor.
pub const FULL: &str = "UID FLAGS BODY.PEEK[]";
/// What mailsync asks Dovecot for every mailbox (LIST-EXTENDED, SPECIAL-USE, LIST-STATUS).
pub const LIST: &str = "LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ))";

/// The names alone: what a server answers from its mailbox list, without opening a mailbox.
pub const LIST_PLAIN: &str = "LIST \"\" \"*\"";

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
    bytes: u64,
}

impl Conn {
    fn open(host: &str, port: u16) -> Result<Conn> {
        let s = TcpStream::connect((host, port)).with_context(|| format!("{host}:{port}"))?;
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        s.set_nodelay(true)?;
        let mut c = Conn {
            r: BufReader::with_capacity(256 * 1024, s.try_clone()?),
            w: s,
            tag: 0,
            bytes: 0,
        };
        let mut line = Vec::new();
        c.line(&mut line)?;
        Ok(c)
    }

    /// Reads one response line, skipping literals; returns its text without literal contents.
    fn line(&mut self, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        loop {
            let start = out.len();
            let n = self.r.read_until(b'\n', out)?;
            if n == 0 {
                bail!("connection closed");
            }
            self.bytes += n as u64;
            let chunk = &out[start..];
            let lit = chunk
                .strip_suffix(b"}\r\n")
                .and_then(|c| c.iter().rposition(|b| *b == b'{').map(|p| &c[p + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.trim_end_matches('+').parse::<u64>().ok());
            match lit {
                Some(len) => {
                    let skipped = io::copy(&mut (&mut self.r).take(len), &mut io::sink())?;
                    self.bytes += skipped;
                    if skipped != len {
                        bail!("connection closed inside a literal");
                    }
                }
                None => return Ok(()),
            }
        }
    }

    /// Sends a command and reads to its tagged answer; returns the untagged lines' count and
    /// the lines themselves when `keep`.
    fn cmd(&mut self, command: &str, keep: bool) -> Result<(u64, Vec<String>)> {
        self.tag += 1;
        let tag = format!("f{}", self.tag);
        self.w
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        let mut line = Vec::new();
        let mut n = 0u64;
        let mut kept = Vec::new();
        loop {
            self.line(&mut line)?;
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let text = String::from_utf8_lossy(&line);
                if !text[tag.len() + 1..].starts_with("OK") {
                    bail!("{command}: {}", text.trim_end());
                }
                return Ok((n, kept));
            }
            n += 1;
            if keep {
                kept.push(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        }
    }
}

/// `bench floor HOST PORT USER PASS headers|full|list|qresync [UIDVALIDITY MODSEQ]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let [host, port, user, pass, mode, rest @ ..] = args else {
        bail!(
            "usage: bench floor HOST PORT USER PASS headers|full|list|qresync [UIDVALIDITY MODSEQ]"
        );
    };
    let port: u16 = port.parse().context("port")?;
    let mut c = Conn::open(host, port)?;
    c.cmd(&format!("LOGIN \"{user}\" \"{pass}\""), false)?;
    let what = match mode.as_str() {
        "headers" => {
            c.cmd("SELECT INBOX", false)?;
            c.cmd(&format!("UID FETCH 1:* ({HEADERS})"), false)?.0
        }
        "full" => {
            c.cmd("SELECT INBOX", false)?;
            c.cmd(&format!("UID FETCH 1:* ({FULL})"), false)?.0
        }
        "qresync" => {
            let [uv, modseq, ..] = rest else {
                bail!("qresync needs UIDVALIDITY MODSEQ");
            };
            c.cmd("ENABLE QRESYNC", false)?;
            c.cmd(&format!("SELECT INBOX (QRESYNC ({uv} {modseq}))"), false)?
                .0
        }
        "list" => c.cmd(LIST, false)?.0,
        "list-plain" => c.cmd(LIST_PLAIN, false)?.0,
        other => bail!("unknown floor mode {other}"),
    };
    c.cmd("LOGOUT", false)?;
    println!("{what} untagged responses, {} bytes", c.bytes);
    Ok(())
}

/// UIDVALIDITY and HIGHESTMODSEQ of INBOX (the state a QRESYNC client keeps).
pub fn qresync_state(host: &str, port: u16, user: &str, pass: &str) -> Result<(u64, u64)> {
    let mut c = Conn::open(host, port)?;
    c.cmd(&format!("LOGIN \"{user}\" \"{pass}\""), false)?;
    let (_, lines) = c.cmd("SELECT INBOX (CONDSTORE)", true)?;
    let num = |key: &str| {
        lines.iter().find_map(|l| {
            let p = l.find(key)? + key.len();
            l[p..]
                .trim_start()
                .split(|ch: char| !ch.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    let uv = num("UIDVALIDITY").context("no UIDVALIDITY")?;
    let ms = num("HIGHESTMODSEQ").context("no HIGHESTMODSEQ")?;
    let _ = c.cmd("LOGOUT", false);
    Ok((uv, ms))
}
