//! v5: `sync_state`, the server checkpoints per (account, scope).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SyncState {
    Table,
    Id,
    AccountId,
    Scope,
    State,
    Uidvalidity,
    LastUid,
    Highestmodseq,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SyncState::Table)
                .col(big_pk_auto(SyncState::Id))
                .col(big_integer(SyncState::AccountId))
                // "jmap:Email", "jmap:Mailbox", "imap:mailbox:<mailbox id>", ...
                .col(string(SyncState::Scope))
                // JMAP state string.
                .col(string_null(SyncState::State))
                .col(big_integer_null(SyncState::Uidvalidity))
                .col(big_integer_null(SyncState::LastUid))
                .col(big_integer_null(SyncState::Highestmodseq))
                .col(timestamp_with_time_zone(SyncState::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_sync_state_account")
                        .from(SyncState::Table, SyncState::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_sync_state_account_scope")
                .table(SyncState::Table)
                .col(SyncState::AccountId)
                .col(SyncState::Scope)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SyncState::Table).to_owned())
            .await
    }
}
