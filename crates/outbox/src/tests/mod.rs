//! Unit tests of the queue's behaviour on a real (temporary SQLite) store, with mockall and fake
//! executors: coalescing rules, every outcome path, undo, backoff timing with paused time.

#[path = "../../tests/support/mod.rs"]
mod support;

mod coalescing;
mod outcomes;
mod undo;

use std::sync::Arc;

use mailsync_store::testing::TempDb;

use crate::{ItemOutcome, ManualClock, MockExecutor, Outbox, QueuedChange, RetryPolicy};
use support::{Fx, Res};

/// A message from t@ to bob@ with this subject and the text "hello".
fn message(subject: &str) -> crate::OutgoingMessage {
    crate::OutgoingMessage {
        from: mailsync_store::Address {
            name: None,
            email: "t@example.test".into(),
        },
        to: vec![mailsync_store::Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: subject.into(),
        text: "hello".into(),
        ..Default::default()
    }
}

/// A fresh SQLite store with the fixture account; `configure` adjusts the outbox.
async fn setup(configure: impl FnOnce(Outbox) -> Outbox) -> Res<(TempDb, Fx)> {
    let db = TempDb::sqlite().await?;
    let fx = Fx::new(db.store.clone(), configure).await?;
    Ok((db, fx))
}

/// The default setup with a manual clock and no jitter, for schedules.
///
/// Not tokio's paused time: it auto-advances while a database call waits on SQLite's worker
/// thread, which fires the connection pool's acquire timeout.
async fn setup_clocked() -> Res<(TempDb, Fx, ManualClock)> {
    let clock = ManualClock::new(mailsync_store::now());
    let c = clock.clone();
    let (db, fx) = setup(move |o| {
        o.with_clock(Arc::new(c))
            .with_jitter(Arc::new(crate::FixedJitter(1.0)))
            .with_policy(RetryPolicy::default())
    })
    .await?;
    Ok((db, fx, clock))
}

/// An executor that acknowledges everything and records the batches.
fn acking(calls: Arc<std::sync::Mutex<Vec<Vec<QueuedChange>>>>) -> MockExecutor {
    let mut m = MockExecutor::new();
    m.expect_execute().returning(move |_, batch| {
        calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.to_vec());
        Ok(batch.iter().map(|_| ItemOutcome::Done).collect())
    });
    m
}

/// An executor that must not be called.
fn never() -> MockExecutor {
    let mut m = MockExecutor::new();
    m.expect_execute().never();
    m
}

/// An executor answering every item with `outcome`, recording the batches.
fn answering(
    outcome: ItemOutcome,
    calls: Arc<std::sync::Mutex<Vec<Vec<QueuedChange>>>>,
) -> MockExecutor {
    let mut m = MockExecutor::new();
    m.expect_execute().returning(move |_, batch| {
        calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.to_vec());
        Ok(batch.iter().map(|_| outcome.clone()).collect())
    });
    m
}

/// Flushes the account with every item refused by the server (`reason`): reverts and evicts
/// all that is queued.
async fn flush_refused(fx: &Fx, reason: &str) -> Result<(), crate::Error> {
    let refused = ItemOutcome::Permanent {
        reason: reason.into(),
    };
    fx.outbox
        .flush(fx.account, &answering(refused, calls()))
        .await?;
    Ok(())
}

type Calls = Arc<std::sync::Mutex<Vec<Vec<QueuedChange>>>>;

fn calls() -> Calls {
    Arc::default()
}

fn taken(c: &Calls) -> Vec<Vec<QueuedChange>> {
    std::mem::take(&mut *c.lock().unwrap_or_else(|p| p.into_inner()))
}
