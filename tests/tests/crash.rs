//! "Kill at any moment, restart, converge": a sync run as a separate process is killed with
//! SIGKILL at later and later moments (mid-batch, mid-transaction) until a run completes; the
//! database must then equal the server exactly, with no duplicates and a checkpoint that never
//! runs ahead of the data, and a search index with one document per email, with its body.
//! Once over IMAP (Dovecot), once over JMAP (Cyrus).

use std::process::Command;
use std::time::{Duration, Instant};

use mailsync_store::accounts::{self, Endpoint, NewAccount};
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, BodyPolicy, Role, SecretRef, Security, emails, mailboxes};
use mailsync_testkit::{Generator, Profile, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

const N: usize = 6000;

/// Starts one sync cycle of `account` in a separate process (the `crash_sync` helper binary).
fn spawn_sync(
    db_url: &str,
    account: mailsync_store::AccountId,
) -> std::io::Result<std::process::Child> {
    Command::new(env!("CARGO_BIN_EXE_crash_sync"))
        .arg(db_url)
        .arg(account.0.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
}

fn server_uids(servers: &Servers, user: &str) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let out = servers.doveadm(&["fetch", "-u", user, "uid", "mailbox", "INBOX", "all"])?;
    let mut v: Vec<i64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid: "))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_converge() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("crash");
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        Generator::with_profile(Profile::small(), 21).messages(0..N),
        1000,
    )?;
    let db = TempDb::sqlite().await?;
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: "crash".into(),
            kind: AccountKind::Imap,
            email: format!("{}@example.test", user.user),
            display_name: None,
            username: user.user.clone(),
            secret_ref: SecretRef::Command(format!("printf %s {}", user.password)),
            imap: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: servers.dovecot_imap_port(),
                security: Security::Plain,
            }),
            smtp: None,
            jmap_session_url: None,
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::All,
        },
    )
    .await?;
    let run = || spawn_sync(&db.url, account.id);
    // Kill at later and later moments (connecting, listing, each batch) until a run finishes
    // on its own; each run resumes from what the previous killed runs committed.
    let mut killed_after_progress = 0;
    for k in 1..=24u64 {
        let delay_ms = 250 * k;
        let mut child = run()?;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let status = child.try_wait()?;
        if status.is_none() {
            child.kill()?;
        }
        child.wait()?;
        // Only a run that completed counts as finished; one that stopped with an error (e.g.
        // the database still busy after the previous kill) is just one more interrupted run.
        let finished = status.is_some_and(|s| s.success());
        if let Some(s) = status.filter(|s| !s.success()) {
            println!("a run stopped on its own with {s}");
        }
        let c = db.store.conn();
        let stored = emails::count(c, account.id).await?;
        // The checkpoint never runs ahead of the data it covers.
        if let Some(inbox) = mailboxes::find_by_role(c, account.id, Role::Inbox).await?
            && let Some(cp) =
                checkpoints::get(c, account.id, &Scope::imap_mailbox(inbox.id)).await?
        {
            let max_local = emails::max_uid(c, inbox.id).await?.unwrap_or(0);
            assert!(
                cp.last_uid.unwrap_or(0) <= max_local,
                "checkpoint last_uid {:?} ahead of stored max uid {max_local}",
                cp.last_uid
            );
        }
        if stored > 0 && (stored as usize) < N {
            killed_after_progress += 1;
        }
        println!("killed after {delay_ms} ms (finished: {finished}): {stored} emails stored");
        if finished {
            break;
        }
    }
    // A complete run converges to the server.
    let t0 = Instant::now();
    let status = run()?.wait()?;
    assert!(status.success(), "final run failed: {status}");
    println!("final run: {:?}", t0.elapsed());
    let c = db.store.conn();
    let inbox = mailboxes::find_by_role(c, account.id, Role::Inbox)
        .await?
        .ok_or("inbox")?;
    let local = emails::uids_in_mailbox(c, inbox.id).await?;
    assert_eq!(
        local,
        server_uids(&servers, &user.user)?,
        "local UIDs equal the server's"
    );
    assert_eq!(
        emails::count(c, account.id).await?,
        N as u64,
        "no duplicates"
    );
    assert!(
        killed_after_progress >= 1,
        "at least one kill landed mid-sync"
    );
    search_index_matches(&db.store, true).await?;
    db.cleanup().await?;
    Ok(())
}

/// The search index (SQLite: the companion file the killed runs indexed beside their writes)
/// holds exactly one document per email, each with its body: for every email with a body,
/// the index finds that email by the longest word of its body, in the body column (`bodies`:
/// the account's policy stores bodies, so some must have been checked).
async fn search_index_matches(store: &mailsync_store::Store, bodies: bool) -> R {
    use mailsync_store::ConnectionTrait as _;
    let one = |sql: String| sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, sql);
    let idx = store.search_conn();
    let n = |r: Option<sea_orm::QueryResult>| -> Result<i64, Box<dyn std::error::Error>> {
        Ok(r.ok_or("no row")?.try_get::<i64>("", "n")?)
    };
    let docs = n(idx
        .query_one_raw(one("SELECT count(*) AS n FROM email_fts_docsize".into()))
        .await?)?;
    let orphans = n(idx
        .query_one_raw(one("SELECT count(*) AS n FROM email_fts_docsize d \
             WHERE NOT EXISTS (SELECT 1 FROM mail.emails e WHERE e.id = d.id)"
            .into()))
        .await?)?;
    let emails = n(store
        .conn()
        .query_one_raw(one("SELECT count(*) AS n FROM emails".into()))
        .await?)?;
    assert_eq!((docs, orphans), (emails, 0), "one index document per email");
    let rows = store
        .conn()
        .query_all_raw(one(
            "SELECT email_id, text_body FROM email_bodies WHERE text_body IS NOT NULL".into(),
        ))
        .await?;
    let mut checked = 0;
    for b in &rows {
        let id = b.try_get::<i64>("", "email_id")?;
        let text = b.try_get::<String>("", "text_body")?;
        let Some(word) = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() >= 4)
            .max_by_key(|w| w.len())
        else {
            continue;
        };
        let hit = idx
            .query_one_raw(one(format!(
                "SELECT count(*) AS n FROM email_fts WHERE email_fts MATCH 'body : \"{}\"' \
                 AND rowid = {id}",
                word.to_lowercase()
            )))
            .await?;
        assert_eq!(n(hit)?, 1, "email {id} indexed with its body ({word:?})");
        checked += 1;
    }
    assert!(checked > 0 || !bodies, "bodies were checked");
    println!("search index: {docs} documents, {checked} bodies found by a word");
    Ok(())
}

async fn jmap_server_ids(
    servers: &Servers,
    user: &mailsync_testkit::Account,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use mailsync_jmap_client::{Client, Credentials, Email, Query};
    let c = Client::builder()
        .credentials(Credentials::basic(&user.user, &user.password))
        .connect(servers.jmap_session_url())
        .await?;
    let account = c.mail_account_id()?;
    let mut out = Vec::new();
    loop {
        let resp = c
            .call(
                Query::<Email>::new(&account)
                    .position(out.len() as i64)
                    .limit(1000),
            )
            .await?;
        if resp.ids.is_empty() {
            break;
        }
        out.extend(resp.ids.into_iter().map(|i| i.as_str().to_owned()));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_jmap_syncs_converge() -> R {
    let servers = Servers::load()?;
    let user = mailsync_testkit::Account::cyrus_pool(mailsync_testkit::accounts::ENGINE, 4);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(5);
    imap_append_bulk(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        Generator::with_profile(Profile::small(), seed).messages(0..2000),
        1000,
    )?;
    let db = TempDb::sqlite().await?;
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: "crash-jmap".into(),
            kind: AccountKind::Jmap,
            email: format!("{}@example.test", user.user),
            display_name: None,
            username: user.user.clone(),
            secret_ref: SecretRef::Command(format!("printf %s {}", user.password)),
            imap: None,
            smtp: None,
            jmap_session_url: Some(servers.jmap_session_url().into()),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?;
    let run = || spawn_sync(&db.url, account.id);
    for k in 1..=40u64 {
        let mut child = run()?;
        tokio::time::sleep(Duration::from_millis(150 * k)).await;
        let status = child.try_wait()?;
        if status.is_none() {
            child.kill()?;
        }
        child.wait()?;
        // Only a run that completed counts as finished; one that stopped with an error (e.g.
        // the database still busy after the previous kill) is just one more interrupted run.
        let finished = status.is_some_and(|s| s.success());
        if let Some(s) = status.filter(|s| !s.success()) {
            println!("a run stopped on its own with {s}");
        }
        let stored = emails::count(db.store.conn(), account.id).await?;
        println!(
            "JMAP: killed after {} ms (finished: {finished}): {stored} stored",
            150 * k
        );
        if finished {
            break;
        }
    }
    let status = run()?.wait()?;
    assert!(status.success(), "final run failed: {status}");
    let mut local = emails::remote_ids(db.store.conn(), account.id).await?;
    local.sort();
    assert_eq!(local, jmap_server_ids(&servers, &user).await?);
    search_index_matches(&db.store, false).await?;
    db.cleanup().await?;
    Ok(())
}
