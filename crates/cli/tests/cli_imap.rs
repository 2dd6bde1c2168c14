//! The `mailsync` binary end to end with IMAP accounts on the real Dovecot (fresh `t_` users),
//! sending through the SMTP sink: plain, STARTTLS and implicit TLS with a CA file, errors,
//! sync/list/show, offline changes then sync, send, and the daemon (IDLE) stopping on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, PW_VAR, R, append, imap_add, message, unique, wait_for};
use mailsync_testkit::Servers;

#[test]
fn imap_accounts_security_and_errors() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("cli").user;

    // Wrong password: exit 4, nothing stored.
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    env.run(&[
        "account",
        "add",
        "bad",
        "--imap",
        &imap,
        "--security",
        "plain",
        "--user",
        &user,
        "--password-cmd",
        "printf %s wrong",
    ])
    .fails(4);
    assert!(
        env.run(&["account", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );
    // Nothing listens: exit 5.
    env.run(&[
        "account",
        "add",
        "bad",
        "--imap",
        "127.0.0.1:1",
        "--security",
        "plain",
        "--user",
        &user,
        "--password-env",
        PW_VAR,
    ])
    .fails(5);

    imap_add(&env, &servers, "plain", &user, &[]).ok();
    let ca = servers.tls_ca().to_str().ok_or("ca path")?.to_owned();
    let imaps = format!("127.0.0.1:{}", servers.dovecot_imaps_port());
    env.run(&[
        "account",
        "add",
        "tls",
        "--imap",
        &imaps,
        "--security",
        "tls",
        "--ca-file",
        &ca,
        "--user",
        &user,
        "--password-env",
        PW_VAR,
    ])
    .ok();
    env.run(&[
        "account",
        "add",
        "starttls",
        "--imap",
        &imap,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--user",
        &user,
        "--password-env",
        PW_VAR,
    ])
    .ok();
    // The self-signed certificate without its CA: refused.
    let o = env.run(&[
        "account",
        "add",
        "noca",
        "--imap",
        &imaps,
        "--security",
        "tls",
        "--user",
        &user,
        "--password-env",
        PW_VAR,
    ]);
    assert_ne!(o.code, 0, "{o:#?}");
    let list = env.run(&["account", "list", "--json"]).ok().json_lines();
    assert_eq!(list.len(), 3);
    let plain = list.iter().find(|a| a["name"] == "plain").ok_or("plain")?;
    assert_eq!(plain["kind"], "imap");
    assert_eq!(plain["imap"]["security"], "plain");
    assert_eq!(plain["smtp"]["port"], servers.smtp_port());
    for name in ["plain", "tls", "starttls"] {
        env.run(&["account", "test", name]).ok();
    }
    env.run(&["sync", "--once", "--account", "tls"]).ok();
    Ok(())
}

#[test]
fn imap_sync_changes_and_send() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("cli").user;
    let subjects: Vec<String> = (0..3).map(|i| unique(&format!("cli-imap{i}"))).collect();
    let mut msgs: Vec<Vec<u8>> = subjects
        .iter()
        .map(|s| message(s, "imap body", None).0)
        .collect();
    let s_att = unique("cli-imap-att");
    msgs.push(message(&s_att, "with attachment", Some(("a.txt", "xyz"))).0);
    append(&servers, &user, "INBOX", msgs);

    let mut imap = mailsync_testkit::ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
    )?;
    imap.create_mailbox("Café Ünïcode")?;
    imap.logout();
    imap_add(&env, &servers, "i", &user, &["--email", "me@example.test"]).ok();
    env.run(&["sync", "--once"]).ok();
    let boxes = env.run(&["mailboxes", "--json"]).ok().json_lines();
    let cafe = boxes
        .iter()
        .find(|b| b["name"] == "Café Ünïcode")
        .ok_or("the mailbox name is decoded from modified UTF-7")?;
    assert_eq!(cafe["role"], serde_json::Value::Null);
    assert_eq!(cafe["total"], 0);
    let inbox = boxes.iter().find(|b| b["role"] == "inbox").ok_or("inbox")?;
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["total"], 4);
    assert_eq!(inbox["unread"], 4);
    let att = env.email_by_subject(&s_att).ok_or("listed")?;
    assert_eq!(att["has_attachments"], true);
    let id = |s: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(env.email_by_subject(s).ok_or("listed")?["id"]
            .as_i64()
            .ok_or("id")?
            .to_string())
    };
    let shown = env.run(&["show", &id(&subjects[0])?]).ok();
    assert!(shown.stdout.contains("imap body"), "{shown:#?}");
    let j: serde_json::Value =
        serde_json::from_str(&env.run(&["show", &id(&s_att)?, "--json"]).ok().stdout)?;
    assert_eq!(j["attachments"][0]["file_name"], "a.txt");

    // Offline changes, then sync.
    let offline = |args: &[&str]| {
        env.run_with(args, |c| {
            c.env_remove(PW_VAR);
        })
    };
    offline(&["flag", &id(&subjects[0])?, "--seen"]).ok();
    offline(&["move", &id(&subjects[1])?, "--to", "Archive"]).ok();
    offline(&["delete", &id(&subjects[2])?]).ok();
    env.run(&["sync", "--once"]).ok();
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 0, "{}", st[0]);
    let other = Env::new();
    imap_add(&other, &servers, "i", &user, &[]).ok();
    other.run(&["sync", "--once"]).ok();
    assert_eq!(
        other.email_by_subject(&subjects[0]).ok_or("a")?["seen"],
        true
    );
    assert_eq!(
        other.email_by_subject(&subjects[1]).ok_or("b")?["mailboxes"],
        serde_json::json!(["Archive"])
    );
    if let Some(c) = other.email_by_subject(&subjects[2]) {
        assert_ne!(c["mailboxes"], serde_json::json!(["INBOX"]), "{c}");
    }

    // Send through SMTP.
    let subject = unique("cli-imap-send");
    env.run(&[
        "send",
        "--account",
        "i",
        "--to",
        "rcpt@example.test",
        "--subject",
        &subject,
        "--body",
        "via smtp",
    ])
    .ok();
    mailsync_testkit::wait_for_sink_message(
        servers.smtp_sink_dir(),
        Duration::from_secs(30),
        |m| m.header("Subject").as_deref() == Some(subject.as_str()),
    )?;
    Ok(())
}

#[test]
fn imap_daemon_idle_and_sigterm() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("cli").user;
    imap_add(&env, &servers, "d", &user, &[]).ok();
    let log = std::fs::File::create(env.path("daemon.log"))?;
    let mut child = common::Daemon(
        env.daemon(&["sync"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let first = wait_for(Duration::from_secs(30), || {
        let st = env.run(&["status", "--json"]).ok().json_lines();
        st[0]["last_sync"].is_string().then_some(())
    });
    assert!(first.is_some(), "first cycle");
    let subject = unique("cli-idle");
    append(
        &servers,
        &user,
        "INBOX",
        vec![message(&subject, "idle", None).0],
    );
    let seen = wait_for(Duration::from_secs(30), || env.email_by_subject(&subject));
    assert!(seen.is_some(), "IDLE picked up the new mail");
    std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()?;
    let exit = wait_for(Duration::from_secs(20), || {
        child.0.try_wait().ok().flatten()
    });
    let Some(exit) = exit else {
        let _ = child.0.kill();
        return Err("no exit within 20 s of SIGTERM".into());
    };
    assert_eq!(exit.code(), Some(0));
    Ok(())
}

#[test]
fn imap_failed_changes_list_retry_and_dismiss() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("clifail").user;
    // Mailboxes another client deletes after we synced them: moving there fails.
    let boxes = ["GoneA", "GoneB"];
    let mut imap = mailsync_testkit::ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
    )?;
    for b in boxes {
        imap.create_mailbox(b)?;
    }
    let subjects: Vec<String> = (0..2).map(|i| unique(&format!("cli-fail{i}"))).collect();
    append(
        &servers,
        &user,
        "INBOX",
        subjects
            .iter()
            .map(|s| message(s, "body", None).0)
            .collect(),
    );
    imap_add(&env, &servers, "f", &user, &[]).ok();
    env.run(&["sync", "--once"]).ok();
    for b in boxes {
        imap.delete_mailbox(b)?;
    }
    imap.logout();
    for (s, b) in subjects.iter().zip(boxes) {
        let id = env.email_by_subject(s).ok_or("listed")?["id"]
            .as_i64()
            .ok_or("id")?
            .to_string();
        env.run(&["move", &id, "--to", b]).ok();
    }
    // The sync succeeds; the refused moves are evicted and their local effect reverted.
    env.run(&["sync", "--once"]).ok();
    let failed = env.run(&["failed", "--json"]).ok().json_lines();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in &failed {
        assert_eq!(f["account"], "f");
        assert_eq!(f["kind"], "move");
        assert!(
            f["reason"].as_str().unwrap_or("").contains("TRYCREATE"),
            "{f}"
        );
        assert!(f["id"].is_i64() && f["email_id"].is_i64(), "{f}");
    }
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["failed"], 2, "{}", st[0]);
    assert_eq!(st[0]["pending"], 0, "{}", st[0]);
    for s in &subjects {
        let e = env.email_by_subject(s).ok_or("still listed")?;
        assert_eq!(
            e["mailboxes"],
            serde_json::json!(["INBOX"]),
            "reverted: {e}"
        );
    }
    let human = env.run(&["failed"]).ok();
    assert_eq!(human.stdout.lines().count(), 2, "{human:#?}");

    let id0 = failed[0]["id"].as_i64().ok_or("id")?.to_string();
    let id1 = failed[1]["id"].as_i64().ok_or("id")?.to_string();
    // Retrying a move to a mailbox that is gone (locally too, since the sync): refused, kept.
    // (The outbox reports a foreign-key failure here rather than "mailbox not found": exit 1.)
    let r = env.run(&["failed", "retry", &id1]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:#?}");
    assert!(
        r.stderr.starts_with(&format!("error: failed change {id1}")),
        "{r:#?}"
    );
    env.run(&["failed", "dismiss", &id0]).ok();
    env.run(&["failed", "dismiss", &id0]).fails(3);
    let left = env.run(&["failed", "--json"]).ok().json_lines();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"].to_string(), id1);
    env.run(&["failed", "dismiss", &id1]).ok();
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["failed"], 0, "{}", st[0]);
    Ok(())
}
