//! The `sync_daemons` table: the running daemons of a fleet, by heartbeat.

use sea_orm::entity::prelude::*;

/// One running daemon (its lease owner name).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_daemons")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner: String,
    pub started_at: DateTimeUtc,
    pub heartbeat_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
