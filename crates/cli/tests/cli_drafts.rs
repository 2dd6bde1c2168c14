//! `mailsync draft save|list|delete` and `send --draft` end to end on Dovecot and the SMTP
//! sink: saves queue offline and merge, list shows the draft, sending it delivers once and
//! leaves no draft; bad input (unknown id, a non-draft) is a one-line error that changes nothing.

mod common;

use std::time::Duration;

use common::{Env, PW_VAR, R, unique, wait_for};
use mailsync_testkit::Servers;

#[test]
fn draft_save_update_list_send_and_errors() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("cli15d").user;
    let (imap, smtp) = (
        format!("127.0.0.1:{}", servers.dovecot_imap_port()),
        format!("127.0.0.1:{}", servers.smtp_port()),
    );
    env.run_with(
        &[
            "account",
            "add",
            "d",
            "--imap",
            &imap,
            "--security",
            "plain",
            "--smtp",
            &smtp,
            "--smtp-security",
            "plain",
            "--user",
            &user,
            "--password-env",
            PW_VAR,
        ],
        |c| {
            c.env(PW_VAR, mailsync_testkit::DOVECOT_T_PASSWORD);
        },
    )
    .ok();
    let with_pw = |c: &mut std::process::Command| {
        c.env(PW_VAR, mailsync_testkit::DOVECOT_T_PASSWORD);
    };
    env.run_with(&["sync", "--once"], with_pw).ok();

    // Saved and updated without a sync: one queued change, one draft.
    let subject = unique("cli-draft");
    let out = env
        .run(&[
            "draft",
            "save",
            "--account",
            "d",
            "--to",
            "bob@example.test",
            "--subject",
            &subject,
            "--body",
            "first version",
            "--json",
        ])
        .ok();
    let id = out.json_lines()[0]["id"].as_i64().ok_or("id")?;
    let id_s = id.to_string();
    let out = env
        .run(&[
            "draft",
            "save",
            "--account",
            "d",
            "--draft",
            &id_s,
            "--body",
            "second version",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), id_s);
    let listed = env.run(&["draft", "list", "--json"]).ok().json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"].as_i64(), Some(id));
    assert_eq!(listed[0]["subject"].as_str(), Some(subject.as_str()));
    let status = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(status[0]["pending"].as_u64(), Some(1), "{status:?}");

    // Bad input: one line, exit 3, nothing changed.
    env.run(&["draft", "delete", "999999"]).fails(3);
    env.run(&["send", "--draft", "999999"]).fails(3);
    env.run(&[
        "draft",
        "save",
        "--account",
        "d",
        "--draft",
        "999999",
        "--body",
        "x",
    ])
    .fails(3);
    env.run(&["draft", "save", "--account", "nope", "--body", "x"])
        .fails(3);
    assert_eq!(
        env.run(&["draft", "list", "--json"])
            .ok()
            .json_lines()
            .len(),
        1
    );

    // Sent: delivered once with the latest text, no draft left.
    env.run_with(&["send", "--draft", &id_s], with_pw).ok();
    let got = wait_for(Duration::from_secs(15), || {
        let m: Vec<_> = mailsync_testkit::sink_messages(servers.smtp_sink_dir())
            .ok()?
            .into_iter()
            .filter(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
            .collect();
        (!m.is_empty()).then_some(m)
    })
    .ok_or("not delivered")?;
    std::thread::sleep(Duration::from_millis(500));
    let n = mailsync_testkit::sink_messages(servers.smtp_sink_dir())?
        .into_iter()
        .filter(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
        .count();
    assert_eq!(n, 1, "delivered once");
    assert!(String::from_utf8_lossy(&got[0].raw).contains("second version"));
    env.run_with(&["sync", "--once"], with_pw).ok();
    assert!(
        env.run(&["draft", "list", "--json"])
            .ok()
            .json_lines()
            .is_empty()
    );
    let status = env.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(status[0]["pending"].as_u64(), Some(0), "{status:?}");
    Ok(())
}
