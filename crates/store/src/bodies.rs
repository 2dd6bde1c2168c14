//! Cached email bodies (text, HTML, optionally the raw message), and the body debt: which
//! bodies the account's policy wants that the cache still lacks.

use std::collections::BTreeSet;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::entity::{email_bodies as b, email_mailboxes as em, emails as e};
use crate::{AccountId, BodyPolicy, EmailId, MailboxId, StoreError};

/// The cached body of an email.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    /// The text/plain body (or text converted from HTML).
    pub text: Option<String>,
    /// The text/html body.
    pub html: Option<String>,
    /// The raw RFC 5322 message, when kept.
    pub raw: Option<Vec<u8>>,
    /// True when the download was cut short by the body policy.
    pub truncated: bool,
}

/// Stores (or replaces) the body of an email.
pub async fn put<C: ConnectionTrait>(c: &C, id: EmailId, body: &Body) -> Result<(), StoreError> {
    put_many(c, &[(id, body)]).await
}

/// Rows and bytes of bodies written per statement by [`put_many`]: few round trips (one per
/// body cost PostgreSQL ~0.3 ms each), while the copies of the bodies a statement holds
/// (its bound values, and SQLite's own copy of them) stay around 1 MiB.
const PUT_ROWS: usize = 100;
const PUT_BYTES: usize = 1 << 20;

/// Stores (or replaces) the bodies of several emails, in multi-row statements.
pub async fn put_many<C: ConnectionTrait>(
    c: &C,
    bodies: &[(EmailId, &Body)],
) -> Result<(), StoreError> {
    let now = crate::now();
    // One row per email, the last one given winning as consecutive `put`s would: PostgreSQL
    // refuses an `ON CONFLICT DO UPDATE` that meets the same key twice in one statement (a
    // server can send one message twice in a batch).
    let last: std::collections::HashMap<EmailId, usize> = bodies
        .iter()
        .enumerate()
        .map(|(k, (id, _))| (*id, k))
        .collect();
    let unique: Vec<(EmailId, &Body)> = bodies
        .iter()
        .enumerate()
        .filter(|(k, (id, _))| last.get(id) == Some(k))
        .map(|(_, row)| *row)
        .collect();
    let mut rest = unique.as_slice();
    while !rest.is_empty() {
        let mut bytes = 0usize;
        let n = rest
            .iter()
            .take(PUT_ROWS)
            .take_while(|(_, body)| {
                let first = bytes == 0;
                bytes += body.text.as_ref().map_or(0, String::len)
                    + body.html.as_ref().map_or(0, String::len)
                    + body.raw.as_ref().map_or(0, Vec::len);
                first || bytes <= PUT_BYTES
            })
            .count();
        let (chunk, later) = rest.split_at(n);
        rest = later;
        let models = chunk.iter().map(|(id, body)| b::ActiveModel {
            email_id: Set(id.0),
            text_body: Set(body.text.clone()),
            html_body: Set(body.html.clone()),
            raw: Set(body.raw.clone()),
            truncated: Set(body.truncated),
            fetched_at: Set(now),
        });
        b::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(b::Column::EmailId)
                    .update_columns([
                        b::Column::TextBody,
                        b::Column::HtmlBody,
                        b::Column::Raw,
                        b::Column::Truncated,
                        b::Column::FetchedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// The cached body, if any.
pub async fn get<C: ConnectionTrait>(c: &C, id: EmailId) -> Result<Option<Body>, StoreError> {
    Ok(b::Entity::find_by_id(id.0).one(c).await?.map(|m| Body {
        text: m.text_body,
        html: m.html_body,
        raw: m.raw,
        truncated: m.truncated,
    }))
}

/// Which emails a body-debt query looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DebtScope {
    /// Every email of the account that is in some mailbox (JMAP: bodies are fetched by id).
    Account,
    /// The IMAP copies in `mailbox` numbered under `uidvalidity`: only their UIDs can be
    /// fetched while the mailbox is selected with that UIDVALIDITY.
    ImapMailbox {
        /// The mailbox.
        mailbox: MailboxId,
        /// The UIDVALIDITY currently selected.
        uidvalidity: i64,
    },
}

/// An email whose body the policy wants and the cache lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WantedBody {
    /// The email.
    pub email: EmailId,
    /// Its server identity (JMAP Email id; IMAP `mailbox/uidvalidity/uid`).
    pub remote_id: String,
    /// The IMAP UID of its copy in the scope's mailbox (`None` for [`DebtScope::Account`]).
    pub uid: Option<i64>,
    /// Its size on the server, in bytes.
    pub size: i64,
    /// It has no preview yet (the downloaded body can provide one).
    pub needs_preview: bool,
}

/// A size filter for `policy`: `None` when it wants nothing. Sizes are `i64` in the schema;
/// a limit beyond `i64::MAX` is no limit.
fn size_limit(policy: BodyPolicy) -> Option<Option<i64>> {
    match policy {
        BodyPolicy::None => None,
        BodyPolicy::All => Some(None),
        BodyPolicy::MaxBytes(n) => Some(i64::try_from(n).ok()),
    }
}

/// The email has no cached body: `emails.body_cached` is false (kept by triggers on
/// `email_bodies`, schema v14; set at insert for a body written in the same transaction,
/// `EmailUpsert::body_in_transaction`). With the account, it is a prefix of the index
/// `(account_id, body_cached, id)`, so a debt query walks only the emails that owe a body
/// instead of probing `email_bodies` once per email.
fn no_body() -> Expr {
    Expr::col((e::Entity, e::Column::BodyCached)).eq(false)
}

/// id, remote id, size, preview, UID.
type DebtRow = (i64, String, i64, Option<String>, Option<i64>);

/// The body debt: up to `limit` emails in `scope` whose body `policy` wants and the cache
/// lacks, with ids above `after`, in id order. Callers page with `after` set to the last id
/// returned, so an email whose body cannot be had (gone from the server) is passed over
/// rather than asked for again in the same run; the next sync asks again.
pub async fn wanted_missing<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    scope: DebtScope,
    policy: BodyPolicy,
    after: Option<EmailId>,
    limit: u64,
) -> Result<Vec<WantedBody>, StoreError> {
    let Some(max) = size_limit(policy) else {
        return Ok(Vec::new());
    };
    let mut q = e::Entity::find()
        .select_only()
        .column(e::Column::Id)
        .column(e::Column::RemoteId)
        .column(e::Column::Size)
        .column(e::Column::Preview)
        .filter(e::Column::AccountId.eq(account.0))
        .filter(no_body());
    if let Some(max) = max {
        q = q.filter(e::Column::Size.lte(max));
    }
    if let Some(a) = after {
        q = q.filter(e::Column::Id.gt(a.0));
    }
    let rows: Vec<DebtRow> = match scope {
        DebtScope::Account => {
            // Only emails in some mailbox: a queued permanent delete keeps a row without any.
            let member = Query::select()
                .expr(Expr::val(1))
                .from(em::Entity)
                .and_where(
                    Expr::col((em::Entity, em::Column::EmailId)).equals((e::Entity, e::Column::Id)),
                )
                .to_owned();
            q.filter(Expr::exists(member))
                .expr_as(Expr::val(Option::<i64>::None), "uid")
                .order_by_asc(e::Column::Id)
                .limit(limit)
                .into_tuple()
                .all(c)
                .await?
        }
        DebtScope::ImapMailbox {
            mailbox,
            uidvalidity,
        } => {
            // (mailbox, email) is the membership key: one row per email.
            q.join_rev(
                sea_orm::JoinType::InnerJoin,
                em::Entity::belongs_to(e::Entity)
                    .from(em::Column::EmailId)
                    .to(e::Column::Id)
                    .into(),
            )
            .column_as(Expr::col((em::Entity, em::Column::Uid)), "uid")
            .filter(Expr::col((em::Entity, em::Column::MailboxId)).eq(mailbox.0))
            .filter(Expr::col((em::Entity, em::Column::Uidvalidity)).eq(uidvalidity))
            .filter(Expr::col((em::Entity, em::Column::Uid)).is_not_null())
            .order_by_asc(e::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(c)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, remote_id, size, preview, uid)| WantedBody {
            email: EmailId(id),
            remote_id,
            uid,
            size,
            needs_preview: preview.is_none(),
        })
        .collect())
}

/// The mailboxes of an account holding IMAP copies (with a UID) whose body `policy` wants and
/// the cache lacks: one query for the whole account, so a sync can tell which unchanged
/// mailboxes still owe bodies without selecting them. Empty when the policy wants nothing.
pub async fn mailboxes_with_debt<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    policy: BodyPolicy,
) -> Result<BTreeSet<MailboxId>, StoreError> {
    let Some(max) = size_limit(policy) else {
        return Ok(BTreeSet::new());
    };
    let mut q = em::Entity::find()
        .select_only()
        .column(em::Column::MailboxId)
        .distinct()
        .join_rev(
            sea_orm::JoinType::InnerJoin,
            e::Entity::belongs_to(em::Entity)
                .from(e::Column::Id)
                .to(em::Column::EmailId)
                .into(),
        )
        .filter(Expr::col((e::Entity, e::Column::AccountId)).eq(account.0))
        .filter(em::Column::Uid.is_not_null())
        .filter(no_body());
    if let Some(max) = max {
        q = q.filter(Expr::col((e::Entity, e::Column::Size)).lte(max));
    }
    Ok(q.into_tuple::<i64>()
        .all(c)
        .await?
        .into_iter()
        .map(MailboxId)
        .collect())
}
