//! Runs one sync cycle of one account: `crash_sync DB_URL ACCOUNT_ID`. The crash tests kill it
//! with SIGKILL at random moments and check that the next run converges.

use anyhow::Context;
use mailsync_engine::Engine;
use mailsync_store::{AccountId, Store};

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
    let engine = Engine::new(store);
    let counts = engine.sync_once(AccountId(id)).await?;
    println!("{}", counts.emails_added);
    Ok(())
}
