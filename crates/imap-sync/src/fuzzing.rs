//! Entry points for the fuzz targets (`fuzz/`): the production paths for bytes a server sends,
//! without a socket. Not a stable API.

use crate::mime;
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

/// Parses a whole message as a body download does (text, HTML, attachments, preview).
pub fn mime_message(bytes: &[u8]) {
    let _ = mime::parse_message(bytes);
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
