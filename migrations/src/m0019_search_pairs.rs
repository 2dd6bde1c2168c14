//! v17: PostgreSQL's search documents gain word pairs. From v17 each `tsvector` also holds,
//! for every two words in a row within a field, one of 65,536 lexemes standing for the pair
//! (`_` and four hex digits of a hash), and a phrase query asks for its pairs' lexemes too,
//! so the GIN index leaves few documents whose positions PostgreSQL must check (GIN keeps no
//! positions). Documents built before have no pairs, so every email is noted for indexing
//! again; the next batch or search rebuilds them (a search first indexes whatever is noted,
//! so no phrase is missed meanwhile). SQLite's FTS5 index keeps positions and is unchanged.

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
        crate::m0017_search_docs_rebuilt::note_every_email_on_postgres(m).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // v16's queries read phrases with `<->`, which documents with pairs still answer;
        // only the pairs' lexemes would be left over. Rebuild them without.
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "UPDATE email_search SET doc = ts_delete(doc, ARRAY(SELECT lexeme FROM \
                 unnest(doc) WHERE strpos(lexeme, '_') > 0)) WHERE strpos(CAST(doc AS text), '_') > 0",
            )
            .await?;
        }
        Ok(())
    }
}
