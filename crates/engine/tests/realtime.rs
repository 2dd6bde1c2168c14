//! Real time outside INBOX: with the daemon's worker waiting, mail appended by another client
//! to a mailbox other than INBOX, a flag set there, and a message expunged there reach the
//! database within 2 s each (IMAP NOTIFY on the real Dovecot).

mod common;

use std::time::{Duration, Instant};

use mailsync_engine::Engine;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{Store, mailboxes};
use mailsync_testkit::{Generator, ImapClient, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

async fn wait_until<F, Fut>(what: &str, mut f: F) -> Result<Duration, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Box<dyn std::error::Error>>>,
{
    let t0 = Instant::now();
    while !f().await? {
        if t0.elapsed() > Duration::from_secs(2) {
            return Err(format!("{what}: not in the database within 2 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(t0.elapsed())
}

async fn in_folder(
    store: &Store,
    account: mailsync_store::AccountId,
) -> Result<Vec<emails::Email>, Box<dyn std::error::Error>> {
    let m = mailboxes::find_by_remote_id(store.conn(), account, "Folder")
        .await?
        .ok_or("Folder")?;
    Ok(emails::list(
        store.conn(),
        &EmailFilter {
            mailbox: Some(m.id),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .map(|s| s.email)
    .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_outside_inbox_arrive_within_a_second() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("rt");
    let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
    let mut other = ImapClient::login(host, port, &user.user, &user.password)?;
    other.create_mailbox("Folder")?;
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let acc = engine
        .add_account(common::dovecot_account(
            &servers,
            &user.user,
            &user.password,
        ))
        .await?;
    let _events = common::start_synced(&engine, &db.store, acc.id).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = db.store.clone();

    // New mail in Folder.
    imap_append_bulk(
        host,
        port,
        &user.user,
        &user.password,
        "Folder",
        [Generator::new(61).message(0)],
        1,
    )?;
    let t = wait_until("new mail in Folder", || async {
        Ok(in_folder(&store, acc.id).await?.len() == 1)
    })
    .await?;
    println!("new mail outside INBOX stored after {t:?}");

    // A flag set there by the other client.
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.select("Folder")?;
    other.command("UID STORE 1 +FLAGS.SILENT (\\Flagged)")?;
    other.command("UNSELECT")?;
    let t = wait_until("flag in Folder", || async {
        Ok(in_folder(&store, acc.id)
            .await?
            .first()
            .is_some_and(|e| e.flags.flagged))
    })
    .await?;
    println!("flag change outside INBOX stored after {t:?}");

    // An expunge there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.select("Folder")?;
    other.command("UID STORE 1 +FLAGS.SILENT (\\Deleted)")?;
    other.command("UID EXPUNGE 1")?;
    other.logout();
    let t = wait_until("expunge in Folder", || async {
        Ok(in_folder(&store, acc.id).await?.is_empty())
    })
    .await?;
    println!("expunge outside INBOX stored after {t:?}");
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    Ok(())
}
