//! The testkit's error type: typed facts (which file, which command, which server answer).

use std::path::PathBuf;

/// Everything that can go wrong in the testkit.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No connection details: neither environment variables nor a `servers.env` file.
    NotRunning {
        /// The places that were searched.
        searched: Vec<PathBuf>,
    },
    /// A key is missing from the connection details.
    MissingKey {
        /// The key, e.g. `MAILSYNC_DOVECOT_IMAP_PORT`.
        key: &'static str,
        /// Where the details came from.
        source_file: Option<PathBuf>,
    },
    /// A key has a value that does not parse.
    BadValue {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// An I/O error, with what was being done.
    Io {
        /// What was being done (e.g. `connecting to 127.0.0.1:10143`).
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An IMAP command was answered with NO or BAD (or the server said BYE).
    Imap {
        /// The command (passwords elided).
        command: String,
        /// The server's final response line.
        response: String,
    },
    /// An LMTP/SMTP exchange got an unexpected reply code.
    Smtp {
        /// The command or phase (e.g. `RCPT TO:<alice>`).
        command: String,
        /// The server's reply.
        response: String,
    },
    /// The server broke the protocol (unexpected greeting, closed connection, ...).
    Protocol {
        /// What was expected.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// An external program (doveadm) failed.
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
    /// The sink's `envelopes.jsonl` has a line that is not a valid envelope.
    BadEnvelope {
        /// 1-based line number.
        line: usize,
        /// Why it is invalid.
        reason: String,
    },
    /// Waiting for something timed out.
    Timeout {
        /// What was awaited.
        what: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotRunning { searched } => {
                write!(
                    f,
                    "test servers are not running: run `cargo xtask servers up` (no MAILSYNC_* \
                     environment variables, and none of these exists: "
                )?;
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{})", list.join(", "))
            }
            Error::MissingKey { key, source_file } => match source_file {
                Some(p) => write!(
                    f,
                    "{key} is missing from {}; rerun `cargo xtask servers up`",
                    p.display()
                ),
                None => write!(f, "{key} is not set"),
            },
            Error::BadValue { key, value } => write!(f, "{key}={value:?} is not valid"),
            Error::Io { context, .. } => write!(f, "{context}"),
            Error::Imap { command, response } => {
                write!(f, "IMAP {command} failed: {response}")
            }
            Error::Smtp { command, response } => write!(f, "{command} failed: {response}"),
            Error::Protocol { expected, got } => write!(f, "expected {expected}, got {got:?}"),
            Error::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed (exit {status:?}): {}", stderr.trim())
            }
            Error::BadEnvelope { line, reason } => {
                write!(f, "envelopes.jsonl line {line}: {reason}")
            }
            Error::Timeout { what } => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
