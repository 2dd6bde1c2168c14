//! `mailsync watch --json` on the real Dovecot: another client delivers a message, flags it,
//! moves it to another mailbox and expunges it there; watch prints NDJSON events naming the
//! email (and mailbox) ids of each change, in that order, each within 2 s of the change.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, R, append, imap_add, message, unique, wait_for};
use mailsync_testkit::{DOVECOT_T_PASSWORD, ImapClient, Servers};
use serde_json::Value;

/// The events printed so far, each with when it was read.
type Seen = Arc<Mutex<Vec<(Instant, Value)>>>;

/// Waits (at most 10 s) for an event after index `from` that `f` accepts; its index and time.
fn next_event(
    seen: &Seen,
    from: usize,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> (usize, Instant) {
    wait_for(Duration::from_secs(10), || {
        let v = seen.lock().expect("lock");
        v.iter()
            .enumerate()
            .skip(from)
            .find(|(_, (_, e))| f(e))
            .map(|(i, (t, _))| (i, *t))
    })
    .unwrap_or_else(|| {
        let v = seen.lock().expect("lock");
        let lines: Vec<String> = v.iter().map(|(_, e)| e.to_string()).collect();
        panic!("no {what} event; watch printed:\n{}", lines.join("\n"))
    })
}

/// Whether `ev` is of type `ty` and names email `id` (in mailbox `mailbox`, when given).
fn names(ev: &Value, ty: &str, id: i64, mailbox: Option<i64>) -> bool {
    ev["type"] == ty
        && ev["emails"].as_array().is_some_and(|list| {
            list.iter().any(|e| {
                e["id"].as_i64() == Some(id)
                    && mailbox.is_none_or(|m| {
                        e["mailboxes"]
                            .as_array()
                            .is_some_and(|b| b.iter().any(|x| x.as_i64() == Some(m)))
                    })
            })
        })
}

fn mailbox_id(env: &Env, name: &str) -> i64 {
    env.run(&["mailboxes", "--json"])
        .ok()
        .json_lines()
        .into_iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["id"].as_i64())
        .unwrap_or_else(|| panic!("mailbox {name} synced"))
}

#[test]
fn watch_json_reports_ids_of_a_delivery_flag_move_and_expunge_in_order() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i14watch").user;
    let login = || {
        ImapClient::login(
            servers.dovecot_host(),
            servers.dovecot_imap_port(),
            &user,
            DOVECOT_T_PASSWORD,
        )
    };
    let mut other = login()?;
    other.create_mailbox("Archive")?;
    let env = Env::new();
    imap_add(&env, &servers, "w", &user, &[]).ok();
    env.run(&["sync", "--once"]).ok();
    let inbox = mailbox_id(&env, "INBOX");
    let archive = mailbox_id(&env, "Archive");

    let mut child = common::Daemon(
        env.daemon(&["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("watch stdout")?;
    let seen: Seen = Arc::default();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line: {line:?}: {e}"));
                assert!(v["type"].is_string(), "every event has a type: {line}");
                seen.lock().expect("lock").push((Instant::now(), v));
            }
        })
    };
    let (mut at, _) = next_event(&seen, 0, "first cycle_finished", |e| {
        e["type"] == "cycle_finished"
    });
    // Let the worker settle into its wait (NOTIFY/IDLE).
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();

    // 1. Delivered.
    let subject = unique("i14w");
    let t = Instant::now();
    append(
        &servers,
        &user,
        "INBOX",
        vec![message(&subject, "hello", None).0],
    );
    let created = wait_for(Duration::from_secs(10), || {
        env.email_by_subject(&subject)
            .and_then(|e| e["id"].as_i64())
    })
    .ok_or("the delivery synced")?;
    let (i, when) = next_event(&seen, at, "emails_created", |e| {
        names(e, "emails_created", created, Some(inbox))
    });
    latencies.push(("delivered", when - t));
    at = i + 1;

    // 2. Flagged by another client.
    other.select("INBOX")?;
    let t = Instant::now();
    other.command("UID STORE 1 +FLAGS (\\Flagged)")?;
    let (i, when) = next_event(&seen, at, "emails_updated (flag)", |e| {
        names(e, "emails_updated", created, Some(inbox))
    });
    latencies.push(("flagged", when - t));
    at = i + 1;

    // 3. Moved to Archive by another client: the copy in INBOX goes, one in Archive appears
    // (IMAP gives it a new identity; the engine may keep the row or make a new one).
    let t = Instant::now();
    other.command("UID MOVE 1 Archive")?;
    let (i, when) = next_event(&seen, at, "an event with the Archive copy", |e| {
        (e["type"] == "emails_created" || e["type"] == "emails_updated")
            && e["emails"].as_array().is_some_and(|l| {
                l.iter().any(|x| {
                    x["mailboxes"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|m| m.as_i64() == Some(archive)))
                })
            })
    });
    latencies.push(("moved", when - t));
    let moved = env
        .email_by_subject(&subject)
        .and_then(|e| e["id"].as_i64())
        .ok_or("the moved email is in the database")?;
    {
        let v = seen.lock().expect("lock");
        assert!(
            names(&v[i].1, "emails_created", moved, Some(archive))
                || names(&v[i].1, "emails_updated", moved, Some(archive)),
            "the move event names the email now in Archive ({moved}): {}",
            v[i].1
        );
    }
    if moved != created {
        // A new row: the old one must be reported removed from INBOX, in this cycle.
        next_event(&seen, at, "emails_removed (moved away)", |e| {
            names(e, "emails_removed", created, Some(inbox))
        });
    }
    at = i + 1;

    // 4. Expunged in Archive by another client.
    other.select("Archive")?;
    let t = Instant::now();
    other.command("UID STORE 1:* +FLAGS (\\Deleted)")?;
    other.command("EXPUNGE")?;
    let (_, when) = next_event(&seen, at, "emails_removed (expunge)", |e| {
        names(e, "emails_removed", moved, Some(archive))
    });
    latencies.push(("expunged", when - t));
    other.logout();

    for (_, e) in seen.lock().expect("lock").iter() {
        println!("{e}");
    }
    for (what, d) in &latencies {
        println!("watch: {what} -> event after {d:?}");
        assert!(*d < Duration::from_secs(2), "{what} took {d:?}");
    }
    // SIGTERM ends it cleanly.
    let pid = child.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let status = child.0.wait()?;
    assert_eq!(status.code(), Some(0), "watch stops cleanly on SIGTERM");
    reader.join().map_err(|_| "reader panicked")?;
    Ok(())
}

/// With a daemon syncing the account, watch cannot see its events: it says so (a
/// `lease_held` event naming the owner) instead of printing nothing.
#[test]
fn watch_beside_a_daemon_says_who_holds_the_account() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i14held").user;
    let env = Env::new();
    imap_add(&env, &servers, "h", &user, &[]).ok();
    let _daemon = common::Daemon(
        env.daemon(&["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(Duration::from_secs(20), || {
        (!env.run(&["log", "--json"]).ok().json_lines().is_empty()).then_some(())
    })
    .ok_or("the daemon's first cycle")?;
    let mut watch = common::Daemon(
        env.daemon(&["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let stdout = watch.0.stdout.take().ok_or("watch stdout")?;
    let first = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default()
    });
    let line = wait_for(Duration::from_secs(10), || {
        first.is_finished().then_some(())
    })
    .map(|()| first.join().unwrap_or_default())
    .ok_or("watch printed nothing within 10 s")?;
    let v: Value = serde_json::from_str(&line)?;
    assert_eq!(v["type"], "lease_held", "{line}");
    assert_eq!(v["account"], "h");
    assert!(v["owner"].as_str().is_some_and(|o| !o.is_empty()), "{line}");
    Ok(())
}
