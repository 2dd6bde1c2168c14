//! `mailsync mailbox create|rename|delete|subscribe|unsubscribe` on Dovecot: each change is on
//! the server (seen by another IMAP client) and in `mailsync mailboxes`; bad input (a name that
//! exists, an unknown mailbox, an unknown role, a role without CREATE-SPECIAL-USE) is a
//! one-line error that changes nothing. Offline, a change is queued (exit 0, `"state":
//! "queued"`) and shows in the database at once.

mod common;

use common::{Env, PW_VAR, R, unique};
use mailsync_testkit::{ImapClient, Servers};

fn listed(
    imap: &mut ImapClient,
    verb: &str,
    name: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    let r = imap.command(&format!("{verb} \"\" \"{name}\""))?;
    Ok(r.lines()
        .any(|l| l.starts_with("* LIST") || l.starts_with("* LSUB")))
}

#[test]
fn mailbox_commands_and_bad_input() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("cli15m").user;
    let imap_addr = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    let with_pw = |c: &mut std::process::Command| {
        c.env(PW_VAR, mailsync_testkit::DOVECOT_T_PASSWORD);
    };
    env.run(&[
        "account",
        "add",
        "m",
        "--imap",
        &imap_addr,
        "--security",
        "plain",
        "--user",
        &user,
        "--password-env",
        PW_VAR,
    ])
    .ok();
    env.run_with(&["sync", "--once"], with_pw).ok();
    let mut imap = ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
    )?;
    let names = || -> Vec<String> {
        env.run(&["mailboxes", "--json"])
            .ok()
            .json_lines()
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect()
    };

    let top = unique("cli15top");
    let out = env
        .run_with(
            &["mailbox", "create", "--account", "m", &top, "--json"],
            with_pw,
        )
        .ok();
    assert_eq!(out.json_lines()[0]["name"], top.as_str());
    assert!(listed(&mut imap, "LIST", &top)?);
    env.run_with(
        &[
            "mailbox",
            "create",
            "--account",
            "m",
            "Kind",
            "--parent",
            &top,
        ],
        with_pw,
    )
    .ok();
    let child = format!("{top}/Kind");
    assert!(listed(&mut imap, "LIST", &child)?);

    // Bad input: nothing changes.
    let before = names();
    env.run_with(&["mailbox", "create", "--account", "m", &top], with_pw)
        .fails(1);
    env.run_with(
        &["mailbox", "delete", "--account", "m", "no-such-box"],
        with_pw,
    )
    .fails(3);
    env.run_with(
        &[
            "mailbox",
            "create",
            "--account",
            "m",
            "x",
            "--role",
            "nonsense",
        ],
        with_pw,
    )
    .fails(2);
    env.run_with(
        &[
            "mailbox",
            "create",
            "--account",
            "m",
            "x",
            "--role",
            "archive",
        ],
        with_pw,
    )
    .fails(1);
    assert!(!listed(&mut imap, "LIST", "x")?);
    assert_eq!(names(), before);

    let moved = unique("cli15moved");
    env.run_with(
        &["mailbox", "rename", "--account", "m", &child, &moved],
        with_pw,
    )
    .ok();
    assert!(listed(&mut imap, "LIST", &moved)?);
    assert!(!listed(&mut imap, "LIST", &child)?);
    let after = names();
    assert!(after.contains(&moved) && !after.contains(&child));
    assert_eq!(after.iter().filter(|n| **n == moved).count(), 1);

    env.run_with(&["mailbox", "subscribe", "--account", "m", &moved], with_pw)
        .ok();
    assert!(listed(&mut imap, "LSUB", &moved)?);
    env.run_with(
        &["mailbox", "unsubscribe", "--account", "m", &moved],
        with_pw,
    )
    .ok();
    assert!(!listed(&mut imap, "LSUB", &moved)?);

    for n in [&moved, &top] {
        env.run_with(&["mailbox", "delete", "--account", "m", n], with_pw)
            .ok();
        assert!(!listed(&mut imap, "LIST", n)?);
    }
    let end = names();
    assert!(!end.contains(&moved) && !end.contains(&top));

    // Offline: queued, said so, exit 0; the mailbox is in the database at once.
    let proxy =
        mailsync_testkit::FaultProxy::start(servers.dovecot_host(), servers.dovecot_imap_port())?;
    let via = format!("{}:{}", proxy.host(), proxy.port());
    env.run_with(
        &[
            "account",
            "add",
            "off",
            "--imap",
            &via,
            "--security",
            "plain",
            "--user",
            &user,
            "--password-env",
            PW_VAR,
        ],
        with_pw,
    )
    .ok();
    proxy.set_down(true);
    let later = unique("cli15later");
    let out = env
        .run_with(
            &["mailbox", "create", "--account", "off", &later, "--json"],
            with_pw,
        )
        .ok();
    assert_eq!(out.json_lines()[0]["state"], "queued", "{}", out.stderr);
    assert!(out.stderr.contains("queued"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    let off: Vec<String> = env
        .run(&["mailboxes", "--account", "off", "--json"])
        .ok()
        .json_lines()
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(off, vec![later.clone()]);
    assert!(!listed(&mut imap, "LIST", &later)?);
    Ok(())
}
