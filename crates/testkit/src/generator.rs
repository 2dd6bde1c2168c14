//! A deterministic generator of realistic RFC 5322 messages (CRLF), with an [`Expected`]
//! description of each one for tests to assert on.
//!
//! The same `(profile, seed, index)` always gives the same bytes. What varies, per message:
//!
//! * **Structure** ([`Kind`]): `text/plain`; `multipart/alternative` (plain + HTML);
//!   `multipart/mixed` with 1-3 attachments; a nested
//!   `mixed(related(alternative(plain, html), inline image), attachment)`; or a forward with a
//!   `message/rfc822` part.
//! * **Attachments**: PDF, PNG, CSV, XLSX, binary; small ones (1-30 KB) at
//!   [`Profile::attachment_rate`], a large one (100 KB-2 MB by default) at
//!   [`Profile::large_attachment_rate`]. Non-ASCII file names use RFC 2231
//!   (`filename*=UTF-8''...`, sometimes split into `filename*0*`/`filename*1*` continuations)
//!   plus an RFC 2047 `name=` on the Content-Type, as common mailers do.
//! * **Subject encoding** ([`SubjectEncoding`]): plain ASCII, RFC 2047 UTF-8 `B` and `Q`,
//!   ISO-8859-1 `Q`, ISO-2022-JP `B` (kana) and windows-1252 `Q` (smart quotes, euro sign).
//! * **Body charsets**: us-ascii 7bit, UTF-8 8bit or quoted-printable, ISO-8859-1
//!   quoted-printable; HTML parts are UTF-8 quoted-printable.
//! * **Threads**: messages come in blocks of [`THREAD_BLOCK`]; a block is a thread at
//!   [`Profile::thread_rate`]: its first message is the root, every other one replies to an
//!   earlier message of the block (`In-Reply-To`, `References`, `Subject: Re: <root subject>`).
//! * **Missing headers**: outside threads, at [`Profile::missing_header_rate`], one of
//!   `Subject`, `Date` or `Message-ID` is left out.
//! * **Identity**: Message-ID `<index.seed.hash@gen.mailsync.test>` is unique per
//!   `(seed, index)`, and every text body contains the token `mailsync-<seed>-<index>`, so no
//!   two generated messages have the same bytes (Cyrus dedupes identical bytes).
//!
//! Sizes are mostly 2-20 KB with the default profile.

use std::fmt::Write as _;
use std::ops::Range;

/// Messages per thread block (see the module docs).
pub const THREAD_BLOCK: usize = 6;

/// The knobs of the generator. Rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The `To:` address (`user@example.test`).
    pub to: String,
    /// Messages with both a plain and an HTML body.
    pub alternative_rate: f64,
    /// Messages with 1-3 small attachments.
    pub attachment_rate: f64,
    /// Messages with one large attachment.
    pub large_attachment_rate: f64,
    /// Size range of large attachments (decoded bytes).
    pub large_attachment_size: Range<usize>,
    /// Size range of small attachments (decoded bytes).
    pub small_attachment_size: Range<usize>,
    /// Nested multipart messages (related + alternative + attachment).
    pub nested_rate: f64,
    /// Forwards carrying a `message/rfc822` part.
    pub forward_rate: f64,
    /// Thread blocks (see [`THREAD_BLOCK`]).
    pub thread_rate: f64,
    /// Non-thread messages missing one of Subject, Date, Message-ID.
    pub missing_header_rate: f64,
    /// Subjects with non-ASCII text in RFC 2047 encoded words.
    pub encoded_subject_rate: f64,
    /// Size range of the plain text body (bytes, before transfer encoding).
    pub body_size: Range<usize>,
    /// `Date` of index 0 (Unix seconds); later indexes are about 2 minutes apart.
    pub base_time: i64,
}

impl Default for Profile {
    /// A realistic mix, mostly 2-20 KB.
    fn default() -> Profile {
        Profile {
            to: "Test User <test@example.test>".into(),
            alternative_rate: 0.4,
            attachment_rate: 0.12,
            large_attachment_rate: 0.005,
            large_attachment_size: 100_000..2_000_000,
            small_attachment_size: 1_000..30_000,
            nested_rate: 0.05,
            forward_rate: 0.03,
            thread_rate: 0.3,
            missing_header_rate: 0.04,
            encoded_subject_rate: 0.35,
            body_size: 1_200..9_000,
            base_time: 1_700_000_000,
        }
    }
}

impl Profile {
    /// Small plain-text messages (about 0.5-1.5 KB), still with threads and encoded subjects:
    /// for fast bulk loads where the MIME variety does not matter.
    pub fn small() -> Profile {
        Profile {
            alternative_rate: 0.0,
            attachment_rate: 0.0,
            large_attachment_rate: 0.0,
            nested_rate: 0.0,
            forward_rate: 0.0,
            missing_header_rate: 0.0,
            body_size: 200..1_000,
            ..Profile::default()
        }
    }

    /// The same profile with another `To:`.
    pub fn with_to(mut self, to: impl Into<String>) -> Profile {
        self.to = to.into();
        self
    }
}

/// The MIME structure of a generated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A single `text/plain` part.
    Plain,
    /// `multipart/alternative` (text/plain, text/html).
    Alternative,
    /// `multipart/mixed`: a body (plain or alternative) and attachments.
    Mixed,
    /// `multipart/mixed(multipart/related(multipart/alternative(plain, html), inline png),
    /// attachment...)`.
    Nested,
    /// `multipart/mixed(text/plain, message/rfc822)`.
    Forward,
}

/// How the Subject header is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectEncoding {
    /// Plain ASCII, no encoded words.
    Ascii,
    /// `=?UTF-8?B?...?=`.
    Utf8Base64,
    /// `=?UTF-8?Q?...?=`.
    Utf8Q,
    /// `=?ISO-8859-1?Q?...?=`.
    Latin1Q,
    /// `=?ISO-2022-JP?B?...?=` (kana only).
    Iso2022JpBase64,
    /// `=?windows-1252?Q?...?=`.
    Windows1252Q,
}

/// One attachment (or inline part) of a generated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedAttachment {
    /// The decoded file name (`None` for the forwarded `message/rfc822` part).
    pub filename: Option<String>,
    /// The MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Decoded size in bytes (for `message/rfc822`: the size of the inner message).
    pub size: usize,
    /// `Content-Disposition: inline` (the image of a related part) rather than attachment.
    pub inline: bool,
}

/// What a generated message contains, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// The generator seed.
    pub seed: u64,
    /// The index within the seed.
    pub index: usize,
    /// The MIME structure.
    pub kind: Kind,
    /// Message-ID without angle brackets; `None` when the header is left out.
    pub message_id: Option<String>,
    /// The decoded subject; `None` when the header is left out.
    pub subject: Option<String>,
    /// How the subject is encoded.
    pub subject_encoding: SubjectEncoding,
    /// Sender address.
    pub from_addr: String,
    /// Decoded sender display name.
    pub from_name: String,
    /// `To` addresses.
    pub to: Vec<String>,
    /// `Cc` addresses (often empty).
    pub cc: Vec<String>,
    /// `Date` as Unix seconds; `None` when the header is left out.
    pub date: Option<i64>,
    /// Parent Message-ID for replies.
    pub in_reply_to: Option<String>,
    /// The `References` chain, oldest first (empty for non-replies).
    pub references: Vec<String>,
    /// Index of the thread root (the message itself when it starts or is not in a thread).
    pub thread_root: usize,
    /// Charset of the plain text body: `us-ascii`, `utf-8` or `iso-8859-1`.
    pub text_charset: &'static str,
    /// Whether there is a `text/html` part.
    pub has_html: bool,
    /// Whether there is any attachment (inline image and forwarded message included).
    pub has_attachment: bool,
    /// Attachments and inline parts, in MIME order.
    pub attachments: Vec<ExpectedAttachment>,
    /// A token found in the text body (and HTML body), unique per `(seed, index)`.
    pub token: String,
    /// Total size of the raw message in bytes.
    pub size: usize,
}

/// The message `index` of `seed` with the default [`Profile`].
pub fn generate(seed: u64, index: usize) -> Vec<u8> {
    Generator::new(seed).message(index)
}

/// What [`generate`]`(seed, index)` contains.
pub fn expected(seed: u64, index: usize) -> Expected {
    Generator::new(seed).expected(index)
}

/// A generator bound to a profile and a seed.
#[derive(Clone, Debug)]
pub struct Generator {
    profile: Profile,
    seed: u64,
}

impl Generator {
    /// The default profile.
    pub fn new(seed: u64) -> Generator {
        Generator {
            profile: Profile::default(),
            seed,
        }
    }

    /// A given profile.
    pub fn with_profile(profile: Profile, seed: u64) -> Generator {
        Generator { profile, seed }
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The raw message `index`.
    pub fn message(&self, index: usize) -> Vec<u8> {
        self.render(index).0
    }

    /// The description of message `index`.
    pub fn expected(&self, index: usize) -> Expected {
        self.render(index).1
    }

    /// Both at once.
    pub fn message_and_expected(&self, index: usize) -> (Vec<u8>, Expected) {
        self.render(index)
    }

    /// Messages for `range`, generated lazily.
    pub fn messages(&self, range: Range<usize>) -> impl Iterator<Item = Vec<u8>> + use<> {
        let g = self.clone();
        range.map(move |i| g.message(i))
    }

    fn render(&self, index: usize) -> (Vec<u8>, Expected) {
        let plan = Plan::new(&self.profile, self.seed, index);
        plan.render(&self.profile)
    }
}

// ---------------------------------------------------------------------------------------------
// randomness

/// SplitMix64: tiny, deterministic across platforms and versions.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn new(seed: u64, index: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = r.next();
        let mut r = Rng(a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let b = r.next();
        Rng(b ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn range(&mut self, r: &Range<usize>) -> usize {
        if r.end <= r.start {
            r.start
        } else {
            r.start + self.below(r.end - r.start)
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits -> [0, 1)
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// vocabulary

const WORDS: &[&str] = &[
    "the",
    "project",
    "meeting",
    "report",
    "update",
    "please",
    "review",
    "attached",
    "budget",
    "schedule",
    "team",
    "customer",
    "release",
    "version",
    "deadline",
    "quarter",
    "results",
    "proposal",
    "feedback",
    "thanks",
    "question",
    "issue",
    "server",
    "migration",
    "database",
    "invoice",
    "contract",
    "draft",
    "final",
    "agenda",
    "notes",
    "follow",
    "up",
    "next",
    "week",
    "monday",
    "friday",
    "call",
    "office",
    "travel",
    "plan",
    "design",
    "test",
    "build",
    "deploy",
    "ticket",
    "support",
    "weekend",
    "lunch",
    "coffee",
    "numbers",
    "growth",
    "sales",
    "market",
    "roadmap",
    "priority",
    "risk",
    "estimate",
    "launch",
    "beta",
    "users",
    "account",
    "access",
    "password",
    "policy",
    "security",
    "backup",
    "storage",
    "network",
    "latency",
    "sync",
    "mail",
    "folder",
    "calendar",
    "invite",
    "confirm",
    "cancel",
    "reschedule",
    "approve",
    "sign",
    "send",
    "receive",
    "forward",
    "reply",
    "discuss",
    "share",
    "document",
    "spreadsheet",
    "slides",
    "summary",
    "details",
    "context",
    "decision",
    "option",
    "alternative",
    "cost",
    "value",
    "and",
    "or",
    "with",
    "for",
    "from",
    "about",
    "before",
    "after",
    "during",
    "into",
    "over",
    "we",
    "you",
    "they",
    "it",
    "is",
    "are",
    "was",
    "will",
    "should",
    "could",
    "might",
    "can",
    "new",
    "old",
    "small",
    "large",
    "quick",
    "late",
    "early",
    "clear",
    "open",
    "closed",
];

const UTF8_SENTENCES: &[&str] = &[
    "Grüße aus Köln, bis später!",
    "Ça va très bien, merci beaucoup.",
    "Привет из Москвы, как дела?",
    "これはテストのメールです。",
    "Zażółć gęślą jaźń.",
    "Το ταχύ καφέ αλεπού.",
    "Emoji check: 🎉 ✅ 📎",
    "Smörgåsbord på fredag?",
];

const LATIN1_SENTENCES: &[&str] = &[
    "Grüße aus München!",
    "Ça va très bien.",
    "¿Qué tal el año?",
    "Smörgåsbord på fredag.",
    "Ñandú, façade, naïve.",
];

const ASCII_SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Lunch on Friday?",
    "Build failed: main",
    "Re-org of the shared folders",
    "Invoice for October",
    "Your ticket has been updated",
    "Notes from today's call",
    "Draft proposal for review",
    "Server maintenance window",
    "Welcome to the team",
];

const UTF8_SUBJECTS: &[&str] = &[
    "Café meeting — agenda",
    "Grüße aus München",
    "Привет, как дела?",
    "Résumé und Übersicht",
    "Party 🎉 on Friday",
    "Zażółć gęślą jaźń",
];

const LATIN1_SUBJECTS: &[&str] = &[
    "Résumé für Jürgen",
    "Año nuevo en España",
    "Smörgåsbord på fredag",
    "Café crème à la française",
];

/// Kana only: encodable to ISO-2022-JP without a kanji table.
const JAPANESE_SUBJECTS: &[&str] = &[
    "ミーティングのおしらせ",
    "テストメール",
    "こんにちは",
    "レポートのかくにん",
];

const CP1252_SUBJECTS: &[&str] = &[
    "“Smart quotes” – price €5",
    "It’s done … finally",
    "Œuvre — “draft” ‰",
];

const SENDERS: &[(&str, &str)] = &[
    ("Alice Example", "alice@example.test"),
    ("Bob Builder", "bob@example.test"),
    ("Jürgen Müller", "juergen@example.test"),
    ("Zoë Ångström", "zoe@example.test"),
    ("Carol Smith", "carol@example.test"),
    ("Dave O'Neil", "dave@example.test"),
    ("Ярослав Петров", "yaroslav@example.test"),
    ("Notifications", "noreply@ci.example.test"),
    ("François Léger", "francois@example.test"),
    ("Erin Li", "erin@example.test"),
];

const CC_ADDRS: &[&str] = &[
    "team@example.test",
    "carol@example.test",
    "erin@example.test",
];

/// (name, type, whether the content is text) of small attachments.
const ATTACHMENTS: &[(&str, &str, bool)] = &[
    ("report.pdf", "application/pdf", false),
    ("photo.png", "image/png", false),
    ("data.csv", "text/csv", true),
    (
        "budget.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        false,
    ),
    ("résumé.pdf", "application/pdf", false),
    (
        "Übersicht 2024 – final version with a rather long file name.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        false,
    ),
    ("naïve café notes.txt", "text/plain", true),
    ("archive.bin", "application/octet-stream", false),
    ("レポート.pdf", "application/pdf", false),
];

const TIMEZONES: &[i32] = &[0, -300, 60, 540, 330, -480, 120];

// ---------------------------------------------------------------------------------------------
// the plan: every decision, before rendering

struct Plan {
    seed: u64,
    index: usize,
    kind: Kind,
    message_id: Option<String>,
    subject: Option<(String, SubjectEncoding)>,
    sender: usize,
    cc: Vec<String>,
    date: Option<(i64, i32)>,
    in_reply_to: Option<String>,
    references: Vec<String>,
    thread_root: usize,
    charset: &'static str,
    qp_text: bool,
    attachments: Vec<usize>,
    large: Option<usize>,
    body_len: usize,
}

fn message_id(seed: u64, index: usize) -> String {
    let h = Rng::new(seed, index as u64, 7).next() as u32;
    format!("{index}.{seed:x}.{h:08x}@gen.mailsync.test")
}

/// The root subject of a thread or standalone message (text, encoding).
fn base_subject(profile: &Profile, seed: u64, index: usize) -> (String, SubjectEncoding) {
    let mut r = Rng::new(seed, index as u64, 3);
    if !r.chance(profile.encoded_subject_rate) {
        return (
            format!("{} #{index}", r.pick(ASCII_SUBJECTS)),
            SubjectEncoding::Ascii,
        );
    }
    let (text, enc) = match r.below(5) {
        0 => (*r.pick(UTF8_SUBJECTS), SubjectEncoding::Utf8Base64),
        1 => (*r.pick(UTF8_SUBJECTS), SubjectEncoding::Utf8Q),
        2 => (*r.pick(LATIN1_SUBJECTS), SubjectEncoding::Latin1Q),
        3 => (*r.pick(JAPANESE_SUBJECTS), SubjectEncoding::Iso2022JpBase64),
        _ => (*r.pick(CP1252_SUBJECTS), SubjectEncoding::Windows1252Q),
    };
    (format!("{text} #{index}"), enc)
}

/// Whether the thread block of `index` is a thread.
fn block_is_thread(profile: &Profile, seed: u64, index: usize) -> bool {
    let block = index / THREAD_BLOCK;
    Rng::new(seed, block as u64, 11).chance(profile.thread_rate)
}

/// The parent of a reply (an earlier message of the same block), or `None` for a root.
fn parent_of(profile: &Profile, seed: u64, index: usize) -> Option<usize> {
    let pos = index % THREAD_BLOCK;
    if pos == 0 || !block_is_thread(profile, seed, index) {
        return None;
    }
    let start = index - pos;
    Some(start + Rng::new(seed, index as u64, 5).below(pos))
}

impl Plan {
    fn new(profile: &Profile, seed: u64, index: usize) -> Plan {
        let mut r = Rng::new(seed, index as u64, 1);
        let parent = parent_of(profile, seed, index);
        let in_thread = block_is_thread(profile, seed, index);
        let thread_root = if in_thread {
            index - index % THREAD_BLOCK
        } else {
            index
        };

        let (mut references, mut in_reply_to) = (Vec::new(), None);
        let (text, enc) = base_subject(profile, seed, thread_root);
        let mut subject = Some(match parent {
            Some(_) => (format!("Re: {text}"), enc),
            None => (text, enc),
        });
        if let Some(p) = parent {
            let mut chain = Vec::new();
            let mut cur = Some(p);
            while let Some(c) = cur {
                chain.push(message_id(seed, c));
                cur = parent_of(profile, seed, c);
            }
            chain.reverse();
            in_reply_to = Some(message_id(seed, p));
            references = chain;
        }

        let jitter = r.below(60) as i64;
        let tz = *r.pick(TIMEZONES);
        let mut date = Some((profile.base_time + index as i64 * 120 + jitter, tz));
        let mut mid = Some(message_id(seed, index));
        if !in_thread && r.chance(profile.missing_header_rate) {
            match r.below(3) {
                0 => subject = None,
                1 => date = None,
                _ => mid = None,
            }
        }

        let sender = r.below(SENDERS.len());
        let cc = if r.chance(0.2) {
            vec![r.pick(CC_ADDRS).to_string()]
        } else {
            Vec::new()
        };
        let charset = match r.below(20) {
            0..=9 => "utf-8",
            10..=16 => "us-ascii",
            _ => "iso-8859-1",
        };
        let qp_text = charset == "iso-8859-1" || (charset == "utf-8" && r.chance(0.5));

        let large = r
            .chance(profile.large_attachment_rate)
            .then(|| r.range(&profile.large_attachment_size));
        let mut kind = if r.chance(profile.nested_rate) {
            Kind::Nested
        } else if r.chance(profile.forward_rate) {
            Kind::Forward
        } else if r.chance(profile.attachment_rate) {
            Kind::Mixed
        } else if r.chance(profile.alternative_rate) {
            Kind::Alternative
        } else {
            Kind::Plain
        };
        if large.is_some() && matches!(kind, Kind::Plain | Kind::Alternative) {
            kind = Kind::Mixed;
        }
        let attachments = match kind {
            Kind::Mixed if large.is_some() && r.chance(0.5) => Vec::new(),
            Kind::Mixed => (0..1 + r.below(3))
                .map(|_| r.below(ATTACHMENTS.len()))
                .collect(),
            Kind::Nested => vec![r.below(ATTACHMENTS.len())],
            _ => Vec::new(),
        };
        let body_len = r.range(&profile.body_size);
        Plan {
            seed,
            index,
            kind,
            message_id: mid,
            subject,
            sender,
            cc,
            date,
            in_reply_to,
            references,
            thread_root,
            charset,
            qp_text,
            attachments,
            large,
            body_len,
        }
    }

    fn token(&self) -> String {
        format!("mailsync-{}-{}", self.seed, self.index)
    }

    fn render(&self, profile: &Profile) -> (Vec<u8>, Expected) {
        let mut r = Rng::new(self.seed, self.index as u64, 2);
        let (sender_name, sender_addr) = SENDERS[self.sender];
        let mut h = String::new();
        h.push_str(&format!("Return-Path: <{sender_addr}>\r\n"));
        h.push_str(&format!(
            "From: {}\r\n",
            mailbox_header(sender_name, sender_addr)
        ));
        h.push_str(&format!("To: {}\r\n", profile.to));
        if !self.cc.is_empty() {
            h.push_str(&format!("Cc: {}\r\n", self.cc.join(", ")));
        }
        if let Some((text, enc)) = &self.subject {
            h.push_str(&format!("Subject: {}\r\n", encode_subject(text, *enc)));
        }
        if let Some((t, tz)) = self.date {
            h.push_str(&format!("Date: {}\r\n", rfc5322_date(t, tz)));
        }
        if let Some(id) = &self.message_id {
            h.push_str(&format!("Message-ID: <{id}>\r\n"));
        }
        if let Some(p) = &self.in_reply_to {
            h.push_str(&format!("In-Reply-To: <{p}>\r\n"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|m| format!("<{m}>")).collect();
            h.push_str(&format!("References: {}\r\n", refs.join("\r\n ")));
        }
        h.push_str("MIME-Version: 1.0\r\n");
        h.push_str("X-Mailer: mailsync-testkit generator\r\n");

        let token = self.token();
        let paragraphs = paragraphs(
            &mut r,
            self.body_len,
            self.charset,
            &token,
            self.in_reply_to.is_some(),
        );
        let text_part = text_part(&paragraphs, self.charset, self.qp_text);
        let html_part = || html_part(&paragraphs);
        let boundary = |depth: u8| format!("=_mailsync_{:x}_{}_{depth}", self.seed, self.index);
        let mut attachments = Vec::new();
        let small = |r: &mut Rng, which: usize, attachments: &mut Vec<ExpectedAttachment>| {
            let size = r.range(&profile.small_attachment_size);
            let (name, ctype, text) = ATTACHMENTS[which];
            attachments.push(ExpectedAttachment {
                filename: Some(name.to_string()),
                content_type: ctype.to_string(),
                size,
                inline: false,
            });
            attachment_part(r, name, ctype, text, size, false, None)
        };
        let mut has_html = matches!(self.kind, Kind::Alternative | Kind::Nested);
        let body = match self.kind {
            Kind::Plain => text_part,
            Kind::Alternative => {
                multipart("alternative", &boundary(0), vec![text_part, html_part()])
            }
            Kind::Mixed => {
                has_html = r.chance(0.5);
                let first = if has_html {
                    multipart("alternative", &boundary(1), vec![text_part, html_part()])
                } else {
                    text_part
                };
                let mut parts = vec![first];
                for &a in &self.attachments {
                    parts.push(small(&mut r, a, &mut attachments));
                }
                if let Some(size) = self.large {
                    let name = format!("large-{}.bin", self.index);
                    attachments.push(ExpectedAttachment {
                        filename: Some(name.clone()),
                        content_type: "application/octet-stream".into(),
                        size,
                        inline: false,
                    });
                    parts.push(attachment_part(
                        &mut r,
                        &name,
                        "application/octet-stream",
                        false,
                        size,
                        false,
                        None,
                    ));
                }
                multipart("mixed", &boundary(0), parts)
            }
            Kind::Nested => {
                let cid = format!("img{}.{:x}@gen.mailsync.test", self.index, self.seed);
                let html = html_with_image(&paragraphs, &cid);
                let alt = multipart("alternative", &boundary(2), vec![text_part, html]);
                let size = r.range(&(2_000..12_000));
                attachments.push(ExpectedAttachment {
                    filename: Some("logo.png".into()),
                    content_type: "image/png".into(),
                    size,
                    inline: true,
                });
                let img = attachment_part(
                    &mut r,
                    "logo.png",
                    "image/png",
                    false,
                    size,
                    true,
                    Some(&cid),
                );
                let related = multipart_with(
                    "related",
                    &boundary(1),
                    vec![alt, img],
                    "; type=\"multipart/alternative\"",
                );
                let mut parts = vec![related];
                for &a in &self.attachments {
                    parts.push(small(&mut r, a, &mut attachments));
                }
                if let Some(size) = self.large {
                    let name = format!("large-{}.bin", self.index);
                    attachments.push(ExpectedAttachment {
                        filename: Some(name.clone()),
                        content_type: "application/octet-stream".into(),
                        size,
                        inline: false,
                    });
                    parts.push(attachment_part(
                        &mut r,
                        &name,
                        "application/octet-stream",
                        false,
                        size,
                        false,
                        None,
                    ));
                }
                multipart("mixed", &boundary(0), parts)
            }
            Kind::Forward => {
                let inner = forwarded_message(self.seed, self.index);
                attachments.push(ExpectedAttachment {
                    filename: None,
                    content_type: "message/rfc822".into(),
                    size: inner.len(),
                    inline: false,
                });
                let mut part = b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
                part.extend_from_slice(&inner);
                multipart("mixed", &boundary(0), vec![text_part, part])
            }
        };
        let mut raw = h.into_bytes();
        raw.extend_from_slice(&body);

        let expected = Expected {
            seed: self.seed,
            index: self.index,
            kind: self.kind,
            message_id: self.message_id.clone(),
            subject: self.subject.as_ref().map(|(s, _)| s.clone()),
            subject_encoding: self
                .subject
                .as_ref()
                .map(|(_, e)| *e)
                .unwrap_or(SubjectEncoding::Ascii),
            from_addr: sender_addr.to_string(),
            from_name: sender_name.to_string(),
            to: vec![addr_of(&profile.to)],
            cc: self.cc.clone(),
            date: self.date.map(|(t, _)| t),
            in_reply_to: self.in_reply_to.clone(),
            references: self.references.clone(),
            thread_root: self.thread_root,
            text_charset: self.charset,
            has_html,
            has_attachment: !attachments.is_empty(),
            attachments,
            token,
            size: raw.len(),
        };
        (raw, expected)
    }
}

fn addr_of(mailbox: &str) -> String {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(a), Some(b)) if a < b => mailbox[a + 1..b].to_string(),
        _ => mailbox.trim().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// bodies

/// Paragraphs of text (Rust strings; the charset decides which sentences may appear).
fn paragraphs(r: &mut Rng, target: usize, charset: &str, token: &str, reply: bool) -> Vec<String> {
    let mut out = Vec::new();
    out.push("Hello,".to_string());
    let mut len = 0;
    while len < target {
        let mut p = String::new();
        for _ in 0..2 + r.below(4) {
            let n = 6 + r.below(12);
            let mut s = String::new();
            for k in 0..n {
                let w = *r.pick(WORDS);
                if k == 0 {
                    let mut c = w.chars();
                    if let Some(f) = c.next() {
                        s.extend(f.to_uppercase());
                        s.push_str(c.as_str());
                    }
                } else {
                    s.push(' ');
                    s.push_str(w);
                }
            }
            s.push('.');
            if !p.is_empty() {
                p.push(' ');
            }
            p.push_str(&s);
            if r.chance(0.15) {
                let extra = match charset {
                    "utf-8" => Some(*r.pick(UTF8_SENTENCES)),
                    "iso-8859-1" => Some(*r.pick(LATIN1_SENTENCES)),
                    _ => None,
                };
                if let Some(e) = extra {
                    p.push(' ');
                    p.push_str(e);
                }
            }
        }
        len += p.len() + 2;
        out.push(p);
    }
    out.push(format!("Reference token: {token}"));
    if reply {
        out.push("> On an earlier day, someone wrote:\n> Sounds good, let us discuss.".to_string());
    }
    out.push("-- \nSent by the mailsync test generator".to_string());
    out
}

/// Wraps a paragraph at 72 columns (by chars).
fn wrap(p: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for raw in p.split('\n') {
        let mut line = String::new();
        for word in raw.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 72 {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

fn text_part(paragraphs: &[String], charset: &str, qp: bool) -> Vec<u8> {
    let mut text = String::new();
    for p in paragraphs {
        for l in wrap(p) {
            text.push_str(&l);
            text.push('\n');
        }
        text.push('\n');
    }
    let bytes = match charset {
        "iso-8859-1" => latin1(&text),
        _ => text.into_bytes(),
    };
    let (cte, body) = if qp {
        ("quoted-printable", quoted_printable(&bytes))
    } else if charset == "us-ascii" {
        ("7bit", crlf(&bytes))
    } else {
        ("8bit", crlf(&bytes))
    };
    let mut out = format!("Content-Type: text/plain; charset=\"{charset}\"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").into_bytes();
    out.extend_from_slice(&body);
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_doc(paragraphs: &[String], extra: &str) -> Vec<u8> {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>message</title></head>\n<body style=\"font-family: sans-serif\">\n",
    );
    for p in paragraphs {
        let _ = writeln!(html, "<p>{}</p>", html_escape(p).replace('\n', "<br>"));
    }
    html.push_str(extra);
    html.push_str("</body></html>\n");
    let mut out = b"Content-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
    out.extend_from_slice(&quoted_printable(html.as_bytes()));
    out
}

fn html_part(paragraphs: &[String]) -> Vec<u8> {
    html_doc(paragraphs, "")
}

fn html_with_image(paragraphs: &[String], cid: &str) -> Vec<u8> {
    html_doc(
        paragraphs,
        &format!("<p><img src=\"cid:{cid}\" alt=\"logo\"></p>\n"),
    )
}

fn attachment_part(
    r: &mut Rng,
    name: &str,
    ctype: &str,
    text: bool,
    size: usize,
    inline: bool,
    cid: Option<&str>,
) -> Vec<u8> {
    let content = if text {
        // CSV-ish lines of ASCII
        // CSV-ish ASCII lines in canonical (CRLF) form, so the decoded size is exact
        let mut s = String::from("id,name,amount,comment\r\n");
        let mut i = 0;
        while s.len() < size {
            let _ = write!(
                s,
                "{i},{},{}.{:02},{}\r\n",
                r.pick(WORDS),
                r.below(10_000),
                r.below(100),
                r.pick(WORDS)
            );
            i += 1;
        }
        s.truncate(size);
        if s.ends_with('\r') {
            s.pop();
            s.push(' ');
        }
        s.into_bytes()
    } else {
        let magic: &[u8] = match ctype {
            "application/pdf" => b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            "image/png" => b"\x89PNG\r\n\x1a\n",
            _ if ctype.contains("spreadsheetml") => b"PK\x03\x04",
            _ => b"",
        };
        let mut v = magic.to_vec();
        v.extend(r.bytes(size.saturating_sub(magic.len())));
        v.truncate(size);
        v
    };
    let disposition = if inline { "inline" } else { "attachment" };
    let mut h = String::new();
    if name.is_ascii() {
        let _ = write!(h, "Content-Type: {ctype}; name=\"{name}\"\r\n");
        let _ = write!(
            h,
            "Content-Disposition: {disposition}; filename=\"{name}\"\r\n"
        );
    } else {
        // RFC 2047 name= for old readers, RFC 2231 filename* for everyone else
        let _ = write!(
            h,
            "Content-Type: {ctype};\r\n name=\"{}\"\r\n",
            encode_words(name, "UTF-8", b'B')
        );
        let pct = percent_encode(name);
        if pct.len() > 60 {
            let _ = write!(h, "Content-Disposition: {disposition}");
            let chunks = split_pct(&pct, 50);
            for (i, c) in chunks.iter().enumerate() {
                let prefix = if i == 0 { "UTF-8''" } else { "" };
                let _ = write!(h, ";\r\n filename*{i}*={prefix}{c}");
            }
            h.push_str("\r\n");
        } else {
            let _ = write!(
                h,
                "Content-Disposition: {disposition};\r\n filename*=UTF-8''{pct}\r\n"
            );
        }
    }
    if let Some(cid) = cid {
        let _ = write!(h, "Content-ID: <{cid}>\r\n");
    }
    if text {
        h.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        let mut o = h.into_bytes();
        o.extend_from_slice(&quoted_printable(&content));
        o
    } else {
        h.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        let mut o = h.into_bytes();
        o.extend_from_slice(&base64_lines(&content));
        o
    }
}

/// A short plain message embedded in forwards.
fn forwarded_message(seed: u64, index: usize) -> Vec<u8> {
    let mut r = Rng::new(seed, index as u64, 9);
    let (name, addr) = *r.pick(SENDERS);
    let t = 1_650_000_000 + r.below(10_000_000) as i64;
    let mut s = format!(
        "From: {}\r\nTo: someone@example.test\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <fwd.{index}.{seed:x}@gen.mailsync.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        mailbox_header(name, addr),
        encode_subject("Original message (forwarded)", SubjectEncoding::Ascii),
        rfc5322_date(t, 0),
    );
    for _ in 0..3 + r.below(5) {
        let words: Vec<&str> = (0..8).map(|_| *r.pick(WORDS)).collect();
        let _ = write!(s, "{}.\r\n", words.join(" "));
    }
    s.into_bytes()
}

fn multipart(subtype: &str, boundary: &str, parts: Vec<Vec<u8>>) -> Vec<u8> {
    multipart_with(subtype, boundary, parts, "")
}

fn multipart_with(subtype: &str, boundary: &str, parts: Vec<Vec<u8>>, params: &str) -> Vec<u8> {
    let mut out = format!("Content-Type: multipart/{subtype};\r\n boundary=\"{boundary}\"{params}\r\n\r\nThis is a multi-part message in MIME format.\r\n").into_bytes();
    // The CRLF before each delimiter belongs to the delimiter, so a part's bytes are exactly
    // its content (text parts end with their own line break).
    for p in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// encodings

/// LF -> CRLF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Unicode -> ISO-8859-1 bytes (chars outside Latin-1 become `?`).
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            if (c as u32) < 256 {
                c as u32 as u8
            } else {
                b'?'
            }
        })
        .collect()
}

/// Unicode -> windows-1252 bytes for the few non-Latin-1 characters we use.
fn cp1252(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '€' => 0x80,
            '…' => 0x85,
            '‰' => 0x89,
            'Œ' => 0x8C,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '–' => 0x96,
            '—' => 0x97,
            c if (c as u32) < 256 => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Kana text -> ISO-2022-JP bytes (JIS X 0208 rows 1, 4 and 5 are linear in Unicode).
fn iso2022jp(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_jis = false;
    for c in s.chars() {
        let u = c as u32;
        let jis = match u {
            0x3041..=0x3093 => Some(0x2421 + (u - 0x3041)),
            0x30A1..=0x30F6 => Some(0x2521 + (u - 0x30A1)),
            0x30FC => Some(0x213C),
            0x3001 => Some(0x2122),
            0x3002 => Some(0x2123),
            0x3000 => Some(0x2121),
            _ => None,
        };
        match jis {
            Some(j) => {
                if !in_jis {
                    out.extend_from_slice(b"\x1b$B");
                    in_jis = true;
                }
                out.push((j >> 8) as u8);
                out.push((j & 0xFF) as u8);
            }
            None => {
                if in_jis {
                    out.extend_from_slice(b"\x1b(B");
                    in_jis = false;
                }
                out.push(if c.is_ascii() { c as u8 } else { b'?' });
            }
        }
    }
    if in_jis {
        out.extend_from_slice(b"\x1b(B");
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648) with padding, on one line.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Base64 in 76-column CRLF lines (57 input bytes per line).
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 57 * 78 + 80);
    for line in data.chunks(57) {
        let mut groups = line.chunks_exact(3);
        for g in &mut groups {
            let n = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
                B64[n as usize & 63],
            ]);
        }
        let rest = groups.remainder();
        if !rest.is_empty() {
            out.extend_from_slice(base64(rest).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable (RFC 2045) of text with LF or CRLF line ends; output lines are CRLF,
/// <= 76 chars.
fn quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 11 / 10);
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let plain = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece_len = if plain { 1 } else { 3 };
            if col + piece_len > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if plain {
                out.push(b);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += piece_len;
        }
        out.extend_from_slice(b"\r\n");
    }
    // split() yields a final piece after the last LF (empty if the data ends with one): it
    // gets no line break of its own
    out.truncate(out.len() - 2);
    out
}

/// RFC 2047 encoded words (each <= 75 chars), split on character boundaries.
fn encode_words(text: &str, charset: &str, enc: u8) -> String {
    let to_bytes = |s: &str| -> Vec<u8> {
        match charset {
            "ISO-8859-1" => latin1(s),
            "windows-1252" => cp1252(s),
            "ISO-2022-JP" => iso2022jp(s),
            _ => s.as_bytes().to_vec(),
        }
    };
    let encode = |bytes: &[u8]| -> String {
        if enc == b'B' {
            base64(bytes)
        } else {
            let mut s = String::new();
            for &b in bytes {
                match b {
                    b' ' => s.push('_'),
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                        s.push(b as char)
                    }
                    _ => {
                        let _ = write!(s, "={b:02X}");
                    }
                }
            }
            s
        }
    };
    let overhead = charset.len() + 7; // =?cs?X?...?=
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let mut next = cur.clone();
        next.push(c);
        if !cur.is_empty() && encode(&to_bytes(&next)).len() + overhead > 75 {
            words.push(std::mem::take(&mut cur));
            cur.push(c);
        } else {
            cur = next;
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let encoded: Vec<String> = words
        .iter()
        .map(|w| format!("=?{charset}?{}?{}?=", enc as char, encode(&to_bytes(w))))
        .collect();
    encoded.join("\r\n ")
}

/// The Subject value: the text before the ` #<index>` suffix is encoded as the variant says,
/// the suffix stays ASCII.
fn encode_subject(text: &str, enc: SubjectEncoding) -> String {
    let (prefix, rest) = match text.strip_prefix("Re: ") {
        Some(rest) => ("Re: ", rest),
        None => ("", text),
    };
    let (body, suffix) = match rest.rfind(" #") {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let encoded = match enc {
        SubjectEncoding::Ascii => return text.to_string(),
        SubjectEncoding::Utf8Base64 => encode_words(body, "UTF-8", b'B'),
        SubjectEncoding::Utf8Q => encode_words(body, "UTF-8", b'Q'),
        SubjectEncoding::Latin1Q => encode_words(body, "ISO-8859-1", b'Q'),
        SubjectEncoding::Iso2022JpBase64 => encode_words(body, "ISO-2022-JP", b'B'),
        SubjectEncoding::Windows1252Q => encode_words(body, "windows-1252", b'Q'),
    };
    format!("{prefix}{encoded}{suffix}")
}

/// `Name <addr>`, the name quoted or RFC 2047 encoded as needed.
fn mailbox_header(name: &str, addr: &str) -> String {
    if !name.is_ascii() {
        format!("{} <{addr}>", encode_words(name, "UTF-8", b'B'))
    } else if name.chars().any(|c| "()<>[]:;@\\,.\"'".contains(c)) {
        format!("\"{}\" <{addr}>", name.replace('"', "\\\""))
    } else {
        format!("{name} <{addr}>")
    }
}

/// RFC 2231 percent-encoding (attr-char stays as is).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Splits percent-encoded text into pieces of about `n` chars without cutting a `%XX`.
fn split_pct(s: &str, n: usize) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while start < b.len() {
        let mut end = (start + n).min(b.len());
        // do not cut inside %XX
        if end < b.len() {
            if b.get(end - 1) == Some(&b'%') {
                end -= 1;
            } else if end >= 2 && b.get(end - 2) == Some(&b'%') {
                end -= 2;
            }
        }
        out.push(s[start..end].to_string());
        start = end;
    }
    out
}

/// `Tue, 14 Nov 2023 22:13:20 +0100` for Unix time `t` shown in zone `tz` (minutes east).
fn rfc5322_date(t: i64, tz: i32) -> String {
    let local = t + i64::from(tz) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let sign = if tz < 0 { '-' } else { '+' };
    let tza = tz.abs();
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        WD[days.rem_euclid(7) as usize],
        MON[(m - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        tza / 60,
        tza % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `len` lowercase letters from a fixed linear congruential sequence (`seed`): text that
/// hardly compresses, for tests of limits a database checks after compressing a value
/// (PostgreSQL compresses a long index key before refusing it).
#[must_use]
pub fn incompressible(len: usize, seed: u64) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from(b'a' + u8::try_from((x >> 33) % 26).unwrap_or(0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0, 0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000, 60),
            "Tue, 14 Nov 2023 23:13:20 +0100"
        );
        assert_eq!(
            rfc5322_date(1_700_000_000, -300),
            "Tue, 14 Nov 2023 17:13:20 -0500"
        );
        assert_eq!(
            rfc5322_date(951_782_400, 0),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn base64_lines_match_the_plain_encoder() {
        for n in [0, 1, 2, 3, 56, 57, 58, 200] {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let lines = String::from_utf8(base64_lines(&data)).unwrap();
            assert_eq!(lines.replace("\r\n", ""), base64(&data));
            assert!(lines.split("\r\n").all(|l| l.len() <= 76));
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn qp_soft_breaks_and_escapes() {
        let long = "a".repeat(100);
        let qp = String::from_utf8(quoted_printable(format!("{long}\nx=y \n").as_bytes())).unwrap();
        assert!(qp.lines().all(|l| l.len() <= 76), "{qp}");
        assert!(qp.contains("x=3Dy=20\r\n"), "{qp}");
        assert!(qp.ends_with("\r\n") && !qp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn iso2022jp_kana() {
        // テスト = 25 46, 25 39, 25 48 in JIS X 0208
        assert_eq!(iso2022jp("テスト"), b"\x1b$B%F%9%H\x1b(B");
    }

    #[test]
    fn encoded_words_stay_short() {
        let s = encode_words(&"Grüße aus München ".repeat(6), "UTF-8", b'Q');
        for w in s.split("\r\n ") {
            assert!(w.len() <= 75, "{w}");
            assert!(w.starts_with("=?UTF-8?Q?") && w.ends_with("?="));
        }
    }

    #[test]
    fn rfc2231_continuations_do_not_cut_escapes() {
        let pct = percent_encode("Übersicht 2024 – final.xlsx");
        for piece in split_pct(&pct, 7) {
            let bytes = piece.as_bytes();
            let n = bytes.len();
            assert!(
                !(n >= 1 && bytes[n - 1] == b'%' || n >= 2 && bytes[n - 2] == b'%'),
                "{piece}"
            );
        }
        assert_eq!(split_pct(&pct, 7).concat(), pct);
    }
}
