//! Mailbox management (create, rename/move, delete, subscribe) run on the server at once, for
//! both protocols, then reconciled into the store by a sync cycle.
//!
//! Online only for now: nothing is queued, so without a connection the command fails and
//! nothing changes locally (the outbox operation of issue #15 is still to build).

use mailsync_imap_sync as imap;
use mailsync_jmap_client as jmap;
use mailsync_store::accounts::Account;
use mailsync_store::{AccountKind, MailboxId, Role, mailboxes};

use crate::error::EngineError;

/// What to do to an account's mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailboxAction {
    /// Create `name` (one level) under `parent`, with a `role` (IMAP: only where the server has
    /// CREATE-SPECIAL-USE).
    Create {
        /// The new mailbox's name (its last level).
        name: String,
        /// Its parent (`None`: top level).
        parent: Option<MailboxId>,
        /// A role to give it.
        role: Option<Role>,
    },
    /// Rename and/or move: `name` (one level) under `parent` (`None`: top level).
    Rename {
        /// The mailbox.
        mailbox: MailboxId,
        /// Its new name (last level).
        name: String,
        /// Its new parent.
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

fn jmap_role(r: Role) -> jmap::MailboxRole {
    jmap::MailboxRole::parse(r.as_str())
}

/// The server identity (`remote_id`) of a mailbox of this account, checked to belong to it.
async fn remote_of(
    store: &mailsync_store::Store,
    account: &Account,
    id: MailboxId,
) -> Result<String, EngineError> {
    let m = mailboxes::get(store.conn(), id).await?;
    if m.account_id != account.id {
        return Err(EngineError::Refused(format!(
            "mailbox {id} is not in account {}",
            account.id
        )));
    }
    Ok(m.remote_id)
}

/// Runs the action on the server. Returns the server identity of the mailbox it leaves
/// (`None` after a delete).
pub(crate) async fn run(
    store: &mailsync_store::Store,
    account: &Account,
    action: &MailboxAction,
) -> Result<Option<String>, EngineError> {
    // Resolve local ids first: an unknown mailbox fails before any network.
    let (target, parent) = match action {
        MailboxAction::Create { parent, .. } => (None, *parent),
        MailboxAction::Rename {
            mailbox, parent, ..
        } => (Some(remote_of(store, account, *mailbox).await?), *parent),
        MailboxAction::Delete { mailbox } | MailboxAction::Subscribe { mailbox, .. } => {
            (Some(remote_of(store, account, *mailbox).await?), None)
        }
    };
    let parent = match parent {
        Some(p) => Some(remote_of(store, account, p).await?),
        None => None,
    };
    match account.kind {
        AccountKind::Imap => {
            let mut conn = crate::imap_driver::connect(account).await?;
            let target = target.as_deref().unwrap_or_default();
            let out = match action {
                MailboxAction::Create { name, role, .. } => {
                    imap::create_mailbox(&mut conn, parent.as_deref(), name, *role)
                        .await
                        .map(|m| Some(m.remote_id))
                }
                MailboxAction::Rename { name, .. } => {
                    imap::rename_mailbox(&mut conn, target, parent.as_deref(), name)
                        .await
                        .map(|m| Some(m.remote_id))
                }
                MailboxAction::Delete { .. } => {
                    imap::delete_mailbox(&mut conn, target).await.map(|()| None)
                }
                MailboxAction::Subscribe { subscribed, .. } => {
                    imap::set_subscribed(&mut conn, target, *subscribed)
                        .await
                        .map(|m| Some(m.remote_id))
                }
            };
            conn.logout().await;
            match out {
                // Not an account problem to fix: this server cannot set roles at all.
                Err(imap::Error::MissingCapability { capability }) => Err(EngineError::Refused(
                    format!("the server cannot give a mailbox a role (no {capability})"),
                )),
                other => Ok(other?),
            }
        }
        AccountKind::Jmap => {
            let client = crate::jmap_driver::connect(account).await?;
            let jacc = client.mail_account_id()?;
            let mut set = jmap::Set::<jmap::Mailbox>::new(&jacc);
            let parent_id = parent.map(jmap::MailboxId::new);
            let target_id = target.map(jmap::MailboxId::new);
            let mut created = None;
            match (action, &target_id) {
                (MailboxAction::Create { name, role, .. }, _) => {
                    let mut m = jmap::Mailbox::new(name.clone());
                    if let Some(p) = &parent_id {
                        m = m.with_parent(p.clone());
                    }
                    if let Some(r) = role {
                        m = m.with_role(jmap_role(*r));
                    }
                    created = Some(set.create(m));
                }
                (MailboxAction::Rename { name, .. }, Some(id)) => {
                    let p = parent_id
                        .as_ref()
                        .map_or(serde_json::Value::Null, |p| p.as_str().into());
                    set.update(
                        id,
                        jmap::Patch::new()
                            .set("name", name.clone())
                            .set("parentId", p),
                    );
                }
                (MailboxAction::Delete { .. }, Some(id)) => {
                    set.destroy([id]);
                    set.on_destroy_remove_emails(true);
                }
                (MailboxAction::Subscribe { subscribed, .. }, Some(id)) => {
                    set.update(id, jmap::Patch::new().set("isSubscribed", *subscribed));
                }
                _ => return Err(EngineError::Refused("no mailbox given".into())),
            }
            let resp = client.call(set).await?;
            resp.check()?;
            let id = match created {
                Some(c) => resp.created_or_error(&c)?.id.clone(),
                None if matches!(action, MailboxAction::Delete { .. }) => None,
                None => target_id,
            };
            // Read the role back: a server may create the mailbox and drop the role.
            if let (MailboxAction::Create { role: Some(r), .. }, Some(id)) = (action, &id) {
                let got = client
                    .call(
                        jmap::Get::<jmap::Mailbox>::new(&jacc)
                            .ids(vec![id.clone()])
                            .properties(["role"]),
                    )
                    .await?;
                if got.list.first().and_then(|m| m.role.clone()) != Some(jmap_role(*r)) {
                    return Err(EngineError::Refused(format!(
                        "the server did not give the role {r}"
                    )));
                }
            }
            Ok(id.map(|i| i.as_str().to_owned()))
        }
    }
}
