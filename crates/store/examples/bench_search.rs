//! `cargo xtask bench search`: generates a corpus with a known thread structure directly into
//! the store (no server), as a first sync with bodies would write it, on SQLite and PostgreSQL;
//! reports the first-sync time, the share spent threading, the index upkeep overhead (the same
//! load with the search triggers dropped), whether the threads came out exactly as generated,
//! and local search latency (median, p99). Run in release mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::emails::{self, EmailUpsert, Membership};
use mailsync_store::mailboxes::{self, MailboxUpsert};
use mailsync_store::testing::TempDb;
use mailsync_store::threads::{self, ThreadInput};
use mailsync_store::{
    AccountId, AccountKind, Address, BodyPolicy, ConnectionTrait, MailboxId, Role, SecretRef,
    Store, bodies, search,
};

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Roughly Zipf: small indexes far more often.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as usize % n
    }
}

const SYL: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "hi", "jo",
    "bre", "sta", "qui", "mon", "tal",
];

fn vocabulary(n: usize) -> Vec<String> {
    let mut r = Rng(7);
    let mut set = BTreeSet::new();
    while set.len() < n {
        let len = 2 + r.below(3);
        let w: String = (0..len).map(|_| SYL[r.below(SYL.len())]).collect();
        set.insert(w);
    }
    let mut v: Vec<String> = set.into_iter().collect();
    // Shuffle so that frequency does not follow alphabetical order.
    for i in (1..v.len()).rev() {
        v.swap(i, r.below(i + 1));
    }
    v
}

struct Msg {
    upsert: EmailUpsert,
    body: String,
    thread: usize,
}

fn corpus(n: usize, box_ids: &[MailboxId]) -> (Vec<Msg>, Vec<String>, Vec<String>) {
    let vocab = vocabulary(20_000);
    let people: Vec<String> = (0..2_000)
        .map(|i| format!("{}{}", vocab[i % 500], i))
        .collect();
    let mut r = Rng(42);
    let mut out = Vec::with_capacity(n);
    let mut thread = 0usize;
    let t0 = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    while out.len() < n {
        // Thread sizes 1..=12, many singletons.
        let size = (1 + r.zipf(12)).min(n - out.len());
        let subject: Vec<&str> = (0..3 + r.below(4))
            .map(|_| vocab[r.zipf(vocab.len())].as_str())
            .collect();
        let subject = subject.join(" ");
        let mut ids: Vec<String> = Vec::new();
        for k in 0..size {
            let i = out.len();
            let mid = format!("m{i}.{thread}@bench.test");
            let mut u = EmailUpsert::new(
                format!("1/1/{}", i + 1),
                t0 + chrono::Duration::seconds((i as i64) * 300),
            );
            u.message_id = Some(mid.clone());
            if k > 0 {
                // A reply to some earlier message of the thread, with its ancestry.
                let parent = r.below(k);
                u.in_reply_to = Some(ids[parent].clone());
                u.references = Some(ids[..=parent].join(" "));
                u.subject = Some(format!("Re: {subject}"));
            } else {
                u.subject = Some(subject.clone());
            }
            let from = &people[r.zipf(people.len())];
            let to = &people[r.zipf(people.len())];
            u.from = vec![Address {
                name: Some(format!("{from} Person")),
                email: format!("{from}@example.org"),
            }];
            u.to = vec![Address {
                name: None,
                email: format!("{to}@example.net"),
            }];
            u.flags.seen = r.below(4) != 0;
            u.flags.flagged = r.below(20) == 0;
            u.has_attachment = r.below(10) == 0;
            u.size = 2_000 + r.below(20_000) as i64;
            u.mailboxes = vec![Membership {
                mailbox_id: box_ids[r.below(box_ids.len())],
                uidvalidity: Some(1),
                uid: Some(i as i64 + 1),
                modseq: None,
            }];
            let words = 40 + r.below(160);
            let body: Vec<&str> = (0..words)
                .map(|_| vocab[r.zipf(vocab.len())].as_str())
                .collect();
            ids.push(mid);
            out.push(Msg {
                upsert: u,
                body: body.join(" "),
                thread,
            });
        }
        thread += 1;
    }
    // Arrival order is shuffled within windows of 1,000: replies often arrive before parents.
    for w in out.chunks_mut(1_000) {
        for i in (1..w.len()).rev() {
            let j = r.below(i + 1);
            w.swap(i, j);
        }
    }
    let common: Vec<String> = vocab[..50].to_vec();
    let rare: Vec<String> = vocab[5_000..5_200].to_vec();
    (out, common, rare)
}

struct Load {
    total: Duration,
    threading: Duration,
    /// Time spent in the indexing steps (on the indexer's connection, beside the writes).
    indexing: Duration,
    /// From the last write to the index caught up.
    catch_up: Duration,
}

async fn setup(store: &Store) -> R<(AccountId, Vec<MailboxId>)> {
    let c = store.conn();
    let acc = accounts::create(
        c,
        NewAccount {
            name: "bench".into(),
            kind: AccountKind::Imap,
            email: "bench@example.test".into(),
            display_name: None,
            username: "bench".into(),
            secret_ref: SecretRef::Env("X".into()),
            imap: None,
            smtp: None,
            jmap_session_url: None,
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::All,
        },
    )
    .await?
    .id;
    let boxes = [
        ("INBOX", Some(Role::Inbox)),
        ("Archive", Some(Role::Archive)),
        ("Lists", None),
    ];
    let ups: Vec<MailboxUpsert> = boxes
        .iter()
        .map(|(n, role)| MailboxUpsert {
            remote_id: (*n).into(),
            name: (*n).into(),
            parent_remote_id: None,
            delimiter: Some("/".into()),
            selectable: true,
            role: *role,
            status: None,
        })
        .collect();
    mailboxes::upsert(c, acc, &ups).await?;
    let ids = mailboxes::list(c, acc)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    Ok((acc, ids))
}

/// Writes the corpus as a first sync with bodies would: batches of 400 (metadata, threads in
/// the same transaction), then the bodies of the batch.
/// [`load_batches`] with the search indexer beside it, as the engine runs it beside a cycle
/// (`worker::index_beside`): two lanes of steps of 500 notes (SQLite: the companion file, on
/// another connection, one step at a time; PostgreSQL: transactions of their own, side by
/// side).
/// The time counts until the index has caught up.
async fn load(store: &Store, acc: AccountId, msgs: &[Msg], bodies_in_batch: bool) -> R<Load> {
    let done = std::sync::atomic::AtomicBool::new(false);
    let start = Instant::now();
    let written = std::sync::Mutex::new(None);
    let writes = async {
        let r = load_batches(store, acc, msgs, bodies_in_batch).await;
        if let Ok(mut w) = written.lock() {
            *w = Some(Instant::now());
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        r
    };
    let lane = || async {
        let mut busy = Duration::ZERO;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            let step = Instant::now();
            let n = store.index_noted(INDEX_NOTES).await?;
            busy += step.elapsed();
            if n == 0 && finished {
                break;
            }
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok::<_, mailsync_store::StoreError>(busy)
    };
    let (load, a, b) = tokio::join!(writes, lane(), lane());
    let indexing = a? + b?;
    store.collect_noted().await?;
    let mut load = load?;
    load.total = start.elapsed();
    load.indexing = indexing;
    load.catch_up = written
        .lock()
        .ok()
        .and_then(|w| *w)
        .map_or(Duration::ZERO, |w| w.elapsed());
    Ok(load)
}

/// Notes per indexing step, as the engine's (`worker::INDEX_NOTES`).
const INDEX_NOTES: u64 = 500;

async fn load_batches(
    store: &Store,
    acc: AccountId,
    msgs: &[Msg],
    bodies_in_batch: bool,
) -> R<Load> {
    let start = Instant::now();
    let mut threading = Duration::ZERO;
    for batch in msgs.chunks(400) {
        let txn = store.begin().await?;
        let t = Instant::now();
        let inputs: Vec<ThreadInput<'_>> = batch.iter().map(|m| (&m.upsert).into()).collect();
        let ids = threads::assign(&txn, acc, &inputs).await?;
        threading += t.elapsed();
        let ups: Vec<EmailUpsert> = batch
            .iter()
            .zip(ids)
            .map(|(m, t)| {
                let mut u = m.upsert.clone();
                u.thread_id = Some(t);
                u
            })
            .collect();
        emails::upsert_batch(&txn, acc, &ups).await?;
        // IMAP stores a batch's bodies in the batch's transaction (`commit_new`); JMAP
        // fetches them in a transaction of their own after the batch.
        let txn = if bodies_in_batch {
            txn
        } else {
            txn.commit().await?;
            store.begin().await?
        };
        let remote: Vec<String> = batch.iter().map(|m| m.upsert.remote_id.clone()).collect();
        let local = emails::ids_by_remote_ids(&txn, acc, &remote).await?;
        for m in batch {
            if let Some(id) = local.get(&m.upsert.remote_id) {
                bodies::put(
                    &txn,
                    *id,
                    &bodies::Body {
                        text: Some(m.body.clone()),
                        html: None,
                        raw: None,
                        truncated: false,
                    },
                )
                .await?;
            }
        }
        txn.commit().await?;
        // As the engine's writers: PostgreSQL's statistics follow the tables' growth.
        store.note_inserted(batch.len() as u64).await;
    }
    Ok(Load {
        total: start.elapsed(),
        threading,
        indexing: Duration::ZERO,
        catch_up: Duration::ZERO,
    })
}

async fn drop_index(store: &Store) -> R {
    let stmts: &[&str] = match store.backend() {
        mailsync_store::Backend::Postgres => &[
            "DROP TRIGGER email_search_bodies_ins ON email_bodies",
            "DROP TRIGGER email_search_bodies_upd ON email_bodies",
            "DROP TRIGGER email_search_bodies_del ON email_bodies",
            "DROP TRIGGER email_search_upd ON emails",
            "DROP TRIGGER email_search_ins ON emails",
        ],
        _ => &[
            "DROP TRIGGER search_note_ei",
            "DROP TRIGGER search_note_eu",
            "DROP TRIGGER search_note_ed",
            "DROP TRIGGER search_note_bi",
            "DROP TRIGGER search_note_bu",
            "DROP TRIGGER search_note_bd",
        ],
    };
    for s in stmts {
        store.conn().execute_unprepared(s).await?;
    }
    Ok(())
}

/// Stored threads, as sets of generated thread numbers, must be exactly the generated ones.
async fn check_threads(store: &Store, acc: AccountId, msgs: &[Msg]) -> R<(usize, usize, bool)> {
    let by_remote: HashMap<&str, usize> = msgs
        .iter()
        .map(|m| (m.upsert.remote_id.as_str(), m.thread))
        .collect();
    let rows = store
        .conn()
        .query_all_raw(sea_orm_stmt(
            store,
            &format!(
                "SELECT remote_id, thread_id FROM emails WHERE account_id = {}",
                acc.0
            ),
        ))
        .await?;
    let mut stored: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut gen_to_stored: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        let remote: String = r.try_get("", "remote_id")?;
        let t: Option<String> = r.try_get("", "thread_id")?;
        let t = t.ok_or("email without thread")?;
        let g = *by_remote.get(remote.as_str()).ok_or("unknown email")?;
        stored.entry(t.clone()).or_default().insert(g);
        gen_to_stored.entry(g).or_default().insert(t);
    }
    let generated = gen_to_stored.len();
    let exact =
        stored.values().all(|s| s.len() == 1) && gen_to_stored.values().all(|s| s.len() == 1);
    Ok((generated, stored.len(), exact))
}

fn sea_orm_stmt(store: &Store, sql: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_string(store.conn().get_database_backend(), sql.to_owned())
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn bench_queries(
    store: &Store,
    acc: AccountId,
    common: &[String],
    rare: &[String],
    people: &[String],
) -> R<(Duration, Duration, usize, Vec<(String, Duration)>)> {
    let mut queries = Vec::new();
    for i in 0..40 {
        queries.push(common[i % common.len()].clone());
        queries.push(rare[i % rare.len()].clone());
        queries.push(format!(
            "{} {}",
            common[i % common.len()],
            rare[(i * 7) % rare.len()]
        ));
        queries.push(format!(
            "\"{} {}\"",
            common[i % common.len()],
            common[(i + 1) % common.len()]
        ));
        queries.push(format!(
            "from:{} {}",
            people[i * 3],
            common[(i * 3) % common.len()]
        ));
        queries.push(format!("subject:{} is:unread", rare[(i * 5) % rare.len()]));
        queries.push(format!(
            "{} in:archive after:2024-03-01",
            common[(i * 11) % common.len()]
        ));
    }
    // Warm up the caches once, as a running application would have them.
    for q in queries.iter().take(20) {
        search::search(store, Some(acc), &search::parse(q)?, 50).await?;
    }
    let mut times = Vec::new();
    let mut worst: Vec<(String, Duration)> = Vec::new();
    for q in &queries {
        let parsed = search::parse(q)?;
        let t = Instant::now();
        search::search(store, Some(acc), &parsed, 50).await?;
        let d = t.elapsed();
        times.push(d);
        if std::env::var_os("BENCH_SEARCH_EACH").is_some() {
            eprintln!("{:8.1} ms  {q}", d.as_secs_f64() * 1e3);
        }
        worst.push((q.clone(), d));
    }
    worst.sort_by_key(|w| std::cmp::Reverse(w.1));
    worst.truncate(3);
    let n = times.len();
    Ok((
        pct(&mut times.clone(), 0.5),
        pct(&mut times, 0.99),
        n,
        worst,
    ))
}

/// The slowest queries, for a table cell.
fn slowest(worst: &[(String, Duration)]) -> String {
    worst
        .iter()
        .map(|(q, d)| format!("`{q}` {:.0} ms", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Senders' local parts, for `from:` queries.
fn people_of(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .take(200)
        .map(|m| {
            m.upsert.from[0]
                .email
                .split('@')
                .next()
                .unwrap_or("x")
                .to_owned()
        })
        .collect()
}

async fn run(backend: &str, n: usize, bodies_in_batch: bool, keep: bool) -> R<Vec<String>> {
    let mut lines = Vec::new();
    let fresh = || async {
        match backend {
            "postgres" => TempDb::postgres().await,
            _ => TempDb::sqlite().await,
        }
    };
    // With the index.
    let db = fresh().await?;
    let (acc, boxes) = setup(&db.store).await?;
    let (msgs, common, rare) = corpus(n, &boxes);
    let people = people_of(&msgs);
    let with = load(&db.store, acc, &msgs, bodies_in_batch).await?;

    let (generated, stored, exact) = check_threads(&db.store, acc, &msgs).await?;
    let (median, p99, nq, worst) = bench_queries(&db.store, acc, &common, &rare, &people).await?;
    let t = Instant::now();
    let listed = threads::list(
        db.store.conn(),
        &threads::ThreadFilter {
            account: Some(acc),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let list_time = t.elapsed();
    if keep {
        // For looking at query plans afterwards: the indexed database stays, no baseline.
        eprintln!("kept: {}", db.url);
        std::mem::forget(db);
        return Ok(vec![format!(
            "| {backend} | {n} | local search median / p99 | {:.1} / {:.1} ms ({}) |",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            slowest(&worst)
        )]);
    }
    db.cleanup().await?;
    // Without the index (triggers dropped), same load.
    let db = fresh().await?;
    let (acc2, _) = setup(&db.store).await?;
    drop_index(&db.store).await?;
    let (msgs2, _, _) = corpus(
        n,
        &mailboxes::list(db.store.conn(), acc2)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
    );
    let without = load(&db.store, acc2, &msgs2, bodies_in_batch).await?;
    db.cleanup().await?;

    let upkeep = (with.total.as_secs_f64() - without.total.as_secs_f64())
        / without.total.as_secs_f64()
        * 100.0;
    let thread_share = with.threading.as_secs_f64() / with.total.as_secs_f64() * 100.0;
    lines.push(format!(
        "| {backend} | {n} | first sync with bodies ({}), indexed | {:.1} s |",
        if bodies_in_batch {
            "bodies in the batch's transaction, as IMAP"
        } else {
            "bodies in a second transaction per batch, as JMAP"
        },
        with.total.as_secs_f64()
    ));
    lines.push(format!(
        "| {backend} | {n} | indexing steps beside the load (both lanes' time) / catching up after its last write | {:.1} s / {:.2} s |",
        with.indexing.as_secs_f64(),
        with.catch_up.as_secs_f64()
    ));
    lines.push(format!(
        "| {backend} | {n} | same load, index triggers dropped | {:.1} s |",
        without.total.as_secs_f64()
    ));
    lines.push(format!(
        "| {backend} | {n} | index upkeep overhead (target ≤ 15 %) | {upkeep:.1} % |"
    ));
    lines.push(format!("| {backend} | {n} | threading time (share of first sync; target ≤ 10 %) | {:.2} s ({thread_share:.1} %) |", with.threading.as_secs_f64()));
    lines.push(format!("| {backend} | {n} | threads reproduced exactly | {} ({generated} generated, {stored} stored) |", if exact { "yes" } else { "NO" }));
    lines.push(format!("| {backend} | {n} | local search, {nq} queries, limit 50: median (target < 50 ms) | {:.1} ms |", median.as_secs_f64() * 1e3));
    lines.push(format!(
        "| {backend} | {n} | local search p99 (target < 200 ms) | {:.1} ms |",
        p99.as_secs_f64() * 1e3
    ));
    lines.push(format!(
        "| {backend} | {n} | slowest queries | {} |",
        slowest(&worst)
    ));
    lines.push(format!(
        "| {backend} | {n} | `threads --limit 50` | {:.1} ms ({} listed) |",
        list_time.as_secs_f64() * 1e3,
        listed.len()
    ));
    if !exact {
        return Err(format!(
            "{backend}: threads not reproduced exactly:\n{}",
            lines.join("\n")
        )
        .into());
    }
    Ok(lines)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R {
    let mut n = 100_000usize;
    let mut backends = vec!["sqlite".to_owned(), "postgres".to_owned()];
    let mut bodies_in_batch = false;
    let mut keep = false;
    let mut reuse = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--messages" => n = args.next().ok_or("--messages N")?.parse()?,
            "--bodies-in-batch" => bodies_in_batch = true,
            // Keeps the indexed database (its URL on stderr) and skips the load without index.
            "--keep" => keep = true,
            // Runs only the queries against a database kept by `--keep`.
            "--queries" => reuse = Some(args.next().ok_or("--queries DATABASE_URL")?),
            "--backend" => backends = vec![args.next().ok_or("--backend sqlite|postgres")?],
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: [--messages N] [--backend sqlite|postgres] [--bodies-in-batch] [--keep] [--queries URL]"
                )
                .into());
            }
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; numbers are meaningful only with --release");
    }
    if let Some(url) = reuse {
        // Only the queries, on a database kept by an earlier `--keep` run of the same size.
        let store = Store::connect(&url).await?;
        let acc = accounts::list(store.conn())
            .await?
            .first()
            .ok_or("no account")?
            .id;
        let boxes: Vec<MailboxId> = mailboxes::list(store.conn(), acc)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let (msgs, common, rare) = corpus(n, &boxes);
        let people = people_of(&msgs);
        let (median, p99, nq, worst) = bench_queries(&store, acc, &common, &rare, &people).await?;
        println!(
            "{nq} queries: median {:.1} ms, p99 {:.1} ms; slowest: {}",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            slowest(&worst)
        );
        return Ok(());
    }
    println!("| backend | messages | measure | value |\n|---|---|---|---|");
    for b in &backends {
        for l in run(b, n, bodies_in_batch, keep).await? {
            println!("{l}");
        }
    }
    Ok(())
}
