//! The `sync_state` table: server checkpoints.

use sea_orm::entity::prelude::*;

/// One checkpoint per (account, scope).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_state")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub scope: String,
    pub state: Option<String>,
    pub uidvalidity: Option<i64>,
    pub last_uid: Option<i64>,
    pub highestmodseq: Option<i64>,
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
