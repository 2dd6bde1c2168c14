//! The crate's error type and the typed IMAP response codes (RFC 3501, 4315, 5530, 7162).

use std::fmt;
use std::io;

use mailsync_store::StoreError;

/// An IMAP response code (`[CODE ...]` in a status response), typed.
///
/// imap-proto only parses some codes; the others (`NONEXISTENT`, `NOPERM`, `CLOSED`,
/// `NOMODSEQ`, `MODIFIED`, ...) arrive as text and are parsed here, so callers never have to
/// look at the human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `ALERT`: the text must be shown to the user.
    Alert,
    /// `ALREADYEXISTS` (RFC 5530).
    AlreadyExists,
    /// `APPENDUID uidvalidity uids` (RFC 4315).
    AppendUid {
        /// UIDVALIDITY of the target mailbox.
        uidvalidity: u32,
        /// UIDs given to the appended messages.
        uids: Vec<u32>,
    },
    /// `AUTHENTICATIONFAILED` (RFC 5530): bad credentials.
    AuthenticationFailed,
    /// `AUTHORIZATIONFAILED` (RFC 5530).
    AuthorizationFailed,
    /// `BADCHARSET`.
    BadCharset,
    /// `CANNOT` (RFC 5530): the operation violates a server rule.
    Cannot,
    /// `CAPABILITY` list in a status response (upper-cased atoms).
    Capability(Vec<String>),
    /// `CLIENTBUG` (RFC 5530).
    ClientBug,
    /// `CLOSED` (RFC 7162): the previously selected mailbox is closed.
    Closed,
    /// `CONTACTADMIN` (RFC 5530).
    ContactAdmin,
    /// `COPYUID uidvalidity source-uids destination-uids` (RFC 4315).
    CopyUid {
        /// UIDVALIDITY of the destination mailbox.
        uidvalidity: u32,
        /// Source UIDs, in the server's order.
        source: Vec<u32>,
        /// Destination UIDs, pairwise with `source`.
        destination: Vec<u32>,
    },
    /// `CORRUPTION` (RFC 5530).
    Corruption,
    /// `EXPIRED` (RFC 5530): credentials expired.
    Expired,
    /// `EXPUNGEISSUED` (RFC 5530).
    ExpungeIssued,
    /// `HIGHESTMODSEQ n` (RFC 7162).
    HighestModSeq(u64),
    /// `INUSE` (RFC 5530): try again later.
    InUse,
    /// `LIMIT` (RFC 5530).
    Limit,
    /// `MODIFIED set` (RFC 7162): a conditional STORE failed for these messages.
    Modified(String),
    /// `NOMODSEQ` (RFC 7162): the mailbox has no mod-sequences.
    NoModSeq,
    /// `NONEXISTENT` (RFC 5530): the mailbox does not exist.
    NonExistent,
    /// `NOPERM` (RFC 5530): no permission.
    NoPerm,
    /// `OVERQUOTA` (RFC 5530).
    OverQuota,
    /// `PARSE`.
    Parse,
    /// `PERMANENTFLAGS (...)`.
    PermanentFlags(Vec<String>),
    /// `PRIVACYREQUIRED` (RFC 5530).
    PrivacyRequired,
    /// `READ-ONLY`.
    ReadOnly,
    /// `READ-WRITE`.
    ReadWrite,
    /// `SERVERBUG` (RFC 5530).
    ServerBug,
    /// `TRYCREATE`: the target mailbox does not exist.
    TryCreate,
    /// `UIDNEXT n`.
    UidNext(u32),
    /// `UIDNOTSTICKY` (RFC 4315).
    UidNotSticky,
    /// `UIDVALIDITY n`.
    UidValidity(u32),
    /// `UNAVAILABLE` (RFC 5530): a subsystem is down; try again later.
    Unavailable,
    /// `UNKNOWN-CTE` (RFC 3516).
    UnknownCte,
    /// `UNSEEN n`.
    Unseen(u32),
    /// Any other code: its atom (upper-cased) and arguments as sent.
    Other {
        /// The code's name, upper case.
        name: String,
        /// Its arguments, if any.
        args: Option<String>,
    },
}

impl ResponseCode {
    /// True for codes that say "try again later" (`UNAVAILABLE`, `INUSE`, `SERVERBUG`).
    pub fn is_transient(&self) -> bool {
        // The engine's classification (Retry) uses this same set, so a sync and a mutation
        // treat a code alike.
        matches!(
            self,
            Self::Unavailable | Self::InUse | Self::Limit | Self::ServerBug | Self::Corruption
        )
    }

    /// Parses the text form of a code (the part between the brackets).
    pub fn parse(inner: &str) -> ResponseCode {
        let inner = inner.trim();
        // Any white space ends the name: the scanner turns `BADCHARSET (…)`'s space into a tab.
        let (name, args) = match inner.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((n, a)) => (n, Some(a.trim())),
            None => (inner, None),
        };
        let upper = name.to_ascii_uppercase();
        let num = |a: Option<&str>| a.and_then(|s| s.trim().parse::<u64>().ok());
        let num32 = |a: Option<&str>| a.and_then(|s| s.trim().parse::<u32>().ok());
        let other = || Self::Other {
            name: upper.clone(),
            args: args.map(str::to_owned),
        };
        match upper.as_str() {
            "ALERT" => Self::Alert,
            "ALREADYEXISTS" => Self::AlreadyExists,
            "AUTHENTICATIONFAILED" => Self::AuthenticationFailed,
            "AUTHORIZATIONFAILED" => Self::AuthorizationFailed,
            "BADCHARSET" => Self::BadCharset,
            "CANNOT" => Self::Cannot,
            "CAPABILITY" => Self::Capability(
                args.unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect(),
            ),
            "CLIENTBUG" => Self::ClientBug,
            "CLOSED" => Self::Closed,
            "CONTACTADMIN" => Self::ContactAdmin,
            "CORRUPTION" => Self::Corruption,
            "EXPIRED" => Self::Expired,
            "EXPUNGEISSUED" => Self::ExpungeIssued,
            "INUSE" => Self::InUse,
            "LIMIT" => Self::Limit,
            "NOMODSEQ" => Self::NoModSeq,
            "NONEXISTENT" => Self::NonExistent,
            "NOPERM" => Self::NoPerm,
            "OVERQUOTA" => Self::OverQuota,
            "PARSE" => Self::Parse,
            "PRIVACYREQUIRED" => Self::PrivacyRequired,
            "READ-ONLY" => Self::ReadOnly,
            "READ-WRITE" => Self::ReadWrite,
            "SERVERBUG" => Self::ServerBug,
            "TRYCREATE" => Self::TryCreate,
            "UIDNOTSTICKY" => Self::UidNotSticky,
            "UNAVAILABLE" => Self::Unavailable,
            "UNKNOWN-CTE" => Self::UnknownCte,
            "MODIFIED" => Self::Modified(args.unwrap_or_default().to_owned()),
            "HIGHESTMODSEQ" => num(args).map_or_else(other, Self::HighestModSeq),
            "UIDNEXT" => num32(args).map_or_else(other, Self::UidNext),
            "UIDVALIDITY" => num32(args).map_or_else(other, Self::UidValidity),
            "UNSEEN" => num32(args).map_or_else(other, Self::Unseen),
            "PERMANENTFLAGS" => Self::PermanentFlags(
                args.unwrap_or_default()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            ),
            "APPENDUID" => {
                let mut it = args.unwrap_or_default().split_whitespace();
                match (
                    it.next().and_then(|v| v.parse().ok()),
                    it.next().and_then(crate::uidset::parse_uid_set),
                ) {
                    (Some(uidvalidity), Some(uids)) => Self::AppendUid { uidvalidity, uids },
                    _ => other(),
                }
            }
            "COPYUID" => {
                let mut it = args.unwrap_or_default().split_whitespace();
                match (
                    it.next().and_then(|v| v.parse().ok()),
                    it.next().and_then(crate::uidset::parse_uid_set),
                    it.next().and_then(crate::uidset::parse_uid_set),
                ) {
                    (Some(uidvalidity), Some(source), Some(destination)) => Self::CopyUid {
                        uidvalidity,
                        source,
                        destination,
                    },
                    _ => other(),
                }
            }
            _ => other(),
        }
    }

    /// Splits `[CODE args] text` into the code and the remaining text. Text without a leading
    /// bracket has no code.
    pub(crate) fn split_text(text: &str) -> (Option<ResponseCode>, String) {
        let t = text.trim_start();
        if let Some(rest) = t.strip_prefix('[') {
            // The code may contain a parenthesised list but never a `]` of its own.
            if let Some(end) = rest.find(']') {
                let (inner, after) = rest.split_at(end);
                let after = after.get(1..).unwrap_or_default().trim_start();
                return (Some(Self::parse(inner)), after.to_owned());
            }
        }
        (None, text.to_owned())
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Alert => "ALERT",
            Self::AlreadyExists => "ALREADYEXISTS",
            Self::AppendUid { uidvalidity, uids } => {
                return write!(
                    f,
                    "APPENDUID {uidvalidity} {}",
                    crate::uidset::format_uid_set(uids)
                );
            }
            Self::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Self::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Self::BadCharset => "BADCHARSET",
            Self::Cannot => "CANNOT",
            Self::Capability(caps) => return write!(f, "CAPABILITY {}", caps.join(" ")),
            Self::ClientBug => "CLIENTBUG",
            Self::Closed => "CLOSED",
            Self::ContactAdmin => "CONTACTADMIN",
            Self::CopyUid {
                uidvalidity,
                source,
                destination,
            } => {
                return write!(
                    f,
                    "COPYUID {uidvalidity} {} {}",
                    crate::uidset::format_uid_set(source),
                    crate::uidset::format_uid_set(destination)
                );
            }
            Self::Corruption => "CORRUPTION",
            Self::Expired => "EXPIRED",
            Self::ExpungeIssued => "EXPUNGEISSUED",
            Self::HighestModSeq(n) => return write!(f, "HIGHESTMODSEQ {n}"),
            Self::InUse => "INUSE",
            Self::Limit => "LIMIT",
            Self::Modified(set) => return write!(f, "MODIFIED {set}"),
            Self::NoModSeq => "NOMODSEQ",
            Self::NonExistent => "NONEXISTENT",
            Self::NoPerm => "NOPERM",
            Self::OverQuota => "OVERQUOTA",
            Self::Parse => "PARSE",
            Self::PermanentFlags(flags) => {
                return write!(f, "PERMANENTFLAGS ({})", flags.join(" "));
            }
            Self::PrivacyRequired => "PRIVACYREQUIRED",
            Self::ReadOnly => "READ-ONLY",
            Self::ReadWrite => "READ-WRITE",
            Self::ServerBug => "SERVERBUG",
            Self::TryCreate => "TRYCREATE",
            Self::UidNext(n) => return write!(f, "UIDNEXT {n}"),
            Self::UidNotSticky => "UIDNOTSTICKY",
            Self::UidValidity(n) => return write!(f, "UIDVALIDITY {n}"),
            Self::Unavailable => "UNAVAILABLE",
            Self::UnknownCte => "UNKNOWN-CTE",
            Self::Unseen(n) => return write!(f, "UNSEEN {n}"),
            Self::Other { name, args: None } => name,
            Self::Other {
                name,
                args: Some(a),
            } => return write!(f, "{name} {a}"),
        };
        f.write_str(name)
    }
}

/// The one error type of this crate. Facts are typed: the response code of a `NO`/`BAD`, the
/// underlying I/O or TLS error, the store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached (DNS, TCP connect, connect timeout).
    #[error("cannot reach {host}:{port}")]
    Unreachable {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake or certificate verification failed.
    #[error("TLS with {host} failed")]
    Tls {
        /// Host name.
        host: String,
        /// The handshake error (a rustls error inside for certificate problems).
        #[source]
        source: io::Error,
    },
    /// The TLS configuration could not be built (unreadable or invalid CA file).
    #[error("invalid TLS configuration: {reason}")]
    TlsConfig {
        /// What is wrong.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Plaintext to a non-loopback host without the explicit opt-in.
    #[error("refusing plaintext IMAP to non-loopback host {host} (allow_plaintext is off)")]
    PlaintextRefused {
        /// Host name.
        host: String,
    },
    /// The server lacks something required (STARTTLS for `Security::Starttls`, an auth
    /// mechanism, ...).
    #[error("the server does not offer {capability}")]
    MissingCapability {
        /// The missing capability.
        capability: String,
    },
    /// A single response exceeded the size limit (a line that never ends, a huge literal);
    /// the connection is closed.
    #[error("the server sent a response (or a line) larger than {} MiB; connection closed", limit >> 20)]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A response nested parentheses deeper than the limit (a hostile BODYSTRUCTURE); the
    /// connection is closed before the parser sees it.
    #[error("the server sent a response nested deeper than {limit} levels; connection closed")]
    NestingTooDeep {
        /// The limit in levels.
        limit: u32,
    },
    /// The server listed more mailboxes than the limit; nothing was stored.
    #[error("the server lists {count} mailboxes, more than the limit of {limit}")]
    TooManyMailboxes {
        /// How many the server listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Authentication was refused (bad credentials, expired token...).
    #[error("authentication failed{}: {text}", code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default())]
    Auth {
        /// The response code (usually `AUTHENTICATIONFAILED`).
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// A command was answered with a tagged `NO`.
    #[error("{command} failed: NO{}{}", code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default(), fmt_text(text))]
    No {
        /// The command verb (`SELECT`, `UID MOVE`...).
        command: String,
        /// The response code, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// A command was answered with a tagged `BAD` (a client bug or an unsupported command).
    #[error("{command} rejected: BAD{}{}", code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default(), fmt_text(text))]
    Bad {
        /// The command verb.
        command: String,
        /// The response code, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// The connection is gone: closed by the server (possibly after `BYE`), an I/O error, an
    /// unparsable response (async-imap stops reading after one), or an earlier command that
    /// was cancelled midway. Reconnect.
    #[error("IMAP connection lost{}", bye.as_ref().map(|b| format!(" (server said BYE {b})")).unwrap_or_default())]
    ConnectionLost {
        /// The server's `BYE` text, when it said goodbye.
        bye: Option<String>,
        /// The I/O or parse error, when there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// The server sent a response that async-imap/imap-proto cannot parse (for example raw
    /// 8-bit bytes where UTF-8 is expected); async-imap stops reading after that, so the
    /// connection is gone. The sync recovers from this by reconnecting and fetching the
    /// offending message without BODYSTRUCTURE.
    #[error("unparsable IMAP response, connection closed: {excerpt}")]
    Unparsable {
        /// The start of the offending data.
        excerpt: String,
    },
    /// A network operation took too long; the connection is unusable afterwards.
    #[error("IMAP {operation} timed out after {seconds} s")]
    Timeout {
        /// What was being waited for.
        operation: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The server answered something this client cannot work with.
    #[error("unexpected IMAP response: {0}")]
    Protocol(String),
    /// The email or mailbox asked for has no IMAP identity here, or is gone on the server.
    #[error("{what} not found: {key}")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// How.
        key: String,
    },
    /// The local database failed.
    #[error("store error")]
    Store(#[from] StoreError),
    /// Writing a downloaded part to its destination failed (a local file, not the server).
    #[error("cannot write the downloaded part: {0}")]
    Write(std::io::Error),
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

fn fmt_text(t: &str) -> String {
    if t.is_empty() {
        String::new()
    } else {
        format!(" {t}")
    }
}

impl Error {
    /// True when credentials were refused (re-authentication needed, do not retry blindly).
    pub fn is_auth(&self) -> bool {
        match self {
            Self::Auth { .. } => true,
            Self::No { code, .. } | Self::Bad { code, .. } => matches!(
                code,
                Some(
                    ResponseCode::AuthenticationFailed
                        | ResponseCode::AuthorizationFailed
                        | ResponseCode::Expired
                )
            ),
            _ => false,
        }
    }

    /// True when the connection is unusable (unreachable, TLS, lost, timed out): reconnect
    /// later; the operation itself may well succeed then.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Tls { .. }
                | Self::ConnectionLost { .. }
                | Self::Unparsable { .. }
                | Self::NestingTooDeep { .. }
                | Self::Timeout { .. }
        )
    }

    /// Whether the command may have been carried out although its answer never arrived: the
    /// connection broke, timed out or answered garbage once connected. Not when it could not be
    /// made at all (`Unreachable`, `Tls`): then nothing was sent. A caller reads the outcome
    /// back before repeating a command that is not idempotent (a CREATE, an APPEND).
    pub fn may_have_reached_server(&self) -> bool {
        matches!(
            self,
            Self::ConnectionLost { .. }
                | Self::Unparsable { .. }
                | Self::NestingTooDeep { .. }
                | Self::ResponseTooLarge { .. }
                | Self::Timeout { .. }
        )
    }

    /// The IMAP response code of a `NO`/`BAD`/auth failure, if any.
    pub fn response_code(&self) -> Option<&ResponseCode> {
        match self {
            Self::No { code, .. } | Self::Bad { code, .. } | Self::Auth { code, .. } => {
                code.as_ref()
            }
            _ => None,
        }
    }

    /// True for a tagged `NO` (as opposed to `BAD`, which means the request itself is wrong).
    pub fn is_no(&self) -> bool {
        matches!(self, Self::No { .. })
    }

    /// True for a tagged `BAD`.
    pub fn is_bad(&self) -> bool {
        matches!(self, Self::Bad { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_left_in_text_are_parsed() {
        let cases: &[(&str, Option<ResponseCode>, &str)] = &[
            ("[CLOSED]", Some(ResponseCode::Closed), ""),
            (
                "[NOMODSEQ] Sorry, this mailbox format doesn't support modsequences",
                Some(ResponseCode::NoModSeq),
                "Sorry, this mailbox format doesn't support modsequences",
            ),
            (
                "[MODIFIED 7,9] Conditional STORE failed",
                Some(ResponseCode::Modified("7,9".into())),
                "Conditional STORE failed",
            ),
            (
                "[NONEXISTENT] Unknown Mailbox: X",
                Some(ResponseCode::NonExistent),
                "Unknown Mailbox: X",
            ),
            (
                "[AUTHENTICATIONFAILED] Authentication failed.",
                Some(ResponseCode::AuthenticationFailed),
                "Authentication failed.",
            ),
            (
                "[TRYCREATE] Mailbox doesn't exist: Nope",
                Some(ResponseCode::TryCreate),
                "Mailbox doesn't exist: Nope",
            ),
            ("[overquota] full", Some(ResponseCode::OverQuota), "full"),
            (
                "[COPYUID 38505 304,319:320 3956:3958] Done",
                Some(ResponseCode::CopyUid {
                    uidvalidity: 38505,
                    source: vec![304, 319, 320],
                    destination: vec![3956, 3957, 3958],
                }),
                "Done",
            ),
            (
                "[APPENDUID 1795544151 1] Append completed",
                Some(ResponseCode::AppendUid {
                    uidvalidity: 1_795_544_151,
                    uids: vec![1],
                }),
                "Append completed",
            ),
            (
                "[URLMECH INTERNAL] Ok",
                Some(ResponseCode::Other {
                    name: "URLMECH".into(),
                    args: Some("INTERNAL".into()),
                }),
                "Ok",
            ),
            ("Logged in", None, "Logged in"),
        ];
        for (text, code, rest) in cases {
            let (c, r) = ResponseCode::split_text(text);
            assert_eq!(&c, code, "{text}");
            assert_eq!(r, *rest, "{text}");
        }
    }

    #[test]
    fn classification_helpers() {
        let auth = Error::Auth {
            code: Some(ResponseCode::AuthenticationFailed),
            text: "bad".into(),
        };
        assert!(auth.is_auth() && !auth.is_connection());
        assert_eq!(
            auth.response_code(),
            Some(&ResponseCode::AuthenticationFailed)
        );
        let lost = Error::ConnectionLost {
            bye: Some("shutting down".into()),
            source: None,
        };
        assert!(lost.is_connection() && !lost.is_auth());
        let no = Error::No {
            command: "UID MOVE".into(),
            code: Some(ResponseCode::TryCreate),
            text: "no such mailbox".into(),
        };
        assert!(no.is_no() && !no.is_connection());
        assert_eq!(
            no.to_string(),
            "UID MOVE failed: NO [TRYCREATE] no such mailbox"
        );
        assert!(ResponseCode::InUse.is_transient() && !ResponseCode::NoPerm.is_transient());
    }
}
