//! v15: PostgreSQL's search documents are rebuilt. From v15 the store builds each `tsvector`
//! itself (words split and lower-cased as queries are, which are now read as `tsquery` input
//! rather than through the server's text-search parser: the parser cost ~1.2 ms per 5 KB
//! body). Documents built by the server before may split or lower-case a word differently,
//! so every email is noted for indexing again; the next batch or search rebuilds them.
//! SQLite's FTS5 index is unchanged.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        note_every_email_on_postgres(m).await
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // The rebuilt documents are valid for v14's queries too (the same words).
        Ok(())
    }
}

/// PostgreSQL: notes every email for indexing again (its document is rebuilt by the next
/// batch or search). Also v17's step.
pub(crate) async fn note_every_email_on_postgres(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = m.get_connection();
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(
            "INSERT INTO search_pending (email_id) SELECT id FROM emails ON CONFLICT DO NOTHING",
        )
        .await?;
    }
    Ok(())
}
