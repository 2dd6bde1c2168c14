//! Decoding of what IMAP returns into store rows: envelopes (RFC 2047 words in any charset),
//! BODYSTRUCTURE trees (RFC 2231 parameters) into attachment metadata, and whole messages
//! into text/HTML bodies. mail-parser (0.11) is only used from this module.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use mailsync_store::bodies::Body;
use mailsync_store::emails::{Attachment, EmailUpsert, Membership};
use mailsync_store::{Address, Flags, MailboxId};

use crate::wire::FetchData;

/// Characters of preview kept (JMAP uses 256).
pub(crate) const PREVIEW_LEN: usize = 256;

/// An IMAP ENVELOPE, raw bytes as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<EnvelopeAddress>,
    pub sender: Vec<EnvelopeAddress>,
    pub reply_to: Vec<EnvelopeAddress>,
    pub to: Vec<EnvelopeAddress>,
    pub cc: Vec<EnvelopeAddress>,
    pub bcc: Vec<EnvelopeAddress>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// An ENVELOPE address. A group start has no host; a group end has neither mailbox nor host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvelopeAddress {
    pub name: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// One node of a BODYSTRUCTURE, owned, with its IMAP part number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Part {
    /// IMAP section number (`1`, `2.1`); empty for a multipart root.
    pub path: String,
    /// `type/subtype`, lower case.
    pub mime_type: String,
    /// Content-Type parameters, keys lower case.
    pub params: Vec<(String, String)>,
    pub content_id: Option<String>,
    pub encoding: String,
    /// Encoded size in bytes.
    pub size: u32,
    /// `attachment` / `inline`, lower case.
    pub disposition: Option<String>,
    pub disposition_params: Vec<(String, String)>,
    pub children: Vec<Part>,
}

fn lower_params(p: &async_imap::imap_proto::BodyParams<'_>) -> Vec<(String, String)> {
    p.as_ref()
        .map(|v| {
            v.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn child_path(parent: &str, n: usize) -> String {
    if parent.is_empty() {
        n.to_string()
    } else {
        format!("{parent}.{n}")
    }
}

/// Converts imap-proto's BODYSTRUCTURE; `path` is the part number of `b` (`""` at the root).
pub(crate) fn part_from(b: &async_imap::imap_proto::BodyStructure<'_>, path: &str) -> Part {
    use async_imap::imap_proto::{BodyContentCommon, BodyContentSinglePart, BodyStructure as B};
    fn common(c: &BodyContentCommon<'_>, p: &mut Part) {
        p.mime_type = format!("{}/{}", c.ty.ty, c.ty.subtype).to_ascii_lowercase();
        p.params = lower_params(&c.ty.params);
        if let Some(d) = &c.disposition {
            p.disposition = Some(d.ty.to_ascii_lowercase());
            p.disposition_params = lower_params(&d.params);
        }
    }
    fn single(o: &BodyContentSinglePart<'_>, p: &mut Part) {
        p.content_id = o.id.as_ref().map(|i| {
            i.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        });
        use async_imap::imap_proto::ContentEncoding as E;
        p.encoding = match &o.transfer_encoding {
            E::SevenBit => "7bit".to_owned(),
            E::EightBit => "8bit".to_owned(),
            E::Binary => "binary".to_owned(),
            E::Base64 => "base64".to_owned(),
            E::QuotedPrintable => "quoted-printable".to_owned(),
            E::Other(s) => s.to_ascii_lowercase(),
        };
        p.size = o.octets;
    }
    let mut p = Part::default();
    match b {
        B::Multipart {
            common: c, bodies, ..
        } => {
            common(c, &mut p);
            p.path = path.to_owned();
            p.children = bodies
                .iter()
                .enumerate()
                .map(|(i, child)| part_from(child, &child_path(path, i + 1)))
                .collect();
        }
        B::Basic {
            common: c, other, ..
        }
        | B::Text {
            common: c, other, ..
        }
        | B::Message {
            common: c, other, ..
        } => {
            common(c, &mut p);
            single(other, &mut p);
            p.path = if path.is_empty() {
                "1".to_owned()
            } else {
                path.to_owned()
            };
        }
    }
    p
}

fn is_body_text(p: &Part) -> bool {
    (p.mime_type == "text/plain" || p.mime_type == "text/html")
        && p.disposition.as_deref() != Some("attachment")
        && param(&p.disposition_params, "filename").is_none()
        && param(&p.params, "name").is_none()
}

/// Attachment metadata from a BODYSTRUCTURE: every leaf that is not a body text part
/// (inline images and forwarded messages included), with IMAP part numbers.
pub(crate) fn attachments(root: &Part) -> Vec<Attachment> {
    let mut out = Vec::new();
    walk_attachments(root, &mut out);
    out
}

fn walk_attachments(p: &Part, out: &mut Vec<Attachment>) {
    if p.mime_type.starts_with("multipart/") {
        for c in &p.children {
            walk_attachments(c, out);
        }
        return;
    }
    if is_body_text(p) {
        return;
    }
    out.push(Attachment {
        part_id: Some(p.path.clone()),
        blob_id: None,
        file_name: param(&p.disposition_params, "filename").or_else(|| param(&p.params, "name")),
        mime_type: p.mime_type.clone(),
        size: i64::from(p.size),
        disposition: p.disposition.clone(),
        content_id: p.content_id.clone().filter(|c| !c.is_empty()),
    });
}

/// The first text part to build a preview from: text/plain, else text/html.
pub(crate) fn first_text_part(root: &Part) -> Option<&Part> {
    fn find<'a>(p: &'a Part, mime: &str) -> Option<&'a Part> {
        if p.mime_type.starts_with("multipart/") {
            return p.children.iter().find_map(|c| find(c, mime));
        }
        (p.mime_type == mime && is_body_text(p)).then_some(p)
    }
    find(root, "text/plain").or_else(|| find(root, "text/html"))
}

fn decode_charset(charset: &str, bytes: &[u8]) -> String {
    match mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()) {
        Some(decoder) => decoder(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(h) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A MIME parameter, decoded: RFC 2231 (`key*`, `key*0*`, `key*1`...) first, else the plain
/// value (with RFC 2047 words, which mailers use in `name=` despite the RFCs).
pub(crate) fn param(params: &[(String, String)], key: &str) -> Option<String> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    };
    let ext = format!("{key}*");
    if let Some(v) = get(&ext) {
        let (charset, data) = split_2231(v);
        return Some(decode_charset(
            charset.unwrap_or("utf-8"),
            &percent_decode(data),
        ));
    }
    let mut segs: Vec<(u32, bool, &str)> = params
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&ext)?;
            let (num, encoded) = match rest.strip_suffix('*') {
                Some(n) => (n, true),
                None => (rest, false),
            };
            Some((num.parse().ok()?, encoded, v.as_str()))
        })
        .collect();
    if !segs.is_empty() {
        segs.sort_by_key(|s| s.0);
        let mut charset = None;
        let mut bytes = Vec::new();
        for (i, (_, encoded, v)) in segs.iter().enumerate() {
            if *encoded {
                let data = if i == 0 {
                    let (c, d) = split_2231(v);
                    charset = c;
                    d
                } else {
                    v
                };
                bytes.extend(percent_decode(data));
            } else {
                bytes.extend_from_slice(v.as_bytes());
            }
        }
        return Some(decode_charset(charset.unwrap_or("utf-8"), &bytes));
    }
    get(key).map(|v| decode_words(v.as_bytes()))
}

/// `charset'lang'data` → (charset, data).
fn split_2231(v: &str) -> (Option<&str>, &str) {
    let mut it = v.splitn(3, '\'');
    match (it.next(), it.next(), it.next()) {
        (Some(c), Some(_lang), Some(data)) => ((!c.is_empty()).then_some(c), data),
        _ => (None, v),
    }
}

fn unfold(s: &str) -> String {
    collapse_whitespace(s, usize::MAX)
}

/// Folding and runs of whitespace become one space, ends trimmed; stops once more than
/// `limit` bytes are out (a preview needs the start of a body, not all of it).
fn collapse_whitespace(s: &str, limit: usize) -> String {
    let mut out = String::with_capacity(s.len().min(limit.saturating_add(4)));
    let mut last_space = false;
    for c in s.chars() {
        if out.len() > limit {
            return out.trim().to_owned();
        }
        if c == '\r' || c == '\n' || c == '\t' || c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out.trim().to_owned()
}

/// Decodes an unstructured header value (RFC 2047 encoded words in any charset, raw UTF-8,
/// folding).
pub(crate) fn decode_words(raw: &[u8]) -> String {
    let words = raw.windows(2).any(|w| w == b"=?");
    if !words {
        return match std::str::from_utf8(raw) {
            Ok(s) => unfold(s),
            // Raw 8-bit that is not UTF-8: old mailers wrote Latin-1/windows-1252.
            Err(_) => unfold(&decode_charset("windows-1252", raw)),
        };
    }
    let mut header = Vec::with_capacity(raw.len() + 16);
    header.extend_from_slice(b"Subject: ");
    header.extend(
        raw.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    header.extend_from_slice(b"\r\n\r\n");
    match guarded("subject", || {
        MessageParser::new()
            .parse_headers(&header)
            .map(|m| m.subject().map(unfold).unwrap_or_default())
    }) {
        Some(s) => s,
        None => unfold(&String::from_utf8_lossy(raw)),
    }
}

/// Parses a Date header value.
pub(crate) fn decode_date(raw: &[u8]) -> Option<DateTime<Utc>> {
    let mut header = Vec::with_capacity(raw.len() + 16);
    header.extend_from_slice(b"Date: ");
    header.extend(
        raw.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    header.extend_from_slice(b"\r\n\r\n");
    let d = guarded("date", || {
        MessageParser::new()
            .parse_headers(&header)?
            .date()
            .map(|d| d.to_timestamp())
    })?;
    DateTime::from_timestamp(d, 0)
}

/// Message ids in a header value, without angle brackets (a bare id is kept as is).
pub(crate) fn message_ids(raw: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    let mut rest = s.as_ref();
    while let Some(open) = rest.find('<') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('>') else { break };
        let id = after.get(..close).unwrap_or_default().trim();
        if !id.is_empty() {
            out.push(id.to_owned());
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    if out.is_empty() {
        let t = s.trim();
        if !t.is_empty() && !t.contains(char::is_whitespace) {
            out.push(t.to_owned());
        }
    }
    out
}

pub(crate) fn envelope_addresses(list: &[EnvelopeAddress]) -> Vec<Address> {
    list.iter()
        .filter_map(|a| {
            // Group markers carry no host.
            let host = a.host.as_ref()?;
            let mailbox = a.mailbox.as_ref()?;
            let email = format!(
                "{}@{}",
                String::from_utf8_lossy(mailbox),
                String::from_utf8_lossy(host)
            );
            let name = a
                .name
                .as_ref()
                .map(|n| decode_words(n))
                .filter(|n| !n.is_empty());
            Some(Address { name, email })
        })
        .collect()
}

/// The header value of `name` in a raw header block (unfolded, not decoded).
fn header_value(block: &[u8], name: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(block);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_owned());
        }
    }
    found.map(String::into_bytes)
}

/// Maps IMAP flags to the store's flags: the four tracked system flags, other keywords kept
/// (sorted, deduplicated), `\Recent`, `\Deleted` and other system flags dropped.
pub(crate) fn flags_from(imap: &[String]) -> Flags {
    let mut f = Flags::default();
    for flag in imap {
        match flag.to_ascii_lowercase().as_str() {
            "\\seen" => f.seen = true,
            "\\flagged" => f.flagged = true,
            "\\answered" => f.answered = true,
            "\\draft" => f.draft = true,
            s if s.starts_with('\\') => {}
            _ => f.keywords.push(flag.clone()),
        }
    }
    f.keywords.sort();
    f.keywords.dedup();
    f
}

/// The text of a partial body section (first bytes of a text part), decoded for a preview.
pub(crate) fn preview_from_section(part: &Part, bytes: &[u8]) -> Option<String> {
    let decoded: Vec<u8> = match part.encoding.as_str() {
        "base64" => {
            let clean: Vec<u8> = bytes
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let usable = clean.len() - clean.len() % 4;
            mail_parser::decoders::base64::base64_decode(clean.get(..usable)?)?
        }
        "quoted-printable" => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(bytes)
                .unwrap_or_else(|| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    let charset = param(&part.params, "charset").unwrap_or_else(|| "utf-8".into());
    let text = decode_charset(&charset, &decoded);
    let text = if part.mime_type == "text/html" {
        mail_parser::decoders::html::html_to_text(&text)
    } else {
        text
    };
    make_preview(&text)
}

/// A preview: whitespace collapsed, at most [`PREVIEW_LEN`] characters.
pub(crate) fn make_preview(text: &str) -> Option<String> {
    // Four times the preview's length leaves room for whitespace the trim may still take.
    let collapsed = collapse_whitespace(text, PREVIEW_LEN * 4);
    let p = mail_parser::parsers::preview::preview_text(Cow::Owned(collapsed), PREVIEW_LEN);
    let p = p.trim().to_owned();
    (!p.is_empty()).then_some(p)
}

/// Builds the store row for a fetched message; `None` without UID (never for UID FETCH).
pub(crate) fn to_upsert(
    f: &FetchData,
    mailbox: MailboxId,
    uidvalidity: u32,
) -> Option<EmailUpsert> {
    let uid = f.uid?;
    let remote = mailsync_store::emails::imap_remote_id(mailbox, uidvalidity, uid);
    let env = f.envelope.clone().unwrap_or_default();
    let sent_at = env.date.as_deref().and_then(decode_date);
    let received_at = f
        .internal_date
        .or(sent_at)
        .unwrap_or_else(mailsync_store::now);
    let mut u = EmailUpsert::new(remote, received_at);
    u.message_id = env
        .message_id
        .as_deref()
        .and_then(|m| message_ids(m).into_iter().next());
    let irt = env
        .in_reply_to
        .as_deref()
        .map(message_ids)
        .unwrap_or_default();
    u.in_reply_to = (!irt.is_empty()).then(|| irt.join(" "));
    let refs = f
        .header
        .as_deref()
        .and_then(|h| header_value(h, "references"))
        .map(|v| message_ids(&v))
        .unwrap_or_default();
    u.references = (!refs.is_empty()).then(|| refs.join(" "));
    u.subject = env.subject.as_deref().map(decode_words);
    u.from = envelope_addresses(&env.from);
    u.to = envelope_addresses(&env.to);
    u.cc = envelope_addresses(&env.cc);
    u.bcc = envelope_addresses(&env.bcc);
    u.reply_to = envelope_addresses(&env.reply_to);
    if u.reply_to == u.from {
        // ENVELOPE fills reply-to with From when the header is absent.
        u.reply_to.clear();
    }
    u.sent_at = sent_at;
    u.size = i64::from(f.size.unwrap_or(0));
    u.flags = flags_from(f.flags.as_deref().unwrap_or_default());
    u.thread_id = f.thread_id.clone();
    u.preview = f.preview.clone();
    if let Some(s) = &f.structure {
        let atts = attachments(s);
        u.has_attachment = !atts.is_empty();
        u.attachments = Some(atts);
        if u.preview.is_none()
            && let Some(tp) = first_text_part(s)
            && let Some((_, bytes)) = f.sections.iter().find(|(p, _)| *p == tp.path)
        {
            u.preview = preview_from_section(tp, bytes);
        }
    }
    u.mailboxes = vec![Membership {
        mailbox_id: mailbox,
        uidvalidity: Some(i64::from(uidvalidity)),
        uid: Some(i64::from(uid)),
        modseq: f.modseq.and_then(|m| i64::try_from(m).ok()),
    }];
    Some(u)
}

/// A whole message, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedBody {
    /// The first text/plain body (or text converted from the HTML body).
    pub text: Option<String>,
    /// The first text/html body, when the message has one.
    pub html: Option<String>,
    /// A short preview of the text.
    pub preview: Option<String>,
    /// Attachments as mail-parser sees them (decoded sizes, no IMAP part numbers).
    pub attachments: Vec<Attachment>,
}

/// The texts of a message kept in the store: what [`ParsedBody`] holds but the attachments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BodyText {
    pub text: Option<String>,
    pub html: Option<String>,
    pub preview: Option<String>,
}

impl From<ParsedBody> for BodyText {
    fn from(p: ParsedBody) -> Self {
        BodyText {
            text: p.text,
            html: p.html,
            preview: p.preview,
        }
    }
}

/// The stored body of a parsed message (the raw message is kept only on demand, by the
/// caller).
impl From<BodyText> for Body {
    fn from(t: BodyText) -> Self {
        Body {
            text: t.text,
            html: t.html,
            raw: None,
            truncated: false,
        }
    }
}

/// The text body (else text from the HTML body), the HTML body and a preview of a parsed
/// message: the first part of mail-parser's text and HTML body lists.
pub(crate) fn text_of(m: &Message<'_>) -> BodyText {
    let html = m
        .html_body
        .first()
        .and_then(|&i| m.parts.get(i as usize))
        .and_then(|p| match &p.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        });
    let text = m
        .text_body
        .first()
        .and_then(|&i| m.parts.get(i as usize))
        .and_then(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .or_else(|| {
            html.as_deref()
                .map(mail_parser::decoders::html::html_to_text)
        });
    let preview = text.as_deref().and_then(make_preview);
    BodyText {
        text,
        html,
        preview,
    }
}

/// Runs mail-parser on bytes from the network, taking a panic inside it for "cannot parse".
/// mail-parser 0.11 has a `debug_assert!` that malformed multipart nesting reaches
/// (parsers/message.rs:485, found by the fuzz smoke), and a sync must not die on one message
/// whatever the build: such a message is kept as one mail-parser cannot parse at all.
pub(crate) fn guarded<T>(what: &'static str, f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::warn!(what, "the MIME parser failed on this input; left unparsed");
        None
    })
}

/// Parses a raw RFC 5322 message into text, HTML and attachment metadata.
pub(crate) fn parse_message(raw: &[u8]) -> ParsedBody {
    guarded("message", || parse_message_unguarded(raw)).unwrap_or_default()
}

fn parse_message_unguarded(raw: &[u8]) -> Option<ParsedBody> {
    let m = MessageParser::new().parse(raw)?;
    let BodyText {
        text,
        html,
        preview,
    } = text_of(&m);
    let attachments = m
        .attachments()
        .map(|a| Attachment {
            part_id: None,
            blob_id: None,
            file_name: a.attachment_name().map(str::to_owned),
            mime_type: a
                .content_type()
                .map(|c| {
                    format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream"))
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: i64::try_from(a.contents().len()).unwrap_or(i64::MAX),
            disposition: a
                .content_disposition()
                .map(|d| d.ctype().to_ascii_lowercase()),
            content_id: a
                .content_id()
                .map(|c| c.trim_start_matches('<').trim_end_matches('>').to_owned()),
        })
        .collect();
    Some(ParsedBody {
        text,
        html,
        preview,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_reads_only_the_start_of_a_long_body() {
        let long = format!("  Hello\r\n\tworld  {}", "word ".repeat(100_000));
        let p = make_preview(&long).expect("preview");
        assert!(p.starts_with("Hello world word word"), "{p}");
        assert!(p.ends_with("...") && p.len() <= PREVIEW_LEN, "{p}");
        assert_eq!(make_preview(" short \r\n text "), Some("short text".into()));
        assert_eq!(make_preview(" \r\n "), None);
        // The same preview as collapsing the whole body first.
        let full = unfold(&long);
        let whole = mail_parser::parsers::preview::preview_text(Cow::Owned(full), PREVIEW_LEN);
        assert_eq!(p, whole.trim());
    }

    #[test]
    fn encoded_words_in_several_charsets() {
        let cases: &[(&[u8], &str)] = &[
            (b"=?UTF-8?B?SGVsbG8gV8O2cmxk?=", "Hello Wörld"),
            (b"=?utf-8?q?J=C3=B6rg?=", "Jörg"),
            (b"=?iso-8859-1?q?caf=E9?= preview test", "café preview test"),
            (b"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"),
            (
                b"=?windows-1252?Q?=93quoted=94_=80?=",
                "\u{201c}quoted\u{201d} €",
            ),
            (b"=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab"),
            (b"plain\r\n  folded   subject", "plain folded subject"),
            ("raw UTF-8 Grüße".as_bytes(), "raw UTF-8 Grüße"),
            (b"caf\xe9 raw latin1", "café raw latin1"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_words(raw), *want, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn rfc2231_parameters() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            param(&p(&[("filename*", "UTF-8''%C3%A4rger.pdf")]), "filename").as_deref(),
            Some("ärger.pdf")
        );
        assert_eq!(
            param(
                &p(&[
                    ("filename*1*", "%20Teil%202.txt"),
                    ("filename*0*", "iso-8859-1'de'Gr%FC%DFe"),
                ]),
                "filename"
            )
            .as_deref(),
            Some("Grüße Teil 2.txt")
        );
        assert_eq!(
            param(&p(&[("name*0", "long"), ("name*1", "name.csv")]), "name").as_deref(),
            Some("longname.csv")
        );
        assert_eq!(
            param(&p(&[("name", "=?UTF-8?B?w6QucGRm?=")]), "name").as_deref(),
            Some("ä.pdf")
        );
        assert_eq!(param(&p(&[("charset", "utf-8")]), "name"), None);
    }

    #[test]
    fn ids_dates_and_flags() {
        assert_eq!(
            message_ids(b"<a@b> <c@d>\r\n <e@f>"),
            vec!["a@b", "c@d", "e@f"]
        );
        assert_eq!(message_ids(b"bare@id"), vec!["bare@id"]);
        assert!(message_ids(b"").is_empty());
        let d = decode_date(b"Tue, 14 Nov 2023 22:13:20 +0000").map(|d| d.timestamp());
        assert_eq!(d, Some(1_700_000_000));
        assert_eq!(decode_date(b"not a date"), None);
        let f = flags_from(&[
            "\\Seen".into(),
            "\\Recent".into(),
            "$Forwarded".into(),
            "\\Deleted".into(),
            "$Forwarded".into(),
            "\\FLAGGED".into(),
        ]);
        assert!(f.seen && f.flagged && !f.answered && !f.draft);
        assert_eq!(f.keywords, vec!["$Forwarded".to_string()]);
    }

    #[test]
    fn groups_and_missing_hosts_are_skipped() {
        let a = |n: Option<&str>, m: Option<&str>, h: Option<&str>| EnvelopeAddress {
            name: n.map(|s| s.as_bytes().to_vec()),
            mailbox: m.map(|s| s.as_bytes().to_vec()),
            host: h.map(|s| s.as_bytes().to_vec()),
        };
        let list = vec![
            a(None, Some("undisclosed"), None),
            a(Some("=?utf-8?q?J=C3=B6rg?="), Some("j"), Some("x.test")),
            a(None, None, None),
        ];
        assert_eq!(
            envelope_addresses(&list),
            vec![Address {
                name: Some("Jörg".into()),
                email: "j@x.test".into()
            }]
        );
    }

    #[test]
    fn structure_attachments_and_text_part() {
        let leaf = |path: &str, mime: &str| Part {
            path: path.into(),
            mime_type: mime.into(),
            encoding: "base64".into(),
            size: 100,
            ..Part::default()
        };
        let mut img = leaf("1.2", "image/png");
        img.disposition = Some("inline".into());
        img.content_id = Some("img1".into());
        let mut csv = leaf("2", "text/csv");
        csv.disposition = Some("attachment".into());
        csv.disposition_params = vec![("filename".into(), "data.csv".into())];
        let root = Part {
            mime_type: "multipart/mixed".into(),
            children: vec![
                Part {
                    path: "1".into(),
                    mime_type: "multipart/related".into(),
                    children: vec![
                        Part {
                            path: "1.1".into(),
                            mime_type: "multipart/alternative".into(),
                            children: vec![leaf("1.1.1", "text/plain"), leaf("1.1.2", "text/html")],
                            ..Part::default()
                        },
                        img,
                    ],
                    ..Part::default()
                },
                csv,
                leaf("3", "message/rfc822"),
            ],
            ..Part::default()
        };
        let atts = attachments(&root);
        let ids: Vec<_> = atts
            .iter()
            .map(|a| a.part_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(ids, vec!["1.2", "2", "3"]);
        assert_eq!(
            atts.get(1).and_then(|a| a.file_name.as_deref()),
            Some("data.csv")
        );
        assert_eq!(
            atts.first().and_then(|a| a.content_id.as_deref()),
            Some("img1")
        );
        assert_eq!(
            first_text_part(&root).map(|p| p.path.as_str()),
            Some("1.1.1")
        );
    }

    #[test]
    fn preview_from_partial_sections() {
        let part = Part {
            path: "1".into(),
            mime_type: "text/plain".into(),
            params: vec![("charset".into(), "iso-8859-1".into())],
            encoding: "quoted-printable".into(),
            ..Part::default()
        };
        assert_eq!(
            preview_from_section(&part, b"Gr=FC=DFe,\r\nda  unten").as_deref(),
            Some("Grüße, da unten")
        );
        let b64 = Part {
            encoding: "base64".into(),
            params: vec![],
            ..part
        };
        // Cut in the middle of a quantum: the incomplete tail is ignored.
        assert_eq!(
            preview_from_section(&b64, b"SGVsbG8gd29ybGQ").as_deref(),
            Some("Hello wor")
        );
    }

    /// Quoted-printable bodies (RFC 2045 6.7) through the whole-message parser, whose decoder
    /// is patched for speed (vendor/mail-parser/PATCHES.md): escapes, soft line breaks,
    /// trailing white space dropped at line ends, dashes that are not a boundary, long
    /// literal runs.
    #[test]
    fn quoted_printable_parts_decode_exactly() {
        let long = "word ".repeat(40);
        let raw = format!(
            "Subject: qp\r\nContent-Type: multipart/alternative; boundary=\"B-1\"\r\n\r\n\
             --B-1\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Caf=C3=A9 au lait  \r\nsoft=\r\nbreak --B-2 -- x-y\r\n{long}=\r\nend\r\na=3Db\t \r\n\
             --B-1\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             <p>=E2=82=AC 5 =\r\n</p>\r\n--B-1--\r\n"
        );
        let b = parse_message(raw.as_bytes());
        assert_eq!(
            b.text.as_deref(),
            Some(format!("Café au lait\r\nsoftbreak --B-2 -- x-y\r\n{long}end\r\na=b").as_str())
        );
        assert_eq!(b.html.as_deref(), Some("<p>€ 5 </p>"));
        let single = parse_message(
            b"Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx =3D y  \r\n--z\r\n",
        );
        assert_eq!(single.text.as_deref(), Some("x = y\r\n--z\r\n"));
    }

    #[test]
    fn whole_message_parsing() {
        let raw = b"From: a@b.test\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello body\r\n--C\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>body</b></p>\r\n--C--\r\n--B\r\nContent-Type: application/pdf; name=doc.pdf\r\nContent-Disposition: attachment; filename=doc.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--B--\r\n";
        let b = parse_message(raw);
        assert_eq!(b.text.as_deref().map(str::trim), Some("Hello body"));
        assert!(b.html.as_deref().is_some_and(|h| h.contains("<b>body</b>")));
        assert_eq!(b.preview.as_deref(), Some("Hello body"));
        assert_eq!(b.attachments.len(), 1);
        assert_eq!(
            b.attachments.first().and_then(|a| a.file_name.as_deref()),
            Some("doc.pdf")
        );
        let plain_only = parse_message(b"Subject: y\r\n\r\njust text\r\n");
        assert_eq!(plain_only.html, None);
        assert_eq!(plain_only.text.as_deref().map(str::trim), Some("just text"));
    }
}
