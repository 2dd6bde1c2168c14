//! v11: accounts gain nullable OAuth 2 settings (token endpoint, client id, client secret
//! *reference*, scopes, the command that stores a rotated refresh token). The refresh token
//! itself is the account's `secret_ref`: a reference, never the token.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    OauthTokenUrl,
    OauthClientId,
    OauthClientSecretRef,
    OauthScopes,
    OauthRefreshStoreCmd,
}

const COLUMNS: [Accounts; 5] = [
    Accounts::OauthTokenUrl,
    Accounts::OauthClientId,
    Accounts::OauthClientSecretRef,
    Accounts::OauthScopes,
    Accounts::OauthRefreshStoreCmd,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE takes one change at a time.
        for c in COLUMNS {
            m.alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(string_null(c))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in COLUMNS.into_iter().rev() {
            m.alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
