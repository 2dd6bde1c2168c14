//! The mailsync local mail database: SeaORM entities and typed repository functions over the
//! schema defined by the `migration` crate, on SQLite (the default) or PostgreSQL with the same code.
//!
//! # Overview
//! [`Store::open`] connects and migrates to the latest schema version. The repository modules
//! ([`accounts`], [`mailboxes`], [`emails`], [`bodies`], [`checkpoints`], [`queue`], [`sync_log`])
//! are free functions taking any [`ConnectionTrait`], so a caller can run several of them in one
//! transaction: that is how a sync batch and the checkpoint covering it commit together.
//!
//! This crate knows no protocol. Protocol cursors are opaque columns (a JMAP state string, IMAP
//! UIDVALIDITY / last UID / HIGHESTMODSEQ), and queue payloads are JSON owned by the outbox.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), mailsync_store::StoreError> {
//! use mailsync_store::{Store, TransactionTrait, checkpoints::{self, Checkpoint, Scope}};
//! let store = Store::open("sqlite://./mail.db?mode=rwc").await?;
//! let txn = store.begin().await?;
//! // ... emails::upsert_batch(&txn, account, &batch).await? ...
//! # let account = mailsync_store::AccountId(1);
//! checkpoints::put(&txn, account, &Scope::jmap("Email"), &Checkpoint::state("42")).await?;
//! txn.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//! Every function returns [`StoreError`]. [`StoreError::is_transient`] tells a busy/locked database
//! (retry shortly) from a real failure.

pub mod accounts;
pub mod bodies;
pub mod changes;
pub mod checkpoints;
pub mod companion;
pub mod daemons;
pub mod emails;
pub mod entity;
pub mod leases;
pub mod mailboxes;
mod planner;
pub mod queue;
pub mod search;
mod sql;
pub mod sync_log;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod threads;
mod types;
pub mod uids;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DbBackend, DbErr, SqliteTransactionMode, TransactionOptions,
};

pub use migration::LATEST_VERSION;
pub use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
pub use types::{
    AccountId, AccountKind, Address, BodyPolicy, ChangeId, EmailId, FailedId, Flags, MailboxId,
    Role, SecretRef, Security, SyncLogId,
};

/// The schema version whose tables local threading uses (v11 introduced it, v18 added
/// `thread_merges`); mail stored before v11 is threaded once this version is reached.
const THREADS_VERSION: u32 = 18;
/// The schema version from which SQLite's search index lives in a companion file.
const COMPANION_VERSION: u32 = 16;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error(
        "unsupported database URL {url:?}: expected sqlite://PATH?mode=rwc or postgres://USER@HOST/DB"
    )]
    BadUrl {
        /// The URL with any password removed.
        url: String,
    },
    /// The database could not be opened or reached.
    #[error("cannot open database {url}: {source}")]
    Open {
        /// The URL with any password removed.
        url: String,
        /// What the driver said.
        #[source]
        source: DbErr,
    },
    /// Migrating the schema failed.
    #[error("schema migration failed: {0}")]
    Migration(#[source] DbErr),
    /// Any other database error.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A text column holds a value this version does not understand.
    #[error("invalid {what} value {value:?}")]
    InvalidValue {
        /// The type being parsed.
        what: &'static str,
        /// The offending text.
        value: String,
    },
    /// A JSON column could not be (de)serialised.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        /// The column.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The row asked for does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// The kind of row ("account", "email", ...).
        what: &'static str,
        /// How it was looked up.
        key: String,
    },
    /// A search query that does not parse.
    #[error("invalid search query: {reason}")]
    BadQuery {
        /// What is wrong, naming the culprit.
        reason: String,
    },
    /// A row with this unique key exists already.
    #[error("{what} {key} already exists")]
    AlreadyExists {
        /// The kind of row.
        what: &'static str,
        /// The duplicate key.
        key: String,
    },
}

impl StoreError {
    /// True for conditions that go away on their own: SQLite busy/locked, a PostgreSQL
    /// deadlock, serialization failure or lock timeout (the transaction was rolled back), no
    /// pooled connection in time, a dropped connection. Decided from the databases' typed
    /// codes, never from message text.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) | Self::Open { source: e, .. } => db_err_is_transient(e),
            _ => false,
        }
    }

    pub(crate) fn json(what: &'static str, source: serde_json::Error) -> Self {
        Self::Json { what, source }
    }
}

fn db_err_is_transient(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(s))
        | DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        _ => return false,
    };
    match sqlx.as_ref() {
        Sqlx::PoolTimedOut | Sqlx::Io(_) | Sqlx::PoolClosed => true,
        Sqlx::Database(d) => {
            let sqlite = d
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some();
            d.code().is_some_and(|c| transient_code(sqlite, &c))
        }
        _ => false,
    }
}

/// SQLite primary result codes BUSY (5) and LOCKED (6), also within extended codes (SQLite
/// reports e.g. 517 = BUSY_SNAPSHOT); PostgreSQL SQLSTATEs for a deadlock (40P01), a
/// serialization failure (40001) and a lock not available (55P03).
fn transient_code(sqlite: bool, code: &str) -> bool {
    if sqlite {
        code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
    } else {
        matches!(code, "40P01" | "40001" | "55P03")
    }
}

/// WAL pages past which a SQLite commit checkpoints by itself (~40 MB with 4 KiB pages;
/// SQLite's default is 1,000). See [`Store::checkpoint_wal`].
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Bytes a SQLite WAL file is cut back to when SQLite starts it over (every connection sets
/// it). Without it the file keeps its high-water mark for good: 605 MB after a first sync of
/// 100,000 messages, the WAL holding only a few frames. 64 MiB keeps the usual batch's
/// frames in pages already allocated.
pub const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The soft limit on SQLite's memory in this process, in bytes, set when a store opens and no
/// limit is set yet (SQLite's limit is process-wide: an application that set its own keeps
/// it). Past it SQLite recycles cached pages (one LRU over every connection) instead of
/// allocating more, so its memory stays bounded however many connections the pools open and
/// however large the database grows. Unbounded, the page caches and prepared statements of
/// the mail pool's and the search companion's connections held about 28 MB at the peak of a
/// first sync of 100,000 messages. Measured at that size (docs/benchmarks.md): 10 MiB cut
/// the peak RSS by 10-13 MiB for about 2 % more time (0-4 % headers-only); 8 MiB by 14 MiB,
/// but cost 7 % (pages read again from the OS's cache), 12 % on a headers-only sync.
pub const SQLITE_SOFT_HEAP_LIMIT: i64 = 10 * 1024 * 1024;

/// Sets [`SQLITE_SOFT_HEAP_LIMIT`] unless a limit is already set (a new connection's hook).
async fn limit_sqlite_heap(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    let current: i64 = sea_orm::sqlx::query_scalar("PRAGMA soft_heap_limit")
        .fetch_one(&mut *conn)
        .await?;
    if current == 0 {
        sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!(
            "PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_LIMIT}"
        )))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Prepared statements kept per SQLite connection (sqlx's default is 100).
const STATEMENT_CACHE: usize = 16;

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite (a file, WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A handle on the local mail database. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite: the search index's companion file (see [`companion`]); none on PostgreSQL.
    companion: Option<std::sync::Arc<companion::Companion>>,
    /// Bulk-write bookkeeping shared by the clones (see [`Store::note_inserted`]).
    growth: std::sync::Arc<planner::Growth>,
}

/// Removes the password from a URL before it appears in an error or a log line.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Opens the database at `url` and migrates it to [`LATEST_VERSION`].
    ///
    /// `sqlite://PATH?mode=rwc` creates the file when missing; SQLite runs in WAL mode with
    /// foreign keys on, `synchronous=NORMAL` and a 10 s busy timeout. `postgres://...` works the same.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without touching its schema (for migration tests and tools).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let is_sqlite = url.starts_with("sqlite:");
        let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_sqlite && !is_pg {
            return Err(StoreError::BadUrl {
                url: redact_url(url),
            });
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(5));
        if is_sqlite {
            // WAL lets readers (the CLI) run while a sync writes; NORMAL is durable across
            // process crashes in WAL mode, which is the guarantee we promise.
            opts.map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    // A commit checkpoints the WAL itself only past ~40 MB: bulk writers
                    // checkpoint beside their next write instead (`Store::checkpoint_wal`).
                    .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
                    // Batches write multi-row statements whose row count varies (thread
                    // links, memberships, look-ups by id lists): each count is a new prepared
                    // statement, up to thousands of parameters, and sqlx's default cache kept
                    // 100 of them per connection. 16 keeps the hot ones and cut a first
                    // sync's peak memory at 100,000 messages from ~120 to ~80 MiB, at no cost
                    // in time (docs/benchmarks.md).
                    .statement_cache_capacity(STATEMENT_CACHE)
            });
            opts.map_sqlx_sqlite_pool_opts(|p| {
                p.after_connect(|conn, _meta| Box::pin(limit_sqlite_heap(conn)))
            });
            // One writer at a time anyway; a small pool avoids lock ping-pong.
            opts.max_connections(4);
        } else {
            opts.max_connections(10);
        }
        let db = Database::connect(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: redact_url(url),
                source,
            })?;
        let companion = if is_sqlite {
            Some(std::sync::Arc::new(companion::Companion::open(url).await?))
        } else {
            None
        };
        Ok(Self {
            db,
            companion,
            growth: std::sync::Arc::new(planner::Growth::new()),
        })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let before = self.schema_version().await?;
        Migrator::up(&self.db, None)
            .await
            .map_err(StoreError::Migration)?;
        self.after_upgrade(before).await
    }

    /// Data steps a migration cannot do in SQL: threading mail stored before v11 (at v18); from v16,
    /// making SQLite's search companion fit for this database (rebuilt when missing, another
    /// database's, or out of step with it).
    async fn after_upgrade(&self, before: u32) -> Result<(), StoreError> {
        let now = self.schema_version().await?;
        // Threading uses v18's `thread_merges`, so mail stored before v11 is threaded once the
        // schema reaches v18 (a database upgraded part of the way keeps it unthreaded until
        // then; the backfill only reads unthreaded mail).
        if before > 0 && before < THREADS_VERSION && now >= THREADS_VERSION {
            let txn = self.begin().await?;
            threads::backfill(&txn).await?;
            txn.commit().await?;
        }
        if now >= COMPANION_VERSION
            && let Some(c) = &self.companion
        {
            c.ensure(self).await?;
        }
        Ok(())
    }

    /// Migrates up or down until the schema is exactly at `version` (0 = empty).
    pub async fn migrate_to(&self, version: u32) -> Result<(), StoreError> {
        let current = self.schema_version().await?;
        if version > current {
            Migrator::up(&self.db, Some(version - current))
                .await
                .map_err(StoreError::Migration)?;
            self.after_upgrade(current).await
        } else if version < current {
            Migrator::down(&self.db, Some(current - version))
                .await
                .map_err(StoreError::Migration)
        } else {
            Ok(())
        }
    }

    /// The number of migrations applied.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let applied = Migrator::get_applied_migrations(&self.db)
            .await
            .map_err(StoreError::Migration)?;
        Ok(u32::try_from(applied.len()).unwrap_or(u32::MAX))
    }

    /// The underlying connection pool, for the repository functions.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Writers call this after committing a batch that inserted `inserted` emails. On
    /// PostgreSQL, once the emails may have doubled since the planner's statistics were last
    /// refreshed (and by at least 2,000 rows), it analyses the tables a sync writes, so the
    /// per-batch lookups keep index plans as a first sync grows the tables (see `planner`).
    /// Returns whether it did. Does nothing on SQLite. A failure only costs speed: it is
    /// logged, not returned, so it never fails the sync that called it.
    pub async fn note_inserted(&self, inserted: u64) -> bool {
        match self.growth.note(&self.db, inserted).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "Could not refresh the planner's statistics.");
                false
            }
        }
    }

    /// Copies committed WAL frames into the SQLite database file (a passive checkpoint, on a
    /// connection of its own), so commits need not. Bulk writers run it beside their next
    /// batch's write (a `join!` in their task): the copy and its fsync then use the second
    /// core instead of holding up the writer, which took a quarter of a first sync's write
    /// time when each commit past 1,000 pages (SQLite's default) checkpointed in line. A
    /// passive checkpoint never waits for the writer, so it copies what it can; the commit's
    /// own checkpoint (past [`WAL_AUTOCHECKPOINT_PAGES`]) bounds the WAL when nobody calls
    /// this. Does nothing on PostgreSQL. A failure is logged, not returned: it costs only
    /// speed.
    pub async fn checkpoint_wal(&self) {
        if self.backend() != Backend::Sqlite {
            return;
        }
        let stmt =
            sea_orm::Statement::from_string(DbBackend::Sqlite, "PRAGMA wal_checkpoint(PASSIVE)");
        if let Err(e) = self.db.query_one_raw(stmt).await {
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
    }

    /// Indexes for search the emails of up to `max_notes` changes noted since the index was
    /// last brought up to date, in one transaction beside the writers (the engine joins it to
    /// each cycle, and a search catches up first). SQLite: in its search companion, on its own
    /// connection, taking the companion's write lock, never the mail database's; returns how
    /// far it moved through the notes' sequence. PostgreSQL: on the store's pool, taking notes
    /// no writer holds (`search::pg_index_step`); returns how many notes it consumed. 0: the
    /// index is current, as far as committed writes go.
    pub async fn index_noted(&self, max_notes: u64) -> Result<u64, StoreError> {
        match &self.companion {
            Some(c) => c.step(max_notes).await,
            None if self.backend() == Backend::Postgres => {
                search::pg_index_step(self, max_notes).await
            }
            None => Ok(0),
        }
    }

    /// Deletes from the mail database the notes SQLite's search index has passed (a short
    /// write; callers run it once the index has caught up, not per step). Returns how many.
    /// Nothing to do on PostgreSQL.
    pub async fn collect_noted(&self) -> Result<u64, StoreError> {
        match &self.companion {
            Some(c) => c.collect(self).await,
            None => Ok(0),
        }
    }

    /// The connection a search's full-text query runs on: SQLite's companion pool (the index
    /// as `main`, the mail database attached as `mail`), else the store's pool. Public for
    /// checks of the index itself (tests, diagnostics); write through [`Store::conn`].
    pub fn search_conn(&self) -> &DatabaseConnection {
        self.companion.as_ref().map_or(&self.db, |c| &c.db)
    }

    /// Starts a transaction. Dropping it without `commit` rolls back.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock at once, waiting for it under
    /// the busy timeout. A deferred transaction that reads and then writes fails at once with
    /// `SQLITE_BUSY_SNAPSHOT` (517, no waiting) when another connection committed in between —
    /// the lease heartbeat does so every few hundred milliseconds beside a sync.
    pub async fn begin(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: match self.backend() {
                Backend::Sqlite => Some(SqliteTransactionMode::Immediate),
                Backend::Postgres => None,
            },
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        match self.db.get_database_backend() {
            DbBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<(), StoreError> {
        if let Some(c) = self.companion
            && let Ok(c) = std::sync::Arc::try_unwrap(c)
        {
            c.close().await?;
        }
        Ok(self.db.close().await?)
    }
}

/// The current time, truncated to microseconds so it round-trips through both backends exactly.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opening a SQLite store bounds SQLite's memory in the process.
    #[tokio::test]
    async fn a_sqlite_store_bounds_sqlites_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let store = Store::open(&url).await.expect("open");
        let limit = store
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA soft_heap_limit",
            ))
            .await
            .expect("pragma")
            .expect("a row")
            .try_get_by_index::<i64>(0)
            .expect("value");
        assert_eq!(limit, SQLITE_SOFT_HEAP_LIMIT);
        store.close().await.expect("close");
    }

    #[test]
    fn transient_codes_are_typed_per_backend() {
        for (sqlite, code, want) in [
            (true, "5", true),
            (true, "6", true),
            (true, "517", true),
            (true, "261", true),
            (true, "2067", false),
            (true, "19", false),
            (false, "40P01", true),
            (false, "40001", true),
            (false, "55P03", true),
            (false, "23505", false),
            (false, "5", false),
        ] {
            assert_eq!(transient_code(sqlite, code), want, "{sqlite} {code}");
        }
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
    }
}
