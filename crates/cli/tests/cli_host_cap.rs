//! The per-host connection cap (`sync --host-connections N`) against real Dovecot: six
//! accounts on one host through a counting proxy, a daemon capped at two connections. Every
//! account gets synced (the accounts take turns), new mail still arrives, and the proxy never
//! sees more than two connections open at once; uncapped, the same daemon keeps one per
//! account (so the count would show a broken cap).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, R, message, unique};
use mailsync_testkit::{FaultProxy, Servers};

const ACCOUNTS: usize = 6;
const CAP: usize = 2;

/// Adds `ACCOUNTS` fresh Dovecot users, 2 messages each, reached through `proxy`.
fn accounts(
    env: &Env,
    servers: &Servers,
    proxy: &FaultProxy,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut users = Vec::new();
    for i in 0..ACCOUNTS {
        let user = servers.fresh_dovecot_user("cap").user;
        let msgs = (0..2)
            .map(|j| message(&unique(&format!("cap{i}-{j}")), "b", None).0)
            .collect();
        common::append(servers, &user, "INBOX", msgs);
        let imap = format!("{}:{}", proxy.host(), proxy.port());
        env.run(&[
            "account",
            "add",
            &format!("c{i}"),
            "--imap",
            &imap,
            "--security",
            "plain",
            "--user",
            &user,
            "--password-env",
            common::PW_VAR,
            "--bodies",
            "none",
        ])
        .ok();
        users.push(user);
    }
    Ok(users)
}

fn stored(env: &Env) -> usize {
    env.emails().len()
}

/// Samples the proxy's open connections every 10 ms until `done` or `limit`; returns the most
/// seen and whether `done` came true.
fn watch(proxy: &FaultProxy, limit: Duration, mut done: impl FnMut() -> bool) -> (usize, bool) {
    let t0 = Instant::now();
    let mut most = 0;
    let mut last_check = Instant::now() - Duration::from_secs(1);
    while t0.elapsed() < limit {
        most = most.max(proxy.open_now());
        if last_check.elapsed() > Duration::from_millis(300) {
            if done() {
                return (most, true);
            }
            last_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (most, false)
}

#[test]
fn the_host_cap_holds_and_every_account_takes_its_turn() -> R {
    let servers = Servers::load()?;
    let proxy = FaultProxy::start(servers.dovecot_host(), servers.dovecot_imap_port())?;
    let env = Env::new();
    let users = accounts(&env, &servers, &proxy)?;
    // `account add` tested each login through the proxy; those connections are closed.
    assert!(
        common::wait_for(Duration::from_secs(5), || (proxy.open_now() == 0)
            .then_some(()))
        .is_some()
    );

    let log = std::fs::File::create(env.path("capped.log"))?;
    let mut daemon = common::Daemon(
        env.daemon(&["-v", "sync", "--host-connections", &CAP.to_string()])
            .env("MAILSYNC_STATUS_INTERVAL", "500ms")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let (most, all) = watch(&proxy, Duration::from_secs(60), || {
        stored(&env) == ACCOUNTS * 2
    });
    assert!(
        all,
        "every account synced under the cap ({} of {} emails)",
        stored(&env),
        ACCOUNTS * 2
    );
    assert!(
        most <= CAP,
        "{most} connections open at once under a cap of {CAP}"
    );

    // New mail to the last account still arrives while the accounts take turns.
    let subject = unique("capped-new");
    common::append(
        &servers,
        &users[ACCOUNTS - 1],
        "INBOX",
        vec![message(&subject, "b", None).0],
    );
    let (most_after, arrived) = watch(&proxy, Duration::from_secs(30), || {
        env.email_by_subject(&subject).is_some()
    });
    assert!(arrived, "new mail synced under the cap");
    let most = most.max(most_after);
    assert!(
        most <= CAP,
        "{most} connections open at once under a cap of {CAP}"
    );
    assert_eq!(most, CAP, "the daemon used the connections it may");
    assert!(
        proxy.connections() > ACCOUNTS,
        "accounts took turns (reconnected): {} connections in all",
        proxy.connections()
    );
    println!(
        "capped at {CAP}: at most {most} open at once (proxy peak at accept {}), {} connections \
         in all",
        proxy.peak(),
        proxy.connections()
    );
    daemon.0.kill()?;
    daemon.0.wait()?;

    // The same daemon uncapped keeps a connection per account: the count above can fail.
    let log = std::fs::File::create(env.path("uncapped.log"))?;
    let _uncapped = common::Daemon(
        env.daemon(&["-v", "sync"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let (most, enough) = watch(&proxy, Duration::from_secs(30), || {
        proxy.open_now() >= ACCOUNTS
    });
    assert!(
        enough,
        "uncapped: {most} open at most, expected one per account"
    );
    Ok(())
}
