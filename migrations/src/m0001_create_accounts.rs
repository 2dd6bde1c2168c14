//! v1: the `accounts` table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    Kind,
    Email,
    DisplayName,
    Username,
    SecretRef,
    ImapHost,
    ImapPort,
    ImapSecurity,
    SmtpHost,
    SmtpPort,
    SmtpSecurity,
    JmapSessionUrl,
    CaFile,
    AllowPlaintext,
    BodyPolicy,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // SQLite defaults to no transaction; a half-applied step must never be possible.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(big_pk_auto(Accounts::Id))
                .col(string_uniq(Accounts::Name))
                // "imap" or "jmap"
                .col(string(Accounts::Kind))
                .col(string(Accounts::Email))
                .col(string_null(Accounts::DisplayName))
                .col(string(Accounts::Username))
                // How to obtain the secret ("env:VAR", "cmd:...", "keyring:..."), never the secret.
                .col(string(Accounts::SecretRef))
                .col(string_null(Accounts::ImapHost))
                .col(integer_null(Accounts::ImapPort))
                .col(string_null(Accounts::ImapSecurity))
                .col(string_null(Accounts::SmtpHost))
                .col(integer_null(Accounts::SmtpPort))
                .col(string_null(Accounts::SmtpSecurity))
                .col(string_null(Accounts::JmapSessionUrl))
                .col(string_null(Accounts::CaFile))
                .col(boolean(Accounts::AllowPlaintext).default(false))
                // "none", "all" or "max:<bytes>"
                .col(string(Accounts::BodyPolicy).default("none"))
                .col(timestamp_with_time_zone(Accounts::CreatedAt))
                .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}
