//! PostgreSQL planner statistics during bulk writes. A first sync grows the store's tables by
//! orders of magnitude in minutes, faster than autovacuum refreshes their statistics (and never,
//! where autovacuum is off). Plans made for a near-empty table then stay: the cached plan of
//! `emails::ids_by_remote_ids` scanned the whole table once per batch, about 1 s per batch at
//! 88,000 emails, so a first sync of 100,000 messages went quadratic. The writers report what
//! they inserted; once the emails may have doubled since the statistics were last refreshed,
//! the tables a sync writes are analysed (after the batch committed, outside its transaction).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::StoreError;

/// Below this many rows a sequential scan is as good as any plan: no refresh.
const MIN_GROWTH: u64 = 2_000;

/// The tables a sync writes, whose statistics drive its per-batch lookups.
const TABLES: &str = "emails, email_mailboxes, email_bodies, thread_links, thread_merges, attachments, email_search, \
     mailboxes";

/// Rows inserted since the statistics were last refreshed, and the size they describe.
#[derive(Debug, Default)]
pub(crate) struct Growth {
    since: AtomicU64,
    /// Emails the statistics last described (`u64::MAX`: not read yet).
    baseline: AtomicU64,
    running: AtomicBool,
}

impl Growth {
    pub(crate) fn new() -> Self {
        Self {
            since: AtomicU64::new(0),
            baseline: AtomicU64::new(u64::MAX),
            running: AtomicBool::new(false),
        }
    }

    /// Counts `inserted` new emails; on PostgreSQL, analyses the sync's tables when they may
    /// have doubled since the last refresh. Returns whether it did.
    pub(crate) async fn note(
        &self,
        db: &DatabaseConnection,
        inserted: u64,
    ) -> Result<bool, StoreError> {
        if db.get_database_backend() != DbBackend::Postgres || inserted == 0 {
            return Ok(false);
        }
        let since = self.since.fetch_add(inserted, Ordering::Relaxed) + inserted;
        if since < MIN_GROWTH {
            return Ok(false);
        }
        let mut baseline = self.baseline.load(Ordering::Relaxed);
        if baseline == u64::MAX {
            // -1 (never analysed) reads as 0.
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT greatest(reltuples, 0)::bigint AS n FROM pg_class \
                     WHERE oid = 'emails'::regclass",
                ))
                .await?;
            let n: i64 = match row {
                Some(r) => r.try_get("", "n")?,
                None => 0,
            };
            baseline = u64::try_from(n).unwrap_or(0);
            self.baseline.store(baseline, Ordering::Relaxed);
        }
        if since < baseline.max(MIN_GROWTH) {
            return Ok(false);
        }
        // One refresh at a time per store; the others just go on.
        if self.running.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let done = db
            .execute_unprepared(&format!("ANALYZE {TABLES}"))
            .await
            .map(|_| ());
        self.running.store(false, Ordering::Release);
        done?;
        self.since.fetch_sub(since, Ordering::Relaxed);
        self.baseline.store(baseline + since, Ordering::Relaxed);
        tracing::debug!(
            emails = baseline + since,
            ms = started.elapsed().as_millis() as u64,
            "planner statistics refreshed"
        );
        Ok(true)
    }
}
