//! v16: SQLite's search index moves out of the mail database into a companion file beside it
//! (`<db>.search`, kept by the store), so indexing no longer holds the mail database's single
//! write lock: it runs on another connection, on the second core, beside a sync's writes.
//!
//! What stays here is the queue of what to index: triggers note each changed email in
//! `search_pending`, now keyed by an `AUTOINCREMENT` sequence so the companion can record
//! "indexed up to seq N" in its own file, in the transaction that writes the index (a crash
//! can never leave the mark ahead of the index, and the indexer never writes this file on
//! its hot path). `search_meta.generation` names this database, so a companion that belongs
//! to another one is noticed and rebuilt; `search_meta.collected_upto` records how far the
//! notes the index had passed were deleted, so an older copy of the companion is noticed. The old in-file index is dropped; the store
//! rebuilds the companion from every email when it finds it missing (`Store::migrate`).
//!
//! PostgreSQL is unchanged: it has no single write lock, and its index stays in its tables.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The note each trigger makes: the email's earlier note, if any, gives way to a new one at
/// the end of the queue, so an email is noted once however many of its rows a transaction
/// writes (its row, then its body). Two notes of one email would have it indexed twice
/// whenever the indexer's step ended between them: the first time already with the body.
fn note(id: &str) -> String {
    format!(
        "DELETE FROM search_pending WHERE email_id = {id}; \
         INSERT INTO search_pending (email_id) VALUES ({id});"
    )
}

fn sqlite_up() -> Vec<String> {
    let mut v: Vec<String> = ["ai", "au", "ad", "bi", "bu", "bd"]
        .iter()
        .map(|t| format!("DROP TRIGGER IF EXISTS email_fts_{t}"))
        .collect();
    v.extend([
        "DROP TABLE IF EXISTS email_fts".to_owned(),
        "DROP TABLE IF EXISTS search_pending".to_owned(),
        // A note's seq is new with each change (see `note`): the indexer passes notes in seq
        // order, and a change made while it indexes an email's earlier state gets a seq
        // beyond the indexer's snapshot.
        "CREATE TABLE search_pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
         email_id INTEGER NOT NULL)"
            .to_owned(),
        "CREATE INDEX search_pending_email ON search_pending (email_id)".to_owned(),
        // `collected_upto`: notes up to this seq were deleted because the index had passed
        // them; an index whose mark is below it missed them.
        "CREATE TABLE search_meta (id INTEGER PRIMARY KEY CHECK (id = 1), \
         generation TEXT NOT NULL, collected_upto INTEGER NOT NULL DEFAULT 0)"
            .to_owned(),
        "INSERT INTO search_meta (id, generation) VALUES (1, lower(hex(randomblob(16))))"
            .to_owned(),
        format!(
            "CREATE TRIGGER search_note_ei AFTER INSERT ON emails BEGIN {} END",
            note("NEW.id")
        ),
        format!(
            "CREATE TRIGGER search_note_eu AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
             bcc_addr ON emails WHEN OLD.subject IS NOT NEW.subject \
             OR OLD.from_addr IS NOT NEW.from_addr OR OLD.to_addr IS NOT NEW.to_addr \
             OR OLD.cc_addr IS NOT NEW.cc_addr OR OLD.bcc_addr IS NOT NEW.bcc_addr BEGIN {} END",
            note("NEW.id")
        ),
        format!(
            "CREATE TRIGGER search_note_ed AFTER DELETE ON emails BEGIN {} END",
            note("OLD.id")
        ),
        format!(
            "CREATE TRIGGER search_note_bi AFTER INSERT ON email_bodies BEGIN {} END",
            note("NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER search_note_bu AFTER UPDATE OF text_body ON email_bodies \
             WHEN OLD.text_body IS NOT NEW.text_body BEGIN {} END",
            note("NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER search_note_bd AFTER DELETE ON email_bodies BEGIN {} END",
            note("OLD.email_id")
        ),
    ]);
    v
}

/// Back to v15: the index in this file again (v11's table and delete trigger, v13's noting
/// triggers), every email noted so the next batch or search fills it. The companion file is
/// left on disk; going up again rebuilds it (a new generation).
fn sqlite_down() -> Vec<String> {
    let mut v: Vec<String> = ["ei", "eu", "ed", "bi", "bu", "bd"]
        .iter()
        .map(|t| format!("DROP TRIGGER IF EXISTS search_note_{t}"))
        .collect();
    v.extend([
        "DROP TABLE IF EXISTS search_meta".to_owned(),
        "DROP TABLE IF EXISTS search_pending".to_owned(),
        "CREATE VIRTUAL TABLE email_fts USING fts5(subject, sender, recipients, body, \
         content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2')"
            .to_owned(),
        "CREATE TRIGGER email_fts_ad AFTER DELETE ON emails BEGIN \
         DELETE FROM email_fts WHERE rowid = OLD.id; END"
            .to_owned(),
    ]);
    v.extend(crate::m0015_search_deferred::sqlite_up());
    v.push("INSERT INTO search_pending (email_id) SELECT id FROM emails".to_owned());
    v
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            return Ok(());
        }
        for s in sqlite_up() {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            return Ok(());
        }
        for s in sqlite_down() {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }
}
