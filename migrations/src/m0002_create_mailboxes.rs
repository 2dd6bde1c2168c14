//! v2: the `mailboxes` table (without `role`, which v8 adds).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    Id,
    AccountId,
    RemoteId,
    Name,
    ParentRemoteId,
    Delimiter,
    Selectable,
    Total,
    Unread,
    Uidvalidity,
    Uidnext,
    Highestmodseq,
    CreatedAt,
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
                .table(Mailboxes::Table)
                .col(big_pk_auto(Mailboxes::Id))
                .col(big_integer(Mailboxes::AccountId))
                // IMAP: the full mailbox name as the server spells it (modified UTF-7); JMAP: the id.
                .col(string(Mailboxes::RemoteId))
                // Decoded display name.
                .col(string(Mailboxes::Name))
                .col(string_null(Mailboxes::ParentRemoteId))
                .col(string_null(Mailboxes::Delimiter))
                .col(boolean(Mailboxes::Selectable).default(true))
                .col(big_integer(Mailboxes::Total).default(0))
                .col(big_integer(Mailboxes::Unread).default(0))
                .col(big_integer_null(Mailboxes::Uidvalidity))
                .col(big_integer_null(Mailboxes::Uidnext))
                .col(big_integer_null(Mailboxes::Highestmodseq))
                .col(timestamp_with_time_zone(Mailboxes::CreatedAt))
                .col(timestamp_with_time_zone(Mailboxes::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_mailboxes_account")
                        .from(Mailboxes::Table, Mailboxes::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_mailboxes_account_remote")
                .table(Mailboxes::Table)
                .col(Mailboxes::AccountId)
                .col(Mailboxes::RemoteId)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Mailboxes::Table).to_owned())
            .await
    }
}
