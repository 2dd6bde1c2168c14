//! The one sync cycle every protocol runs: flush the outbox → sync the server into the store →
//! re-apply still-queued changes → retry after a state mismatch → re-resolve lost changes (and
//! send the ones found) → sync again if one of those later flushes evicted a change → report. Protocols differ only in the two steps of [`Remote`].

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

impl Synced {
    /// This sync's counts followed by a later one's in the same cycle: the counts add up, the
    /// mailbox count and completeness are the later sync's.
    fn then(self, more: Synced) -> Synced {
        Synced {
            mailboxes: more.mailboxes,
            added: self.added + more.added,
            updated: self.updated + more.updated,
            removed: self.removed + more.removed,
            complete: more.complete,
        }
    }
}

/// Syncs, then shows still-queued changes again on top of what the sync wrote, rebased on it.
/// Also when the sync failed midway (a cut): what it committed before the failure (a mailbox's
/// server name, say) would otherwise hide a queued change (the user's rename) until the next
/// cycle (model test, Cyrus JMAP seed 2006 with cuts).
async fn sync_then_reapply(
    remote: &mut dyn Remote,
    outbox: &Outbox,
    account: AccountId,
) -> Result<Synced, EngineError> {
    let synced = remote.sync().await;
    let reapplied = outbox.reapply_queued(account).await;
    let synced = synced?;
    reapplied?;
    Ok(synced)
}

/// How many flushes after a state mismatch one cycle makes at most. Each of them answered
/// some change (see [`answered_some`]), so the queue bounds them already; this bounds a cycle
/// whose queue is fed as fast as it drains.
const MAX_MISMATCH_RETRIES: usize = 32;

/// Whether a flush had the server answer at least one change: those are not handed over again
/// in this cycle (done, evicted, held until found, or waiting for their backoff), so another
/// retry makes progress.
fn answered_some(r: &FlushReport) -> bool {
    r.done + r.submitted + r.transient + r.evicted + r.lost > 0
}

/// Runs one cycle of `account` over `remote`.
pub(crate) async fn run(
    remote: &mut dyn Remote,
    outbox: &Outbox,
    account: AccountId,
) -> Result<SyncCounts, EngineError> {
    // The first cycle of a process: show queued changes again over what a killed process
    // committed without them (`Outbox::recover`), before anything is sent or read.
    outbox.recover(account).await;
    let flushed = remote.flush(outbox, account).await?;
    let mut synced = sync_then_reapply(remote, outbox, account).await?;
    let mut done = flushed.done;
    // Whether a flush after the sync evicted a change: its revert may need the server's state
    // (a refused mailbox delete is made good by a listing), which this cycle then reads
    // again instead of ending with the mailbox missing until the next one.
    let mut evicted_late = false;
    if flushed.paused.is_none() {
        if flushed.resync_needed {
            // The server state moved under the queued changes (JMAP `stateMismatch`): the
            // sync above rebased them; send them again. A flush's own draft saves, sends and
            // mailbox changes move the Email state its next `Email/set` is guarded by (Cyrus
            // counts a mailbox create as an Email change too), so a retry that got some
            // changes through may stop at the next mismatch of its own making: sync and send
            // again while each retry answers something. Once was not enough: a queue of ~35
            // changes left by cuts and kills took 7 cycles to drain (model test, Cyrus JMAP
            // seed 19008 with faults). A retry that answers nothing (another client keeps
            // moving the state) waits for the next cycle.
            let mut rounds = 0;
            loop {
                tracing::info!(
                    "Server state moved under the queued changes; retrying after the sync."
                );
                let again = remote.flush(outbox, account).await?;
                done += again.done;
                evicted_late |= again.evicted > 0;
                rounds += 1;
                if !again.resync_needed
                    || again.paused.is_some()
                    || !answered_some(&again)
                    || rounds >= MAX_MISMATCH_RETRIES
                {
                    break;
                }
                synced = synced.then(sync_then_reapply(remote, outbox, account).await?);
            }
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
        synced = synced.then(sync_then_reapply(remote, outbox, account).await?);
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use mailsync_store::testing::TempDb;

    use super::*;

    /// A protocol whose flushes report what the test scripts, counting the syncs asked of it.
    struct Scripted {
        flushes: VecDeque<FlushReport>,
        syncs: usize,
    }

    #[async_trait::async_trait]
    impl Remote for Scripted {
        async fn flush(&mut self, _: &Outbox, _: AccountId) -> Result<FlushReport, EngineError> {
            Ok(self.flushes.pop_front().unwrap_or_default())
        }
        async fn sync(&mut self) -> Result<Synced, EngineError> {
            self.syncs += 1;
            Ok(Synced {
                complete: true,
                ..Synced::default()
            })
        }
    }

    fn report(resync_needed: bool, evicted: u32) -> FlushReport {
        let mut r = FlushReport::default();
        r.resync_needed = resync_needed;
        r.evicted = evicted;
        r
    }

    /// A change evicted by a flush after the sync (whose revert may need the server's state,
    /// as a refused mailbox delete does) gets a second sync in the same cycle; an eviction
    /// before the sync, or none, does not.
    #[tokio::test]
    async fn a_late_eviction_syncs_again() -> Result<(), Box<dyn std::error::Error>> {
        let db = TempDb::sqlite().await?;
        let outbox = Outbox::new(db.store.clone());
        let cases: &[(&str, Vec<FlushReport>, usize)] = &[
            ("nothing queued", vec![], 1),
            ("evicted before the sync", vec![report(false, 1)], 1),
            (
                "mismatch, the retry done",
                vec![report(true, 0), report(false, 0)],
                1,
            ),
            (
                "mismatch, the retry evicted",
                vec![report(true, 0), report(false, 1)],
                2,
            ),
        ];
        for (what, flushes, syncs) in cases {
            let mut remote = Scripted {
                flushes: flushes.iter().cloned().collect(),
                syncs: 0,
            };
            run(&mut remote, &outbox, AccountId(1)).await?;
            assert_eq!(remote.syncs, *syncs, "{what}");
        }
        db.cleanup().await?;
        Ok(())
    }

    /// After a state mismatch the cycle syncs and flushes again for as long as each retry had
    /// the server answer something and mismatched again (a flush's own draft saves, sends and
    /// mailbox changes move the Email state its next batch is guarded by: model test, Cyrus
    /// JMAP seed 19008), and stops at a retry that answered nothing.
    #[tokio::test]
    async fn a_mismatch_retry_goes_on_while_it_makes_progress()
    -> Result<(), Box<dyn std::error::Error>> {
        let db = TempDb::sqlite().await?;
        let outbox = Outbox::new(db.store.clone());
        let answered = |done: u32| {
            let mut r = report(true, 0);
            r.done = done;
            r
        };
        let cases: &[(&str, Vec<FlushReport>, usize, i64)] = &[
            (
                "two retries got changes through, the third drained the queue",
                vec![report(true, 0), answered(3), answered(2), report(false, 0)],
                3,
                5,
            ),
            (
                "the retry answered nothing: the next cycle",
                vec![report(true, 0), report(true, 0), report(false, 0)],
                1,
                0,
            ),
        ];
        for (what, flushes, syncs, done) in cases {
            let mut remote = Scripted {
                flushes: flushes.iter().cloned().collect(),
                syncs: 0,
            };
            let counts = run(&mut remote, &outbox, AccountId(1)).await?;
            assert_eq!(remote.syncs, *syncs, "{what}");
            assert_eq!(counts.changes_flushed, *done, "{what}");
        }
        db.cleanup().await?;
        Ok(())
    }
}
