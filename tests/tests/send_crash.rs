//! "Nothing doubled": a send is killed with SIGKILL at every step (handed over, inside SMTP
//! DATA, accepted by the server but not recorded, accepted and recorded, filed in Sent):
//! `MAILSYNC_FAILPOINT` stops the `crash_sync` helper exactly there. Then a fresh process runs
//! a cycle, twice. Deliveries are counted at the SMTP sink and copies in Sent on the server:
//! never two deliveries, and every kill point ends with one copy in Sent or a "may have been
//! sent" entry in the failed list; the killed process's lease expires within its lifetime.
//! Over SMTP + IMAP (the sink and Dovecot; on SQLite and PostgreSQL) and over JMAP submission
//! (Cyrus, relaying to the sink).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailsync_engine::Engine;
use mailsync_engine::failpoint;
use mailsync_jmap_client::{Client, Credentials, Email, EmailFilterCondition, Get, Query};
use mailsync_store::accounts::{self, Endpoint, NewAccount};
use mailsync_store::leases;
use mailsync_store::testing::TempDb;
use mailsync_store::{
    AccountId, AccountKind, Address, BodyPolicy, Role, SecretRef, Security, mailboxes,
};
use mailsync_testkit::{Account, Servers, accounts::ENGINE, sink_messages, unique_name};

type R = Result<(), Box<dyn std::error::Error>>;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs one cycle of `account` in a separate process stopped at `point`, waits for it to get
/// there and kills it with SIGKILL.
fn kill_at(db_url: &str, account: AccountId, point: &str) -> R {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_sync"))
        .arg(db_url)
        .arg(account.0.to_string())
        .env(failpoint::ENV, point)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = format!("FAILPOINT {point}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let reached = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l == marker => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    child.kill()?;
    child.wait()?;
    if !reached {
        return Err(format!("the process never reached {point}").into());
    }
    Ok(())
}

/// The killed process's lease is still recorded, and expires within its 1 s lifetime.
async fn lease_left_behind(db: &TempDb, account: AccountId) -> R {
    let now = mailsync_store::now();
    let lease = leases::get(db.store.conn(), account)
        .await?
        .ok_or("the killed process held the account's lease")?;
    let expires = lease.expires_at.ok_or("an expiry")?;
    assert!(lease.owner.is_some());
    assert!(
        expires <= now + chrono::Duration::milliseconds(1100),
        "a killed holder blocks the account for at most its lease expiry: {lease:?}"
    );
    Ok(())
}

/// A complete cycle in a fresh process.
fn recover(db_url: &str, account: AccountId) -> R {
    let status = Command::new(env!("CARGO_BIN_EXE_crash_sync"))
        .arg(db_url)
        .arg(account.0.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("recovery cycle failed: {status}").into());
    }
    Ok(())
}

fn deliveries(servers: &Servers, message_id: &str) -> Res<usize> {
    Ok(sink_messages(servers.smtp_sink_dir())?
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some(message_id))
        .count())
}

/// Deliveries once they settled (a relaying server may deliver a moment later).
fn settled_deliveries(servers: &Servers, message_id: &str, expect: usize) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while deliveries(servers, message_id)? < expect && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for a second delivery to show up if there were one.
    std::thread::sleep(Duration::from_millis(300));
    deliveries(servers, message_id)
}

fn message(from: &str, message_id: &str) -> mailsync_outbox::OutgoingMessage {
    mailsync_outbox::OutgoingMessage {
        message_id: message_id.into(),
        from: Address {
            name: None,
            email: from.into(),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: format!("kill point {message_id}"),
        text: "exactly once\n".into(),
        ..Default::default()
    }
}

/// What a kill point must end in after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    delivered: usize,
    in_sent: usize,
    maybe_sent: bool,
}

/// The failed entries of an account that say "may have been sent".
async fn maybe_sent(db: &TempDb, account: AccountId) -> Res<usize> {
    let outbox = mailsync_outbox::Outbox::new(db.store.clone());
    Ok(outbox
        .failed(account)
        .await?
        .iter()
        .filter(|f| f.kind == "send" && f.reason.starts_with("may have been sent"))
        .count())
}

async fn check(
    db: &TempDb,
    servers: &Servers,
    account: AccountId,
    point: &str,
    message_id: &str,
    in_sent: impl AsyncFn() -> Res<usize>,
    expect: Expect,
) -> R {
    // Recover twice: the second cycle must change nothing.
    for round in 1..=2 {
        recover(&db.url, account)?;
        let got = Expect {
            delivered: settled_deliveries(servers, message_id, expect.delivered)?,
            in_sent: in_sent().await?,
            maybe_sent: maybe_sent(db, account).await? == 1,
        };
        println!("{point} (recovery {round}): {got:?}");
        assert_eq!(got, expect, "kill at {point}, recovery {round}");
        let queued = mailsync_outbox::Outbox::new(db.store.clone())
            .counts(account)
            .await?
            .queued();
        assert_eq!(queued, 0, "nothing left queued after {point}");
    }
    Ok(())
}

fn doveadm_sent_copies(servers: &Servers, user: &str, message_id: &str) -> Res<usize> {
    let out = servers.doveadm(&[
        "search",
        "-u",
        user,
        "mailbox",
        "Sent",
        "header",
        "Message-ID",
        message_id,
    ])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// A fresh database on the backend the test runs on.
async fn temp_db(pg: bool) -> Res<TempDb> {
    Ok(if pg {
        TempDb::postgres().await?
    } else {
        TempDb::sqlite().await?
    })
}

async fn imap_kill_point(servers: &Servers, pg: bool, point: &str, expect: Expect) -> R {
    let user = servers.fresh_dovecot_user("sendkill");
    let db = temp_db(pg).await?;
    let address = format!("{}@example.test", user.user);
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: user.user.clone(),
            kind: AccountKind::Imap,
            email: address.clone(),
            display_name: None,
            username: user.user.clone(),
            secret_ref: SecretRef::Command(format!("printf %s {}", user.password)),
            imap: Some(Endpoint {
                host: "127.0.0.1".into(),
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
        },
    )
    .await?
    .id;
    let engine = Engine::new(db.store.clone());
    engine.sync_once(account).await?;
    let message_id = format!("{}@mailsync.test", unique_name("imapkill"));
    engine.send(account, message(&address, &message_id)).await?;
    kill_at(&db.url, account, point)?;
    lease_left_behind(&db, account).await?;
    let copies = || async { doveadm_sent_copies(servers, &user.user, &message_id) };
    check(&db, servers, account, point, &message_id, copies, expect).await?;
    if expect.maybe_sent && expect.delivered == 0 {
        // The person's retry is the one way to send it again: then it goes out once.
        let outbox = mailsync_outbox::Outbox::new(db.store.clone());
        let failed = outbox.failed(account).await?;
        outbox.retry_failed(failed[0].id).await?;
        recover(&db.url, account)?;
        assert_eq!(
            settled_deliveries(servers, &message_id, 1)?,
            1,
            "{point}: retried"
        );
        assert_eq!(copies().await?, 1, "{point}: retried and filed");
        assert_eq!(maybe_sent(&db, account).await?, 0);
    }
    db.cleanup().await?;
    Ok(())
}

/// Every kill point of an SMTP + IMAP send, on SQLite or PostgreSQL.
async fn imap_kill_points(pg: bool) -> R {
    let servers = Servers::load()?;
    let maybe = |delivered| Expect {
        delivered,
        in_sent: 0,
        maybe_sent: true,
    };
    let filed = Expect {
        delivered: 1,
        in_sent: 1,
        maybe_sent: false,
    };
    // Handed over (journaled), killed before MAIL/DATA: nothing delivered, and it is the
    // user's call, not the engine's, to send it.
    imap_kill_point(&servers, pg, "send:handed", maybe(0)).await?;
    // Inside DATA (after the 354, before the message's final dot): the sink drops it.
    imap_kill_point(&servers, pg, "send:data", maybe(0)).await?;
    // The server said 250, killed before "accepted" was committed: delivered once, and
    // listed as maybe sent (no copy in Sent proves anything).
    imap_kill_point(&servers, pg, "send:delivered", maybe(1)).await?;
    // Accepted and committed, killed before the APPEND: only filed afterwards.
    imap_kill_point(&servers, pg, "send:accepted", filed).await?;
    // APPENDed, killed before the outcome was recorded: found in Sent, not filed again.
    imap_kill_point(&servers, pg, "send:filed", filed).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_send_killed_at_every_step_is_never_doubled() -> R {
    imap_kill_points(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_send_killed_at_every_step_is_never_doubled_on_postgres() -> R {
    imap_kill_points(true).await
}

async fn jmap_sent_copies(
    servers: &Servers,
    who: &Account,
    db: &TempDb,
    account: AccountId,
    message_id: &str,
) -> Res<usize> {
    let c = Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .connect(servers.jmap_session_url())
        .await?;
    let jacc = c.mail_account_id()?;
    let sent = mailboxes::find_by_role(db.store.conn(), account, Role::Sent)
        .await?
        .ok_or("no Sent mailbox")?;
    let found = c
        .call(
            Query::<Email>::new(&jacc).filter(EmailFilterCondition::header(
                "Message-ID",
                Some(format!("<{message_id}>")),
            )),
        )
        .await?;
    if found.ids.is_empty() {
        return Ok(0);
    }
    let got = c
        .call(
            Get::<Email>::new(&jacc)
                .ids(found.ids)
                .properties(["id", "mailboxIds", "messageId"]),
        )
        .await?;
    let sent_id = mailsync_jmap_client::MailboxId::new(sent.remote_id);
    Ok(got
        .list
        .iter()
        .filter(|e| {
            e.message_id
                .as_ref()
                .is_some_and(|v| v.iter().any(|m| m == message_id))
                && e.in_mailbox(&sent_id)
        })
        .count())
}

async fn jmap_kill_point(servers: &Servers, who: &Account, point: &str, expect: Expect) -> R {
    let db = TempDb::sqlite().await?;
    let address = format!("{}@example.test", who.user);
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: who.user.clone(),
            kind: AccountKind::Jmap,
            email: address.clone(),
            display_name: None,
            username: who.user.clone(),
            secret_ref: SecretRef::Command(format!("printf %s {}", who.password)),
            imap: None,
            smtp: None,
            jmap_session_url: Some(servers.jmap_session_url().into()),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?
    .id;
    let engine = Engine::new(db.store.clone());
    engine.sync_once(account).await?;
    let message_id = format!("{}@mailsync.test", unique_name("jmapkill"));
    engine.send(account, message(&address, &message_id)).await?;
    kill_at(&db.url, account, point)?;
    lease_left_behind(&db, account).await?;
    let copies = || jmap_sent_copies(servers, who, &db, account, &message_id);
    check(&db, servers, account, point, &message_id, copies, expect).await?;
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_send_killed_at_every_step_is_never_doubled() -> R {
    let servers = Servers::load()?;
    let who = Account::cyrus_pool(ENGINE, 5);
    let filed = Expect {
        delivered: 1,
        in_sent: 1,
        maybe_sent: false,
    };
    // Handed over (journaled), killed before the request: nothing on the server.
    jmap_kill_point(
        &servers,
        &who,
        "send:handed",
        Expect {
            delivered: 0,
            in_sent: 0,
            maybe_sent: true,
        },
    )
    .await?;
    // The submission was created (and the copy moved to Sent in the same request), killed
    // before "accepted" was committed: found in Sent by its Message-ID, not sent again.
    jmap_kill_point(&servers, &who, "send:delivered", filed).await?;
    // Accepted and committed: done.
    jmap_kill_point(&servers, &who, "send:accepted", filed).await?;
    Ok(())
}
