//! The `thread_links` table: message ids and base subjects seen by local threading, per account.

use sea_orm::entity::prelude::*;

/// One key (`m:<message-id>`, `r:<remote id>` or `s:<base subject>`) and its thread.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub link_key: String,
    pub thread_id: String,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
