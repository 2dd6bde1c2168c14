//! The raw command layer over async-imap: tagged commands written by us, every response read
//! with `read_response` and converted at once into owned types, tagged `NO`/`BAD` turned into
//! typed errors, every wait bounded by a timeout.
//!
//! Nothing here uses async-imap's high-level commands: they ignore tagged `NO`/`BAD`, drop
//! response codes and push untagged data into a lossy channel. async-imap is used only as the
//! framing and parsing layer (`ImapStream` + imap-proto). Its parser stops the stream for good
//! on input it cannot parse; that surfaces here as [`Error::ConnectionLost`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::Duration;

use async_imap::imap_proto::{
    self, AttributeValue, MailboxDatum, MessageSection, Response as P, SectionPath, StatusAttribute,
};
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use crate::config::Timeouts;
use crate::error::{Error, ResponseCode};
use crate::mime::{Envelope, EnvelopeAddress, Part};
use crate::transport::{ProgressClock, Tracked, Transport};

/// Status of a condition response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// The completion of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub code: Option<ResponseCode>,
    pub text: String,
}

/// A response, owned.
#[derive(Debug)]
pub(crate) enum Response {
    Tagged {
        tag: String,
        status: Status,
        code: Option<ResponseCode>,
        text: String,
    },
    Continue(String),
    Untagged(Untagged),
}

/// Server data not tied to a tag.
#[derive(Debug)]
pub(crate) enum Untagged {
    Cond {
        status: Status,
        code: Option<ResponseCode>,
        text: String,
    },
    /// `CAPABILITY` and `ENABLED` (imap-proto maps both to capabilities).
    Capabilities(Vec<String>),
    Exists(u32),
    Expunge,
    Vanished {
        earlier: bool,
        uids: Vec<(u32, u32)>,
    },
    Fetch(Box<FetchData>),
    List(ListEntry),
    Status {
        mailbox: String,
        items: StatusItems,
    },
    Search(Vec<u32>),
    Other,
}

impl Untagged {
    /// Whether this reports a change to the selected mailbox (what IDLE waits for).
    pub fn is_mailbox_change(&self) -> bool {
        matches!(
            self,
            Self::Exists(_) | Self::Expunge | Self::Vanished { .. } | Self::Fetch(_)
        )
    }
}

/// A `LIST` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<String>,
    pub name: String,
}

/// `STATUS` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StatusItems {
    pub messages: Option<u32>,
    pub unseen: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// One `FETCH` response.
#[derive(Debug, Default)]
pub(crate) struct FetchData {
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub modseq: Option<u64>,
    pub internal_date: Option<DateTime<Utc>>,
    pub size: Option<u32>,
    pub envelope: Option<Envelope>,
    pub structure: Option<Part>,
    /// `BODY[HEADER...]`.
    pub header: Option<Vec<u8>>,
    /// `BODY[]` (or `RFC822`).
    pub body: Option<Vec<u8>>,
    /// `BODY[<part>]<offset>` sections, by part path.
    pub sections: Vec<(String, Vec<u8>)>,
    /// `PREVIEW` (RFC 8970); imap-proto discards it, so it is read from the raw bytes.
    pub preview: Option<String>,
    pub thread_id: Option<String>,
}

/// A command to send: text and literals.
#[derive(Clone)]
pub(crate) struct Cmd {
    verb: String,
    parts: Vec<Piece>,
    sensitive: bool,
}

#[derive(Clone)]
enum Piece {
    Text(String),
    Literal(Vec<u8>),
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sensitive {
            return write!(f, "{} ***", self.verb);
        }
        for p in &self.parts {
            match p {
                Piece::Text(t) => f.write_str(t)?,
                Piece::Literal(l) => write!(f, "{{{} bytes}}", l.len())?,
            }
        }
        Ok(())
    }
}

impl Cmd {
    /// A command starting with `verb` (e.g. `UID FETCH`).
    pub fn new(verb: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            parts: vec![Piece::Text(verb.to_owned())],
            sensitive: false,
        }
    }

    /// Appends ` text` verbatim.
    pub fn raw(mut self, text: &str) -> Self {
        self.push_text(" ");
        self.push_text(text);
        self
    }

    /// Appends ` "string"` (quoted) or a literal when the string cannot be quoted.
    pub fn astring(mut self, s: &str) -> Self {
        self.push_text(" ");
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            let mut q = String::with_capacity(s.len() + 2);
            q.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            self.push_text(&q);
        } else {
            self.parts.push(Piece::Literal(s.as_bytes().to_vec()));
        }
        self
    }

    /// Appends ` {n}` and the bytes.
    pub fn literal(mut self, bytes: Vec<u8>) -> Self {
        self.push_text(" ");
        self.parts.push(Piece::Literal(bytes));
        self
    }

    /// Keeps the arguments out of logs (credentials).
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    fn push_text(&mut self, t: &str) {
        if let Some(Piece::Text(last)) = self.parts.last_mut() {
            last.push_str(t);
        } else {
            self.parts.push(Piece::Text(t.to_owned()));
        }
    }
}

/// The outcome of one command: its untagged data and completion.
pub(crate) type CommandResult = Result<(Vec<Untagged>, Done), Error>;

/// What the next response of a running command is.
#[derive(Debug)]
pub(crate) enum Event {
    Data(Untagged),
    Done(Done),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    /// A command was sent and its completion not yet read. If a new command starts in this
    /// state, the previous caller was cancelled midway and the stream position is unknown.
    Busy,
    Dead,
}

/// One IMAP connection at the protocol level.
pub(crate) struct Wire {
    client: async_imap::Client<Tracked>,
    clock: ProgressClock,
    next_tag: u64,
    pub timeouts: Timeouts,
    pub literal_plus: bool,
    state: State,
    bye: Option<String>,
    pending: VecDeque<Response>,
    /// The verb of the command in flight, for errors.
    current: String,
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire")
            .field("state", &self.state)
            .field("next_tag", &self.next_tag)
            .finish_non_exhaustive()
    }
}

impl Wire {
    pub fn new(transport: Transport, timeouts: Timeouts) -> Self {
        let (tracked, clock) =
            Tracked::new(transport, timeouts.max_line_bytes, timeouts.max_nesting);
        Self {
            client: async_imap::Client::new(tracked),
            clock,
            next_tag: 1,
            timeouts,
            literal_plus: false,
            state: State::Ready,
            bye: None,
            pending: VecDeque::new(),
            current: String::new(),
        }
    }

    /// Gives the transport back (for STARTTLS). Only valid between commands.
    pub fn into_transport(self) -> Transport {
        self.client.into_inner().inner
    }

    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }

    fn lost(&mut self, source: Option<io::Error>) -> Error {
        self.state = State::Dead;
        Error::ConnectionLost {
            bye: self.bye.clone(),
            source,
        }
    }

    fn check_usable(&mut self) -> Result<(), Error> {
        match self.state {
            State::Ready => Ok(()),
            State::Dead => Err(self.lost(None)),
            State::Busy => Err(self.lost(Some(io::Error::other(format!(
                "the previous command ({}) was abandoned before its completion",
                self.current
            ))))),
        }
    }

    /// Reads one response. The read timeout is about inactivity: a large response is fine as
    /// long as bytes keep arriving.
    pub async fn read(&mut self) -> Result<Response, Error> {
        let limit = self.timeouts.read;
        // Also woken every second to check that a response in progress makes useful progress.
        let tick = Duration::from_secs(1);
        loop {
            let wait = limit
                .saturating_sub(self.clock.idle_for())
                .clamp(Duration::from_millis(10), tick);
            // `read_untimed` is cancel-safe, so it can be restarted after a timeout.
            match tokio::time::timeout(wait, self.read_untimed()).await {
                Ok(r) => return r,
                Err(_) if self.clock.line_stalled(self.timeouts.max_line_duration) => {
                    self.state = State::Dead;
                    return Err(Error::Timeout {
                        operation: "read (a line that never ends)",
                        seconds: self.timeouts.max_line_duration.as_secs(),
                    });
                }
                Err(_)
                    if self.clock.response_stalled(
                        self.timeouts.response_grace,
                        self.timeouts.min_response_rate,
                    ) =>
                {
                    self.state = State::Dead;
                    return Err(Error::Timeout {
                        operation: "read (a response making no useful progress)",
                        seconds: self.timeouts.response_grace.as_secs(),
                    });
                }
                Err(_) if self.clock.idle_for() < limit => continue,
                Err(_) => {
                    self.state = State::Dead;
                    return Err(Error::Timeout {
                        operation: "read",
                        seconds: limit.as_secs(),
                    });
                }
            }
        }
    }

    /// Reads one response with no time limit (IDLE waits on this inside its own bounds).
    /// Cancel-safe: a partly read response stays in async-imap's buffer.
    pub async fn read_untimed(&mut self) -> Result<Response, Error> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(r);
        }
        if self.state == State::Dead {
            return Err(self.lost(None));
        }
        match self.client.read_response().await {
            Ok(Some(data)) => {
                self.clock.response_done();
                let raw: &[u8] = data.borrow_owner();
                let resp = convert(data.parsed(), raw);
                if let Response::Untagged(Untagged::Cond {
                    status: Status::Bye,
                    text,
                    ..
                }) = &resp
                {
                    self.bye = Some(text.clone());
                }
                tracing::trace!(?resp, "imap <");
                Ok(resp)
            }
            Ok(None) => Err(self.lost(None)),
            Err(_) if self.clock.too_deep() => {
                self.state = State::Dead;
                Err(Error::NestingTooDeep {
                    limit: self.timeouts.max_nesting,
                })
            }
            Err(_) if self.clock.response_too_large() => {
                self.state = State::Dead;
                Err(Error::ResponseTooLarge {
                    limit: self.timeouts.max_line_bytes,
                })
            }
            // async-imap reports a response it cannot parse as `io::Error::other(message)`:
            // kind Other with a payload, which socket and TLS failures never are (they carry
            // an OS code or kind InvalidData). It closes its stream for good afterwards.
            Err(e) if e.kind() == io::ErrorKind::Other && e.get_ref().is_some() => {
                self.state = State::Dead;
                // The message only feeds the error text shown to the user.
                let text = e.to_string();
                let excerpt: String = text
                    .split_once(" during parsing of ")
                    .map_or(text.as_str(), |(_, rest)| rest)
                    .chars()
                    .take(200)
                    .collect();
                Err(Error::Unparsable { excerpt })
            }
            Err(e) => Err(self.lost(Some(e))),
        }
    }

    /// Writes bytes; the write timeout applies to each 64 KB piece (inactivity, not size).
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let limit = self.timeouts.write;
        let stream = self.client.get_mut();
        let res = async {
            for piece in bytes.chunks(64 * 1024) {
                match tokio::time::timeout(limit, stream.write_all(piece)).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(false),
                }
            }
            match tokio::time::timeout(limit, stream.flush()).await {
                Ok(r) => r.map(|()| true),
                Err(_) => Ok(false),
            }
        }
        .await;
        match res {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.state = State::Dead;
                Err(Error::Timeout {
                    operation: "write",
                    seconds: limit.as_secs(),
                })
            }
            Err(e) => Err(self.lost(Some(e))),
        }
    }

    /// Sends a command and returns its tag; read its responses with [`Wire::next`].
    pub async fn send(&mut self, cmd: &Cmd) -> Result<String, Error> {
        self.check_usable()?;
        let tag = format!("M{}", self.next_tag);
        self.next_tag += 1;
        self.state = State::Busy;
        self.current = cmd.verb.clone();
        tracing::debug!(%tag, ?cmd, "imap >");
        let mut buf: Vec<u8> = Vec::with_capacity(64);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        for piece in &cmd.parts {
            match piece {
                Piece::Text(t) => buf.extend_from_slice(t.as_bytes()),
                Piece::Literal(bytes) if self.literal_plus => {
                    buf.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                    buf.extend_from_slice(bytes);
                }
                Piece::Literal(bytes) => {
                    buf.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.write_all(&buf).await?;
                    buf.clear();
                    // Wait for the go-ahead; anything else is kept for the caller.
                    loop {
                        match self.read().await? {
                            Response::Continue(_) => break,
                            r @ Response::Tagged { .. } => {
                                // Refused before the literal was sent: the command is over.
                                let ours =
                                    matches!(&r, Response::Tagged { tag: t, .. } if *t == tag);
                                self.pending.push_back(r);
                                if ours {
                                    return Ok(tag);
                                }
                            }
                            other => self.pending.push_back(other),
                        }
                    }
                    buf.extend_from_slice(bytes);
                }
            }
        }
        buf.extend_from_slice(b"\r\n");
        self.write_all(&buf).await?;
        Ok(tag)
    }

    /// The next response of the command `tag`: untagged data, or its completion. A tagged
    /// `NO`/`BAD` is returned as [`Error::No`]/[`Error::Bad`] with its response code.
    pub async fn next(&mut self, tag: &str) -> Result<Event, Error> {
        loop {
            match self.read().await? {
                Response::Untagged(u) => return Ok(Event::Data(u)),
                Response::Continue(text) => {
                    // Only expected by commands that handle continuations themselves.
                    tracing::debug!(%text, "unexpected continuation request ignored");
                }
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } => {
                    if t != tag {
                        tracing::debug!(%t, "completion of an unknown tag ignored");
                        continue;
                    }
                    self.state = State::Ready;
                    let command = std::mem::take(&mut self.current);
                    return match status {
                        Status::Ok => Ok(Event::Done(Done { code, text })),
                        Status::No => Err(Error::No {
                            command,
                            code,
                            text,
                        }),
                        Status::Bad => Err(Error::Bad {
                            command,
                            code,
                            text,
                        }),
                        Status::PreAuth | Status::Bye => {
                            Err(Error::Protocol(format!("tagged {status:?} for {command}")))
                        }
                    };
                }
            }
        }
    }

    /// Runs a command whose untagged data is small, collecting it.
    pub async fn run(&mut self, cmd: &Cmd) -> Result<(Vec<Untagged>, Done), Error> {
        let tag = self.send(cmd).await?;
        let mut data = Vec::new();
        loop {
            match self.next(&tag).await? {
                Event::Data(u) => data.push(u),
                Event::Done(d) => return Ok((data, d)),
            }
        }
    }

    /// Sends several commands at once and collects each one's outcome (one round trip).
    pub async fn pipeline(&mut self, cmds: &[Cmd]) -> Result<Vec<CommandResult>, Error> {
        self.check_usable()?;
        let mut tags = Vec::with_capacity(cmds.len());
        let mut buf = Vec::new();
        for cmd in cmds {
            if cmd.parts.iter().any(|p| matches!(p, Piece::Literal(_))) {
                return Err(Error::Protocol("literals cannot be pipelined".into()));
            }
            let tag = format!("M{}", self.next_tag);
            self.next_tag += 1;
            buf.extend_from_slice(tag.as_bytes());
            buf.push(b' ');
            for p in &cmd.parts {
                if let Piece::Text(t) = p {
                    buf.extend_from_slice(t.as_bytes());
                }
            }
            buf.extend_from_slice(b"\r\n");
            tags.push((tag, cmd.verb.clone()));
        }
        self.state = State::Busy;
        self.current = "pipelined commands".into();
        self.write_all(&buf).await?;
        let mut results: Vec<Option<CommandResult>> = (0..tags.len()).map(|_| None).collect();
        let mut data: Vec<Vec<Untagged>> = (0..tags.len()).map(|_| Vec::new()).collect();
        let mut open = tags.len();
        // Untagged data belongs to the oldest command still running.
        let mut current = 0usize;
        while open > 0 {
            match self.read().await? {
                Response::Untagged(u) => {
                    if let Some(d) = data.get_mut(current) {
                        d.push(u);
                    }
                }
                Response::Continue(_) => {}
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text,
                } => {
                    let Some(i) = tags.iter().position(|(t, _)| *t == tag) else {
                        continue;
                    };
                    let command = tags.get(i).map(|(_, v)| v.clone()).unwrap_or_default();
                    let collected = data.get_mut(i).map(std::mem::take).unwrap_or_default();
                    let r = match status {
                        Status::Ok => Ok((collected, Done { code, text })),
                        Status::No => Err(Error::No {
                            command,
                            code,
                            text,
                        }),
                        _ => Err(Error::Bad {
                            command,
                            code,
                            text,
                        }),
                    };
                    if let Some(slot) = results.get_mut(i)
                        && slot.is_none()
                    {
                        *slot = Some(r);
                        open -= 1;
                    }
                    while results.get(current).is_some_and(Option::is_some) {
                        current += 1;
                    }
                }
            }
        }
        self.state = State::Ready;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Protocol("missing completion".into()))))
            .collect())
    }

    /// Marks the command in flight as finished by other means (IDLE's `DONE` handshake).
    pub fn set_ready(&mut self) {
        if self.state == State::Busy {
            self.state = State::Ready;
        }
    }

    /// Starts a command that expects a continuation request (`IDLE`, `AUTHENTICATE`).
    pub async fn send_expecting_continuation(&mut self, cmd: &Cmd) -> Result<String, Error> {
        self.check_usable()?;
        let tag = format!("M{}", self.next_tag);
        self.next_tag += 1;
        self.state = State::Busy;
        self.current = cmd.verb.clone();
        tracing::debug!(%tag, ?cmd, "imap >");
        let mut line = format!("{tag} ").into_bytes();
        for p in &cmd.parts {
            if let Piece::Text(t) = p {
                line.extend_from_slice(t.as_bytes());
            }
        }
        line.extend_from_slice(b"\r\n");
        self.write_all(&line).await?;
        Ok(tag)
    }

    /// Marks the connection as failed for good (after a protocol violation).
    pub fn kill(&mut self) {
        self.state = State::Dead;
    }
}

fn status(s: &imap_proto::Status) -> Status {
    match s {
        imap_proto::Status::Ok => Status::Ok,
        imap_proto::Status::No => Status::No,
        imap_proto::Status::Bad => Status::Bad,
        imap_proto::Status::PreAuth => Status::PreAuth,
        imap_proto::Status::Bye => Status::Bye,
    }
}

fn uid_members(v: &[imap_proto::rfc4315::UidSetMember]) -> Vec<u32> {
    let mut out = Vec::new();
    for m in v {
        match m {
            imap_proto::rfc4315::UidSetMember::Uid(u) => out.push(*u),
            imap_proto::rfc4315::UidSetMember::UidRange(r) => {
                // Bounded: a response code never legitimately lists millions of UIDs.
                if r.end().saturating_sub(*r.start()) <= 1_000_000 {
                    out.extend(r.clone());
                }
            }
        }
    }
    out
}

fn capability(c: &imap_proto::Capability<'_>) -> String {
    match c {
        imap_proto::Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
        imap_proto::Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
        imap_proto::Capability::Atom(a) => a.to_ascii_uppercase(),
    }
}

/// Converts imap-proto's code, or finds one left in the text.
fn outcome(o: &imap_proto::Outcome<'_>) -> (Option<ResponseCode>, String) {
    let text = o.information.as_deref().unwrap_or_default().to_owned();
    let code = match &o.code {
        None => return ResponseCode::split_text(&text),
        Some(c) => c,
    };
    use imap_proto::ResponseCode as C;
    let code = match code {
        C::Alert => ResponseCode::Alert,
        C::BadCharset(_) => ResponseCode::BadCharset,
        C::Capabilities(c) => ResponseCode::Capability(c.iter().map(capability).collect()),
        C::HighestModSeq(n) => ResponseCode::HighestModSeq(*n),
        C::Parse => ResponseCode::Parse,
        C::PermanentFlags(f) => {
            ResponseCode::PermanentFlags(f.iter().map(|s| s.to_string()).collect())
        }
        C::ReadOnly => ResponseCode::ReadOnly,
        C::ReadWrite => ResponseCode::ReadWrite,
        C::TryCreate => ResponseCode::TryCreate,
        C::UidNext(n) => ResponseCode::UidNext(*n),
        C::UidValidity(n) => ResponseCode::UidValidity(*n),
        C::Unseen(n) => ResponseCode::Unseen(*n),
        C::AppendUid(v, uids) => ResponseCode::AppendUid {
            uidvalidity: *v,
            uids: uid_members(uids),
        },
        C::CopyUid(v, s, d) => ResponseCode::CopyUid {
            uidvalidity: *v,
            source: uid_members(s),
            destination: uid_members(d),
        },
        C::UidNotSticky => ResponseCode::UidNotSticky,
        other => ResponseCode::Other {
            name: format!("{other:?}").to_ascii_uppercase(),
            args: None,
        },
    };
    (Some(code), text)
}

pub(crate) fn convert(p: &P<'_>, raw: &[u8]) -> Response {
    match p {
        P::Done {
            tag,
            status: s,
            outcome: o,
        } => {
            let (code, text) = outcome(o);
            Response::Tagged {
                tag: tag.0.clone(),
                status: status(s),
                code,
                text,
            }
        }
        P::Continue(o) => {
            Response::Continue(o.information.as_deref().unwrap_or_default().to_owned())
        }
        P::Data {
            status: s,
            outcome: o,
        } => {
            let (code, text) = outcome(o);
            Response::Untagged(Untagged::Cond {
                status: status(s),
                code,
                text,
            })
        }
        P::Capabilities(caps) => Response::Untagged(Untagged::Capabilities(
            caps.iter().map(capability).collect(),
        )),
        P::Expunge(_) => Response::Untagged(Untagged::Expunge),
        P::Vanished { earlier, uids } => Response::Untagged(Untagged::Vanished {
            earlier: *earlier,
            uids: uids.iter().map(|r| (*r.start(), *r.end())).collect(),
        }),
        P::Fetch(_, attrs) => Response::Untagged(Untagged::Fetch(Box::new(fetch(attrs, raw)))),
        P::MailboxData(d) => Response::Untagged(match d {
            MailboxDatum::Exists(n) => Untagged::Exists(*n),
            MailboxDatum::Search(v) => Untagged::Search(v.clone()),
            MailboxDatum::List(l) => Untagged::List(ListEntry {
                attributes: l.name_attributes.iter().map(name_attribute).collect(),
                delimiter: l.delimiter.as_ref().map(|d| d.to_string()),
                name: l.name.to_string(),
            }),
            MailboxDatum::Status { mailbox, status } => {
                let mut items = StatusItems::default();
                for s in status {
                    match s {
                        StatusAttribute::HighestModSeq(n) => items.highestmodseq = Some(*n),
                        StatusAttribute::Messages(n) => items.messages = Some(*n),
                        StatusAttribute::UidNext(n) => items.uidnext = Some(*n),
                        StatusAttribute::UidValidity(n) => items.uidvalidity = Some(*n),
                        StatusAttribute::Unseen(n) => items.unseen = Some(*n),
                        _ => {}
                    }
                }
                Untagged::Status {
                    mailbox: mailbox.to_string(),
                    items,
                }
            }
            _ => Untagged::Other,
        }),
        _ => Response::Untagged(Untagged::Other),
    }
}

fn name_attribute(a: &imap_proto::NameAttribute<'_>) -> String {
    use imap_proto::NameAttribute as N;
    match a {
        N::NoInferiors => "\\Noinferiors".into(),
        N::NoSelect => "\\Noselect".into(),
        N::Marked => "\\Marked".into(),
        N::Unmarked => "\\Unmarked".into(),
        N::All => "\\All".into(),
        N::Archive => "\\Archive".into(),
        N::Drafts => "\\Drafts".into(),
        N::Flagged => "\\Flagged".into(),
        N::Junk => "\\Junk".into(),
        N::Sent => "\\Sent".into(),
        N::Trash => "\\Trash".into(),
        N::Extension(s) => s.to_string(),
        _ => String::new(),
    }
}

/// Parses an INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded).
pub(crate) fn parse_internal_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn path_string(path: &[u32]) -> String {
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn fetch(attrs: &[AttributeValue<'_>], raw: &[u8]) -> FetchData {
    let mut f = FetchData::default();
    let mut unknown = false;
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => f.uid = Some(*u),
            AttributeValue::Flags(v) => f.flags = Some(v.iter().map(|s| s.to_string()).collect()),
            AttributeValue::ModSeq(m) => f.modseq = Some(*m),
            AttributeValue::InternalDate(d) => f.internal_date = parse_internal_date(d),
            AttributeValue::Rfc822Size(n) => f.size = Some(*n),
            AttributeValue::Envelope(e) => f.envelope = Some(envelope(e)),
            AttributeValue::BodyStructure(b) => f.structure = Some(crate::mime::part_from(b, "")),
            AttributeValue::Rfc822(data) => f.body = data.as_ref().map(|d| d.to_vec()),
            AttributeValue::Rfc822Header(data) => f.header = data.as_ref().map(|d| d.to_vec()),
            AttributeValue::BodySection { section, data, .. } => {
                // NIL (an expunged message, for some servers) stays None.
                let bytes = data.as_ref().map(|d| d.to_vec());
                match section {
                    None => f.body = bytes,
                    Some(SectionPath::Full(MessageSection::Header)) => f.header = bytes,
                    Some(SectionPath::Part(path, None)) => {
                        if let Some(b) = bytes {
                            f.sections.push((path_string(path), b));
                        }
                    }
                    Some(_) => {}
                }
            }
            // A malformed THREADID (RFC 8474 §5.2) is none: the message is threaded locally.
            AttributeValue::ThreadId(t) => {
                f.thread_id = t
                    .as_ref()
                    .map(|t| t.to_string())
                    .filter(|t| crate::connection::is_objectid(t));
            }
            AttributeValue::Unknown => unknown = true,
            _ => {}
        }
    }
    if unknown {
        // PREVIEW is not known to imap-proto (it parses it as an unknown attribute and
        // drops the value), so the value is read from the response bytes.
        if let Some(Some(v)) = crate::rawscan::fetch_attribute(raw, "PREVIEW") {
            let text = String::from_utf8_lossy(&v).trim().to_owned();
            if !text.is_empty() {
                f.preview = Some(text);
            }
        }
    }
    f
}

fn bytes(v: &Option<std::borrow::Cow<'_, [u8]>>) -> Option<Vec<u8>> {
    v.as_ref().map(|c| c.to_vec())
}

fn addresses(v: &Option<Vec<imap_proto::Address<'_>>>) -> Vec<EnvelopeAddress> {
    v.as_ref()
        .map(|list| {
            list.iter()
                .map(|a| EnvelopeAddress {
                    name: bytes(&a.name),
                    mailbox: bytes(&a.mailbox),
                    host: bytes(&a.host),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn envelope(e: &imap_proto::Envelope<'_>) -> Envelope {
    Envelope {
        date: bytes(&e.date),
        subject: bytes(&e.subject),
        from: addresses(&e.from),
        sender: addresses(&e.sender),
        reply_to: addresses(&e.reply_to),
        to: addresses(&e.to),
        cc: addresses(&e.cc),
        bcc: addresses(&e.bcc),
        in_reply_to: bytes(&e.in_reply_to),
        message_id: bytes(&e.message_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates() {
        let d = parse_internal_date("17-Jul-1996 02:44:25 -0700").map(|d| d.timestamp());
        assert_eq!(d, Some(837_596_665));
        assert!(parse_internal_date(" 7-Jul-1996 02:44:25 +0000").is_some());
        assert!(parse_internal_date("garbage").is_none());
    }

    #[test]
    fn commands_quote_or_use_literals() {
        let c = Cmd::new("LOGIN")
            .astring("us\"er")
            .astring("pässwörd")
            .sensitive();
        assert_eq!(format!("{c:?}"), "LOGIN ***");
        assert!(matches!(c.parts.last(), Some(Piece::Literal(l)) if l == "pässwörd".as_bytes()));
        let c = Cmd::new("SELECT").astring("a\\b").raw("(CONDSTORE)");
        assert_eq!(format!("{c:?}"), "SELECT \"a\\\\b\" (CONDSTORE)");
    }

    fn parse(line: &[u8]) -> Response {
        match imap_proto::Response::parse(line) {
            Ok((_, p)) => convert(&p, line),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn converts_the_responses_sync_relies_on() {
        match parse(b"* VANISHED (EARLIER) 41,43:45\r\n") {
            Response::Untagged(Untagged::Vanished { earlier, uids }) => {
                assert!(earlier);
                assert_eq!(uids, vec![(41, 41), (43, 45)]);
            }
            other => panic!("{other:?}"),
        }
        match parse(b"M3 NO [NONEXISTENT] Unknown Mailbox: Nope\r\n") {
            Response::Tagged {
                status, code, text, ..
            } => {
                assert_eq!(status, Status::No);
                assert_eq!(code, Some(ResponseCode::NonExistent));
                assert_eq!(text, "Unknown Mailbox: Nope");
            }
            other => panic!("{other:?}"),
        }
        match parse(b"* OK [CLOSED] Previous mailbox closed.\r\n") {
            Response::Untagged(Untagged::Cond { code, .. }) => {
                assert_eq!(code, Some(ResponseCode::Closed))
            }
            other => panic!("{other:?}"),
        }
        match parse(b"M9 OK [COPYUID 7 1:2 5:6] Moved\r\n") {
            Response::Tagged { code, .. } => assert_eq!(
                code,
                Some(ResponseCode::CopyUid {
                    uidvalidity: 7,
                    source: vec![1, 2],
                    destination: vec![5, 6]
                })
            ),
            other => panic!("{other:?}"),
        }
        match parse(b"* STATUS Sent (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1795543875 UNSEEN 1 HIGHESTMODSEQ 9)\r\n") {
            Response::Untagged(Untagged::Status { mailbox, items }) => {
                assert_eq!(mailbox, "Sent");
                assert_eq!(items.messages, Some(3));
                assert_eq!(items.uidvalidity, Some(1_795_543_875));
                assert_eq!(items.highestmodseq, Some(9));
            }
            other => panic!("{other:?}"),
        }
        match parse(b"* LIST (\\HasNoChildren \\sent) \"/\" Sent\r\n") {
            Response::Untagged(Untagged::List(l)) => {
                assert_eq!(l.name, "Sent");
                assert!(
                    l.attributes
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case("\\sent"))
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(b"* ENABLED QRESYNC\r\n") {
            Response::Untagged(Untagged::Capabilities(c)) => assert_eq!(c, vec!["QRESYNC"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_with_preview_and_structure() {
        let line: &[u8] = b"* 1 FETCH (UID 1 FLAGS (\\Seen $Forwarded) MODSEQ (2) PREVIEW \"Hello there (really)\" INTERNALDATE \"24-Nov-2026 18:10:00 +0100\" RFC822.SIZE 420 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 38 0 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 4 NIL (\"attachment\" (\"filename*\" \"UTF-8''%C3%A4.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"BB\") NIL NIL NIL) BODY[HEADER.FIELDS (REFERENCES)] {21}\r\nReferences: <a@b>\r\n\r\n)\r\n";
        let Response::Untagged(Untagged::Fetch(f)) = parse(line) else {
            panic!("not a fetch")
        };
        assert_eq!(f.uid, Some(1));
        assert_eq!(f.modseq, Some(2));
        assert_eq!(f.size, Some(420));
        assert_eq!(f.preview.as_deref(), Some("Hello there (really)"));
        assert_eq!(f.header.as_deref(), Some(&b"References: <a@b>\r\n\r\n"[..]));
        assert_eq!(
            f.flags,
            Some(vec!["\\Seen".to_string(), "$Forwarded".to_string()])
        );
        let s = f.structure.as_ref().map(crate::mime::attachments);
        assert_eq!(s.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            s.and_then(|v| v.first().and_then(|a| a.file_name.clone()))
                .as_deref(),
            Some("ä.pdf")
        );
    }

    /// A THREADID is kept when it is an RFC 8474 object id; a malformed or overlong one (a
    /// hostile server's) is none, and the message is threaded locally.
    #[test]
    fn fetch_keeps_only_well_formed_thread_ids() {
        let thread = |id: &str| {
            let line = format!("* 1 FETCH (UID 1 THREADID ({id}))\r\n");
            let Response::Untagged(Untagged::Fetch(f)) = parse(line.as_bytes()) else {
                panic!("not a fetch: {line}")
            };
            f.thread_id
        };
        assert_eq!(thread("T_a-9").as_deref(), Some("T_a-9"));
        assert_eq!(thread(&"t".repeat(255)).map(|t| t.len()), Some(255));
        assert_eq!(thread(&"t".repeat(256)), None);
    }
}
