//! The sync log: one row per sync cycle, written when it starts and completed when it ends.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::entity::sync_log as l;
use crate::{AccountId, StoreError, SyncLogId};

/// What a cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncCounts {
    /// Mailboxes synced.
    pub mailboxes: i64,
    /// Emails added locally.
    pub emails_added: i64,
    /// Emails updated locally.
    pub emails_updated: i64,
    /// Emails removed locally.
    pub emails_removed: i64,
    /// Queued changes the server acknowledged.
    pub changes_flushed: i64,
}

/// How a cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleStatus {
    /// Still running (or the process died during it).
    Running,
    /// Succeeded.
    Ok,
    /// Failed; see the error message.
    Error,
}

impl CycleStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// A sync log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLogEntry {
    /// Row id.
    pub id: SyncLogId,
    /// Account.
    pub account_id: AccountId,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time (None while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// Outcome.
    pub status: CycleStatus,
    /// One-line error message on failure.
    pub error: Option<String>,
    /// Counts.
    pub counts: SyncCounts,
    /// The engine (lease owner, e.g. a daemon of a fleet) that ran the cycle, when recorded.
    pub owner: Option<String>,
}

impl TryFrom<l::Model> for SyncLogEntry {
    type Error = StoreError;
    fn try_from(m: l::Model) -> Result<Self, StoreError> {
        let status = match m.status.as_str() {
            "running" => CycleStatus::Running,
            "ok" => CycleStatus::Ok,
            "error" => CycleStatus::Error,
            other => {
                return Err(StoreError::InvalidValue {
                    what: "CycleStatus",
                    value: other.to_owned(),
                });
            }
        };
        Ok(Self {
            id: SyncLogId(m.id),
            account_id: AccountId(m.account_id),
            started_at: m.started_at,
            finished_at: m.finished_at,
            status,
            error: m.error,
            counts: SyncCounts {
                mailboxes: m.mailboxes,
                emails_added: m.emails_added,
                emails_updated: m.emails_updated,
                emails_removed: m.emails_removed,
                changes_flushed: m.changes_flushed,
            },
            owner: m.owner,
        })
    }
}

/// Records the start of a cycle.
pub async fn start<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<SyncLogId, StoreError> {
    start_by(c, account, None).await
}

/// Records the start of a cycle run by `owner` (the engine's lease owner name), so who synced
/// an account when can be read back (a fleet's ownership audit).
pub async fn start_by<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    owner: Option<&str>,
) -> Result<SyncLogId, StoreError> {
    let m = l::ActiveModel {
        owner: Set(owner.map(str::to_owned)),
        account_id: Set(account.0),
        started_at: Set(crate::now()),
        finished_at: Set(None),
        status: Set(CycleStatus::Running.as_str().to_owned()),
        error: Set(None),
        mailboxes: Set(0),
        emails_added: Set(0),
        emails_updated: Set(0),
        emails_removed: Set(0),
        changes_flushed: Set(0),
        ..Default::default()
    }
    .insert(c)
    .await?;
    Ok(SyncLogId(m.id))
}

/// Records the end of a cycle: `Ok(())` or the one-line error.
pub async fn finish<C: ConnectionTrait>(
    c: &C,
    id: SyncLogId,
    outcome: Result<(), &str>,
    counts: SyncCounts,
) -> Result<(), StoreError> {
    let (status, error) = match outcome {
        Ok(()) => (CycleStatus::Ok, None),
        // Keep the message to one line so log listings stay readable.
        Err(e) => (
            CycleStatus::Error,
            Some(e.lines().next().unwrap_or("").to_owned()),
        ),
    };
    l::ActiveModel {
        id: Set(id.0),
        finished_at: Set(Some(crate::now())),
        status: Set(status.as_str().to_owned()),
        error: Set(error),
        mailboxes: Set(counts.mailboxes),
        emails_added: Set(counts.emails_added),
        emails_updated: Set(counts.emails_updated),
        emails_removed: Set(counts.emails_removed),
        changes_flushed: Set(counts.changes_flushed),
        ..Default::default()
    }
    .update(c)
    .await?;
    Ok(())
}

/// Log rows, newest first.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
    limit: u64,
) -> Result<Vec<SyncLogEntry>, StoreError> {
    let mut q = l::Entity::find();
    if let Some(a) = account {
        q = q.filter(l::Column::AccountId.eq(a.0));
    }
    q.order_by_desc(l::Column::Id)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(SyncLogEntry::try_from)
        .collect()
}

/// The latest finished cycle of an account.
pub async fn last_finished<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Option<SyncLogEntry>, StoreError> {
    l::Entity::find()
        .filter(l::Column::AccountId.eq(account.0))
        .filter(l::Column::FinishedAt.is_not_null())
        .order_by_desc(l::Column::Id)
        .one(c)
        .await?
        .map(SyncLogEntry::try_from)
        .transpose()
}
