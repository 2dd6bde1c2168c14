//! v14: the body debt is found without reading the bodies. `emails.body_cached` says whether
//! `email_bodies` holds the email's body; triggers on `email_bodies` keep it (so every writer,
//! and a cascade, agrees with the table), and the index `(account_id, body_cached, id)` lets
//! "which emails still owe a body" walk only those emails. Before, the query probed
//! `email_bodies` once per email of the account, and each probe read a page of large rows:
//! at 100,000 emails a sync with nothing to do spent ~0.5 s there.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const SQLITE_UP: &[&str] = &[
    "ALTER TABLE emails ADD COLUMN body_cached boolean NOT NULL DEFAULT false",
    "UPDATE emails SET body_cached = true \
     WHERE EXISTS (SELECT 1 FROM email_bodies b WHERE b.email_id = emails.id)",
    "CREATE INDEX emails_body_debt ON emails (account_id, body_cached, id)",
    "CREATE TRIGGER email_body_cached_i AFTER INSERT ON email_bodies BEGIN \
     UPDATE emails SET body_cached = true WHERE id = NEW.email_id AND NOT body_cached; END",
    "CREATE TRIGGER email_body_cached_d AFTER DELETE ON email_bodies BEGIN \
     UPDATE emails SET body_cached = false WHERE id = OLD.email_id AND body_cached; END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS email_body_cached_d",
    "DROP TRIGGER IF EXISTS email_body_cached_i",
    "DROP INDEX IF EXISTS emails_body_debt",
    "ALTER TABLE emails DROP COLUMN body_cached",
];

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE emails ADD COLUMN body_cached boolean NOT NULL DEFAULT false",
    "UPDATE emails SET body_cached = true \
     WHERE EXISTS (SELECT 1 FROM email_bodies b WHERE b.email_id = emails.id)",
    "CREATE INDEX emails_body_debt ON emails (account_id, body_cached, id)",
    // Once per statement over its rows (transition tables), as the search triggers do.
    "CREATE FUNCTION mailsync_body_cached_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
     UPDATE emails e SET body_cached = true FROM new_rows n \
     WHERE e.id = n.email_id AND NOT e.body_cached; RETURN NULL; END $$",
    "CREATE FUNCTION mailsync_body_cached_del() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
     UPDATE emails e SET body_cached = false FROM old_rows o \
     WHERE e.id = o.email_id AND e.body_cached; RETURN NULL; END $$",
    "CREATE TRIGGER email_body_cached_i AFTER INSERT ON email_bodies \
     REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailsync_body_cached_ins()",
    "CREATE TRIGGER email_body_cached_d AFTER DELETE ON email_bodies \
     REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mailsync_body_cached_del()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS email_body_cached_d ON email_bodies",
    "DROP TRIGGER IF EXISTS email_body_cached_i ON email_bodies",
    "DROP FUNCTION IF EXISTS mailsync_body_cached_del()",
    "DROP FUNCTION IF EXISTS mailsync_body_cached_ins()",
    "DROP INDEX IF EXISTS emails_body_debt",
    "ALTER TABLE emails DROP COLUMN body_cached",
];

async fn run(m: &SchemaManager<'_>, sqlite: &[&str], postgres: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    let stmts = match db.get_database_backend() {
        DbBackend::Postgres => postgres,
        _ => sqlite,
    };
    for s in stmts {
        db.execute_unprepared(s).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, SQLITE_UP, POSTGRES_UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, SQLITE_DOWN, POSTGRES_DOWN).await
    }
}
