//! The CLI's error: a one-line message naming the cause and the object, and the exit code.

use std::fmt;

use mailsync_engine::EngineError;
use mailsync_engine::classify::{Disposition, classify, is_auth_failure, names_authentication};
use mailsync_store::StoreError;

/// Exit codes (also in `--help` and the crate docs).
pub mod code {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// Usage error (clap uses 2 too).
    pub const USAGE: u8 = 2;
    /// Unknown account, email, mailbox or failed-change id.
    pub const NOT_FOUND: u8 = 3;
    /// Authentication failed or settings only the user can fix.
    pub const NEEDS_USER: u8 = 4;
    /// The server cannot be reached.
    pub const UNREACHABLE: u8 = 5;
    /// The local database cannot be opened.
    pub const DATABASE: u8 = 6;
}

/// A failure to report: `error: <message>` on stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// One line, naming the object and the cause.
    pub message: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(code::USAGE, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(code::NOT_FOUND, message)
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(code::FAILURE, message)
    }

    /// An engine error about `object` (e.g. `account "work"`), classified into an exit code.
    pub fn engine(object: &str, err: &EngineError) -> Self {
        let text = one_line(err);
        let (code, message) = match err {
            EngineError::Store(s) => return Self::store(object, s),
            EngineError::Outbox(mailsync_outbox::Error::Store(s)) => {
                return Self::store(object, s);
            }
            EngineError::JmapSync(mailsync_engine::jmap_sync::Error::Store(s)) => {
                return Self::store(object, s);
            }
            EngineError::Outbox(
                mailsync_outbox::Error::EmailNotFound(_)
                | mailsync_outbox::Error::MailboxNotFound(_)
                | mailsync_outbox::Error::FailedNotFound(_)
                | mailsync_outbox::Error::ChangeNotFound(_)
                | mailsync_outbox::Error::NothingToUndo(_)
                | mailsync_outbox::Error::NotADraft(_)
                | mailsync_outbox::Error::NoDraftsMailbox(_),
            ) => (code::NOT_FOUND, text),
            EngineError::Outbox(
                mailsync_outbox::Error::InvalidMessage(_)
                | mailsync_outbox::Error::InvalidMailboxName { .. },
            ) => (code::USAGE, text),
            _ => match classify(err) {
                Disposition::NeedsUser if is_auth_failure(err) && !names_authentication(err) => (
                    code::NEEDS_USER,
                    format!("authentication failed (server said: {text})"),
                ),
                Disposition::NeedsUser => (code::NEEDS_USER, text),
                Disposition::Offline => (code::UNREACHABLE, format!("server unreachable: {text}")),
                _ => (code::FAILURE, text),
            },
        };
        Self::new(code, format!("{object}: {message}"))
    }

    /// A store error about `object`.
    pub fn store(object: &str, err: &StoreError) -> Self {
        let code = match err {
            StoreError::NotFound { .. } => code::NOT_FOUND,
            StoreError::BadQuery { .. } => code::USAGE,
            StoreError::Open { .. } | StoreError::BadUrl { .. } | StoreError::Migration(_) => {
                code::DATABASE
            }
            _ => code::FAILURE,
        };
        Self::new(code, format!("{object}: {}", one_line(err)))
    }

    /// The database named by `--db` cannot be opened.
    pub fn database(err: &StoreError) -> Self {
        Self::new(code::DATABASE, format!("database: {}", one_line(err)))
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::store("database", &e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::failure(format!("output: {e}"))
    }
}

/// The error and its sources on one line, without repeating a source its parent already shows.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_imap_sync::{Error as I, ResponseCode as C};
    use mailsync_jmap_client::Error as J;

    /// Exit codes come from the same classification as syncs and mutations: one row per
    /// cause, never from message text.
    #[test]
    fn exit_codes_follow_the_classification() {
        let rows: Vec<(EngineError, u8)> = vec![
            (
                EngineError::Imap(I::Auth {
                    code: Some(C::AuthenticationFailed),
                    text: "bad".into(),
                }),
                code::NEEDS_USER,
            ),
            // A temporary server state at login is not the user's to fix.
            (
                EngineError::Imap(I::Auth {
                    code: Some(C::Unavailable),
                    text: "maintenance".into(),
                }),
                code::FAILURE,
            ),
            (
                EngineError::Imap(I::ConnectionLost {
                    bye: None,
                    source: None,
                }),
                code::UNREACHABLE,
            ),
            (
                EngineError::Jmap(J::Unauthorized { status: 401 }),
                code::NEEDS_USER,
            ),
            (
                EngineError::JmapSync(mailsync_engine::jmap_sync::Error::Jmap(J::Unauthorized {
                    status: 401,
                })),
                code::NEEDS_USER,
            ),
            (
                EngineError::Store(StoreError::NotFound {
                    what: "email",
                    key: "1".into(),
                }),
                code::NOT_FOUND,
            ),
        ];
        for (err, want) in rows {
            let got = CliError::engine("account \"a\"", &err);
            assert_eq!(got.code, want, "{err}: {}", got.message);
            assert!(!got.message.contains('\n'), "one line: {}", got.message);
        }
        let auth = CliError::engine(
            "account \"a\"",
            &EngineError::Imap(I::No {
                command: "LOGIN".into(),
                code: Some(C::AuthenticationFailed),
                text: "no".into(),
            }),
        );
        assert!(
            auth.message.contains("authentication failed"),
            "{}",
            auth.message
        );
    }
}
