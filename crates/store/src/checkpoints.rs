//! Sync checkpoints (`sync_state`): what part of the server's state the database covers.
//!
//! Write a checkpoint in the same transaction as the data it covers, so that a crash can never
//! leave a checkpoint ahead of the data.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::entity::sync_state as s;
use crate::{AccountId, MailboxId, StoreError};

/// What a checkpoint is about, e.g. `jmap:Email` or `imap:mailbox:7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// A JMAP data type's state (`Email`, `Mailbox`, `Thread`).
    pub fn jmap(data_type: &str) -> Self {
        Self(format!("jmap:{data_type}"))
    }
    /// Where an unfinished full listing of a JMAP data type stopped (its cursor, in `state`),
    /// committed with each page so a cut listing continues instead of starting again.
    pub fn jmap_listing(data_type: &str) -> Self {
        Self(format!("jmap:{data_type}:listing"))
    }
    /// An IMAP mailbox's checkpoint.
    pub fn imap_mailbox(mailbox: MailboxId) -> Self {
        Self(format!("imap:mailbox:{}", mailbox.0))
    }
    /// An IMAP mailbox's RFC 8474 MAILBOXID as its last SELECT reported it (in `state`, with
    /// the `uidvalidity` it was seen under: a row another mailbox took over by name since,
    /// with a new UIDVALIDITY, does not inherit it). Kept here rather than in a column: a
    /// server fact about the mailbox, like its checkpoint, that only servers with OBJECTID
    /// give; the queued delete of a mailbox records it to tell the user's mailbox from
    /// another one that took its name (see `outbox::mailbox::SeenContent`).
    pub fn imap_mailbox_id(mailbox: MailboxId) -> Self {
        Self(format!("imap:mailboxid:{}", mailbox.0))
    }
    /// Any other scope.
    pub fn custom(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server checkpoint. Fields not used by a protocol stay `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// JMAP state string.
    pub state: Option<String>,
    /// IMAP UIDVALIDITY.
    pub uidvalidity: Option<i64>,
    /// Highest IMAP UID whose message is in the database.
    pub last_uid: Option<i64>,
    /// IMAP HIGHESTMODSEQ covered.
    pub highestmodseq: Option<i64>,
}

impl Checkpoint {
    /// A JMAP state checkpoint.
    pub fn state(state: impl Into<String>) -> Self {
        Self {
            state: Some(state.into()),
            ..Self::default()
        }
    }
}

/// Reads a checkpoint.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    scope: &Scope,
) -> Result<Option<Checkpoint>, StoreError> {
    Ok(s::Entity::find()
        .filter(s::Column::AccountId.eq(account.0))
        .filter(s::Column::Scope.eq(scope.as_str()))
        .one(c)
        .await?
        .map(|m| Checkpoint {
            state: m.state,
            uidvalidity: m.uidvalidity,
            last_uid: m.last_uid,
            highestmodseq: m.highestmodseq,
        }))
}

/// Writes (inserts or replaces) a checkpoint.
pub async fn put<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    scope: &Scope,
    cp: &Checkpoint,
) -> Result<(), StoreError> {
    let model = s::ActiveModel {
        account_id: Set(account.0),
        scope: Set(scope.as_str().to_owned()),
        state: Set(cp.state.clone()),
        uidvalidity: Set(cp.uidvalidity),
        last_uid: Set(cp.last_uid),
        highestmodseq: Set(cp.highestmodseq),
        updated_at: Set(crate::now()),
        ..Default::default()
    };
    s::Entity::insert(model)
        .on_conflict(
            OnConflict::columns([s::Column::AccountId, s::Column::Scope])
                .update_columns([
                    s::Column::State,
                    s::Column::Uidvalidity,
                    s::Column::LastUid,
                    s::Column::Highestmodseq,
                    s::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// Drops a checkpoint (forcing a full resync of that scope).
pub async fn delete<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    scope: &Scope,
) -> Result<(), StoreError> {
    s::Entity::delete_many()
        .filter(s::Column::AccountId.eq(account.0))
        .filter(s::Column::Scope.eq(scope.as_str()))
        .exec(c)
        .await?;
    Ok(())
}

/// The local mailboxes and emails no longer follow from the stored change states (rows were
/// removed locally that the server still has, e.g. a mailbox delete the server refused):
/// drops the account's JMAP Mailbox and Email states, so the next sync lists every mailbox
/// and every email again and restores them. The Mailbox state matters too: a sync may have
/// consumed the mailbox's last change while the delete was still queued (it hid the mailbox
/// again), and with no later change Mailbox/changes would never bring it back. IMAP needs
/// nothing here: LIST names every mailbox each cycle, and a mailbox listed again has no
/// checkpoint and is compared in full.
pub async fn require_full_listing<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<(), StoreError> {
    delete(c, account, &Scope::jmap("Mailbox")).await?;
    delete(c, account, &Scope::jmap("Email")).await
}

/// Forgets an IMAP mailbox's HIGHESTMODSEQ (keeping UIDVALIDITY and the last UID), so the
/// next sync compares the flags of every message it holds instead of asking what changed
/// since: for a local state that was put back without reading the server (a change evicted
/// after part of it may have taken effect), which a later mod-sequence would not report.
pub async fn forget_modseq<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mailbox: MailboxId,
) -> Result<(), StoreError> {
    s::Entity::update_many()
        .col_expr(s::Column::Highestmodseq, Expr::value(Option::<i64>::None))
        .filter(s::Column::AccountId.eq(account.0))
        .filter(s::Column::Scope.eq(Scope::imap_mailbox(mailbox).as_str()))
        .exec(c)
        .await?;
    Ok(())
}

/// Drops every checkpoint of an account.
pub async fn delete_all<C: ConnectionTrait>(c: &C, account: AccountId) -> Result<(), StoreError> {
    s::Entity::delete_many()
        .filter(s::Column::AccountId.eq(account.0))
        .exec(c)
        .await?;
    Ok(())
}
