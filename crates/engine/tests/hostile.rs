//! Hostile networks (issue 19), through the testkit's fault proxy in front of the real servers:
//! a JMAP first sync cut every few hundred KB still completes, each run keeping what the
//! earlier ones stored; cuts at many offsets of a first sync (IMAP on Dovecot, JMAP on Cyrus)
//! each end in an `Offline` error, and a clean sync afterwards converges to the server.
//! Cyrus pool: `hz` (HOSTILE).

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use mailsync_engine::classify::{Disposition, classify};
use mailsync_engine::{Engine, EngineError};
use mailsync_jmap_client::{Client, Credentials, Email, Query};
use mailsync_store::accounts::NewAccount;
use mailsync_store::emails;
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, AccountKind, BodyPolicy, SecretRef};
use mailsync_testkit::{
    CYRUS_POOL_PASSWORD, Cut, FaultProxy, Generator, ImapClient, Servers, accounts::HOSTILE,
    imap_append_bulk,
};

use common::E;

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

/// A Cyrus pool user whose INBOX holds exactly `n` fresh messages (other mailboxes emptied).
fn cyrus_user_with(s: &Servers, pool_index: usize, n: usize) -> Result<String, E> {
    let user = HOSTILE.user(pool_index);
    let (host, port) = (s.cyrus_host(), s.cyrus_imap_port());
    let mut c = ImapClient::login(host, port, &user, CYRUS_POOL_PASSWORD)?;
    let list = c.command("LIST \"\" \"*\"")?;
    for line in list.lines() {
        let Some(name) = line.rsplit(' ').next() else {
            continue;
        };
        let name = name.trim_matches('"');
        if name.eq_ignore_ascii_case("INBOX") {
            continue;
        }
        c.command_any(&format!("DELETE \"{name}\""))?;
    }
    if c.select("INBOX")? > 0 {
        c.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        c.command("EXPUNGE")?;
    }
    c.logout();
    let g = Generator::new(seed());
    imap_append_bulk(
        host,
        port,
        &user,
        CYRUS_POOL_PASSWORD,
        "INBOX",
        g.messages(0..n),
        500,
    )?;
    Ok(user)
}

fn jmap_account(user: &str, session_url: String) -> NewAccount {
    NewAccount {
        name: format!("jmap-{user}"),
        kind: AccountKind::Jmap,
        email: format!("{user}@example.test"),
        display_name: None,
        username: user.into(),
        secret_ref: SecretRef::Command(format!("printf %s {CYRUS_POOL_PASSWORD}")),
        imap: None,
        smtp: None,
        jmap_session_url: Some(session_url),
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::None,
    }
}

/// The session URL of the test Cyrus, reached through `proxy`.
fn via_proxy(s: &Servers, proxy: &FaultProxy) -> String {
    let direct = format!("{}:{}", s.cyrus_host(), s.cyrus_http_port());
    s.jmap_session_url()
        .replace(&direct, &format!("{}:{}", proxy.host(), proxy.port()))
}

/// Every Email id on the server, asked directly (not through the proxy).
async fn server_email_ids(s: &Servers, user: &str) -> Result<BTreeSet<String>, E> {
    let c = Client::builder()
        .credentials(Credentials::basic(user, CYRUS_POOL_PASSWORD))
        .connect(s.jmap_session_url())
        .await?;
    let acc = c.mail_account_id()?;
    let mut ids = BTreeSet::new();
    loop {
        let r = c
            .call(
                Query::<Email>::new(&acc)
                    .position(ids.len() as i64)
                    .limit(1000),
            )
            .await?;
        if r.ids.is_empty() {
            return Ok(ids);
        }
        ids.extend(r.ids.into_iter().map(|i| i.into_inner()));
    }
}

async fn local_ids(db: &TempDb, account: AccountId) -> Result<BTreeSet<String>, E> {
    Ok(emails::remote_ids(db.store.conn(), account)
        .await?
        .into_iter()
        .collect())
}

fn assert_offline(err: &EngineError) {
    assert_eq!(
        classify(err),
        Disposition::Offline,
        "a cut connection is the network failing: {err}"
    );
}

/// The case: a JMAP first sync of 1,200 emails cut every 300 KB used to restart the
/// whole listing each time and never finish. Now each run continues where the last stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_first_sync_cut_every_300kb_completes_across_runs() -> Result<(), E> {
    const N: usize = 1_200;
    let s = Servers::load()?;
    let user = cyrus_user_with(&s, 1, N)?;
    let proxy = FaultProxy::start(s.cyrus_host(), s.cyrus_http_port())?;
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let account = engine
        .add_account(jmap_account(&user, via_proxy(&s, &proxy)))
        .await?
        .id;
    let started = Instant::now();
    let mut counts = Vec::new();
    let mut done = false;
    for run in 0..40 {
        proxy.arm(Cut::after_server_bytes(300 * 1024));
        let res = engine.sync_once(account).await;
        let n = emails::count(db.store.conn(), account).await?;
        counts.push(n);
        match res {
            Ok(_) => {
                done = true;
                break;
            }
            Err(e) => {
                assert_offline(&e);
                assert!(
                    run == 0 || n > counts[counts.len() - 2],
                    "run {run} added nothing: {counts:?} ({e})"
                );
            }
        }
    }
    eprintln!(
        "rows after each run: {counts:?}; cuts {}; {:?}",
        proxy.cuts(),
        started.elapsed()
    );
    assert!(done, "never completed: {counts:?}");
    assert!(
        proxy.cuts() >= 2,
        "the listing was cut at least twice: {}",
        proxy.cuts()
    );
    assert_eq!(
        local_ids(&db, account).await?,
        server_email_ids(&s, &user).await?,
        "the database equals the server"
    );
    assert_eq!(counts.last().copied(), Some(N as u64));
    Ok(())
}
