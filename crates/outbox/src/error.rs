//! The one error type of this crate.

use mailsync_store::{AccountId, ChangeId, EmailId, FailedId, MailboxId, StoreError};

/// Everything that can go wrong in the outbox. Executor failures are not errors: they are
/// [`ItemOutcome`](crate::ItemOutcome)s and [`BatchError`](crate::BatchError)s, recorded on the
/// queued rows and summed up in a [`FlushReport`](crate::FlushReport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed. [`StoreError::is_transient`] tells a busy database from a real failure.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The email does not exist (any more) in the local database.
    #[error("email {0} not found")]
    EmailNotFound(EmailId),
    /// The mailbox does not exist in the local database.
    #[error("mailbox {0} not found")]
    MailboxNotFound(MailboxId),
    /// The mailbox cannot hold messages (an IMAP `\Noselect` container).
    #[error("mailbox {0} cannot hold messages")]
    MailboxNotSelectable(MailboxId),
    /// The email or mailbox belongs to another account than the one named.
    #[error("{what} belongs to account {actual}, not {expected}")]
    WrongAccount {
        /// "email" or "mailbox".
        what: &'static str,
        /// The account named by the caller.
        expected: AccountId,
        /// The account the row belongs to.
        actual: AccountId,
    },
    /// A keyword that is empty or contains characters IMAP and JMAP do not allow.
    #[error("invalid keyword {0:?}")]
    InvalidKeyword(String),
    /// An outgoing message that cannot be sent as given.
    #[error("invalid outgoing message: {0}")]
    InvalidMessage(String),
    /// The account has no mailbox with the Drafts role, so a draft has nowhere to go.
    #[error("account {0} has no Drafts mailbox")]
    NoDraftsMailbox(AccountId),
    /// The email is not a draft (not in the Drafts mailbox, or without the draft flag).
    #[error("email {0} is not a draft")]
    NotADraft(EmailId),
    /// The draft's row was not found right after writing it (a concurrent delete).
    #[error("the draft vanished while being saved")]
    DraftVanished,
    /// No queued change (nor recently completed one) has this id.
    #[error("change {0} not found")]
    ChangeNotFound(ChangeId),
    /// No failed change has this id.
    #[error("failed change {0} not found")]
    FailedNotFound(FailedId),
    /// The change cannot be undone any more.
    #[error("change {id} cannot be undone: {why}")]
    CannotUndo {
        /// The change.
        id: ChangeId,
        /// Why not.
        why: UndoRefusal,
    },
    /// A mailbox name that is empty, has surrounding spaces or control characters, contains
    /// the hierarchy delimiter, or would put a mailbox under itself.
    #[error("invalid mailbox name {name:?}: {why}")]
    InvalidMailboxName {
        /// The name given.
        name: String,
        /// What is wrong with it, in words.
        why: String,
    },
    /// A mailbox with this full name already exists in the account.
    #[error("a mailbox named {0:?} already exists")]
    MailboxExists(String),
    /// The account has no change that could be undone.
    #[error("nothing to undo for account {0}")]
    NothingToUndo(AccountId),
    /// A queued row's payload is not JSON this version understands.
    #[error("queued change {id}: unreadable payload: {source}")]
    Payload {
        /// The row (in `pending_changes` or `failed_mutations`).
        id: i64,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The executor broke its contract: it must return exactly one outcome per item.
    #[error("executor returned {got} outcomes for a batch of {expected}")]
    OutcomeCount {
        /// Items handed over.
        expected: usize,
        /// Outcomes returned.
        got: usize,
    },
}

/// Why [`Error::CannotUndo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UndoRefusal {
    /// A message handed to the server may have been delivered; mail cannot be recalled.
    AlreadySent,
    /// The email was (or is being) deleted permanently on the server.
    PermanentlyDeleted,
    /// Mailbox management is not undone automatically (make the opposite change instead).
    MailboxChange,
    /// A draft save the server has: save it again or discard it instead.
    DraftSaved,
}

impl std::fmt::Display for UndoRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AlreadySent => "the message was already handed to the server",
            Self::PermanentlyDeleted => "the email was permanently deleted on the server",
            Self::MailboxChange => "mailbox changes are not undone; make the opposite change",
            Self::DraftSaved => "a saved draft is not undone; save it again or discard it",
        })
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::from(e))
    }
}

impl Error {
    /// True when retrying the same call shortly may succeed: a busy SQLite database, a
    /// PostgreSQL deadlock or serialization failure (the transaction was rolled back).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}
