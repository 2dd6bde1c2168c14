//! JMAP sync into the store against the real Cyrus: mailboxes with roles, a paged first sync of
//! more than 500 emails, then changes made by other clients (LMTP delivery, IMAP flag change,
//! IMAP expunge) picked up by Email/changes, bodies by policy, and a lost checkpoint recovered.

use std::time::Duration;

use mailsync_engine::jmap_sync::{self, PAGE_SIZE};
use mailsync_jmap_client::{Client, Credentials, Email, Get, Query};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::checkpoints::{self, Checkpoint, Scope};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::testing::TempDb;
use mailsync_store::{
    AccountId, AccountKind, BodyPolicy, Role, SecretRef, Store, bodies, mailboxes,
};
use mailsync_testkit::{
    Account, Generator, Servers, accounts::ENGINE, imap_append_bulk, lmtp_deliver,
};

type R = Result<(), Box<dyn std::error::Error>>;

async fn client(servers: &Servers, who: &Account) -> Result<Client, mailsync_jmap_client::Error> {
    Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .connect(servers.jmap_session_url())
        .await
}

async fn local_account(store: &Store, user: &str) -> Result<AccountId, Box<dyn std::error::Error>> {
    Ok(accounts::create(
        store.conn(),
        NewAccount {
            name: user.into(),
            kind: AccountKind::Jmap,
            email: format!("{user}@example.test"),
            display_name: None,
            username: user.into(),
            secret_ref: SecretRef::Env("UNUSED".into()),
            imap: None,
            smtp: None,
            jmap_session_url: Some("http://127.0.0.1/jmap/".into()),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?
    .id)
}

/// The ids of every Email on the server (query without filter).
async fn server_ids(c: &Client) -> Result<Vec<String>, mailsync_jmap_client::Error> {
    let account = c.mail_account_id()?;
    let mut out = Vec::new();
    let mut position = 0;
    loop {
        let resp = c
            .call(Query::<Email>::new(&account).position(position).limit(1000))
            .await?;
        if resp.ids.is_empty() {
            break;
        }
        position += resp.ids.len() as i64;
        out.extend(resp.ids.into_iter().map(|i| i.as_str().to_owned()));
    }
    out.sort();
    Ok(out)
}

async fn local_ids(
    store: &Store,
    account: AccountId,
) -> Result<Vec<String>, mailsync_store::StoreError> {
    let mut v = emails::remote_ids(store.conn(), account).await?;
    v.sort();
    Ok(v)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

async fn run(db: &TempDb) -> R {
    let servers = Servers::load()?;
    let who = Account::cyrus_pool(ENGINE, 1);
    // More than a page of new, unique messages (Cyrus dedupes identical bytes).
    let generator = Generator::new(seed());
    let n = PAGE_SIZE as usize + 20;
    imap_append_bulk(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        &who.user,
        &who.password,
        "INBOX",
        generator.messages(0..n),
        500,
    )?;
    let c = client(&servers, &who).await?;
    let jacc = c.mail_account_id()?;
    let store = &db.store;
    let account = local_account(store, &who.user).await?;

    // Mailboxes with their roles.
    let nboxes = jmap_sync::sync_mailboxes(&c, store, account, &jacc).await?;
    assert!(nboxes >= 6, "{nboxes} mailboxes");
    for role in [
        Role::Inbox,
        Role::Sent,
        Role::Drafts,
        Role::Trash,
        Role::Junk,
        Role::Archive,
    ] {
        assert!(
            mailboxes::find_by_role(store.conn(), account, role)
                .await?
                .is_some(),
            "role {role} persisted"
        );
    }
    assert!(
        checkpoints::get(store.conn(), account, &Scope::jmap("Mailbox"))
            .await?
            .is_some()
    );

    // First sync: paged, everything the server has.
    let t = std::time::Instant::now();
    let first =
        jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::MaxBytes(4096)).await?;
    println!(
        "first JMAP sync of {} emails: {:?}",
        first.added,
        t.elapsed()
    );
    assert!(first.full);
    assert!(first.added >= n as i64, "{first:?}");
    assert_eq!(local_ids(store, account).await?, server_ids(&c).await?);
    // Bodies of small messages were cached during the pass, big ones were not.
    let listed = emails::list(
        store.conn(),
        &EmailFilter {
            account: Some(account),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let mut cached_small = 0;
    for s in &listed {
        let body = bodies::get(store.conn(), s.email.id).await?;
        if s.email.size <= 4096 {
            assert!(
                body.is_some(),
                "small email {} has a cached body",
                s.email.remote_id
            );
            cached_small += 1;
        } else {
            assert!(
                body.is_none(),
                "big email {} was not downloaded",
                s.email.remote_id
            );
        }
    }
    assert!(cached_small > 0);
    let inbox = mailboxes::find_by_role(store.conn(), account, Role::Inbox)
        .await?
        .ok_or("inbox")?;
    assert!(listed.iter().all(|s| s.mailboxes.contains(&inbox.name)));

    // No change: an empty Email/changes.
    let again = jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::None).await?;
    assert!(!again.full);
    assert_eq!((again.added, again.updated, again.removed), (0, 0, 0));

    // Other clients: an LMTP delivery, an IMAP flag change and an IMAP expunge.
    let extra = Generator::new(seed());
    lmtp_deliver(servers.cyrus_lmtp(), &who.user, [extra.message(0)])?;
    let mut imap = mailsync_testkit::ImapClient::login(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        &who.user,
        &who.password,
    )?;
    imap.select("INBOX")?;
    imap.command("UID STORE 1:* +FLAGS.SILENT (\\Flagged)")?;
    let flagged_before = server_flagged(&c).await?;
    // Expunge the oldest message (sequence number 1, whatever its UID after earlier runs).
    let fetched = imap.command("FETCH 1 (UID)")?;
    let uid = fetched
        .lines()
        .find_map(|l| {
            l.split("UID ")
                .nth(1)
                .map(|r| r.trim_end_matches(')').trim().to_owned())
        })
        .ok_or("no UID in FETCH response")?;
    imap.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
    imap.command(&format!("UID EXPUNGE {uid}"))?;
    imap.logout();
    let delta = jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::None).await?;
    assert!(!delta.full);
    assert!(delta.added >= 1, "{delta:?}");
    assert!(delta.updated >= 1, "{delta:?}");
    assert!(delta.removed >= 1, "{delta:?}");
    assert_eq!(local_ids(store, account).await?, server_ids(&c).await?);
    let flagged_local = emails::list(
        store.conn(),
        &EmailFilter {
            account: Some(account),
            ..Default::default()
        },
    )
    .await?
    .iter()
    .filter(|s| s.email.flags.flagged)
    .count();
    assert_eq!(flagged_local, server_flagged(&c).await?);
    assert!(flagged_before > 0);

    // A lost (unknown) checkpoint is recovered by a full listing, removing nothing it should keep.
    checkpoints::put(
        store.conn(),
        account,
        &Scope::jmap("Email"),
        &Checkpoint::state("no-such-state"),
    )
    .await?;
    let recovered = jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::None).await?;
    assert!(recovered.full, "{recovered:?}");
    assert!(
        recovered.email_state_rejected.is_some(),
        "a typed reason: {recovered:?}"
    );
    assert_eq!(local_ids(store, account).await?, server_ids(&c).await?);
    Ok(())
}

async fn server_flagged(c: &Client) -> Result<usize, mailsync_jmap_client::Error> {
    let account = c.mail_account_id()?;
    let mut n = 0;
    let mut position = 0;
    loop {
        let resp = c
            .call(Query::<Email>::new(&account).position(position).limit(1000))
            .await?;
        if resp.ids.is_empty() {
            break;
        }
        position += resp.ids.len() as i64;
        let got = c
            .call(
                Get::<Email>::new(&account)
                    .ids(resp.ids)
                    .properties(["keywords"]),
            )
            .await?;
        n += got
            .list
            .iter()
            .filter(|e| e.has_keyword("$flagged"))
            .count();
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_sync_against_cyrus() -> R {
    let db = TempDb::sqlite().await?;
    let res = tokio::time::timeout(Duration::from_secs(120), run(&db)).await;
    db.cleanup().await?;
    res.map_err(|_| "timed out after 120 s")?
}
