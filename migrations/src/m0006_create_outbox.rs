//! v6: `pending_changes` (the outbound queue) and `failed_mutations` (evicted changes).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PendingChanges {
    Table,
    Id,
    AccountId,
    EmailId,
    Kind,
    Payload,
    State,
    RetryCount,
    NextAttemptAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum FailedMutations {
    Table,
    Id,
    AccountId,
    EmailId,
    Kind,
    Payload,
    Reason,
    RetryCount,
    CreatedAt,
    FailedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PendingChanges::Table)
                .col(big_pk_auto(PendingChanges::Id))
                .col(big_integer(PendingChanges::AccountId))
                // Deliberately not a foreign key: a queued change outlives the local row it
                // was made on (a permanent delete removes the row before the server hears of it).
                .col(big_integer_null(PendingChanges::EmailId))
                .col(string(PendingChanges::Kind))
                .col(text(PendingChanges::Payload))
                // "pending", "in_flight" or "submitted" (a send the server accepted).
                .col(string(PendingChanges::State).default("pending"))
                .col(integer(PendingChanges::RetryCount).default(0))
                .col(timestamp_with_time_zone(PendingChanges::NextAttemptAt))
                .col(text_null(PendingChanges::LastError))
                .col(timestamp_with_time_zone(PendingChanges::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_pending_changes_account")
                        .from(PendingChanges::Table, PendingChanges::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_pending_changes_account_next")
                .table(PendingChanges::Table)
                .col(PendingChanges::AccountId)
                .col(PendingChanges::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_pending_changes_email")
                .table(PendingChanges::Table)
                .col(PendingChanges::EmailId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(FailedMutations::Table)
                .col(big_pk_auto(FailedMutations::Id))
                .col(big_integer(FailedMutations::AccountId))
                .col(big_integer_null(FailedMutations::EmailId))
                .col(string(FailedMutations::Kind))
                .col(text(FailedMutations::Payload))
                .col(text(FailedMutations::Reason))
                .col(integer(FailedMutations::RetryCount).default(0))
                .col(timestamp_with_time_zone(FailedMutations::CreatedAt))
                .col(timestamp_with_time_zone(FailedMutations::FailedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_failed_mutations_account")
                        .from(FailedMutations::Table, FailedMutations::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_failed_mutations_account")
                .table(FailedMutations::Table)
                .col(FailedMutations::AccountId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(FailedMutations::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(PendingChanges::Table).to_owned())
            .await
    }
}
