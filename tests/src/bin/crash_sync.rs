//! Runs one sync cycle of one account: `crash_sync DB_URL ACCOUNT_ID`. The crash tests kill it
//! with SIGKILL at random moments (or at a `MAILSYNC_FAILPOINT`) and check that the next run
//! converges. Its lease lasts 1 s (renewed every 300 ms), so a killed run blocks the next one
//! for at most a second: the next run waits for the lease to expire.

use std::time::{Duration, Instant};

use anyhow::Context;
use mailsync_engine::worker::WorkerPolicy;
use mailsync_engine::{Engine, EngineError};
use mailsync_store::{AccountId, Store};

/// How long a run waits for a killed run's lease to expire.
const LEASE_WAIT: Duration = Duration::from_secs(20);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: crash_sync DB_URL ACCOUNT_ID")?;
    let id: i64 = args
        .next()
        .context("usage: crash_sync DB_URL ACCOUNT_ID")?
        .parse()
        .context("ACCOUNT_ID must be a number")?;
    let store = Store::open(&url).await?;
    let policy =
        WorkerPolicy::default().with_lease(Duration::from_secs(1), Duration::from_millis(300));
    let engine = Engine::with_policy(store, policy);
    let started = Instant::now();
    let counts = loop {
        match engine.sync_once(AccountId(id)).await {
            Err(EngineError::LeaseHeld { .. }) if started.elapsed() < LEASE_WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    println!("{}", counts.emails_added);
    Ok(())
}
