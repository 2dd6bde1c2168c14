//! Back after an outage in seconds, for real: a worker on Dovecot through the fault proxy
//! loses the server for 25 s (every connection closed, new ones refused); mail delivered during
//! the outage is in the database within 15 s of the server's return, with the default policy.

mod common;

use std::time::{Duration, Instant};

use mailsync_engine::classify::Disposition;
use mailsync_engine::{Engine, EngineEvent};
use mailsync_store::emails;
use mailsync_testkit::{FaultProxy, Generator, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_from_during_an_outage_arrives_within_15s_of_its_end() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i14out");
    let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
    let proxy = FaultProxy::start(host, port)?;
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let mut new = common::dovecot_account(&servers, &user.user, &user.password);
    if let Some(imap) = new.imap.as_mut() {
        imap.port = proxy.port();
    }
    let acc = engine.add_account(new).await?;
    let mut events = common::start_synced(&engine, &db.store, acc.id).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outage = Duration::from_secs(25);
    proxy.set_down(true);
    let down_at = Instant::now();
    let mut failures = Vec::new();
    while down_at.elapsed() < outage {
        let left = outage.saturating_sub(down_at.elapsed());
        if let Ok(Some(EngineEvent::Failed { disposition, .. })) =
            tokio::time::timeout(left, events.recv()).await
        {
            failures.push((down_at.elapsed(), disposition));
        }
    }
    // Delivered while the account's server is unreachable for the worker.
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "INBOX",
        [Generator::new(1414).message(0)],
        1,
    )?;
    proxy.set_down(false);
    let up_at = Instant::now();
    while emails::count(db.store.conn(), acc.id).await? == 0 {
        assert!(
            up_at.elapsed() < Duration::from_secs(15),
            "not synced within 15 s of the server's return; failures during the outage: \
             {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = up_at.elapsed();
    println!(
        "outage of {outage:?}: failed cycles at {:?}; mail synced {back:?} after the server \
         returned",
        failures.iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    assert!(
        failures.len() >= 2,
        "the worker kept trying during the outage: {failures:?}"
    );
    assert!(
        failures.iter().all(|(_, d)| *d == Disposition::Offline),
        "an unreachable server is a network-class failure: {failures:?}"
    );
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    Ok(())
}
