//! `mailsync search --server` end to end on the three real servers: Dovecot over IMAP
//! (`UID SEARCH`), Cyrus over JMAP (`Email/query` + `SearchSnippet/get`) and Cyrus over IMAP.
//! Bodies are not cached (`--bodies none`): a body word is found only on the server, on the
//! right row, marked `server`; a subject word is found by both and listed once, marked `both`;
//! mail that arrived after the last sync is found on the server and synced so it gets an id;
//! bad queries (and an `in:` mailbox the account lacks) are one-line usage errors.

mod common;

use std::time::Duration;

use common::{Env, PW_VAR, R, append, deliver, imap_add, unique, wait_for};
use serde_json::Value;

/// A word of letters and digits only, unique to this run.
fn word(tag: &str) -> String {
    unique(tag)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn raw(subject: &str, body: &str) -> Vec<u8> {
    let mid = format!("{}@i16s.test", unique("m"));
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "From: Ada Byron <ada@example.test>\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn search(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    env.run(&all).ok().json_lines()
}

/// Server search on a search index that may lag the delivery (Cyrus/Xapian): polled until
/// it finds `n` results, at most 30 s.
fn search_until(env: &Env, args: &[&str], n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(30), || {
        let hits = search(env, args);
        (hits.len() >= n).then_some(hits)
    })
    .unwrap_or_else(|| search(env, args))
}

/// The checks every protocol must pass, on an account synced without bodies holding
/// [`first_two`]; `deliver_late` puts a message on the server behind the sync's back.
fn check(env: &Env, tag: &str, secret: &str, deliver_late: &dyn Fn(Vec<u8>)) {
    let memo_subject = format!("Memo {tag}");
    // The body word: not in the local index (no bodies cached)...
    assert!(search(env, &[secret]).is_empty(), "no cached body has it");
    // ...found by the server, on the synced row, marked server.
    let hits = search_until(env, &["--server", secret], 1);
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let memo = env.email_by_subject(&memo_subject).expect("memo synced");
    assert_eq!(hits[0]["id"], memo["id"], "{hits:#?}");
    assert_eq!(hits[0]["origin"], "server");
    assert_eq!(hits[0]["subject"], memo_subject.as_str());
    assert!(
        hits[0]["from"]
            .as_str()
            .unwrap_or("")
            .contains("ada@example.test"),
        "{hits:#?}"
    );
    assert!(hits[0]["date"].is_string(), "{hits:#?}");
    let boxes = hits[0]["mailboxes"].as_array().cloned().unwrap_or_default();
    assert_eq!(boxes.len(), 1, "{hits:#?}");
    assert!(
        boxes[0]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case("inbox")
    );

    // The tag is in both subjects: local and server find both, each listed once as both.
    let local = search(env, &[tag]);
    assert_eq!(local.len(), 2, "{local:#?}");
    assert!(local.iter().all(|h| h["origin"] == "local"));
    let merged = search_until(env, &["--server", tag], 2);
    assert_eq!(merged.len(), 2, "no duplicates: {merged:#?}");
    let mut ids: Vec<i64> = merged.iter().filter_map(|h| h["id"].as_i64()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "two rows: {merged:#?}");
    assert!(merged.iter().all(|h| h["origin"] == "both"), "{merged:#?}");
    // A body word and a subject word of the same message: only the server can tell.
    let q = format!("{secret} subject:memo");
    let one = search_until(env, &["--server", &q], 1);
    assert_eq!(one.len(), 1, "{one:#?}");
    assert_eq!(one[0]["id"], memo["id"]);
    // A word that is not ASCII (IMAP: CHARSET UTF-8 and a literal).
    let q = format!("grüße {tag}");
    let utf8 = search_until(env, &["--server", &q], 1);
    assert_eq!(utf8.len(), 1, "{utf8:#?}");
    assert_eq!(utf8[0]["id"], memo["id"]);
    // Filters the server applies: memo is unread, in the inbox, has no attachment.
    let q = format!("{secret} is:flagged");
    assert!(search(env, &["--server", &q]).is_empty());
    let q = format!("{secret} is:unread in:inbox");
    assert_eq!(search(env, &["--server", &q]).len(), 1);
    let q = format!("{secret} has:attachment");
    assert!(search(env, &["--server", &q]).is_empty());
    // has:attachment (IMAP: no SEARCH key, BODYSTRUCTURE read): only the note.
    let q = format!("{tag} has:attachment");
    let att = search(env, &["--server", &q]);
    assert_eq!(att.len(), 1, "{att:#?}");
    assert_eq!(att[0]["subject"], format!("Note {tag}"));
    assert_eq!(att[0]["origin"], "both");

    // Mail that arrived after the sync: found on the server, synced by the search so that
    // it has an id to open.
    let late_subject = format!("Late {tag}");
    deliver_late(raw(&late_subject, &format!("the {secret} again")));
    let hits = search_until(env, &["--server", secret], 2);
    assert_eq!(hits.len(), 2, "{hits:#?}");
    let late = hits
        .iter()
        .find(|h| h["subject"] == late_subject.as_str())
        .expect("the late message");
    assert_eq!(late["origin"], "server", "{hits:#?}");
    let stored = env
        .email_by_subject(&late_subject)
        .expect("the search synced it");
    assert_eq!(late["id"], stored["id"], "{hits:#?}");
    let shown = env.run(&["show", &stored["id"].to_string()]).ok();
    assert!(shown.stdout.contains(secret), "{shown:#?}");

    // The plain listing names the origin.
    let text = env.run(&["search", "--server", tag]).ok().stdout;
    assert!(
        text.contains("both") && text.contains(&memo_subject),
        "{text}"
    );

    // Bad queries: one line, usage exit code, before any server is asked.
    env.run(&["search", "--server", "foo:bar"]).fails(2);
    env.run(&["search", "--server", "\"open"]).fails(2);
    let q = format!("{secret} in:nosuchbox");
    let bad = env
        .run(&["search", "--server", "--account", "a", &q])
        .fails(2);
    assert!(bad.stderr.contains("nosuchbox"), "{bad:#?}");
}

/// Memo (body word `secret`) and note (without it, with an attachment).
fn first_two(tag: &str, secret: &str) -> Vec<Vec<u8>> {
    let (note, _) = common::message(
        &format!("Note {tag}"),
        "nothing to see here",
        Some(("list.txt", "eggs and milk")),
    );
    vec![
        raw(
            &format!("Memo {tag}"),
            &format!("the {secret} is under the mat. Grüße"),
        ),
        note,
    ]
}

#[test]
fn dovecot_imap_server_search() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let user = unique("t_i16s");
    imap_add(&env, &servers, "a", &user, &["--bodies", "none"]).ok();
    let tag = word("i16s");
    let secret = word("vault");
    append(&servers, &user, "INBOX", first_two(&tag, &secret));
    env.run(&["sync", "--once"]).ok();
    check(&env, &tag, &secret, &|m| {
        append(&servers, &user, "INBOX", vec![m]);
    });
    Ok(())
}

#[test]
fn cyrus_jmap_server_search() -> R {
    let env = Env::new();
    let user = mailsync_testkit::accounts::THREADS.user(2);
    env.add_jmap("a", &user).ok();
    env.run(&["account", "edit", "a", "--bodies", "none"]).ok();
    let tag = word("i16j");
    let secret = word("vault");
    deliver(&user, first_two(&tag, &secret));
    env.run(&["sync", "--once"]).ok();
    check(&env, &tag, &secret, &|m| deliver(&user, vec![m]));
    // JMAP gives snippets: the body word, without markup.
    let hits = search(&env, &["--server", &format!("{secret} subject:memo")]);
    let snippet = hits[0]["snippet"].as_str().unwrap_or_default();
    assert!(
        snippet.contains(&secret) && !snippet.contains("<mark>"),
        "{hits:#?}"
    );
    Ok(())
}

#[test]
fn cyrus_imap_server_search() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let user = mailsync_testkit::accounts::THREADS.user(3);
    let imap = format!("{}:{}", servers.cyrus_host(), servers.cyrus_imap_port());
    env.run(&[
        "account",
        "add",
        "a",
        "--imap",
        &imap,
        "--security",
        "plain",
        "--user",
        &user,
        "--password-env",
        PW_VAR,
        "--email",
        &format!("{user}@example.test"),
        "--bodies",
        "none",
    ])
    .ok();
    let tag = word("i16c");
    let secret = word("vault");
    deliver(&user, first_two(&tag, &secret));
    env.run(&["sync", "--once"]).ok();
    check(&env, &tag, &secret, &|m| deliver(&user, vec![m]));
    Ok(())
}
