//! Nested mailboxes by full name on both protocols, through the `mailsync` binary: listings
//! show `Projects/2024` (not `2024`), `move --to Projects/2024` (the form `move --help`
//! teaches) works, and with `Projects/2024` and `Other/2024` both present `move --to 2024` is
//! a usage error naming both. Dovecot over IMAP (a fresh `t_` user) and Cyrus over JMAP (pool
//! user `cl7`, mailboxes created over IMAP on the same mailstore).

mod common;

use common::{Env, PW_VAR, R, message, unique};
use mailsync_testkit::{ImapClient, Servers};

/// Makes `Projects/2024` and `Other/2024` (removing leftovers of earlier runs first) and puts
/// one fresh message into INBOX; returns its subject.
fn prepare(
    host: &str,
    port: u16,
    user: &str,
    pw: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut imap = ImapClient::login(host, port, user, pw)?;
    for b in ["Projects/2024", "Other/2024", "Projects", "Other"] {
        let _ = imap.command(&format!("DELETE \"{b}\""));
    }
    if imap.select("INBOX")? > 0 {
        imap.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        imap.command("EXPUNGE")?;
    }
    for b in ["Projects", "Projects/2024", "Other", "Other/2024"] {
        imap.command(&format!("CREATE \"{b}\""))?;
    }
    imap.logout();
    let subject = unique("nested");
    let (raw, _) = message(&subject, "body", None);
    let n = mailsync_testkit::imap_append_bulk(host, port, user, pw, "INBOX", [raw].iter(), 1)?;
    assert_eq!(n, 1);
    Ok(subject)
}

fn check(env: &Env, account: &str, subject: &str) -> R {
    env.run(&["sync", "--once", "--account", account]).ok();
    let boxes = env.run(&["mailboxes", "--account", account]).ok();
    assert!(boxes.stdout.contains("Projects/2024"), "{boxes:#?}");
    assert!(boxes.stdout.contains("Other/2024"), "{boxes:#?}");
    let id = env
        .email_by_subject(subject)
        .and_then(|e| e["id"].as_i64())
        .ok_or("synced")?
        .to_string();

    // Ambiguous last segment: exit 2, one line naming both, nothing queued.
    let o = env.run(&["move", &id, "--to", "2024"]).fails(2);
    assert!(
        o.stderr.contains("Other/2024") && o.stderr.contains("Projects/2024"),
        "{o:#?}"
    );
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o:#?}");

    // The full name works, and the move reaches the server.
    env.run(&["move", &id, "--to", "Projects/2024", "--now"])
        .ok();
    env.run(&["sync", "--once", "--account", account]).ok();
    let e = env.email_by_subject(subject).ok_or("still there")?;
    assert_eq!(
        e["mailboxes"],
        serde_json::json!(["Projects/2024"]),
        "{e:#?}"
    );
    // A unique last segment still works as a shorthand.
    let listed = env
        .run(&[
            "emails",
            "--account",
            account,
            "--mailbox",
            "Projects/2024",
            "--json",
        ])
        .ok();
    assert!(listed.stdout.contains(subject), "{listed:#?}");
    Ok(())
}

#[test]
fn nested_mailboxes_by_full_name_on_dovecot_imap() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("paths");
    let subject = prepare(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
    )?;
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    env.run(&[
        "account",
        "add",
        "dv",
        "--imap",
        &imap,
        "--security",
        "plain",
        "--user",
        &user.user,
        "--password-env",
        PW_VAR,
    ])
    .ok();
    check(&env, "dv", &subject)
}

#[test]
fn nested_mailboxes_by_full_name_on_cyrus_jmap() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let who = mailsync_testkit::Account::new("cl7", mailsync_testkit::CYRUS_POOL_PASSWORD);
    let subject = prepare(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        &who.user,
        &who.password,
    )?;
    env.add_jmap("cy", &who.user).ok();
    check(&env, "cy", &subject)
}
