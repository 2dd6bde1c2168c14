//! A mailbox the server cannot open does not fail the account: on the real Dovecot, one
//! mailbox is made unreadable on disk; the cycle still succeeds, the other mailboxes sync, the
//! failing one gets its own sync-log row, and once readable again it syncs.

mod common;

use std::os::unix::fs::PermissionsExt;

use mailsync_engine::Engine;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::mailboxes;
use mailsync_store::sync_log::{self, CycleStatus};
use mailsync_testkit::{Generator, ImapClient, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_mailbox_is_isolated() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("iso");
    let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
    let mut other = ImapClient::login(host, port, &user.user, &user.password)?;
    other.create_mailbox("Broken")?;
    other.create_mailbox("Fine")?;
    other.logout();
    let g = Generator::new(51);
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "Broken",
        g.messages(0..1),
        1,
    )?;
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "Fine",
        g.messages(1..2),
        1,
    )?;

    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let acc = engine
        .add_account(common::dovecot_account(
            &servers,
            &user.user,
            &user.password,
        ))
        .await?;
    engine.sync_once(acc.id).await?;

    // Make Broken unreadable for the server, and deliver new mail to Fine and Broken.
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "Fine",
        g.messages(2..3),
        1,
    )?;
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "Broken",
        g.messages(3..4),
        1,
    )?;
    let dir = servers
        .dovecot_mail_root()
        .join(&user.user)
        .join("Maildir")
        .join(".Broken");
    let before = std::fs::metadata(&dir)?.permissions();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000))?;
    let res = engine.sync_once(acc.id).await;
    std::fs::set_permissions(&dir, before)?;
    res?;

    let c = db.store.conn();
    let count = |name: &'static str| async move {
        let m = mailboxes::find_by_remote_id(c, acc.id, name)
            .await?
            .ok_or("mailbox")?;
        let n = emails::list(
            c,
            &EmailFilter {
                mailbox: Some(m.id),
                ..Default::default()
            },
        )
        .await?
        .len();
        Ok::<usize, Box<dyn std::error::Error>>(n)
    };
    assert_eq!(count("Fine").await?, 2, "the healthy mailbox synced");
    assert_eq!(count("Broken").await?, 1, "the broken one kept what it had");
    let log = sync_log::list(c, Some(acc.id), 10).await?;
    assert!(
        log.iter().any(|l| l.status == CycleStatus::Error
            && l.error
                .as_deref()
                .is_some_and(|e| e.starts_with("mailbox Broken:"))),
        "{log:#?}"
    );
    // Readable again: the next cycle (a new driver, so no backoff) picks it up.
    engine.sync_once(acc.id).await?;
    assert_eq!(count("Broken").await?, 2);
    Ok(())
}
