//! The `failed_mutations` table: evicted changes, for the user to see, retry or dismiss.

use sea_orm::entity::prelude::*;

/// One evicted change.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "failed_mutations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub email_id: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub reason: String,
    pub retry_count: i32,
    pub created_at: DateTimeUtc,
    pub failed_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
