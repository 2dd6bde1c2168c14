//! The `email_bodies` table: cached bodies.

use sea_orm::entity::prelude::*;

/// The cached body of one email.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "email_bodies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub email_id: i64,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub raw: Option<Vec<u8>>,
    pub truncated: bool,
    pub fetched_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
