//! v9: `account_leases`, one row per account: who flushes and syncs it (owner, expiry,
//! heartbeat) and whether someone asked that owner to run a cycle now (wake request).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AccountLeases {
    Table,
    AccountId,
    Owner,
    ExpiresAt,
    HeartbeatAt,
    WakeRequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AccountLeases::Table)
                .col(big_integer(AccountLeases::AccountId).primary_key())
                // NULL: free. Otherwise held until `expires_at` unless renewed.
                .col(string_null(AccountLeases::Owner))
                .col(timestamp_with_time_zone_null(AccountLeases::ExpiresAt))
                .col(timestamp_with_time_zone_null(AccountLeases::HeartbeatAt))
                .col(timestamp_with_time_zone_null(
                    AccountLeases::WakeRequestedAt,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_account_leases_account")
                        .from(AccountLeases::Table, AccountLeases::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The daemon's wake poll: "my accounts with a pending request".
        m.create_index(
            Index::create()
                .name("ix_account_leases_owner")
                .table(AccountLeases::Table)
                .col(AccountLeases::Owner)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AccountLeases::Table).to_owned())
            .await
    }
}
