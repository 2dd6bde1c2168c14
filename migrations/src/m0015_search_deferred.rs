//! v12: the search index is filled in bulk instead of row by row. Triggers no longer index a
//! row; they only note its id in `search_pending` (a cheap integer insert), and the store
//! indexes the noted rows in one statement per batch (`search::index_pending`), inside the
//! transaction that wrote them: a row is indexed once, with its body, in rowid order, instead
//! of once at insert and again (delete + insert) when its body arrives. Deleting an email
//! still removes its index row at once (SQLite trigger; PostgreSQL `ON DELETE CASCADE`).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The old (v11) per-row indexing triggers, restored by `down`.
fn sqlite_addrs(col: &str) -> String {
    format!(
        "coalesce((SELECT group_concat(coalesce(json_extract(j.value, '$.name'), '') || ' ' || \
         coalesce(json_extract(j.value, '$.email'), ''), ' ') FROM json_each({col}) j), '')"
    )
}

/// SQLite: inserts the index rows of the emails selected by `from_where` (`e` = emails).
fn sqlite_index_rows(from_where: &str) -> String {
    format!(
        "INSERT INTO email_fts (rowid, subject, sender, recipients, body) \
         SELECT e.id, coalesce(e.subject, ''), {from}, {to} || ' ' || {cc} || ' ' || {bcc}, \
         coalesce((SELECT b.text_body FROM email_bodies b WHERE b.email_id = e.id), '') \
         {from_where};",
        from = sqlite_addrs("e.from_addr"),
        to = sqlite_addrs("e.to_addr"),
        cc = sqlite_addrs("e.cc_addr"),
        bcc = sqlite_addrs("e.bcc_addr"),
    )
}

const SQLITE_CHANGED: &str = "OLD.subject IS NOT NEW.subject OR OLD.from_addr IS NOT NEW.from_addr \
     OR OLD.to_addr IS NOT NEW.to_addr OR OLD.cc_addr IS NOT NEW.cc_addr \
     OR OLD.bcc_addr IS NOT NEW.bcc_addr";

fn sqlite_drop_row_triggers() -> Vec<String> {
    ["ai", "au", "bi", "bu", "bd"]
        .iter()
        .map(|t| format!("DROP TRIGGER IF EXISTS email_fts_{t}"))
        .collect()
}

pub(crate) fn sqlite_up() -> Vec<String> {
    // Not `INSERT OR IGNORE`: inside a trigger the outer statement's conflict handling wins,
    // and an email upsert (`INSERT ... ON CONFLICT DO UPDATE`) made the ignore an abort.
    let note = |id: &str| {
        format!(
            "INSERT INTO search_pending (email_id) SELECT {id} \
             WHERE NOT EXISTS (SELECT 1 FROM search_pending WHERE email_id = {id});"
        )
    };
    let mut v = sqlite_drop_row_triggers();
    v.extend([
        "CREATE TABLE search_pending (email_id INTEGER PRIMARY KEY NOT NULL)".to_owned(),
        format!(
            "CREATE TRIGGER email_fts_ai AFTER INSERT ON emails BEGIN {} END",
            note("NEW.id")
        ),
        format!(
            "CREATE TRIGGER email_fts_au AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
             bcc_addr ON emails WHEN {SQLITE_CHANGED} BEGIN {} END",
            note("NEW.id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bi AFTER INSERT ON email_bodies BEGIN {} END",
            note("NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bu AFTER UPDATE OF text_body ON email_bodies \
             WHEN OLD.text_body IS NOT NEW.text_body BEGIN {} END",
            note("NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bd AFTER DELETE ON email_bodies BEGIN {} END",
            note("OLD.email_id")
        ),
    ]);
    v
}

fn sqlite_down() -> Vec<String> {
    let mut v = vec![
        // Index what is still noted, then go back to the triggers of v12 (v11's, with m0014's
        // statement-level insert trigger).
        "DELETE FROM email_fts WHERE rowid IN (SELECT email_id FROM search_pending)".to_owned(),
        sqlite_index_rows("FROM search_pending p JOIN emails e ON e.id = p.email_id ORDER BY e.id"),
    ];
    v.extend(sqlite_drop_row_triggers());
    v.push("DROP TABLE search_pending".to_owned());
    v.extend([
        format!(
            "CREATE TRIGGER email_fts_ai AFTER INSERT ON emails BEGIN {} END",
            sqlite_index_rows("FROM emails e WHERE e.id = NEW.id")
        ),
        format!(
            "CREATE TRIGGER email_fts_au AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
             bcc_addr ON emails WHEN {SQLITE_CHANGED} BEGIN DELETE FROM email_fts WHERE rowid = OLD.id; {} END",
            sqlite_index_rows("FROM emails e WHERE e.id = NEW.id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bi AFTER INSERT ON email_bodies BEGIN \
             DELETE FROM email_fts WHERE rowid = NEW.email_id; {} END",
            sqlite_index_rows("FROM emails e WHERE e.id = NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bu AFTER UPDATE OF text_body ON email_bodies \
             WHEN OLD.text_body IS NOT NEW.text_body BEGIN \
             DELETE FROM email_fts WHERE rowid = NEW.email_id; {} END",
            sqlite_index_rows("FROM emails e WHERE e.id = NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bd AFTER DELETE ON email_bodies BEGIN \
             DELETE FROM email_fts WHERE rowid = OLD.email_id; {} END",
            sqlite_index_rows("FROM emails e WHERE e.id = OLD.email_id")
        ),
    ]);
    v
}

fn postgres_up() -> Vec<String> {
    [
        "DROP TRIGGER IF EXISTS email_search_bodies ON email_bodies",
        "DROP TRIGGER IF EXISTS email_search_upd ON emails",
        "DROP TRIGGER IF EXISTS email_search_ins ON emails",
        "DROP FUNCTION IF EXISTS mailsync_bodies_search_trg()",
        "DROP FUNCTION IF EXISTS mailsync_emails_search_trg()",
        // v12's (m0014) statement-level insert trigger function.
        "DROP FUNCTION IF EXISTS mailsync_emails_search_ins_trg()",
        "CREATE TABLE search_pending (email_id BIGINT PRIMARY KEY)",
        // Inserts and deletes are noted once per statement (transition tables), not per row.
        "CREATE FUNCTION mailsync_note_new() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO search_pending (email_id) SELECT DISTINCT n.id FROM new_rows n \
         ON CONFLICT DO NOTHING; RETURN NULL; END $$",
        "CREATE FUNCTION mailsync_note_new_body() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO search_pending (email_id) SELECT DISTINCT n.email_id FROM new_rows n \
         ON CONFLICT DO NOTHING; RETURN NULL; END $$",
        "CREATE FUNCTION mailsync_note_old_body() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO search_pending (email_id) SELECT DISTINCT o.email_id FROM old_rows o \
         ON CONFLICT DO NOTHING; RETURN NULL; END $$",
        // Updates that change indexed text are rare (a column list rules out transition
        // tables): one row trigger, filtered by WHEN so flag changes cost nothing.
        "CREATE FUNCTION mailsync_note_email_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO search_pending (email_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; \
         RETURN NULL; END $$",
        "CREATE FUNCTION mailsync_note_body_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO search_pending (email_id) VALUES (NEW.email_id) ON CONFLICT DO NOTHING; \
         RETURN NULL; END $$",
        "CREATE TRIGGER email_search_ins AFTER INSERT ON emails REFERENCING NEW TABLE AS new_rows \
         FOR EACH STATEMENT EXECUTE FUNCTION mailsync_note_new()",
        "CREATE TRIGGER email_search_upd AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
         bcc_addr ON emails FOR EACH ROW WHEN (OLD.subject IS DISTINCT FROM NEW.subject \
         OR OLD.from_addr IS DISTINCT FROM NEW.from_addr OR OLD.to_addr IS DISTINCT FROM NEW.to_addr \
         OR OLD.cc_addr IS DISTINCT FROM NEW.cc_addr OR OLD.bcc_addr IS DISTINCT FROM NEW.bcc_addr) \
         EXECUTE FUNCTION mailsync_note_email_row()",
        "CREATE TRIGGER email_search_bodies_ins AFTER INSERT ON email_bodies \
         REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailsync_note_new_body()",
        "CREATE TRIGGER email_search_bodies_del AFTER DELETE ON email_bodies \
         REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mailsync_note_old_body()",
        "CREATE TRIGGER email_search_bodies_upd AFTER UPDATE OF text_body ON email_bodies \
         FOR EACH ROW WHEN (OLD.text_body IS DISTINCT FROM NEW.text_body) \
         EXECUTE FUNCTION mailsync_note_body_row()",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn postgres_down() -> Vec<String> {
    [
        // Index what is still noted, then go back to the triggers of v12 (v11's, with m0014's
        // statement-level insert trigger).
        "INSERT INTO email_search (email_id, doc) SELECT e.id, mailsync_search_doc(e.subject, \
         e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, b.text_body) FROM search_pending p \
         JOIN emails e ON e.id = p.email_id LEFT JOIN email_bodies b ON b.email_id = e.id \
         ON CONFLICT (email_id) DO UPDATE SET doc = EXCLUDED.doc",
        "DROP TRIGGER IF EXISTS email_search_bodies_upd ON email_bodies",
        "DROP TRIGGER IF EXISTS email_search_bodies_del ON email_bodies",
        "DROP TRIGGER IF EXISTS email_search_bodies_ins ON email_bodies",
        "DROP TRIGGER IF EXISTS email_search_upd ON emails",
        "DROP TRIGGER IF EXISTS email_search_ins ON emails",
        "DROP FUNCTION IF EXISTS mailsync_note_body_row()",
        "DROP FUNCTION IF EXISTS mailsync_note_email_row()",
        "DROP FUNCTION IF EXISTS mailsync_note_old_body()",
        "DROP FUNCTION IF EXISTS mailsync_note_new_body()",
        "DROP FUNCTION IF EXISTS mailsync_note_new()",
        "DROP TABLE IF EXISTS search_pending",
        "CREATE FUNCTION mailsync_emails_search_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM mailsync_search_refresh(NEW.id); RETURN NULL; END $$",
        // Inserts as v12 (m0014) indexed them: one statement-level trigger.
        "CREATE FUNCTION mailsync_emails_search_ins_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN INSERT INTO email_search (email_id, doc) SELECT n.id, mailsync_search_doc(n.subject, \
         n.from_addr, n.to_addr, n.cc_addr, n.bcc_addr, b.text_body) FROM mailsync_new_emails n \
         LEFT JOIN email_bodies b ON b.email_id = n.id \
         ON CONFLICT (email_id) DO UPDATE SET doc = EXCLUDED.doc; RETURN NULL; END $$",
        "CREATE TRIGGER email_search_ins AFTER INSERT ON emails \
         REFERENCING NEW TABLE AS mailsync_new_emails FOR EACH STATEMENT \
         EXECUTE FUNCTION mailsync_emails_search_ins_trg()",
        "CREATE TRIGGER email_search_upd AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
         bcc_addr ON emails FOR EACH ROW WHEN (OLD.subject IS DISTINCT FROM NEW.subject \
         OR OLD.from_addr IS DISTINCT FROM NEW.from_addr OR OLD.to_addr IS DISTINCT FROM NEW.to_addr \
         OR OLD.cc_addr IS DISTINCT FROM NEW.cc_addr OR OLD.bcc_addr IS DISTINCT FROM NEW.bcc_addr) \
         EXECUTE FUNCTION mailsync_emails_search_trg()",
        "CREATE FUNCTION mailsync_bodies_search_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF TG_OP = 'DELETE' THEN PERFORM mailsync_search_refresh(OLD.email_id); \
         ELSE PERFORM mailsync_search_refresh(NEW.email_id); END IF; RETURN NULL; END $$",
        "CREATE TRIGGER email_search_bodies AFTER INSERT OR DELETE OR UPDATE OF text_body \
         ON email_bodies FOR EACH ROW EXECUTE FUNCTION mailsync_bodies_search_trg()",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let stmts = match db.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            _ => sqlite_up(),
        };
        for s in stmts {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let stmts = match db.get_database_backend() {
            DbBackend::Postgres => postgres_down(),
            _ => sqlite_down(),
        };
        for s in stmts {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }
}
