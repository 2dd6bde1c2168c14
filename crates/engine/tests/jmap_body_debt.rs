//! JMAP bodies are a debt (Cyrus, pool user `is9`): a connection cut during the body download
//! of a sync whose Email checkpoint already moved on, then a clean sync, leaves every wanted
//! body cached; so does raising the policy later.

use mailsync_engine::jmap_sync;
use mailsync_jmap_client::{Client, Credentials};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::bodies::{self, DebtScope};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, AccountKind, BodyPolicy, SecretRef, Store};
use mailsync_testkit::{
    Account, Cut, FaultProxy, Generator, ImapClient, Servers, accounts::IMAP_SYNC,
    imap_append_bulk, unique_name,
};

type R = Result<(), Box<dyn std::error::Error>>;

async fn client(url: &str, who: &Account) -> Result<Client, mailsync_jmap_client::Error> {
    Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .connect(url)
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

/// Emails of the test mailbox, and how many of them have a cached body.
async fn in_box(
    store: &Store,
    account: AccountId,
    name: &str,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let mut n = 0;
    let mut with_body = 0;
    for s in emails::list(
        store.conn(),
        &EmailFilter {
            account: Some(account),
            ..EmailFilter::default()
        },
    )
    .await?
    {
        if s.mailboxes.iter().any(|m| m == name) {
            n += 1;
            if bodies::get(store.conn(), s.email.id).await?.is_some() {
                with_body += 1;
            }
        }
    }
    Ok((n, with_body))
}

async fn owed(store: &Store, account: AccountId) -> Result<usize, mailsync_store::StoreError> {
    Ok(bodies::wanted_missing(
        store.conn(),
        account,
        DebtScope::Account,
        BodyPolicy::All,
        None,
        10_000,
    )
    .await?
    .len())
}

async fn run(db: &TempDb, s: &Servers, who: &Account, name: &str) -> R {
    let store = &db.store;
    let account = local_account(store, &who.user).await?;
    let proxy = FaultProxy::start(s.cyrus_host(), s.cyrus_http_port())?;
    let url = format!("http://{}:{}/jmap/", proxy.host(), proxy.port());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(9);
    let g = Generator::new(seed);
    let append = |range: std::ops::Range<usize>| {
        imap_append_bulk(
            s.cyrus_host(),
            s.cyrus_imap_port(),
            &who.user,
            &who.password,
            name,
            g.messages(range),
            500,
        )
    };

    // Headers only first: the Email checkpoint covers 30 emails without bodies.
    append(0..30)?;
    let c = client(&url, who).await?;
    let jacc = c.mail_account_id()?;
    jmap_sync::sync_mailboxes(&c, store, account, &jacc).await?;
    jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::None).await?;
    assert_eq!(in_box(store, account, name).await?, (30, 0));

    // New mail, policy raised, and the connection cut 300 bytes into the first body download.
    append(30..60)?;
    jmap_sync::sync_mailboxes(&c, store, account, &jacc).await?;
    drop(c);
    // Whichever pooled connection carries the body request is the one cut.
    proxy.arm(Cut::after_client_sends(b"fetchTextBodyValues", 300).over_all_connections());
    let c = client(&url, who).await?;
    let cut = jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::All).await;
    assert!(cut.is_err(), "the cut fails the sync: {cut:?}");
    assert_eq!(proxy.cuts(), 1);
    drop(c);
    let (n, with_body) = in_box(store, account, name).await?;
    assert_eq!(n, 60, "the new emails and their checkpoint were committed");
    assert!(with_body < 60);

    // A clean sync, with nothing new on the server: every wanted body cached.
    let c = client(&url, who).await?;
    let clean = jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::All).await?;
    assert!(!clean.full, "a delta sync: {clean:?}");
    assert_eq!(in_box(store, account, name).await?, (60, 60));
    assert_eq!(
        owed(store, account).await?,
        0,
        "nothing owed in the account"
    );
    let text = emails::list(
        store.conn(),
        &EmailFilter {
            account: Some(account),
            ..EmailFilter::default()
        },
    )
    .await?;
    let tokens: Vec<String> = (0..60).map(|i| g.expected(i).token).collect();
    let mut matched = 0;
    for e in text
        .iter()
        .filter(|e| e.mailboxes.iter().any(|m| m == name))
    {
        let b = bodies::get(store.conn(), e.email.id)
            .await?
            .unwrap_or_default();
        let t = b.text.unwrap_or_default();
        if tokens.iter().any(|k| t.contains(k.as_str())) {
            matched += 1;
        }
    }
    assert_eq!(matched, 60, "each cached body is its message's own");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_body_download_cut_then_clean_sync_caches_every_body() -> R {
    let s = Servers::load()?;
    let who = Account::cyrus_pool(IMAP_SYNC, 9);
    let name = unique_name("Debt");
    let db = TempDb::sqlite().await?;
    let res = run(&db, &s, &who, &name).await;
    // The pool user is shared across runs: remove the test mailbox whatever happened.
    let (host, port) = (s.cyrus_host().to_owned(), s.cyrus_imap_port());
    let (u, p, n) = (who.user.clone(), who.password.clone(), name.clone());
    tokio::task::spawn_blocking(move || -> Result<(), mailsync_testkit::Error> {
        let mut c = ImapClient::login(&host, port, &u, &p)?;
        c.command(&format!("DELETE \"{n}\""))?;
        c.logout();
        Ok(())
    })
    .await??;
    res
}
