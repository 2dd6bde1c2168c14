//! `mailsync threads`, `emails --thread` and `search` end to end: IMAP on Dovecot (threads
//! computed locally, a reply synced before its parent) and JMAP on Cyrus (the server's
//! thread ids; pool `th`), bodies cached and searched, bad queries as usage errors.

mod common;

use common::{Env, R, append, deliver, imap_add, unique};
use serde_json::Value;

/// A word of letters and digits only, unique to this run (search terms are such words).
fn word(tag: &str) -> String {
    unique(tag)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// A message with explicit threading headers.
fn raw(mid: &str, subject: &str, reply_to: Option<&str>, body: &str) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    let refs = reply_to
        .map(|p| format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: Zoe Quill <zoe@example.test>\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{mid}>\r\n{refs}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn thread_with(env: &Env, subject: &str) -> Option<Value> {
    env.run(&["threads", "--json", "--limit", "1000"])
        .ok()
        .json_lines()
        .into_iter()
        .find(|t| t["subject"] == subject)
}

/// What both protocols must show once parent, reply and an unrelated message are synced.
fn check_threads_and_search(env: &Env, tag: &str, zep: &str) {
    let plan = thread_with(env, &format!("Plan {tag}")).expect("the Plan thread");
    assert_eq!(plan["count"], 2, "{plan}");
    assert_eq!(plan["unread"], 2, "{plan}");
    assert_eq!(
        plan["participants"][0], "Zoe Quill <zoe@example.test>",
        "{plan}"
    );
    let other = thread_with(env, &format!("Unrelated {tag}")).expect("the other thread");
    assert_eq!(other["count"], 1);
    assert_ne!(other["thread"], plan["thread"]);
    let id = plan["thread"].as_str().expect("thread id");
    let msgs = env
        .run(&["emails", "--thread", id, "--json"])
        .ok()
        .json_lines();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .all(|m| m["subject"].as_str().unwrap_or("").contains(tag))
    );
    // The body word is found (bodies cached), with a snippet and the local origin.
    let hits = env.run(&["search", zep, "--json"]).ok().json_lines();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["origin"], "local");
    assert_eq!(hits[0]["subject"], format!("Plan {tag}"));
    assert!(
        hits[0]["snippet"].as_str().unwrap_or("").contains(zep),
        "{hits:?}"
    );
    // A phrase over the subject, a field, a filter, a limit.
    let q = format!("\"plan {tag}\"");
    assert_eq!(
        env.run(&["search", &q, "--json"]).ok().json_lines().len(),
        2
    );
    let q = format!("{tag} from:quill");
    assert_eq!(
        env.run(&["search", &q, "--json"]).ok().json_lines().len(),
        3
    );
    let q = format!("subject:unrelated {tag} in:inbox is:unread");
    assert_eq!(
        env.run(&["search", &q, "--json"]).ok().json_lines().len(),
        1
    );
    let q = tag.to_string();
    let limited = env.run(&["search", &q, "--limit", "1", "--json"]).ok();
    assert_eq!(limited.json_lines().len(), 1);
    assert!(
        env.run(&["search", &q])
            .ok()
            .stdout
            .contains(&format!("Plan {tag}"))
    );
    // Bad queries: one line, usage exit code.
    let bad = env.run(&["search", "from:"]).fails(2);
    assert!(bad.stderr.contains("invalid search query"), "{bad:?}");
    env.run(&["search", "before:someday"]).fails(2);
    env.run(&["search", "\"open"]).fails(2);
}

#[test]
fn imap_local_threads_and_search() -> R {
    let env = Env::new();
    let servers = mailsync_testkit::Servers::load()?;
    let user = unique("t_i16");
    imap_add(&env, &servers, "dv", &user, &["--bodies", "all"]).ok();
    let tag = word("i16");
    let zep = word("zeppelin");
    let parent = format!("p{tag}@i16.test");
    // The reply arrives (and is synced) before its parent.
    append(
        &servers,
        &user,
        "INBOX",
        vec![raw(
            &format!("r{tag}@i16.test"),
            &format!("Re: Plan {tag}"),
            Some(&parent),
            "agreed",
        )],
    );
    env.run(&["sync", "--once"]).ok();
    let early = thread_with(&env, &format!("Re: Plan {tag}")).expect("reply alone");
    assert_eq!(early["count"], 1);
    append(
        &servers,
        &user,
        "INBOX",
        vec![
            raw(
                &parent,
                &format!("Plan {tag}"),
                None,
                &format!("the {zep} departs at noon"),
            ),
            raw(
                &format!("u{tag}@i16.test"),
                &format!("Unrelated {tag}"),
                None,
                "nothing",
            ),
        ],
    );
    env.run(&["sync", "--once"]).ok();
    check_threads_and_search(&env, &tag, &zep);
    let plan = thread_with(&env, &format!("Plan {tag}")).expect("plan");
    assert_eq!(
        plan["thread"], early["thread"],
        "the parent joined the reply's thread"
    );
    // A local change is seen by the search at once.
    let id = env.run(&["search", &zep, "--json"]).ok().json_lines()[0]["id"].to_string();
    env.run(&["flag", &id, "--seen"]).ok();
    let q = format!("{zep} is:unread");
    assert!(
        env.run(&["search", &q, "--json"])
            .ok()
            .json_lines()
            .is_empty()
    );
    Ok(())
}

#[test]
fn jmap_server_threads_and_search() -> R {
    let env = Env::new();
    let user = mailsync_testkit::accounts::THREADS.user(1);
    env.add_jmap("cy", &user).ok();
    env.run(&["sync", "--once", "--bodies", "all"]).ok();
    let tag = word("i16");
    let zep = word("zeppelin");
    let parent = format!("p{tag}@i16.test");
    deliver(
        &user,
        vec![raw(
            &parent,
            &format!("Plan {tag}"),
            None,
            &format!("the {zep} departs at noon"),
        )],
    );
    deliver(
        &user,
        vec![
            raw(
                &format!("r{tag}@i16.test"),
                &format!("Re: Plan {tag}"),
                Some(&parent),
                "agreed",
            ),
            raw(
                &format!("u{tag}@i16.test"),
                &format!("Unrelated {tag}"),
                None,
                "nothing",
            ),
        ],
    );
    env.run(&["sync", "--once"]).ok();
    check_threads_and_search(&env, &tag, &zep);
    let plan = thread_with(&env, &format!("Plan {tag}")).expect("plan");
    assert!(
        !plan["thread"].as_str().unwrap_or("L").starts_with('L'),
        "the server's id: {plan}"
    );
    Ok(())
}
