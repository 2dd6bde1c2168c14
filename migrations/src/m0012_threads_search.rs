//! v10: conversations and local full-text search: `thread_links` (message ids and subjects
//! seen by local threading, mapped to their thread) and the search index kept up to date by
//! triggers: an FTS5 table on SQLite, a weighted `tsvector` with a GIN index on PostgreSQL.

use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ThreadLinks {
    Table,
    AccountId,
    LinkKey,
    ThreadId,
}

/// SQLite: the address columns hold JSON arrays of `{name, email}`; the index gets their text.
fn sqlite_addrs(col: &str) -> String {
    format!(
        "coalesce((SELECT group_concat(coalesce(json_extract(j.value, '$.name'), '') || ' ' || \
         coalesce(json_extract(j.value, '$.email'), ''), ' ') FROM json_each({col}) j), '')"
    )
}

/// SQLite: (re)inserts the index row of the emails selected by `filter` (`e` = emails).
fn sqlite_index_rows(filter: &str) -> String {
    format!(
        "INSERT INTO email_fts (rowid, subject, sender, recipients, body) \
         SELECT e.id, coalesce(e.subject, ''), {from}, {to} || ' ' || {cc} || ' ' || {bcc}, \
         coalesce((SELECT b.text_body FROM email_bodies b WHERE b.email_id = e.id), '') \
         FROM emails e WHERE {filter};",
        from = sqlite_addrs("e.from_addr"),
        to = sqlite_addrs("e.to_addr"),
        cc = sqlite_addrs("e.cc_addr"),
        bcc = sqlite_addrs("e.bcc_addr"),
    )
}

fn sqlite_up() -> Vec<String> {
    let changed = "OLD.subject IS NOT NEW.subject OR OLD.from_addr IS NOT NEW.from_addr \
                   OR OLD.to_addr IS NOT NEW.to_addr OR OLD.cc_addr IS NOT NEW.cc_addr \
                   OR OLD.bcc_addr IS NOT NEW.bcc_addr";
    vec![
        // Contentless (the text lives in emails/email_bodies); contentless_delete lets a row
        // be removed by rowid = emails.id. remove_diacritics: "cafe" finds "café".
        "CREATE VIRTUAL TABLE email_fts USING fts5(subject, sender, recipients, body, \
         content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2')"
            .to_owned(),
        sqlite_index_rows("1 = 1"),
        format!(
            "CREATE TRIGGER email_fts_ai AFTER INSERT ON emails BEGIN {} END",
            sqlite_index_rows("e.id = NEW.id")
        ),
        format!(
            "CREATE TRIGGER email_fts_au AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
             bcc_addr ON emails WHEN {changed} BEGIN DELETE FROM email_fts WHERE rowid = OLD.id; {} END",
            sqlite_index_rows("e.id = NEW.id")
        ),
        "CREATE TRIGGER email_fts_ad AFTER DELETE ON emails BEGIN \
         DELETE FROM email_fts WHERE rowid = OLD.id; END"
            .to_owned(),
        format!(
            "CREATE TRIGGER email_fts_bi AFTER INSERT ON email_bodies BEGIN \
             DELETE FROM email_fts WHERE rowid = NEW.email_id; {} END",
            sqlite_index_rows("e.id = NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bu AFTER UPDATE OF text_body ON email_bodies \
             WHEN OLD.text_body IS NOT NEW.text_body BEGIN \
             DELETE FROM email_fts WHERE rowid = NEW.email_id; {} END",
            sqlite_index_rows("e.id = NEW.email_id")
        ),
        format!(
            "CREATE TRIGGER email_fts_bd AFTER DELETE ON email_bodies BEGIN \
             DELETE FROM email_fts WHERE rowid = OLD.email_id; {} END",
            sqlite_index_rows("e.id = OLD.email_id")
        ),
    ]
}

fn sqlite_down() -> Vec<String> {
    let mut v: Vec<String> = ["ai", "au", "ad", "bi", "bu", "bd"]
        .iter()
        .map(|t| format!("DROP TRIGGER IF EXISTS email_fts_{t}"))
        .collect();
    v.push("DROP TABLE IF EXISTS email_fts".to_owned());
    v
}

fn postgres_up() -> Vec<String> {
    vec![
        // Both backends index words made of letters and digits only, so an address
        // `alice@example.org` is the words alice, example, org on either.
        "CREATE FUNCTION mailsync_words(t text) RETURNS text LANGUAGE sql IMMUTABLE AS \
         $$ SELECT regexp_replace(coalesce(t, ''), '[^[:alnum:]]+', ' ', 'g') $$"
            .to_owned(),
        "CREATE FUNCTION mailsync_addr_text(a text) RETURNS text LANGUAGE sql IMMUTABLE AS \
         $$ SELECT coalesce(string_agg(coalesce(x->>'name', '') || ' ' || coalesce(x->>'email', ''), ' '), '') \
         FROM jsonb_array_elements(CASE WHEN a IS NULL OR a = '' THEN '[]'::jsonb ELSE a::jsonb END) x $$"
            .to_owned(),
        // Weights tell the fields apart: A subject, B sender, C recipients, D body. A body is
        // indexed up to 100,000 characters (a tsvector is limited to 1 MB).
        "CREATE FUNCTION mailsync_search_doc(subject text, f text, t text, c text, b text, body text) \
         RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$ SELECT \
         setweight(to_tsvector('simple', mailsync_words(subject)), 'A') || \
         setweight(to_tsvector('simple', mailsync_words(mailsync_addr_text(f))), 'B') || \
         setweight(to_tsvector('simple', mailsync_words(mailsync_addr_text(t) || ' ' || \
           mailsync_addr_text(c) || ' ' || mailsync_addr_text(b))), 'C') || \
         setweight(to_tsvector('simple', mailsync_words(left(body, 100000))), 'D') $$"
            .to_owned(),
        "CREATE TABLE email_search (email_id BIGINT PRIMARY KEY REFERENCES emails (id) \
         ON DELETE CASCADE, doc tsvector NOT NULL)"
            .to_owned(),
        "CREATE INDEX ix_email_search_doc ON email_search USING GIN (doc)".to_owned(),
        "CREATE FUNCTION mailsync_search_refresh(eid bigint) RETURNS void LANGUAGE sql AS $$ \
         INSERT INTO email_search (email_id, doc) SELECT e.id, mailsync_search_doc(e.subject, \
         e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, b.text_body) FROM emails e \
         LEFT JOIN email_bodies b ON b.email_id = e.id WHERE e.id = eid \
         ON CONFLICT (email_id) DO UPDATE SET doc = EXCLUDED.doc $$"
            .to_owned(),
        "INSERT INTO email_search (email_id, doc) SELECT e.id, mailsync_search_doc(e.subject, \
         e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, b.text_body) FROM emails e \
         LEFT JOIN email_bodies b ON b.email_id = e.id"
            .to_owned(),
        "CREATE FUNCTION mailsync_emails_search_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM mailsync_search_refresh(NEW.id); RETURN NULL; END $$"
            .to_owned(),
        "CREATE TRIGGER email_search_ins AFTER INSERT ON emails FOR EACH ROW \
         EXECUTE FUNCTION mailsync_emails_search_trg()"
            .to_owned(),
        "CREATE TRIGGER email_search_upd AFTER UPDATE OF subject, from_addr, to_addr, cc_addr, \
         bcc_addr ON emails FOR EACH ROW WHEN (OLD.subject IS DISTINCT FROM NEW.subject \
         OR OLD.from_addr IS DISTINCT FROM NEW.from_addr OR OLD.to_addr IS DISTINCT FROM NEW.to_addr \
         OR OLD.cc_addr IS DISTINCT FROM NEW.cc_addr OR OLD.bcc_addr IS DISTINCT FROM NEW.bcc_addr) \
         EXECUTE FUNCTION mailsync_emails_search_trg()"
            .to_owned(),
        "CREATE FUNCTION mailsync_bodies_search_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF TG_OP = 'DELETE' THEN PERFORM mailsync_search_refresh(OLD.email_id); \
         ELSE PERFORM mailsync_search_refresh(NEW.email_id); END IF; RETURN NULL; END $$"
            .to_owned(),
        "CREATE TRIGGER email_search_bodies AFTER INSERT OR DELETE OR UPDATE OF text_body \
         ON email_bodies FOR EACH ROW EXECUTE FUNCTION mailsync_bodies_search_trg()"
            .to_owned(),
    ]
}

fn postgres_down() -> Vec<String> {
    [
        "DROP TRIGGER IF EXISTS email_search_bodies ON email_bodies",
        "DROP TRIGGER IF EXISTS email_search_upd ON emails",
        "DROP TRIGGER IF EXISTS email_search_ins ON emails",
        "DROP FUNCTION IF EXISTS mailsync_bodies_search_trg()",
        "DROP FUNCTION IF EXISTS mailsync_emails_search_trg()",
        "DROP FUNCTION IF EXISTS mailsync_search_refresh(bigint)",
        "DROP TABLE IF EXISTS email_search",
        "DROP FUNCTION IF EXISTS mailsync_search_doc(text, text, text, text, text, text)",
        "DROP FUNCTION IF EXISTS mailsync_addr_text(text)",
        "DROP FUNCTION IF EXISTS mailsync_words(text)",
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
        m.create_table(
            Table::create()
                .table(ThreadLinks::Table)
                .col(big_integer(ThreadLinks::AccountId))
                // `m:<message-id>` (a message or one it refers to) or `s:<base subject>`.
                .col(string(ThreadLinks::LinkKey))
                .col(string(ThreadLinks::ThreadId))
                .primary_key(
                    Index::create()
                        .col(ThreadLinks::AccountId)
                        .col(ThreadLinks::LinkKey),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_thread_links_account")
                        .from(ThreadLinks::Table, ThreadLinks::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Merging two threads renames every link of the one that goes.
        m.create_index(
            Index::create()
                .name("ix_thread_links_thread")
                .table(ThreadLinks::Table)
                .col(ThreadLinks::AccountId)
                .col(ThreadLinks::ThreadId)
                .to_owned(),
        )
        .await?;
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
        m.drop_table(Table::drop().table(ThreadLinks::Table).to_owned())
            .await
    }
}
