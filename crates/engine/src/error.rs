//! The engine's error type: the typed errors of the crates it composes, plus its own.

use crate::secret::SecretError;
use crate::smtp::SmtpError;

/// Everything that can go wrong in the engine. Classified by [`crate::classify::classify`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The local database.
    #[error(transparent)]
    Store(#[from] mailsync_store::StoreError),
    /// The account's secret could not be obtained.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No OAuth 2 access token could be obtained from the token endpoint.
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    /// The JMAP server.
    #[error(transparent)]
    Jmap(#[from] mailsync_jmap_client::Error),
    /// The IMAP server.
    #[error(transparent)]
    Imap(#[from] mailsync_imap_sync::Error),
    /// One mailbox failed to sync (the others were synced).
    #[error("mailbox {mailbox:?}: {source}")]
    Mailbox {
        /// The mailbox's display name.
        mailbox: String,
        /// The IMAP error.
        #[source]
        source: Box<mailsync_imap_sync::Error>,
    },
    /// The sync ran, but queued changes could not be sent (the outbox paused).
    #[error("queued changes not sent: {reason}")]
    OutboxPaused {
        /// The cause, one line.
        reason: String,
        /// The server was unreachable (else: the user must act, e.g. credentials).
        offline: bool,
    },
    /// The outbox (queue storage).
    #[error(transparent)]
    Outbox(#[from] mailsync_outbox::Error),
    /// Sending over SMTP.
    #[error(transparent)]
    Smtp(#[from] SmtpError),
    /// A local file (a saved attachment, the parts cache) could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The account's settings are incomplete or invalid.
    #[error("account configuration: {0}")]
    Config(String),
    /// A message could not be built from what was given.
    #[error("cannot build message: {0}")]
    Compose(String),
    /// The server accepted a request but did not do what was asked (e.g. a mailbox created
    /// without the requested role), or the request names something that is not there.
    #[error("{0}")]
    Refused(String),
    /// Syncing a JMAP account into the store failed (its cause is typed: JMAP, store, or a
    /// server rejecting its own fresh state).
    #[error(transparent)]
    JmapSync(#[from] mailsync_jmap_sync::Error),
    /// The operation was stopped by a shutdown.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// Another engine (a daemon, another process or machine) holds the account's lease: it
    /// flushes and syncs the account; this one must not race it.
    #[error("account {account} is being synced by {owner}")]
    LeaseHeld {
        /// The account.
        account: mailsync_store::AccountId,
        /// The lease's owner.
        owner: String,
    },
    /// The account's lease expired while this engine worked on it (heartbeats failed) and
    /// another owner took it: the work stopped after the batch in progress.
    #[error("lost the lease of account {0}")]
    LeaseLost(mailsync_store::AccountId),
}

impl EngineError {
    /// The error to report for a cycle whose flush paused, so that the sync log and the exit
    /// code say the changes did not go out instead of reporting success.
    pub fn from_pause(p: &mailsync_outbox::Pause) -> Self {
        match p {
            mailsync_outbox::Pause::Offline(r) => Self::OutboxPaused {
                reason: r.clone(),
                offline: true,
            },
            mailsync_outbox::Pause::NeedsUser(r) => Self::OutboxPaused {
                reason: r.clone(),
                offline: false,
            },
        }
    }
}
