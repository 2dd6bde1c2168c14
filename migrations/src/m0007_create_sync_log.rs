//! v7: `sync_log`, one row per sync cycle.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SyncLog {
    Table,
    Id,
    AccountId,
    StartedAt,
    FinishedAt,
    Status,
    Error,
    Mailboxes,
    EmailsAdded,
    EmailsUpdated,
    EmailsRemoved,
    ChangesFlushed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SyncLog::Table)
                .col(big_pk_auto(SyncLog::Id))
                .col(big_integer(SyncLog::AccountId))
                .col(timestamp_with_time_zone(SyncLog::StartedAt))
                .col(timestamp_with_time_zone_null(SyncLog::FinishedAt))
                // "running", "ok" or "error".
                .col(string(SyncLog::Status))
                .col(text_null(SyncLog::Error))
                .col(big_integer(SyncLog::Mailboxes).default(0))
                .col(big_integer(SyncLog::EmailsAdded).default(0))
                .col(big_integer(SyncLog::EmailsUpdated).default(0))
                .col(big_integer(SyncLog::EmailsRemoved).default(0))
                .col(big_integer(SyncLog::ChangesFlushed).default(0))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_sync_log_account")
                        .from(SyncLog::Table, SyncLog::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sync_log_account_started")
                .table(SyncLog::Table)
                .col(SyncLog::AccountId)
                .col(SyncLog::StartedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SyncLog::Table).to_owned())
            .await
    }
}
