//! The crate's error, and the one protocol fact it decides on itself: a stored state the
//! server no longer accepts as the start of `Foo/changes` (then that type is listed again).

use mailsync_jmap_client as jmap;
use mailsync_store::StoreError;

/// What can go wrong syncing a JMAP account into the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The JMAP client failed (transport, HTTP, method or set error): typed facts for the
    /// caller's classification.
    #[error(transparent)]
    Jmap(#[from] jmap::Error),
    /// The local database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server listed more mailboxes than [`crate::MAX_MAILBOXES`]; nothing was stored.
    #[error("the server lists {count} mailboxes, more than the limit of {limit}")]
    TooManyMailboxes {
        /// How many the server listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The server rejected the state it had just given, right after a full listing: listing
    /// again would loop, so the sync fails instead.
    #[error("the server rejects its own fresh {data_type} state ({rejection})")]
    StateRejectedAgain {
        /// The JMAP data type (`Email`, `Mailbox`).
        data_type: &'static str,
        /// How the server rejected it.
        rejection: StateRejection,
    },
}

/// Why a stored JMAP state can no longer be used as the start of `Foo/changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateRejection {
    /// The server answered this method error to `Foo/changes` from the stored state:
    /// `cannotCalculateChanges` (RFC 8620), or `invalidArguments` (servers that no longer
    /// accept an old or foreign state string), or `stateMismatch`.
    Method(jmap::MethodErrorType),
    /// The server reported more changes without its state advancing.
    NotAdvancing,
}

impl std::fmt::Display for StateRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateRejection::Method(m) => write!(f, "{}", m.as_str()),
            StateRejection::NotAdvancing => f.write_str("state not advancing"),
        }
    }
}

/// Whether a `Foo/changes` failure means "the stored state is useless: list this type again".
///
/// The only client-chosen argument of our `/changes` calls that a server can reject is
/// `sinceState` (`maxChanges` is always a positive integer), so `invalidArguments` on a
/// `/changes` method is a rejected state whatever `arguments` the server names (Cyrus names
/// `sinceState`; other servers only describe it in text, which is never parsed).
pub fn state_rejection(e: &jmap::Error) -> Option<StateRejection> {
    use jmap::MethodErrorType as M;
    match e {
        jmap::Error::Method(m) => match m.kind {
            M::CannotCalculateChanges | M::StateMismatch => Some(StateRejection::Method(m.kind)),
            M::InvalidArguments if m.method.ends_with("/changes") => {
                Some(StateRejection::Method(m.kind))
            }
            _ => None,
        },
        jmap::Error::StateNotAdvancing { .. } => Some(StateRejection::NotAdvancing),
        _ => None,
    }
}
