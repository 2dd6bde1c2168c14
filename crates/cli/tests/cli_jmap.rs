//! The `mailsync` binary end to end with JMAP accounts on the real Cyrus (pool users `cl1`..):
//! every command, its `--json` shape and its errors, offline changes then sync, sending, the
//! daemon picking up new mail and stopping on SIGTERM, and the PostgreSQL database path.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, PW_VAR, R, deliver, message, unique, wait_for};

#[test]
fn help_on_every_command_has_examples() {
    let env = Env::new();
    let cmds: &[&[&str]] = &[
        &[],
        &["account"],
        &["account", "add"],
        &["account", "test"],
        &["account", "list"],
        &["account", "remove"],
        &["account", "edit"],
        &["attachment"],
        &["attachment", "list"],
        &["attachment", "save"],
        &["sync"],
        &["mailboxes"],
        &["emails"],
        &["threads"],
        &["search"],
        &["show"],
        &["flag"],
        &["move"],
        &["delete"],
        &["undo"],
        &["send"],
        &["status"],
        &["failed"],
        &["failed", "retry"],
        &["failed", "dismiss"],
        &["log"],
        &["mailbox"],
        &["mailbox", "create"],
        &["mailbox", "rename"],
        &["mailbox", "delete"],
        &["mailbox", "subscribe"],
        &["mailbox", "unsubscribe"],
    ];
    for c in cmds {
        let mut args = c.to_vec();
        args.push("--help");
        let o = env.run(&args).ok();
        assert!(o.stdout.contains("Usage"), "{args:?}: {o:#?}");
        if !c.is_empty() {
            assert!(
                o.stdout.contains("Example"),
                "{args:?} has examples: {o:#?}"
            );
        }
    }
    let top = env.run(&["--help"]).ok();
    assert!(top.stdout.contains("Exit codes"), "{top:#?}");
    // A usage error exits 2.
    assert_eq!(env.run(&["flag", "1"]).code, 2);
    assert_eq!(env.run(&["emails", "--limit", "x"]).code, 2);
}

#[test]
fn accounts_and_errors() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let url = servers.jmap_session_url();

    // Wrong password: exit 4, one line naming the account, nothing stored, no password shown.
    let o = env
        .run(&[
            "account",
            "add",
            "work",
            "--jmap",
            url,
            "--user",
            "cl1",
            "--password-cmd",
            "printf %s wrongpw-xyz",
        ])
        .fails(4);
    assert!(o.stderr.contains("account \"work\""), "{o:#?}");
    assert!(o.stderr.contains("authentication"), "{o:#?}");
    assert!(!o.stderr.contains("wrongpw-xyz"), "{o:#?}");
    assert!(
        env.run(&["account", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );

    // Unknown host: exit 5. Refused port: exit 5.
    env.run(&[
        "account",
        "add",
        "work",
        "--jmap",
        "http://no-such-host.invalid/jmap/",
        "--user",
        "cl1",
        "--password-env",
        PW_VAR,
        "--allow-plaintext",
    ])
    .fails(5);
    env.run(&[
        "account",
        "add",
        "work",
        "--jmap",
        "http://127.0.0.1:1/jmap/",
        "--user",
        "cl1",
        "--password-env",
        PW_VAR,
    ])
    .fails(5);
    // Plain http to a non-loopback host is refused before connecting; so is plain IMAP.
    env.run(&[
        "account",
        "add",
        "work",
        "--jmap",
        "http://example.org/jmap/",
        "--user",
        "cl1",
        "--password-env",
        PW_VAR,
    ])
    .fails(2);
    env.run(&[
        "account",
        "add",
        "work",
        "--imap",
        "example.org:143",
        "--security",
        "plain",
        "--user",
        "u",
        "--password-env",
        PW_VAR,
    ])
    .fails(2);
    // The password variable is missing: exit 4.
    env.run_with(
        &[
            "account",
            "add",
            "work",
            "--jmap",
            url,
            "--user",
            "cl1",
            "--password-env",
            "MAILSYNC_CLI_TEST_UNSET_VAR",
        ],
        |c| {
            c.env_remove("MAILSYNC_CLI_TEST_UNSET_VAR");
        },
    )
    .fails(4);
    assert!(
        env.run(&["account", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );

    // A good account, through the /.well-known/jmap URL; the password is not stored.
    let o = env
        .run(&[
            "account",
            "add",
            "work",
            "--jmap",
            servers.jmap_well_known(),
            "--user",
            "cl1",
            "--password-env",
            PW_VAR,
            "--bodies",
            "all",
            "--display-name",
            "CLI One",
            // Cyrus' identity has no address: the sender must be given.
            "--email",
            "cl1@example.test",
        ])
        .ok();
    assert!(o.stdout.contains("work"), "{o:#?}");
    let list = env.run(&["account", "list", "--json"]).ok().json_lines();
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!(a["name"], "work");
    assert_eq!(a["kind"], "jmap");
    assert_eq!(a["username"], "cl1");
    assert_eq!(a["bodies"], "all");
    assert_eq!(a["password"]["from"], "env");
    assert_eq!(a["password"]["source"], PW_VAR);
    let db_bytes = std::fs::read(env.path("x.db"))?;
    let wal = std::fs::read(env.path("x.db-wal")).unwrap_or_default();
    for bytes in [db_bytes, wal] {
        assert!(
            !bytes.windows(6).any(|w| w == b"testpw"),
            "the password is never stored"
        );
    }
    let human = env.run(&["account", "list"]).ok();
    assert!(human.stdout.contains("work"), "{human:#?}");

    // Duplicate name: refused (exit 1), still one account.
    env.run(&[
        "account",
        "add",
        "work",
        "--jmap",
        url,
        "--user",
        "cl1",
        "--password-env",
        PW_VAR,
    ])
    .fails(1);
    env.run(&["account", "test", "work"]).ok();
    env.run(&["account", "test", "nope"]).fails(3);
    env.run_with(&["account", "test", "work"], |c| {
        c.env_remove(PW_VAR);
    })
    .fails(4);

    // Unknown objects: exit 3.
    env.run(&["show", "999999"]).fails(3);
    env.run(&["flag", "999999", "--seen"]).fails(3);
    env.run(&["move", "999999", "--to", "archive"]).fails(3);
    env.run(&["delete", "999999"]).fails(3);
    env.run(&["failed", "retry", "999999"]).fails(3);
    env.run(&["failed", "dismiss", "999999"]).fails(3);
    env.run(&["emails", "--account", "nope"]).fails(3);
    env.run(&["mailboxes", "--account", "nope"]).fails(3);
    env.run(&["log", "--account", "nope"]).fails(3);
    env.run(&["sync", "--once", "--account", "nope"]).fails(3);
    env.run(&[
        "send",
        "--account",
        "nope",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--body",
        "b",
    ])
    .fails(3);
    env.run(&["undo"]).fails(3);
    assert!(env.run(&["failed", "--json"]).ok().stdout.trim().is_empty());

    // Remove: the account and its data are gone.
    env.run(&["sync", "--once"]).ok();
    env.run(&["account", "remove", "work"]).ok();
    assert!(
        env.run(&["account", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );
    assert!(env.run(&["log", "--json"]).ok().stdout.trim().is_empty());
    env.run(&["account", "remove", "work"]).fails(3);

    // A bad --db: exit 6, one line; an unwritable path too.
    let o = env.run_with(&["status"], |c| {
        c.args(["--db", "mysql://x/y"]);
    });
    assert_eq!(o.code, 6, "{o:#?}");
    Env::with_db("sqlite:///nonexistent-dir-mailsync/x.db?mode=rwc")
        .run(&["status"])
        .fails(6);
    Env::with_db("nonsense").run(&["account", "list"]).fails(6);
    Ok(())
}

#[test]
fn sync_then_list_and_show() -> R {
    let env = Env::new();
    let user = "cl2";
    let s1 = unique("cli-plain");
    let s2 = unique("cli-attach");
    let (m1, mid1) = message(&s1, "first body marker-one", None);
    let (m2, _) = message(
        &s2,
        "second body marker-two",
        Some(("notes.txt", "attached text")),
    );
    deliver(user, vec![m1, m2]);

    env.add_jmap("c2", user).ok();
    let o = env.run(&["sync", "--once"]).ok();
    assert!(o.stdout.contains("account \"c2\": synced"), "{o:#?}");

    // mailboxes --json: account, name, role, total, unread.
    let boxes = env.run(&["mailboxes", "--json"]).ok().json_lines();
    let inbox = boxes
        .iter()
        .find(|b| b["role"] == "inbox")
        .ok_or("an inbox")?;
    assert_eq!(inbox["account"], "c2");
    assert!(inbox["name"].is_string());
    assert!(inbox["total"].as_i64().unwrap_or(0) >= 2, "{inbox}");
    assert!(inbox["unread"].as_i64().is_some());
    assert!(boxes.iter().any(|b| b["role"] == "trash"));
    assert!(boxes.iter().any(|b| b["name"] == "Archive"));
    let human = env.run(&["mailboxes", "--account", "c2"]).ok();
    assert!(human.stdout.contains("inbox"), "{human:#?}");

    // emails --json shape.
    let e1 = env.email_by_subject(&s1).ok_or("first email listed")?;
    let e2 = env.email_by_subject(&s2).ok_or("second email listed")?;
    assert_eq!(e1["account"], "c2");
    assert_eq!(e1["message_id"], mid1.as_str());
    assert_eq!(e1["mailboxes"], serde_json::json!(["Inbox"]));
    assert_eq!(e1["seen"], false);
    assert_eq!(e1["flagged"], false);
    assert_eq!(e1["has_attachments"], false);
    assert_eq!(e2["has_attachments"], true);
    assert!(
        e1["from"]
            .as_str()
            .unwrap_or("")
            .contains("sender@example.test")
    );
    assert!(e1["size"].as_i64().unwrap_or(0) > 0);
    let date = e1["date"].as_str().ok_or("date")?;
    chrono::DateTime::parse_from_rfc3339(date)?;
    assert!(e1["id"].as_i64().is_some());
    // Newest first (by arrival; Cyrus has 1 s resolution, so compare times, not ids).
    let all = env.emails();
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = all
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["received_at"].as_str().unwrap_or("")))
        .collect::<Result<_, _>>()?;
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    // Filters.
    let by_role = env
        .run(&["emails", "--role", "inbox", "--json", "--limit", "100000"])
        .ok();
    assert!(by_role.stdout.contains(&s1));
    let by_box = env
        .run(&[
            "emails",
            "--account",
            "c2",
            "--mailbox",
            "Inbox",
            "--json",
            "--limit",
            "100000",
        ])
        .ok();
    assert!(by_box.stdout.contains(&s2));
    let trash = env
        .run(&["emails", "--role", "trash", "--json", "--limit", "100000"])
        .ok();
    assert!(!trash.stdout.contains(&s1));
    let limited = env
        .run(&["emails", "--limit", "1", "--json"])
        .ok()
        .json_lines();
    assert_eq!(limited.len(), 1);
    env.run(&["emails", "--mailbox", "No such box"]).fails(3);
    env.run(&["emails", "--role", "spam"]).fails(2);
    let human = env.run(&["emails", "--limit", "100000"]).ok();
    assert!(human.stdout.contains(&s1), "{human:#?}");

    // show: the body; --json adds headers and attachments.
    let id1 = e1["id"].as_i64().ok_or("id")?.to_string();
    let id2 = e2["id"].as_i64().ok_or("id")?.to_string();
    let shown = env.run(&["show", &id1]).ok();
    assert!(shown.stdout.contains("marker-one"), "{shown:#?}");
    assert!(shown.stdout.contains(&s1), "{shown:#?}");
    let j: serde_json::Value =
        serde_json::from_str(&env.run(&["show", &id2, "--json"]).ok().stdout)?;
    assert!(
        j["text"].as_str().unwrap_or("").contains("marker-two"),
        "{j}"
    );
    assert_eq!(j["headers"]["subject"], s2.as_str());
    assert_eq!(j["attachments"][0]["file_name"], "notes.txt");
    assert_eq!(j["has_attachments"], true);
    env.run(&["show", &id1, "--html"]).ok();

    // status and log.
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0]["account"], "c2");
    assert_eq!(st[0]["last_result"], "ok");
    assert!(st[0]["last_sync"].is_string());
    assert_eq!(st[0]["pending"], 0);
    assert_eq!(st[0]["failed"], 0);
    env.run(&["status"]).ok();
    let log = env
        .run(&["log", "--account", "c2", "--json"])
        .ok()
        .json_lines();
    assert!(!log.is_empty());
    assert_eq!(log[0]["status"], "ok");
    assert_eq!(log[0]["account"], "c2");
    assert!(
        log[0]["emails_added"].as_i64().unwrap_or(0) >= 2,
        "{}",
        log[0]
    );
    env.run(&["log", "--limit", "1"]).ok();

    // A second sync with a body policy: stored on the account.
    env.run(&["sync", "--once", "--account", "c2", "--bodies", "none"])
        .ok();
    let acc = env.run(&["account", "list", "--json"]).ok().json_lines();
    assert_eq!(acc[0]["bodies"], "none");
    env.run(&["sync", "--once", "--bodies", "lots"]).fails(2);

    // A failing account: --once exits non-zero with the error on stderr.
    let o = env.run_with(&["sync", "--once"], |c| {
        c.env_remove(PW_VAR);
    });
    assert_eq!(o.code, 4, "{o:#?}");
    assert!(o.stderr.contains("account \"c2\""), "{o:#?}");
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["last_result"], "error");
    Ok(())
}

#[test]
fn offline_changes_then_sync() -> R {
    let env = Env::new();
    let user = "cl3";
    let subjects: Vec<String> = (0..4).map(|i| unique(&format!("cli-off{i}"))).collect();
    deliver(
        user,
        subjects
            .iter()
            .map(|s| message(s, "body", None).0)
            .collect(),
    );
    env.add_jmap("c3", user).ok();
    env.run(&["sync", "--once"]).ok();
    let id = |s: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(env.email_by_subject(s).ok_or("listed")?["id"]
            .as_i64()
            .ok_or("id")?
            .to_string())
    };
    let (a, b, c, d) = (
        id(&subjects[0])?,
        id(&subjects[1])?,
        id(&subjects[2])?,
        id(&subjects[3])?,
    );

    // Offline: the password is not even available; the changes apply locally at once.
    let offline = |args: &[&str]| {
        env.run_with(args, |cmd| {
            cmd.env_remove(PW_VAR);
        })
    };
    // An unknown id among known ones: exit 3 and nothing applied.
    offline(&["flag", &a, "999999", "--seen"]).fails(3);
    assert_eq!(
        env.email_by_subject(&subjects[0]).ok_or("a")?["seen"],
        false
    );
    offline(&["flag", &a, "--seen"]).ok();
    offline(&["move", &b, "--to", "archive"]).ok();
    offline(&["delete", &c]).ok();
    offline(&["flag", &d, "--flagged"]).ok();
    assert_eq!(env.email_by_subject(&subjects[0]).ok_or("a")?["seen"], true);
    assert_eq!(
        env.email_by_subject(&subjects[1]).ok_or("b")?["mailboxes"],
        serde_json::json!(["Archive"])
    );
    assert_eq!(
        env.email_by_subject(&subjects[3]).ok_or("d")?["flagged"],
        true
    );
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert!(st[0]["pending"].as_u64().unwrap_or(0) >= 3, "{}", st[0]);

    // Undo the last change (the flag of d): local state restored, nothing sent for it.
    let u = offline(&["undo"]).ok();
    assert!(u.stdout.contains("withdrawn"), "{u:#?}");
    assert_eq!(
        env.email_by_subject(&subjects[3]).ok_or("d")?["flagged"],
        false
    );
    offline(&["move", &a, "--to", "No such mailbox"]).fails(3);

    // The next sync sends everything.
    let o = env.run(&["sync", "--once"]).ok();
    assert!(o.stdout.contains("changes sent"), "{o:#?}");
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 0, "{}", st[0]);
    assert_eq!(st[0]["failed"], 0, "{}", st[0]);

    // --now: queued and sent right away.
    let o = env.run(&["flag", &d, "--flagged", "--now"]).ok();
    assert!(o.stdout.contains("0 still queued"), "{o:#?}");

    // What the server has, seen from a second, fresh database.
    let other = Env::new();
    other.add_jmap("c3", user).ok();
    other.run(&["sync", "--once"]).ok();
    let ea = other.email_by_subject(&subjects[0]).ok_or("a on server")?;
    assert_eq!(ea["seen"], true, "{ea}");
    let eb = other.email_by_subject(&subjects[1]).ok_or("b on server")?;
    assert_eq!(eb["mailboxes"], serde_json::json!(["Archive"]), "{eb}");
    if let Some(ec) = other.email_by_subject(&subjects[2]) {
        assert_ne!(ec["mailboxes"], serde_json::json!(["Inbox"]), "{ec}");
    }
    let ed = other.email_by_subject(&subjects[3]).ok_or("d on server")?;
    assert_eq!(ed["flagged"], true, "{ed}");

    // Once sent, a change can no longer be undone from another process: the outbox remembers
    // completed changes only in the memory of the process that sent them.
    let u = env.run(&["undo", "--account", "c3"]).fails(3);
    assert!(u.stderr.contains("nothing to undo"), "{u:#?}");
    Ok(())
}

#[test]
fn send_reaches_the_sink() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let user = "cl5";
    env.run(&[
        "account",
        "add",
        "c5",
        "--jmap",
        servers.jmap_session_url(),
        "--user",
        user,
        "--password-env",
        PW_VAR,
        "--email",
        "cl5@example.test",
        "--display-name",
        "CLI Five",
    ])
    .ok();
    env.run(&["sync", "--once"]).ok();
    let subject = unique("cli-send");
    let file = env.path("report.txt");
    std::fs::write(&file, "attachment-content-42")?;
    let body = env.path("body.txt");
    std::fs::write(&body, "hello from the cli body file")?;
    let o = env
        .run(&[
            "send",
            "--account",
            "c5",
            "--to",
            "Bob <bob@example.test>",
            "--cc",
            "carol@example.test",
            "--bcc",
            "dave@example.test",
            "--subject",
            &subject,
            "--body-file",
            body.to_str().ok_or("path")?,
            "--attach",
            file.to_str().ok_or("path")?,
        ])
        .ok();
    assert!(o.stdout.contains("sent"), "{o:#?}");
    let got = mailsync_testkit::wait_for_sink_message(
        servers.smtp_sink_dir(),
        Duration::from_secs(30),
        |m| m.header("Subject").as_deref() == Some(subject.as_str()),
    )?;
    let raw = String::from_utf8_lossy(&got.raw);
    assert!(raw.contains("CLI Five"), "from with display name");
    assert!(raw.contains("cl5@example.test"));
    assert!(raw.contains("report.txt"));
    assert!(
        !got.header("Bcc").is_some_and(|b| b.contains("dave")),
        "no Bcc header"
    );
    assert!(
        got.rcpt_tos.iter().any(|r| r.contains("dave@example.test")),
        "Bcc in envelope"
    );
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 0);

    // --queue-only: nothing goes out until the next sync.
    let subject2 = unique("cli-queued");
    env.run(&[
        "send",
        "--account",
        "c5",
        "--to",
        "bob@example.test",
        "--subject",
        &subject2,
        "--body",
        "later",
        "--queue-only",
    ])
    .ok();
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 1, "{}", st[0]);
    env.run(&["sync", "--once"]).ok();
    mailsync_testkit::wait_for_sink_message(
        servers.smtp_sink_dir(),
        Duration::from_secs(30),
        |m| m.header("Subject").as_deref() == Some(subject2.as_str()),
    )?;

    // A bad recipient is a usage error, nothing queued; a missing file too.
    env.run(&[
        "send",
        "--account",
        "c5",
        "--to",
        "not-an-address",
        "--subject",
        "x",
        "--body",
        "y",
    ])
    .fails(2);
    env.run(&[
        "send",
        "--account",
        "c5",
        "--to",
        "a@example.test",
        "--subject",
        "x",
        "--body",
        "y",
        "--attach",
        "/nonexistent/file.pdf",
    ])
    .fails(2);
    // Offline (no password): the message stays queued, exit 4 says why.
    let subject3 = unique("cli-nopw");
    let o = env.run_with(
        &[
            "send",
            "--account",
            "c5",
            "--to",
            "a@example.test",
            "--subject",
            &subject3,
            "--body",
            "y",
        ],
        |c| {
            c.env_remove(PW_VAR);
        },
    );
    assert_eq!(o.code, 4, "{o:#?}");
    assert!(o.stderr.contains("stays queued"), "{o:#?}");
    let st = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(st[0]["pending"], 1, "{}", st[0]);
    env.run(&["sync", "--once"]).ok();
    mailsync_testkit::wait_for_sink_message(
        servers.smtp_sink_dir(),
        Duration::from_secs(30),
        |m| m.header("Subject").as_deref() == Some(subject3.as_str()),
    )?;
    Ok(())
}

#[test]
fn daemon_picks_up_new_mail_and_stops_on_sigterm() -> R {
    let env = Env::new();
    let user = "cl4";
    env.add_jmap("c4", user).ok();
    let log = std::fs::File::create(env.path("daemon.log"))?;
    let mut child = common::Daemon(
        env.daemon(&["sync"])
            .env("MAILSYNC_POLL_INTERVAL", "1s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let first = wait_for(Duration::from_secs(30), || {
        let st = env.run(&["status", "--json"]).ok().json_lines();
        st[0]["last_sync"].is_string().then_some(())
    });
    assert!(first.is_some(), "first cycle within 30 s");

    let subject = unique("cli-daemon");
    deliver(user, vec![message(&subject, "pushed", None).0]);
    let seen = wait_for(Duration::from_secs(30), || env.email_by_subject(&subject));
    assert!(seen.is_some(), "the daemon synced the new mail within 30 s");

    // A change queued by another process is sent by the daemon's next poll.
    let id = seen.ok_or("email")?["id"].as_i64().ok_or("id")?.to_string();
    env.run(&["flag", &id, "--flagged"]).ok();
    let flushed = wait_for(Duration::from_secs(30), || {
        let st = env.run(&["status", "--json"]).ok().json_lines();
        (st[0]["pending"] == 0).then_some(())
    });
    assert!(flushed.is_some(), "the daemon flushed the queued change");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()?;
    assert!(status.success());
    let exit = wait_for(Duration::from_secs(20), || {
        child.0.try_wait().ok().flatten()
    });
    let Some(exit) = exit else {
        let _ = child.0.kill();
        return Err("the daemon did not stop within 20 s of SIGTERM".into());
    };
    let log = std::fs::read_to_string(env.path("daemon.log"))?;
    assert_eq!(exit.code(), Some(0), "clean exit: {log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database() -> R {
    let db = mailsync_store::testing::TempDb::postgres().await?;
    let url = db.url.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let env = Env::with_db(&url);
        let subject = unique("cli-pg");
        deliver("cl6", vec![message(&subject, "pg body", None).0]);
        env.add_jmap("c6", "cl6").ok();
        env.run(&["sync", "--once"]).ok();
        let e = env
            .email_by_subject(&subject)
            .ok_or("synced into PostgreSQL")?;
        let id = e["id"].as_i64().ok_or("id")?.to_string();
        env.run(&["flag", &id, "--seen", "--now"]).ok();
        let st = env.run(&["status", "--json"]).ok().json_lines();
        if st[0]["pending"] != 0 {
            return Err(format!("pending after --now: {}", st[0]));
        }
        let shown = env.run(&["show", &id]).ok();
        if !shown.stdout.contains("pg body") {
            return Err(format!("{shown:#?}"));
        }
        Ok(())
    })
    .await;
    db.cleanup().await?;
    res??;
    Ok(())
}

#[test]
fn database_location_verbosity_and_closed_pipe() -> R {
    let dir = tempfile::tempdir()?;
    // No --db, no MAILSYNC_DB: $XDG_DATA_HOME/mailsync/mailsync.db is created.
    let o = std::process::Command::new(common::BIN)
        .args(["account", "list"])
        .env_remove("MAILSYNC_DB")
        .env("XDG_DATA_HOME", dir.path().join("xdg"))
        .output()?;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(dir.path().join("xdg/mailsync/mailsync.db").exists());
    // Else $HOME/.local/share/mailsync/mailsync.db.
    let o = std::process::Command::new(common::BIN)
        .args(["status"])
        .env_remove("MAILSYNC_DB")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", dir.path().join("home"))
        .output()?;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        dir.path()
            .join("home/.local/share/mailsync/mailsync.db")
            .exists()
    );
    // MAILSYNC_DB is the default for --db.
    let url = format!("sqlite://{}/env.db?mode=rwc", dir.path().display());
    let o = std::process::Command::new(common::BIN)
        .args(["log"])
        .env("MAILSYNC_DB", &url)
        .output()?;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(dir.path().join("env.db").exists());

    // -v logs at info on stderr; the password never appears.
    let env = Env::new();
    env.add_jmap("c7", "cl7").ok();
    let o = env.run(&["-v", "sync", "--once"]).ok();
    assert!(o.stderr.contains("INFO"), "{o:#?}");
    assert!(!o.stderr.contains("testpw"), "{o:#?}");
    let quiet = env.run(&["sync", "--once"]).ok();
    assert!(quiet.stderr.is_empty(), "{quiet:#?}");

    // A closed stdout ends a listing quietly.
    deliver("cl7", vec![message(&unique("cli-pipe"), "x", None).0]);
    env.run(&["sync", "--once"]).ok();
    let mut child = env
        .command(&["emails", "--limit", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    Ok(())
}

#[test]
fn daemon_stops_on_sigint() -> R {
    let env = Env::new();
    env.add_jmap("c8", "cl8").ok();
    let log = std::fs::File::create(env.path("daemon.log"))?;
    let mut child = common::Daemon(
        env.daemon(&["sync", "--account", "c8"])
            .env("MAILSYNC_POLL_INTERVAL", "1s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let first = wait_for(Duration::from_secs(30), || {
        let st = env.run(&["status", "--json"]).ok().json_lines();
        st[0]["last_sync"].is_string().then_some(())
    });
    assert!(first.is_some(), "first cycle within 30 s");
    std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()?;
    let exit = wait_for(Duration::from_secs(20), || {
        child.0.try_wait().ok().flatten()
    });
    let Some(exit) = exit else {
        let _ = child.0.kill();
        return Err("the daemon did not stop within 20 s of SIGINT".into());
    };
    let log = std::fs::read_to_string(env.path("daemon.log"))?;
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("SIGINT"), "{log}");
    Ok(())
}
