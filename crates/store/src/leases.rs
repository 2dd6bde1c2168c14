//! Account leases: at most one owner flushes and syncs an account at a time, across processes
//! and machines sharing the database, and a way to ask that owner to run a cycle now.
//!
//! A lease is a row of `account_leases` (created on first use): `owner` (an opaque string the
//! caller picks, unique per running engine), `expires_at` and `heartbeat_at`. [`acquire`] takes
//! it when it is free, expired or already the caller's, in one conditional `UPDATE` (atomic on
//! SQLite and PostgreSQL alike: the row lock makes concurrent acquirers see each other's
//! write). The holder [`renew`]s it well before it expires; a killed holder's lease simply
//! expires. [`request_wake`] stamps `wake_requested_at`; the holder's [`take_wakes`] returns and
//! clears its accounts' requests. Times come from the caller (`now`), so machines sharing a
//! database should keep their clocks in sync (NTP): the expiry must exceed the clock skew.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::entity::account_leases as l;
use crate::{AccountId, StoreError};

/// An account's lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The account.
    pub account_id: AccountId,
    /// The last owner (`None`: released).
    pub owner: Option<String>,
    /// Until when the owner holds it unless renewed.
    pub expires_at: Option<DateTime<Utc>>,
    /// The owner's last renewal.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// A pending request for the owner to run a cycle now.
    pub wake_requested_at: Option<DateTime<Utc>>,
    /// Since when the owner has held it (v12; `None`: free, or taken before v12).
    pub acquired_at: Option<DateTime<Utc>>,
}

impl Lease {
    /// The owner holding it at `now` (`None`: free or expired).
    pub fn holder_at(&self, now: DateTime<Utc>) -> Option<&str> {
        match (&self.owner, self.expires_at) {
            (Some(o), Some(t)) if t > now => Some(o),
            _ => None,
        }
    }
}

impl From<l::Model> for Lease {
    fn from(m: l::Model) -> Self {
        Self {
            account_id: AccountId(m.account_id),
            owner: m.owner,
            expires_at: m.expires_at,
            heartbeat_at: m.heartbeat_at,
            wake_requested_at: m.wake_requested_at,
            acquired_at: m.acquired_at,
        }
    }
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(1))
}

/// Creates the account's row (free) unless it exists.
async fn ensure_row<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<(), StoreError> {
    l::Entity::insert(l::ActiveModel {
        account_id: Set(account.0),
        owner: Set(None),
        expires_at: Set(None),
        heartbeat_at: Set(None),
        wake_requested_at: Set(None),
        acquired_at: Set(None),
    })
    .on_conflict_do_nothing_on([l::Column::AccountId])
    .exec(c)
    .await?;
    Ok(())
}

/// Takes the account's lease for `owner` until `now + ttl` when it is free, expired or
/// already `owner`'s. Returns whether `owner` holds it now.
pub async fn acquire<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    ensure_row(c, account).await?;
    let r = l::Entity::update_many()
        // A renewal by the holder keeps its start; a new holder starts now.
        .col_expr(
            l::Column::AcquiredAt,
            Expr::case(l::Column::Owner.eq(owner), Expr::col(l::Column::AcquiredAt))
                .finally(Expr::value(now))
                .into(),
        )
        .col_expr(l::Column::Owner, Expr::value(owner))
        .col_expr(l::Column::ExpiresAt, Expr::value(until(now, ttl)))
        .col_expr(l::Column::HeartbeatAt, Expr::value(now))
        .filter(l::Column::AccountId.eq(account.0))
        .filter(
            l::Column::Owner
                .is_null()
                .or(l::Column::Owner.eq(owner))
                .or(l::Column::ExpiresAt.is_null())
                .or(l::Column::ExpiresAt.lte(now)),
        )
        .exec(c)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Extends `owner`'s lease to `now + ttl` (the heartbeat). Returns `false` when `owner` no
/// longer holds it (it expired and someone else took it): stop working on the account.
pub async fn renew<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let r = l::Entity::update_many()
        .col_expr(l::Column::ExpiresAt, Expr::value(until(now, ttl)))
        .col_expr(l::Column::HeartbeatAt, Expr::value(now))
        .filter(l::Column::AccountId.eq(account.0))
        .filter(l::Column::Owner.eq(owner))
        .exec(c)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Gives up `owner`'s lease at once (a clean stop). Returns whether it held it.
pub async fn release<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    owner: &str,
) -> Result<bool, StoreError> {
    let r = l::Entity::update_many()
        .col_expr(l::Column::Owner, Expr::value(Option::<String>::None))
        .col_expr(
            l::Column::ExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            l::Column::AcquiredAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(l::Column::AccountId.eq(account.0))
        .filter(l::Column::Owner.eq(owner))
        .exec(c)
        .await?;
    Ok(r.rows_affected == 1)
}

/// The account's lease row, if it was ever used.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Option<Lease>, StoreError> {
    Ok(l::Entity::find_by_id(account.0)
        .one(c)
        .await?
        .map(Lease::from))
}

/// Asks whoever holds (or next takes) the account's lease to run a cycle now.
pub async fn request_wake<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    ensure_row(c, account).await?;
    l::Entity::update_many()
        .col_expr(l::Column::WakeRequestedAt, Expr::value(now))
        .filter(l::Column::AccountId.eq(account.0))
        .exec(c)
        .await?;
    Ok(())
}

/// The accounts leased by `owner` with a pending wake request, each request cleared (one cheap
/// indexed query when there is none: the daemon polls this).
pub async fn take_wakes<C: ConnectionTrait>(
    c: &C,
    owner: &str,
) -> Result<Vec<AccountId>, StoreError> {
    let pending = l::Entity::find()
        .filter(l::Column::Owner.eq(owner))
        .filter(l::Column::WakeRequestedAt.is_not_null())
        .all(c)
        .await?;
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        // Only the request seen: one made meanwhile stays for the next poll.
        l::Entity::update_many()
            .col_expr(
                l::Column::WakeRequestedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(l::Column::AccountId.eq(p.account_id))
            .filter(l::Column::WakeRequestedAt.eq(p.wake_requested_at))
            .exec(c)
            .await?;
        out.push(AccountId(p.account_id));
    }
    Ok(out)
}

/// Extends every lease `owner` holds to `now + ttl` in one statement (a daemon's heartbeat for
/// all its accounts at once). Returns the accounts it still holds; one it expected and is
/// missing was taken by another owner after expiry: stop working on it.
pub async fn renew_all<C: ConnectionTrait>(
    c: &C,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<AccountId>, StoreError> {
    let mut q = sea_orm::sea_query::Query::update();
    q.table(l::Entity)
        .value(l::Column::ExpiresAt, until(now, ttl))
        .value(l::Column::HeartbeatAt, now)
        .and_where(l::Column::Owner.eq(owner))
        .returning_col(l::Column::AccountId);
    let mut out = Vec::new();
    for row in c.query_all(&q).await? {
        out.push(AccountId(row.try_get::<i64>("", "account_id")?));
    }
    out.sort();
    Ok(out)
}

/// Every lease row (the accounts ever leased), by account.
pub async fn all<C: ConnectionTrait>(c: &C) -> Result<Vec<Lease>, StoreError> {
    Ok(l::Entity::find()
        .order_by_asc(l::Column::AccountId)
        .all(c)
        .await?
        .into_iter()
        .map(Lease::from)
        .collect())
}

/// An account nobody holds at `now`, with how long it has been so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Free {
    /// The account.
    pub account_id: AccountId,
    /// When it became free: its last expiry or heartbeat (`None`: never leased).
    pub since: Option<DateTime<Utc>>,
}

/// The accounts nobody holds at `now` (never leased, released, or expired), oldest first
/// (never leased first, then by when they became free), at most `limit`.
pub async fn free<C: ConnectionTrait>(
    c: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Free>, StoreError> {
    use crate::entity::accounts as a;
    use sea_orm::sea_query::{Alias, Query};
    let backend = c.get_database_backend();
    let held = Query::select()
        .column(l::Column::AccountId)
        .from(l::Entity)
        .and_where(l::Column::Owner.is_not_null())
        .and_where(l::Column::ExpiresAt.gt(now))
        .to_owned();
    let q = Query::select()
        .expr_as(Expr::col((a::Entity, a::Column::Id)), Alias::new("id"))
        .expr_as(
            Expr::col((l::Entity, l::Column::ExpiresAt)),
            Alias::new("expires_at"),
        )
        .expr_as(
            Expr::col((l::Entity, l::Column::HeartbeatAt)),
            Alias::new("heartbeat_at"),
        )
        .from(a::Entity)
        .left_join(
            l::Entity,
            Expr::col((l::Entity, l::Column::AccountId)).equals((a::Entity, a::Column::Id)),
        )
        .and_where(Expr::col((a::Entity, a::Column::Id)).not_in_subquery(held))
        .to_owned();
    let mut out = Vec::new();
    for row in c.query_all_raw(backend.build(&q)).await? {
        let id: i64 = row.try_get("", "id")?;
        let expires: Option<DateTime<Utc>> = row.try_get("", "expires_at")?;
        let beat: Option<DateTime<Utc>> = row.try_get("", "heartbeat_at")?;
        out.push(Free {
            account_id: AccountId(id),
            since: match (expires, beat) {
                (Some(e), _) => Some(e),
                (None, b) => b,
            },
        });
    }
    out.sort_by_key(|f| (f.since, f.account_id));
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(out)
}
