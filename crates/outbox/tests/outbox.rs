//! The outbox on the real store, on both SQLite and PostgreSQL: end to end through a fake
//! server, eviction and the failed list, crash-safe sends, concurrent enqueues and flushes,
//! the sync hook, and timings of a bulk enqueue and flush.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsync_outbox::{
    Attempt, BatchError, Change, ChangeState, Enqueued, Executor, ItemOutcome, MockExecutor,
    Operation, OutgoingMessage, QueuedChange, Target, reapply_after_sync,
};
use mailsync_store::emails::{self, EmailUpsert, Membership};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, Address, ConnectionTrait, EmailId, Store, TransactionTrait};
use support::{FakeServer, Fx, R, Res};

/// Runs each body against a fresh SQLite file and a fresh PostgreSQL database.
macro_rules! both_backends {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> super::R {
                let db = super::TempDb::sqlite().await?;
                let res = super::$body(db.store.clone()).await;
                db.cleanup().await?;
                res
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> super::R {
                let db = super::TempDb::postgres().await.map_err(|e| format!(
                    "PostgreSQL is required for this test (MAILSYNC_PG_URL or {}): {e}",
                    mailsync_store::testing::DEFAULT_PG_URL))?;
                let res = super::$body(db.store.clone()).await;
                db.cleanup().await?;
                res
            })*
        }
    };
}

both_backends! {
    end_to_end_through_a_fake_server => end_to_end_through_a_fake_server;
    eviction_reverts_and_the_user_can_retry_or_dismiss => eviction_and_failed_list;
    a_crashed_send_is_checked_not_resent => crashed_send_is_checked;
    per_email_order_holds_across_flushes => per_email_order;
    concurrent_enqueues_and_flushes_converge => concurrent_enqueues_and_flushes;
    queued_changes_survive_a_sync => queued_changes_survive_a_sync;
    untouched_changes_survive_a_sync => untouched_changes_survive_a_sync;
    a_queued_move_survives_a_sync_of_flags => a_queued_move_survives_a_sync_of_flags;
    a_move_into_a_removed_mailbox_does_not_fail_the_sync => move_into_removed_mailbox;
    a_base_shown_again_is_compared_in_full => base_shown_again;
    bulk_enqueue_and_flush_timings => bulk_timings;
}

fn message(subject: &str) -> OutgoingMessage {
    OutgoingMessage {
        from: Address {
            name: Some("T".into()),
            email: "t@example.test".into(),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: subject.into(),
        text: "body".into(),
        ..Default::default()
    }
}

/// Flushes until nothing is due (the fake server acknowledges everything).
async fn drain(fx: &Fx, server: &FakeServer) -> Res<()> {
    for _ in 0..20 {
        let r = fx.outbox.flush(fx.account, server).await?;
        if r.next_due.is_none() {
            return Ok(());
        }
        assert!(r.paused.is_none() && r.evicted == 0, "{r:?}");
    }
    Err("queue did not drain".into())
}

/// Asserts that the local database shows exactly what the fake server has.
async fn assert_converged(fx: &Fx, server: &FakeServer, ids: &[EmailId]) -> R {
    for id in ids {
        let local = fx.state(*id).await?;
        let remote = {
            let c = fx.store.conn();
            let e = emails::get(c, *id).await.ok();
            e.and_then(|e| server.lock_emails().get(&e.remote_id).cloned())
        };
        match (local, remote) {
            (None, None) => {}
            (Some(l), Some(r)) => {
                assert_eq!(l.flags, r.flags, "flags of {id}");
                assert_eq!(
                    l.mailbox_ids(),
                    r.mailboxes.iter().copied().collect::<Vec<_>>(),
                    "mailboxes of {id}"
                );
            }
            (l, r) => return Err(format!("{id}: local {l:?} vs server {r:?}").into()),
        }
    }
    fx.assert_counters_exact().await
}

async fn end_to_end_through_a_fake_server(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(fx.email(n).await?);
    }
    let server = FakeServer::mirror(&fx, &ids).await?;
    fx.outbox
        .enqueue_all(
            fx.account,
            vec![
                Change::seen(ids[0], true),
                Change::flagged(ids[1], true),
                Change::keyword(ids[2], "$Forwarded", true)?,
                Change::move_to(ids[3], fx.archive),
                Change::move_to(ids[3], fx.other),
                Change::delete(ids[4]),
                Change::delete(ids[5]),
                Change::delete(ids[5]),
                Change::send(message("hello")),
            ],
        )
        .await?;
    let counts = fx.outbox.counts(fx.account).await?;
    assert_eq!(counts.pending, 7);
    let report = fx.outbox.flush(fx.account, server.as_ref()).await?;
    assert_eq!((report.done, report.batches), (7, 1));
    assert_eq!(report.next_due, None);
    assert_eq!(server.sent().len(), 1);
    assert_converged(&fx, &server, &ids).await?;
    assert_eq!(fx.state(ids[5]).await?, None, "permanently deleted");
    assert_eq!(fx.where_is(ids[4]).await?, vec![fx.trash]);
    Ok(())
}

async fn eviction_and_failed_list(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let a = fx.email(1).await?;
    let before = fx.state(a).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    let mut m = MockExecutor::new();
    m.expect_execute().times(1).returning(|_, batch| {
        Ok(batch
            .iter()
            .map(|_| ItemOutcome::Permanent {
                reason: "forbidden".into(),
            })
            .collect())
    });
    let report = fx.outbox.flush(fx.account, &m).await?;
    assert_eq!(report.evicted, 1);
    assert_eq!(fx.state(a).await?, before, "the server wins");
    fx.assert_counters_exact().await?;
    let failed = fx.outbox.failed(fx.account).await?;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, "forbidden");
    assert_eq!(failed[0].kind, "move");
    assert!(failed[0].failed_at >= failed[0].created_at);
    let counts = fx.outbox.counts(fx.account).await?;
    assert_eq!((counts.queued(), counts.failed), (0, 1));

    fx.outbox.retry_failed(failed[0].id).await?;
    assert_eq!(fx.where_is(a).await?, vec![fx.archive]);
    let server = FakeServer::mirror(&fx, &[]).await?;
    let remote_id = emails::get(fx.store.conn(), a).await?.remote_id;
    server.lock_emails().insert(
        remote_id,
        support::ServerEmail {
            flags: mailsync_outbox::Flags::default(),
            mailboxes: [fx.inbox].into_iter().collect(),
        },
    );
    drain(&fx, &server).await?;
    assert_converged(&fx, &server, &[a]).await?;
    assert_eq!(fx.outbox.counts(fx.account).await?.failed, 0);
    Ok(())
}

/// Every way an email comes back to its queue's base (an evicted move, a move into a mailbox
/// whose create the server refused, an undo) has the base's mailbox compared in full by the
/// next sync: its checkpoint may have passed another client's expunge of the copy the change
/// hid. Without it the refused create put a message back in Archive that another client had
/// expunged, for good (model test, Dovecot seed 62004).
async fn base_shown_again(store: Store) -> R {
    use mailsync_store::checkpoints::{self, Checkpoint, Scope};
    let fx = Fx::new(store, |o| o).await?;
    let c = fx.store.conn();
    let modseq = |m| async move {
        checkpoints::get(c, fx.account, &Scope::imap_mailbox(m))
            .await
            .map(|cp| cp.and_then(|cp| cp.highestmodseq))
    };
    let checkpoint = |m| async move {
        let cp = Checkpoint {
            uidvalidity: Some(7),
            last_uid: Some(9),
            highestmodseq: Some(42),
            ..Checkpoint::default()
        };
        checkpoints::put(c, fx.account, &Scope::imap_mailbox(m), &cp).await
    };
    let refuse = || {
        let mut m = MockExecutor::new();
        m.expect_execute().returning(|_, batch| {
            Ok(batch
                .iter()
                .map(|_| ItemOutcome::Permanent {
                    reason: "NO [ALREADYEXISTS] Mailbox already exists".into(),
                })
                .collect())
        });
        m
    };
    let a = fx.email_in(1, fx.archive, Default::default()).await?;
    let b = fx.email_in(2, fx.other, Default::default()).await?;
    let d = fx.email_in(3, fx.trash, Default::default()).await?;
    for m in [fx.inbox, fx.archive, fx.other, fx.trash] {
        checkpoint(m).await?;
    }

    // A move into a mailbox created locally, the create refused.
    let (made, _) = fx
        .outbox
        .manage_mailbox(
            fx.account,
            mailsync_outbox::MailboxChange::Create {
                name: "F".into(),
                parent: None,
                role: None,
            },
        )
        .await?;
    let made = made.ok_or("no mailbox created")?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, made))
        .await?;
    assert_eq!(fx.where_is(a).await?, vec![made]);
    let report = fx.outbox.flush(fx.account, &refuse()).await?;
    assert!(report.evicted >= 1, "{report:?}");
    assert_eq!(fx.where_is(a).await?, vec![fx.archive], "back on its base");
    assert_eq!(modseq(fx.archive).await?, None, "Archive compared in full");
    assert_eq!(modseq(fx.inbox).await?, Some(42), "INBOX untouched");

    // An evicted move.
    fx.outbox
        .enqueue(fx.account, Change::move_to(b, fx.inbox))
        .await?;
    fx.outbox.flush(fx.account, &refuse()).await?;
    assert_eq!(fx.where_is(b).await?, vec![fx.other]);
    assert_eq!(modseq(fx.other).await?, None, "Other compared in full");
    assert_eq!(modseq(fx.inbox).await?, Some(42), "INBOX untouched");

    // An undo before the flush.
    fx.outbox
        .enqueue(fx.account, Change::move_to(d, fx.inbox))
        .await?;
    fx.outbox.undo_last(fx.account).await?;
    assert_eq!(fx.where_is(d).await?, vec![fx.trash]);
    assert_eq!(modseq(fx.trash).await?, None, "Trash compared in full");
    assert_eq!(modseq(fx.inbox).await?, Some(42), "INBOX untouched");

    // An undone flag change: the email stays where it was, but a sync while the change
    // waited left the email's flags as the user had set them, whatever another client did
    // (model test, Cyrus IMAP seed 81029 with cuts: the undo set \Flagged again for good).
    checkpoint(fx.trash).await?;
    let jmap = Checkpoint {
        state: Some("s1".into()),
        ..Checkpoint::default()
    };
    checkpoints::put(c, fx.account, &Scope::jmap("Email"), &jmap).await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(d, true))
        .await?;
    fx.outbox.undo_last(fx.account).await?;
    assert_eq!(fx.where_is(d).await?, vec![fx.trash]);
    assert_eq!(modseq(fx.trash).await?, None, "Trash compared in full");
    assert_eq!(modseq(fx.inbox).await?, Some(42), "INBOX untouched");
    assert!(
        checkpoints::get(c, fx.account, &Scope::jmap("Email"))
            .await?
            .is_none(),
        "JMAP emails listed in full"
    );
    fx.assert_counters_exact().await
}

/// Journals the hand-over of every send as the contract asks, submits it, then never answers.
struct SendsThenHangs(Arc<FakeServer>, Arc<mailsync_outbox::Outbox>);

#[async_trait::async_trait]
impl Executor for SendsThenHangs {
    async fn execute(
        &self,
        account: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        for q in batch {
            self.1
                .send_handing(q.id)
                .await
                .map_err(|e| BatchError::Offline(e.to_string()))?;
        }
        self.0.execute(account, batch).await?;
        std::future::pending::<()>().await;
        Ok(Vec::new())
    }
}

async fn crashed_send_is_checked(store: Store) -> R {
    let fx = Fx::new(store.clone(), |o| o).await?;
    let server = Arc::new(FakeServer::default());
    fx.outbox
        .enqueue(fx.account, Change::send(message("exactly once")))
        .await?;
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        fx.outbox.flush(
            fx.account,
            &SendsThenHangs(server.clone(), fx.outbox.clone()),
        ),
    )
    .await;
    assert!(cut.is_err());
    // A new process: a fresh outbox over the same database.
    let restarted = mailsync_outbox::Outbox::new(store);
    assert_eq!(restarted.counts(fx.account).await?.in_flight, 1);
    let report = restarted.flush(fx.account, server.as_ref()).await?;
    assert_eq!(report.done, 1);
    let batches = server
        .batches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1][0].attempt, Attempt::Uncertain);
    assert_eq!(server.sent().len(), 1);
    assert_eq!(restarted.counts(fx.account).await?.queued(), 0);
    Ok(())
}

async fn per_email_order(store: Store) -> R {
    let clock = mailsync_outbox::ManualClock::new(mailsync_store::now());
    let c = clock.clone();
    let fx = Fx::new(store, move |o| {
        o.with_clock(Arc::new(c))
            .with_jitter(Arc::new(mailsync_outbox::FixedJitter(1.0)))
    })
    .await?;
    let a = fx.email(1).await?;
    let b = fx.email(2).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    let mut m = MockExecutor::new();
    m.expect_execute().times(1).returning(|_, batch| {
        Ok(batch
            .iter()
            .map(|_| ItemOutcome::Transient {
                reason: "503".into(),
                retry_after: None,
            })
            .collect())
    });
    fx.outbox.flush(fx.account, &m).await?;
    // a's move waits for its retry; a change of a made now joins it (the row is pending
    // again) and waits with it, while b's change is due at once.
    let r = fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    assert!(matches!(r, Enqueued::Merged(_)), "{r:?}");
    fx.outbox.enqueue(fx.account, Change::seen(b, true)).await?;
    let server = FakeServer::mirror(&fx, &[]).await?;
    for id in [a, b] {
        let e = emails::get(fx.store.conn(), id).await?;
        server.lock_emails().insert(
            e.remote_id,
            support::ServerEmail {
                flags: Default::default(),
                mailboxes: [fx.inbox].into_iter().collect(),
            },
        );
    }
    let r = fx.outbox.flush(fx.account, server.as_ref()).await?;
    assert_eq!(r.done, 1, "only b is due");
    clock.advance(Duration::from_secs(2));
    let r = fx.outbox.flush(fx.account, server.as_ref()).await?;
    assert_eq!(r.done, 1);
    assert_converged(&fx, &server, &[a, b]).await?;
    Ok(())
}

async fn concurrent_enqueues_and_flushes(store: Store) -> R {
    let fx = Arc::new(Fx::new(store, |o| o).await?);
    let mut ids = Vec::new();
    for n in 1..=20 {
        ids.push(fx.email(n).await?);
    }
    let server = FakeServer::mirror(&fx, &ids).await?;
    let mut tasks = Vec::new();
    for worker in 0..4usize {
        let fx = fx.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..30usize {
                let id = ids[(worker * 7 + step * 3) % ids.len()];
                let change = match (worker + step) % 5 {
                    0 => Change::seen(id, step % 2 == 0),
                    1 => Change::flagged(id, step % 3 == 0),
                    2 => Change::move_to(id, fx.archive),
                    3 => Change::move_to(id, fx.other),
                    _ => Change::move_to(id, fx.inbox),
                };
                fx.outbox.enqueue(fx.account, change).await?;
            }
            Ok::<_, mailsync_outbox::Error>(())
        }));
    }
    let flusher = {
        let fx = fx.clone();
        let server = server.clone();
        tokio::spawn(async move {
            for _ in 0..15 {
                fx.outbox.flush(fx.account, server.as_ref()).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, mailsync_outbox::Error>(())
        })
    };
    for t in tasks {
        t.await??;
    }
    flusher.await??;
    drain(&fx, &server).await?;
    assert_eq!(fx.outbox.counts(fx.account).await?.failed, 0);
    assert_converged(&fx, &server, &ids).await?;
    Ok(())
}

async fn queued_changes_survive_a_sync(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let a = fx.email(1).await?;
    let b = fx.email(2).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(b, true))
        .await?;
    // A sync writes what the server has: a still unread; b flagged by another client.
    let c = fx.store.conn();
    let mut batch = Vec::new();
    for (id, flagged) in [(a, false), (b, true)] {
        let e = emails::get(c, id).await?;
        let mut u = EmailUpsert::new(e.remote_id.clone(), e.received_at);
        u.message_id = e.message_id.clone();
        u.flags.flagged = flagged;
        u.mailboxes = vec![Membership {
            mailbox_id: fx.inbox,
            uidvalidity: Some(7),
            uid: Some(if id == a { 1 } else { 2 }),
            modseq: Some(2),
        }];
        batch.push(u);
    }
    let txn = fx.store.conn().begin().await?;
    emails::upsert_batch(&txn, fx.account, &batch).await?;
    let n = reapply_after_sync(&txn, &[a, b]).await?;
    txn.commit().await?;
    assert_eq!(n, 2);
    assert!(
        fx.state(a).await?.is_some_and(|s| s.flags.seen),
        "still shown read"
    );
    // b's flag is what the queue already shows, so the sync may as well not have written it:
    // the change stays and goes up (setting a set flag is idempotent). Dropping it on the
    // strength of a field the sync may have left alone loses changes (model seed 909).
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].email_id, Some(a));
    assert!(pending.iter().all(|p| p.state == ChangeState::Pending));
    fx.assert_counters_exact().await?;
    Ok(())
}

/// A queued move into a mailbox the sync then removes (another client deleted it): re-applying
/// the move on top of what the sync wrote must not name that mailbox (a foreign-key error that
/// failed every sync: model test, seed 538). The email shows where the server has it; the
/// move stays queued, to fail when flushed.
async fn move_into_removed_mailbox(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let a = fx.email(1).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.other))
        .await?;
    let c = fx.store.conn();
    let e = emails::get(c, a).await?;
    let mut u = EmailUpsert::new(e.remote_id.clone(), e.received_at);
    u.message_id = e.message_id.clone();
    u.mailboxes = vec![Membership {
        mailbox_id: fx.inbox,
        uidvalidity: Some(7),
        uid: Some(1),
        modseq: Some(2),
    }];
    let txn = fx.store.conn().begin().await?;
    // The mailbox row goes (its memberships with it); the email row stays, as when the sync
    // removes the mailbox and then finds the email again in INBOX.
    txn.execute_unprepared(&format!("DELETE FROM mailboxes WHERE id = {}", fx.other.0))
        .await?;
    emails::upsert_batch(&txn, fx.account, &[u]).await?;
    reapply_after_sync(&txn, &[a]).await?;
    txn.commit().await?;
    assert_eq!(fx.where_is(a).await?, vec![fx.inbox]);
    assert_eq!(fx.outbox.pending(fx.account).await?.len(), 1);
    Ok(())
}

/// A delete to the trash is queued; before it is flushed, a sync writes only the email's flags
/// (another client marked it read; IMAP's flag sync writes flags by server identity and
/// leaves the optimistic location alone). Re-applying must not take the optimistic location
/// for the server's: the move was dropped unsent, and the next sync's clean-up then removed
/// the copy the server still had in INBOX (model test seed 909 on Dovecot).
async fn a_queued_move_survives_a_sync_of_flags(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let a = fx.email(1).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.other))
        .await?;
    let c = fx.store.conn();
    let e = emails::get(c, a).await?;
    let mut read = e.flags.clone();
    read.seen = true;
    let txn = fx.store.conn().begin().await?;
    emails::set_flags_by_remote_ids(&txn, fx.account, &[(e.remote_id.clone(), read)]).await?;
    reapply_after_sync(&txn, &[a]).await?;
    txn.commit().await?;
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending.len(), 1, "the move is still queued");
    assert_eq!(fx.where_is(a).await?, vec![fx.other], "still shown moved");
    assert!(
        fx.state(a).await?.is_some_and(|s| s.flags.seen),
        "read, as the sync wrote"
    );
    // Flushed, it still moves from INBOX with the UID it was queued with.
    let calls: Arc<std::sync::Mutex<Vec<Vec<QueuedChange>>>> = Arc::default();
    let seen = calls.clone();
    let mut m = MockExecutor::new();
    m.expect_execute().returning(move |_, batch| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.to_vec());
        Ok(batch.iter().map(|_| ItemOutcome::Done).collect())
    });
    fx.outbox.flush(fx.account, &m).await?;
    let batches = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(Operation::Email(op)) = batches
        .first()
        .and_then(|b| b.first())
        .map(|q| &q.operation)
    else {
        return Err("one email change flushed".into());
    };
    assert_eq!(op.target, Target::Mailboxes(vec![fx.other]));
    assert_eq!(op.before.mailbox_ids(), vec![fx.inbox]);
    assert!(
        op.before.mailboxes.iter().all(|l| l.uid.is_some()),
        "{op:?}"
    );
    Ok(())
}

/// A change queued while a sync ran (or waiting for a retry) whose email the sync did not
/// write: re-applying must keep it, not mistake the optimistic state for the server's.
async fn untouched_changes_survive_a_sync(store: Store) -> R {
    let fx = Fx::new(store, |o| o).await?;
    let a = fx.email(1).await?;
    let b = fx.email(2).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(b, fx.archive))
        .await?;
    let txn = fx.store.conn().begin().await?;
    reapply_after_sync(&txn, &[a, b]).await?;
    txn.commit().await?;
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending.len(), 2, "{pending:#?}");
    assert!(fx.state(a).await?.is_some_and(|s| s.flags.seen));
    fx.assert_counters_exact().await?;
    Ok(())
}

async fn bulk_timings(store: Store) -> R {
    let fx = Fx::new(store.clone(), |o| o).await?;
    const N: usize = 2000;
    let mut batch = Vec::with_capacity(N);
    for n in 1..=N as i64 {
        let mut u = EmailUpsert::new(format!("{}/7/{n}", fx.inbox.0), mailsync_store::now());
        u.mailboxes = vec![Membership {
            mailbox_id: fx.inbox,
            uidvalidity: Some(7),
            uid: Some(n),
            modseq: None,
        }];
        batch.push(u);
    }
    let c = fx.store.conn();
    emails::upsert_batch(c, fx.account, &batch).await?;
    let remote_ids: Vec<String> = batch.iter().map(|u| u.remote_id.clone()).collect();
    let ids: Vec<EmailId> = emails::ids_by_remote_ids(c, fx.account, &remote_ids)
        .await?
        .into_values()
        .collect();
    let server = FakeServer::mirror(&fx, &ids).await?;

    let t = Instant::now();
    let changes = ids.iter().map(|id| Change::seen(*id, true)).collect();
    fx.outbox.enqueue_all(fx.account, changes).await?;
    let enqueue = t.elapsed();
    let t = Instant::now();
    let report = fx.outbox.flush(fx.account, server.as_ref()).await?;
    let flush = t.elapsed();
    assert_eq!(report.done as usize, N);
    assert_eq!(report.batches as usize, N.div_ceil(100));
    assert_eq!(fx.counters(fx.inbox).await?, (N as i64, 0));
    eprintln!(
        "[{:?}] enqueue_all of {N} changes: {:?} ({:.0}/s); flush: {:?} ({:.0}/s)",
        store.backend(),
        enqueue,
        N as f64 / enqueue.as_secs_f64(),
        flush,
        N as f64 / flush.as_secs_f64()
    );
    // Generous bounds: catch accidental quadratic behaviour, not machine noise.
    assert!(enqueue < Duration::from_secs(60) && flush < Duration::from_secs(60));
    Ok(())
}
