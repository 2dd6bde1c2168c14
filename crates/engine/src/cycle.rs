//! The one sync cycle every protocol runs: flush the outbox → sync the server into the store →
//! re-apply still-queued changes → retry after a state mismatch → re-resolve lost changes (and
//! send the ones found) → report. Protocols differ only in the two steps of [`Remote`].

use mailsync_outbox::{FlushReport, Outbox};
use mailsync_store::AccountId;
use mailsync_store::sync_log::SyncCounts;

use crate::error::EngineError;

/// What a protocol does in a cycle; everything around these two steps is shared.
#[async_trait::async_trait]
pub(crate) trait Remote: Send {
    /// Sends the account's due changes through this protocol's outbox executor.
    async fn flush(
        &mut self,
        outbox: &Outbox,
        account: AccountId,
    ) -> Result<FlushReport, EngineError>;
    /// Writes what changed on the server into the store, with its checkpoints.
    async fn sync(&mut self) -> Result<Synced, EngineError>;
}

/// What a protocol's sync step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub mailboxes: i64,
    pub added: i64,
    pub updated: i64,
    pub removed: i64,
    /// Every mailbox was synced (none failed or isolated): only then may a message missing
    /// from the store be taken as gone from the server.
    pub complete: bool,
}

/// Runs one cycle of `account` over `remote`.
pub(crate) async fn run(
    remote: &mut dyn Remote,
    outbox: &Outbox,
    account: AccountId,
) -> Result<SyncCounts, EngineError> {
    let flushed = remote.flush(outbox, account).await?;
    let mut synced = remote.sync().await?;
    // Show still-queued changes again on top of what the sync wrote, rebased on it.
    outbox.reapply_queued(account).await?;
    let mut done = flushed.done;
    // Whether a flush after the sync evicted a change: its revert may need the server's state
    // (a refused mailbox delete is made good by a listing), which this cycle then reads
    // again instead of ending with the mailbox missing until the next one.
    let mut evicted_late = false;
    if flushed.paused.is_none() {
        if flushed.resync_needed {
            // The server state moved under the queued changes (JMAP `stateMismatch`): the
            // sync above rebased them; send them again, once. A second mismatch waits for the
            // next cycle.
            tracing::info!("Server state moved under the queued changes; retrying after the sync.");
            let again = remote.flush(outbox, account).await?;
            done += again.done;
            evicted_late |= again.evicted > 0;
        }
        // Changes whose message was not where they addressed it are found again (or declared
        // gone) once the whole account is known, and the found ones go out at once.
        if synced.complete && outbox.reresolve(account).await?.found > 0 {
            let again = remote.flush(outbox, account).await?;
            done += again.done;
            evicted_late |= again.evicted > 0;
        }
    }
    if evicted_late {
        tracing::info!("A change sent after the sync was refused; syncing again.");
        let more = remote.sync().await?;
        outbox.reapply_queued(account).await?;
        synced = Synced {
            mailboxes: more.mailboxes,
            added: synced.added + more.added,
            updated: synced.updated + more.updated,
            removed: synced.removed + more.removed,
            complete: more.complete,
        };
    }
    if let Some(p) = &flushed.paused {
        return Err(EngineError::from_pause(p));
    }
    Ok(SyncCounts {
        mailboxes: synced.mailboxes,
        emails_added: synced.added,
        emails_updated: synced.updated,
        emails_removed: synced.removed,
        changes_flushed: i64::from(done),
    })
}
