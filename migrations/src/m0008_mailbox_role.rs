//! v8: mailboxes gain a nullable `role` (inbox, sent, drafts, trash, junk, archive).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    AccountId,
    Role,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Mailboxes::Table)
                .add_column(string_null(Mailboxes::Role))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_mailboxes_account_role")
                .table(Mailboxes::Table)
                .col(Mailboxes::AccountId)
                .col(Mailboxes::Role)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_mailboxes_account_role")
                .table(Mailboxes::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Mailboxes::Table)
                .drop_column(Mailboxes::Role)
                .to_owned(),
        )
        .await
    }
}
