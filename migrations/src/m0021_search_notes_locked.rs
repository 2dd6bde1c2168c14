//! v19, PostgreSQL: noting an email for search locks its note. From v19 PostgreSQL's search
//! index is filled beside the writers, by a transaction of its own that takes notes with
//! `FOR UPDATE SKIP LOCKED` (`store::search`), instead of inside each writer's batch. A
//! trigger that met an existing note did nothing (`ON CONFLICT DO NOTHING` takes no lock), so
//! an indexer could take that note, index the email as it was before the writer's change, and
//! delete the note: the change would never be indexed. Now the trigger updates the note in
//! place (`DO UPDATE`, which locks it): the indexer skips a note a writer holds, and a writer
//! that meets a note the indexer is taking waits, then notes the email again. SQLite is
//! unchanged (its companion orders notes by a sequence instead).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// v13's noting functions (`m0015_search_deferred`), with the conflict clause to use.
fn functions(on_conflict: &str) -> Vec<String> {
    let f = |name: &str, body: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             {body} {on_conflict}; RETURN NULL; END $$"
        )
    };
    vec![
        f(
            "mailsync_note_new",
            "INSERT INTO search_pending (email_id) SELECT DISTINCT n.id FROM new_rows n",
        ),
        f(
            "mailsync_note_new_body",
            "INSERT INTO search_pending (email_id) SELECT DISTINCT n.email_id FROM new_rows n",
        ),
        f(
            "mailsync_note_old_body",
            "INSERT INTO search_pending (email_id) SELECT DISTINCT o.email_id FROM old_rows o",
        ),
        f(
            "mailsync_note_email_row",
            "INSERT INTO search_pending (email_id) VALUES (NEW.id)",
        ),
        f(
            "mailsync_note_body_row",
            "INSERT INTO search_pending (email_id) VALUES (NEW.email_id)",
        ),
    ]
}

async fn replace(m: &SchemaManager<'_>, on_conflict: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for s in functions(on_conflict) {
        db.execute_unprepared(&s).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        replace(
            m,
            "ON CONFLICT (email_id) DO UPDATE SET email_id = EXCLUDED.email_id",
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        replace(m, "ON CONFLICT DO NOTHING").await
    }
}
