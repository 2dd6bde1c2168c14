//! A fleet of `mailsync sync` daemons (real processes) on one PostgreSQL database sharing six
//! Dovecot accounts: three start and split the accounts evenly; one is SIGKILLed and the two
//! others take its accounts over (timed; under 30 s, and within the lease expiry plus one
//! heartbeat) and sync mail delivered meanwhile; a fourth joins and gets its share, after
//! which nothing moves any more (no thrashing); `status --json` names each holder and since
//! when. The sync log, which records the daemon that ran each cycle, shows no two daemons
//! syncing one account at the same time. On SQLite a second daemon refuses to start.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Env, R, message, unique};
use mailsync_store::{AccountId, Store, leases, sync_log};
use mailsync_testkit::Servers;

/// The daemons' lease expiry (heartbeat every quarter): short so the test stays quick.
const LEASE_TTL: Duration = Duration::from_secs(4);
const ACCOUNTS: usize = 6;

fn spawn_daemon(env: &Env, tag: &str) -> Result<common::Daemon, Box<dyn std::error::Error>> {
    let log = std::fs::File::create(env.path(&format!("{tag}.log")))?;
    Ok(common::Daemon(
        env.daemon(&["-v", "sync"])
            .env("MAILSYNC_LEASE_TTL", format!("{}s", LEASE_TTL.as_secs()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    ))
}

fn pid_of(d: &Child) -> String {
    format!("/pid {}/", d.id())
}

/// Each account's holder now (owner name), from the leases.
async fn holders(store: &Store) -> Result<BTreeMap<AccountId, String>, Box<dyn std::error::Error>> {
    let now = mailsync_store::now();
    Ok(leases::all(store.conn())
        .await?
        .into_iter()
        .filter_map(|l| Some((l.account_id, l.holder_at(now)?.to_owned())))
        .collect())
}

/// How many accounts each of `daemons` holds (by pid), and how many accounts are held at all.
async fn shares(
    store: &Store,
    daemons: &[&Child],
) -> Result<(Vec<usize>, usize), Box<dyn std::error::Error>> {
    let h = holders(store).await?;
    let per = daemons
        .iter()
        .map(|d| h.values().filter(|o| o.contains(&pid_of(d))).count())
        .collect();
    Ok((per, h.len()))
}

async fn wait_until<F, Fut>(
    limit: Duration,
    what: &str,
    mut f: F,
) -> Result<Duration, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Box<dyn std::error::Error>>>,
{
    let t0 = Instant::now();
    loop {
        if f().await? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn emails_of(store: &Store, a: AccountId) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(mailsync_store::emails::count(store.conn(), a).await?)
}

/// A cycle: start, end, owner.
type Span = (
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    String,
);

/// Overlapping cycles of one account by two owners, from the sync log. A cycle cut by the
/// SIGKILL has no end: it ended at the kill at the latest.
async fn double_ownership(
    store: &Store,
    killed: &str,
    killed_at: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<String>, usize, usize), Box<dyn std::error::Error>> {
    let rows = sync_log::list(store.conn(), None, 100_000).await?;
    let mut by_account: HashMap<AccountId, Vec<Span>> = HashMap::new();
    let now = mailsync_store::now();
    for r in &rows {
        let owner = r
            .owner
            .clone()
            .ok_or("every daemon cycle names its owner")?;
        let end = match r.finished_at {
            Some(t) => t,
            None if owner.contains(killed) => killed_at,
            None => now,
        };
        by_account
            .entry(r.account_id)
            .or_default()
            .push((r.started_at, end, owner));
    }
    let mut overlaps = Vec::new();
    let mut shared = 0;
    for (account, mut v) in by_account {
        v.sort();
        let owners: std::collections::HashSet<&String> = v.iter().map(|x| &x.2).collect();
        if owners.len() > 1 {
            shared += 1;
        }
        for (i, a) in v.iter().enumerate() {
            for b in &v[i + 1..] {
                if b.0 >= a.1 {
                    break;
                }
                if a.2 != b.2 {
                    overlaps.push(format!("account {account}: {a:?} and {b:?}"));
                }
            }
        }
    }
    Ok((overlaps, shared, rows.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_takes_over_and_rebalances_on_postgres() -> R {
    let db = mailsync_store::testing::TempDb::postgres().await?;
    let res = fleet(&db).await;
    db.cleanup().await?;
    res
}

async fn fleet(db: &mailsync_store::testing::TempDb) -> R {
    let servers = Servers::load()?;
    let env = Env::with_db(&db.url);
    let store = &db.store;
    let mut users = Vec::new();
    tokio::task::block_in_place(|| -> R {
        for i in 0..ACCOUNTS {
            let user = servers.fresh_dovecot_user("fleet").user;
            let msgs = (0..3)
                .map(|j| message(&unique(&format!("fleet{i}-{j}")), "b", None).0)
                .collect();
            common::append(&servers, &user, "INBOX", msgs);
            common::imap_add(&env, &servers, &format!("f{i}"), &user, &[]).ok();
            users.push(user);
        }
        Ok(())
    })?;
    let ids: Vec<AccountId> = mailsync_store::accounts::list(store.conn())
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids.len(), ACCOUNTS);

    // Three daemons: every account synced, two each.
    let mut a = spawn_daemon(&env, "a")?;
    let b = spawn_daemon(&env, "b")?;
    let c = spawn_daemon(&env, "c")?;
    let t = wait_until(
        Duration::from_secs(30),
        "all synced and evenly shared",
        || async {
            for id in &ids {
                if emails_of(store, *id).await? != 3 {
                    return Ok(false);
                }
            }
            let (per, held) = shares(store, &[&a.0, &b.0, &c.0]).await?;
            Ok(held == ACCOUNTS && per.iter().all(|n| *n == 2))
        },
    )
    .await?;
    println!("3 daemons: all {ACCOUNTS} accounts synced and shared 2/2/2 after {t:?}");

    // `status` names each holder and since when.
    let status = tokio::task::block_in_place(|| env.run(&["status", "--json"]).ok().json_lines());
    assert_eq!(status.len(), ACCOUNTS);
    for s in &status {
        let held_by = s["held_by"].as_str().ok_or("held_by")?;
        assert!(
            [&a.0, &b.0, &c.0]
                .iter()
                .any(|d| held_by.contains(&pid_of(d))),
            "{s}"
        );
        assert!(s["held_since"].as_str().is_some(), "{s}");
    }

    // SIGKILL one: the two others take its accounts over and sync them.
    let killed = pid_of(&a.0);
    let theirs: Vec<AccountId> = holders(store)
        .await?
        .into_iter()
        .filter(|(_, o)| o.contains(&killed))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(theirs.len(), 2);
    a.0.kill()?;
    let killed_at = mailsync_store::now();
    a.0.wait()?;
    // Mail delivered to an orphaned account while nobody syncs it.
    let victim = ids.iter().position(|id| *id == theirs[0]).ok_or("index")?;
    tokio::task::block_in_place(|| {
        common::append(
            &servers,
            &users[victim],
            "INBOX",
            vec![message(&unique("late"), "b", None).0],
        );
    });
    let takeover = wait_until(Duration::from_secs(30), "takeover", || async {
        let h = holders(store).await?;
        Ok(theirs
            .iter()
            .all(|id| h.get(id).is_some_and(|o| !o.contains(&killed))))
    })
    .await?;
    println!("takeover after SIGKILL: {takeover:?} (lease expiry {LEASE_TTL:?})");
    assert!(takeover < Duration::from_secs(30));
    assert!(
        takeover < LEASE_TTL + LEASE_TTL / 4 + Duration::from_secs(2),
        "{takeover:?}"
    );
    wait_until(
        Duration::from_secs(15),
        "the taken-over account synced",
        || async { Ok(emails_of(store, theirs[0]).await? == 4) },
    )
    .await?;
    let (per, _) = shares(store, &[&b.0, &c.0]).await?;
    assert_eq!(per, vec![3, 3]);

    // A fourth joins: it gets its share, the others give up their excess, then nothing moves.
    let d = spawn_daemon(&env, "d")?;
    let t = wait_until(Duration::from_secs(20), "rebalanced", || async {
        let (per, held) = shares(store, &[&b.0, &c.0, &d.0]).await?;
        Ok(held == ACCOUNTS && per.iter().all(|n| *n == 2))
    })
    .await?;
    println!("a joining daemon had its share after {t:?}");
    let settled = holders(store).await?;
    tokio::time::sleep(LEASE_TTL).await;
    assert_eq!(
        holders(store).await?,
        settled,
        "no account moved once balanced"
    );

    // Clean stops release the accounts at once.
    for p in [&b.0, &c.0, &d.0] {
        nix_term(p.id());
    }
    let mut all = vec![b, c, d];
    for p in &mut all {
        let st = p.0.wait()?;
        assert!(st.success(), "{st:?}");
    }
    assert!(holders(store).await?.is_empty(), "all released on SIGTERM");

    let (overlaps, shared, cycles) = double_ownership(store, &killed, killed_at).await?;
    println!(
        "sync log: {cycles} cycles, {shared} accounts synced by several daemons, {} overlaps",
        overlaps.len()
    );
    assert!(shared >= 2, "the audit covered accounts that changed hands");
    assert!(overlaps.is_empty(), "double ownership: {overlaps:#?}");
    Ok(())
}

fn nix_term(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// SQLite stays single-daemon: a second daemon says why and exits; the first is unaffected.
#[test]
fn a_second_daemon_on_sqlite_refuses_to_start() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("solo").user;
    common::imap_add(&env, &servers, "solo", &user, &[]).ok();
    let mut first = spawn_daemon(&env, "first")?;
    // Registered once it holds the account.
    let t0 = Instant::now();
    while !std::fs::read_to_string(env.path("first.log"))?.contains("Took the account") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the first daemon started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["sync"]).fails(1);
    assert!(
        out.stderr.contains("already syncs this SQLite database")
            && out.stderr.contains("use PostgreSQL")
            && out.stderr.contains(&pid_of(&first.0)),
        "{}",
        out.stderr
    );
    assert!(first.0.try_wait()?.is_none(), "the first daemon runs on");
    nix_term(first.0.id());
    assert!(first.0.wait()?.success());
    Ok(())
}
