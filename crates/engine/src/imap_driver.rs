//! The IMAP side of a worker (being connected to `mailsync-imap-sync`; until then IMAP
//! accounts report a clear configuration error instead of syncing).

use mailsync_outbox::Outbox;
use mailsync_store::accounts::Account;
use mailsync_store::sync_log::SyncCounts;
use mailsync_store::{EmailId, Store};
use tokio_util::sync::CancellationToken;

use crate::error::EngineError;
use crate::worker::AccountDriver;

fn not_yet() -> EngineError {
    EngineError::Config("IMAP accounts are not supported by this build yet".into())
}

/// Tests an IMAP account's settings.
pub async fn test(_account: &Account) -> Result<(), EngineError> {
    Err(not_yet())
}

/// Fetches and caches one email's body.
pub async fn fetch_body(
    _store: &Store,
    _account: &Account,
    _email: EmailId,
) -> Result<(), EngineError> {
    Err(not_yet())
}

/// Runs cycles and waits for an IMAP account.
pub struct ImapDriver {
    _store: Store,
    _outbox: std::sync::Arc<Outbox>,
    _account: Account,
}

impl ImapDriver {
    /// A driver for `account`.
    pub fn new(store: Store, outbox: std::sync::Arc<Outbox>, account: Account) -> Self {
        Self {
            _store: store,
            _outbox: outbox,
            _account: account,
        }
    }
}

#[async_trait::async_trait]
impl AccountDriver for ImapDriver {
    async fn cycle(&mut self, _cancel: &CancellationToken) -> Result<SyncCounts, EngineError> {
        Err(not_yet())
    }
    async fn wait_for_change(&mut self) -> Result<(), EngineError> {
        std::future::pending().await
    }
    async fn reset_checkpoints(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}
