//! SQLite's search index in a companion file beside the mail database (`<db>.search`, schema
//! v16): its connection pool, the check that it belongs to this database and is current, its
//! rebuild, and the indexing step that fills it from the mail database's `search_pending`.
//!
//! Why a second file: SQLite has one write lock per file. With the index in the mail
//! database, FTS5's work (tokenising, segment writes, merges: about a third of a first sync
//! with bodies) ran under the writer's lock, on the writer's thread. In its own file it is
//! written by another connection while the sync writes the mail, so it uses the second core.
//!
//! How the two files stay consistent without a transaction spanning both (WAL mode does not
//! make a two-file commit atomic):
//! - triggers in the mail database append one `search_pending` row per change, in the
//!   change's own transaction, with an `AUTOINCREMENT` sequence (`seq`);
//! - the companion records `indexed_seq`, "every note up to here is in the index", in the
//!   same transaction that writes the index rows: the mark can never run ahead of the index;
//! - notes up to the mark are garbage, deleted from the mail database later
//!   (`Companion::collect`, which records how far in `search_meta.collected_upto`);
//!   deleting them can never lose work;
//! - the companion's connections attach the mail database as `mail` and read it in the same
//!   transaction as they write the index: a consistent snapshot, and only the companion's
//!   write lock is taken (the first statement of each transaction writes the companion, so
//!   SQLite never has to upgrade a read snapshot, and the mail file's lock is never asked
//!   for: `BEGIN IMMEDIATE` would take every attached file's).
//!
//! The companion is valid for this database when its generation is `search_meta`'s and its
//! mark lies between the notes already collected and the last note issued; anything else (a
//! missing file, another database's file, a copy older or newer than the database) is
//! rebuilt from every email.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::{StoreError, redact_url};

/// The companion's file name: the mail database's, with this appended.
pub const SUFFIX: &str = ".search";

/// The index and its state. The FTS5 table is the one v11-v15 kept in the mail database:
/// contentless (the text lives in the mail database), rows keyed by `emails.id`, its words
/// split by `unicode61` and each distinct word of a column indexed once (`mailsync_fts`'s
/// tokenizer: phrases are checked against the text, see [`crate::search`]).
fn schema() -> [String; 2] {
    [
        format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS main.email_fts USING fts5(subject, sender, \
             recipients, body, content='', contentless_delete=1, tokenize='{}')",
            mailsync_fts::TOKENIZE
        ),
        "CREATE TABLE IF NOT EXISTS main.index_state (id INTEGER PRIMARY KEY CHECK (id = 1), \
         generation TEXT NOT NULL, indexed_seq INTEGER NOT NULL)"
            .to_owned(),
    ]
}

/// FTS5's merge settings (kept in its `email_fts_config` table). Every indexing step commits
/// a new segment; FTS5 merges them as they pile up, and with its defaults (merge 4 segments
/// of a level, 16 at most) each posting was rewritten at every level: replaying the text of
/// 100,000 generated messages (540 MB) into the index took 17.4 s of CPU, against 12.3 s
/// with these (12.0 s with merging all but off), on a loaded 2-core machine. The price is
/// more segments for a query to read (about 16 per level instead of 4); the search bench's
/// p99 stays far below its target.
const MERGE_CONFIG: &[(&str, i64)] = &[("automerge", 16), ("crisismerge", 64)];

/// The companion's pools (main = the index file, `mail` = the mail database, attached) and
/// the lock that lets one indexing step at a time run in this process (several accounts'
/// cycles index beside each other; without it they would queue on SQLite's busy handler).
#[derive(Debug)]
pub(crate) struct Companion {
    /// Searches, the validity check and rebuilds.
    pub(crate) db: DatabaseConnection,
    /// The indexing steps: one connection whose thread runs at a lower CPU priority
    /// ([`INDEXER_NICE`]).
    indexer: DatabaseConnection,
    step: tokio::sync::Mutex<()>,
}

/// The name prefix of the indexer's connection threads (SQLite connections run on threads of
/// their own; Linux keeps 15 bytes of a thread's name).
const INDEXER_THREAD: &str = "ms-index-";

/// The nice value of the indexer's threads (Linux; 0 is the default, 19 the lowest
/// priority). Indexing is background work: during a first sync the mail's download, parsing
/// and writes are what a user waits for, and the index only needs the CPU they leave. At
/// the same priority it took its share from them: a first sync of 100,000 messages beside a
/// replay of their text into FTS5 took 79.9 s at nice 0 and 49.4 s at nice 19 (a loaded
/// 2-core machine; the replay finished within the sync either way). 10, not 19, so a busy
/// machine still lets it catch up.
const INDEXER_NICE: i32 = 10;

/// Lowers the CPU priority of the indexer's connection threads (all of them: re-nicing one
/// already lowered changes nothing). Best effort: on failure the index is built at normal
/// priority.
#[cfg(target_os = "linux")]
fn lower_indexer_priority() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !comm.starts_with(INDEXER_THREAD) {
            continue;
        }
        let tid = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok());
        // On Linux a thread id given to setpriority(PRIO_PROCESS) names just that thread.
        if let Some(pid) = tid.and_then(rustix::process::Pid::from_raw)
            && let Err(e) = rustix::process::setpriority_process(Some(pid), INDEXER_NICE)
        {
            tracing::debug!(error = %e, "Could not lower the search indexer's priority.");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_indexer_priority() {}

/// The companion's path for a mail database at `mail`.
pub fn path_for(mail: &Path) -> PathBuf {
    let mut s = mail.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// What the index's validity depends on, read in one snapshot of both files.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// The companion's generation and mark (none before the first rebuild).
    index: Option<(String, i64)>,
    /// `search_meta.generation`.
    generation: String,
    /// Notes up to this seq are collected (`search_meta.collected_upto`).
    collected: i64,
    /// The last seq issued.
    issued: i64,
}

impl State {
    fn valid(&self) -> bool {
        self.index.as_ref().is_some_and(|(g, mark)| {
            *g == self.generation && self.collected <= *mark && *mark <= self.issued
        })
    }
}

fn sql(s: &str) -> Statement {
    Statement::from_string(DbBackend::Sqlite, s)
}

fn sql_with(s: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, s, values)
}

async fn one_i64<C: ConnectionTrait>(c: &C, s: Statement) -> Result<Option<i64>, StoreError> {
    Ok(match c.query_one_raw(s).await? {
        Some(r) => r.try_get::<Option<i64>>("", "v")?,
        None => None,
    })
}

/// The ids of the emails noted after the mark `?1` up to `?2` (an email may be noted more
/// than once; as an `IN` list that does not matter).
const NOTED: &str = "SELECT email_id FROM mail.search_pending WHERE seq > ?1 AND seq <= ?2";

/// Indexes the emails [`NOTED`] names: walks the noted ids and looks each email up (never the
/// whole emails table); deleted emails have no row and stay out.
///
/// Rows must reach FTS5 in rowid order: a rowid lower than the last one written flushes its
/// pending terms into a segment of their own. With the ids as an `IN` list SQLite walks them
/// in order; a join with `ORDER BY` instead sorted the finished rows, bodies included, in a
/// sorter that spilled to temporary files (about a tenth of the indexer's CPU in a first sync
/// of 10,000 messages, docs/benchmarks.md). The test `the_noted_rows_are_indexed_without_a_sort`
/// holds SQLite's plan to that.
fn index_noted_rows() -> String {
    index_rows(&format!(
        "FROM mail.emails e WHERE e.id IN ({NOTED}) ORDER BY e.id"
    ))
}

/// The text the index holds for the emails of `from` (a FROM clause naming the mail
/// database's emails `e`, in id order): subject, sender, recipients, cached text body.
fn index_rows(from: &str) -> String {
    let [subject, sender, recipients, body] = columns();
    format!(
        "INSERT INTO main.email_fts (rowid, subject, sender, recipients, body) \
         SELECT e.id, {subject}, {sender}, {recipients}, {body} {from}"
    )
}

/// The SQL expressions of the index's four columns for an email `e` (of the mail database,
/// attached or not): subject, sender, recipients, cached text body. A phrase is checked
/// against the same text the index was given (`mailsync_phrase`, see [`crate::search`]).
pub(crate) fn columns() -> [String; 4] {
    let addrs = |col: &str| {
        format!(
            "coalesce((SELECT group_concat(coalesce(json_extract(j.value, '$.name'), '') || ' ' || \
             coalesce(json_extract(j.value, '$.email'), ''), ' ') FROM json_each({col}) j), '')"
        )
    };
    [
        "coalesce(e.subject, '')".to_owned(),
        addrs("e.from_addr"),
        format!(
            "{} || ' ' || {} || ' ' || {}",
            addrs("e.to_addr"),
            addrs("e.cc_addr"),
            addrs("e.bcc_addr")
        ),
        "coalesce((SELECT b.text_body FROM email_bodies b WHERE b.email_id = e.id), '')".to_owned(),
    ]
}

impl Companion {
    /// Opens (creating) the companion of the SQLite database `url` names. Errors name the
    /// companion's file.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr as _;
        let mail = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::BadUrl {
                url: redact_url(url),
            })?
            .get_filename()
            .to_owned();
        let mail_str = mail.to_str().map(str::to_owned);
        let Some(mail_str) = mail_str.filter(|p| !p.is_empty() && p != ":memory:") else {
            // An in-memory database has no place beside it for the index.
            return Err(StoreError::BadUrl {
                url: format!(
                    "{} (the search index needs a database file)",
                    redact_url(url)
                ),
            });
        };
        let index = path_for(&mail);
        // The tokenizer and phrase function the index uses, on every connection opened after.
        mailsync_fts::install().map_err(|e| StoreError::Open {
            url: index.display().to_string(),
            source: sea_orm::DbErr::Custom(e.to_string()),
        })?;
        let db = Self::pool(url, &index, &mail_str, 2, false).await?;
        let indexer = Self::pool(url, &index, &mail_str, 1, true).await?;
        Ok(Self {
            db,
            indexer,
            step: tokio::sync::Mutex::new(()),
        })
    }

    /// A pool over the companion `index` with the mail database `mail` attached; `background`:
    /// the indexer's, whose threads run at a lower priority.
    async fn pool(
        url: &str,
        index: &Path,
        mail: &str,
        connections: u32,
        background: bool,
    ) -> Result<DatabaseConnection, StoreError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(connections);
        let index_file = index.to_owned();
        opts.map_sqlx_sqlite_opts(move |o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            let o = o
                .filename(&index_file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .pragma("journal_size_limit", crate::WAL_SIZE_LIMIT.to_string())
                .busy_timeout(Duration::from_secs(10));
            if background {
                o.thread_name(|id| format!("{INDEXER_THREAD}{id}"))
            } else {
                o
            }
        });
        let mail = mail.to_owned();
        opts.map_sqlx_sqlite_pool_opts(move |p| {
            let mail = mail.clone();
            p.after_connect(move |conn, _meta| {
                let mail = mail.clone();
                Box::pin(async move {
                    if background {
                        // The connection's thread exists (and is named) once it is connected.
                        lower_indexer_priority();
                    }
                    sea_orm::sqlx::query("ATTACH DATABASE ?1 AS mail")
                        .bind(mail)
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
        });
        Database::connect(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: index.display().to_string(),
                source,
            })
    }

    /// Reads what validity depends on. Called inside a transaction that already wrote the
    /// companion (so both files are read in one snapshot, under the companion's lock).
    async fn state<C: ConnectionTrait>(c: &C) -> Result<State, StoreError> {
        let index = match c
            .query_one_raw(sql(
                "SELECT generation, indexed_seq FROM main.index_state WHERE id = 1",
            ))
            .await?
        {
            Some(r) => Some((
                r.try_get::<String>("", "generation")?,
                r.try_get::<i64>("", "indexed_seq")?,
            )),
            None => None,
        };
        let (generation, collected) = match c
            .query_one_raw(sql(
                "SELECT generation, collected_upto FROM mail.search_meta WHERE id = 1",
            ))
            .await?
        {
            Some(r) => (
                r.try_get::<String>("", "generation")?,
                r.try_get::<i64>("", "collected_upto")?,
            ),
            None => (String::new(), 0),
        };
        let issued = one_i64(
            c,
            sql("SELECT seq AS v FROM mail.sqlite_sequence WHERE name = 'search_pending'"),
        )
        .await?
        .unwrap_or(0);
        Ok(State {
            index,
            generation,
            collected,
            issued,
        })
    }

    /// Begins a transaction holding the companion's write lock (and no lock on the mail
    /// database): a deferred transaction whose first statement writes the companion.
    async fn begin_write(
        db: &DatabaseConnection,
    ) -> Result<sea_orm::DatabaseTransaction, StoreError> {
        let txn = db.begin().await?;
        txn.execute_raw(sql(
            "UPDATE main.index_state SET indexed_seq = indexed_seq WHERE id = 1",
        ))
        .await?;
        Ok(txn)
    }

    /// Applies [`MERGE_CONFIG`] where the index holds other values (a companion created
    /// before it, or a new one), inside a transaction holding the companion's write lock.
    async fn configure<C: ConnectionTrait>(c: &C) -> Result<(), StoreError> {
        for (key, value) in MERGE_CONFIG {
            let current = one_i64(
                c,
                sql_with(
                    "SELECT CAST(v AS INTEGER) AS v FROM main.email_fts_config WHERE k = ?",
                    vec![(*key).into()],
                ),
            )
            .await?;
            if current != Some(*value) {
                c.execute_raw(sql_with(
                    "INSERT INTO main.email_fts (email_fts, rank) VALUES (?, ?)",
                    vec![(*key).into(), (*value).into()],
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Closes both pools.
    pub(crate) async fn close(self) -> Result<(), StoreError> {
        self.indexer.close().await?;
        Ok(self.db.close().await?)
    }

    /// Makes the companion fit to serve this database: creates its tables, and rebuilds it
    /// when it is not valid (see the module docs). `store` is the mail database's.
    /// Returns whether it rebuilt.
    pub(crate) async fn ensure(&self, store: &crate::Store) -> Result<bool, StoreError> {
        let _one = self.step.lock().await;
        // A companion made before the tokenizer (every word indexed, phrases asked of FTS5):
        // its table is dropped and the index rebuilt with the tokenizer (without its state
        // row the index is not valid).
        let current = self
            .db
            .query_one_raw(sql(
                "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = 'email_fts'",
            ))
            .await?
            .map(|r| r.try_get::<String>("", "sql"))
            .transpose()?;
        if current.is_some_and(|s| !s.contains(mailsync_fts::TOKENIZER)) {
            let txn = self.db.begin().await?;
            txn.execute_unprepared("DROP TABLE main.email_fts").await?;
            txn.execute_unprepared("DROP TABLE IF EXISTS main.index_state")
                .await?;
            txn.commit().await?;
            tracing::info!("The search index predates its tokenizer: rebuilding it.");
        }
        for s in schema() {
            self.db.execute_unprepared(&s).await?;
        }
        let txn = Self::begin_write(&self.db).await?;
        Self::configure(&txn).await?;
        let valid = Self::state(&txn).await?.valid();
        txn.commit().await?;
        if valid {
            return Ok(false);
        }
        // Every email is noted first, in the mail database, and the index is wiped after,
        // with its mark just below those notes: a crash between the two leaves an index that
        // is still invalid (rebuilt again), never an empty index that looks valid.
        let txn = store.begin().await?;
        let before = one_i64(
            &txn,
            sql("SELECT seq AS v FROM sqlite_sequence WHERE name = 'search_pending'"),
        )
        .await?
        .unwrap_or(0);
        // Earlier notes stay: should another process have rebuilt meanwhile (its index is
        // then kept, below), its notes of deleted emails are still needed to drop their rows.
        txn.execute_unprepared("INSERT INTO search_pending (email_id) SELECT id FROM emails")
            .await?;
        txn.commit().await?;
        let txn = Self::begin_write(&self.db).await?;
        // Another process may have rebuilt meanwhile (and indexed since): keep its work.
        let state = Self::state(&txn).await?;
        if !state.valid() {
            txn.execute_unprepared("INSERT INTO main.email_fts (email_fts) VALUES ('delete-all')")
                .await?;
            txn.execute_raw(sql_with(
                "INSERT OR REPLACE INTO main.index_state (id, generation, indexed_seq) \
                 VALUES (1, ?, ?)",
                vec![state.generation.clone().into(), before.into()],
            ))
            .await?;
            tracing::info!(
                "The search index was missing or did not match the database: rebuilding it."
            );
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Indexes the emails of the next notes after the mark, at most `max_notes` of them, in
    /// one transaction of the companion, and moves the mark past them. Returns how far the
    /// mark moved, in note sequence numbers (a replaced note leaves a gap, so it can exceed
    /// the notes indexed); 0: the index is current.
    pub(crate) async fn step(&self, max_notes: u64) -> Result<u64, StoreError> {
        let _one = self.step.lock().await;
        let txn = Self::begin_write(&self.indexer).await?;
        let Some(mark) = one_i64(
            &txn,
            sql("SELECT indexed_seq AS v FROM main.index_state WHERE id = 1"),
        )
        .await?
        else {
            return Err(StoreError::NotFound {
                what: "search index state",
                key: "(the store was not opened through Store::open or migrate)".into(),
            });
        };
        let upto = one_i64(
            &txn,
            sql_with(
                "SELECT max(seq) AS v FROM (SELECT seq FROM mail.search_pending WHERE seq > ? \
                 ORDER BY seq LIMIT ?)",
                vec![
                    mark.into(),
                    i64::try_from(max_notes).unwrap_or(i64::MAX).into(),
                ],
            ),
        )
        .await?;
        let Some(upto) = upto else {
            txn.commit().await?;
            return Ok(0);
        };
        // A row indexed before (changed or deleted since) leaves first; a new one has nothing
        // to remove, which costs one docsize lookup.
        txn.execute_raw(sql_with(
            &format!("DELETE FROM main.email_fts WHERE rowid IN ({NOTED})"),
            vec![mark.into(), upto.into()],
        ))
        .await?;
        txn.execute_raw(sql_with(
            &index_noted_rows(),
            vec![mark.into(), upto.into()],
        ))
        .await?;
        txn.execute_raw(sql_with(
            "UPDATE main.index_state SET indexed_seq = ? WHERE id = 1",
            vec![upto.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(u64::try_from(upto - mark).unwrap_or(0))
    }

    /// Deletes the notes the index has passed from the mail database (`store`'s; a short
    /// write). Returns how many.
    pub(crate) async fn collect(&self, store: &crate::Store) -> Result<u64, StoreError> {
        let Some(mark) = one_i64(
            &self.db,
            sql("SELECT indexed_seq AS v FROM main.index_state WHERE id = 1"),
        )
        .await?
        else {
            return Ok(0);
        };
        let first = one_i64(
            store.conn(),
            sql("SELECT min(seq) AS v FROM search_pending"),
        )
        .await?;
        if first.is_none_or(|f| f > mark) {
            return Ok(0);
        }
        let txn = store.begin().await?;
        let r = txn
            .execute_raw(sql_with(
                "DELETE FROM search_pending WHERE seq <= ?",
                vec![mark.into()],
            ))
            .await?;
        txn.execute_raw(sql_with(
            "UPDATE search_meta SET collected_upto = max(collected_upto, ?) WHERE id = 1",
            vec![mark.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_needs_the_generation_and_a_mark_between_collected_and_issued() {
        let s = |index: Option<(&str, i64)>, collected, issued| State {
            index: index.map(|(g, m)| (g.to_owned(), m)),
            generation: "g".into(),
            collected,
            issued,
        };
        for (state, want) in [
            (s(Some(("g", 5)), 5, 9), true),
            (s(Some(("g", 9)), 5, 9), true),
            (s(Some(("g", 0)), 0, 0), true),
            // Never rebuilt (a missing or new file).
            (s(None, 0, 0), false),
            // Another database's index.
            (s(Some(("h", 5)), 5, 9), false),
            // An older copy: notes it never indexed were collected.
            (s(Some(("g", 4)), 5, 9), false),
            // A copy newer than the database (the database restored from a backup).
            (s(Some(("g", 10)), 5, 9), false),
        ] {
            assert_eq!(state.valid(), want, "{state:?}");
        }
    }

    /// SQLite walks the noted ids in order, so the rows (bodies included) are never sorted.
    #[tokio::test]
    async fn the_noted_rows_are_indexed_without_a_sort() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let store = crate::Store::open(&url).await.expect("open");
        let plan = store
            .search_conn()
            .query_all_raw(sql_with(
                &format!("EXPLAIN QUERY PLAN {}", index_noted_rows()),
                vec![0i64.into(), 10i64.into()],
            ))
            .await
            .expect("plan");
        let steps: Vec<String> = plan
            .iter()
            .map(|r| r.try_get::<String>("", "detail").expect("detail"))
            .collect();
        assert!(
            steps.iter().all(|s| !s.contains("TEMP B-TREE")),
            "{steps:#?}"
        );
        store.close().await.expect("close");
    }

    #[test]
    fn the_companion_sits_beside_the_database() {
        assert_eq!(
            path_for(Path::new("/x/mail.db")),
            PathBuf::from("/x/mail.db.search")
        );
    }
}
