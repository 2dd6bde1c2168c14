//! Mailboxes: server identity, display name, hierarchy, role and counters.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::entity::{email_mailboxes as em, emails as em_emails, mailboxes as mb};
use crate::{AccountId, MailboxId, Role, StoreError};

/// A mailbox as the server describes it, to insert or update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxUpsert {
    /// IMAP full name as sent by the server, or JMAP id.
    pub remote_id: String,
    /// Decoded display name.
    pub name: String,
    /// The parent's `remote_id`.
    pub parent_remote_id: Option<String>,
    /// IMAP hierarchy delimiter.
    pub delimiter: Option<String>,
    /// False for `\Noselect` containers.
    pub selectable: bool,
    /// The role the server gives. `None` keeps whatever role the mailbox has (a user-set one).
    pub role: Option<Role>,
    /// Counters and IMAP status, when known; `None` keeps the stored value.
    pub status: Option<MailboxStatus>,
}

/// Server counters of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxStatus {
    /// Number of messages.
    pub total: i64,
    /// Number of unseen messages.
    pub unread: i64,
    /// IMAP UIDVALIDITY.
    pub uidvalidity: Option<i64>,
    /// IMAP UIDNEXT.
    pub uidnext: Option<i64>,
    /// IMAP HIGHESTMODSEQ.
    pub highestmodseq: Option<i64>,
}

/// A stored mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Local id.
    pub id: MailboxId,
    /// Owning account.
    pub account_id: AccountId,
    /// IMAP name / JMAP id.
    pub remote_id: String,
    /// Decoded display name.
    pub name: String,
    /// Parent's remote id.
    pub parent_remote_id: Option<String>,
    /// IMAP hierarchy delimiter.
    pub delimiter: Option<String>,
    /// False for `\Noselect` containers.
    pub selectable: bool,
    /// Role, if any.
    pub role: Option<Role>,
    /// Counters and IMAP status as last seen.
    pub status: MailboxStatus,
}

impl TryFrom<mb::Model> for Mailbox {
    type Error = StoreError;
    fn try_from(m: mb::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: MailboxId(m.id),
            account_id: AccountId(m.account_id),
            role: m.role.as_deref().map(str::parse).transpose()?,
            remote_id: m.remote_id,
            name: m.name,
            parent_remote_id: m.parent_remote_id,
            delimiter: m.delimiter,
            selectable: m.selectable,
            status: MailboxStatus {
                total: m.total,
                unread: m.unread,
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                highestmodseq: m.highestmodseq,
            },
        })
    }
}

/// Inserts or updates mailboxes by `remote_id`; returns the stored rows in input order.
pub async fn upsert<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    items: &[MailboxUpsert],
) -> Result<Vec<Mailbox>, StoreError> {
    let existing: HashMap<String, mb::Model> = mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.remote_id.clone(), m))
        .collect();
    let now = crate::now();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        // Nothing changed: no write (a resync of an unchanged account writes no mailbox row).
        if let Some(m) = existing.get(&item.remote_id)
            && unchanged(m, item)
        {
            out.push(m.clone().try_into()?);
            continue;
        }
        let mut am = match existing.get(&item.remote_id) {
            Some(m) => {
                let mut am: mb::ActiveModel = m.clone().into();
                am.updated_at = Set(now);
                am
            }
            None => mb::ActiveModel {
                account_id: Set(account.0),
                remote_id: Set(item.remote_id.clone()),
                created_at: Set(now),
                updated_at: Set(now),
                total: Set(0),
                unread: Set(0),
                role: Set(None),
                uidvalidity: Set(None),
                uidnext: Set(None),
                highestmodseq: Set(None),
                ..Default::default()
            },
        };
        am.name = Set(item.name.clone());
        am.parent_remote_id = Set(item.parent_remote_id.clone());
        am.delimiter = Set(item.delimiter.clone());
        am.selectable = Set(item.selectable);
        if let Some(role) = item.role {
            am.role = Set(Some(role.as_str().to_owned()));
        }
        if let Some(s) = item.status {
            set_status(&mut am, s);
        }
        let model = if existing.contains_key(&item.remote_id) {
            am.update(c).await?
        } else {
            am.insert(c).await?
        };
        crate::changes::record_mailbox(MailboxId(model.id));
        out.push(model.try_into()?);
    }
    Ok(out)
}

/// Would upserting `item` over `m` change nothing?
fn unchanged(m: &mb::Model, item: &MailboxUpsert) -> bool {
    m.name == item.name
        && m.parent_remote_id == item.parent_remote_id
        && m.delimiter == item.delimiter
        && m.selectable == item.selectable
        && item
            .role
            .is_none_or(|r| m.role.as_deref() == Some(r.as_str()))
        && item.status.is_none_or(|s| {
            m.total == s.total
                && m.unread == s.unread
                && m.uidvalidity == s.uidvalidity
                && m.uidnext == s.uidnext
                && m.highestmodseq == s.highestmodseq
        })
}

fn set_status(am: &mut mb::ActiveModel, s: MailboxStatus) {
    am.total = Set(s.total);
    am.unread = Set(s.unread);
    am.uidvalidity = Set(s.uidvalidity);
    am.uidnext = Set(s.uidnext);
    am.highestmodseq = Set(s.highestmodseq);
}

/// Every mailbox of an account, by name.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<Mailbox>, StoreError> {
    mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .order_by_asc(mb::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(Mailbox::try_from)
        .collect()
}

/// Whether the account has any mailbox stored: none means its mailboxes were never listed.
pub async fn any<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<bool, StoreError> {
    Ok(mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .one(c)
        .await?
        .is_some())
}

/// Loads a mailbox by id.
pub async fn get<C: ConnectionTrait>(c: &C, id: MailboxId) -> Result<Mailbox, StoreError> {
    mb::Entity::find_by_id(id.0)
        .one(c)
        .await?
        .ok_or(StoreError::NotFound {
            what: "mailbox",
            key: id.to_string(),
        })?
        .try_into()
}

/// Finds a mailbox by its server identity.
pub async fn find_by_remote_id<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    remote_id: &str,
) -> Result<Option<Mailbox>, StoreError> {
    mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .filter(mb::Column::RemoteId.eq(remote_id))
        .one(c)
        .await?
        .map(Mailbox::try_from)
        .transpose()
}

/// Finds the mailbox with a role (the first by id if several claim it).
pub async fn find_by_role<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    role: Role,
) -> Result<Option<Mailbox>, StoreError> {
    mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .filter(mb::Column::Role.eq(role.as_str()))
        .order_by_asc(mb::Column::Id)
        .one(c)
        .await?
        .map(Mailbox::try_from)
        .transpose()
}

/// Finds a mailbox by display name, then by remote id (what a user types).
pub async fn find_by_name<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    name: &str,
) -> Result<Option<Mailbox>, StoreError> {
    let by_name = mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .filter(mb::Column::Name.eq(name))
        .order_by_asc(mb::Column::Id)
        .one(c)
        .await?;
    match by_name {
        Some(m) => Ok(Some(m.try_into()?)),
        None => find_by_remote_id(c, account, name).await,
    }
}

/// Sets (or clears) a role chosen by the user; sync keeps it while the server gives none.
pub async fn set_role<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
    role: Option<Role>,
) -> Result<(), StoreError> {
    mb::ActiveModel {
        id: Set(id.0),
        role: Set(role.map(|r| r.as_str().to_owned())),
        updated_at: Set(crate::now()),
        ..Default::default()
    }
    .update(c)
    .await?;
    Ok(())
}

/// Stores the server counters and IMAP status of a mailbox.
pub async fn update_status<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
    status: MailboxStatus,
) -> Result<(), StoreError> {
    let mut am = mb::ActiveModel {
        id: Set(id.0),
        updated_at: Set(crate::now()),
        ..Default::default()
    };
    set_status(&mut am, status);
    am.update(c).await?;
    crate::changes::record_mailbox(id);
    Ok(())
}

/// Recomputes total and unread from the local emails (after a local change) and stores them.
///
/// Takes the mailbox row's write lock first (a no-op update) and counts afterwards: under
/// PostgreSQL's READ COMMITTED, two transactions recounting the same mailbox would otherwise
/// each miss the other's uncommitted change and the last commit would store a stale count.
/// Call it for several mailboxes in id order so concurrent callers cannot deadlock.
pub async fn recount<C: ConnectionTrait>(c: &C, id: MailboxId) -> Result<(i64, i64), StoreError> {
    mb::Entity::update_many()
        .col_expr(mb::Column::Total, Expr::col(mb::Column::Total))
        .filter(mb::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    // One pass over the mailbox's memberships, each joined to its email (a membership always
    // has one: the foreign key cascades), for both counts: two `id IN (members)` counts read
    // the 100,000 memberships and emails of a large mailbox twice (40-170 ms each at L).
    let q = Query::select()
        .expr_as(
            Expr::col((em::Entity, em::Column::EmailId)).count(),
            sea_orm::sea_query::Alias::new("total"),
        )
        .expr_as(
            Expr::cust("COALESCE(SUM(CASE WHEN emails.seen THEN 0 ELSE 1 END), 0)"),
            sea_orm::sea_query::Alias::new("unread"),
        )
        .from(em::Entity)
        .inner_join(
            em_emails::Entity,
            Expr::col((em_emails::Entity, em_emails::Column::Id))
                .equals((em::Entity, em::Column::EmailId)),
        )
        .and_where(Expr::col((em::Entity, em::Column::MailboxId)).eq(id.0))
        .to_owned();
    let (total, unread) = match c.query_one(&q).await? {
        Some(row) => (
            row.try_get::<i64>("", "total")?,
            row.try_get::<i64>("", "unread")?,
        ),
        None => (0, 0),
    };
    mb::Entity::update_many()
        .col_expr(mb::Column::Total, Expr::value(total))
        .col_expr(mb::Column::Unread, Expr::value(unread))
        .filter(mb::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    crate::changes::record_mailbox(id);
    Ok((total, unread))
}

/// Gives a mailbox a new server identity (an IMAP rename seen by the sync): the row, its
/// emails, bodies and checkpoint stay; the next upsert by the new remote id updates its name.
pub async fn set_remote_id<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
    remote_id: &str,
) -> Result<(), StoreError> {
    mb::Entity::update_many()
        .col_expr(mb::Column::RemoteId, Expr::value(remote_id))
        .filter(mb::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    Ok(())
}

/// The `remote_id` prefix of a mailbox created locally whose creation is still queued: the
/// server has no such mailbox yet, so a sync must not take its absence for a deletion.
pub const LOCAL_PREFIX: &str = "local-mailbox:";

/// Whether a mailbox `remote_id` is a local placeholder (see [`LOCAL_PREFIX`]).
pub fn is_local(remote_id: &str) -> bool {
    remote_id.starts_with(LOCAL_PREFIX)
}

/// Deletes the account's mailboxes whose remote id is not in `keep`, with their emails.
/// Local placeholders ([`LOCAL_PREFIX`]) are kept: their creation is still queued.
/// Returns the number of mailboxes removed.
///
/// An email with a queued change is kept (in no mailbox for now): the mailbox it shows in may
/// be only where a queued move puts it, while the server still has it elsewhere, a place its
/// queued change remembers and restores if the change fails (the move to a mailbox another
/// client deleted is refused). Deleting the row would lose it: the server's copy is older than
/// the mailbox's sync checkpoint and would never be fetched again.
pub async fn delete_missing<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    keep: &[String],
) -> Result<u64, StoreError> {
    let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
    let gone: Vec<i64> = mb::Entity::find()
        .filter(mb::Column::AccountId.eq(account.0))
        .all(c)
        .await?
        .into_iter()
        .filter(|m| !keep.contains(m.remote_id.as_str()) && !is_local(&m.remote_id))
        .map(|m| m.id)
        .collect();
    for id in &gone {
        delete_with(c, MailboxId(*id), true).await?;
    }
    Ok(gone.len() as u64)
}

/// Deletes a mailbox, and every email that is then in no mailbox at all.
pub async fn delete<C: ConnectionTrait>(c: &C, id: MailboxId) -> Result<(), StoreError> {
    delete_with(c, id, false).await
}

/// Deletes a mailbox the server no longer has under this row, as [`delete_missing`] does:
/// emails with queued changes stay (in no mailbox, if this was their only one) for the outbox
/// to put back where its queue says they are.
pub async fn delete_gone<C: ConnectionTrait>(c: &C, id: MailboxId) -> Result<(), StoreError> {
    delete_with(c, id, true).await
}

/// [`delete`]; `keep_queued`: emails with queued changes stay (see [`delete_missing`]).
async fn delete_with<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
    keep_queued: bool,
) -> Result<(), StoreError> {
    let mut members = Query::select()
        .column(em::Column::EmailId)
        .from(em::Entity)
        .and_where(Expr::col(em::Column::MailboxId).eq(id.0))
        .to_owned();
    if keep_queued {
        members.and_where(
            Expr::col(em::Column::EmailId).not_in_subquery(crate::queue::queued_email_ids()),
        );
    }
    let elsewhere = Query::select()
        .column(em::Column::EmailId)
        .from(em::Entity)
        .and_where(Expr::col(em::Column::MailboxId).ne(id.0))
        .to_owned();
    if crate::changes::collecting() {
        let gone: Vec<i64> = em_emails::Entity::find()
            .select_only()
            .column(em_emails::Column::Id)
            .filter(em_emails::Column::Id.in_subquery(members.clone()))
            .filter(em_emails::Column::Id.not_in_subquery(elsewhere.clone()))
            .into_tuple()
            .all(c)
            .await?;
        crate::changes::removing_ids(c, &gone).await?;
    }
    crate::changes::record_mailbox(id);
    em_emails::Entity::delete_many()
        .filter(em_emails::Column::Id.in_subquery(members))
        .filter(em_emails::Column::Id.not_in_subquery(elsewhere))
        .exec(c)
        .await?;
    mb::Entity::delete_by_id(id.0).exec(c).await?;
    // Its recorded MAILBOXID goes with it: a later row may get the same local id (SQLite
    // reuses the highest rowid once deleted).
    crate::entity::sync_state::Entity::delete_many()
        .filter(
            crate::entity::sync_state::Column::Scope
                .eq(crate::checkpoints::Scope::imap_mailbox_id(id).as_str()),
        )
        .exec(c)
        .await?;
    Ok(())
}

/// Changes a mailbox's display name and parent locally (a rename queued in the outbox, or its
/// revert); the server identity stays until the server confirms.
pub async fn set_name<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
    name: &str,
    parent_remote_id: Option<&str>,
) -> Result<(), StoreError> {
    mb::Entity::update_many()
        .col_expr(mb::Column::Name, Expr::value(name))
        .col_expr(mb::Column::ParentRemoteId, Expr::value(parent_remote_id))
        .col_expr(mb::Column::UpdatedAt, Expr::value(crate::now()))
        .filter(mb::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    crate::changes::record_mailbox(id);
    Ok(())
}

/// The ids of the emails with a copy in a mailbox.
pub async fn email_ids<C: ConnectionTrait>(
    c: &C,
    id: MailboxId,
) -> Result<Vec<crate::EmailId>, StoreError> {
    let ids: Vec<i64> = em::Entity::find()
        .select_only()
        .column(em::Column::EmailId)
        .filter(em::Column::MailboxId.eq(id.0))
        .into_tuple()
        .all(c)
        .await?;
    Ok(ids.into_iter().map(crate::EmailId).collect())
}
