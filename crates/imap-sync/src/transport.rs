//! TCP and TLS (rustls with ring, platform roots plus an optional extra CA) byte streams.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::ImapConfig;
use crate::error::Error;

/// The byte stream under an IMAP connection.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("Transport::Plain"),
            Self::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn millis_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The largest single response accepted (a line plus its literals): bounds memory whatever a
/// server sends (a line that never ends, a huge literal). Larger messages are not fetched.
pub(crate) const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// A transport that records when bytes last moved, so time limits can be about inactivity
/// (a 50 MB body on a slow link is fine as long as data keeps coming), and how much of the
/// current response has arrived and since when, so a response can be bounded in size and in
/// useful progress (a server trickling an endless line a byte at a time is never inactive).
#[derive(Debug)]
pub(crate) struct Tracked {
    pub inner: Transport,
    shared: Arc<Shared>,
    nesting: Nesting,
}

/// Where a lexical scan of the server's bytes stands: enough to count parenthesis nesting
/// outside quoted strings and literals, incrementally across reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    Quoted,
    QuotedEscape,
    /// Inside `{123`: the literal's length so far.
    LiteralLength(u64),
    /// After `{123}`, waiting for the line break that starts the literal.
    LiteralStart(u64),
    /// Inside a literal: bytes left.
    Literal(u64),
}

/// Parenthesis nesting of the response being read.
#[derive(Debug)]
pub(crate) struct Nesting {
    lex: Lex,
    depth: u32,
    max: u32,
    /// The last byte scanned was a `]` outside strings and literals.
    after_bracket: bool,
    /// The last bytes scanned outside strings and literals, upper-cased, one per byte of the
    /// integer (to spot `INTERNALDATE ` before a `NIL`).
    tail: u128,
    /// Rewriting an `INTERNALDATE NIL`: how many of its `NIL` bytes are done (0 = not).
    nil_date: u8,
    /// Where the current response line is: a status response's text is read differently.
    line: Line,
}

/// Where the scanner is in the current response line. imap-proto reads the text of a status
/// response (`tag OK …`, `* NO …`, `+ …`) as plain text up to the line break, so a `{12}` or a
/// `"` there must not be taken for a literal or a string: a literal swallowing the next line
/// would hide that line from the rules below (found by fuzzing: `* OK {12}` before a line
/// that panics imap-proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In the first word (a tag or `*`).
    Tag,
    /// In the second word: its letters so far, upper-cased (a status name has at most 7).
    Status(u64),
    /// In a status response's or a continuation's text, up to the line break.
    Text,
    /// In any other response (lexed: strings, literals, parentheses).
    Data,
}

impl Line {
    /// The line state after `b` (scanned outside strings and literals).
    fn next(self, b: u8) -> Line {
        const STATUS: [&[u8]; 5] = [b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"];
        match (self, b) {
            (_, b'\n') => Line::Start,
            (Line::Start, b'+') => Line::Text,
            (Line::Start | Line::Tag, b' ') => Line::Status(0),
            (Line::Start, _) => Line::Tag,
            (Line::Status(word), b' ') => {
                let status = STATUS
                    .iter()
                    .any(|s| s.iter().fold(0u64, |acc, &c| (acc << 8) | u64::from(c)) == word);
                if status { Line::Text } else { Line::Data }
            }
            (Line::Status(word), _) if b.is_ascii_alphabetic() && word >> 56 == 0 => {
                Line::Status((word << 8) | u64::from(b.to_ascii_uppercase()))
            }
            (Line::Status(_), _) => Line::Data,
            (line, _) => line,
        }
    }
}

/// `INTERNALDATE ` as the low 13 bytes of [`Nesting::tail`].
const INTERNALDATE_SP: u128 = u128::from_be_bytes(*b"\0\0\0INTERNALDATE ");
const TAIL_13: u128 = (1u128 << (13 * 8)) - 1;
/// `[BADCHARSET ` as the low 12 bytes of [`Nesting::tail`].
const BADCHARSET_SP: u128 = u128::from_be_bytes(*b"\0\0\0\0[BADCHARSET ");
const TAIL_12: u128 = (1u128 << (12 * 8)) - 1;
/// `* METADATA` at the start of a line, as the low 11 bytes of [`Nesting::tail`].
const LINE_METADATA: u128 = u128::from_be_bytes(*b"\0\0\0\0\0\n* METADATA");
const TAIL_11: u128 = (1u128 << (11 * 8)) - 1;

impl Nesting {
    /// A scanner at the start of a response.
    pub(crate) fn new(max: u32) -> Self {
        Self {
            lex: Lex::Normal,
            depth: 0,
            max,
            after_bracket: false,
            // The stream starts at the start of a line.
            tail: u128::from(b'\n'),
            nil_date: 0,
            line: Line::Start,
        }
    }

    /// Scans `bytes`; false once the nesting went deeper than the limit.
    ///
    /// Also defuses one input that panics imap-proto 0.17 (found by fuzzing): a response code
    /// followed directly by a non-ASCII byte (`* OK [ALERT]\xff...`) makes it slice a lossy
    /// UTF-8 string inside a character. Outside strings and literals a `]` may only be followed
    /// by ASCII (a space, `<`, `)`, a line break), so such a byte is invalid protocol anyway and
    /// is replaced by a space, length unchanged.
    ///
    /// And a second one: `INTERNALDATE NIL` (the date is not an nstring in RFC 3501, but
    /// imap-proto reads one and unwraps it, rfc3501/mod.rs:892). Its `NIL` becomes `"x"`, same
    /// length: a date that does not parse, which the conversion leaves unknown.
    ///
    /// And a third: imap-proto unwraps the UTF-8 of a METADATA response's mailbox, entry names
    /// and values (rfc5464.rs:126), so a non-UTF-8 byte there panics. mailsync never asks for
    /// METADATA (RFC 5464), so a line starting `* METADATA` is made `* METADATX`: an unknown
    /// response, skipped like any other.
    ///
    /// The first rule holds wherever imap-proto reads a response code, so the scanner follows
    /// the lines as imap-proto does ([`Line`]): a status response's text is plain text, with no
    /// strings or literals in it. The one code imap-proto reads strings (even literals) in is
    /// `BADCHARSET (charsets)`, which mailsync only needs by name: its space becomes a tab, so
    /// imap-proto leaves the whole code in the text, where [`ResponseCode::split_text`] still
    /// finds the name.
    pub(crate) fn scan(&mut self, bytes: &mut [u8]) -> bool {
        let mut i = 0;
        while let Some(&mut b) = bytes.get_mut(i) {
            i += 1;
            let b = self.rewrite_nil_date(b);
            if let Some(x) = bytes.get_mut(i - 1) {
                *x = b;
            }
            let after_bracket = std::mem::take(&mut self.after_bracket);
            self.lex = match self.lex {
                Lex::Literal(left) => {
                    // Skips the literal's bytes in one step.
                    let avail = (bytes.len() - i + 1) as u64;
                    let take = left.min(avail);
                    i += usize::try_from(take).unwrap_or(usize::MAX) - 1;
                    if take == left {
                        Lex::Normal
                    } else {
                        Lex::Literal(left - take)
                    }
                }
                Lex::Quoted => {
                    self.tail = (self.tail << 8) | u128::from(b.to_ascii_uppercase());
                    match b {
                        b'\\' => Lex::QuotedEscape,
                        b'"' => Lex::Normal,
                        b'\n' => {
                            self.line = Line::Start;
                            Lex::Normal
                        }
                        _ => Lex::Quoted,
                    }
                }
                Lex::QuotedEscape => Lex::Quoted,
                Lex::LiteralLength(n) => match b {
                    b'0'..=b'9' => {
                        Lex::LiteralLength(n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
                    }
                    b'+' | b'-' => Lex::LiteralLength(n),
                    b'}' => Lex::LiteralStart(n),
                    _ => self.normal(b),
                },
                Lex::LiteralStart(n) => match b {
                    b'\r' => Lex::LiteralStart(n),
                    b'\n' if n > 0 => Lex::Literal(n),
                    _ => self.normal(b),
                },
                Lex::Normal => {
                    if after_bracket
                        && b >= 0x80
                        && let Some(x) = bytes.get_mut(i - 1)
                    {
                        *x = b' ';
                    }
                    self.after_bracket = b == b']';
                    self.tail = (self.tail << 8) | u128::from(b.to_ascii_uppercase());
                    if self.tail & TAIL_11 == LINE_METADATA
                        && let Some(x) = bytes.get_mut(i - 1)
                    {
                        *x = b'X';
                    }
                    self.line = self.line.next(b);
                    if self.line == Line::Text {
                        if self.tail & TAIL_12 == BADCHARSET_SP
                            && let Some(x) = bytes.get_mut(i - 1)
                        {
                            *x = b'\t';
                        }
                        Lex::Normal
                    } else {
                        self.normal(b)
                    }
                }
            };
            if self.depth > self.max {
                return false;
            }
        }
        true
    }

    /// The byte to scan in place of `b`: `"x"` for the `NIL` of an `INTERNALDATE NIL` (a `"`
    /// closes the string early when the `NIL` turns out to be something else).
    fn rewrite_nil_date(&mut self, b: u8) -> u8 {
        match self.nil_date {
            0 if matches!(self.lex, Lex::Normal)
                && (b == b'N' || b == b'n')
                && self.tail & TAIL_13 == INTERNALDATE_SP =>
            {
                self.nil_date = 1;
                b'"'
            }
            1 if b == b'I' || b == b'i' => {
                self.nil_date = 2;
                b'x'
            }
            1 | 2 => {
                self.nil_date = 0;
                b'"'
            }
            // Inside a string imap-proto can still reach the words (fuzzing: after a quoted
            // string left open at the line end it parses on from an inner `FETCH (`): `NIL`
            // becomes `NIX` there, which no parser takes for a date, quoting unchanged.
            0 if matches!(self.lex, Lex::Quoted)
                && (b == b'N' || b == b'n')
                && self.tail & TAIL_13 == INTERNALDATE_SP =>
            {
                self.nil_date = 3;
                b
            }
            3 if b == b'I' || b == b'i' => {
                self.nil_date = 4;
                b
            }
            4 if b == b'L' || b == b'l' => {
                self.nil_date = 0;
                b'X'
            }
            3 | 4 => {
                self.nil_date = 0;
                b
            }
            _ => b,
        }
    }

    fn normal(&mut self, b: u8) -> Lex {
        match b {
            b'(' => self.depth += 1,
            b')' => self.depth = self.depth.saturating_sub(1),
            // The end of a response (a line break outside a literal).
            b'\n' => {
                self.depth = 0;
                self.line = Line::Start;
            }
            b'"' => return Lex::Quoted,
            b'{' => return Lex::LiteralLength(0),
            _ => {}
        }
        Lex::Normal
    }
}

#[derive(Debug)]
struct Shared {
    /// When bytes last moved (ms since process start).
    last: AtomicU64,
    /// Bytes of the response being read (0 between responses).
    response_bytes: AtomicU64,
    /// When its first byte arrived (ms since process start).
    response_start: AtomicU64,
    /// Bytes read since the last line feed.
    since_lf: AtomicU64,
    /// When the first byte after the last line feed arrived (ms since process start).
    line_start: AtomicU64,
    /// Set when a response nested deeper than the limit.
    too_deep: std::sync::atomic::AtomicBool,
    /// The most bytes accepted without a line feed.
    max_line: u64,
}

/// The shared progress clock of a [`Tracked`] transport.
#[derive(Debug, Clone)]
pub(crate) struct ProgressClock(Arc<Shared>);

impl ProgressClock {
    /// Time since bytes last moved.
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(
            millis_since_start().saturating_sub(self.0.last.load(Ordering::Relaxed)),
        )
    }

    /// A response was read completely: the next one starts from zero.
    pub fn response_done(&self) {
        self.0.response_bytes.store(0, Ordering::Relaxed);
    }

    /// Did the current response exceed [`MAX_RESPONSE_BYTES`], or a line the line limit?
    pub fn response_too_large(&self) -> bool {
        self.0.response_bytes.load(Ordering::Relaxed) > MAX_RESPONSE_BYTES
            || self.0.since_lf.load(Ordering::Relaxed) > self.0.max_line
    }

    /// Has a line without a line break been arriving for longer than `limit`?
    pub fn line_stalled(&self, limit: Duration) -> bool {
        self.0.since_lf.load(Ordering::Relaxed) > 0
            && u128::from(
                millis_since_start().saturating_sub(self.0.line_start.load(Ordering::Relaxed)),
            ) > limit.as_millis()
    }

    /// Did a response nest deeper than the limit?
    pub fn too_deep(&self) -> bool {
        self.0.too_deep.load(Ordering::Relaxed)
    }

    /// Has the current response been arriving for longer than `grace` at less than
    /// `min_rate` bytes per second on average (no useful progress)?
    pub fn response_stalled(&self, grace: Duration, min_rate: u64) -> bool {
        let bytes = self.0.response_bytes.load(Ordering::Relaxed);
        if bytes == 0 {
            return false;
        }
        let age_ms =
            millis_since_start().saturating_sub(self.0.response_start.load(Ordering::Relaxed));
        if u128::from(age_ms) <= grace.as_millis() {
            return false;
        }
        u128::from(bytes) * 1000 < u128::from(min_rate) * u128::from(age_ms)
    }
}

impl Tracked {
    /// `max_line`: the most bytes accepted without a line feed; `max_nesting`: the deepest
    /// parenthesis nesting.
    pub fn new(inner: Transport, max_line: u64, max_nesting: u32) -> (Self, ProgressClock) {
        let shared = Arc::new(Shared {
            last: AtomicU64::new(millis_since_start()),
            response_bytes: AtomicU64::new(0),
            response_start: AtomicU64::new(0),
            since_lf: AtomicU64::new(0),
            line_start: AtomicU64::new(0),
            too_deep: std::sync::atomic::AtomicBool::new(false),
            max_line,
        });
        (
            Self {
                inner,
                shared: shared.clone(),
                nesting: Nesting::new(max_nesting),
            },
            ProgressClock(shared),
        )
    }

    fn touch(&self) {
        self.shared
            .last
            .store(millis_since_start(), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        if n > 0 {
            this.touch();
            let s = &this.shared;
            let fresh = buf.filled_mut().get_mut(before..).unwrap_or_default();
            if !this.nesting.scan(fresh) {
                s.too_deep.store(true, Ordering::Relaxed);
                // Stop reading before the parser sees it: the wire turns this into a typed error.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "nesting too deep",
                )));
            }
            match fresh.iter().rposition(|&b| b == b'\n') {
                Some(p) => {
                    let rest = (fresh.len() - p - 1) as u64;
                    s.since_lf.store(rest, Ordering::Relaxed);
                    if rest > 0 {
                        s.line_start.store(millis_since_start(), Ordering::Relaxed);
                    }
                }
                None => {
                    if s.since_lf.fetch_add(n, Ordering::Relaxed) == 0 {
                        s.line_start.store(millis_since_start(), Ordering::Relaxed);
                    }
                    if s.since_lf.load(Ordering::Relaxed) > s.max_line {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "line too long",
                        )));
                    }
                }
            }
            if s.response_bytes.fetch_add(n, Ordering::Relaxed) == 0 {
                s.response_start
                    .store(millis_since_start(), Ordering::Relaxed);
            }
            if s.response_bytes.load(Ordering::Relaxed) > MAX_RESPONSE_BYTES {
                // Stop reading: the wire turns this into a typed error.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response too large",
                )));
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether `host` names this machine (plaintext is allowed there without opt-in).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Opens the TCP connection (bounded by the connect timeout).
pub(crate) async fn tcp(cfg: &ImapConfig) -> Result<TcpStream, Error> {
    let unreachable = |source| Error::Unreachable {
        host: cfg.host.clone(),
        port: cfg.port,
        source,
    };
    let stream = tokio::time::timeout(
        cfg.timeouts.connect,
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| unreachable(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
    .map_err(unreachable)?;
    // IMAP is request/response with small commands; Nagle only adds latency.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Built TLS client configurations by extra CA (its PEM; none: platform roots only).
type ConfigsByCa = HashMap<Option<Vec<u8>>, Arc<rustls::ClientConfig>>;

/// The rustls client configuration: ring, platform roots, plus the extra CA when given.
///
/// Built once per extra CA (by its contents) and shared by every connection of the process:
/// the platform verifier inside loads the system's root store on first use and keeps it, so a
/// configuration per connection kept one copy of the roots per connection (hundreds of KiB
/// each, for a daemon with thousands of accounts MiBs per ten of them). Sharing it also lets
/// connections to one server resume TLS sessions.
pub(crate) fn tls_config(cfg: &ImapConfig) -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIGS: OnceLock<Mutex<ConfigsByCa>> = OnceLock::new();
    let pem = match &cfg.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| Error::TlsConfig {
            reason: format!("cannot read CA file {}", path.display()),
            source: Some(Box::new(e)),
        })?),
        None => None,
    };
    let configs = CONFIGS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(c) = configs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&pem)
    {
        return Ok(c.clone());
    }
    let config = build_tls_config(cfg, pem.as_deref())?;
    configs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pem, config.clone());
    Ok(config)
}

fn build_tls_config(
    cfg: &ImapConfig,
    pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    if let (Some(path), Some(pem)) = (&cfg.ca_file, pem) {
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            extra.push(cert.map_err(|e| Error::TlsConfig {
                reason: format!("invalid PEM in {}", path.display()),
                source: Some(Box::new(e)),
            })?);
        }
        if extra.is_empty() {
            return Err(Error::TlsConfig {
                reason: format!("no certificate in {}", path.display()),
                source: None,
            });
        }
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()).map_err(
            |e| Error::TlsConfig {
                reason: "cannot build the certificate verifier".into(),
                source: Some(Box::new(e)),
            },
        )?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig {
            reason: "no usable TLS protocol version".into(),
            source: Some(Box::new(e)),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `tcp` (bounded by the connect timeout).
pub(crate) async fn tls(cfg: &ImapConfig, tcp: TcpStream) -> Result<Transport, Error> {
    let config = tls_config(cfg)?;
    let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::TlsConfig {
        reason: format!("invalid server name {host:?}"),
        source: Some(Box::new(e)),
    })?;
    // A handshake that failed without a TLS-level error (no rustls error inside: the peer
    // closed or reset the connection, or never answered) is the network failing, not a
    // certificate or protocol problem for the user to fix.
    let tls_err = |source: io::Error| {
        let tls_level = source
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if tls_level {
            Error::Tls {
                host: cfg.host.clone(),
                source,
            }
        } else {
            Error::Unreachable {
                host: cfg.host.clone(),
                port: cfg.port,
                source,
            }
        }
    };
    let stream = tokio::time::timeout(
        cfg.timeouts.connect,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        tls_err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        ))
    })?
    .map_err(tls_err)?;
    Ok(Transport::Tls(Box::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(max: u32, chunks: &[&[u8]]) -> bool {
        let mut n = Nesting::new(max);
        chunks.iter().all(|c| n.scan(&mut c.to_vec()))
    }

    #[test]
    fn nesting_counts_parentheses_outside_strings_and_literals() {
        assert!(depth_ok(3, &[b"* 1 FETCH (A ((B)) C)\r\n"]));
        assert!(!depth_ok(3, &[b"* 1 FETCH (A (((B))))\r\n"]));
        // Across reads.
        assert!(!depth_ok(3, &[b"* 1 FETCH ((", b"((x"]));
        // A line break ends the response: depth starts again.
        assert!(depth_ok(3, &[b"* (((\r\n", b"* (((\r\n"]));
        // Quoted strings (with escapes) and literals are not counted, even split across reads.
        assert!(depth_ok(2, &[b"* 1 FETCH (X \"((\\\"(((\" Y)\r\n"]));
        assert!(depth_ok(
            2,
            &[b"* 1 FETCH (BODY[] {6}\r\n((", b"(((", b"))\r\n"]
        ));
        assert!(depth_ok(2, &[b"* 1 FETCH (BODY[] {6+}\r\n(((((())\r\n"]));
        // After the literal, counting resumes.
        assert!(!depth_ok(2, &[b"* 1 FETCH (BODY[] {2}\r\nab ((("]));
    }

    fn scanned(chunks: &[&[u8]]) -> Vec<u8> {
        let mut n = Nesting::new(32);
        let mut out = Vec::new();
        for c in chunks {
            let mut c = c.to_vec();
            assert!(n.scan(&mut c));
            out.extend(c);
        }
        out
    }

    #[test]
    fn internaldate_nil_becomes_an_unparsable_string() {
        assert_eq!(
            scanned(&[b"* 1 FETCH (UID 5 INTERNALDATE NIL FLAGS ())\r\n"]),
            b"* 1 FETCH (UID 5 INTERNALDATE \"x\" FLAGS ())\r\n"
        );
        // Split across reads, any case.
        assert_eq!(
            scanned(&[b"* 1 FETCH (internal", b"date n", b"il)\r\n"]),
            b"* 1 FETCH (internaldate \"x\")\r\n"
        );
        // Not NIL after all: the string is closed early (invalid either way).
        assert_eq!(
            scanned(&[b"* 1 FETCH (INTERNALDATE NO)\r\n"]),
            b"* 1 FETCH (INTERNALDATE \"\")\r\n"
        );
        // Inside a string it becomes NIX (imap-proto can reach it there), quoting unchanged.
        assert_eq!(
            scanned(&[b"* 1 FETCH (ENVELOPE (\"INTERNALDATE NIL\"))\r\n"]),
            b"* 1 FETCH (ENVELOPE (\"INTERNALDATE NIX\"))\r\n"
        );
        // A real date, other words in strings, and literals stay as they are.
        for same in [
            &b"* 1 FETCH (INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n"[..],
            b"* 1 FETCH (ENVELOPE (\"INTERNALDATE NIB\"))\r\n",
            b"* 1 FETCH (BODY[] {16}\r\nINTERNALDATE NIL)\r\n",
        ] {
            assert_eq!(scanned(&[same]), same);
        }
        // What imap-proto then makes of it: no panic, no date.
        crate::fuzzing::imap_responses(b"* 1 FETCH (UID 5 INTERNALDATE NIL)\r\n");
    }

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1",
            "localhost",
            "::1",
            "[::1]",
            "127.1.2.3",
            "LOCALHOST",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.org", "10.0.0.1", "::2", "localhost.example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
