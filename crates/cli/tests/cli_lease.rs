//! The daemon and the CLI side by side on one account (Dovecot + the SMTP sink), on SQLite and
//! on PostgreSQL: a change made with the CLI (no `--now`) reaches the server within 2 s while
//! `mailsync sync` runs (the daemon is woken through the database); concurrent `--now` flushes
//! and sends are handed to the daemon instead of racing it (nothing sent twice); and a daemon
//! killed with SIGKILL blocks the account no longer than its lease (`MAILSYNC_LEASE_TTL`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, R, message, unique, wait_for};
use mailsync_testkit::Servers;

/// The lease the processes of these tests use: a killed daemon frees the account after it.
const LEASE_TTL: &str = "3s";

/// Runs the CLI with the test's lease expiry.
fn cli(env: &Env, args: &[&str]) -> common::Out {
    env.run_with(args, |c| {
        c.env("MAILSYNC_LEASE_TTL", LEASE_TTL);
    })
}

/// How many messages in `mailbox` match an IMAP search on the server (doveadm).
fn server_count(servers: &Servers, user: &str, mailbox: &str, query: &[&str]) -> usize {
    let mut args = vec!["search", "-u", user, "mailbox", mailbox];
    args.extend_from_slice(query);
    match servers.doveadm(&args) {
        Ok(o) => o.lines().filter(|l| !l.trim().is_empty()).count(),
        Err(e) => panic!("doveadm {args:?}: {e}"),
    }
}

fn delivered(servers: &Servers, subject: &str) -> usize {
    mailsync_testkit::sink_messages(servers.smtp_sink_dir())
        .map(|v| {
            v.iter()
                .filter(|m| m.header("Subject").as_deref() == Some(subject))
                .count()
        })
        .unwrap_or(0)
}

fn id_of(env: &Env, subject: &str) -> Result<String, String> {
    let e = env
        .email_by_subject(subject)
        .ok_or_else(|| format!("{subject} synced"))?;
    Ok(e["id"].as_i64().ok_or("id")?.to_string())
}

/// Who holds account 1's lease now, and how many cycles finished, read from the database.
fn lease_holder(env: &Env) -> Option<(String, usize)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let store = mailsync_store::Store::open(&env.db).await.ok()?;
        let lease = mailsync_store::leases::get(store.conn(), mailsync_store::AccountId(1))
            .await
            .ok()??;
        let holder = lease.holder_at(mailsync_store::now()).map(str::to_owned);
        let cycles =
            mailsync_store::sync_log::list(store.conn(), Some(mailsync_store::AccountId(1)), 100)
                .await
                .ok()?
                .iter()
                .filter(|l| l.finished_at.is_some())
                .count();
        store.close().await.ok()?;
        Some((holder?, cycles))
    })
}

fn daemon_and_cli(env: &Env) -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("lease").user;
    common::imap_add(env, &servers, "d", &user, &[]).ok();
    let subjects: Vec<String> = (1..=3).map(|i| unique(&format!("lease{i}"))).collect();
    let msgs: Vec<Vec<u8>> = subjects
        .iter()
        .map(|s| message(s, "body", None).0)
        .collect();
    mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        "INBOX",
        msgs.iter(),
        10,
    )?;
    cli(env, &["sync", "--once"]).ok();
    let ids: Vec<String> = subjects
        .iter()
        .map(|s| id_of(env, s))
        .collect::<Result<_, _>>()?;
    let cycles_before = 1;

    let log = std::fs::File::create(env.path("daemon.log"))?;
    let mut daemon = common::Daemon(
        env.daemon(&["-v", "sync"])
            .env("MAILSYNC_LEASE_TTL", LEASE_TTL)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let first = wait_for(Duration::from_secs(30), || {
        lease_holder(env)
            .is_some_and(|(_, cycles)| cycles > cycles_before)
            .then_some(())
    });
    assert!(
        first.is_some(),
        "the daemon's first cycle, holding the lease"
    );
    // Let it settle into IDLE.
    std::thread::sleep(Duration::from_millis(500));

    // A change without --now reaches the server within 2 s: the daemon is woken.
    let t0 = Instant::now();
    cli(env, &["flag", &ids[0], "--seen"]).ok();
    let on_server = wait_for(Duration::from_secs(10), || {
        (server_count(&servers, &user, "INBOX", &["seen", "subject", &subjects[0]]) == 1)
            .then(|| t0.elapsed())
    })
    .ok_or("the change never reached the server")?;
    println!("flag --seen (no --now) on the server after {on_server:?}");
    assert!(on_server < Duration::from_secs(2), "{on_server:?}");

    // Concurrent flushes and sends from the CLI while the daemon runs: handed to the daemon.
    let send_subjects: Vec<String> = (1..=2).map(|i| unique(&format!("leasesend{i}"))).collect();
    std::thread::scope(|s| -> R {
        let mut runs = Vec::new();
        for id in &ids[1..] {
            runs.push(s.spawn(move || cli(env, &["flag", id, "--flagged", "--now"])));
        }
        for subject in &send_subjects {
            runs.push(s.spawn(move || {
                cli(
                    env,
                    &[
                        "send",
                        "--account",
                        "d",
                        "--to",
                        "bob@example.test",
                        "--subject",
                        subject,
                        "--body",
                        "once",
                    ],
                )
            }));
        }
        for r in runs {
            let out = r.join().map_err(|_| "a CLI run panicked")?.ok();
            assert!(!out.stderr.contains("error"), "{out:#?}");
        }
        Ok(())
    })?;
    for subject in &subjects[1..] {
        assert_eq!(
            server_count(&servers, &user, "INBOX", &["flagged", "subject", subject]),
            1,
            "{subject} flagged on the server; daemon log: {}",
            std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default()
        );
    }
    for subject in &send_subjects {
        let n = wait_for(Duration::from_secs(5), || {
            (delivered(&servers, subject) >= 1).then_some(())
        });
        assert!(n.is_some(), "{subject} delivered");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(delivered(&servers, subject), 1, "{subject} sent once");
        assert_eq!(
            server_count(&servers, &user, "Sent", &["subject", subject]),
            1,
            "{subject} filed once"
        );
    }
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 0, "{}", st[0]);

    // A daemon killed with SIGKILL leaves its lease; the CLI waits at most for its expiry.
    daemon.0.kill()?;
    daemon.0.wait()?;
    let t1 = Instant::now();
    let out = cli(env, &["flag", &ids[0], "--unseen", "--now"]).ok();
    let took = t1.elapsed();
    println!("flag --now after a killed daemon: {took:?}: {}", out.stdout);
    assert!(took < Duration::from_secs(3 + 5), "{took:?}");
    assert!(out.stdout.contains("0 still queued"), "{out:#?}");
    assert_eq!(
        server_count(
            &servers,
            &user,
            "INBOX",
            &["unseen", "subject", &subjects[0]]
        ),
        1
    );
    Ok(())
}

#[test]
fn daemon_and_cli_on_sqlite() -> R {
    daemon_and_cli(&Env::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_and_cli_on_postgres() -> R {
    let db = mailsync_store::testing::TempDb::postgres().await?;
    let url = db.url.clone();
    let res = tokio::task::spawn_blocking(move || {
        daemon_and_cli(&Env::with_db(&url)).map_err(|e| e.to_string())
    })
    .await;
    db.cleanup().await?;
    res??;
    Ok(())
}
