//! Emails and their mailbox memberships: batched upserts, flag updates, removals and listings.
//!
//! Server identity: a JMAP email's `remote_id` is its Email id; an IMAP message's is
//! [`imap_remote_id`] (mailbox, UIDVALIDITY, UID), since every IMAP copy is its own message.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set,
};

use crate::entity::{attachments as att, email_mailboxes as em, emails as e, mailboxes as mb};
use crate::{AccountId, Address, EmailId, Flags, MailboxId, Role, StoreError};

/// Rows per statement: keeps every backend under its bind-parameter limit.
const CHUNK: usize = 400;

/// The `remote_id` of an IMAP message.
pub fn imap_remote_id(mailbox: MailboxId, uidvalidity: u32, uid: u32) -> String {
    format!("{}/{}/{}", mailbox.0, uidvalidity, uid)
}

/// The `remote_id` an email holds once the IMAP identity it had in `mailbox` is retired (its
/// mailbox was renumbered or replaced: [`crate::uids::retire_identities`]). It names no message
/// on the server and never equals an [`imap_remote_id`] (its middle part is not a number) nor
/// a JMAP id (which has no `/`), so a later message given the old mailbox, UIDVALIDITY and UID
/// (a server that hands a UIDVALIDITY out again) is a new email, not this one.
pub fn retired_remote_id(mailbox: MailboxId, email: EmailId) -> String {
    format!("{}/retired/{}", mailbox.0, email.0)
}

/// Whether `remote_id` is a retired identity ([`retired_remote_id`]).
pub fn is_retired(remote_id: &str) -> bool {
    remote_id.split('/').nth(1) == Some("retired")
}

/// Membership of an email in a mailbox, with the IMAP identity of that copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The mailbox.
    pub mailbox_id: MailboxId,
    /// IMAP UIDVALIDITY of the copy (None for JMAP).
    pub uidvalidity: Option<i64>,
    /// IMAP UID of the copy (None for JMAP, or while a local move is pending).
    pub uid: Option<i64>,
    /// IMAP MODSEQ last seen for the copy.
    pub modseq: Option<i64>,
}

impl Membership {
    /// A membership without IMAP identity (JMAP, or an optimistic local move).
    pub fn plain(mailbox_id: MailboxId) -> Self {
        Self {
            mailbox_id,
            uidvalidity: None,
            uid: None,
            modseq: None,
        }
    }
}

/// Attachment metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    /// IMAP part number ("2", "1.2") or JMAP partId.
    pub part_id: Option<String>,
    /// JMAP blob id.
    pub blob_id: Option<String>,
    /// Decoded file name.
    pub file_name: Option<String>,
    /// MIME type, lower case.
    pub mime_type: String,
    /// Size in bytes (encoded size for IMAP).
    pub size: i64,
    /// `attachment` or `inline`.
    pub disposition: Option<String>,
    /// Content-ID without angle brackets.
    pub content_id: Option<String>,
}

/// An email as the server describes it, to insert or update (keyed by `remote_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailUpsert {
    /// Server identity (see the module docs).
    pub remote_id: String,
    /// JMAP blob id of the whole message.
    pub blob_id: Option<String>,
    /// Server thread id.
    pub thread_id: Option<String>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To message ids, space separated, without brackets.
    pub in_reply_to: Option<String>,
    /// References message ids, space separated, without brackets.
    pub references: Option<String>,
    /// Decoded subject.
    pub subject: Option<String>,
    /// From.
    pub from: Vec<Address>,
    /// To.
    pub to: Vec<Address>,
    /// Cc.
    pub cc: Vec<Address>,
    /// Bcc (only known for messages we sent or drafts).
    pub bcc: Vec<Address>,
    /// Reply-To.
    pub reply_to: Vec<Address>,
    /// The Date header.
    pub sent_at: Option<DateTime<Utc>>,
    /// Arrival time (IMAP INTERNALDATE, JMAP receivedAt).
    pub received_at: DateTime<Utc>,
    /// Size in bytes.
    pub size: i64,
    /// Flags and keywords.
    pub flags: Flags,
    /// A short plain-text preview.
    pub preview: Option<String>,
    /// Whether the message has attachments.
    pub has_attachment: bool,
    /// The complete set of mailboxes the email is in (replaces the stored memberships).
    pub mailboxes: Vec<Membership>,
    /// `Some` replaces the stored attachment metadata; `None` leaves it alone.
    pub attachments: Option<Vec<Attachment>>,
    /// The caller stores this email's body in the same transaction, after this upsert
    /// ([`crate::bodies::put_many`]; a first sync with bodies). A new row is then written
    /// with `body_cached` already set, so the body's trigger finds nothing to change: on
    /// PostgreSQL it otherwise wrote a second version of every new row and of its six index
    /// entries (`body_cached` is indexed, so the update is never HOT). Leave `false` when
    /// the body is not written in the same transaction: a row marked cached without a body
    /// would never have its body fetched. An existing row's `body_cached` is the triggers'
    /// either way.
    pub body_in_transaction: bool,
}

impl EmailUpsert {
    /// An upsert with only the identity and arrival time set, for builders and tests.
    pub fn new(remote_id: impl Into<String>, received_at: DateTime<Utc>) -> Self {
        Self {
            remote_id: remote_id.into(),
            blob_id: None,
            thread_id: None,
            message_id: None,
            in_reply_to: None,
            references: None,
            subject: None,
            from: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: Vec::new(),
            sent_at: None,
            received_at,
            size: 0,
            flags: Flags::default(),
            preview: None,
            has_attachment: false,
            mailboxes: Vec::new(),
            attachments: None,
            body_in_transaction: false,
        }
    }
}

/// What an upsert batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpsertStats {
    /// Rows that did not exist before.
    pub inserted: u64,
    /// Rows that existed and were updated.
    pub updated: u64,
}

/// A stored email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Local id.
    pub id: EmailId,
    /// Owning account.
    pub account_id: AccountId,
    /// Server identity.
    pub remote_id: String,
    /// JMAP blob id.
    pub blob_id: Option<String>,
    /// Thread id.
    pub thread_id: Option<String>,
    /// Message-ID without brackets.
    pub message_id: Option<String>,
    /// In-Reply-To.
    pub in_reply_to: Option<String>,
    /// References.
    pub references: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// From.
    pub from: Vec<Address>,
    /// To.
    pub to: Vec<Address>,
    /// Cc.
    pub cc: Vec<Address>,
    /// Bcc.
    pub bcc: Vec<Address>,
    /// Reply-To.
    pub reply_to: Vec<Address>,
    /// Date header.
    pub sent_at: Option<DateTime<Utc>>,
    /// Arrival time.
    pub received_at: DateTime<Utc>,
    /// Size in bytes.
    pub size: i64,
    /// Flags and keywords.
    pub flags: Flags,
    /// Preview.
    pub preview: Option<String>,
    /// Has attachments.
    pub has_attachment: bool,
}

fn addrs(what: &'static str, s: &str) -> Result<Vec<Address>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::json(what, e))
}

fn to_json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::json(what, e))
}

impl TryFrom<e::Model> for Email {
    type Error = StoreError;
    fn try_from(m: e::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: EmailId(m.id),
            account_id: AccountId(m.account_id),
            from: addrs("emails.from_addr", &m.from_addr)?,
            to: addrs("emails.to_addr", &m.to_addr)?,
            cc: addrs("emails.cc_addr", &m.cc_addr)?,
            bcc: addrs("emails.bcc_addr", &m.bcc_addr)?,
            reply_to: addrs("emails.reply_to", &m.reply_to)?,
            flags: Flags {
                seen: m.seen,
                flagged: m.flagged,
                answered: m.answered,
                draft: m.draft,
                keywords: serde_json::from_str(&m.keywords)
                    .map_err(|e| StoreError::json("emails.keywords", e))?,
            },
            remote_id: m.remote_id,
            blob_id: m.blob_id,
            thread_id: m.thread_id,
            message_id: m.message_id,
            in_reply_to: m.in_reply_to,
            references: m.references,
            subject: m.subject,
            sent_at: m.sent_at,
            received_at: m.received_at,
            size: m.size,
            preview: m.preview,
            has_attachment: m.has_attachment,
        })
    }
}

/// The longest Message-ID stored: a header line holds at most 998 characters (RFC 5322
/// §2.1.1), so a longer one is not a Message-ID, and it is stored as none. The column is a
/// B-tree key on PostgreSQL, which refuses an index row over 2,704 bytes: one message from
/// anyone with a Message-ID of a few kilobytes failed its batch's write, and the sync of its
/// mailbox, every cycle.
pub const MESSAGE_ID_MAX: usize = 998;

fn active(
    account: AccountId,
    u: &EmailUpsert,
    now: DateTime<Utc>,
) -> Result<e::ActiveModel, StoreError> {
    Ok(e::ActiveModel {
        id: ActiveValue::NotSet,
        account_id: Set(account.0),
        remote_id: Set(u.remote_id.clone()),
        blob_id: Set(u.blob_id.clone()),
        thread_id: Set(u.thread_id.clone()),
        message_id: Set(u.message_id.clone().filter(|m| m.len() <= MESSAGE_ID_MAX)),
        in_reply_to: Set(u.in_reply_to.clone()),
        references: Set(u.references.clone()),
        subject: Set(u.subject.clone()),
        from_addr: Set(to_json("from", &u.from)?),
        to_addr: Set(to_json("to", &u.to)?),
        cc_addr: Set(to_json("cc", &u.cc)?),
        bcc_addr: Set(to_json("bcc", &u.bcc)?),
        reply_to: Set(to_json("reply_to", &u.reply_to)?),
        sent_at: Set(u.sent_at),
        received_at: Set(u.received_at),
        size: Set(u.size),
        seen: Set(u.flags.seen),
        flagged: Set(u.flags.flagged),
        answered: Set(u.flags.answered),
        draft: Set(u.flags.draft),
        keywords: Set(to_json("keywords", &u.flags.keywords)?),
        preview: Set(u.preview.clone()),
        has_attachment: Set(u.has_attachment),
        // Only the triggers on `email_bodies` write it (an upsert's update leaves it as it
        // is), except on insert with the body in the same transaction (`upsert_batch`).
        body_cached: ActiveValue::NotSet,
        created_at: Set(now),
        updated_at: Set(now),
    })
}

/// Maps remote ids to local ids for the given account (chunked lookups).
pub async fn ids_by_remote_ids<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    remote_ids: &[String],
) -> Result<HashMap<String, EmailId>, StoreError> {
    let mut out = HashMap::with_capacity(remote_ids.len());
    for chunk in remote_ids.chunks(CHUNK) {
        let rows: Vec<(i64, String)> = e::Entity::find()
            .select_only()
            .column(e::Column::Id)
            .column(e::Column::RemoteId)
            .filter(e::Column::AccountId.eq(account.0))
            .filter(e::Column::RemoteId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(c)
            .await?;
        out.extend(rows.into_iter().map(|(id, r)| (r, EmailId(id))));
    }
    Ok(out)
}

/// Inserts or updates a batch of emails, replaces their memberships (and attachments when
/// given), with a handful of statements per chunk rather than one per row. Run it inside the
/// transaction that also writes the checkpoint covering the batch.
pub async fn upsert_batch<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    items: &[EmailUpsert],
) -> Result<UpsertStats, StoreError> {
    let mut stats = UpsertStats::default();
    let now = crate::now();
    for chunk in items.chunks(CHUNK) {
        // A batch may name the same email twice (JMAP changes); the last description wins.
        let mut last: BTreeMap<&str, &EmailUpsert> = BTreeMap::new();
        for u in chunk {
            last.insert(u.remote_id.as_str(), u);
        }
        let remote_ids: Vec<String> = last.keys().map(|s| (*s).to_owned()).collect();
        let before = ids_by_remote_ids(c, account, &remote_ids).await?;
        stats.updated += before.len() as u64;
        stats.inserted += (remote_ids.len() - before.len()) as u64;

        // Mail the server gives no thread id is threaded locally, in this transaction.
        let unthreaded: Vec<&EmailUpsert> = last
            .values()
            .copied()
            .filter(|u| u.thread_id.is_none())
            .collect();
        let inputs: Vec<crate::threads::ThreadInput<'_>> =
            unthreaded.iter().map(|u| (*u).into()).collect();
        let local: HashMap<&str, String> = unthreaded
            .iter()
            .map(|u| u.remote_id.as_str())
            .zip(crate::threads::assign(c, account, &inputs).await?)
            .collect();
        // Every row of a statement names the same columns, and the column is named only when
        // some row needs it (callers that never set the flag, such as tests writing at an
        // older schema version, do not depend on it).
        let mark = last.values().any(|u| u.body_in_transaction);
        let models = last
            .values()
            .map(|u| {
                let mut m = active(account, u, now)?;
                if let Some(t) = local.get(u.remote_id.as_str()) {
                    m.thread_id = Set(Some(t.clone()));
                }
                if mark {
                    m.body_cached = Set(u.body_in_transaction);
                }
                Ok(m)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let on_conflict = OnConflict::columns([e::Column::AccountId, e::Column::RemoteId])
            .update_columns([
                e::Column::BlobId,
                e::Column::ThreadId,
                e::Column::MessageId,
                e::Column::InReplyTo,
                e::Column::References,
                e::Column::Subject,
                e::Column::FromAddr,
                e::Column::ToAddr,
                e::Column::CcAddr,
                e::Column::BccAddr,
                e::Column::ReplyTo,
                e::Column::SentAt,
                e::Column::ReceivedAt,
                e::Column::Size,
                e::Column::Seen,
                e::Column::Flagged,
                e::Column::Answered,
                e::Column::Draft,
                e::Column::Keywords,
                e::Column::Preview,
                e::Column::HasAttachment,
                e::Column::UpdatedAt,
            ])
            .to_owned();
        // One round trip writes the rows and names their ids (RETURNING: PostgreSQL, and
        // SQLite since 3.35; an upsert returns updated rows too), instead of a second look-up.
        let mut insert = e::Entity::insert_many(models)
            .on_conflict(on_conflict)
            .into_query();
        insert.returning(Query::returning().columns([e::Column::Id, e::Column::RemoteId]));
        let mut ids: HashMap<String, EmailId> = HashMap::with_capacity(remote_ids.len());
        for row in c.query_all(&insert).await? {
            let id: i64 = row.try_get("", "id")?;
            let remote: String = row.try_get("", "remote_id")?;
            ids.insert(remote, EmailId(id));
        }
        if !before.is_empty() {
            // The mailboxes an updated email leaves matter to a reader too (a JMAP move).
            crate::changes::updated_where(
                c,
                Query::select()
                    .column(e::Column::Id)
                    .from(e::Entity)
                    .and_where(Expr::col(e::Column::Id).is_in(before.values().map(|i| i.0)))
                    .to_owned(),
            )
            .await?;
            // Only an email that existed can have memberships to replace.
            em::Entity::delete_many()
                .filter(em::Column::EmailId.is_in(before.values().map(|i| i.0)))
                .exec(c)
                .await?;
        }
        let mut members = Vec::new();
        let mut attachments = Vec::new();
        let mut replace_attachments = Vec::new();
        for (remote, u) in &last {
            let Some(id) = ids.get(*remote) else { continue };
            let boxes = u.mailboxes.iter().map(|m| m.mailbox_id);
            if before.contains_key(*remote) {
                crate::changes::record_updated(*id, boxes);
            } else {
                crate::changes::record_created(*id, boxes);
            }
            let mut seen_mailboxes = HashSet::new();
            for m in &u.mailboxes {
                if seen_mailboxes.insert(m.mailbox_id) {
                    members.push(membership_model(*id, m));
                }
            }
            if let Some(list) = &u.attachments {
                // A new email has no attachment rows to replace.
                if before.contains_key(*remote) {
                    replace_attachments.push(id.0);
                }
                attachments.extend(list.iter().map(|a| attachment_model(*id, a)));
            }
        }
        if !members.is_empty() {
            em::Entity::insert_many(members)
                .exec_without_returning(c)
                .await?;
        }
        if !replace_attachments.is_empty() {
            att::Entity::delete_many()
                .filter(att::Column::EmailId.is_in(replace_attachments))
                .exec(c)
                .await?;
        }
        for part in attachments.chunks(CHUNK) {
            att::Entity::insert_many(part.to_vec())
                .exec_without_returning(c)
                .await?;
        }
    }
    Ok(stats)
}

fn membership_model(id: EmailId, m: &Membership) -> em::ActiveModel {
    em::ActiveModel {
        email_id: Set(id.0),
        mailbox_id: Set(m.mailbox_id.0),
        uidvalidity: Set(m.uidvalidity),
        uid: Set(m.uid),
        modseq: Set(m.modseq),
    }
}

fn attachment_model(id: EmailId, a: &Attachment) -> att::ActiveModel {
    att::ActiveModel {
        id: ActiveValue::NotSet,
        email_id: Set(id.0),
        part_id: Set(a.part_id.clone()),
        blob_id: Set(a.blob_id.clone()),
        file_name: Set(a.file_name.clone()),
        mime_type: Set(a.mime_type.clone()),
        size: Set(a.size),
        disposition: Set(a.disposition.clone()),
        content_id: Set(a.content_id.clone()),
    }
}

/// Sets flags on emails by remote id, one statement per distinct flag set. Returns rows changed.
pub async fn set_flags_by_remote_ids<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    changes: &[(String, Flags)],
) -> Result<u64, StoreError> {
    let mut groups: BTreeMap<String, (Flags, Vec<String>)> = BTreeMap::new();
    for (remote, flags) in changes {
        let key = to_json("flags", flags)?;
        groups
            .entry(key)
            .or_insert_with(|| (flags.clone(), Vec::new()))
            .1
            .push(remote.clone());
    }
    let mut n = 0;
    for (flags, remotes) in groups.into_values() {
        let keywords = to_json("keywords", &flags.keywords)?;
        for chunk in remotes.chunks(CHUNK) {
            crate::changes::updated_where(c, ids_of_remote(account, chunk)).await?;
            n += e::Entity::update_many()
                .col_expr(e::Column::Seen, Expr::value(flags.seen))
                .col_expr(e::Column::Flagged, Expr::value(flags.flagged))
                .col_expr(e::Column::Answered, Expr::value(flags.answered))
                .col_expr(e::Column::Draft, Expr::value(flags.draft))
                .col_expr(e::Column::Keywords, Expr::value(keywords.clone()))
                .col_expr(e::Column::UpdatedAt, Expr::value(crate::now()))
                .filter(e::Column::AccountId.eq(account.0))
                .filter(e::Column::RemoteId.is_in(chunk.iter().cloned()))
                .exec(c)
                .await?
                .rows_affected;
        }
    }
    Ok(n)
}

/// Sets the flags of one email (an optimistic local change).
pub async fn set_flags<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    flags: &Flags,
) -> Result<(), StoreError> {
    let res = e::Entity::update_many()
        .col_expr(e::Column::Seen, Expr::value(flags.seen))
        .col_expr(e::Column::Flagged, Expr::value(flags.flagged))
        .col_expr(e::Column::Answered, Expr::value(flags.answered))
        .col_expr(e::Column::Draft, Expr::value(flags.draft))
        .col_expr(
            e::Column::Keywords,
            Expr::value(to_json("keywords", &flags.keywords)?),
        )
        .col_expr(e::Column::UpdatedAt, Expr::value(crate::now()))
        .filter(e::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound {
            what: "email",
            key: id.to_string(),
        });
    }
    crate::changes::updated_where(c, one_email(id)).await?;
    Ok(())
}

/// A `SELECT` of the ids of these remote ids' emails, for the change collector.
fn ids_of_remote(account: AccountId, remote_ids: &[String]) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(e::Column::Id)
        .from(e::Entity)
        .and_where(Expr::col(e::Column::AccountId).eq(account.0))
        .and_where(Expr::col(e::Column::RemoteId).is_in(remote_ids.iter().cloned()))
        .to_owned()
}

/// A `SELECT` of one email id, for the change collector.
fn one_email(id: EmailId) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(e::Column::Id)
        .from(e::Entity)
        .and_where(Expr::col(e::Column::Id).eq(id.0))
        .to_owned()
}

/// Deletes emails by remote id. Returns rows deleted.
pub async fn delete_by_remote_ids<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    remote_ids: &[String],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for chunk in remote_ids.chunks(CHUNK) {
        crate::changes::removing_where(c, ids_of_remote(account, chunk)).await?;
        n += e::Entity::delete_many()
            .filter(e::Column::AccountId.eq(account.0))
            .filter(e::Column::RemoteId.is_in(chunk.iter().cloned()))
            .exec(c)
            .await?
            .rows_affected;
    }
    Ok(n)
}

/// Deletes one email.
pub async fn delete<C: ConnectionTrait>(c: &C, id: EmailId) -> Result<(), StoreError> {
    crate::changes::removing_ids(c, &[id.0]).await?;
    e::Entity::delete_by_id(id.0).exec(c).await?;
    Ok(())
}

/// Lets another local row take the server identity of `other`: a row a sync stored for a
/// message that a queued change created (a draft's new version, a moved copy) when the change's
/// answer was lost and found again later. The two rows are one message: `other` is deleted,
/// unless changes of its own are queued (then it keeps the identity and `false` is returned).
pub async fn give_way<C: ConnectionTrait>(c: &C, other: EmailId) -> Result<bool, StoreError> {
    if !crate::queue::for_email(c, other).await?.is_empty() {
        return Ok(false);
    }
    let held = memberships(c, other).await?;
    delete(c, other).await?;
    for m in held {
        crate::mailboxes::recount(c, m.mailbox_id).await?;
    }
    Ok(true)
}

/// The IMAP UIDs stored for a mailbox, ascending (a few bytes per message).
pub async fn uids_in_mailbox<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
) -> Result<Vec<i64>, StoreError> {
    Ok(em::Entity::find()
        .select_only()
        .column(em::Column::Uid)
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .filter(em::Column::Uid.is_not_null())
        .order_by_asc(em::Column::Uid)
        .into_tuple::<Option<i64>>()
        .all(c)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The `n` stored copies in `mailbox` with the highest UIDs: (UID, Message-ID, size), highest
/// first. What a rename check compares with the server (see imap-sync's mailbox listing).
pub async fn newest_by_uid<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    n: u64,
) -> Result<Vec<(i64, Option<String>, i64)>, StoreError> {
    let rows: Vec<(Option<i64>, i64)> = em::Entity::find()
        .select_only()
        .column(em::Column::Uid)
        .column(em::Column::EmailId)
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .filter(em::Column::Uid.is_not_null())
        .order_by_desc(em::Column::Uid)
        .limit(n)
        .into_tuple()
        .all(c)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (uid, id) in rows {
        let Some(uid) = uid else { continue };
        let email = get(c, EmailId(id)).await?;
        out.push((uid, email.message_id, email.size));
    }
    Ok(out)
}

/// The emails whose copy in `mailbox` has UID in `uids` under `uidvalidity` (a server
/// search's hits), by UID; UIDs without a stored copy are left out.
pub async fn ids_by_uids<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    uidvalidity: u32,
    uids: &[u32],
) -> Result<HashMap<u32, EmailId>, StoreError> {
    let mut out = HashMap::with_capacity(uids.len());
    for chunk in uids.chunks(CHUNK) {
        let rows: Vec<(i64, Option<i64>)> = em::Entity::find()
            .select_only()
            .column(em::Column::EmailId)
            .column(em::Column::Uid)
            .filter(em::Column::MailboxId.eq(mailbox.0))
            .filter(em::Column::Uidvalidity.eq(i64::from(uidvalidity)))
            .filter(em::Column::Uid.is_in(chunk.iter().map(|u| i64::from(*u))))
            .into_tuple()
            .all(c)
            .await?;
        for (id, uid) in rows {
            if let Some(uid) = uid.and_then(|u| u32::try_from(u).ok()) {
                out.insert(uid, EmailId(id));
            }
        }
    }
    Ok(out)
}

/// The highest IMAP UID stored for a mailbox.
pub async fn max_uid<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
) -> Result<Option<i64>, StoreError> {
    Ok(em::Entity::find()
        .select_only()
        .column_as(em::Column::Uid.max(), "m")
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .into_tuple::<Option<i64>>()
        .one(c)
        .await?
        .flatten())
}

/// Deletes the emails whose copy in `mailbox` has one of these UIDs. Returns rows deleted.
pub async fn delete_by_uids<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    uids: &[i64],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for chunk in uids.chunks(CHUNK) {
        let sub = Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::MailboxId).eq(mailbox.0))
            .and_where(Expr::col(em::Column::Uid).is_in(chunk.iter().copied()))
            .to_owned();
        crate::changes::removing_where(c, sub.clone()).await?;
        n += e::Entity::delete_many()
            .filter(e::Column::Id.in_subquery(sub))
            .exec(c)
            .await?
            .rows_affected;
    }
    Ok(n)
}

/// Forgets the UIDs of a mailbox's copies (after a UIDVALIDITY change, before re-matching).
pub async fn clear_uids<C: ConnectionTrait>(c: &C, mailbox: MailboxId) -> Result<u64, StoreError> {
    Ok(em::Entity::update_many()
        .col_expr(em::Column::Uid, Expr::value(Option::<i64>::None))
        .col_expr(em::Column::Uidvalidity, Expr::value(Option::<i64>::None))
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .exec(c)
        .await?
        .rows_affected)
}

/// Loads one email.
pub async fn get<C: ConnectionTrait>(c: &C, id: EmailId) -> Result<Email, StoreError> {
    e::Entity::find_by_id(id.0)
        .one(c)
        .await?
        .ok_or(StoreError::NotFound {
            what: "email",
            key: id.to_string(),
        })?
        .try_into()
}

/// Finds an email by server identity.
pub async fn find_by_remote_id<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    remote_id: &str,
) -> Result<Option<Email>, StoreError> {
    e::Entity::find()
        .filter(e::Column::AccountId.eq(account.0))
        .filter(e::Column::RemoteId.eq(remote_id))
        .one(c)
        .await?
        .map(Email::try_from)
        .transpose()
}

/// Emails of an account with this Message-ID (without brackets), oldest id first.
pub async fn find_by_message_id<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    message_id: &str,
) -> Result<Vec<Email>, StoreError> {
    e::Entity::find()
        .filter(e::Column::AccountId.eq(account.0))
        .filter(e::Column::MessageId.eq(message_id))
        .order_by_asc(e::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(Email::try_from)
        .collect()
}

/// The memberships of an email.
pub async fn memberships<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
) -> Result<Vec<Membership>, StoreError> {
    Ok(em::Entity::find()
        .filter(em::Column::EmailId.eq(id.0))
        .order_by_asc(em::Column::MailboxId)
        .all(c)
        .await?
        .into_iter()
        .map(|m| Membership {
            mailbox_id: MailboxId(m.mailbox_id),
            uidvalidity: m.uidvalidity,
            uid: m.uid,
            modseq: m.modseq,
        })
        .collect())
}

/// Replaces the memberships of one email (an optimistic move, or its revert).
pub async fn set_memberships<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    members: &[Membership],
) -> Result<(), StoreError> {
    // The mailboxes it leaves matter to a reader as much as those it enters.
    crate::changes::updated_where(c, one_email(id)).await?;
    crate::changes::record_updated(id, members.iter().map(|m| m.mailbox_id));
    em::Entity::delete_many()
        .filter(em::Column::EmailId.eq(id.0))
        .exec(c)
        .await?;
    let mut seen = HashSet::new();
    let rows: Vec<_> = members
        .iter()
        .filter(|m| seen.insert(m.mailbox_id))
        .map(|m| membership_model(id, m))
        .collect();
    if !rows.is_empty() {
        em::Entity::insert_many(rows)
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// Attachment metadata of an email.
pub async fn attachments<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
) -> Result<Vec<Attachment>, StoreError> {
    Ok(att::Entity::find()
        .filter(att::Column::EmailId.eq(id.0))
        .order_by_asc(att::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(|a| Attachment {
            part_id: a.part_id,
            blob_id: a.blob_id,
            file_name: a.file_name,
            mime_type: a.mime_type,
            size: a.size,
            disposition: a.disposition,
            content_id: a.content_id,
        })
        .collect())
}

/// Replaces the attachment metadata of an email (e.g. after parsing its full body).
pub async fn replace_attachments<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    list: &[Attachment],
) -> Result<(), StoreError> {
    att::Entity::delete_many()
        .filter(att::Column::EmailId.eq(id.0))
        .exec(c)
        .await?;
    let rows: Vec<_> = list.iter().map(|a| attachment_model(id, a)).collect();
    for part in rows.chunks(CHUNK) {
        att::Entity::insert_many(part.to_vec())
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// Which emails to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailFilter {
    /// Only this account.
    pub account: Option<AccountId>,
    /// Only emails in this mailbox.
    pub mailbox: Option<MailboxId>,
    /// Only emails in a mailbox with this role.
    pub role: Option<Role>,
    /// Only emails of this conversation.
    pub thread: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<u64>,
    /// Skip this many.
    pub offset: Option<u64>,
}

/// An email with the names of the mailboxes it is in, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSummary {
    /// The email.
    pub email: Email,
    /// Display names of its mailboxes.
    pub mailboxes: Vec<String>,
}

/// Lists emails newest first (by arrival time, then id).
pub async fn list<C: ConnectionTrait>(
    c: &C,
    filter: &EmailFilter,
) -> Result<Vec<EmailSummary>, StoreError> {
    let mut q = e::Entity::find();
    if let Some(a) = filter.account {
        q = q.filter(e::Column::AccountId.eq(a.0));
    }
    if let Some(m) = filter.mailbox {
        let sub = Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::MailboxId).eq(m.0))
            .to_owned();
        q = q.filter(e::Column::Id.in_subquery(sub));
    }
    if let Some(role) = filter.role {
        let boxes = Query::select()
            .column(mb::Column::Id)
            .from(mb::Entity)
            .and_where(Expr::col(mb::Column::Role).eq(role.as_str()))
            .to_owned();
        let sub = Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::MailboxId).in_subquery(boxes))
            .to_owned();
        q = q.filter(e::Column::Id.in_subquery(sub));
    }
    if let Some(t) = &filter.thread {
        q = q.filter(e::Column::ThreadId.eq(t.clone()));
    }
    q = q
        .order_by_desc(e::Column::ReceivedAt)
        .order_by_desc(e::Column::Id);
    if let Some(l) = filter.limit {
        q = q.limit(l);
    }
    if let Some(o) = filter.offset {
        q = q.offset(o);
    }
    let rows = q.all(c).await?;
    let mut names = mailbox_names(c, &rows).await?;
    rows.into_iter()
        .map(|r| {
            let mailboxes = names.remove(&r.id).unwrap_or_default();
            Ok(EmailSummary {
                email: r.try_into()?,
                mailboxes,
            })
        })
        .collect()
}

/// The emails with these ids and their mailbox names, by id (missing ids are left out).
pub async fn summaries_by_ids<C: ConnectionTrait>(
    c: &C,
    ids: &[EmailId],
) -> Result<HashMap<EmailId, EmailSummary>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        rows.extend(
            e::Entity::find()
                .filter(e::Column::Id.is_in(chunk.iter().map(|i| i.0)))
                .all(c)
                .await?,
        );
    }
    let mut names = mailbox_names(c, &rows).await?;
    rows.into_iter()
        .map(|r| {
            let mailboxes = names.remove(&r.id).unwrap_or_default();
            Ok((
                EmailId(r.id),
                EmailSummary {
                    email: r.try_into()?,
                    mailboxes,
                },
            ))
        })
        .collect()
}

async fn mailbox_names<C: ConnectionTrait>(
    c: &C,
    rows: &[e::Model],
) -> Result<HashMap<i64, Vec<String>>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut names: HashMap<i64, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let pairs: Vec<(i64, String)> = em::Entity::find()
            .select_only()
            .column(em::Column::EmailId)
            .column_as(Expr::col((mb::Entity, mb::Column::Name)), "name")
            .join_rev(
                sea_orm::JoinType::InnerJoin,
                mb::Entity::belongs_to(em::Entity)
                    .from(mb::Column::Id)
                    .to(em::Column::MailboxId)
                    .into(),
            )
            .filter(em::Column::EmailId.is_in(chunk.iter().copied()))
            .order_by_asc(em::Column::MailboxId)
            .into_tuple()
            .all(c)
            .await?;
        for (id, name) in pairs {
            names.entry(id).or_default().push(name);
        }
    }
    Ok(names)
}

/// The `remote_id`s of these emails (those that exist).
pub async fn remote_ids_of<C: ConnectionTrait>(
    c: &C,
    ids: &[EmailId],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            e::Entity::find()
                .select_only()
                .column(e::Column::RemoteId)
                .filter(e::Column::Id.is_in(chunk.iter().map(|i| i.0)))
                .into_tuple::<String>()
                .all(c)
                .await?,
        );
    }
    Ok(out)
}

/// The `remote_id` of each of these emails that exists, by email.
pub async fn remote_ids_by_id<C: ConnectionTrait>(
    c: &C,
    ids: &[EmailId],
) -> Result<HashMap<EmailId, String>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(i64, String)> = e::Entity::find()
            .select_only()
            .column(e::Column::Id)
            .column(e::Column::RemoteId)
            .filter(e::Column::Id.is_in(chunk.iter().map(|i| i.0)))
            .into_tuple()
            .all(c)
            .await?;
        out.extend(rows.into_iter().map(|(id, r)| (EmailId(id), r)));
    }
    Ok(out)
}

/// Every `remote_id` of an account (for reconciling a full listing from the server).
pub async fn remote_ids<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<String>, StoreError> {
    Ok(e::Entity::find()
        .select_only()
        .column(e::Column::RemoteId)
        .filter(e::Column::AccountId.eq(account.0))
        .into_tuple::<String>()
        .all(c)
        .await?)
}

/// The `remote_id`s of an account's emails with queued changes: a full listing that does not
/// see one must not take it for deleted (a new draft not uploaded yet has a local placeholder;
/// a change whose message the server lost is found gone by the outbox, which removes it).
pub async fn remote_ids_with_queued_changes<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<HashSet<String>, StoreError> {
    Ok(e::Entity::find()
        .select_only()
        .column(e::Column::RemoteId)
        .filter(e::Column::AccountId.eq(account.0))
        .filter(e::Column::Id.in_subquery(crate::queue::queued_email_ids()))
        .into_tuple::<String>()
        .all(c)
        .await?
        .into_iter()
        .collect())
}

/// Number of emails of an account.
pub async fn count<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<u64, StoreError> {
    Ok(e::Entity::find()
        .filter(e::Column::AccountId.eq(account.0))
        .count(c)
        .await?)
}
