//! Several engines on one database and one IMAP account (Dovecot), on SQLite and PostgreSQL, as
//! a fleet of daemons would run: only the lease holder's worker works on the account, the
//! other waits; a one-off cycle elsewhere is refused and handed to the holder instead; a change
//! queued by a third engine wakes the holder; when the holder stops, the waiting worker takes
//! the account over within about a second.

use std::time::{Duration, Instant};

use mailsync_engine::worker::WorkerPolicy;
use mailsync_engine::{Engine, EngineError, SyncNow};
use mailsync_outbox::Change;
use mailsync_store::accounts::{self, Endpoint, NewAccount};
use mailsync_store::testing::TempDb;
use mailsync_store::{
    AccountId, AccountKind, BodyPolicy, SecretRef, Security, Store, emails, leases,
};
use mailsync_testkit::{Generator, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

fn policy() -> WorkerPolicy {
    WorkerPolicy::default().with_lease(Duration::from_secs(3), Duration::from_secs(1))
}

async fn holder(store: &Store, account: AccountId) -> Result<Option<String>, EngineError> {
    Ok(leases::get(store.conn(), account)
        .await?
        .and_then(|l| l.holder_at(mailsync_store::now()).map(str::to_owned)))
}

async fn wait_for_holder(store: &Store, account: AccountId, owner: &str) -> R {
    let deadline = Instant::now() + Duration::from_secs(15);
    while holder(store, account).await?.as_deref() != Some(owner) {
        if Instant::now() > deadline {
            return Err(format!("{owner} never took the lease").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn seen_on_server(servers: &Servers, user: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let out = servers.doveadm(&["search", "-u", user, "mailbox", "INBOX", "seen"])?;
    Ok(out.lines().any(|l| !l.trim().is_empty()))
}

async fn fleet(db: &TempDb) -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("fleet");
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        Generator::new(5).messages(0..1),
        1,
    )?;
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: user.user.clone(),
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
            body_policy: BodyPolicy::None,
        },
    )
    .await?;
    let id = account.id;
    let a = Engine::with_policy(db.store.clone(), policy());
    let b = Engine::with_policy(db.store.clone(), policy());
    a.start(account.clone());
    wait_for_holder(&db.store, id, a.owner()).await?;
    b.start(account.clone());
    // A's worker keeps the lease (renewed) while B's waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(holder(&db.store, id).await?.as_deref(), Some(a.owner()));
    // A one-off cycle elsewhere does not race the holder: refused, then handed to it.
    let c = Engine::with_policy(db.store.clone(), policy());
    assert!(matches!(
        c.sync_once(id).await,
        Err(EngineError::LeaseHeld { ref owner, .. }) if owner == a.owner()
    ));
    assert_eq!(
        c.sync_now(id).await?,
        SyncNow::Delegated {
            owner: a.owner().to_owned()
        }
    );
    // A change queued by C (no worker there) wakes A, which sends it.
    let email = emails::remote_ids(db.store.conn(), id).await?;
    assert_eq!(email.len(), 1);
    let local = emails::find_by_remote_id(db.store.conn(), id, &email[0])
        .await?
        .ok_or("synced")?;
    let t0 = Instant::now();
    c.enqueue(id, Change::seen(local.id, true)).await?;
    while !seen_on_server(&servers, &user.user)? {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the holder was woken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "change from another engine on the server after {:?}",
        t0.elapsed()
    );
    // A stops (a clean shutdown releases the lease): B takes over.
    let t1 = Instant::now();
    assert!(a.shutdown(Duration::from_secs(10)).await);
    wait_for_holder(&db.store, id, b.owner()).await?;
    println!("takeover after {:?}", t1.elapsed());
    assert!(t1.elapsed() < Duration::from_secs(3));
    assert!(b.shutdown(Duration::from_secs(10)).await);
    assert_eq!(holder(&db.store, id).await?, None, "released");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_sqlite() -> R {
    let db = TempDb::sqlite().await?;
    let res = fleet(&db).await;
    db.cleanup().await?;
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_postgres() -> R {
    let db = TempDb::postgres().await?;
    let res = fleet(&db).await;
    db.cleanup().await?;
    res
}
