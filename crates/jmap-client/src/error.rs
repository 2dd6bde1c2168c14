//! The crate's error model: one [`Error`] enum carrying typed facts (HTTP status, problem
//! details, JMAP method error type, per-item set errors) for the caller to classify.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::id::State;

/// Everything that can go wrong talking to a JMAP server.
///
/// Variants carry the facts a caller needs to decide what to do (retry, re-authenticate,
/// resynchronise, give up); see the crate documentation for a classification table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The network exchange failed before an HTTP response was received, or while reading it.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),

    /// The server rejected the credentials (HTTP 401; also 403 on the Session resource).
    #[error("authentication failed (HTTP {status})")]
    Unauthorized {
        /// The HTTP status (401, or 403 when fetching the Session).
        status: u16,
    },

    /// The server answered with an HTTP error status, possibly with RFC 7807 problem
    /// details (RFC 8620 §3.6.1 request-level errors).
    #[error("HTTP error {status}{}", problem.as_ref().map(|p| format!(" ({})", p.problem_type)).unwrap_or_default())]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The parsed `application/problem+json` body, if there was one.
        problem: Option<Box<ProblemDetails>>,
        /// The `Retry-After` delay, if the server sent one.
        retry_after: Option<Duration>,
    },

    /// The URL does not lead to a JMAP server (HTML page, 404, JSON that is not a Session).
    #[error("{url} is not a JMAP session resource: {reason}")]
    NotJmap {
        /// The URL that was fetched (after redirects).
        url: String,
        /// Why the answer was not accepted.
        reason: NotJmapReason,
        /// The JSON error, when the body could not be decoded.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// A method call returned a JMAP method-level error (RFC 8620 §3.6.2).
    #[error("{0}")]
    Method(Box<MethodError>),

    /// A `/set`-style call succeeded but one of its items was not created, updated or destroyed.
    #[error("{operation} of {id} failed: {error}")]
    SetItem {
        /// Which part of the `/set` failed.
        operation: SetOperation,
        /// The creation id (for create) or object id (for update/destroy).
        id: String,
        /// The server's SetError.
        error: Box<SetError>,
    },

    /// The server's response could not be decoded into the expected type.
    #[error("could not decode {context}")]
    Decode {
        /// What was being decoded (e.g. a method name or "session").
        context: String,
        /// The underlying JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A request could not be serialised (a caller-supplied value has no JSON form).
    #[error("could not serialise the request")]
    Encode(#[source] serde_json::Error),

    /// The server's response lacked the result of a call that was sent.
    #[error("response has no {method} result for call {call_id}")]
    MissingResponse {
        /// The call id.
        call_id: String,
        /// The method name that was expected.
        method: String,
    },

    /// The server has no usable push channel; callers should fall back to polling.
    #[error("push unavailable: {reason}")]
    PushUnavailable {
        /// Why push is not available.
        reason: PushUnavailableReason,
    },

    /// A plain `http://` URL to a non-loopback host was refused (see
    /// [`ClientBuilder::allow_insecure_http`](crate::ClientBuilder::allow_insecure_http)).
    #[error("refusing plain-text HTTP to non-loopback URL {url}")]
    InsecureUrl {
        /// The refused URL.
        url: String,
    },

    /// A URL (given by the caller or by the server) is malformed.
    #[error("invalid URL {url:?}")]
    InvalidUrl {
        /// The offending text.
        url: String,
        /// The parse error.
        #[source]
        source: url::ParseError,
    },

    /// The client configuration is invalid (e.g. an unreadable CA certificate).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A response body exceeded the client's limit ([`crate::ClientBuilder::max_response_size`]);
    /// it was not read further (memory stays bounded whatever the server sends).
    #[error("the server's response exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: u64,
    },

    /// An upload exceeds the server's `maxSizeUpload`.
    #[error("upload of {size} bytes exceeds the server limit of {max} bytes")]
    UploadTooLarge {
        /// Bytes that were (or would have been) sent.
        size: u64,
        /// The server limit.
        max: u64,
    },

    /// Reading an upload source or writing a download sink failed.
    #[error("I/O error while {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The session lists no account for the capability.
    #[error("the session has no account for capability {capability}")]
    NoAccount {
        /// The capability URI.
        capability: String,
    },

    /// The server does not advertise a capability the operation needs.
    #[error("the server does not support {capability}")]
    UnsupportedCapability {
        /// The capability URI.
        capability: String,
    },

    /// A `/changes` loop got `hasMoreChanges: true` without its state advancing (a server bug);
    /// continuing would loop forever.
    #[error("{method} reported more changes but did not advance from state {state}")]
    StateNotAdvancing {
        /// The method, e.g. `Email/changes`.
        method: String,
        /// The state that did not advance.
        state: State,
    },
}

impl Error {
    /// Whether the request may have been carried out although its answer never arrived: the
    /// connection broke, or a read timed out, after the request could have reached the server.
    /// Not when the connection could not be made at all (`Connect`, `Tls`): then nothing was
    /// sent. A caller must read the outcome back before repeating a request that is not
    /// idempotent.
    pub fn may_have_reached_server(&self) -> bool {
        matches!(self, Error::Transport(t) if !matches!(
            t.kind(),
            TransportErrorKind::Connect | TransportErrorKind::Tls | TransportErrorKind::Redirect
        ))
    }

    /// The server-suggested delay (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for HTTP-level failures.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } | Error::Unauthorized { status } => Some(*status),
            _ => None,
        }
    }

    /// The method error, if this is one.
    pub fn method_error(&self) -> Option<&MethodError> {
        match self {
            Error::Method(e) => Some(e),
            _ => None,
        }
    }

    /// The method error type, if this is a method error.
    pub fn method_error_type(&self) -> Option<MethodErrorType> {
        self.method_error().map(|e| e.kind)
    }

    /// True for [`Error::Unauthorized`].
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// True for [`Error::PushUnavailable`].
    pub fn is_push_unavailable(&self) -> bool {
        matches!(self, Error::PushUnavailable { .. })
    }

    pub(crate) fn decode(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Decode {
            context: context.into(),
            source,
        }
    }
}

/// A transport-level failure, classified without exposing the HTTP library's error type.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct TransportError {
    kind: TransportErrorKind,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl TransportError {
    pub(crate) fn new(
        kind: TransportErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// What kind of failure this was.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == TransportErrorKind::Timeout
    }

    /// True when no connection could be established (DNS, refused, unreachable).
    pub fn is_connect(&self) -> bool {
        self.kind == TransportErrorKind::Connect
    }
}

/// Classification of a [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Name resolution failed or the TCP connection could not be established.
    Connect,
    /// The TLS handshake failed (untrusted or invalid certificate, protocol mismatch).
    Tls,
    /// The request or a read timed out.
    Timeout,
    /// The connection broke while sending the request or reading the body.
    Body,
    /// The server's bytes were not valid HTTP.
    Protocol,
    /// Redirect handling failed (too many redirects, redirect loop).
    Redirect,
    /// Anything else.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Connect => "cannot connect",
            TransportErrorKind::Tls => "TLS failure",
            TransportErrorKind::Timeout => "timed out",
            TransportErrorKind::Body => "connection failed while transferring data",
            TransportErrorKind::Protocol => "invalid HTTP",
            TransportErrorKind::Redirect => "redirect failure",
            TransportErrorKind::Other => "transport failure",
        })
    }
}

/// Why a response was not accepted as a JMAP Session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotJmapReason {
    /// The server answered with a non-success HTTP status (e.g. 404).
    Status(u16),
    /// The server answered with an HTML page.
    HtmlPage,
    /// The body is not JSON.
    NotJson {
        /// The response's `Content-Type`, if any.
        content_type: Option<String>,
    },
    /// The body is JSON but not a valid Session object.
    InvalidSession(&'static str),
}

impl fmt::Display for NotJmapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotJmapReason::Status(s) => write!(f, "HTTP status {s}"),
            NotJmapReason::HtmlPage => f.write_str("got an HTML page"),
            NotJmapReason::NotJson { content_type } => write!(
                f,
                "body is not JSON (content type {})",
                content_type.as_deref().unwrap_or("none")
            ),
            NotJmapReason::InvalidSession(what) => write!(f, "not a Session object: {what}"),
        }
    }
}

/// Why push (EventSource) is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushUnavailableReason {
    /// The Session has no `eventSourceUrl`.
    NoEventSourceUrl,
    /// The EventSource endpoint answered `204 No Content` (Cyrus built without push support).
    NoContent,
    /// The EventSource endpoint answered with this HTTP status (e.g. 404, 405, 501).
    Status(u16),
    /// The endpoint answered 200 but not with `text/event-stream`.
    NotEventStream {
        /// The `Content-Type` received.
        content_type: Option<String>,
    },
    /// The Session offers no WebSocket push (`urn:ietf:params:jmap:websocket` missing, or
    /// `supportsPush` false).
    NoWebSocketPush,
    /// The WebSocket endpoint refused the upgrade (HTTP status) or the `jmap` subprotocol.
    WebSocketRefused {
        /// The HTTP status, when the server answered one other than 101.
        status: Option<u16>,
    },
}

impl fmt::Display for PushUnavailableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushUnavailableReason::NoEventSourceUrl => {
                f.write_str("the session has no eventSourceUrl")
            }
            PushUnavailableReason::NoContent => {
                f.write_str("the EventSource endpoint answered 204 No Content")
            }
            PushUnavailableReason::Status(s) => {
                write!(f, "the EventSource endpoint answered HTTP {s}")
            }
            PushUnavailableReason::NotEventStream { content_type } => write!(
                f,
                "the EventSource endpoint answered with content type {}",
                content_type.as_deref().unwrap_or("none")
            ),
            PushUnavailableReason::NoWebSocketPush => {
                f.write_str("the session offers no WebSocket push")
            }
            PushUnavailableReason::WebSocketRefused { status: Some(s) } => {
                write!(f, "the WebSocket endpoint answered HTTP {s}")
            }
            PushUnavailableReason::WebSocketRefused { status: None } => {
                f.write_str("the WebSocket endpoint refused the jmap subprotocol")
            }
        }
    }
}

/// RFC 7807 problem details, as used for JMAP request-level errors (RFC 8620 §3.6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDetails {
    /// The problem `type` URI.
    #[serde(rename = "type", default)]
    pub problem_type: ProblemType,
    /// The `status` member, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The `title` member, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The `detail` member, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `urn:ietf:params:jmap:error:limit`: the name of the limit that was exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Any other members.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `type` of a request-level error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProblemType {
    /// `urn:ietf:params:jmap:error:unknownCapability`
    UnknownCapability,
    /// `urn:ietf:params:jmap:error:notJSON`
    NotJson,
    /// `urn:ietf:params:jmap:error:notRequest`
    NotRequest,
    /// `urn:ietf:params:jmap:error:limit`
    Limit,
    /// `about:blank` or a missing type.
    #[default]
    Blank,
    /// Any other URI.
    Other(String),
}

impl ProblemType {
    /// The type URI.
    pub fn as_str(&self) -> &str {
        match self {
            ProblemType::UnknownCapability => "urn:ietf:params:jmap:error:unknownCapability",
            ProblemType::NotJson => "urn:ietf:params:jmap:error:notJSON",
            ProblemType::NotRequest => "urn:ietf:params:jmap:error:notRequest",
            ProblemType::Limit => "urn:ietf:params:jmap:error:limit",
            ProblemType::Blank => "about:blank",
            ProblemType::Other(s) => s,
        }
    }
}

impl From<&str> for ProblemType {
    fn from(s: &str) -> Self {
        match s {
            "urn:ietf:params:jmap:error:unknownCapability" => ProblemType::UnknownCapability,
            "urn:ietf:params:jmap:error:notJSON" => ProblemType::NotJson,
            "urn:ietf:params:jmap:error:notRequest" => ProblemType::NotRequest,
            "urn:ietf:params:jmap:error:limit" => ProblemType::Limit,
            "about:blank" | "" => ProblemType::Blank,
            other => ProblemType::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProblemType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(ProblemType::from(s.as_deref().unwrap_or("")))
    }
}

/// A method-level error (`["error", {...}, callId]`, RFC 8620 §3.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    /// The name of the method that failed (as sent, e.g. `Email/set`).
    pub method: String,
    /// The call id (the handle's id, not the wire id of a split piece).
    pub call_id: String,
    /// The error type. Types this crate does not know are reported as
    /// [`MethodErrorType::ServerFail`], as RFC 8620 §3.6.2 requires.
    pub kind: MethodErrorType,
    /// The `type` string exactly as the server sent it.
    pub type_name: String,
    /// The `description`, if any.
    pub description: Option<String>,
    /// Other members of the error object.
    pub extra: Map<String, Value>,
}

impl MethodError {
    /// Builds a method error from the arguments of an `error` response.
    pub(crate) fn from_arguments(method: &str, call_id: &str, args: &Value) -> Self {
        let mut extra = args.as_object().cloned().unwrap_or_default();
        let type_name = match extra.remove("type") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let description = match extra.remove("description") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        MethodError {
            method: method.to_owned(),
            call_id: call_id.to_owned(),
            kind: MethodErrorType::parse(&type_name),
            type_name,
            description,
            extra,
        }
    }

    /// True when the server sent a type this crate does not know (reported as `serverFail`).
    pub fn is_unknown_type(&self) -> bool {
        self.kind.as_str() != self.type_name
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (call {}) failed: {}",
            self.method, self.call_id, self.type_name
        )?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MethodError {}

/// Method-level error types of RFC 8620 §3.6.2 and the method-specific ones of RFC 8620/8621.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MethodErrorType {
    /// `serverUnavailable`: try again later (with backoff).
    ServerUnavailable,
    /// `serverFail` (also used for every type this crate does not know).
    ServerFail,
    /// `serverPartialFail`: some changes were applied; resynchronise.
    ServerPartialFail,
    /// `unknownMethod`
    UnknownMethod,
    /// `invalidArguments`
    InvalidArguments,
    /// `invalidResultReference`
    InvalidResultReference,
    /// `forbidden`
    Forbidden,
    /// `accountNotFound`
    AccountNotFound,
    /// `accountNotSupportedByMethod`
    AccountNotSupportedByMethod,
    /// `accountReadOnly`
    AccountReadOnly,
    /// `requestTooLarge` (/get, /set)
    RequestTooLarge,
    /// `stateMismatch` (/set with `ifInState`)
    StateMismatch,
    /// `cannotCalculateChanges` (/changes, /queryChanges)
    CannotCalculateChanges,
    /// `anchorNotFound` (/query)
    AnchorNotFound,
    /// `unsupportedSort` (/query)
    UnsupportedSort,
    /// `unsupportedFilter` (/query)
    UnsupportedFilter,
    /// `tooManyChanges` (/queryChanges)
    TooManyChanges,
    /// `fromAccountNotFound` (/copy)
    FromAccountNotFound,
    /// `fromAccountNotSupportedByMethod` (/copy)
    FromAccountNotSupportedByMethod,
}

impl MethodErrorType {
    const ALL: [MethodErrorType; 19] = [
        MethodErrorType::ServerUnavailable,
        MethodErrorType::ServerFail,
        MethodErrorType::ServerPartialFail,
        MethodErrorType::UnknownMethod,
        MethodErrorType::InvalidArguments,
        MethodErrorType::InvalidResultReference,
        MethodErrorType::Forbidden,
        MethodErrorType::AccountNotFound,
        MethodErrorType::AccountNotSupportedByMethod,
        MethodErrorType::AccountReadOnly,
        MethodErrorType::RequestTooLarge,
        MethodErrorType::StateMismatch,
        MethodErrorType::CannotCalculateChanges,
        MethodErrorType::AnchorNotFound,
        MethodErrorType::UnsupportedSort,
        MethodErrorType::UnsupportedFilter,
        MethodErrorType::TooManyChanges,
        MethodErrorType::FromAccountNotFound,
        MethodErrorType::FromAccountNotSupportedByMethod,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodErrorType::ServerUnavailable => "serverUnavailable",
            MethodErrorType::ServerFail => "serverFail",
            MethodErrorType::ServerPartialFail => "serverPartialFail",
            MethodErrorType::UnknownMethod => "unknownMethod",
            MethodErrorType::InvalidArguments => "invalidArguments",
            MethodErrorType::InvalidResultReference => "invalidResultReference",
            MethodErrorType::Forbidden => "forbidden",
            MethodErrorType::AccountNotFound => "accountNotFound",
            MethodErrorType::AccountNotSupportedByMethod => "accountNotSupportedByMethod",
            MethodErrorType::AccountReadOnly => "accountReadOnly",
            MethodErrorType::RequestTooLarge => "requestTooLarge",
            MethodErrorType::StateMismatch => "stateMismatch",
            MethodErrorType::CannotCalculateChanges => "cannotCalculateChanges",
            MethodErrorType::AnchorNotFound => "anchorNotFound",
            MethodErrorType::UnsupportedSort => "unsupportedSort",
            MethodErrorType::UnsupportedFilter => "unsupportedFilter",
            MethodErrorType::TooManyChanges => "tooManyChanges",
            MethodErrorType::FromAccountNotFound => "fromAccountNotFound",
            MethodErrorType::FromAccountNotSupportedByMethod => "fromAccountNotSupportedByMethod",
        }
    }

    /// Parses a wire name; unknown names become [`MethodErrorType::ServerFail`] (RFC 8620 §3.6.2).
    pub fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(MethodErrorType::ServerFail)
    }
}

impl fmt::Display for MethodErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of a `/set` an item error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetOperation {
    /// `notCreated`
    Create,
    /// `notUpdated`
    Update,
    /// `notDestroyed`
    Destroy,
}

impl fmt::Display for SetOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetOperation::Create => "create",
            SetOperation::Update => "update",
            SetOperation::Destroy => "destroy",
        })
    }
}

/// A per-item error in `notCreated`/`notUpdated`/`notDestroyed` (RFC 8620 §5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetError {
    /// The error type.
    #[serde(rename = "type", default)]
    pub kind: SetErrorType,
    /// The `description`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For `invalidProperties`: the offending properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
    /// For `alreadyExists`: the id of the existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// Other members (e.g. `maxRecipients`, `invalidRecipients`, `notFound`, `maxSize`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(props) = &self.properties {
            write!(f, " [{}]", props.join(", "))?;
        }
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SetError {}

/// SetError types of RFC 8620 §5.3/§5.4, RFC 8621 and the submission extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SetErrorType {
    /// `forbidden`
    Forbidden,
    /// `overQuota`
    OverQuota,
    /// `tooLarge`
    TooLarge,
    /// `rateLimit`
    RateLimit,
    /// `notFound`
    NotFound,
    /// `invalidPatch`
    InvalidPatch,
    /// `willDestroy`
    WillDestroy,
    /// `invalidProperties`
    InvalidProperties,
    /// `singleton`
    Singleton,
    /// `alreadyExists` (/copy, Email/import)
    AlreadyExists,
    /// `mailboxHasChild`
    MailboxHasChild,
    /// `mailboxHasEmail`
    MailboxHasEmail,
    /// `blobNotFound`
    BlobNotFound,
    /// `tooManyKeywords`
    TooManyKeywords,
    /// `tooManyMailboxes`
    TooManyMailboxes,
    /// `invalidEmail`
    InvalidEmail,
    /// `tooManyRecipients`
    TooManyRecipients,
    /// `noRecipients`
    NoRecipients,
    /// `invalidRecipients`
    InvalidRecipients,
    /// `forbiddenMailFrom`
    ForbiddenMailFrom,
    /// `forbiddenFrom`
    ForbiddenFrom,
    /// `forbiddenToSend`
    ForbiddenToSend,
    /// `cannotUnsend`
    CannotUnsend,
    /// `serverFail`: RFC 8620 defines it for a whole method ("an unexpected error ... the
    /// method's state should be unchanged"); servers also give it per item (Cyrus does when a
    /// mailbox is destroyed twice within a second under its delayed delete).
    ServerFail,
    /// A type missing from the server's answer.
    #[default]
    Missing,
    /// Any other type, kept verbatim (servers add their own, e.g. Cyrus' `smtpProtocolError`).
    Other(String),
}

impl SetErrorType {
    const KNOWN: [SetErrorType; 24] = [
        SetErrorType::Forbidden,
        SetErrorType::OverQuota,
        SetErrorType::TooLarge,
        SetErrorType::RateLimit,
        SetErrorType::NotFound,
        SetErrorType::InvalidPatch,
        SetErrorType::WillDestroy,
        SetErrorType::InvalidProperties,
        SetErrorType::Singleton,
        SetErrorType::AlreadyExists,
        SetErrorType::MailboxHasChild,
        SetErrorType::MailboxHasEmail,
        SetErrorType::BlobNotFound,
        SetErrorType::TooManyKeywords,
        SetErrorType::TooManyMailboxes,
        SetErrorType::InvalidEmail,
        SetErrorType::TooManyRecipients,
        SetErrorType::NoRecipients,
        SetErrorType::InvalidRecipients,
        SetErrorType::ForbiddenMailFrom,
        SetErrorType::ForbiddenFrom,
        SetErrorType::ForbiddenToSend,
        SetErrorType::CannotUnsend,
        SetErrorType::ServerFail,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            SetErrorType::Forbidden => "forbidden",
            SetErrorType::OverQuota => "overQuota",
            SetErrorType::TooLarge => "tooLarge",
            SetErrorType::RateLimit => "rateLimit",
            SetErrorType::NotFound => "notFound",
            SetErrorType::InvalidPatch => "invalidPatch",
            SetErrorType::WillDestroy => "willDestroy",
            SetErrorType::InvalidProperties => "invalidProperties",
            SetErrorType::Singleton => "singleton",
            SetErrorType::AlreadyExists => "alreadyExists",
            SetErrorType::MailboxHasChild => "mailboxHasChild",
            SetErrorType::MailboxHasEmail => "mailboxHasEmail",
            SetErrorType::BlobNotFound => "blobNotFound",
            SetErrorType::TooManyKeywords => "tooManyKeywords",
            SetErrorType::TooManyMailboxes => "tooManyMailboxes",
            SetErrorType::InvalidEmail => "invalidEmail",
            SetErrorType::TooManyRecipients => "tooManyRecipients",
            SetErrorType::NoRecipients => "noRecipients",
            SetErrorType::InvalidRecipients => "invalidRecipients",
            SetErrorType::ForbiddenMailFrom => "forbiddenMailFrom",
            SetErrorType::ForbiddenFrom => "forbiddenFrom",
            SetErrorType::ForbiddenToSend => "forbiddenToSend",
            SetErrorType::CannotUnsend => "cannotUnsend",
            SetErrorType::ServerFail => "serverFail",
            SetErrorType::Missing => "",
            SetErrorType::Other(s) => s,
        }
    }
}

impl From<&str> for SetErrorType {
    fn from(s: &str) -> Self {
        if s.is_empty() {
            return SetErrorType::Missing;
        }
        Self::KNOWN
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or_else(|| SetErrorType::Other(s.to_owned()))
    }
}

impl fmt::Display for SetErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SetErrorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SetErrorType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(SetErrorType::from(s.as_deref().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_method_error_is_server_fail_but_keeps_name() {
        let e = MethodError::from_arguments(
            "Email/get",
            "c0",
            &json!({"type": "somethingNew", "description": "x", "hint": 1}),
        );
        assert_eq!(e.kind, MethodErrorType::ServerFail);
        assert_eq!(e.type_name, "somethingNew");
        assert!(e.is_unknown_type());
        assert_eq!(e.extra.get("hint"), Some(&json!(1)));
        let known =
            MethodError::from_arguments("Email/set", "c1", &json!({"type": "stateMismatch"}));
        assert_eq!(known.kind, MethodErrorType::StateMismatch);
        assert!(!known.is_unknown_type());
        assert_eq!(known.description, None);
    }

    #[test]
    fn all_method_error_types_round_trip() {
        for t in MethodErrorType::ALL {
            assert_eq!(MethodErrorType::parse(t.as_str()), t);
        }
    }

    #[test]
    fn set_error_types_round_trip_and_keep_unknown() {
        for t in SetErrorType::KNOWN {
            let v = serde_json::to_value(SetError {
                kind: t.clone(),
                description: None,
                properties: None,
                existing_id: None,
                extra: BTreeMap::new(),
            })
            .unwrap();
            let back: SetError = serde_json::from_value(v).unwrap();
            assert_eq!(back.kind, t);
        }
        let e: SetError =
            serde_json::from_value(json!({"type": "smtpProtocolError", "description": "555"}))
                .unwrap();
        assert_eq!(e.kind, SetErrorType::Other("smtpProtocolError".into()));
        let e: SetError = serde_json::from_value(json!({"type": null})).unwrap();
        assert_eq!(e.kind, SetErrorType::Missing);
    }

    #[test]
    fn problem_details_parse() {
        let p: ProblemDetails = serde_json::from_value(json!({
            "type": "urn:ietf:params:jmap:error:limit", "limit": "maxSizeRequest", "status": 400, "detail": "too big"
        }))
        .unwrap();
        assert_eq!(p.problem_type, ProblemType::Limit);
        assert_eq!(p.limit.as_deref(), Some("maxSizeRequest"));
        assert_eq!(p.status, Some(400));
    }
}
