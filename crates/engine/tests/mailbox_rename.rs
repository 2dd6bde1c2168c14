//! A mailbox another client renames keeps its local rows: after the next sync the same mailbox
//! row carries the new name, and its emails keep their row ids and cached bodies (nothing is
//! downloaded again). IMAP on Dovecot (no OBJECTID: recognised by UIDVALIDITY and UIDNEXT), JMAP
//! on Cyrus (Mailbox ids are stable).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{CyrusJmap, E, Setup};
use mailsync_engine::Engine;
use mailsync_store::accounts::Account;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{EmailId, bodies, mailboxes};
use mailsync_testkit::{Generator, ImapClient, imap_append_bulk};

type R = Result<(), E>;

/// Email ids of a mailbox and their cached text bodies.
async fn snapshot(
    engine: &Engine,
    account: &Account,
    mailbox: mailsync_store::MailboxId,
) -> Result<BTreeMap<EmailId, Option<String>>, E> {
    let list = emails::list(
        engine.store().conn(),
        &EmailFilter {
            account: Some(account.id),
            mailbox: Some(mailbox),
            ..Default::default()
        },
    )
    .await?;
    let mut out = BTreeMap::new();
    for e in list {
        let b = bodies::get(engine.store().conn(), e.email.id).await?;
        out.insert(e.email.id, b.and_then(|b| b.text));
    }
    Ok(out)
}

/// Caches every body of `old`, renames it to `new` with `other`, syncs, and checks that the
/// same rows (ids, bodies) are now in the renamed mailbox.
async fn renamed_keeps_rows(
    engine: &Engine,
    account: &Account,
    other: &mut ImapClient,
    old: &str,
    new: &str,
    n: usize,
) -> R {
    let store = engine.store();
    let mb = mailboxes::find_by_name(store.conn(), account.id, old)
        .await?
        .ok_or("mailbox not synced")?;
    let before = snapshot(engine, account, mb.id).await?;
    assert_eq!(before.len(), n);
    for id in before.keys() {
        engine.body(*id).await?;
    }
    let before = snapshot(engine, account, mb.id).await?;
    assert!(before.values().all(Option::is_some), "bodies cached");

    other.command(&format!("RENAME \"{old}\" \"{new}\""))?;
    engine.sync_once(account.id).await?;

    assert!(
        mailboxes::find_by_name(store.conn(), account.id, old)
            .await?
            .is_none()
    );
    let renamed = mailboxes::find_by_name(store.conn(), account.id, new)
        .await?
        .ok_or("renamed mailbox not synced")?;
    assert_eq!(renamed.id, mb.id, "the same mailbox row, renamed");
    let after = snapshot(engine, account, renamed.id).await?;
    assert_eq!(after, before, "same email rows and cached bodies");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_rename_by_another_client_keeps_rows() -> R {
    let g = Generator::new(15_001);
    let s = Setup::dovecot("i15ren", "Projects", &g, 0..5).await?;
    let mut other = s.other()?;
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        renamed_keeps_rows(&s.engine, &s.account, &mut other, "Projects", "Renamed", 5),
    )
    .await;
    s.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_rename_by_another_client_keeps_rows() -> R {
    let user = mailsync_testkit::accounts::DRAFTS.user(2);
    let servers = mailsync_testkit::Servers::load()?;
    let (host, port) = (servers.cyrus_host(), servers.cyrus_imap_port());
    // Pool users persist between runs: start from neither mailbox.
    let who = mailsync_testkit::Account::new(&user, mailsync_testkit::CYRUS_POOL_PASSWORD);
    let mut pre = ImapClient::login(host, port, &who.user, &who.password)?;
    for b in ["Projects", "Renamed"] {
        let _ = pre.command_any(&format!("DELETE \"{b}\""));
    }
    pre.create_mailbox("Projects")?;
    let g = Generator::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    imap_append_bulk(
        host,
        port,
        &who.user,
        &who.password,
        "Projects",
        g.messages(0..4),
        4,
    )?;
    pre.logout();
    let mut c = CyrusJmap::setup(&user, &[], 0).await?;
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        renamed_keeps_rows(
            &c.engine,
            &c.account,
            &mut c.other,
            "Projects",
            "Renamed",
            4,
        ),
    )
    .await;
    c.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}
