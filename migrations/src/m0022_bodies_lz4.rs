//! v20, PostgreSQL: bodies and search documents compressed with LZ4 instead of pglz. A value
//! over ~2 KB is compressed as it is stored (TOAST), and pglz, the default, was a fifth of the
//! server's CPU in a first sync with bodies (`perf`, 10,000 messages): a first sync without the
//! index took 4.8-4.9 s with pglz, 3.9-4.2 s with LZ4 (docs/benchmarks.md). Only values
//! written afterwards are compressed the new way; old ones stay readable as they are. A server
//! built without LZ4 (`--with-lz4`) refuses the setting, and one before PostgreSQL 14 does not
//! know it: the step then leaves pglz in place instead of failing the upgrade. SQLite is unchanged.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The columns whose values are large enough to be compressed: cached bodies and the search
/// documents.
const COLUMNS: &[(&str, &[&str])] = &[
    ("email_bodies", &["text_body", "html_body", "raw"]),
    ("email_search", &["doc"]),
];

/// Sets the compression of every column in [`COLUMNS`], skipped where the server cannot (the error is caught inside the statement, so the migration's transaction
/// stays usable).
async fn set(m: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for (table, columns) in COLUMNS {
        let alters = columns
            .iter()
            .map(|c| format!("ALTER COLUMN {c} SET COMPRESSION {method}"))
            .collect::<Vec<_>>()
            .join(", ");
        db.execute_unprepared(&format!(
            "DO $$ BEGIN EXECUTE 'ALTER TABLE {table} {alters}'; \
             EXCEPTION WHEN feature_not_supported OR syntax_error THEN \
             RAISE NOTICE 'mailsync: % keeps its compression: %', '{table}', SQLERRM; END $$"
        ))
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set(m, "lz4").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set(m, "default").await
    }
}
