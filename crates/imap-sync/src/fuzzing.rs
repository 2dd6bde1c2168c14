//! Entry points for the fuzz targets (`fuzz/`): the production paths for bytes a server sends,
//! without a socket. Not a stable API.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::mime::{self, Part};
use crate::skeleton;
use crate::transport::Nesting;

/// Runs server bytes through what a connection does with them: the nesting guard, then
/// imap-proto's parser on each complete response, then the conversion to this crate's
/// responses and, for a FETCH, the BODYSTRUCTURE walk. Never panics, never overflows.
pub fn imap_responses(bytes: &[u8]) {
    let mut nesting = Nesting::new(crate::Timeouts::default().max_nesting);
    let mut bytes = bytes.to_vec();
    if !nesting.scan(&mut bytes) {
        return;
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match async_imap::imap_proto::Response::parse(rest) {
            Ok((next, parsed)) => {
                let used = rest.len() - next.len();
                let resp = crate::wire::convert(&parsed, rest.get(..used).unwrap_or_default());
                // A FETCH goes on to become a store row, as in a sync.
                if let crate::wire::Response::Untagged(crate::wire::Untagged::Fetch(f)) = resp {
                    let _ = mime::to_upsert(&f, mailsync_store::MailboxId(1), 1);
                }
                if next.len() == rest.len() {
                    return;
                }
                rest = next;
            }
            Err(_) => return,
        }
    }
}

/// Parses a whole message as a body download does (text, HTML, attachments, preview), then
/// again through the skeleton path of a sync (attachment bodies left out) with a structure
/// read from the message itself, which must give the same texts.
pub fn mime_message(bytes: &[u8]) {
    let full = mime::BodyText::from(mime::parse_message(bytes));
    if let Some(s) = structure_of(bytes) {
        let fast = skeleton::body_text(bytes, &s);
        assert!(
            fast == full,
            "skeleton and full parse differ: {fast:?} != {full:?}"
        );
    }
}

/// A BODYSTRUCTURE-like tree of `raw` as mail-parser reads it (what a server would send for
/// a well-formed message), `None` when mail-parser cannot parse it or it nests too deep.
pub(crate) fn structure_of(raw: &[u8]) -> Option<Part> {
    let m = mime::guarded("structure", || MessageParser::new().parse(raw))?;
    part_of(&m, 0, "", 0)
}

fn part_of(m: &mail_parser::Message<'_>, i: usize, path: &str, depth: usize) -> Option<Part> {
    if depth > 16 {
        return None;
    }
    let p = m.parts.get(i)?;
    let ct = p.content_type();
    let mut part = Part {
        path: path.to_owned(),
        mime_type: ct
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_else(|| "text/plain".into())
            .to_ascii_lowercase(),
        params: ct
            .and_then(|c| c.attributes())
            .unwrap_or_default()
            .iter()
            .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
            .collect(),
        encoding: match p.encoding {
            mail_parser::Encoding::Base64 => "base64",
            mail_parser::Encoding::QuotedPrintable => "quoted-printable",
            mail_parser::Encoding::None => "7bit",
        }
        .to_owned(),
        ..Part::default()
    };
    if let PartType::Multipart(children) = &p.body {
        for (n, &c) in children.iter().enumerate() {
            let child_path = if path.is_empty() {
                (n + 1).to_string()
            } else {
                format!("{path}.{}", n + 1)
            };
            part.children
                .push(part_of(m, c as usize, &child_path, depth + 1)?);
        }
    }
    Some(part)
}

/// Test fixture: `n` lines of valid base64 (an attachment body worth cutting).
pub fn b64(n: usize) -> String {
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n".repeat(n)
}

/// Test fixture: a `multipart/mixed` message (boundary `XX`) of `parts`, each its headers,
/// a blank line and its body.
pub fn mixed(parts: &[String]) -> Vec<u8> {
    let mut m = String::from(
        "From: a@b.test\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n",
    );
    for p in parts {
        m.push_str("\r\n--XX\r\n");
        m.push_str(p);
    }
    m.push_str("\r\n--XX--\r\n");
    m.into_bytes()
}

/// What [`compare_bodies`] found.
#[derive(Debug, Default)]
pub struct SkeletonReport {
    /// Messages compared.
    pub messages: usize,
    /// Messages whose texts came from the skeleton path.
    pub skeleton: usize,
    /// Messages that took the full parse, with the reason.
    pub fallbacks: Vec<(u32, &'static str)>,
    /// Messages whose texts differ between the two paths (UID and both results).
    pub mismatches: Vec<String>,
}

/// Test entry: fetches every message of `mailbox` with `BODYSTRUCTURE BODY.PEEK[]` as a first
/// sync with bodies does, and compares the sync's skeleton path with mail-parser's full parse.
pub async fn compare_bodies(
    conn: &mut crate::Connection,
    mailbox: &str,
) -> Result<SkeletonReport, crate::Error> {
    use crate::wire::{Cmd, Event, Untagged};
    conn.select(mailbox).await?;
    let cmd = Cmd::new("UID FETCH")
        .raw("1:*")
        .raw("(UID BODYSTRUCTURE BODY.PEEK[])");
    let tag = conn.wire.send(&cmd).await?;
    let mut r = SkeletonReport::default();
    loop {
        match conn.wire.next(&tag).await? {
            Event::Data(Untagged::Fetch(f)) => {
                let (Some(uid), Some(raw), Some(s)) = (f.uid, &f.body, &f.structure) else {
                    continue;
                };
                r.messages += 1;
                match skeleton::try_skeleton(raw, s) {
                    Ok(_) => r.skeleton += 1,
                    Err(why) => r.fallbacks.push((uid, why)),
                }
                let fast = skeleton::body_text(raw, s);
                let full = mime::BodyText::from(mime::parse_message(raw));
                if fast != full {
                    r.mismatches
                        .push(format!("uid {uid}: skeleton {fast:?}\nfull {full:?}"));
                }
            }
            Event::Data(other) => conn.note(&other),
            Event::Done(_) => return Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Regression: a BODYSTRUCTURE nested 5,000 deep overflowed imap-proto's stack (found by
    /// reading its parser; the fuzz target reaches it in seconds without the guard).
    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut s = String::from("* 1 FETCH (UID 1 BODYSTRUCTURE ");
        s.push_str(&"(".repeat(5_000));
        s.push_str("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)");
        s.push_str(&" \"mixed\")".repeat(5_000));
        s.push_str(")\r\n");
        super::imap_responses(s.as_bytes());
    }

    /// The committed seeds (captured from the test servers) go through without a panic.
    #[test]
    fn seeds_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        let mut n = 0;
        for (target, f) in [
            ("imap_response", super::imap_responses as fn(&[u8])),
            ("mime_message", super::mime_message),
        ] {
            for e in std::fs::read_dir(dir.join(target))
                .into_iter()
                .flatten()
                .flatten()
            {
                f(&std::fs::read(e.path()).unwrap_or_default());
                n += 1;
            }
        }
        assert!(n >= 10, "seeds found: {n}");
    }

    /// Regression (fuzzing): a response code followed directly by a non-ASCII byte panicked
    /// imap-proto (it slices the lossy text inside a character), and so did `INTERNALDATE NIL`
    /// (it unwraps the date; also reached after an unterminated quoted string). The crash inputs are kept in `fuzz/crashes/imap_response/` and
    /// must all pass.
    #[test]
    fn fuzz_crashes_no_longer_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/crashes/imap_response");
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            super::imap_responses(&std::fs::read(e.path()).unwrap_or_default());
            n += 1;
        }
        assert!(n >= 4, "crash inputs found: {n}");
        super::imap_responses(
            b"* OK [ALERT]\xff\xfe oops\r\nA1 NO [AUTHENTICATIONFAILED]\xc3\xa9\r\n",
        );
    }

    /// Regression (fuzz smoke, seed 12): a multipart message that reaches a `debug_assert!` in
    /// mail-parser 0.11 (parsers/message.rs:485) panicked a debug build. The parser's panics
    /// are now taken for "cannot parse": the message keeps its metadata, without a parsed body.
    #[test]
    fn mime_crashes_no_longer_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/crashes/mime_message");
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let raw = std::fs::read(e.path()).unwrap_or_default();
            assert!(std::panic::catch_unwind(|| super::mime_message(&raw)).is_ok());
            n += 1;
        }
        assert!(n >= 1, "crash inputs found: {n}");
    }

    /// Regression: lines the scanner took for a literal's contents escaped its rules. A status
    /// response's text is plain text to imap-proto, so a `{12}` at its end starts no literal
    /// (seen once by the fuzz smoke as a panic in `Outcome::parse`); nor does a `BADCHARSET`
    /// code's literal, which imap-proto reads (the code is left in the text instead).
    #[test]
    fn status_text_hides_no_line() {
        for input in [
            // The literal-looking `{12}` would swallow `* OK [ALERT]`.
            &b"* OK {12}\r\n* OK [ALERT]\xff\r\n"[..],
            b"A1 NO later {13}\r\nA2 NO [PARSE]\xc3\xa9\r\n",
            b"+ {12}\r\n* OK [ALERT]\xff\r\n",
            b"+[ALERT]\xff\r\n",
            // A string left open in the text does not cover the next line either.
            b"* BYE \"\\\r\n* OK [ALERT]\xff\r\n",
            // A literal inside BADCHARSET that looks like the start of a string.
            b"* NO [BADCHARSET ({5}\r\nab\"cd)]\xff\r\n",
            b"* NO [BADCHARSET ({12}\r\n* OK [ALERT])]\xff\r\n",
            // Hidden METADATA and INTERNALDATE lines.
            b"* OK {6}\r\n* OK\r\n* METADATA \"\xff\" (a \"b\")\r\n",
            b"* OK {4}\r\n* OK\r\n* 1 FETCH (INTERNALDATE NIL)\r\n",
        ] {
            super::imap_responses(input);
        }
        // The code's name still reaches the error table.
        let mut n = crate::transport::Nesting::new(32);
        let mut line = b"A1 NO [BADCHARSET (UTF-8)] no\r\n".to_vec();
        assert!(n.scan(&mut line));
        let (parsed_rest, parsed) = async_imap::imap_proto::Response::parse(&line).unwrap();
        assert!(parsed_rest.is_empty());
        match crate::wire::convert(&parsed, &line) {
            crate::wire::Response::Tagged { code, .. } => {
                assert_eq!(code, Some(crate::error::ResponseCode::BadCharset))
            }
            other => panic!("{other:?}"),
        }
    }

    /// The CI fuzz smoke: mutations of the seed corpus for a few seconds per target
    /// (`MAILSYNC_FUZZ_SMOKE_SECS`, default 10), no cargo-fuzz needed (see testkit `mutate`).
    #[test]
    fn fuzz_smoke_mutations_do_not_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        for (target, f) in [
            ("imap_response", super::imap_responses as fn(&[u8])),
            ("mime_message", super::mime_message),
        ] {
            let seeds = mailsync_testkit::mutate::seeds_from(&dir.join(target));
            let r =
                mailsync_testkit::mutate::smoke(&seeds, mailsync_testkit::mutate::smoke_time(), f);
            eprintln!("{target}: {} executions, seed {}", r.executions, r.seed);
            assert!(r.executions > 0);
        }
    }
}
