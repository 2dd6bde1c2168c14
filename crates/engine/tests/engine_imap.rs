//! The engine end to end with an IMAP account on the real Dovecot and the SMTP sink:
//! `add_account` refuses bad credentials and unknown hosts (storing nothing), a cycle syncs,
//! changes made offline (flags, move, delete) reach the server at the next cycle, a send goes
//! out once and is filed once in Sent, and a running worker sees a delivery through IDLE
//! within 2 s.

use std::time::{Duration, Instant};

use mailsync_engine::{Engine, EngineEvent};
use mailsync_outbox::{Change, OutgoingMessage};
use mailsync_store::accounts::{self, Endpoint, NewAccount};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, Address, BodyPolicy, Role, SecretRef, Security, mailboxes};
use mailsync_testkit::{Generator, Servers, imap_append_bulk, sink_messages, unique_name};

type R = Result<(), Box<dyn std::error::Error>>;

fn new_account(servers: &Servers, user: &str, password: &str, host: &str) -> NewAccount {
    NewAccount {
        name: format!("imap-{user}"),
        kind: AccountKind::Imap,
        email: format!("{user}@example.test"),
        display_name: Some("Imap User".into()),
        username: user.into(),
        secret_ref: SecretRef::Command(format!("printf %s {password}")),
        imap: Some(Endpoint {
            host: host.into(),
            port: servers.dovecot_imap_port(),
            security: Security::Plain,
        }),
        smtp: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: servers.smtp_port(),
            security: Security::Plain,
        }),
        jmap_session_url: None,
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::None,
    }
}

async fn doveadm_flags(
    servers: &Servers,
    user: &str,
    mailbox: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(servers.doveadm(&["fetch", "-u", user, "uid flags", "mailbox", mailbox, "all"])?)
}

async fn run(db: &TempDb) -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("engine");
    let engine = Engine::new(db.store.clone());

    // Bad credentials and an unknown host: clear errors, nothing stored.
    let err = engine
        .add_account(new_account(
            &servers,
            &user.user,
            "not-the-password",
            "127.0.0.1",
        ))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.to_lowercase().contains("authentication"), "{err}");
    let err = engine
        .add_account(new_account(
            &servers,
            &user.user,
            &user.password,
            "no-such-host.invalid",
        ))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no-such-host.invalid"), "{err}");
    assert!(accounts::list(db.store.conn()).await?.is_empty());

    let account = engine
        .add_account(new_account(
            &servers,
            &user.user,
            &user.password,
            "127.0.0.1",
        ))
        .await?;
    let g = Generator::new(11);
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        g.messages(0..50),
        50,
    )?;
    let first = engine.sync_once(account.id).await?;
    assert_eq!(first.emails_added, 50, "{first:?}");
    let c = db.store.conn();
    let inbox = mailboxes::find_by_role(c, account.id, Role::Inbox)
        .await?
        .ok_or("inbox")?;
    let archive = mailboxes::find_by_role(c, account.id, Role::Archive)
        .await?
        .ok_or("archive")?;
    let trash = mailboxes::find_by_role(c, account.id, Role::Trash)
        .await?
        .ok_or("trash")?;

    // Offline: 30 marked read, one moved to Archive, one deleted (to Trash).
    let list = emails::list(
        c,
        &EmailFilter {
            mailbox: Some(inbox.id),
            ..Default::default()
        },
    )
    .await?;
    for s in list.iter().take(30) {
        engine
            .enqueue(account.id, Change::seen(s.email.id, true))
            .await?;
    }
    let moved = list[40].email.clone();
    let deleted = list[41].email.clone();
    engine
        .enqueue(account.id, Change::move_to(moved.id, archive.id))
        .await?;
    engine
        .enqueue(account.id, Change::delete(deleted.id))
        .await?;
    assert_eq!(engine.status().await?[0].pending, 32);
    let second = engine.sync_once(account.id).await?;
    assert_eq!(second.changes_flushed, 32, "{second:?}");
    assert_eq!(engine.status().await?[0].pending, 0);
    let flags = doveadm_flags(&servers, &user.user, "INBOX").await?;
    assert_eq!(flags.matches("\\Seen").count(), 30, "{flags}");
    let in_archive = doveadm_flags(&servers, &user.user, "Archive").await?;
    assert_eq!(in_archive.matches("uid:").count(), 1, "{in_archive}");
    let in_trash = doveadm_flags(&servers, &user.user, "Trash").await?;
    assert_eq!(in_trash.matches("uid:").count(), 1, "{in_trash}");
    // The local rows follow the server: one email in each, none duplicated.
    let arch = emails::list(
        c,
        &EmailFilter {
            mailbox: Some(archive.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(arch.len(), 1);
    assert_eq!(arch[0].email.message_id, moved.message_id);
    let tr = emails::list(
        c,
        &EmailFilter {
            mailbox: Some(trash.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(tr.len(), 1);
    assert_eq!(emails::count(c, account.id).await?, 50);

    // Send: exactly once to the sink, exactly one copy in Sent.
    let message_id = format!("{}@mailsync.test", unique_name("imapsend"));
    engine
        .send(
            account.id,
            OutgoingMessage {
                message_id: message_id.clone(),
                from: Address {
                    name: None,
                    email: format!("{}@example.test", user.user),
                },
                to: vec![Address {
                    name: None,
                    email: "bob@example.test".into(),
                }],
                bcc: vec![Address {
                    name: None,
                    email: "hidden@example.test".into(),
                }],
                subject: "imap send".into(),
                text: "hello".into(),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(engine.sync_once(account.id).await?.changes_flushed, 1);
    engine.sync_once(account.id).await?;
    let copies: Vec<_> = sink_messages(servers.smtp_sink_dir())?
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some(message_id.as_str()))
        .collect();
    assert_eq!(copies.len(), 1);
    assert!(
        copies[0]
            .rcpt_tos
            .contains(&"hidden@example.test".to_owned())
    );
    assert!(copies[0].header("Bcc").is_none());
    let sent = mailboxes::find_by_role(c, account.id, Role::Sent)
        .await?
        .ok_or("sent")?;
    let in_sent = emails::list(
        c,
        &EmailFilter {
            mailbox: Some(sent.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        in_sent
            .iter()
            .filter(|s| s.email.message_id.as_deref() == Some(message_id.as_str()))
            .count(),
        1
    );

    // A running worker waits in IDLE and sees a delivery within 2 s.
    let mut events = engine.subscribe();
    engine.start(accounts::get(c, account.id).await?);
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await? {
            Some(EngineEvent::Synced { .. }) => break,
            Some(EngineEvent::Failed { message, .. }) => return Err(message.into()),
            _ => {}
        }
    }
    // Give the worker a moment to enter IDLE, then deliver as another client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = emails::count(c, account.id).await?;
    let t0 = Instant::now();
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        [Generator::new(12).message(0)],
        1,
    )?;
    while emails::count(c, account.id).await? == before {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "IDLE did not deliver within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "IMAP worker stored a new delivery {:?} after it was appended",
        t0.elapsed()
    );
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_with_an_imap_account() -> R {
    let db = TempDb::sqlite().await?;
    let res = tokio::time::timeout(Duration::from_secs(90), run(&db)).await;
    db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

/// A send whose SMTP server is unreachable: the sync still runs, but the cycle reports the
/// failure (sync log row `error`, classified offline) and the message stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_changes_make_the_cycle_fail_visibly() -> R {
    let db = TempDb::sqlite().await?;
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("nosmtp");
    let engine = Engine::new(db.store.clone());
    let mut new = new_account(&servers, &user.user, &user.password, "127.0.0.1");
    new.smtp = Some(Endpoint {
        host: "127.0.0.1".into(),
        port: 1,
        security: Security::Plain,
    });
    let account = engine.add_account(new).await?;
    engine.sync_once(account.id).await?;
    engine
        .send(
            account.id,
            OutgoingMessage {
                from: Address {
                    name: None,
                    email: format!("{}@example.test", user.user),
                },
                to: vec![Address {
                    name: None,
                    email: "bob@example.test".into(),
                }],
                subject: "never leaves".into(),
                text: "x".into(),
                ..Default::default()
            },
        )
        .await?;
    let err = engine
        .sync_once(account.id)
        .await
        .err()
        .ok_or("the cycle must fail")?;
    assert_eq!(
        mailsync_engine::classify::classify(&err),
        mailsync_engine::classify::Disposition::Offline
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let log = mailsync_store::sync_log::list(db.store.conn(), Some(account.id), 1).await?;
    assert_eq!(log[0].status, mailsync_store::sync_log::CycleStatus::Error);
    assert_eq!(engine.status().await?[0].pending, 1, "still queued");
    db.cleanup().await?;
    Ok(())
}
