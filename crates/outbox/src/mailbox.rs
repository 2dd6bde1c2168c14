//! Mailbox management through the queue: create, rename/move, delete and (un)subscribe are
//! applied to the local database at once and queued like email changes, coalesced, reverted
//! when the server refuses them, and ordered against the email changes around them.
//!
//! - **Create** inserts a mailbox row whose `remote_id` is a placeholder
//!   ([`mailboxes::LOCAL_PREFIX`], which syncs leave alone); the server's identity replaces it
//!   when the create is acknowledged ([`ItemOutcome::Relocated`](crate::ItemOutcome)).
//! - **Rename** changes the name and parent locally; the server identity follows on success.
//! - **Delete** removes the mailbox and the emails only it holds. An email with queued changes
//!   that the server still has elsewhere (a move into the mailbox not sent yet) gets a permanent
//!   delete queued instead, so the user's "delete the mailbox with its mail" holds on the server.
//! - **Subscribe** has no local column: it is only queued.
//!
//! Coalescing: a rename of a mailbox whose create (or rename) has not been sent yet is merged
//! into it (the last name wins); a delete of a mailbox whose create has not been sent removes
//! the create and sends nothing; a delete makes renames not sent yet moot, and should the
//! server refuse it (mail arrived there meanwhile) its failure names the name the server kept,
//! so the dropped rename is reported rather than lost. Ordering: a mailbox row runs only when no older change of the
//! account is queued (sends aside), and no newer change runs before it (see `rows::due_heads`),
//! so a move into a mailbox created offline goes up after the create, addressed to the
//! server's mailbox.

use chrono::{DateTime, Utc};
use mailsync_store::mailboxes::{self, LOCAL_PREFIX, Mailbox, MailboxUpsert};
use mailsync_store::queue::{self, ChangeState, NewChange};
use mailsync_store::{AccountId, ConnectionTrait, MailboxId, Role};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::apply::enqueue_ops;
use crate::error::Error;
use crate::local::{self, Touched};
use crate::model::{Op, PAYLOAD_VERSION, Payload};
use crate::outbox::{Enqueued, not_found_is_none};
use crate::rows::{self, Patch, Row};

/// A change to an account's mailboxes (see [`Outbox::manage_mailbox`](crate::Outbox::manage_mailbox)).
///
/// Serialised as the `change` of a mailbox payload: `{"op": "create", "name": …, "parent": 3,
/// "role": "archive"}`, `{"op": "rename", "mailbox": 7, "name": …, "parent": null}`,
/// `{"op": "delete", "mailbox": 7}`, `{"op": "subscribe", "mailbox": 7, "subscribed": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MailboxChange {
    /// Create `name` (one level) under `parent`, with a `role` (IMAP: only where the server has
    /// CREATE-SPECIAL-USE).
    Create {
        /// The new mailbox's name (its last level).
        name: String,
        /// Its parent (`None`: top level).
        #[serde(default)]
        parent: Option<MailboxId>,
        /// A role to give it.
        #[serde(default)]
        role: Option<Role>,
    },
    /// Rename and/or move: `name` (one level) under `parent` (`None`: top level).
    Rename {
        /// The mailbox.
        mailbox: MailboxId,
        /// Its new name (last level).
        name: String,
        /// Its new parent.
        #[serde(default)]
        parent: Option<MailboxId>,
    },
    /// Delete it with the emails it holds.
    Delete {
        /// The mailbox.
        mailbox: MailboxId,
    },
    /// Subscribe (`true`) or unsubscribe.
    Subscribe {
        /// The mailbox.
        mailbox: MailboxId,
        /// Subscribed or not.
        subscribed: bool,
    },
}

impl MailboxChange {
    /// The mailbox the change is about (`None` for a create: it does not exist yet).
    pub fn mailbox(&self) -> Option<MailboxId> {
        match self {
            Self::Create { .. } => None,
            Self::Rename { mailbox, .. }
            | Self::Delete { mailbox }
            | Self::Subscribe { mailbox, .. } => Some(*mailbox),
        }
    }
}

/// The persisted payload of a mailbox row (`{"type": "mailbox", …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MailboxPayload {
    pub(crate) v: u32,
    /// When the user asked for it.
    pub(crate) at: DateTime<Utc>,
    /// The local mailbox (for a create, the row made for it).
    pub(crate) mailbox_id: MailboxId,
    /// Its server identity as last known (a placeholder until a create is acknowledged; the
    /// only one left once a delete removed the local row).
    pub(crate) remote_id: String,
    /// Its full name and parent before the change, restored when the server refuses it.
    pub(crate) name_before: String,
    #[serde(default)]
    pub(crate) parent_before: Option<String>,
    pub(crate) change: MailboxChange,
    /// A delete or rename: what the user saw in the mailbox (older rows have none; a
    /// rename's rows have one since the executor checks the name is still this mailbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seen: Option<SeenContent>,
    /// A delete that took over renames not sent yet: the name the server still has. Should the
    /// delete be refused, the mailbox stays under that name, and the failure says so (the
    /// user's rename is not lost without a word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) renamed_from: Option<String>,
}

/// At most this many server email ids are kept with a delete (JMAP); beyond, only the count.
pub const MAX_SEEN_IDS: usize = 10_000;

/// What the user saw in a mailbox they asked to delete. The server's mailbox may hold more by
/// the time the delete runs (another client moved or delivered mail into it): executors then
/// refuse the delete rather than destroy mail the user never saw there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeenContent {
    /// IMAP: the UIDVALIDITY the local view was synced under.
    #[serde(default)]
    pub uidvalidity: Option<i64>,
    /// IMAP: the UIDNEXT the local view was synced to (a UID at or above it is unseen mail).
    #[serde(default)]
    pub uidnext: Option<i64>,
    /// How many emails the user saw in it.
    #[serde(default)]
    pub count: u64,
    /// JMAP: the server ids of those emails, when at most [`MAX_SEEN_IDS`].
    #[serde(default)]
    pub email_ids: Option<Vec<String>>,
    /// IMAP with OBJECTID: the mailbox's RFC 8474 MAILBOXID as a sync last selected it
    /// under `uidvalidity` (`None`: not known). Over IMAP the delete addresses a name, which
    /// another mailbox may have by the time it is sent (another client renamed one to it, or
    /// deleted and re-created it); UIDVALIDITY alone cannot tell them apart on Cyrus, which
    /// takes it from the clock (two mailboxes created in the same second share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_id: Option<String>,
}

impl SeenContent {
    /// Whether the stored mailbox `mb`, listed under the deleted mailbox's name by a sync, is
    /// still the mailbox the user deleted: the same MAILBOXID when both are known (`now`: the
    /// row's), else the same UIDVALIDITY when both are known, else assumed so.
    pub(crate) fn same_mailbox(&self, mb: &Mailbox, now: Option<&str>) -> bool {
        if let (Some(was), Some(now)) = (self.mailbox_id.as_deref(), now) {
            return was == now;
        }
        match (self.uidvalidity, mb.status.uidvalidity) {
            (Some(was), Some(now)) => was == now,
            _ => true,
        }
    }
}

impl MailboxPayload {
    /// The row for `change` of the stored mailbox `mb`, asked at `now`.
    fn of(
        mb: &Mailbox,
        change: &MailboxChange,
        now: DateTime<Utc>,
        seen: Option<SeenContent>,
    ) -> Self {
        Self {
            v: PAYLOAD_VERSION,
            at: now,
            mailbox_id: mb.id,
            remote_id: mb.remote_id.clone(),
            name_before: mb.name.clone(),
            parent_before: mb.parent_remote_id.clone(),
            change: change.clone(),
            seen,
            renamed_from: None,
        }
    }
}

/// A mailbox row as handed to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxOperation {
    /// The local mailbox (gone after a delete: use `remote_id`).
    pub mailbox_id: MailboxId,
    /// Its server identity when the row was last updated; the store's row, while it exists,
    /// has the current one (an earlier create or rename, or a rename another client made).
    pub remote_id: String,
    /// What to do. Parents are local ids: resolve them in the store at execution time.
    pub change: MailboxChange,
    /// A delete or rename: what the user saw in the mailbox (`None` for rows queued before it
    /// was kept); its identity (UIDVALIDITY, MAILBOXID) tells whether the name still
    /// addresses this mailbox.
    pub seen: Option<SeenContent>,
}

/// The account's mailbox deletes still queued, with the server identity each addresses as
/// last known (see [`crate::Outbox::mailboxes_being_deleted`]). A free function for the
/// executors, which read the queue through the store while a flush runs.
pub async fn queued_deletes<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<Vec<MailboxOperation>, Error> {
    Ok(rows::readable(c, account)
        .await?
        .into_iter()
        .filter_map(|r| match r.payload {
            Payload::Mailbox(m) if matches!(m.change, MailboxChange::Delete { .. }) => {
                Some(MailboxOperation {
                    mailbox_id: m.mailbox_id,
                    remote_id: m.remote_id,
                    change: m.change,
                    seen: m.seen,
                })
            }
            _ => None,
        })
        .collect())
}

pub(crate) fn describe(p: &MailboxPayload) -> String {
    match &p.change {
        MailboxChange::Create { name, role, .. } => match role {
            Some(r) => format!("create mailbox {name:?} ({r})"),
            None => format!("create mailbox {name:?}"),
        },
        MailboxChange::Rename { name, .. } => {
            format!("rename mailbox {:?} to {name:?}", p.name_before)
        }
        MailboxChange::Delete { .. } => match &p.renamed_from {
            Some(was) => format!(
                "delete mailbox {:?} (renamed from {was:?}: the rename was not sent either)",
                p.name_before
            ),
            None => format!("delete mailbox {:?}", p.name_before),
        },
        MailboxChange::Subscribe { subscribed, .. } => format!(
            "{} mailbox {:?}",
            if *subscribed {
                "subscribe to"
            } else {
                "unsubscribe from"
            },
            p.name_before
        ),
    }
}

async fn load<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: MailboxId,
) -> Result<Mailbox, Error> {
    let mb = not_found_is_none(mailboxes::get(c, id).await)?.ok_or(Error::MailboxNotFound(id))?;
    if mb.account_id != account {
        return Err(Error::WrongAccount {
            what: "mailbox",
            expected: account,
            actual: mb.account_id,
        });
    }
    Ok(mb)
}

/// The hierarchy delimiter new names are joined with: the parent's, else the account's.
fn delimiter(parent: Option<&Mailbox>, all: &[Mailbox]) -> String {
    parent
        .and_then(|p| p.delimiter.clone())
        .or_else(|| all.iter().find_map(|m| m.delimiter.clone()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

/// A new name is one level: a user who types `Work/Projects` is told to name the parent
/// instead, rather than only that the name is invalid.
fn check_name(name: &str, delim: &str) -> Result<(), Error> {
    let why = if name.trim().is_empty() {
        "it is empty".to_owned()
    } else if name.trim() != name {
        "it starts or ends with a space".to_owned()
    } else if name.chars().any(char::is_control) {
        "it holds a control character".to_owned()
    } else if name.contains(delim) {
        format!(
            "it holds the hierarchy delimiter {delim:?}: a name is one level, under its parent \
             mailbox"
        )
    } else if name.chars().count() > 255 {
        "it is longer than 255 characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidMailboxName {
        name: name.to_owned(),
        why,
    })
}

fn full_name(parent: Option<&Mailbox>, delim: &str, leaf: &str) -> String {
    match parent {
        Some(p) => format!("{}{delim}{leaf}", p.name),
        None => leaf.to_owned(),
    }
}

/// The account's queued mailbox rows about `mailbox`, oldest first.
async fn rows_of<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mailbox: MailboxId,
) -> Result<Vec<(Row, MailboxPayload)>, Error> {
    Ok(rows::for_account(c, account)
        .await?
        .into_iter()
        .filter_map(|r| match &r.payload {
            Payload::Mailbox(p) if p.mailbox_id == mailbox => {
                let p = p.clone();
                Some((r, p))
            }
            _ => None,
        })
        .collect())
}

async fn insert<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    p: MailboxPayload,
    now: DateTime<Utc>,
) -> Result<Enqueued, Error> {
    let payload = Payload::Mailbox(p);
    let id = queue::insert(
        c,
        NewChange {
            account_id: account,
            email_id: None,
            kind: payload.kind().to_owned(),
            payload: payload.to_json(),
            next_attempt_at: now,
        },
    )
    .await?;
    Ok(Enqueued::Queued(id))
}

async fn replace<C: ConnectionTrait>(c: &C, row: &Row, p: MailboxPayload) -> Result<bool, Error> {
    rows::update(
        c,
        row.id,
        Some(ChangeState::Pending),
        Patch {
            payload: Some(Payload::Mailbox(p)),
            ..Patch::default()
        },
    )
    .await
}

/// Renames a mailbox locally and keeps the full names of its descendants in step.
async fn rename_local<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mb: &Mailbox,
    name: &str,
    parent_remote_id: Option<&str>,
) -> Result<(), Error> {
    if let Some(d) = mb.delimiter.as_deref().filter(|d| !d.is_empty()) {
        let prefix = format!("{}{d}", mb.name);
        for child in mailboxes::list(c, account).await? {
            if let Some(rest) = child.name.strip_prefix(&prefix) {
                let new = format!("{name}{d}{rest}");
                mailboxes::set_name(c, child.id, &new, child.parent_remote_id.as_deref()).await?;
            }
        }
    }
    mailboxes::set_name(c, mb.id, name, parent_remote_id).await?;
    Ok(())
}

/// Applies a mailbox change locally and queues it (coalescing with rows not sent yet).
/// Returns the mailbox it leaves (`None` after a delete).
pub(crate) async fn apply<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    change: &MailboxChange,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<(Option<MailboxId>, Enqueued), Error> {
    let all = mailboxes::list(c, account).await?;
    match change {
        MailboxChange::Create { name, parent, role } => {
            let parent = match parent {
                Some(p) => Some(load(c, account, *p).await?),
                None => None,
            };
            let delim = delimiter(parent.as_ref(), &all);
            check_name(name, &delim)?;
            let full = full_name(parent.as_ref(), &delim, name);
            if all.iter().any(|m| m.name == full) {
                return Err(Error::MailboxExists(full));
            }
            let remote_id = format!("{LOCAL_PREFIX}{}", placeholder_suffix(now));
            let stored = mailboxes::upsert(
                c,
                account,
                &[MailboxUpsert {
                    remote_id: remote_id.clone(),
                    name: full.clone(),
                    parent_remote_id: parent.as_ref().map(|p| p.remote_id.clone()),
                    delimiter: Some(delim),
                    selectable: true,
                    role: *role,
                    status: None,
                }],
            )
            .await?;
            let id = stored
                .first()
                .map(|m| m.id)
                .ok_or(Error::MailboxExists(full.clone()))?;
            let r = insert(
                c,
                account,
                MailboxPayload {
                    v: PAYLOAD_VERSION,
                    at: now,
                    mailbox_id: id,
                    remote_id,
                    name_before: full,
                    parent_before: parent.map(|p| p.remote_id),
                    change: change.clone(),
                    seen: None,
                    renamed_from: None,
                },
                now,
            )
            .await?;
            Ok((Some(id), r))
        }
        MailboxChange::Rename {
            mailbox,
            name,
            parent,
        } => {
            let mb = load(c, account, *mailbox).await?;
            let parent_mb = match parent {
                Some(p) => {
                    let pm = load(c, account, *p).await?;
                    let d = mb.delimiter.clone().unwrap_or_default();
                    if pm.id == mb.id
                        || (!d.is_empty() && pm.name.starts_with(&format!("{}{d}", mb.name)))
                    {
                        return Err(Error::InvalidMailboxName {
                            name: name.clone(),
                            why: "a mailbox cannot move under itself".to_owned(),
                        });
                    }
                    Some(pm)
                }
                None => None,
            };
            let delim = delimiter(parent_mb.as_ref(), &all);
            check_name(name, &delim)?;
            let full = full_name(parent_mb.as_ref(), &delim, name);
            if full == mb.name {
                return Ok((Some(mb.id), Enqueued::Unchanged));
            }
            if all.iter().any(|m| m.name == full && m.id != mb.id) {
                return Err(Error::MailboxExists(full));
            }
            let parent_remote = parent_mb.as_ref().map(|p| p.remote_id.clone());
            // A parent whose own create is still queued must not be overtaken: merging would
            // move this rename (or create) ahead of it.
            let parent_pending = parent_mb
                .as_ref()
                .is_some_and(|p| mailboxes::is_local(&p.remote_id));
            let queued = rows_of(c, account, mb.id).await?;
            let mut result = None;
            if let Some((row, p)) = queued.last()
                && row.state == ChangeState::Pending
                && (!parent_pending || parent_remote == p.parent_before)
            {
                let merged = match &p.change {
                    MailboxChange::Create { role, .. } => Some(MailboxChange::Create {
                        name: name.clone(),
                        parent: *parent,
                        role: *role,
                    }),
                    MailboxChange::Rename { .. } => Some(change.clone()),
                    _ => None,
                };
                if let Some(m) = merged {
                    let mut np = p.clone();
                    np.change = m;
                    np.at = now;
                    if replace(c, row, np).await? {
                        result = Some(Enqueued::Merged(row.id));
                    }
                }
            }
            let result = match result {
                Some(r) => r,
                // What the user renames, as a sync last saw it: over IMAP the rename addresses
                // a name, which the executor checks is still this mailbox (UIDVALIDITY,
                // MAILBOXID) before sending it.
                None => {
                    let seen = seen_content(c, &mb).await?;
                    insert(
                        c,
                        account,
                        MailboxPayload::of(&mb, change, now, Some(seen)),
                        now,
                    )
                    .await?
                }
            };
            rename_local(c, account, &mb, &full, parent_remote.as_deref()).await?;
            Ok((Some(mb.id), result))
        }
        MailboxChange::Delete { mailbox } => {
            let mb = load(c, account, *mailbox).await?;
            let queued = rows_of(c, account, mb.id).await?;
            let unsent_create = queued.iter().find(|(r, p)| {
                r.state == ChangeState::Pending && matches!(p.change, MailboxChange::Create { .. })
            });
            let mut result = None;
            if let Some((create, _)) = unsent_create {
                // Never created on the server: nothing to send, and nothing else about it.
                for (r, _) in &queued {
                    rows::delete(c, r.id, Some(ChangeState::Pending)).await?;
                }
                result = Some(Enqueued::Collapsed(create.id));
            }
            let mut renamed_from = None;
            if result.is_none() {
                // Renames and subscriptions not sent yet are moot, unless the delete is
                // refused: the oldest such rename's name is the one the server keeps.
                for (r, p) in &queued {
                    if matches!(p.change, MailboxChange::Create { .. }) {
                        continue;
                    }
                    let dropped = rows::delete(c, r.id, Some(ChangeState::Pending)).await?;
                    if dropped
                        && renamed_from.is_none()
                        && matches!(p.change, MailboxChange::Rename { .. })
                    {
                        renamed_from = Some(p.name_before.clone());
                    }
                }
            }
            let seen = seen_content(c, &mb).await?;
            delete_emails(c, account, &mb, now, touched).await?;
            let result = match result {
                Some(r) => r,
                None => {
                    let mut p = MailboxPayload::of(&mb, change, now, Some(seen));
                    p.renamed_from = renamed_from;
                    insert(c, account, p, now).await?
                }
            };
            mailboxes::delete(c, mb.id).await?;
            Ok((None, result))
        }
        MailboxChange::Subscribe { mailbox, .. } => {
            let mb = load(c, account, *mailbox).await?;
            let queued = rows_of(c, account, mb.id).await?;
            if let Some((row, p)) = queued.last()
                && row.state == ChangeState::Pending
                && matches!(p.change, MailboxChange::Subscribe { .. })
            {
                let mut np = p.clone();
                np.change = change.clone();
                np.at = now;
                if replace(c, row, np).await? {
                    return Ok((Some(mb.id), Enqueued::Merged(row.id)));
                }
            }
            let r = insert(c, account, MailboxPayload::of(&mb, change, now, None), now).await?;
            Ok((Some(mb.id), r))
        }
    }
}

fn placeholder_suffix(now: DateTime<Utc>) -> String {
    use rand::Rng as _;
    let r: u64 = rand::rng().random();
    format!("{:x}.{r:016x}", now.timestamp_micros())
}

/// Before a mailbox leaves the database: emails in it with queued changes. One the server
/// has in this mailbox loses its unsent rows (the server's DELETE takes it); one the server
/// still has elsewhere (its move here is not sent) gets a permanent delete queued.
/// What the user sees in `mb` now (see [`SeenContent`]).
async fn seen_content<C: ConnectionTrait>(c: &C, mb: &Mailbox) -> Result<SeenContent, Error> {
    let ids = mailboxes::email_ids(c, mb.id).await?;
    // IMAP mailboxes have a UIDVALIDITY; their emails' remote ids are local constructs.
    let email_ids = if mb.status.uidvalidity.is_none() && ids.len() <= MAX_SEEN_IDS {
        Some(mailsync_store::emails::remote_ids_of(c, &ids).await?)
    } else {
        None
    };
    // A sync may have stored messages above the UIDNEXT its LIST-STATUS reported: those
    // were seen too.
    let above = mailsync_store::emails::max_uid(c, mb.id)
        .await?
        .map(|u| u + 1);
    let uidnext = match (mb.status.uidnext, above) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Ok(SeenContent {
        uidvalidity: mb.status.uidvalidity,
        uidnext,
        count: ids.len() as u64,
        email_ids,
        mailbox_id: recorded_mailbox_id(c, mb).await?,
    })
}

/// The MAILBOXID a sync recorded for `mb` (IMAP with OBJECTID), if it was recorded under the
/// row's current UIDVALIDITY (a different one: the row's mailbox was re-created since).
async fn recorded_mailbox_id<C: ConnectionTrait>(
    c: &C,
    mb: &Mailbox,
) -> Result<Option<String>, Error> {
    let scope = mailsync_store::checkpoints::Scope::imap_mailbox_id(mb.id);
    let cp = mailsync_store::checkpoints::get(c, mb.account_id, &scope).await?;
    Ok(cp
        .filter(|cp| cp.uidvalidity.is_some() && cp.uidvalidity == mb.status.uidvalidity)
        .and_then(|cp| cp.state))
}

async fn delete_emails<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mb: &Mailbox,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<(), Error> {
    let ids = mailboxes::email_ids(c, mb.id).await?;
    let with_rows = rows::for_emails(c, &ids).await?;
    let mut emails: Vec<_> = with_rows.iter().filter_map(|r| r.email_id).collect();
    emails.sort_unstable();
    emails.dedup();
    local::lock(c, emails.iter().copied()).await?;
    for email in emails {
        let queued = rows::for_email(c, email).await?;
        let on_server_here = queued
            .iter()
            .find_map(Row::email_payload)
            .is_some_and(|p| p.before.mailboxes.iter().any(|l| l.mailbox_id == mb.id));
        if on_server_here {
            for r in &queued {
                if r.state == ChangeState::Pending {
                    debug!(change = %r.id, "Dropping a change of an email whose mailbox is deleted.");
                    rows::delete(c, r.id, Some(ChangeState::Pending)).await?;
                }
            }
        } else {
            enqueue_ops(c, account, email, vec![Op::Destroy], false, now, touched).await?;
        }
    }
    Ok(())
}

/// The server's answer to a mailbox row: its new identity (create, rename), recorded on the
/// local row and on the mailbox's later rows.
pub(crate) async fn on_done<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    p: &MailboxPayload,
    remote_id: Option<&str>,
) -> Result<(), Error> {
    let Some(rid) = remote_id else {
        return Ok(());
    };
    if let Some(mb) = not_found_is_none(mailboxes::get(c, p.mailbox_id).await)? {
        if let Some(other) = mailboxes::find_by_remote_id(c, account, rid).await?
            && other.id != mb.id
        {
            // A sync stored the server's mailbox first (a crash between the create and its
            // record), or that row is an older mailbox of the same name that another client
            // deleted since: either way the row the user's changes address stays. Emails with
            // queued changes stay too (model test, Dovecot seed 996 with cuts: a move into the
            // older mailbox was queued, and deleting the email with the row lost the message
            // locally; the move is now refused and puts it back where it was).
            mailboxes::delete_gone(c, other.id).await?;
            // The emails the sync stored in that row are gone with it, and a JMAP Email state
            // already past them would never bring them back into this one (model test, Cyrus
            // JMAP seed 3093 with cuts: a create cut before its answer, the sync stored the
            // mailbox and a message another client put in it, and the create's retry found
            // the mailbox and dropped the message locally). IMAP compares a mailbox without
            // a checkpoint in full anyway.
            mailsync_store::checkpoints::require_full_listing(c, account).await?;
        }
        // Children name their parent by its server identity.
        for child in mailboxes::list(c, account).await? {
            if child.parent_remote_id.as_deref() == Some(mb.remote_id.as_str()) {
                mailboxes::set_name(c, child.id, &child.name, Some(rid)).await?;
            }
        }
        mailboxes::set_remote_id(c, mb.id, rid).await?;
    }
    for (row, later) in rows_of(c, account, p.mailbox_id).await? {
        if later.remote_id != rid {
            let mut np = later;
            rid.clone_into(&mut np.remote_id);
            rows::set_payload(c, row.id, Payload::Mailbox(np)).await?;
        }
    }
    Ok(())
}

/// Reverts a mailbox row the server refused: a created mailbox leaves the database (the email
/// changes that put mail into it are evicted too, their emails back where they were); a
/// rename gets the old name back. A refused delete is made good by the next sync, which
/// lists the mailbox again (JMAP: the mailboxes and emails listed in full again).
pub(crate) async fn revert<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    p: &MailboxPayload,
    reason: &str,
    touched: &mut Touched,
) -> Result<(), Error> {
    if let MailboxChange::Delete { .. } = &p.change {
        // The mailbox and its emails left the database when the delete was asked; the
        // server kept them.
        mailsync_store::checkpoints::require_full_listing(c, account).await?;
    }
    let Some(mb) = not_found_is_none(mailboxes::get(c, p.mailbox_id).await)? else {
        return Ok(());
    };
    match &p.change {
        MailboxChange::Create { .. } if mailboxes::is_local(&mb.remote_id) => {
            let why = format!("its mailbox {:?} was not created: {reason}", mb.name);
            let ids = mailboxes::email_ids(c, mb.id).await?;
            local::lock(c, ids.iter().copied()).await?;
            for email in ids {
                let queued = rows::for_email(c, email).await?;
                let Some(first) = queued.iter().find_map(Row::email_payload) else {
                    continue;
                };
                let before = first.before.clone();
                for r in &queued {
                    queue::evict(c, r.id, &why).await?;
                }
                if let Some((_, current)) = local::load(c, email).await? {
                    local::write_existing(c, email, &current, &before, touched).await?;
                }
                crate::outcome::base_back_after_eviction(c, account, email, &before).await?;
                // A draft the server never had has nowhere to go back to (model test, Dovecot
                // seed 327 with cuts: a new draft moved into a mailbox whose create was refused).
                crate::outcome::drop_if_nowhere(c, email, touched).await?;
            }
            for (r, _) in rows_of(c, account, mb.id).await? {
                queue::evict(c, r.id, &why).await?;
            }
            mailboxes::delete(c, mb.id).await?;
        }
        MailboxChange::Rename { .. } => {
            rename_local(c, account, &mb, &p.name_before, p.parent_before.as_deref()).await?;
        }
        _ => {}
    }
    Ok(())
}

/// After a sync: queued renames and deletes shown again over what the sync wrote (the server
/// still has the old name, or the mailbox, until they are sent). Renames and subscriptions of
/// a mailbox the sync found gone from the server are refused (see [`gone_from_server`]).
pub(crate) async fn reapply<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    queued: &[Row],
    touched: &mut Touched,
) -> Result<(), Error> {
    for row in queued {
        let Payload::Mailbox(p) = &row.payload else {
            continue;
        };
        if matches!(
            p.change,
            MailboxChange::Rename { .. } | MailboxChange::Subscribe { .. }
        ) && let Some(reason) = gone_from_server(c, account, row, p, queued).await?
        {
            crate::outcome::evict(c, row, &reason, touched).await?;
            continue;
        }
        match &p.change {
            MailboxChange::Rename { name, parent, .. } => {
                let Some(mb) = not_found_is_none(mailboxes::get(c, p.mailbox_id).await)? else {
                    continue;
                };
                let all = mailboxes::list(c, account).await?;
                let parent_mb = parent.and_then(|id| all.iter().find(|m| m.id == id));
                let delim = delimiter(parent_mb, &all);
                let full = full_name(parent_mb, &delim, name);
                if mb.name != full {
                    let pr = parent_mb.map(|m| m.remote_id.clone());
                    rename_local(c, account, &mb, &full, pr.as_deref()).await?;
                }
            }
            MailboxChange::Delete { .. } => {
                // The row the sync lists under the name may be another mailbox by now (another
                // client renamed one to it, or re-created it), which the user may have moved
                // mail into: emails with queued changes stay (in no mailbox for now), as when
                // the server deletes a mailbox, and the re-application after this puts them
                // back on the queue's base, where the server has them. Deleted with the row,
                // such an email was lost for good: its server copy elsewhere was behind that
                // mailbox's checkpoint (model test, Cyrus IMAP seed 11061 with cuts and kills).
                //
                // Only the mailbox the user deleted is hidden: another one that has the name
                // by now (another client renamed it there, or deleted the user's and created
                // one of that name) shows, with its mail, and the executor refuses to delete
                // it (`engine::mailbox_admin`). Compared by MAILBOXID where the server gives
                // one (RFC 8474), else by UIDVALIDITY (model test, Cyrus IMAP: a delete of A
                // held by a cut, and another client's rename of B to A).
                if let Some(mb) = mailboxes::find_by_remote_id(c, account, &p.remote_id).await? {
                    let same = match &p.seen {
                        Some(seen) => {
                            let now = recorded_mailbox_id(c, &mb).await?;
                            seen.same_mailbox(&mb, now.as_deref())
                        }
                        None => true,
                    };
                    if same {
                        mailboxes::delete_gone(c, mb.id).await?;
                    } else {
                        debug!(change = %row.id, mailbox = %mb.id, "The name of a mailbox queued for deletion is another mailbox's now: shown.");
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a queued rename or subscription `row` (payload `p`) can no longer be sent, if so: its
/// mailbox's row is gone while the user did not delete it, so a sync found the mailbox gone
/// from the server (another client deleted or renamed it). Sent anyway, it would address the
/// mailbox's old server identity, which over IMAP is a name another mailbox may have taken
/// since: the rename then moved another client's new mailbox to the user's name (model test,
/// Dovecot seed 12017 with cuts: C renamed to F locally, C deleted and re-created by another
/// client, and the retried rename made the other client's C into F, after the user had
/// deleted their F). A mailbox the user deleted is left to the delete queued after it (an
/// uncertain rename must settle first: the delete addresses its outcome). A rename that may
/// have reached the server is left to the executor's look when the sync lists a mailbox under
/// its new name (its own, most likely); otherwise it did not happen, or its mailbox is gone
/// since, and is refused like the others.
async fn gone_from_server<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    row: &Row,
    p: &MailboxPayload,
    queued: &[Row],
) -> Result<Option<String>, Error> {
    if not_found_is_none(mailboxes::get(c, p.mailbox_id).await)?.is_some() {
        return Ok(None);
    }
    let deleted_by_user = queued.iter().any(|r| {
        matches!(&r.payload, Payload::Mailbox(q)
            if q.mailbox_id == p.mailbox_id && matches!(q.change, MailboxChange::Delete { .. }))
    });
    if deleted_by_user {
        return Ok(None);
    }
    if let MailboxChange::Rename { name, parent, .. } = &p.change
        && row.state == ChangeState::InFlight
    {
        let all = mailboxes::list(c, account).await?;
        let parent_mb = parent.and_then(|id| all.iter().find(|m| m.id == id));
        if parent.is_none() || parent_mb.is_some() {
            let full = full_name(parent_mb, &delimiter(parent_mb, &all), name);
            if all
                .iter()
                .any(|m| m.name == full && !mailboxes::is_local(&m.remote_id))
            {
                return Ok(None);
            }
        }
    }
    debug!(change = %row.id, mailbox = %p.mailbox_id, "A queued mailbox change's mailbox is gone from the server.");
    Ok(Some(
        "the mailbox no longer exists on the server (another client deleted or renamed it)"
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refused name says what is wrong with it; a name with the delimiter says to name
    /// the parent instead.
    #[test]
    fn a_refused_name_says_why() {
        let why = |name: &str| match check_name(name, "/") {
            Err(Error::InvalidMailboxName { why, .. }) => why,
            other => panic!("{name:?}: {other:?}"),
        };
        assert!(why("Work/Projects").contains("one level, under its parent"));
        assert!(why("").contains("empty"));
        assert!(why(" Work").contains("space"));
        assert!(why("a\u{7}b").contains("control"));
        assert!(why(&"x".repeat(256)).contains("255"));
        assert!(check_name("Work.Projects", "/").is_ok());
        let e = check_name("B/F", "/").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("invalid mailbox name \"B/F\": it holds the hierarchy delimiter"));
    }
}
