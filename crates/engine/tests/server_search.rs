//! `Engine::search` with the server on both database backends (Dovecot IMAP through a fault
//! proxy): a body word of mail synced without bodies is found on the server and matched to
//! its row; a subject word is found once, by both; and with the server unreachable the
//! local results stand while the account is reported failed, classified Offline.

mod common;

use mailsync_engine::classify::{Disposition, classify};
use mailsync_engine::{Engine, Origin};
use mailsync_store::search::parse;
use mailsync_store::testing::TempDb;
use mailsync_testkit::{FaultProxy, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

fn raw(subject: &str, body: &str) -> Vec<u8> {
    let mid = mailsync_testkit::unique_name("s");
    format!(
        "From: Ada <ada@example.test>\r\nTo: b@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{mid}@i16e.test>\r\nDate: {}\r\n\r\n{body}\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

async fn run(db: TempDb, tag: &str) -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user(tag);
    let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
    let word: String = mailsync_testkit::unique_name("w")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let msgs = [
        raw(&format!("Alpha {word}"), "the hidden treasure"),
        raw("Beta", &format!("nothing about {word}")),
    ];
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "INBOX",
        msgs.iter(),
        2,
    )?;
    let proxy = FaultProxy::start(host, port)?;
    let engine = Engine::new(db.store.clone());
    let mut new = common::dovecot_account(&servers, &user.user, &user.password);
    if let Some(imap) = new.imap.as_mut() {
        imap.port = proxy.port();
    }
    let acc = engine.add_account(new).await?;
    engine.sync_once(acc.id).await?;

    // The word is in one subject and one (uncached) body: local finds the first, the server
    // both; one result per row.
    let q = parse(&word)?;
    let local = engine.search(Some(acc.id), &q, false, 10).await?;
    assert_eq!(local.hits.len(), 1, "{local:?}");
    assert_eq!(local.hits[0].origin, Origin::Local);
    let both = engine.search(Some(acc.id), &q, true, 10).await?;
    assert!(both.failed.is_empty(), "{:?}", both.failed);
    assert_eq!(both.hits.len(), 2, "{both:?}");
    assert_eq!(both.hits[0].id, local.hits[0].id);
    assert_eq!(both.hits[0].origin, Origin::Both);
    assert_eq!(both.hits[1].origin, Origin::Server);
    assert_eq!(both.hits[1].subject.as_deref(), Some("Beta"));
    assert!(both.hits[1].id.is_some() && both.hits[1].id != both.hits[0].id);

    // Server down: the local hit stands, the account is reported, Offline.
    proxy.set_down(true);
    let cut = engine.search(None, &q, true, 10).await?;
    assert_eq!(cut.hits.len(), 1, "{cut:?}");
    assert_eq!(cut.hits[0].origin, Origin::Local);
    assert_eq!(cut.failed.len(), 1, "{cut:?}");
    assert_eq!(cut.failed[0].0, acc.id);
    assert_eq!(classify(&cut.failed[0].1), Disposition::Offline);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_search_sqlite() -> R {
    run(TempDb::sqlite().await?, "i16es").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_search_postgres() -> R {
    run(TempDb::postgres().await?, "i16ep").await
}
