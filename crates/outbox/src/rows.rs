//! Typed access to `pending_changes` rows beyond the store's functions: decoded payloads,
//! state-conditional updates (so an enqueue never merges into a row a flush has just taken),
//! the per-email "next due" selection and per-state counts.

use chrono::{DateTime, Utc};
use mailsync_store::changes::{self, QueueFate};
use mailsync_store::entity::pending_changes as p;
use mailsync_store::queue::{self, ChangeState, PendingChange};
use mailsync_store::{AccountId, ChangeId, ConnectionTrait, EmailId};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::Error;
use crate::model::{EmailPayload, Payload};

/// A queued row with its payload decoded.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: ChangeId,
    pub(crate) account: AccountId,
    pub(crate) email_id: Option<EmailId>,
    pub(crate) state: ChangeState,
    pub(crate) retry_count: u32,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) payload: Payload,
}

impl Row {
    pub(crate) fn decode(c: PendingChange) -> Result<Self, Error> {
        Ok(Self {
            payload: Payload::parse(c.id.0, &c.payload)?,
            id: c.id,
            account: c.account_id,
            email_id: c.email_id,
            state: c.state,
            retry_count: c.retry_count,
            created_at: c.created_at,
        })
    }

    /// Whether executing it makes something new on the server that a second execution would
    /// make again or stumble on: a draft's new content (a second copy), a mailbox or a
    /// mailbox's new name (`ALREADYEXISTS`, `NONEXISTENT`). After a failure that may have come
    /// after the server acted (a cut ends the batch as offline), its retry looks first
    /// ([`crate::Attempt::Uncertain`]) instead of being handed over as fresh. (Model test,
    /// Cyrus JMAP seed 2059 with cuts: a mailbox create sent before a send's cut went back to
    /// pending, so deleting the mailbox then withdrew the create, and the server kept it.)
    pub(crate) fn makes_something_new(&self) -> bool {
        match &self.payload {
            Payload::Email(e) => crate::model::latest_content(&e.ops).is_some(),
            Payload::Mailbox(m) => matches!(
                m.change,
                crate::MailboxChange::Create { .. } | crate::MailboxChange::Rename { .. }
            ),
            Payload::Send(_) => false,
        }
    }

    pub(crate) fn email_payload(&self) -> Option<&EmailPayload> {
        match &self.payload {
            Payload::Email(e) => Some(e),
            Payload::Send(_) | Payload::Mailbox(_) => None,
        }
    }
}

fn decode_all(rows: Vec<p::Model>) -> Result<Vec<Row>, Error> {
    rows.into_iter()
        .map(|m| Row::decode(PendingChange::try_from(m)?))
        .collect()
}

/// One row.
pub(crate) async fn get<C: ConnectionTrait>(c: &C, id: ChangeId) -> Result<Option<Row>, Error> {
    queue::get(c, id).await?.map(Row::decode).transpose()
}

/// These rows (undecoded; missing ones are skipped), oldest first.
pub(crate) async fn get_many<C: ConnectionTrait>(
    c: &C,
    ids: &[ChangeId],
) -> Result<Vec<PendingChange>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(400) {
        let models = p::Entity::find()
            .filter(p::Column::Id.is_in(chunk.iter().map(|i| i.0)))
            .all(c)
            .await?;
        for m in models {
            out.push(PendingChange::try_from(m)?);
        }
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// Marks the pending ones among these rows in flight.
pub(crate) async fn mark_in_flight<C: ConnectionTrait>(
    c: &C,
    ids: &[ChangeId],
) -> Result<(), Error> {
    for chunk in ids.chunks(400) {
        p::Entity::update_many()
            .col_expr(
                p::Column::State,
                Expr::value(ChangeState::InFlight.as_str()),
            )
            .filter(p::Column::Id.is_in(chunk.iter().map(|i| i.0)))
            .filter(p::Column::State.eq(ChangeState::Pending.as_str()))
            .exec(c)
            .await?;
    }
    Ok(())
}

/// Points a row at another email (a lost change found again as another row).
pub(crate) async fn set_email<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    email: EmailId,
) -> Result<(), Error> {
    p::Entity::update_many()
        .col_expr(p::Column::EmailId, Expr::value(email.0))
        .filter(p::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    Ok(())
}

/// The rows of one email, oldest first.
pub(crate) async fn for_email<C: ConnectionTrait>(
    c: &C,
    email: EmailId,
) -> Result<Vec<Row>, Error> {
    queue::for_email(c, email)
        .await?
        .into_iter()
        .map(Row::decode)
        .collect()
}

/// Replaces a row's payload, whatever its state.
pub(crate) async fn set_payload<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    payload: Payload,
) -> Result<(), Error> {
    update(
        c,
        id,
        None,
        Patch {
            payload: Some(payload),
            ..Patch::default()
        },
    )
    .await?;
    Ok(())
}

/// The rows of an account, oldest first; those that cannot be decoded (a payload written by a
/// newer version, or damaged) are evicted, as the flush does with such a head: every other
/// reader of the queue would otherwise fail on them.
pub(crate) async fn readable<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<Row>, Error> {
    let mut out = Vec::new();
    for raw in queue::list(c, Some(account)).await? {
        let id = raw.id;
        match Row::decode(raw) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::warn!(change = %id, error = %e, "Unreadable queued change; evicting it.");
                queue::evict(c, id, &e.to_string()).await?;
            }
        }
    }
    Ok(out)
}

/// The rows of an account, oldest first.
pub(crate) async fn for_account<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<Row>, Error> {
    queue::list(c, Some(account))
        .await?
        .into_iter()
        .map(Row::decode)
        .collect()
}

/// The rows of these emails, oldest first.
pub(crate) async fn for_emails<C: ConnectionTrait>(
    c: &C,
    emails: &[EmailId],
) -> Result<Vec<Row>, Error> {
    let mut out = Vec::new();
    for chunk in emails.chunks(400) {
        let models = p::Entity::find()
            .filter(p::Column::EmailId.is_in(chunk.iter().map(|e| e.0)))
            .order_by_asc(p::Column::Id)
            .all(c)
            .await?;
        out.extend(decode_all(models)?);
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// Rows of an account due at `now`, oldest first, at most `limit`, skipping every row that has
/// an older row for the same email (whatever that row's state or schedule): an email's changes
/// go to the server one at a time, in order. Sends have no email and are never held back.
pub(crate) async fn due_heads<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<PendingChange>, Error> {
    let earlier = Alias::new("earlier");
    let older_of_same_email = Query::select()
        .expr(Expr::val(1))
        .from_as(p::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), p::Column::EmailId))
                .equals((p::Entity, p::Column::EmailId)),
        )
        .and_where(Expr::col((earlier, p::Column::Id)).lt(Expr::col((p::Entity, p::Column::Id))))
        .to_owned();
    // Mailbox changes are barriers (sends aside, which address no mailbox): one runs only when
    // no older change of the account is queued, and nothing queued after it runs before it,
    // so a move into a mailbox created offline goes up after the create.
    let older_mailbox_change =
        older_of_account(Expr::col((Alias::new("m_older"), p::Column::Kind)).eq(MAILBOX_KIND));
    // A lost row, and the rows of its email queued behind it, do not hold them back: the lost
    // row waits for a sync that may only find its message after the mailbox change (see
    // `resolve::reresolve`), and the rows behind it wait for the lost row.
    let m_older = Alias::new("m_older");
    let lost = Alias::new("lost");
    let lost_before_it = Query::select()
        .expr(Expr::val(1))
        .from_as(p::Entity, lost.clone())
        .and_where(
            Expr::col((lost.clone(), p::Column::EmailId))
                .equals((m_older.clone(), p::Column::EmailId)),
        )
        .and_where(Expr::col((lost.clone(), p::Column::State)).eq(ChangeState::Lost.as_str()))
        .and_where(
            Expr::col((lost, p::Column::Id)).lte(Expr::col((m_older.clone(), p::Column::Id))),
        )
        .to_owned();
    let older_non_send = older_of_account(
        Expr::col((m_older, p::Column::Kind))
            .ne(SEND_KIND)
            .and(Expr::not_exists(lost_before_it)),
    );
    let models = p::Entity::find()
        .filter(p::Column::AccountId.eq(account.0))
        .filter(p::Column::NextAttemptAt.lte(now))
        .filter(
            Condition::any()
                .add(p::Column::Kind.eq(SEND_KIND))
                .add(Expr::not_exists(older_mailbox_change)),
        )
        .filter(
            Condition::any()
                .add(p::Column::Kind.ne(MAILBOX_KIND))
                .add(Expr::not_exists(older_non_send)),
        )
        // A lost row is re-resolved after a sync, and blocks its email's later rows until then.
        .filter(p::Column::State.ne(ChangeState::Lost.as_str()))
        .filter(Expr::not_exists(older_of_same_email))
        .order_by_asc(p::Column::Id)
        .limit(u64::try_from(limit).unwrap_or(u64::MAX))
        .all(c)
        .await?;
    // Decoded by the caller, row by row: one unreadable payload must not block the queue.
    models
        .into_iter()
        .map(|m| PendingChange::try_from(m).map_err(Error::from))
        .collect()
}

/// Whether a mailbox change of `account` was queued after row `id`. An email change must not
/// be merged into a row older than such a barrier: the merged operation would run before the
/// mailbox change it may depend on (a move into a mailbox created offline).
pub(crate) async fn mailbox_change_after<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: ChangeId,
) -> Result<bool, Error> {
    let n = p::Entity::find()
        .filter(p::Column::AccountId.eq(account.0))
        .filter(p::Column::Kind.eq(MAILBOX_KIND))
        .filter(p::Column::Id.gt(id.0))
        .count(c)
        .await?;
    Ok(n > 0)
}

const MAILBOX_KIND: &str = "mailbox";
const SEND_KIND: &str = "send";

/// `SELECT 1` from an older row of the same account matching `cond` (on alias `m_older`).
fn older_of_account(cond: sea_orm::sea_query::SimpleExpr) -> sea_orm::sea_query::SelectStatement {
    let older = Alias::new("m_older");
    Query::select()
        .expr(Expr::val(1))
        .from_as(p::Entity, older.clone())
        .and_where(
            Expr::col((older.clone(), p::Column::AccountId))
                .equals((p::Entity, p::Column::AccountId)),
        )
        .and_where(Expr::col((older, p::Column::Id)).lt(Expr::col((p::Entity, p::Column::Id))))
        .and_where(cond)
        .to_owned()
}

/// What to change in a row.
#[derive(Debug, Default)]
pub(crate) struct Patch {
    pub(crate) payload: Option<Payload>,
    pub(crate) state: Option<ChangeState>,
    pub(crate) retry_count: Option<u32>,
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<Option<String>>,
}

/// Updates a row, only while it is in state `only_if` (when given). Returns whether it did.
pub(crate) async fn update<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    only_if: Option<ChangeState>,
    patch: Patch,
) -> Result<bool, Error> {
    let mut q = p::Entity::update_many().filter(p::Column::Id.eq(id.0));
    if let Some(s) = only_if {
        q = q.filter(p::Column::State.eq(s.as_str()));
    }
    if let Some(pl) = &patch.payload {
        q = q
            .col_expr(p::Column::Payload, Expr::value(pl.to_json()))
            .col_expr(p::Column::Kind, Expr::value(pl.kind()));
    }
    if let Some(s) = patch.state {
        q = q.col_expr(p::Column::State, Expr::value(s.as_str()));
    }
    if let Some(n) = patch.retry_count {
        q = q.col_expr(
            p::Column::RetryCount,
            Expr::value(i32::try_from(n).unwrap_or(i32::MAX)),
        );
    }
    if let Some(t) = patch.next_attempt_at {
        q = q.col_expr(p::Column::NextAttemptAt, Expr::value(t));
    }
    let fate = match (&patch.last_error, patch.state) {
        (Some(Some(e)), _) => Some(QueueFate::Retrying { error: e.clone() }),
        (_, Some(s)) => Some(QueueFate::State(s)),
        _ => None,
    };
    if let Some(e) = patch.last_error {
        q = q.col_expr(p::Column::LastError, Expr::value(e));
    }
    let done = q.exec(c).await?.rows_affected > 0;
    if let (true, Some(f)) = (done, fate) {
        changes::record_queue(id, f);
    }
    Ok(done)
}

/// Deletes a row, only while it is in state `only_if` (when given). Returns whether it did.
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    id: ChangeId,
    only_if: Option<ChangeState>,
) -> Result<bool, Error> {
    let mut q = p::Entity::delete_many().filter(p::Column::Id.eq(id.0));
    if let Some(s) = only_if {
        q = q.filter(p::Column::State.eq(s.as_str()));
    }
    let done = q.exec(c).await?.rows_affected > 0;
    if done {
        changes::record_queue(id, QueueFate::Done);
    }
    Ok(done)
}

/// Number of rows of an account per state.
pub(crate) async fn count_by_state<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<(String, i64)>, Error> {
    Ok(p::Entity::find()
        .select_only()
        .column(p::Column::State)
        .column_as(p::Column::Id.count(), "n")
        .filter(p::Column::AccountId.eq(account.0))
        .group_by(p::Column::State)
        .into_tuple::<(String, i64)>()
        .all(c)
        .await?)
}
