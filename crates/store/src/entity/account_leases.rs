//! The `account_leases` table: who flushes and syncs an account, and wake requests.

use sea_orm::entity::prelude::*;

/// One lease per account.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_leases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    pub owner: Option<String>,
    pub expires_at: Option<DateTimeUtc>,
    pub heartbeat_at: Option<DateTimeUtc>,
    pub wake_requested_at: Option<DateTimeUtc>,
    pub acquired_at: Option<DateTimeUtc>,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
