//! The message generator checked by an independent MIME parser (mail-parser): determinism,
//! wire-format rules, structure, and that every documented variant actually occurs.

use std::collections::{HashMap, HashSet};

use mail_parser::{MessageParser, MimeHeaders};
use mailsync_testkit::{Generator, Kind, Profile, SubjectEncoding, expected, generate};

const N: usize = 1500;

#[test]
fn same_seed_and_index_give_the_same_bytes() {
    for i in 0..300 {
        assert_eq!(generate(7, i), generate(7, i), "index {i}");
        assert_eq!(expected(7, i), expected(7, i), "index {i}");
    }
    assert_ne!(generate(7, 1), generate(8, 1));
    assert_ne!(generate(7, 1), generate(7, 2));
    // independent of the order of generation
    let g = Generator::new(99);
    let forward: Vec<Vec<u8>> = (0..50).map(|i| g.message(i)).collect();
    let backward: Vec<Vec<u8>> = (0..50).rev().map(|i| g.message(i)).collect();
    assert!(forward.iter().eq(backward.iter().rev()));
    assert!(g.messages(0..50).eq(forward.into_iter()));
}

#[test]
fn wire_format_is_crlf_with_short_lines_and_ascii_headers() {
    let g = Generator::new(3);
    for i in 0..N {
        let raw = g.message(i);
        for (k, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(
                    raw.get(k.wrapping_sub(1)),
                    Some(&b'\r'),
                    "bare LF in {i} at {k}"
                );
            }
            if b == b'\r' {
                assert_eq!(raw.get(k + 1), Some(&b'\n'), "bare CR in {i} at {k}");
            }
        }
        assert!(raw.ends_with(b"\r\n"), "{i} must end with CRLF");
        for line in raw.split(|b| *b == b'\n') {
            assert!(line.len() <= 998, "line over 998 bytes in {i}");
        }
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header/body split");
        assert!(raw[..head_end].is_ascii(), "non-ASCII header in {i}");
        for line in raw[..head_end].split(|b| *b == b'\n') {
            assert!(
                line.len() <= 200,
                "overlong header line in {i}: {}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

#[test]
fn parsed_messages_match_expected() {
    let g = Generator::new(11);
    let parser = MessageParser::default();
    for i in 0..N {
        let (raw, e) = g.message_and_expected(i);
        let m = parser
            .parse(&raw)
            .unwrap_or_else(|| panic!("{i} does not parse"));
        assert_eq!(e.size, raw.len());
        let subject = m.subject().map(|s| match e.subject_encoding {
            // mail-parser decodes ISO-2022-JP only with its `full_encoding` feature (on or off
            // depending on which workspace crates are built together); without it, it hands
            // back the JIS bytes, which we map back ourselves
            SubjectEncoding::Iso2022JpBase64 if s.contains('\u{1b}') => jis_kana_to_unicode(s),
            _ => s.to_string(),
        });
        assert_eq!(
            subject, e.subject,
            "subject of {i} ({:?})",
            e.subject_encoding
        );
        assert_eq!(m.message_id(), e.message_id.as_deref(), "message-id of {i}");
        assert_eq!(m.date().map(|d| d.to_timestamp()), e.date, "date of {i}");
        assert_eq!(
            m.in_reply_to().as_text(),
            e.in_reply_to.as_deref(),
            "in-reply-to of {i}"
        );
        let refs: Vec<String> = match m.references() {
            mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        };
        assert_eq!(refs, e.references, "references of {i}");
        let from = m.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address(), Some(e.from_addr.as_str()));
        assert_eq!(from.name(), Some(e.from_name.as_str()), "from name of {i}");
        let to: Vec<&str> = m
            .to()
            .map(|a| a.iter().filter_map(|x| x.address()).collect())
            .unwrap_or_default();
        assert_eq!(to, e.to);

        let text = m
            .body_text(0)
            .unwrap_or_else(|| panic!("{i} has no text body"));
        assert!(text.contains(&e.token), "token missing from text of {i}");
        assert_eq!(
            m.html_body_count() > 0 && m.html_part(0).is_some_and(|p| p.is_text_html()),
            e.has_html,
            "html of {i}"
        );
        if e.has_html {
            assert!(
                m.body_html(0).is_some_and(|h| h.contains(&e.token)),
                "token missing from html of {i}"
            );
        }

        let parts: Vec<_> = m.attachments().collect();
        assert_eq!(
            parts.len(),
            e.attachments.len(),
            "attachment count of {i} ({:?})",
            e.kind
        );
        assert_eq!(e.has_attachment, !e.attachments.is_empty());
        for (p, a) in parts.iter().zip(&e.attachments) {
            assert_eq!(
                p.attachment_name(),
                a.filename.as_deref(),
                "attachment name in {i}"
            );
            let ct = p.content_type().map(|c| match c.subtype() {
                Some(s) => format!("{}/{s}", c.ctype()),
                None => c.ctype().to_string(),
            });
            assert_eq!(
                ct.as_deref(),
                Some(a.content_type.as_str()),
                "attachment type in {i}"
            );
            if p.is_message() {
                assert_eq!(
                    p.message().map(|m| m.raw_message().len()),
                    Some(a.size),
                    "forward size in {i}"
                );
            } else {
                assert_eq!(p.contents().len(), a.size, "attachment size in {i}");
            }
            let inline = p
                .content_disposition()
                .is_some_and(|d| d.ctype() == "inline");
            assert_eq!(inline, a.inline, "disposition in {i}");
        }
    }
}

#[test]
fn every_documented_variant_occurs() {
    let g = Generator::new(5);
    let mut kinds = HashSet::new();
    let mut encodings = HashSet::new();
    let (mut no_subject, mut no_date, mut no_id, mut replies, mut large, mut continuation) =
        (0, 0, 0, 0, 0, 0);
    let mut charsets = HashSet::new();
    for i in 0..3000 {
        let (raw, e) = g.message_and_expected(i);
        kinds.insert(format!("{:?}", e.kind));
        encodings.insert(format!("{:?}", e.subject_encoding));
        charsets.insert(e.text_charset);
        no_subject += usize::from(e.subject.is_none());
        no_date += usize::from(e.date.is_none());
        no_id += usize::from(e.message_id.is_none());
        replies += usize::from(e.in_reply_to.is_some());
        large += usize::from(e.attachments.iter().any(|a| a.size >= 100_000));
        continuation += usize::from(raw.windows(12).any(|w| w == b"filename*0*="));
    }
    for k in [
        Kind::Plain,
        Kind::Alternative,
        Kind::Mixed,
        Kind::Nested,
        Kind::Forward,
    ] {
        assert!(kinds.contains(&format!("{k:?}")), "{k:?} never generated");
    }
    for s in [
        SubjectEncoding::Ascii,
        SubjectEncoding::Utf8Base64,
        SubjectEncoding::Utf8Q,
        SubjectEncoding::Latin1Q,
        SubjectEncoding::Iso2022JpBase64,
        SubjectEncoding::Windows1252Q,
    ] {
        assert!(
            encodings.contains(&format!("{s:?}")),
            "{s:?} never generated"
        );
    }
    assert_eq!(charsets.len(), 3, "{charsets:?}");
    assert!(
        no_subject > 0 && no_date > 0 && no_id > 0,
        "{no_subject} {no_date} {no_id}"
    );
    assert!(replies > 300, "{replies} replies");
    assert!(large > 0, "no large attachment in 3000 messages");
    assert!(continuation > 0, "no RFC 2231 continuation");
}

#[test]
fn threads_reference_earlier_messages_of_the_same_block() {
    let g = Generator::new(21);
    let ids: HashMap<String, usize> = (0..600)
        .filter_map(|i| g.expected(i).message_id.map(|m| (m, i)))
        .collect();
    for i in 0..600 {
        let e = g.expected(i);
        if let Some(parent) = &e.in_reply_to {
            let p = ids[parent];
            assert!(
                p < i
                    && p / mailsync_testkit::generator::THREAD_BLOCK
                        == i / mailsync_testkit::generator::THREAD_BLOCK
            );
            assert_eq!(e.references.last(), Some(parent));
            let root = g.expected(e.thread_root);
            assert_eq!(e.references.first(), root.message_id.as_ref());
            assert_eq!(e.subject, root.subject.map(|s| format!("Re: {s}")));
        } else {
            assert!(e.references.is_empty());
        }
    }
}

#[test]
fn message_ids_are_unique_and_sizes_realistic() {
    let g = Generator::new(1);
    let mut seen = HashSet::new();
    let mut sizes = Vec::new();
    for i in 0..4_000 {
        let e = g.expected(i);
        if let Some(id) = e.message_id {
            assert!(seen.insert(id), "duplicate Message-ID at {i}");
        }
        sizes.push(e.size);
    }
    assert!(!seen.contains(&expected(2, 5).message_id.unwrap_or_default()));
    sizes.sort_unstable();
    let in_range = sizes
        .iter()
        .filter(|s| (2_000..=20_000).contains(*s))
        .count();
    assert!(
        in_range * 100 / sizes.len() >= 70,
        "only {in_range} of 4000 in 2-20 KB"
    );
    assert!(sizes[sizes.len() - 1] >= 100_000, "no large message");
    let small = Generator::with_profile(Profile::small(), 1);
    assert!(
        (0..500).all(|i| small.expected(i).size < 2_500 && small.expected(i).kind == Kind::Plain)
    );
}

/// Decodes the kana subset of ISO-2022-JP (JIS X 0208 rows 1, 4, 5) left as raw escape
/// sequences by mail-parser without `full_encoding`.
fn jis_kana_to_unicode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut jis, mut k) = (String::new(), false, 0);
    while k < b.len() {
        if b[k..].starts_with(b"\x1b$B") {
            (jis, k) = (true, k + 3);
        } else if b[k..].starts_with(b"\x1b(B") {
            (jis, k) = (false, k + 3);
        } else if jis && k + 1 < b.len() {
            let code = (u32::from(b[k]) << 8) | u32::from(b[k + 1]);
            let u = match code {
                0x2421..=0x2473 => 0x3041 + code - 0x2421,
                0x2521..=0x2576 => 0x30A1 + code - 0x2521,
                0x213C => 0x30FC,
                _ => 0xFFFD,
            };
            out.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
            k += 2;
        } else {
            out.push(b[k] as char);
            k += 1;
        }
    }
    out
}
