//! `mailsync account add --jmap` discovers the JMAP Session on the real Cyrus: from its
//! `/.well-known/jmap` URL (a redirect to the Session), from a URL without a path, or from the
//! Session URL itself; the account stores the Session URL it was finally served from. Plain
//! http stays refused to a non-loopback host.

mod common;

use common::{Env, PW_VAR, R};

fn add(env: &Env, name: &str, jmap: &str) -> common::Out {
    env.run(&[
        "account",
        "add",
        name,
        "--jmap",
        jmap,
        "--user",
        "cl7",
        "--password-env",
        PW_VAR,
        "--email",
        "cl7@example.test",
    ])
}

#[test]
fn account_add_discovers_the_session() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let session = servers.jmap_session_url();
    let base = session
        .find("/jmap")
        .map(|i| &session[..i])
        .ok_or("session URL has /jmap")?
        .to_owned();
    for (name, given) in [
        ("wellknown", servers.jmap_well_known().to_owned()),
        ("base", base.clone()),
        ("session", session.to_owned()),
    ] {
        let o = add(&env, name, &given).ok();
        assert!(o.stdout.contains("added"), "{given}: {o:#?}");
        let list = env.run(&["account", "list"]).ok();
        let line = list
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or("listed")?
            .to_owned();
        assert!(
            line.trim_end()
                .trim_end_matches('/')
                .ends_with(session.trim_end_matches('/')),
            "{given} resolved to the Session URL: {line}"
        );
        env.run(&["sync", "--once", "--account", name]).ok();
    }
    // The same name again: refused before any connection (exit 1).
    add(&env, "session", session).fails(1);
    // No --email: the sender comes from the server's identities; Cyrus' identity has no
    // address and the login is not one, so the user is asked for --email (never cl7@host).
    let o = env
        .run(&[
            "account",
            "add",
            "noaddr",
            "--jmap",
            session,
            "--user",
            "cl7",
            "--password-env",
            PW_VAR,
        ])
        .fails(2);
    assert!(o.stderr.contains("--email"), "{o:#?}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o:#?}");
    // Discovery errors keep their exit codes: a refused port is unreachable (5), a wrong
    // password needs the user (4) and stops the search.
    add(&env, "closed", "http://127.0.0.1:1").fails(5);
    let o = env
        .run(&[
            "account",
            "add",
            "badpw",
            "--jmap",
            servers.jmap_well_known(),
            "--user",
            "cl7",
            "--password-cmd",
            "printf %s wrongpw-xyz",
        ])
        .fails(4);
    assert!(!o.stderr.contains("wrongpw-xyz"), "{o:#?}");
    // Plain http to a non-loopback host is refused before any connection (usage error).
    let o = add(&env, "far", "http://mail.example.invalid").fails(2);
    assert!(o.stderr.contains("plain http"), "{o:#?}");
    Ok(())
}
