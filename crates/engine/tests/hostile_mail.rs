//! Mail anyone can send: a message with a subject and recipient list of megabytes of distinct
//! words and a 20,000-byte Message-ID, delivered to a real Dovecot, synced into SQLite and
//! PostgreSQL. It is stored (its Message-ID as none: no header line is that long), indexed as
//! far as a search document holds, and the mail after it is synced and searchable. On
//! PostgreSQL the batch's write failed every cycle (an index row over the B-tree limit) and
//! the indexing step too (a `tsvector` over 1 MB), holding everything after it back.

mod common;

use std::time::Duration;

use common::{E, dovecot_account};
use mailsync_engine::Engine;
use mailsync_store::search;
use mailsync_store::testing::TempDb;
use mailsync_testkit::{ImapClient, Servers, incompressible};

type R = Result<(), E>;

/// The hostile message: every header line folded below 998 characters but the Message-ID's.
fn hostile() -> Vec<u8> {
    let noise = incompressible(20_000, 1);
    let words: Vec<String> = (0..150_000).map(|i| format!("w{i}x")).collect();
    let subject = words
        .chunks(100)
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join("\r\n ");
    let to = (0..20_000)
        .map(|i| format!("p{i}@host{i}.example"))
        .collect::<Vec<_>>()
        .chunks(40)
        .map(|c| c.join(", "))
        .collect::<Vec<_>>()
        .join(",\r\n ");
    format!(
        "From: a@example.test\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{noise}@huge.example>\r\n\
         Date: Mon, 7 Dec 2026 08:00:00 +0000\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

fn plain() -> Vec<u8> {
    b"From: b@example.test\r\nTo: c@example.test\r\nSubject: quarterly budget\r\n\
      Message-ID: <plain@example.test>\r\nDate: Mon, 7 Dec 2026 08:01:00 +0000\r\n\r\n\
      the numbers\r\n"
        .to_vec()
}

async fn scenario(db: TempDb, tag: &str) -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user(tag);
    let mut imap = ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
    )?;
    imap.append_bulk("INBOX", [hostile(), plain()], 1)?;
    imap.logout();
    let engine = Engine::new(db.store.clone());
    let account = engine
        .add_account(dovecot_account(&servers, &user.user, &user.password))
        .await?;
    let res = tokio::time::timeout(Duration::from_secs(120), async {
        engine.sync_once(account.id).await?;
        let found = |q: &'static str| {
            let engine = &engine;
            async move {
                let hits = engine
                    .search(Some(account.id), &search::parse(q)?, false, 10)
                    .await?
                    .hits;
                Ok::<_, E>(hits.len())
            }
        };
        assert_eq!(found("budget").await?, 1, "the mail after it is searchable");
        assert_eq!(found("w7x").await?, 1, "the hostile one, as far as it goes");
        let c = db.store.conn();
        let rows = mailsync_store::emails::list(c, &Default::default()).await?;
        assert_eq!(rows.len(), 2, "both stored");
        assert!(
            rows.iter().any(|e| e.email.message_id.is_none()),
            "no Message-ID is 20,000 bytes long"
        );
        // A second cycle has nothing left over.
        engine.sync_once(account.id).await?;
        Ok::<_, E>(())
    })
    .await;
    db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_sync_into_sqlite() -> R {
    scenario(TempDb::sqlite().await?, "hostile-sq").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_sync_into_postgres() -> R {
    scenario(TempDb::postgres().await?, "hostile-pg").await
}
