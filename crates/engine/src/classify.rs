//! The one place where errors become decisions: retry, go offline, resync, ask the user, or reject.
//!
//! Protocol crates report typed facts (IMAP response codes, JMAP error types, HTTP statuses);
//! [`classify`] maps every [`EngineError`] to a [`Disposition`]. The table-driven test below is the
//! specification.

use std::time::Duration;

use mailsync_imap_sync as imap;
use mailsync_jmap_client as jmap;

use mailsync_outbox::{BatchError, ItemOutcome};

use crate::error::EngineError;

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Try again after backoff (or the server-given delay).
    Retry {
        /// A server-given delay (`Retry-After`), when there was one.
        after: Option<Duration>,
    },
    /// The server cannot be reached: back off, spend no per-item attempts.
    Offline,
    /// The local view is stale: drop the checkpoint and resync, then try again.
    Resync,
    /// Only the user can fix it (credentials, configuration, quota, permissions).
    NeedsUser,
    /// It will never work as it is (a bug or invalid data): log it, do not loop.
    Reject,
    /// The object a change addressed is not there (JMAP `notFound`; an IMAP UID that is gone or
    /// recorded under another UIDVALIDITY): find it again after a sync, or drop the change.
    Gone,
}

/// Classifies an engine error. See the table in the tests.
pub fn classify(err: &EngineError) -> Disposition {
    match err {
        EngineError::Secret(_) | EngineError::Config(_) => Disposition::NeedsUser,
        EngineError::Store(e) if e.is_transient() => Disposition::Retry { after: None },
        EngineError::Store(_) => Disposition::Reject,
        EngineError::Smtp(e) => match e {
            crate::smtp::SmtpError::Connect { .. } => Disposition::Offline,
            crate::smtp::SmtpError::Auth { .. } => Disposition::NeedsUser,
            crate::smtp::SmtpError::Rejected {
                permanent: true, ..
            } => Disposition::Reject,
            crate::smtp::SmtpError::Rejected {
                permanent: false, ..
            } => Disposition::Retry { after: None },
            crate::smtp::SmtpError::Tls { .. } => Disposition::NeedsUser,
            crate::smtp::SmtpError::Other { .. } | crate::smtp::SmtpError::Interrupted { .. } => {
                Disposition::Retry { after: None }
            }
        },
        EngineError::Compose(_) | EngineError::Refused(_) | EngineError::Output { .. } => {
            Disposition::Reject
        }
        EngineError::OAuth(e) => classify_oauth(e),
        EngineError::Cancelled => Disposition::Retry { after: None },
        // A server that rejects the state it has just given is broken for this account:
        // resyncing again would only repeat the full listing.
        EngineError::JmapSync(e) => match e {
            mailsync_jmap_sync::Error::Jmap(j) => classify_jmap(j),
            mailsync_jmap_sync::Error::Store(s) if s.is_transient() => {
                Disposition::Retry { after: None }
            }
            _ => Disposition::Reject,
        },
        EngineError::Jmap(e) => classify_jmap(e),
        EngineError::Imap(e) => classify_imap(e),
        EngineError::Mailbox { source, .. } => classify_imap(source),
        EngineError::OutboxPaused { offline: true, .. } => Disposition::Offline,
        EngineError::OutboxPaused { offline: false, .. } => Disposition::NeedsUser,
        EngineError::Outbox(e) if e.is_transient() => Disposition::Retry { after: None },
        EngineError::Outbox(_) => Disposition::Reject,
        // Someone else syncs the account: try again later (the daemon waits for the lease).
        EngineError::LeaseHeld { .. } | EngineError::LeaseLost(_) => {
            Disposition::Retry { after: None }
        }
    }
}

/// Token endpoint facts (RFC 6749 §5.2): a refused grant (revoked or expired refresh token,
/// wrong client) needs the user to sign in again; an unreachable endpoint is an outage; a
/// busy one (429, 5xx) is retried; any other answer that is not a token means the endpoint is
/// not what the settings say (wrong URL), which only the user can fix.
pub fn classify_oauth(e: &crate::oauth::OAuthError) -> Disposition {
    use crate::oauth::OAuthError as O;
    match e {
        O::Unreachable { tls: false, .. } => Disposition::Offline,
        O::Unreachable { tls: true, .. } => Disposition::NeedsUser,
        O::Http {
            status: 429 | 500..=599,
            ..
        } => Disposition::Retry { after: None },
        O::Refused { error, .. } if error == "temporarily_unavailable" => {
            Disposition::Retry { after: None }
        }
        O::Refused { .. } | O::Http { .. } | O::Garbage { .. } => Disposition::NeedsUser,
    }
}

/// IMAP facts: connection class, authentication, response codes (RFC 5530).
pub fn classify_imap(e: &imap::Error) -> Disposition {
    use imap::ResponseCode as C;
    // A temporary server state wins over the command that met it: a LOGIN answered
    // `NO [UNAVAILABLE]` is not a credentials problem.
    if e.response_code().is_some_and(C::is_transient) {
        return Disposition::Retry { after: None };
    }
    if e.is_auth() {
        return Disposition::NeedsUser;
    }
    match e {
        imap::Error::Unreachable { .. }
        | imap::Error::ConnectionLost { .. }
        | imap::Error::Timeout { .. } => Disposition::Offline,
        imap::Error::Tls { .. }
        | imap::Error::TlsConfig { .. }
        | imap::Error::PlaintextRefused { .. }
        | imap::Error::MissingCapability { .. } => Disposition::NeedsUser,
        imap::Error::No { code, .. } => match code {
            Some(C::NonExistent | C::UidValidity(_)) => Disposition::Resync,
            Some(C::NoPerm | C::OverQuota | C::ContactAdmin | C::PrivacyRequired) => {
                Disposition::NeedsUser
            }
            _ => Disposition::Reject,
        },
        imap::Error::Store(s) if s.is_transient() => Disposition::Retry { after: None },
        _ => Disposition::Reject,
    }
}

/// JMAP facts: transport kind, HTTP status, method error type, SetError type.
pub fn classify_jmap(e: &jmap::Error) -> Disposition {
    use jmap::{MethodErrorType as M, SetErrorType as S, TransportErrorKind as T};
    match e {
        jmap::Error::Transport(t) => match t.kind() {
            T::Connect | T::Timeout | T::Body => Disposition::Offline,
            T::Tls => Disposition::NeedsUser,
            _ => Disposition::Retry { after: None },
        },
        jmap::Error::Unauthorized { .. } => Disposition::NeedsUser,
        jmap::Error::Http {
            status: 429 | 500..=599,
            retry_after,
            ..
        } => Disposition::Retry {
            after: *retry_after,
        },
        jmap::Error::Http { .. } => Disposition::Reject,
        jmap::Error::Method(m) => match m.kind {
            M::StateMismatch | M::CannotCalculateChanges | M::ServerPartialFail => {
                Disposition::Resync
            }
            M::ServerUnavailable => Disposition::Retry { after: None },
            M::Forbidden
            | M::AccountNotFound
            | M::AccountNotSupportedByMethod
            | M::AccountReadOnly => Disposition::NeedsUser,
            _ => Disposition::Reject,
        },
        jmap::Error::SetItem { error, .. } => match error.kind {
            // An item the server failed on unexpectedly, its state unchanged: tried again
            // (Cyrus answers a mailbox destroyed twice within a second so, and the retry a
            // moment later goes through), and evicted after the usual attempts.
            S::RateLimit | S::ServerFail => Disposition::Retry { after: None },
            S::NotFound => Disposition::Gone,
            S::OverQuota | S::Forbidden => Disposition::NeedsUser,
            _ => Disposition::Reject,
        },
        jmap::Error::StateNotAdvancing { .. } => Disposition::Resync,
        jmap::Error::NotJmap { .. }
        | jmap::Error::InsecureUrl { .. }
        | jmap::Error::InvalidUrl { .. }
        | jmap::Error::Config(_)
        | jmap::Error::NoAccount { .. }
        | jmap::Error::UnsupportedCapability { .. } => Disposition::NeedsUser,
        jmap::Error::Io { .. } | jmap::Error::PushUnavailable { .. } => {
            Disposition::Retry { after: None }
        }
        _ => Disposition::Reject,
    }
}

/// Were credentials refused (as opposed to another "needs the user" cause such as a TLS or
/// configuration problem)? A typed fact, never read from message text.
pub fn is_auth_failure(err: &EngineError) -> bool {
    match err {
        EngineError::Imap(e) => e.is_auth() && classify_imap(e) == Disposition::NeedsUser,
        EngineError::Mailbox { source, .. } => {
            source.is_auth() && classify_imap(source) == Disposition::NeedsUser
        }
        EngineError::Jmap(jmap::Error::Unauthorized { .. })
        | EngineError::JmapSync(mailsync_jmap_sync::Error::Jmap(jmap::Error::Unauthorized {
            ..
        })) => true,
        EngineError::Smtp(crate::smtp::SmtpError::Auth { .. }) => true,
        _ => false,
    }
}

/// Does the error's own message already say "authentication failed" (its variant is the
/// protocol's authentication failure, not another response that carries an auth code)?
pub fn names_authentication(err: &EngineError) -> bool {
    use imap::Error as I;
    match err {
        EngineError::Imap(I::Auth { .. }) => true,
        EngineError::Mailbox { source, .. } => matches!(**source, I::Auth { .. }),
        EngineError::Jmap(jmap::Error::Unauthorized { .. })
        | EngineError::JmapSync(mailsync_jmap_sync::Error::Jmap(jmap::Error::Unauthorized {
            ..
        })) => true,
        EngineError::Smtp(crate::smtp::SmtpError::Auth { .. }) => true,
        _ => false,
    }
}

/// Whether a `Foo/changes` failure means "list this type again" is decided by the JMAP sync
/// (a protocol fact of its own, like an IMAP UIDVALIDITY change); its table test is here.
pub use mailsync_jmap_sync::{StateRejection, state_rejection};

/// Maps a failure of a whole outbox batch to the outbox's vocabulary (classified in one place).
pub fn batch_error(e: &EngineError) -> BatchError {
    let reason = e.to_string();
    match classify(e) {
        Disposition::Offline => BatchError::Offline(reason),
        Disposition::NeedsUser => BatchError::NeedsUser(reason),
        Disposition::Resync => BatchError::StateMismatch,
        Disposition::Retry { after } => BatchError::Transient {
            reason,
            retry_after: after,
        },
        _ => BatchError::Transient {
            reason,
            retry_after: None,
        },
    }
}

/// Maps a failure of one item to its outcome. A send interrupted while it was being handed
/// over is `Unknown`: the outbox then only looks for it, never repeats it.
pub fn item_outcome(e: &EngineError) -> ItemOutcome {
    let reason = e.to_string();
    if matches!(
        e,
        EngineError::Smtp(crate::smtp::SmtpError::Interrupted { .. })
    ) {
        return ItemOutcome::Unknown { reason };
    }
    match classify(e) {
        Disposition::Retry { after } => ItemOutcome::Transient {
            reason,
            retry_after: after,
        },
        Disposition::Offline => ItemOutcome::Transient {
            reason,
            retry_after: None,
        },
        Disposition::Gone => ItemOutcome::NotFound { reason },
        _ => ItemOutcome::Permanent { reason },
    }
}

/// Whether a request may have taken effect although its answer was lost (a connection cut
/// after it left): its outcome must be read back before it is repeated. Typed facts of each
/// protocol crate.
pub fn may_have_reached_server(e: &EngineError) -> bool {
    match e {
        EngineError::Imap(i) => i.may_have_reached_server(),
        EngineError::Mailbox { source, .. } => source.may_have_reached_server(),
        EngineError::Jmap(j) | EngineError::JmapSync(mailsync_jmap_sync::Error::Jmap(j)) => {
            j.may_have_reached_server()
        }
        EngineError::Smtp(crate::smtp::SmtpError::Interrupted { .. }) => true,
        _ => false,
    }
}

/// The outcome of a failed mailbox change (create, rename, delete, subscribe). As
/// [`item_outcome`], except that a missing mailbox (a parent, or the mailbox renamed or
/// subscribed to) is a refusal: unlike a message, a mailbox is not looked for again; and a
/// change cut after it left is uncertain, so its retry looks before it repeats (a CREATE
/// repeated blindly meets its own mailbox: `ALREADYEXISTS`, listed as failed although done).
pub fn mailbox_outcome(e: &EngineError) -> ItemOutcome {
    if may_have_reached_server(e) {
        return ItemOutcome::Unknown {
            reason: e.to_string(),
        };
    }
    match item_outcome(e) {
        ItemOutcome::NotFound { reason } => ItemOutcome::Permanent { reason },
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::OAuthError;
    use crate::secret::SecretError;
    use crate::smtp::SmtpError;

    #[test]
    fn an_interrupted_smtp_transaction_is_an_unknown_outcome() {
        let e = EngineError::Smtp(SmtpError::Interrupted {
            server: "h:25".into(),
            reason: "connection reset".into(),
        });
        assert!(matches!(item_outcome(&e), ItemOutcome::Unknown { .. }));
        let refused = EngineError::Smtp(SmtpError::Rejected {
            code: Some(451),
            permanent: false,
            reason: "try later".into(),
        });
        assert!(matches!(
            item_outcome(&refused),
            ItemOutcome::Transient { .. }
        ));
    }

    #[test]
    fn mailbox_outcome_table() {
        let no = |code| {
            EngineError::Imap(imap::Error::No {
                command: "CREATE".into(),
                code: Some(code),
                text: "refused".into(),
            })
        };
        let cases: Vec<(EngineError, &str)> = vec![
            // A name that exists, a mailbox that is not there: refused, never looked for.
            (no(imap::ResponseCode::AlreadyExists), "permanent"),
            (no(imap::ResponseCode::NonExistent), "permanent"),
            (EngineError::Refused("no role".into()), "permanent"),
            (no(imap::ResponseCode::Unavailable), "transient"),
            // Cut after the command left: looked for before it is repeated.
            (
                EngineError::Imap(imap::Error::ConnectionLost {
                    bye: None,
                    source: None,
                }),
                "unknown",
            ),
            (
                EngineError::Imap(imap::Error::Unreachable {
                    host: "h".into(),
                    port: 143,
                    source: std::io::Error::other("refused"),
                }),
                "transient",
            ),
        ];
        for (e, want) in cases {
            let got = match mailbox_outcome(&e) {
                ItemOutcome::Permanent { reason } => {
                    assert!(!reason.contains('\n'), "{reason}");
                    "permanent"
                }
                ItemOutcome::Transient { .. } => "transient",
                ItemOutcome::Unknown { .. } => "unknown",
                other => panic!("{e}: {other:?}"),
            };
            assert_eq!(got, want, "{e}");
        }
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(EngineError, Disposition)> = vec![
            (
                EngineError::Secret(SecretError::EnvMissing("PW".into())),
                Disposition::NeedsUser,
            ),
            (
                EngineError::Config("no IMAP host".into()),
                Disposition::NeedsUser,
            ),
            (
                EngineError::Store(mailsync_store::StoreError::NotFound {
                    what: "email",
                    key: "1".into(),
                }),
                Disposition::Reject,
            ),
            (
                EngineError::Smtp(SmtpError::Connect {
                    server: "h:25".into(),
                    reason: "refused".into(),
                }),
                Disposition::Offline,
            ),
            (
                EngineError::Smtp(SmtpError::Auth {
                    server: "h:25".into(),
                    reason: "535".into(),
                }),
                Disposition::NeedsUser,
            ),
            (
                EngineError::Smtp(SmtpError::Rejected {
                    code: Some(550),
                    permanent: true,
                    reason: "no such user".into(),
                }),
                Disposition::Reject,
            ),
            (
                EngineError::Smtp(SmtpError::Rejected {
                    code: Some(451),
                    permanent: false,
                    reason: "try later".into(),
                }),
                Disposition::Retry { after: None },
            ),
            (
                EngineError::Compose("bad address".into()),
                Disposition::Reject,
            ),
            (
                EngineError::OAuth(OAuthError::Refused {
                    url: "https://t/token".into(),
                    error: "invalid_grant".into(),
                    description: None,
                }),
                Disposition::NeedsUser,
            ),
            (
                EngineError::OAuth(OAuthError::Refused {
                    url: "https://t/token".into(),
                    error: "temporarily_unavailable".into(),
                    description: None,
                }),
                Disposition::Retry { after: None },
            ),
            (
                EngineError::OAuth(OAuthError::Unreachable {
                    url: "https://t/token".into(),
                    reason: "connection refused".into(),
                    tls: false,
                }),
                Disposition::Offline,
            ),
            (
                EngineError::OAuth(OAuthError::Unreachable {
                    url: "https://t/token".into(),
                    reason: "invalid peer certificate".into(),
                    tls: true,
                }),
                Disposition::NeedsUser,
            ),
            (
                EngineError::OAuth(OAuthError::Http {
                    url: "https://t/token".into(),
                    status: 503,
                }),
                Disposition::Retry { after: None },
            ),
            (
                EngineError::OAuth(OAuthError::Http {
                    url: "https://t/token".into(),
                    status: 404,
                }),
                Disposition::NeedsUser,
            ),
            (
                EngineError::OAuth(OAuthError::Garbage {
                    url: "https://t/token".into(),
                    reason: "an HTML page instead of JSON".into(),
                }),
                Disposition::NeedsUser,
            ),
            (
                EngineError::LeaseHeld {
                    account: mailsync_store::AccountId(1),
                    owner: "daemon".into(),
                },
                Disposition::Retry { after: None },
            ),
            (
                EngineError::OutboxPaused {
                    reason: "SMTP server unreachable".into(),
                    offline: true,
                },
                Disposition::Offline,
            ),
            (
                EngineError::OutboxPaused {
                    reason: "authentication failed".into(),
                    offline: false,
                },
                Disposition::NeedsUser,
            ),
        ];
        for (err, want) in &cases {
            assert_eq!(&classify(err), want, "{err}");
        }
    }

    fn jmap_method(kind: &str) -> jmap::Error {
        jmap::Error::Method(Box::new(jmap::MethodError {
            method: "Email/set".into(),
            call_id: "c0".into(),
            kind: jmap::MethodErrorType::parse(kind),
            type_name: kind.into(),
            description: None,
            extra: serde_json::Map::new(),
        }))
    }

    fn set_item(kind: &str) -> jmap::Error {
        let error: jmap::SetError =
            serde_json::from_value(serde_json::json!({ "type": kind })).expect("set error");
        jmap::Error::SetItem {
            operation: jmap::SetOperation::Update,
            id: "e1".into(),
            error: Box::new(error),
        }
    }

    fn imap_no(code: Option<imap::ResponseCode>) -> imap::Error {
        imap::Error::No {
            command: "UID MOVE".into(),
            code,
            text: "x".into(),
        }
    }

    #[test]
    fn imap_classification_table() {
        use imap::ResponseCode as C;
        let cases: Vec<(imap::Error, Disposition)> = vec![
            (
                imap::Error::Auth {
                    code: Some(C::AuthenticationFailed),
                    text: "bad".into(),
                },
                Disposition::NeedsUser,
            ),
            // A login met by a temporary server state is retried, not "needs the user".
            (
                imap::Error::Auth {
                    code: Some(C::Unavailable),
                    text: "maintenance".into(),
                },
                Disposition::Retry { after: None },
            ),
            (
                imap::Error::Unreachable {
                    host: "h".into(),
                    port: 993,
                    source: std::io::Error::other("refused"),
                },
                Disposition::Offline,
            ),
            (
                imap::Error::ConnectionLost {
                    bye: None,
                    source: None,
                },
                Disposition::Offline,
            ),
            (
                imap::Error::PlaintextRefused { host: "h".into() },
                Disposition::NeedsUser,
            ),
            (
                imap_no(Some(C::Unavailable)),
                Disposition::Retry { after: None },
            ),
            (imap_no(Some(C::InUse)), Disposition::Retry { after: None }),
            (imap_no(Some(C::Limit)), Disposition::Retry { after: None }),
            (
                imap_no(Some(C::Corruption)),
                Disposition::Retry { after: None },
            ),
            (
                imap_no(Some(C::ServerBug)),
                Disposition::Retry { after: None },
            ),
            (imap_no(Some(C::NonExistent)), Disposition::Resync),
            (imap_no(Some(C::NoPerm)), Disposition::NeedsUser),
            (imap_no(Some(C::OverQuota)), Disposition::NeedsUser),
            (imap_no(Some(C::Cannot)), Disposition::Reject),
            (imap_no(None), Disposition::Reject),
            (
                imap::Error::Bad {
                    command: "X".into(),
                    code: None,
                    text: "syntax".into(),
                },
                Disposition::Reject,
            ),
        ];
        for (err, want) in &cases {
            assert_eq!(&classify_imap(err), want, "{err}");
            // Mutations decide with the same set of transient codes as syncs.
            if let Some(code) = err.response_code() {
                assert_eq!(
                    code.is_transient(),
                    matches!(want, Disposition::Retry { .. }),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn jmap_classification_table() {
        let cases: Vec<(jmap::Error, Disposition)> = vec![
            (
                jmap::Error::Unauthorized { status: 401 },
                Disposition::NeedsUser,
            ),
            (jmap_method("stateMismatch"), Disposition::Resync),
            (jmap_method("cannotCalculateChanges"), Disposition::Resync),
            (
                jmap_method("serverUnavailable"),
                Disposition::Retry { after: None },
            ),
            (jmap_method("serverFail"), Disposition::Reject),
            (jmap_method("somethingNew"), Disposition::Reject),
            (jmap_method("accountNotFound"), Disposition::NeedsUser),
            (set_item("notFound"), Disposition::Gone),
            (set_item("rateLimit"), Disposition::Retry { after: None }),
            (set_item("serverFail"), Disposition::Retry { after: None }),
            (set_item("forbidden"), Disposition::NeedsUser),
            (set_item("invalidPatch"), Disposition::Reject),
            (
                jmap::Error::StateNotAdvancing {
                    method: "Email/changes".into(),
                    state: jmap::State::new("1"),
                },
                Disposition::Resync,
            ),
        ];
        for (err, want) in &cases {
            assert_eq!(&classify_jmap(err), want, "{err}");
        }
    }

    fn method_on(method: &str, kind: &str) -> jmap::Error {
        let jmap::Error::Method(mut m) = jmap_method(kind) else {
            unreachable!()
        };
        m.method = method.into();
        jmap::Error::Method(m)
    }

    #[test]
    fn state_rejection_table() {
        use jmap::MethodErrorType as M;
        let cases = [
            (
                method_on("Email/changes", "invalidArguments"),
                Some(StateRejection::Method(M::InvalidArguments)),
            ),
            (
                method_on("Mailbox/changes", "invalidArguments"),
                Some(StateRejection::Method(M::InvalidArguments)),
            ),
            (
                method_on("Email/changes", "cannotCalculateChanges"),
                Some(StateRejection::Method(M::CannotCalculateChanges)),
            ),
            // invalidArguments elsewhere is a bug of ours, not a stale state.
            (method_on("Email/query", "invalidArguments"), None),
            (method_on("Email/changes", "serverFail"), None),
            (
                jmap::Error::StateNotAdvancing {
                    method: "Email/changes".into(),
                    state: jmap::State::new("1"),
                },
                Some(StateRejection::NotAdvancing),
            ),
        ];
        for (err, want) in &cases {
            assert_eq!(&state_rejection(err), want, "{err}");
        }
    }
}
