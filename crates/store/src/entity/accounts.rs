//! The `accounts` table.

use sea_orm::entity::prelude::*;

/// An account row. `secret_ref` says how to obtain the secret; the secret itself is never stored.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub kind: String,
    pub email: String,
    pub display_name: Option<String>,
    pub username: String,
    pub secret_ref: String,
    pub imap_host: Option<String>,
    pub imap_port: Option<i32>,
    pub imap_security: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i32>,
    pub smtp_security: Option<String>,
    pub jmap_session_url: Option<String>,
    pub ca_file: Option<String>,
    pub allow_plaintext: bool,
    pub body_policy: String,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret_ref: Option<String>,
    pub oauth_scopes: Option<String>,
    pub oauth_refresh_store_cmd: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
