//! The `sync_log` table: one row per sync cycle.

use sea_orm::entity::prelude::*;

/// One sync cycle.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    pub status: String,
    pub error: Option<String>,
    pub mailboxes: i64,
    pub emails_added: i64,
    pub emails_updated: i64,
    pub emails_removed: i64,
    pub changes_flushed: i64,
    pub owner: Option<String>,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
