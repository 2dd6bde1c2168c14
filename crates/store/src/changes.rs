//! Which emails and mailboxes a task's writes touched: the store's write functions record the
//! ids they wrote into a collector scoped to the calling task ([`collect`]), so an app can be
//! told exactly what to redraw. One mechanism for every writer (IMAP sync, JMAP sync, outbox).
//!
//! Outside a [`collect`] scope recording is a no-op and costs one task-local lookup; inside it,
//! inserts and updates cost nothing extra (their ids are known), while removals and flag
//! updates by remote id cost one `SELECT` per chunk (their ids are looked up before the write).
//! What is recorded is what was written, not necessarily committed: a transaction that rolls
//! back after a write leaves its ids recorded, so readers treat them as "look at these rows
//! again", which stays correct either way.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::{Expr, ExprTrait, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::entity::email_mailboxes as em;
use crate::queue::ChangeState;
use crate::{ChangeId, EmailId, MailboxId, StoreError};

const CHUNK: usize = 400;

/// Emails by id with the mailboxes they are (created, updated) or were (removed) in.
pub type EmailSet = BTreeMap<EmailId, BTreeSet<MailboxId>>;

/// What the writes of one scope touched, by local id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changes {
    /// Emails inserted.
    pub created: EmailSet,
    /// Emails whose row or memberships changed (flags, keywords, mailboxes, metadata).
    pub updated: EmailSet,
    /// Emails deleted, with the mailboxes they were in.
    pub removed: EmailSet,
    /// Mailboxes created, changed, recounted or deleted.
    pub mailboxes: BTreeSet<MailboxId>,
    /// Queued changes (and sends) and where each ended up in this scope.
    pub queue: BTreeMap<ChangeId, QueueFate>,
}

/// What happened to a queued change (the last thing in a scope).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueFate {
    /// Queued (a local change or a send, or a failed one retried by the user).
    Queued,
    /// Its state changed: in flight, accepted (`Submitted`, a send), lost, or back to pending.
    State(ChangeState),
    /// A transient failure: it waits for its backoff.
    Retrying {
        /// The error, one line.
        error: String,
    },
    /// Acknowledged by the server, or dropped as moot (the row is gone).
    Done,
    /// Evicted to the failed list, its local change reverted.
    Evicted {
        /// Why, one line.
        reason: String,
    },
}

impl Changes {
    /// Nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.mailboxes.is_empty()
            && self.queue.is_empty()
    }

    fn created(&mut self, id: EmailId, boxes: impl IntoIterator<Item = MailboxId>) {
        self.removed.remove(&id);
        self.updated.remove(&id);
        self.created.entry(id).or_default().extend(boxes);
    }

    fn updated(&mut self, id: EmailId, boxes: impl IntoIterator<Item = MailboxId>) {
        // An email created in this scope stays "created": a reader has not seen it yet.
        let set = if let Some(s) = self.created.get_mut(&id) {
            s
        } else {
            self.updated.entry(id).or_default()
        };
        set.extend(boxes);
    }

    fn removed(&mut self, id: EmailId, boxes: impl IntoIterator<Item = MailboxId>) {
        let mut all: BTreeSet<MailboxId> = boxes.into_iter().collect();
        if let Some(s) = self.updated.remove(&id) {
            all.extend(s);
        }
        if let Some(s) = self.created.remove(&id) {
            all.extend(s);
        }
        self.removed.entry(id).or_default().extend(all);
    }
}

tokio::task_local! {
    static SINK: Arc<Mutex<Changes>>;
}

/// Runs `fut` and returns what the store writes made inside it (in this task) touched.
pub async fn collect<F: Future>(fut: F) -> (F::Output, Changes) {
    let sink = Arc::new(Mutex::new(Changes::default()));
    let out = SINK.scope(sink.clone(), fut).await;
    let changes = match sink.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    (out, changes)
}

/// Whether the current task collects changes (callers skip the look-ups otherwise).
pub(crate) fn collecting() -> bool {
    SINK.try_with(|_| ()).is_ok()
}

fn with(f: impl FnOnce(&mut Changes)) {
    let _ = SINK.try_with(|s| match s.lock() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    });
}

pub(crate) fn record_created(id: EmailId, boxes: impl IntoIterator<Item = MailboxId>) {
    with(|c| c.created(id, boxes));
}

pub(crate) fn record_updated(id: EmailId, boxes: impl IntoIterator<Item = MailboxId>) {
    with(|c| c.updated(id, boxes));
}

/// Records a queued change's fate; public for the outbox, whose state-conditional updates of
/// `pending_changes` are its own queries.
pub fn record_queue(id: ChangeId, fate: QueueFate) {
    with(|c| {
        c.queue.insert(id, fate);
    });
}

pub(crate) fn record_mailbox(id: MailboxId) {
    with(|c| {
        c.mailboxes.insert(id);
    });
}

/// Records as updated the emails selected by `emails` (a `SELECT email_id ...`), with their
/// current mailboxes. No query unless collecting.
pub(crate) async fn updated_where<C: ConnectionTrait>(
    c: &C,
    emails: SelectStatement,
) -> Result<(), StoreError> {
    record_where(c, emails, Changes::updated).await
}

/// Records as removed the emails selected by `emails`, with their mailboxes. Call it before
/// the delete. No query unless collecting.
pub(crate) async fn removing_where<C: ConnectionTrait>(
    c: &C,
    emails: SelectStatement,
) -> Result<(), StoreError> {
    record_where(c, emails, Changes::removed).await
}

async fn record_where<C: ConnectionTrait>(
    c: &C,
    emails: SelectStatement,
    record: fn(&mut Changes, EmailId, BTreeSet<MailboxId>),
) -> Result<(), StoreError> {
    if !collecting() {
        return Ok(());
    }
    let pairs = copies(c, emails).await?;
    with(|ch| {
        for (e, boxes) in pairs {
            record(ch, e, boxes);
        }
    });
    Ok(())
}

/// Records as removed these emails (by id), with their mailboxes. Call it before the delete.
pub(crate) async fn removing_ids<C: ConnectionTrait>(c: &C, ids: &[i64]) -> Result<(), StoreError> {
    if !collecting() {
        return Ok(());
    }
    for chunk in ids.chunks(CHUNK) {
        let sub = sea_orm::sea_query::Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::EmailId).is_in(chunk.iter().copied()))
            .to_owned();
        let pairs = copies(c, sub).await?;
        with(|ch| {
            for id in chunk {
                let boxes = pairs.get(&EmailId(*id)).cloned().unwrap_or_default();
                ch.removed(EmailId(*id), boxes);
            }
        });
    }
    Ok(())
}

/// The mailboxes of the emails `emails` selects.
async fn copies<C: ConnectionTrait>(
    c: &C,
    emails: SelectStatement,
) -> Result<EmailSet, StoreError> {
    let rows: Vec<(i64, i64)> = em::Entity::find()
        .select_only()
        .column(em::Column::EmailId)
        .column(em::Column::MailboxId)
        .filter(em::Column::EmailId.in_subquery(emails))
        .into_tuple()
        .all(c)
        .await?;
    let mut out = EmailSet::new();
    for (e, m) in rows {
        out.entry(EmailId(e)).or_default().insert(MailboxId(m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_then_updated_stays_created_and_removed_wins() {
        let mut c = Changes::default();
        c.created(EmailId(1), [MailboxId(1)]);
        c.updated(EmailId(1), [MailboxId(2)]);
        c.updated(EmailId(2), [MailboxId(1)]);
        c.removed(EmailId(2), []);
        assert_eq!(
            c.created.get(&EmailId(1)),
            Some(&BTreeSet::from([MailboxId(1), MailboxId(2)]))
        );
        assert!(c.updated.is_empty());
        assert_eq!(
            c.removed.get(&EmailId(2)),
            Some(&BTreeSet::from([MailboxId(1)]))
        );
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_recorded() {
        assert!(!collecting());
        record_created(EmailId(1), []);
        let ((), c) = collect(async {
            assert!(collecting());
            record_updated(EmailId(3), [MailboxId(9)]);
        })
        .await;
        assert_eq!(c.updated.len(), 1);
    }
}
