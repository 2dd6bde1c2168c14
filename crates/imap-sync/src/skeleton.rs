//! The text and HTML bodies of a message without decoding its attachments (issue 18).
//!
//! mail-parser decodes every part of a message, attachments included, and that decoding was
//! about a third of a first sync's CPU; with a BODYSTRUCTURE the attachment metadata comes
//! from the server, so those bytes were decoded for nothing. Here the BODYSTRUCTURE guides a
//! boundary scan to the bodies of attachment parts, which are cut out of a copy of the
//! message (the "skeleton": every header, boundary line and text part kept as is), and
//! mail-parser parses that copy, so it still makes every decision about which part is the
//! text and which the HTML body. Its parse of the skeleton is then checked against each cut
//! (see [`verify`]); anything that does not check out takes the full parse of the original.
//!
//! Why a cut cannot change the result, given the checks: mail-parser reads a message left to
//! right, and a part's body is read only by its decoder, which stops at the first `--` +
//! boundary. A cut body holds no `--` at all and is followed by its line break and the
//! boundary, so in both the original and the skeleton the decoder resumes at the same
//! boundary, in the same state, and every byte mail-parser reads outside cut bodies is the
//! same. What the cut part's own content could still change is its classification, through
//! mail-parser's "encoding problem" recovery, and only parts whose classification that cannot
//! move into the text or HTML body are cut.

use std::ops::Range;

use mail_parser::{Encoding, MessageParser, MimeHeaders};
use memchr::memmem;

use crate::mime::{self, BodyText, Part};

/// BODYSTRUCTURE levels walked; a deeper message takes the full parse (real mail nests 3-4,
/// and the walk recurses once per level).
const MAX_DEPTH: usize = 12;
/// Bodies shorter than this stay in the skeleton: cutting them saves less than it costs.
const MIN_CUT: usize = 256;
/// More cuts than this take the full parse (the check is linear per cut, the message hostile).
const MAX_CUTS: usize = 1_000;

/// Why the skeleton was not used (for tests and traces).
pub(crate) type Fallback = &'static str;

/// The text, HTML and preview of `raw` as [`mime::parse_message`] gives them, without
/// decoding attachment bodies where `structure` (the message's BODYSTRUCTURE) locates them.
pub(crate) fn body_text(raw: &[u8], structure: &Part) -> BodyText {
    match try_skeleton(raw, structure) {
        Ok(t) => t,
        Err(reason) => {
            tracing::trace!(reason, "full MIME parse");
            BodyText::from(mime::parse_message(raw))
        }
    }
}

/// The skeleton path alone: `Err` says why the full parse is needed.
pub(crate) fn try_skeleton(raw: &[u8], structure: &Part) -> Result<BodyText, Fallback> {
    let mut cuts = Vec::new();
    plan(raw, structure, 0..raw.len(), false, 0, &mut cuts)?;
    if cuts.is_empty() {
        return Err("no attachment body to skip");
    }
    if cuts.len() > MAX_CUTS {
        return Err("too many parts");
    }
    let removed: usize = cuts.iter().map(|c| c.len()).sum();
    let mut skel = Vec::with_capacity(raw.len().saturating_sub(removed));
    let mut at_skel = Vec::with_capacity(cuts.len());
    let mut at = 0;
    for c in &cuts {
        skel.extend_from_slice(raw.get(at..c.start).ok_or("cuts out of order")?);
        at_skel.push(skel.len());
        at = c.end;
    }
    skel.extend_from_slice(raw.get(at..).ok_or("cuts out of order")?);
    mime::guarded("skeleton", || {
        let m = MessageParser::new().parse(&skel)?;
        Some(verify(&m, raw, &cuts, &at_skel).map(|()| mime::text_of(&m)))
    })
    .ok_or("skeleton not parsable")?
}

/// The end of the header block starting at `start` (the body's first byte), within `end`.
fn body_start(raw: &[u8], start: usize, end: usize) -> Option<usize> {
    let block = raw.get(start..end)?;
    if block.starts_with(b"\r\n") {
        return Some(start + 2);
    }
    if block.starts_with(b"\n") {
        return Some(start + 1);
    }
    let crlf = memmem::find(block, b"\n\r\n").map(|i| i + 3);
    let lf = memmem::find(block, b"\n\n").map(|i| i + 2);
    let n = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(start + n)
}

/// Whether the server's structure says `p`'s body may be left out: anything but the text
/// types mail-parser can take as a body, multiparts and messages (a `message/rfc822` in
/// 7bit/8bit is parsed inline by mail-parser, so its bytes are structure, not content).
fn may_cut(p: &Part) -> bool {
    !(p.mime_type == "text/plain"
        || p.mime_type == "text/html"
        || p.mime_type.starts_with("multipart/")
        || p.mime_type.starts_with("message/"))
}

/// Finds the cuts in entity `p` spanning `entity` (headers and body) of `raw`; `enclosed`
/// when the entity ends at a boundary delimiter of its parent (`entity.end` is its `--`).
fn plan(
    raw: &[u8],
    p: &Part,
    entity: Range<usize>,
    enclosed: bool,
    depth: usize,
    cuts: &mut Vec<Range<usize>>,
) -> Result<(), Fallback> {
    if depth > MAX_DEPTH {
        return Err("nested too deep");
    }
    let body = body_start(raw, entity.start, entity.end).ok_or("no end of headers")?;
    if p.mime_type.starts_with("multipart/") {
        return plan_multipart(raw, p, body..entity.end, depth, cuts);
    }
    if !enclosed || !may_cut(p) || entity.end.saturating_sub(body) < MIN_CUT {
        return Ok(());
    }
    // The line break before the delimiter belongs to the delimiter and stays.
    let end = entity.end;
    let end = if end >= 2 && raw.get(end - 2..end) == Some(b"\r\n") {
        end - 2
    } else if end >= 1 && raw.get(end - 1) == Some(&b'\n') {
        end - 1
    } else {
        return Ok(());
    };
    let Some(bytes) = raw.get(body..end) else {
        return Ok(());
    };
    // No `--` inside: then the first delimiter any boundary could match is the one after.
    if memmem::find(bytes, b"--").is_none() {
        cuts.push(body..end);
    }
    Ok(())
}

/// The children of a multipart whose body spans `body`: split at `--boundary` lines, as many
/// as the structure has, then the closing delimiter.
fn plan_multipart(
    raw: &[u8],
    p: &Part,
    body: Range<usize>,
    depth: usize,
    cuts: &mut Vec<Range<usize>>,
) -> Result<(), Fallback> {
    let boundary = p
        .params
        .iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v.as_bytes())
        .filter(|b| !b.is_empty())
        .ok_or("multipart without boundary")?;
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    let region = raw.get(body.clone()).ok_or("bad range")?;
    let mut at = finder.find(region).ok_or("boundary not found")?;
    let mut children = p.children.iter();
    loop {
        let after = at + delim.len();
        let rest = region.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            break;
        }
        // A delimiter line has only whitespace after the boundary (mail-parser skips it too).
        let eol = memchr::memchr(b'\n', rest).ok_or("delimiter line not ended")?;
        let tail = rest.get(..eol).unwrap_or_default();
        if !tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            return Err("text after a boundary");
        }
        let start = after + eol + 1;
        let next = finder
            .find(region.get(start..).unwrap_or_default())
            .map(|n| start + n)
            .ok_or("boundary not closed")?;
        let child = children.next().ok_or("more parts than the structure")?;
        plan(
            raw,
            child,
            body.start + start..body.start + next,
            true,
            depth + 1,
            cuts,
        )?;
        at = next;
    }
    if children.next().is_some() {
        return Err("fewer parts than the structure");
    }
    Ok(())
}

/// Whether every byte would pass mail-parser's base64 decoder without an encoding problem
/// (the body holds no `--`, so a `-` is skipped).
fn clean_base64(b: &[u8]) -> bool {
    b.iter().all(|&c| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'+' | b'/' | b'=' | b'-' | b' ' | b'\t' | b'\r' | b'\n')
    })
}

/// Checks mail-parser's parse of the skeleton against the cuts: each cut must be the whole
/// body of a part mail-parser read as a leaf ending at its boundary (so it matched the same
/// delimiter), without encoding problem, of a type whose content cannot make it a text or
/// HTML body.
fn verify(
    m: &mail_parser::Message<'_>,
    raw: &[u8],
    cuts: &[Range<usize>],
    at_skel: &[usize],
) -> Result<(), Fallback> {
    // A boundary spanning lines could reach from a header block into a cut body.
    for part in &m.parts {
        if let Some(b) = part.content_type().and_then(|c| c.attribute("boundary"))
            && b.bytes().any(|c| c == b'\r' || c == b'\n')
        {
            return Err("boundary with a line break");
        }
    }
    // Parts come in stream order; so do cuts.
    let mut parts = m.parts.iter().enumerate().peekable();
    for (cut, &pos) in cuts.iter().zip(at_skel) {
        let pos = u32::try_from(pos).map_err(|_| "message too large")?;
        while parts.peek().is_some_and(|(_, p)| p.offset_body < pos) {
            parts.next();
        }
        let (i, part) = parts
            .find(|(_, p)| p.offset_body == pos)
            .ok_or("cut is not a part's body")?;
        if part.offset_end != pos || part.is_encoding_problem {
            return Err("cut does not end at its boundary");
        }
        let ct = part.content_type().ok_or("cut part without content type")?;
        match ct.ctype() {
            // Mirrors mail-parser's own classification (parsers/message.rs `mime_type`).
            "multipart" | "message" => return Err("cut part is structure"),
            "text" if matches!(ct.subtype(), Some("plain" | "html")) => {
                return Err("cut part is a text body type");
            }
            // Inline types may enter the body lists; an encoding problem would take them out,
            // so the original must decode as cleanly as the empty cut did.
            "image" | "audio" | "video" if !surely_not_inline(m, i) => match part.encoding {
                Encoding::None => {}
                Encoding::Base64 if raw.get(cut.clone()).is_some_and(clean_base64) => {}
                _ => return Err("inline part that may not decode cleanly"),
            },
            _ => {}
        }
    }
    Ok(())
}

/// Whether mail-parser takes part `i` for an attachment whatever its content: a disposition
/// of `attachment`, or a part after the first of a `multipart/related`.
fn surely_not_inline(m: &mail_parser::Message<'_>, i: usize) -> bool {
    let Some(part) = m.parts.get(i) else {
        return false;
    };
    if part
        .content_disposition()
        .is_some_and(|d| d.is_attachment())
    {
        return true;
    }
    let Ok(id) = u32::try_from(i) else {
        return false;
    };
    m.parts.iter().any(|parent| match &parent.body {
        mail_parser::PartType::Multipart(children) => {
            children.first() != Some(&id)
                && children.contains(&id)
                && parent
                    .content_type()
                    .is_some_and(|c| c.ctype() == "multipart" && c.subtype() == Some("related"))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::structure_of;

    /// The skeleton path against the full parse, with a structure read by mail-parser (the
    /// integration test `skeleton_matches_full_parse` takes Dovecot's instead).
    fn check(raw: &[u8]) -> Result<BodyText, Fallback> {
        let full = BodyText::from(mime::parse_message(raw));
        let s = structure_of(raw).ok_or("no structure")?;
        assert_eq!(body_text(raw, &s), full, "{}", String::from_utf8_lossy(raw));
        try_skeleton(raw, &s)
    }

    #[test]
    fn generated_corpus_matches_the_full_parse() {
        let g = mailsync_testkit::Generator::new(7);
        let (mut fast, mut with_attachments) = (0, 0);
        for i in 0..1_500 {
            let (raw, x) = g.message_and_expected(i);
            let r = check(&raw);
            if !x.attachments.is_empty() {
                with_attachments += 1;
                // Every generated attachment is cuttable (the forward is kept, but its
                // siblings are not always large enough): most messages take the skeleton.
                if r.is_ok() {
                    fast += 1;
                }
            }
        }
        assert!(
            fast * 10 >= with_attachments * 8,
            "{fast} of {with_attachments}"
        );
    }

    use crate::fuzzing::{b64, mixed};

    const PDF: &str = "Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n";

    #[test]
    fn tricky_messages_match_the_full_parse() {
        let att = format!("{PDF}{}", b64(20));
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "text + attachment",
                mixed(&["Content-Type: text/plain\r\n\r\nhello".into(), att.clone()]),
                true,
            ),
            (
                "attachment first, then text",
                mixed(&[att.clone(), "Content-Type: text/plain\r\n\r\nhello".into()]),
                true,
            ),
            (
                "HTML only",
                mixed(&[
                    "Content-Type: text/html; charset=utf-8\r\n\r\n<p>hi <b>there</b></p>".into(),
                    att.clone(),
                ]),
                true,
            ),
            (
                "QP latin-1 text, base64 utf-8 html",
                mixed(&[
                    "Content-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n--YY\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe=\r\n weiter\r\n--YY\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+R3LDvMOfZTwvcD4=\r\n--YY--".into(),
                    att.clone(),
                ]),
                true,
            ),
            (
                "windows-1252 8bit text",
                {
                    let mut m = mixed(&["Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\n@@".into(), att.clone()]);
                    let at = m.windows(2).position(|w| w == b"@@").unwrap();
                    m.splice(at..at + 2, [0x93, b'q', 0x94, b' ', 0x80]);
                    m
                },
                true,
            ),
            (
                "text part marked as attachment",
                mixed(&[
                    "Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nnot the body".into(),
                    "Content-Type: text/plain\r\n\r\nthe body".into(),
                    att.clone(),
                ]),
                true,
            ),
            (
                "inline image before the text (mail-parser takes it as first body part)",
                mixed(&[
                    format!("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}", b64(10)),
                    "Content-Type: text/plain\r\n\r\nafter the image".into(),
                ]),
                true,
            ),
            (
                "inline image with broken base64 (an encoding problem changes the choice)",
                mixed(&[
                    format!("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}!!!\r\n", b64(10)),
                    "Content-Type: text/plain\r\n\r\nafter the image".into(),
                ]),
                false,
            ),
            (
                "attachment holding a dash pair",
                mixed(&[
                    "Content-Type: text/plain\r\n\r\nhello".into(),
                    format!("Content-Type: application/octet-stream\r\n\r\n{}-- not a boundary\r\n", b64(10)),
                ]),
                false,
            ),
            (
                "QP and 7bit attachments, text/csv",
                mixed(&[
                    "Content-Type: text/plain\r\n\r\nhello".into(),
                    format!("Content-Type: text/csv; name=x.csv\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}", "a,b,c=3D1,=E9t=C3=A9\r\n".repeat(40)),
                    format!("Content-Type: application/json\r\n\r\n{}", "{\"k\": [1, 2, 3]}\r\n".repeat(40)),
                ]),
                true,
            ),
            (
                "forwarded message/rfc822 kept, attachment after it cut",
                mixed(&[
                    "Content-Type: text/plain\r\n\r\nsee below".into(),
                    "Content-Type: message/rfc822\r\n\r\nFrom: x@y.test\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner body".into(),
                    att.clone(),
                ]),
                true,
            ),
            (
                "empty parts",
                mixed(&["Content-Type: text/plain\r\n\r\n".into(), "".into(), att.clone()]),
                true,
            ),
            (
                "nested multipart, related with inline image",
                mixed(&[
                    format!("Content-Type: multipart/related; boundary=\"RR\"\r\n\r\n--RR\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--RR\r\nContent-Type: image/gif\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--RR--", b64(8)),
                    att.clone(),
                ]),
                true,
            ),
            (
                "missing closing boundary",
                {
                    let mut m = mixed(&["Content-Type: text/plain\r\n\r\nhello".into(), att.clone()]);
                    m.truncate(m.len() - 10);
                    m
                },
                false,
            ),
            (
                "LF line ends",
                mixed(&["Content-Type: text/plain\r\n\r\nhello".into(), att.clone()])
                    .into_iter()
                    .filter(|&b| b != b'\r')
                    .collect(),
                true,
            ),
            ("no multipart", b"Subject: x\r\n\r\njust text\r\n".to_vec(), false),
        ];
        for (name, raw, fast) in cases {
            let r = check(&raw);
            assert_eq!(r.is_ok(), fast, "{name}: {r:?}");
        }
    }

    /// Structures that disagree with the bytes fall back (and still match).
    #[test]
    fn a_wrong_structure_falls_back() {
        let raw = mixed(&[
            "Content-Type: text/plain\r\n\r\nhello".into(),
            format!("{PDF}{}", b64(20)),
        ]);
        let mut s = structure_of(&raw).unwrap();
        let full = BodyText::from(mime::parse_message(&raw));
        s.children.pop();
        assert_eq!(try_skeleton(&raw, &s), Err("more parts than the structure"));
        assert_eq!(body_text(&raw, &s), full);
        let mut s = structure_of(&raw).unwrap();
        s.params = vec![("boundary".into(), "X".into())];
        assert!(try_skeleton(&raw, &s).is_err());
        assert_eq!(body_text(&raw, &s), full);
        // The structure claims the text part is an attachment: mail-parser's view wins.
        let mut s = structure_of(&raw).unwrap();
        s.children[0].mime_type = "application/octet-stream".into();
        assert_eq!(body_text(&raw, &s), full);
        // Hostile nesting is cut off, not recursed into.
        let mut deep = Part::default();
        for _ in 0..10_000 {
            deep = Part {
                mime_type: "multipart/mixed".into(),
                params: vec![("boundary".into(), "XX".into())],
                children: vec![deep],
                ..Part::default()
            };
        }
        assert!(try_skeleton(&raw, &deep).is_err());
        // (Dropping a 10,000-deep tree recurses too; keep it off the test's stack.)
        std::mem::forget(deep);
    }
}
