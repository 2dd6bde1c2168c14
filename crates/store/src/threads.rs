//! Conversations: local threading for mail whose server gives no thread id (IMAP without
//! THREADID), maintained incrementally in the transaction of each upsert batch, and the
//! thread listing for both protocols.
//!
//! Local threading follows JWZ's idea without building the tree: a message belongs with every
//! message it shares a Message-ID with, whether its own or one it names in In-Reply-To or
//! References. `thread_links` maps each such id (`m:<id>`) to a thread, so a reply that arrives
//! before its parent leaves a link for the parent's id, and the parent joins that thread when it
//! arrives; a message that links two threads merges them (the smaller id stays). A message
//! without references whose subject is a reply (`Re: x`) joins the latest thread whose base
//! subject is `x` (`s:<x>`). Links stay when mail leaves, so a thread keeps its id.
//!
//! A merge renames the losing thread's emails and records `loser -> winner` in
//! `thread_merges` (schema v18); the links keep the id they were written with, and a look-up
//! resolves it through that table. Merges are kept flat (a winner is never a loser), so one
//! join resolves any link. Renaming the links instead needed an index of `thread_links` by
//! thread, and keeping it was about 40 % of threading's cost in a first sync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, Value,
};

use crate::emails::EmailUpsert;
use crate::entity::emails as e;
use crate::sql::{Sql, placeholder};
use crate::{AccountId, StoreError};

const CHUNK: usize = 400;
/// Most link keys per look-up and link rows (3 values each) per upsert: a batch of 400
/// messages names about 1,000 keys, so one or two statements each (round trips dominate on a
/// network database); 6,000 bound values stay under both backends' limits.
const LINK_CHUNK: usize = 2048;
/// Fewest keys or rows per statement: smaller parts are padded up to it.
const LINK_CHUNK_MIN: usize = 16;

/// What threading needs to know about a message.
#[derive(Debug, Clone, Copy)]
pub struct ThreadInput<'a> {
    /// Server identity (stands in for a missing Message-ID).
    pub remote_id: &'a str,
    /// Message-ID without brackets.
    pub message_id: Option<&'a str>,
    /// In-Reply-To ids, space separated.
    pub in_reply_to: Option<&'a str>,
    /// References ids, space separated.
    pub references: Option<&'a str>,
    /// Subject.
    pub subject: Option<&'a str>,
}

impl<'a> From<&'a EmailUpsert> for ThreadInput<'a> {
    fn from(u: &'a EmailUpsert) -> Self {
        Self {
            remote_id: &u.remote_id,
            message_id: u.message_id.as_deref(),
            in_reply_to: u.in_reply_to.as_deref(),
            references: u.references.as_deref(),
            subject: u.subject.as_deref(),
        }
    }
}

/// The subject without reply/forward prefixes and list tags, lower case; and whether a
/// prefix was removed (the message says it answers something).
pub fn base_subject(s: &str) -> (String, bool) {
    let mut t = s.trim();
    let mut reply = false;
    loop {
        let before = t;
        if let Some(rest) = t.strip_prefix('[')
            && let Some(end) = rest.find(']')
        {
            t = rest[end + 1..].trim_start();
        }
        let lower = t.to_lowercase();
        for p in [
            "re:", "fwd:", "fw:", "aw:", "wg:", "sv:", "vs:", "tr:", "r:",
        ] {
            if lower.starts_with(p) {
                t = t[p.len()..].trim_start();
                reply = true;
                break;
            }
        }
        if t == before {
            break;
        }
    }
    (
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
        reply,
    )
}

/// The thread id given to a new conversation: derived from one of its keys (FNV-1a, 64 bits),
/// so the same corpus gets the same ids.
fn new_thread_id(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("L{h:016x}")
}

struct Keys {
    /// `m:` keys: own Message-ID (or `r:<remote id>`) first, then the ids it refers to.
    ids: Vec<String>,
    /// `s:<base subject>` to look up (a reply without references) or just to record.
    subject: Option<(String, bool)>,
}

/// The id without brackets and blanks; none if nothing is left.
fn clean_id(s: &str) -> Option<&str> {
    let t = s
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!t.is_empty()).then_some(t)
}

/// Longest part of an id or subject a link key keeps as it is.
const KEY_KEPT: usize = 480;

/// A link key: `prefix` + `rest` in one allocation (`format!` made key building a fifth of
/// threading's own instructions; this cuts it by a third), or, for a `rest` longer than
/// [`KEY_KEPT`] bytes, its first bytes and a hash of the whole. A key is a B-tree key on PostgreSQL, which refuses an index
/// row over 2,704 bytes: one message with a subject of a few kilobytes (or a hostile
/// Message-ID) failed its batch's write, and the sync of its mailbox, every cycle. Real ids
/// and subjects are far shorter, so their threads are unchanged.
fn key(prefix: &str, rest: &str) -> String {
    let kept = if rest.len() > KEY_KEPT {
        let mut end = KEY_KEPT;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        end
    } else {
        rest.len()
    };
    let mut k = String::with_capacity(prefix.len() + kept + 17);
    k.push_str(prefix);
    k.push_str(&rest[..kept]);
    if kept < rest.len() {
        // FNV-1a: stable across versions and builds, as stored keys must be.
        let h = rest.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let _ = write!(k, "#{h:016x}");
    }
    k
}

fn keys_of(m: &ThreadInput<'_>) -> Keys {
    let mut ids = Vec::new();
    match m.message_id.and_then(clean_id) {
        Some(id) => ids.push(key("m:", id)),
        None => ids.push(key("r:", m.remote_id)),
    }
    let mut refs = 0;
    for list in [m.references, m.in_reply_to].into_iter().flatten() {
        for r in list.split_whitespace().filter_map(clean_id) {
            refs += 1;
            if !ids.iter().any(|k| k.strip_prefix("m:") == Some(r)) {
                ids.push(key("m:", r));
            }
        }
    }
    let subject = m.subject.and_then(|s| {
        let (base, reply) = base_subject(s);
        (!base.is_empty()).then(|| (key("s:", &base), reply && refs == 0))
    });
    Keys { ids, subject }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Assigns a thread id to each message (in order), writing the links and any merges of
/// existing threads. Run it in the transaction of the batch the messages belong to.
pub async fn assign<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    msgs: &[ThreadInput<'_>],
) -> Result<Vec<String>, StoreError> {
    if msgs.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let out = assign_batch(c, account, msgs).await?;
    // Issue 16 bounds threading's share of a first sync: this is how it is measured
    // (`RUST_LOG=mailsync_store::threads=debug`, summed over the cycle).
    tracing::debug!(
        messages = msgs.len(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "threaded a batch"
    );
    Ok(out)
}

async fn assign_batch<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    msgs: &[ThreadInput<'_>],
) -> Result<Vec<String>, StoreError> {
    let keys: Vec<Keys> = msgs.iter().map(keys_of).collect();
    // Existing links for every key named in the batch.
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    for k in &keys {
        wanted.extend(k.ids.iter().map(String::as_str));
        if let Some((s, true)) = &k.subject {
            wanted.insert(s);
        }
    }
    let wanted: Vec<&str> = wanted.into_iter().collect();
    let lookup_started = std::time::Instant::now();
    let backend = c.get_database_backend();
    let seqscan = if backend == DbBackend::Postgres {
        Some(pg_seqscan_off(c).await?)
    } else {
        None
    };
    let mut existing: HashMap<String, String> = HashMap::with_capacity(wanted.len());
    let mut rest = wanted.as_slice();
    while !rest.is_empty() {
        let size = part_size(backend, rest.len());
        let (part, tail) = rest.split_at(rest.len().min(size));
        rest = tail;
        let mut values = Vec::with_capacity(size + 1);
        values.push(Value::from(account.0));
        values.extend(part.iter().map(|k| Value::from(*k)));
        // Padding repeats a key: the IN list is a set, the rows come back once.
        let pad = part.last().copied().unwrap_or_default();
        values.extend((part.len()..size).map(|_| Value::from(pad)));
        let sql = lookup_sql(backend, size);
        let stmt = Statement::from_sql_and_values(backend, sql, values);
        if backend == DbBackend::Sqlite {
            // One row holding every pair: sqlx hands a SQLite row from its worker thread to
            // the caller's through a channel of 50, a thread switch per few dozen links.
            let Some(row) = c.query_one_raw(stmt).await? else {
                continue;
            };
            let pairs: Vec<(String, String)> =
                serde_json::from_str(&row.try_get_by_index::<String>(0)?)
                    .map_err(|err| StoreError::json("thread_links", err))?;
            existing.extend(pairs);
        } else {
            for row in c.query_all_raw(stmt).await? {
                existing.insert(
                    row.try_get_by_index::<String>(0)?,
                    row.try_get_by_index::<String>(1)?,
                );
            }
        }
    }
    if let Some(prev) = seqscan {
        pg_seqscan_back(c, prev).await?;
    }
    let t_lookup = lookup_started.elapsed();
    // Union-find over the batch's messages: two messages sharing an `m:` key are one thread.
    let n = msgs.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        for key in &k.ids {
            match owner.get(key.as_str()) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    owner.insert(key, i);
                }
            }
        }
    }
    // Per component (indexed by its root, visited in root order): the threads it touches
    // already, and its smallest key. Thread ids are borrowed from `existing` throughout:
    // copying them cost ~7 % of threading's own instructions.
    let mut touched: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); n];
    let mut first_key: Vec<Option<&str>> = vec![None; n];
    for (i, k) in keys.iter().enumerate() {
        let root = find(&mut parent, i);
        let set = &mut touched[root];
        for key in &k.ids {
            if let Some(t) = existing.get(key) {
                set.insert(t);
            }
        }
        if let Some((s, true)) = &k.subject
            && let Some(t) = existing.get(s)
        {
            set.insert(t);
        }
        let own = k.ids[0].as_str();
        let fk = first_key[root].get_or_insert(own);
        if own < *fk {
            *fk = own;
        }
    }
    let mut thread_of: Vec<Option<String>> = vec![None; n];
    // Only a component touching two or more stored threads renames: winner and losers are
    // all stored ids.
    let mut renames: BTreeMap<&str, &str> = BTreeMap::new();
    for root in 0..n {
        if find(&mut parent, root) != root {
            continue;
        }
        let set = &touched[root];
        let chosen = match set.iter().next() {
            Some(t) => {
                for loser in set.iter().skip(1) {
                    renames.insert(loser, t);
                }
                (*t).to_owned()
            }
            None => new_thread_id(first_key[root].unwrap_or_default()),
        };
        thread_of[root] = Some(chosen);
    }
    for &loser in renames.keys() {
        let winner = resolve(loser, &renames);
        if winner == loser {
            continue;
        }
        e::Entity::update_many()
            .col_expr(e::Column::ThreadId, Expr::value(winner))
            .filter(e::Column::AccountId.eq(account.0))
            .filter(e::Column::ThreadId.eq(loser))
            .exec(c)
            .await?;
        record_merge(c, account, loser, winner).await?;
    }
    let mut out = Vec::with_capacity(n);
    let mut links: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let root = find(&mut parent, i);
        let t = resolve(thread_of[root].as_deref().unwrap_or_default(), &renames);
        for key in &k.ids {
            links.insert(key, t);
        }
        if let Some((s, _)) = &k.subject {
            // The latest conversation with this subject is the one a bare "Re:" joins.
            links.insert(s, t);
        }
        out.push(t.to_owned());
    }
    // Links already stored with their final thread are left alone: in a first sync most
    // references name a parent stored by an earlier batch, and rewriting it with the same
    // value cost about a tenth of the threading time (2.24 -> 2.04 s for 100,000 messages in
    // `cargo xtask bench search`, one run each). `existing` holds the threads read
    // before this batch's merges; a link of a losing thread need not be rewritten either, the
    // merge recorded above resolves it.
    let t_links = std::time::Instant::now();
    let rows: Vec<(&str, &str)> = links
        .into_iter()
        .filter(|(k, t)| {
            existing
                .get(*k)
                .is_none_or(|old| resolve(old, &renames) != *t)
        })
        .collect();
    let mut rows = rows.into_iter();
    let mut left = rows.len();
    while left > 0 {
        let size = part_size(backend, left);
        let take = left.min(size);
        left -= take;
        let mut values = Vec::with_capacity(size * 3);
        for (k, t) in rows.by_ref().take(take) {
            values.push(Value::from(account.0));
            values.push(Value::from(k));
            values.push(Value::from(t));
        }
        // Padding rows (SQLite only) have no key and are filtered out before the insert: a
        // repeated row would make an upsert touch a row twice.
        for _ in take..size {
            values.push(Value::from(account.0));
            values.push(Value::String(None));
            values.push(Value::String(None));
        }
        c.execute_raw(Statement::from_sql_and_values(
            backend,
            upsert_sql(backend, size),
            values,
        ))
        .await?;
    }
    tracing::trace!(
        keys = wanted.len(),
        lookup_us = t_lookup.as_micros() as u64,
        write_us = t_links.elapsed().as_micros() as u64,
        "threading phases"
    );
    Ok(out)
}

/// Records that `loser`'s links now belong to `winner`, keeping the merges flat: merges that
/// went into `loser` go into `winner` now. Both are current ids (look-ups resolve every stored
/// link), so `winner` is never a loser itself.
async fn record_merge<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    loser: &str,
    winner: &str,
) -> Result<(), StoreError> {
    let backend = c.get_database_backend();
    let mut repoint = Sql::new(backend);
    repoint
        .push("UPDATE thread_merges SET winner = ")
        .bind(winner)
        .push(" WHERE account_id = ")
        .bind(account.0)
        .push(" AND winner = ")
        .bind(loser);
    c.execute_raw(repoint.build()).await?;
    let mut insert = Sql::new(backend);
    insert
        .push("INSERT INTO thread_merges (account_id, loser, winner) VALUES (")
        .bind(account.0)
        .push(", ")
        .bind(loser)
        .push(", ")
        .bind(winner)
        .push(") ON CONFLICT (account_id, loser) DO UPDATE SET winner = excluded.winner");
    c.execute_raw(insert.build()).await?;
    Ok(())
}

/// Where a thread went: renames may chain when several components touch the same threads,
/// so follow them to the end (bounded, should they ever form a cycle).
fn resolve<'a>(t: &'a str, renames: &BTreeMap<&'a str, &'a str>) -> &'a str {
    let mut cur = t;
    let mut hops = 0;
    while let Some(&next) = renames.get(cur) {
        if next == cur || hops > renames.len() {
            break;
        }
        cur = next;
        hops += 1;
    }
    cur
}

/// How many keys or rows the next statement takes (padded) when `n` are left.
///
/// SQLite: a power of two from [`LINK_CHUNK_MIN`] to [`LINK_CHUNK`], so a handful of
/// statement texts recur and sqlx's prepared-statement cache serves them (statements sized to
/// each batch were all prepared anew: SQLite's parser was an eighth of threading's
/// instructions). A part is padded by at most a quarter of its size; past that the next
/// smaller size goes first.
///
/// PostgreSQL: exactly what is left, up to [`LINK_CHUNK`], as before. A statement text that
/// recurs gets a generic plan after five runs, planned while the table was nearly empty and
/// kept as it grew: with fixed sizes, threading 20,000 messages took 12.9 s instead of 2.4 s
/// (`cargo xtask bench search --backend postgres --messages 20000`).
fn part_size(backend: DbBackend, n: usize) -> usize {
    if backend == DbBackend::Postgres {
        return n.min(LINK_CHUNK);
    }
    let mut size = n
        .clamp(LINK_CHUNK_MIN, LINK_CHUNK)
        .next_power_of_two()
        .min(LINK_CHUNK);
    while size > LINK_CHUNK_MIN && n < size && size - n > size / 4 {
        size /= 2;
    }
    size
}

/// PostgreSQL: sequential scans off for the look-ups of a batch (the transaction's setting,
/// put back after them); returns the setting it replaced. The planner reads the key list as a
/// hashed `IN` and scans the whole `thread_links` table with it rather than probing its key
/// once per link: 208 scans reading 11.2 million rows over a first sync of 100,000 messages
/// (`cargo xtask bench search --backend postgres`), 12.6 ms per look-up of 1,000 keys at
/// 125,000 links, against 6.1 ms by the key.
async fn pg_seqscan_off<C: ConnectionTrait>(c: &C) -> Result<String, StoreError> {
    let row = c
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('enable_seqscan'), set_config('enable_seqscan', 'off', true)",
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get_by_index::<String>(0)?,
        None => "on".to_owned(),
    })
}

/// Puts back the setting [`pg_seqscan_off`] replaced.
async fn pg_seqscan_back<C: ConnectionTrait>(c: &C, prev: String) -> Result<(), StoreError> {
    c.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('enable_seqscan', $1, true)",
        [Value::from(prev)],
    ))
    .await?;
    Ok(())
}

/// The links of `size` keys of one account, each with its current thread (resolved through
/// `thread_merges`): rows of (key, thread) on PostgreSQL, one row with a JSON array of
/// `[key, thread]` pairs on SQLite.
fn lookup_sql(backend: DbBackend, size: usize) -> String {
    let mut sql = String::with_capacity(256 + size * 6);
    sql.push_str(if backend == DbBackend::Sqlite {
        "SELECT json_group_array(json_array(l.link_key, COALESCE(mg.winner, l.thread_id))) \
         FROM thread_links l "
    } else {
        "SELECT l.link_key, COALESCE(mg.winner, l.thread_id) FROM thread_links l "
    });
    sql.push_str(
        "LEFT JOIN thread_merges mg ON mg.account_id = l.account_id AND mg.loser = l.thread_id \
         WHERE l.account_id = ",
    );
    placeholder(backend, &mut sql, 1);
    sql.push_str(" AND l.link_key IN (");
    for i in 0..size {
        if i > 0 {
            sql.push_str(", ");
        }
        placeholder(backend, &mut sql, i + 2);
    }
    sql.push(')');
    sql
}

/// Writes `size` link rows, replacing the thread of keys already stored. On SQLite, rows
/// without a key are padding and skipped (both backends name a `VALUES` list's columns
/// `column1`, `column2`, ...; PostgreSQL is never padded, see [`part_size`]).
fn upsert_sql(backend: DbBackend, size: usize) -> String {
    let sqlite = backend == DbBackend::Sqlite;
    let mut sql = String::with_capacity(200 + size * 16);
    sql.push_str("INSERT INTO thread_links (account_id, link_key, thread_id) ");
    if sqlite {
        sql.push_str("SELECT column1, column2, column3 FROM (");
    }
    sql.push_str("VALUES ");
    for r in 0..size {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for c in 0..3 {
            if c > 0 {
                sql.push_str(", ");
            }
            placeholder(backend, &mut sql, r * 3 + c + 1);
        }
        sql.push(')');
    }
    if sqlite {
        // The WHERE also tells SQLite's parser that ON CONFLICT belongs to the INSERT.
        sql.push_str(") AS v WHERE column2 IS NOT NULL");
    }
    sql.push_str(
        " ON CONFLICT (account_id, link_key) DO UPDATE SET thread_id = excluded.thread_id",
    );
    sql
}

/// Gives a local thread to every email of every account still without one (mail stored
/// before v11), oldest first, in batches. Returns how many were threaded.
pub async fn backfill<C: ConnectionTrait>(c: &C) -> Result<u64, StoreError> {
    let mut done = 0;
    loop {
        let rows = e::Entity::find()
            .filter(e::Column::ThreadId.is_null())
            .order_by_asc(e::Column::Id)
            .limit(CHUNK as u64)
            .all(c)
            .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut by_account: BTreeMap<i64, Vec<&e::Model>> = BTreeMap::new();
        for r in &rows {
            by_account.entry(r.account_id).or_default().push(r);
        }
        for (account, list) in by_account {
            let inputs: Vec<ThreadInput<'_>> = list
                .iter()
                .map(|m| ThreadInput {
                    remote_id: &m.remote_id,
                    message_id: m.message_id.as_deref(),
                    in_reply_to: m.in_reply_to.as_deref(),
                    references: m.references.as_deref(),
                    subject: m.subject.as_deref(),
                })
                .collect();
            let ids = assign(c, AccountId(account), &inputs).await?;
            for (m, t) in list.iter().zip(ids) {
                e::Entity::update_many()
                    .col_expr(e::Column::ThreadId, Expr::value(t))
                    .filter(e::Column::Id.eq(m.id))
                    .exec(c)
                    .await?;
                done += 1;
            }
        }
    }
}

/// Which conversations to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    /// Only this account.
    pub account: Option<AccountId>,
    /// Only conversations with a message in this mailbox.
    pub mailbox: Option<crate::MailboxId>,
    /// Only conversations with a message in a mailbox with this role.
    pub role: Option<crate::Role>,
    /// At most this many.
    pub limit: Option<u64>,
}

/// One conversation: counts and dates over all its messages that are in some mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    /// The account.
    pub account_id: AccountId,
    /// The thread id (the server's, or a local `L…`).
    pub thread_id: String,
    /// The subject of its oldest message that is not a reply, else of its oldest.
    pub subject: Option<String>,
    /// Distinct senders, oldest first.
    pub participants: Vec<crate::Address>,
    /// Messages.
    pub count: u64,
    /// Unread messages.
    pub unread: u64,
    /// Latest arrival.
    pub last_at: DateTime<Utc>,
}

/// Lists conversations, newest activity first.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    filter: &ThreadFilter,
) -> Result<Vec<ThreadSummary>, StoreError> {
    let mut sql = crate::sql::Sql::new(c.get_database_backend());
    sql.push(
        "SELECT e.account_id, e.thread_id, COUNT(*) AS n, \
         SUM(CASE WHEN e.seen THEN 0 ELSE 1 END) AS unread, MAX(e.received_at) AS last_at \
         FROM emails e WHERE e.thread_id IS NOT NULL \
         AND EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.email_id = e.id)",
    );
    if let Some(a) = filter.account {
        sql.push(" AND e.account_id = ").bind(a.0);
    }
    if filter.mailbox.is_some() || filter.role.is_some() {
        sql.push(
            " AND EXISTS (SELECT 1 FROM emails e2 JOIN email_mailboxes em2 ON em2.email_id = e2.id \
             JOIN mailboxes m2 ON m2.id = em2.mailbox_id WHERE e2.account_id = e.account_id \
             AND e2.thread_id = e.thread_id",
        );
        if let Some(m) = filter.mailbox {
            sql.push(" AND m2.id = ").bind(m.0);
        }
        if let Some(r) = filter.role {
            sql.push(" AND m2.role = ").bind(r.as_str());
        }
        sql.push(")");
    }
    sql.push(" GROUP BY e.account_id, e.thread_id ORDER BY last_at DESC, e.thread_id");
    if let Some(l) = filter.limit {
        sql.push(" LIMIT ")
            .bind(i64::try_from(l).unwrap_or(i64::MAX));
    }
    let rows = c.query_all_raw(sql.build()).await?;
    let mut heads = Vec::with_capacity(rows.len());
    for r in rows {
        heads.push((
            AccountId(r.try_get::<i64>("", "account_id")?),
            r.try_get::<String>("", "thread_id")?,
            r.try_get::<i64>("", "n")?,
            r.try_get::<Option<i64>>("", "unread")?.unwrap_or(0),
            r.try_get::<DateTime<Utc>>("", "last_at")?,
        ));
    }
    // The listed threads' messages in one query per account and chunk, through the
    // (account, thread) index; ordered here (an ORDER BY would tempt SQLite into the
    // (account, received_at) index and a scan of the whole account).
    let mut wanted: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (a, t, ..) in &heads {
        wanted.entry(a.0).or_default().insert(t.clone());
    }
    let mut msgs: HashMap<(i64, String), Vec<e::Model>> = HashMap::new();
    for (a, ts) in wanted {
        let ts: Vec<String> = ts.into_iter().collect();
        for chunk in ts.chunks(CHUNK) {
            for m in e::Entity::find()
                .filter(e::Column::AccountId.eq(a))
                .filter(e::Column::ThreadId.is_in(chunk.iter().cloned()))
                .all(c)
                .await?
            {
                let key = (a, m.thread_id.clone().unwrap_or_default());
                msgs.entry(key).or_default().push(m);
            }
        }
    }
    let mut out = Vec::with_capacity(heads.len());
    for (account_id, thread_id, count, unread, last_at) in heads {
        let mut msgs = msgs
            .remove(&(account_id.0, thread_id.clone()))
            .unwrap_or_default();
        msgs.sort_by_key(|m| (m.received_at, m.id));
        // The subject of the oldest message that is not a reply (the root), else the oldest.
        let subject = msgs
            .iter()
            .find(|m| m.subject.as_deref().is_some_and(|s| !base_subject(s).1))
            .or(msgs.first())
            .and_then(|m| m.subject.clone());
        let mut participants: Vec<crate::Address> = Vec::new();
        for m in msgs {
            let from: Vec<crate::Address> = serde_json::from_str(&m.from_addr)
                .map_err(|err| StoreError::json("emails.from_addr", err))?;
            for a in from {
                if !participants
                    .iter()
                    .any(|p| p.email.eq_ignore_ascii_case(&a.email))
                {
                    participants.push(a);
                }
            }
        }
        out.push(ThreadSummary {
            account_id,
            thread_id,
            subject,
            participants,
            count: count.unsigned_abs(),
            unread: unread.unsigned_abs(),
            last_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  World"),
            ("hello world".into(), true)
        );
        assert_eq!(base_subject("Hello"), ("hello".into(), false));
        assert_eq!(base_subject("AW: re:Plan"), ("plan".into(), true));
        assert_eq!(base_subject("Re:"), (String::new(), true));
    }

    #[test]
    fn long_keys_are_bounded_and_still_distinct() {
        assert_eq!(key("m:", "a@x"), "m:a@x");
        let long = |c: char| format!("{}é{}", "a".repeat(479), c.to_string().repeat(3000));
        let (a, b) = (key("s:", &long('b')), key("s:", &long('c')));
        assert!(a.len() <= 2 + KEY_KEPT + 17, "{}", a.len());
        assert_ne!(a, b, "same first bytes, different subjects");
        assert_eq!(a, key("s:", &long('b')), "stable");
        assert!(
            a.starts_with(&format!("s:{}#", "a".repeat(479))),
            "cut at a character"
        );
    }

    #[test]
    fn keys_skip_empty_and_duplicate_ids() {
        let k = keys_of(&ThreadInput {
            remote_id: "r1",
            message_id: Some("<a@x>"),
            in_reply_to: Some("<b@x>"),
            references: Some("<c@x> <b@x>  <>"),
            subject: Some("Re: hi"),
        });
        assert_eq!(k.ids, vec!["m:a@x", "m:c@x", "m:b@x"]);
        assert_eq!(k.subject, Some(("s:hi".into(), false)));
        let k = keys_of(&ThreadInput {
            remote_id: "r2",
            message_id: None,
            in_reply_to: None,
            references: None,
            subject: Some("Re: hi"),
        });
        assert_eq!(k.ids, vec!["r:r2"]);
        assert_eq!(k.subject, Some(("s:hi".into(), true)));
    }

    /// PostgreSQL: a batch looks its links up by key, whatever the planner would choose, and
    /// leaves the transaction's setting as it found it. With 30,000 links and fresh statistics
    /// the planner chose a sequential scan for the look-up of a batch's 400 keys (seen
    /// failing without `pg_seqscan_off`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_looks_its_links_up_by_key() -> Result<(), Box<dyn std::error::Error>> {
        let db = crate::testing::TempDb::postgres().await?;
        let c = db.store.conn();
        let a = crate::testing::account(c, "links", crate::BodyPolicy::None).await?;
        let run = |sql: String| async move {
            c.execute_unprepared(&sql).await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        run(format!(
            "INSERT INTO thread_links (account_id, link_key, thread_id) \
             SELECT {}, 'm:' || i || '@x', 't' || i FROM generate_series(1, 30000) i",
            a.id.0
        ))
        .await?;
        run("ANALYZE thread_links".into()).await?;
        let ids: Vec<String> = (0..400).map(|i| format!("<r{i}@x>")).collect();
        let refs: Vec<String> = (0..400).map(|i| format!("<{}@x>", i * 70 + 1)).collect();
        let msgs: Vec<ThreadInput<'_>> = (0..400)
            .map(|i| ThreadInput {
                remote_id: "r",
                message_id: Some(&ids[i]),
                in_reply_to: Some(&refs[i]),
                references: None,
                subject: None,
            })
            .collect();
        // The counters of this backend not flushed yet (the statements above, ANALYZE's scan
        // among them) show too: what the batch did is the difference.
        let stats = |txn| async move {
            let row = sea_orm::ConnectionTrait::query_one_raw(
                txn,
                Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT seq_scan, idx_scan, current_setting('enable_seqscan') \
                     FROM pg_stat_xact_user_tables WHERE relname = 'thread_links'",
                ),
            )
            .await?
            .ok_or("no statistics for thread_links")?;
            Ok::<_, Box<dyn std::error::Error>>((
                row.try_get_by_index::<i64>(0)?,
                row.try_get_by_index::<i64>(1)?,
                row.try_get_by_index::<String>(2)?,
            ))
        };
        let txn = db.store.begin().await?;
        let before = stats(&txn).await?;
        let threads = assign(&txn, a.id, &msgs).await?;
        let after = stats(&txn).await?;
        txn.commit().await?;
        db.cleanup().await?;
        assert_eq!(threads[0], "t1", "the reply joins its parent's thread");
        assert_eq!(after.0 - before.0, 0, "sequential scans of thread_links");
        assert!(after.1 > before.1, "the look-up reads the key");
        assert_eq!(after.2, "on", "the setting is put back");
        Ok(())
    }
}
