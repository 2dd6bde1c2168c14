//! The running daemons of a fleet sharing one database (`sync_daemons`, v12): each daemon
//! heartbeats its row, so every daemon knows how many live ones share the accounts (its share
//! is `ceil(accounts / live daemons)`), and `mailsync status` can show them. A killed daemon's
//! row expires like its leases; rows long dead are pruned by the others' heartbeats.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::StoreError;
use crate::entity::sync_daemons as d;

/// A daemon's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Its lease owner name.
    pub owner: String,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Live until then unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl From<d::Model> for Daemon {
    fn from(m: d::Model) -> Self {
        Self {
            owner: m.owner,
            started_at: m.started_at,
            heartbeat_at: m.heartbeat_at,
            expires_at: m.expires_at,
        }
    }
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(1))
}

/// Records `owner` as live until `now + ttl` (registers it on first call, keeping its start
/// afterwards), and prunes rows expired for over a day.
pub async fn heartbeat<C: ConnectionTrait>(
    c: &C,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    d::Entity::insert(d::ActiveModel {
        owner: Set(owner.to_owned()),
        started_at: Set(now),
        heartbeat_at: Set(now),
        expires_at: Set(until(now, ttl)),
    })
    .on_conflict(
        OnConflict::column(d::Column::Owner)
            .update_columns([d::Column::HeartbeatAt, d::Column::ExpiresAt])
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    d::Entity::delete_many()
        .filter(d::Column::ExpiresAt.lt(now - chrono::Duration::days(1)))
        .exec(c)
        .await?;
    Ok(())
}

/// Removes `owner`'s row (a clean stop).
pub async fn remove<C: ConnectionTrait>(c: &C, owner: &str) -> Result<(), StoreError> {
    d::Entity::delete_many()
        .filter(d::Column::Owner.eq(owner))
        .exec(c)
        .await?;
    Ok(())
}

/// The daemons live at `now`, oldest first.
pub async fn live<C: ConnectionTrait>(
    c: &C,
    now: DateTime<Utc>,
) -> Result<Vec<Daemon>, StoreError> {
    Ok(d::Entity::find()
        .filter(d::Column::ExpiresAt.gt(now))
        .order_by_asc(d::Column::StartedAt)
        .order_by_asc(d::Column::Owner)
        .all(c)
        .await?
        .into_iter()
        .map(Daemon::from)
        .collect())
}
