//! `mailsync sync --bodies all` as a daemon (Dovecot): the policy given on the command line is
//! the one the workers sync with, so the bodies of messages already there are cached.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, PW_VAR, R, message, unique, wait_for};
use mailsync_store::{Store, bodies};
use mailsync_testkit::Servers;

/// Emails with a cached body, read from the database the daemon writes.
fn cached_bodies(env: &Env) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ids: Vec<i64> = env
        .emails()
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    rt.block_on(async {
        let Ok(store) = Store::connect(&env.db).await else {
            return 0;
        };
        let mut n = 0;
        for id in ids {
            if let Ok(Some(_)) = bodies::get(store.conn(), mailsync_store::EmailId(id)).await {
                n += 1;
            }
        }
        n
    })
}

#[test]
fn daemon_syncs_with_the_bodies_policy_given_on_the_command_line() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("clibody").user;
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    env.run(&[
        "account",
        "add",
        "b",
        "--imap",
        &imap,
        "--security",
        "plain",
        "--user",
        &user,
        "--password-env",
        PW_VAR,
        "--bodies",
        "none",
    ])
    .ok();
    let msgs: Vec<Vec<u8>> = (0..3)
        .map(|i| message(&unique(&format!("body{i}")), "the body", None).0)
        .collect();
    mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        "INBOX",
        msgs.iter(),
        100,
    )?;
    let log = std::fs::File::create(env.path("daemon.log"))?;
    let child = common::Daemon(
        env.daemon(&["sync", "--bodies", "all"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let all = wait_for(Duration::from_secs(30), || {
        (env.emails().len() == 3 && cached_bodies(&env) == 3).then_some(())
    });
    drop(child);
    assert!(
        all.is_some(),
        "3 emails with bodies; got {} emails, {} bodies",
        env.emails().len(),
        cached_bodies(&env)
    );
    Ok(())
}
