//! `mailsync account add --oauth2` end to end on the real Dovecot (`o_*` users, oauth2 passdb)
//! and the SMTP sink (XOAUTH2), with a test token endpoint: add, test (mechanisms shown), sync
//! and send with short-lived tokens at `-vv`, no token in the database or the logs; a revoked
//! refresh token (exit 4), an unreachable endpoint (exit 5) and one answering garbage (exit 4),
//! each one line and nothing stored.
//!
//! Needs servers started from this tree (oauth2 passdb, introspection relay), e.g.
//! `MAILSYNC_SERVERS_ROOT=/dev/shm/oauth`.

mod common;

use std::time::Duration;

use common::{Env, R, unique};
use mailsync_testkit::{Servers, TokenEndpoint};

const RT_VAR: &str = "MAILSYNC_CLI_TEST_REFRESH";

fn add_args<'a>(servers: &Servers, name: &'a str, user: &'a str, url: &'a str) -> Vec<String> {
    [
        "account",
        "add",
        name,
        "--oauth2",
        "--imap",
        &format!("127.0.0.1:{}", servers.dovecot_imap_port()),
        "--security",
        "plain",
        "--smtp",
        &format!("127.0.0.1:{}", servers.smtp_port()),
        "--user",
        user,
        "--email",
        &format!("{user}@example.test"),
        "--oauth-token-url",
        url,
        "--oauth-client-id",
        "mailsync-cli-test",
        "--oauth-scope",
        "https://mail.example.test/",
        "--oauth-refresh-env",
        RT_VAR,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(env: &Env, args: &[String], refresh: &str) -> common::Out {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_with(&args, |c| {
        c.env(RT_VAR, refresh);
    })
}

fn database_bytes(env: &Env) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(env.path(&format!("x.db{suffix}"))) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty(), "database file");
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn oauth_account_adds_tests_syncs_and_sends_without_leaking_tokens() -> R {
    let servers = Servers::load()?;
    let issuer = TokenEndpoint::start(Duration::from_secs(2))?;
    let user = TokenEndpoint::fresh_user("i20cli");
    let rt = issuer.refresh_token_for(&user);
    let env = Env::new();
    let url = issuer.token_url();
    let mut logs = String::new();

    let mut args = add_args(&servers, "o", &user, &url);
    args.insert(0, "-vv".into());
    let out = run(&env, &args, &rt).ok();
    logs.push_str(&out.stderr);
    assert!(out.stdout.contains("account \"o\" added"), "{out:#?}");

    let out = run(
        &env,
        &["-vv".into(), "account".into(), "test".into(), "o".into()],
        &rt,
    )
    .ok();
    logs.push_str(&out.stderr);
    assert!(
        out.stdout.contains("ok (IMAP OAUTHBEARER, SMTP XOAUTH2)"),
        "{out:#?}"
    );

    let subject = unique("cli-oauth-in");
    mailsync_testkit::doveadm_with_input(
        servers.dovecot_conf(),
        &["save", "-u", &user, "-m", "INBOX"],
        Some(format!("From: a@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n").as_bytes()),
    )?;
    // Past the token's life: the next process gets a new one either way; what counts here is
    // that every step works with OAuth only and nothing leaks.
    std::thread::sleep(Duration::from_millis(2100));
    let sync: Vec<String> = ["-vv", "sync", "--once"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run(&env, &sync, &rt).ok();
    logs.push_str(&out.stderr);
    assert!(env.email_by_subject(&subject).is_some(), "synced");

    let sent = unique("cli-oauth-out");
    let send: Vec<String> = [
        "-vv",
        "send",
        "--account",
        "o",
        "--to",
        "rcpt@example.test",
        "--subject",
        &sent,
        "--body",
        "via XOAUTH2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(&env, &send, &rt).ok();
    logs.push_str(&out.stderr);
    let got = mailsync_testkit::wait_for_sink_message(
        servers.smtp_sink_dir(),
        Duration::from_secs(20),
        |m| m.header("Subject").as_deref() == Some(sent.as_str()),
    )?;
    assert_eq!(got.auth_user.as_deref(), Some(user.as_str()));

    let json = run(
        &env,
        &["account".into(), "list".into(), "--json".into()],
        &rt,
    )
    .ok();
    let a = &json.json_lines()[0];
    assert_eq!(a["oauth2"]["token_url"], url.as_str());
    assert_eq!(a["oauth2"]["refresh_token"]["from"], "env");
    assert_eq!(a["oauth2"]["refresh_token"]["source"], RT_VAR);
    assert!(a["password"].is_null());

    assert!(
        logs.contains("OAuth 2 access token"),
        "debug logs at -vv: {logs}"
    );
    let db = database_bytes(&env);
    for t in issuer.issued() {
        assert!(!logs.contains(&t), "a token appears in the logs");
        assert!(!contains(&db, &t), "a token appears in the database");
    }
    Ok(())
}

#[test]
fn bad_refresh_tokens_and_endpoints_exit_with_one_line_and_store_nothing() -> R {
    let servers = Servers::load()?;
    let issuer = TokenEndpoint::start(Duration::from_secs(60))?;
    let user = TokenEndpoint::fresh_user("i20clibad");
    let env = Env::new();

    // Revoked: exit 4, names the cause.
    let rt = issuer.refresh_token_for(&user);
    issuer.revoke_refresh(&rt);
    let out = run(
        &env,
        &add_args(&servers, "o", &user, &issuer.token_url()),
        &rt,
    )
    .fails(4);
    assert!(out.stderr.contains("invalid_grant"), "{out:#?}");

    // Unreachable: exit 5.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead = format!("http://127.0.0.1:{}/token", free.local_addr()?.port());
    drop(free);
    let rt = issuer.refresh_token_for(&user);
    let out = run(&env, &add_args(&servers, "o", &user, &dead), &rt).fails(5);
    assert!(out.stderr.contains("token endpoint"), "{out:#?}");

    // Garbage (an HTML page with 200 OK): exit 4, says so.
    issuer.set_garbage(true);
    let out = run(
        &env,
        &add_args(&servers, "o", &user, &issuer.token_url()),
        &rt,
    )
    .fails(4);
    assert!(out.stderr.contains("HTML"), "{out:#?}");

    // --oauth2 with a password option is a usage error.
    let mut args = add_args(&servers, "o", &user, &issuer.token_url());
    args.extend(["--password-env".to_owned(), "X".to_owned()]);
    assert_eq!(run(&env, &args, &rt).code, 2);

    let listed = run(
        &env,
        &["account".into(), "list".into(), "--json".into()],
        &rt,
    )
    .ok();
    assert!(
        listed.stdout.trim().is_empty(),
        "nothing stored: {listed:#?}"
    );
    Ok(())
}
