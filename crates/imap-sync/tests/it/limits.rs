//! The mailbox limit, on Dovecot: an account listing more mailboxes than
//! `Timeouts::max_mailboxes` is refused with nothing stored, on its first listing before the
//! server is asked any STATUS (a plain LIST counts them), and on later ones after LIST-STATUS.

use mailsync_imap_sync::{Error, ImapConfig, sync_mailboxes};
use mailsync_store::mailboxes;
use mailsync_testkit::{Account, Cut, FaultProxy};

use crate::common::*;

/// Dovecot through the proxy, with a mailbox limit.
fn via(proxy: &FaultProxy, user: &Account, max_mailboxes: usize) -> ImapConfig {
    let mut t = test_timeouts();
    t.max_mailboxes = max_mailboxes;
    dovecot_via(proxy, user).with_timeouts(t)
}

async fn create(user: &Account, names: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut args: Vec<String> = vec![
        "mailbox".into(),
        "create".into(),
        "-u".into(),
        user.user.clone(),
    ];
    args.extend(names);
    doveadm(args).await?;
    Ok(())
}

#[tokio::test]
async fn an_account_over_the_mailbox_limit_is_refused_before_any_status() -> anyhow::Result<()> {
    let user = fresh_user("limitmb");
    create(&user, (0..8).map(|i| format!("A{i}"))).await?;
    let s = servers();
    let proxy = FaultProxy::start(s.dovecot_host(), s.dovecot_imap_port())?;
    let (db, account) = store().await?;

    // First listing (nothing stored): INBOX, the mailboxes Dovecot creates for a new user and
    // 8 more against a limit of 5. Any STATUS (LIST-STATUS included) would cut the connection.
    proxy.arm(Cut::after_client_sends(b"STATUS", 0));
    let mut conn = connect(&via(&proxy, &user, 5)).await;
    let err = limit(60, sync_mailboxes(&mut conn, &db.store, account))
        .await
        .expect_err("over the limit");
    let Error::TooManyMailboxes { count, limit: 5 } = err else {
        panic!("{err:?}");
    };
    assert!(count >= 9, "{count}");
    assert_eq!(proxy.cuts(), 0, "the client asked a STATUS before refusing");
    assert!(mailboxes::list(db.store.conn(), account).await?.is_empty());
    proxy.disarm();

    // Under the limit: listed and stored (LIST-STATUS).
    let mut conn = connect(&via(&proxy, &user, count)).await;
    let first = limit(60, sync_mailboxes(&mut conn, &db.store, account)).await?;
    assert_eq!(first.mailboxes.len(), count);

    // Another client adds 20: the next listing (LIST-STATUS) refuses, and keeps what was
    // stored.
    create(&user, (0..20).map(|i| format!("B{i}"))).await?;
    let err = limit(60, sync_mailboxes(&mut conn, &db.store, account))
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, Error::TooManyMailboxes { count: c, limit: l } if c == count + 20 && l == count),
        "{err:?}"
    );
    assert_eq!(
        mailboxes::list(db.store.conn(), account).await?.len(),
        count
    );
    Ok(())
}
