//! Storage of the outbound queue (`pending_changes`) and of evicted changes (`failed_mutations`).
//!
//! Policy (coalescing, retries, eviction) belongs to the `outbox` crate; these are its rows.
//! Payloads are opaque JSON text.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use crate::entity::{failed_mutations as f, pending_changes as p};

/// The ids of emails with queued changes, as a subquery: rows a sync must not take for gone
/// (ghost sweeps, mailboxes deleted on the server, full listings).
pub(crate) fn queued_email_ids() -> sea_orm::sea_query::SelectStatement {
    use sea_orm::sea_query::ExprTrait as _;
    sea_orm::sea_query::Query::select()
        .column(p::Column::EmailId)
        .from(p::Entity)
        .and_where(sea_orm::sea_query::Expr::col(p::Column::EmailId).is_not_null())
        .to_owned()
}
use crate::{AccountId, ChangeId, EmailId, FailedId, StoreError};

/// Where a queued change is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeState {
    /// Waiting to be sent.
    Pending,
    /// Handed to the server; the outcome is not recorded yet.
    InFlight,
    /// A message the server accepted for delivery; must never be submitted again.
    Submitted,
    /// Not sent: the message was not where the change addressed it (moved or expunged by
    /// another client, or its mailbox re-created). Waits for the outbox to find it again after
    /// a complete sync, or to declare it gone; never picked by a flush as it is.
    Lost,
}

impl ChangeState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Submitted => "submitted",
            Self::Lost => "lost",
        }
    }
}

impl std::str::FromStr for ChangeState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "in_flight" => Ok(Self::InFlight),
            "submitted" => Ok(Self::Submitted),
            "lost" => Ok(Self::Lost),
            _ => Err(StoreError::InvalidValue {
                what: "ChangeState",
                value: s.to_owned(),
            }),
        }
    }
}

/// A change to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    /// The account it goes to.
    pub account_id: AccountId,
    /// The email it is about, if any (a send has none).
    pub email_id: Option<EmailId>,
    /// The kind, as the outbox names it.
    pub kind: String,
    /// The outbox's JSON payload.
    pub payload: String,
    /// Earliest time to try it.
    pub next_attempt_at: DateTime<Utc>,
}

/// A queued change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    /// Queue id (also the order of arrival).
    pub id: ChangeId,
    /// Account.
    pub account_id: AccountId,
    /// Email, if any.
    pub email_id: Option<EmailId>,
    /// Kind.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Life-cycle state.
    pub state: ChangeState,
    /// Transient failures so far.
    pub retry_count: u32,
    /// Earliest next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// The last error, one line.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<p::Model> for PendingChange {
    type Error = StoreError;
    fn try_from(m: p::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: ChangeId(m.id),
            account_id: AccountId(m.account_id),
            email_id: m.email_id.map(EmailId),
            state: m.state.parse()?,
            retry_count: u32::try_from(m.retry_count).unwrap_or(0),
            kind: m.kind,
            payload: m.payload,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            created_at: m.created_at,
        })
    }
}

/// Fields of a queued change to update; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeUpdate {
    /// New payload (after coalescing).
    pub payload: Option<String>,
    /// New state.
    pub state: Option<ChangeState>,
    /// New retry count.
    pub retry_count: Option<u32>,
    /// New earliest attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// New last error (`Some(None)` clears it).
    pub last_error: Option<Option<String>>,
}

/// Queues a change. Returns its id.
pub async fn insert<C: ConnectionTrait>(c: &C, new: NewChange) -> Result<ChangeId, StoreError> {
    let m = p::ActiveModel {
        account_id: Set(new.account_id.0),
        email_id: Set(new.email_id.map(|e| e.0)),
        kind: Set(new.kind),
        payload: Set(new.payload),
        state: Set(ChangeState::Pending.as_str().to_owned()),
        retry_count: Set(0),
        next_attempt_at: Set(new.next_attempt_at),
        last_error: Set(None),
        created_at: Set(crate::now()),
        ..Default::default()
    }
    .insert(c)
    .await?;
    crate::changes::record_queue(ChangeId(m.id), crate::changes::QueueFate::Queued);
    Ok(ChangeId(m.id))
}

/// Loads one queued change.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
) -> Result<Option<PendingChange>, StoreError> {
    p::Entity::find_by_id(id.0)
        .one(c)
        .await?
        .map(PendingChange::try_from)
        .transpose()
}

/// Every queued change of an account (or of all accounts), oldest first.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
) -> Result<Vec<PendingChange>, StoreError> {
    let mut q = p::Entity::find();
    if let Some(a) = account {
        q = q.filter(p::Column::AccountId.eq(a.0));
    }
    q.order_by_asc(p::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(PendingChange::try_from)
        .collect()
}

/// Changes of an account due at `now`, oldest first, at most `limit`.
pub async fn due<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<PendingChange>, StoreError> {
    p::Entity::find()
        .filter(p::Column::AccountId.eq(account.0))
        .filter(p::Column::NextAttemptAt.lte(now))
        .order_by_asc(p::Column::Id)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(PendingChange::try_from)
        .collect()
}

/// The queued changes about one email, oldest first.
pub async fn for_email<C: ConnectionTrait>(
    c: &C,
    email: EmailId,
) -> Result<Vec<PendingChange>, StoreError> {
    p::Entity::find()
        .filter(p::Column::EmailId.eq(email.0))
        .order_by_asc(p::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(PendingChange::try_from)
        .collect()
}

/// The earliest `next_attempt_at` among an account's queued changes.
pub async fn next_due_at<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(p::Entity::find()
        .filter(p::Column::AccountId.eq(account.0))
        // Lost rows wait for a sync, not for a time.
        .filter(p::Column::State.ne(ChangeState::Lost.as_str()))
        .order_by_asc(p::Column::NextAttemptAt)
        .one(c)
        .await?
        .map(|m| m.next_attempt_at))
}

/// Updates a queued change.
pub async fn update<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    u: ChangeUpdate,
) -> Result<(), StoreError> {
    let mut am = p::ActiveModel {
        id: Set(id.0),
        ..Default::default()
    };
    let fate = match (&u.last_error, u.state) {
        (Some(Some(e)), _) => Some(crate::changes::QueueFate::Retrying { error: e.clone() }),
        (_, Some(st)) => Some(crate::changes::QueueFate::State(st)),
        _ => None,
    };
    if let Some(v) = u.payload {
        am.payload = Set(v);
    }
    if let Some(v) = u.state {
        am.state = Set(v.as_str().to_owned());
    }
    if let Some(v) = u.retry_count {
        am.retry_count = Set(i32::try_from(v).unwrap_or(i32::MAX));
    }
    if let Some(v) = u.next_attempt_at {
        am.next_attempt_at = Set(v);
    }
    if let Some(v) = u.last_error {
        am.last_error = Set(v);
    }
    am.update(c).await?;
    if let Some(f) = fate {
        crate::changes::record_queue(id, f);
    }
    Ok(())
}

/// Removes a queued change (acknowledged by the server, or coalesced away).
pub async fn delete<C: ConnectionTrait>(c: &C, id: ChangeId) -> Result<(), StoreError> {
    p::Entity::delete_by_id(id.0).exec(c).await?;
    crate::changes::record_queue(id, crate::changes::QueueFate::Done);
    Ok(())
}

/// Number of queued changes of an account.
pub async fn count<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<u64, StoreError> {
    Ok(p::Entity::find()
        .filter(p::Column::AccountId.eq(account.0))
        .count(c)
        .await?)
}

/// An evicted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMutation {
    /// Id in `failed_mutations`.
    pub id: FailedId,
    /// Account.
    pub account_id: AccountId,
    /// Email, if any.
    pub email_id: Option<EmailId>,
    /// Kind.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Why it was evicted, one line.
    pub reason: String,
    /// Attempts made.
    pub retry_count: u32,
    /// When it was originally queued.
    pub created_at: DateTime<Utc>,
    /// When it was evicted.
    pub failed_at: DateTime<Utc>,
}

impl From<f::Model> for FailedMutation {
    fn from(m: f::Model) -> Self {
        Self {
            id: FailedId(m.id),
            account_id: AccountId(m.account_id),
            email_id: m.email_id.map(EmailId),
            kind: m.kind,
            payload: m.payload,
            reason: m.reason,
            retry_count: u32::try_from(m.retry_count).unwrap_or(0),
            created_at: m.created_at,
            failed_at: m.failed_at,
        }
    }
}

/// Moves a queued change to `failed_mutations` with its reason. Returns the new id.
pub async fn evict<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    reason: &str,
) -> Result<FailedId, StoreError> {
    let change = get(c, id).await?.ok_or(StoreError::NotFound {
        what: "pending change",
        key: id.to_string(),
    })?;
    let m = f::ActiveModel {
        account_id: Set(change.account_id.0),
        email_id: Set(change.email_id.map(|e| e.0)),
        kind: Set(change.kind),
        payload: Set(change.payload),
        reason: Set(reason.to_owned()),
        retry_count: Set(i32::try_from(change.retry_count).unwrap_or(i32::MAX)),
        created_at: Set(change.created_at),
        failed_at: Set(crate::now()),
        ..Default::default()
    }
    .insert(c)
    .await?;
    delete(c, id).await?;
    crate::changes::record_queue(
        id,
        crate::changes::QueueFate::Evicted {
            reason: reason.to_owned(),
        },
    );
    Ok(FailedId(m.id))
}

/// Evicted changes of an account (or all), newest first.
pub async fn list_failed<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
) -> Result<Vec<FailedMutation>, StoreError> {
    let mut q = f::Entity::find();
    if let Some(a) = account {
        q = q.filter(f::Column::AccountId.eq(a.0));
    }
    Ok(q.order_by_desc(f::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(FailedMutation::from)
        .collect())
}

/// Loads one evicted change.
pub async fn get_failed<C: ConnectionTrait>(
    c: &C,
    id: FailedId,
) -> Result<Option<FailedMutation>, StoreError> {
    Ok(f::Entity::find_by_id(id.0)
        .one(c)
        .await?
        .map(FailedMutation::from))
}

/// Dismisses an evicted change.
pub async fn dismiss_failed<C: ConnectionTrait>(c: &C, id: FailedId) -> Result<(), StoreError> {
    let res = f::Entity::delete_by_id(id.0).exec(c).await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound {
            what: "failed mutation",
            key: id.to_string(),
        });
    }
    Ok(())
}

/// Puts an evicted change back in the queue with a fresh retry count. Returns the new change id.
pub async fn requeue_failed<C: ConnectionTrait>(
    c: &C,
    id: FailedId,
    now: DateTime<Utc>,
) -> Result<ChangeId, StoreError> {
    let failed = get_failed(c, id).await?.ok_or(StoreError::NotFound {
        what: "failed mutation",
        key: id.to_string(),
    })?;
    let new_id = insert(
        c,
        NewChange {
            account_id: failed.account_id,
            email_id: failed.email_id,
            kind: failed.kind,
            payload: failed.payload,
            next_attempt_at: now,
        },
    )
    .await?;
    f::Entity::delete_by_id(id.0).exec(c).await?;
    Ok(new_id)
}

/// Number of evicted changes of an account.
pub async fn count_failed<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<u64, StoreError> {
    Ok(f::Entity::find()
        .filter(f::Column::AccountId.eq(account.0))
        .count(c)
        .await?)
}
