//! v13: a fleet of daemons on one database. `sync_daemons`: one row per running daemon (its
//! lease owner name, start, heartbeat, expiry), so each knows how many live daemons share the
//! accounts; `account_leases.acquired_at`: since when the holder has an account (status);
//! `sync_log.owner`: which daemon ran each cycle (ownership can be audited afterwards).
//!
//! PostgreSQL only: the search index is kept for inserted emails by one statement-level
//! trigger over the statement's new rows (a transition table) instead of a row-level one,
//! which ran (and planned) a SQL function per email and capped a first sync at a few hundred
//! emails per second. Updates and bodies keep their row-level triggers (rare, and filtered).

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SyncDaemons {
    Table,
    Owner,
    StartedAt,
    HeartbeatAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AccountLeases {
    Table,
    AcquiredAt,
}

#[derive(DeriveIden)]
enum SyncLog {
    Table,
    Owner,
}

/// The set-based insert trigger (the v11 function `mailsync_search_doc` computes each doc).
const PG_UP: &[&str] = &[
    "DROP TRIGGER IF EXISTS email_search_ins ON emails",
    "CREATE FUNCTION mailsync_emails_search_ins_trg() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN INSERT INTO email_search (email_id, doc) SELECT n.id, mailsync_search_doc(n.subject, \
     n.from_addr, n.to_addr, n.cc_addr, n.bcc_addr, b.text_body) FROM mailsync_new_emails n \
     LEFT JOIN email_bodies b ON b.email_id = n.id \
     ON CONFLICT (email_id) DO UPDATE SET doc = EXCLUDED.doc; RETURN NULL; END $$",
    "CREATE TRIGGER email_search_ins AFTER INSERT ON emails \
     REFERENCING NEW TABLE AS mailsync_new_emails FOR EACH STATEMENT \
     EXECUTE FUNCTION mailsync_emails_search_ins_trg()",
];

/// Back to v11's row-level trigger.
const PG_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS email_search_ins ON emails",
    "DROP FUNCTION IF EXISTS mailsync_emails_search_ins_trg()",
    "CREATE TRIGGER email_search_ins AFTER INSERT ON emails FOR EACH ROW \
     EXECUTE FUNCTION mailsync_emails_search_trg()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SyncDaemons::Table)
                .col(string(SyncDaemons::Owner).primary_key())
                .col(timestamp_with_time_zone(SyncDaemons::StartedAt))
                .col(timestamp_with_time_zone(SyncDaemons::HeartbeatAt))
                // Live until then unless renewed; a killed daemon's row simply expires.
                .col(timestamp_with_time_zone(SyncDaemons::ExpiresAt))
                .to_owned(),
        )
        .await?;
        // One column per statement: SQLite's ALTER TABLE takes one change at a time.
        m.alter_table(
            Table::alter()
                .table(AccountLeases::Table)
                .add_column(timestamp_with_time_zone_null(AccountLeases::AcquiredAt))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(SyncLog::Table)
                .add_column(string_null(SyncLog::Owner))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for s in PG_UP {
                db.execute_unprepared(s).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for s in PG_DOWN {
                db.execute_unprepared(s).await?;
            }
        }
        m.alter_table(
            Table::alter()
                .table(SyncLog::Table)
                .drop_column(SyncLog::Owner)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(AccountLeases::Table)
                .drop_column(AccountLeases::AcquiredAt)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(SyncDaemons::Table).to_owned())
            .await
    }
}
