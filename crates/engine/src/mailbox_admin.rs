//! Mailbox management (create, rename/move, delete, subscribe) on the server, for both
//! protocols: how each executor runs a queued [`MailboxOperation`] and reads its outcome back.
//!
//! The change itself is queued by the outbox ([`Outbox::manage_mailbox`]): applied locally at
//! once, sent by the cycle's flush, reverted when refused. Here the executors resolve the local
//! ids to server identities at execution time (an earlier create or rename in the same flush
//! gave them), run the command, and answer with the server's identity read back (IMAP LIST,
//! JMAP `Mailbox/get`). A change whose earlier attempt ended without an answer looks before
//! repeating it.
//!
//! [`Outbox::manage_mailbox`]: mailsync_outbox::Outbox::manage_mailbox

use mailsync_imap_sync as imap;
use mailsync_jmap_client as jmap;
use mailsync_outbox::{Attempt, ItemOutcome, MailboxOperation};
use mailsync_store::{Role, Store, StoreError, mailboxes};

use crate::error::EngineError;

/// What to do to an account's mailboxes (the outbox's [`mailsync_outbox::MailboxChange`]).
pub use mailsync_outbox::MailboxChange as MailboxAction;

fn jmap_role(r: Role) -> jmap::MailboxRole {
    jmap::MailboxRole::parse(r.as_str())
}

fn relocated(remote_id: String) -> ItemOutcome {
    ItemOutcome::Relocated {
        remote_id: Some(remote_id),
        locations: Vec::new(),
        size: None,
    }
}

/// The mailbox's current server identity (the store's row while it exists, else the one the
/// queued row recorded) and its parent's, for a create or rename.
async fn resolve(
    store: &Store,
    op: &MailboxOperation,
) -> Result<(String, Option<String>), EngineError> {
    let target = match mailboxes::get(store.conn(), op.mailbox_id).await {
        Ok(m) => m.remote_id,
        Err(StoreError::NotFound { .. }) => op.remote_id.clone(),
        Err(e) => return Err(e.into()),
    };
    let parent = match &op.change {
        MailboxAction::Create { parent, .. } | MailboxAction::Rename { parent, .. } => *parent,
        _ => None,
    };
    let parent = match parent {
        None => None,
        Some(p) => match mailboxes::get(store.conn(), p).await {
            Ok(m) if mailboxes::is_local(&m.remote_id) => {
                return Err(EngineError::Refused(format!(
                    "the parent mailbox {:?} was not created on the server",
                    m.name
                )));
            }
            Ok(m) => Some(m.remote_id),
            Err(StoreError::NotFound { .. }) => {
                return Err(EngineError::Refused(
                    "the parent mailbox no longer exists".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    Ok((target, parent))
}

/// An uncertain create's retry (its earlier attempt's answer was lost) found a mailbox with
/// the name. It is the earlier attempt's or another client's, and nothing tells them apart:
/// the answer that would have named it (IMAP's MAILBOXID, JMAP's id) is what was lost. While
/// the user still has the mailbox it is taken for theirs (both want a mailbox of that name;
/// nothing is lost by sharing it). Once the user deleted it (the local row is gone; a delete
/// is queued behind this row), taking it would hand the found mailbox to that delete, which
/// would destroy another client's: refused instead, leaving it on the server (model test,
/// Cyrus IMAP seed 18017 with cuts: a create cut before the server made it, the user's delete
/// of the mailbox queued behind it, another client's create of the name; the retry took the
/// other client's mailbox and the delete deleted it). Should the mailbox be the user's, it
/// stays, listed as failed, and the next sync shows it.
///
/// Likewise when the user deleted the found mailbox as a mailbox of its own: a sync between
/// the attempts listed what the earlier attempt made as a new mailbox (its answer, which would
/// have tied it to the user's row, was lost), the user deleted that "copy", and its delete is
/// queued behind this row. Taken, the mailbox would stand for the user's row, and that delete
/// would then destroy it with whatever the user did to it since (model test, Cyrus JMAP seed
/// 79012 with cuts: the user's later rename of the created mailbox was acknowledged, then the
/// delete removed the mailbox, and the rename was lost without a word). Refused instead: the
/// create and the changes behind it are listed as failed, and the delete goes ahead.
async fn found_after_uncertain(
    store: &Store,
    op: &MailboxOperation,
    name: &str,
    found: String,
) -> Result<ItemOutcome, EngineError> {
    // SQLite reuses a deleted row's id: the user's row is the one with the create's
    // placeholder.
    let kept = match mailboxes::get(store.conn(), op.mailbox_id).await {
        Ok(m) if m.remote_id == op.remote_id => Some(m),
        Ok(_) | Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(m) = kept {
        let doomed = mailsync_outbox::queued_deletes(store.conn(), m.account_id)
            .await?
            .iter()
            .any(|d| d.remote_id == found);
        if doomed {
            return Err(EngineError::Refused(format!(
                "not known whether the create reached the server (its answer was lost), and \
                 the mailbox {name:?} there now is one you deleted since: left to that delete"
            )));
        }
        return Ok(relocated(found));
    }
    Err(EngineError::Refused(format!(
        "not known whether the create reached the server (its answer was lost), and the \
         mailbox {name:?} there now may be another client's: left alone, and the delete asked \
         since was not sent"
    )))
}

/// Why the mailbox the server has under the name `target` is not the one the user's change
/// `op` was asked on, if it is not: its MAILBOXID (RFC 8474) differs from the one recorded
/// when the change was asked, or, where either is unknown, its UIDVALIDITY does. Over IMAP a
/// rename or delete addresses a name, which another mailbox may have by the time it is sent
/// (another client renamed one to it, or renamed or deleted the user's and created one of
/// that name; an earlier attempt of the change may have moved the user's). MAILBOXID first:
/// Cyrus takes UIDVALIDITY from the clock, so an empty mailbox created in the same second
/// passes that check (model test, Cyrus IMAP: a delete of A held by a cut, another client
/// renamed B to A, and the retry deleted B). With `new_mail` (a delete), mail that arrived
/// since the user saw the mailbox (a UID at or above the UIDNEXT recorded) is a reason too,
/// read by the same STATUS. Rows queued before this was recorded carry no `seen` and are not
/// checked.
async fn another_mailbox_now(
    conn: &mut imap::Connection,
    target: &str,
    op: &MailboxOperation,
    new_mail: bool,
) -> Result<Option<String>, EngineError> {
    let Some(seen) = &op.seen else {
        return Ok(None);
    };
    if let Some(was) = seen.mailbox_id.as_deref()
        && let Some(now) = imap::mailbox_id(conn, target).await?
    {
        return Ok((now != was).then(|| {
            format!(
                "the mailbox {target:?} on the server is another mailbox now (MAILBOXID {was} -> \
                 {now}); the user's was removed or renamed meanwhile (by another client, or an \
                 earlier attempt of this change)"
            )
        }));
    }
    let uidnext = seen.uidnext.filter(|_| new_mail);
    Ok(imap::unseen_mail(conn, target, seen.uidvalidity, uidnext).await?)
}

/// Runs a mailbox change over IMAP; every failure becomes its item outcome.
pub(crate) async fn imap_execute(
    conn: &mut imap::Connection,
    store: &Store,
    op: &MailboxOperation,
    attempt: Attempt,
) -> ItemOutcome {
    match imap_run(conn, store, op, attempt).await {
        Ok(o) => o,
        // Not an account problem to fix: this server cannot set roles at all.
        Err(EngineError::Imap(imap::Error::MissingCapability { capability })) => {
            crate::classify::mailbox_outcome(&EngineError::Refused(format!(
                "the server cannot give a mailbox a role (no {capability})"
            )))
        }
        Err(e) => crate::classify::mailbox_outcome(&e),
    }
}

async fn imap_run(
    conn: &mut imap::Connection,
    store: &Store,
    op: &MailboxOperation,
    attempt: Attempt,
) -> Result<ItemOutcome, EngineError> {
    let (target, parent) = resolve(store, op).await?;
    let uncertain = attempt == Attempt::Uncertain;
    Ok(match &op.change {
        MailboxAction::Create { name, role, .. } => {
            if uncertain {
                let wire = imap::wire_name(conn, parent.as_deref(), name).await?;
                if let Some(m) = imap::lookup(conn, &wire).await? {
                    return found_after_uncertain(store, op, name, m.remote_id).await;
                }
            }
            let m = imap::create_mailbox(conn, parent.as_deref(), name, *role).await?;
            if let Some(r) = role
                && m.role.is_some_and(|got| got != *r)
            {
                return Err(EngineError::Refused(format!(
                    "the server did not give the role {r}"
                )));
            }
            relocated(m.remote_id)
        }
        MailboxAction::Rename { name, .. } => {
            if uncertain {
                let wire = imap::wire_name(conn, parent.as_deref(), name).await?;
                if imap::lookup(conn, &target).await?.is_none()
                    && let Some(m) = imap::lookup(conn, &wire).await?
                {
                    return Ok(relocated(m.remote_id));
                }
            }
            // Never rename another mailbox that has the name by now (another client renamed
            // the user's away and created one of that name: model test, Dovecot and Cyrus
            // IMAP seed 623 with faults, where the rename moved the other client's new,
            // empty mailbox to the user's name).
            if let Some(why) = another_mailbox_now(conn, &target, op, false).await? {
                return Err(EngineError::Refused(format!("not renamed: {why}")));
            }
            let m = imap::rename_mailbox(conn, &target, parent.as_deref(), name).await?;
            relocated(m.remote_id)
        }
        MailboxAction::Delete { .. } => {
            // Already gone (another client, or an earlier attempt): the server satisfies it.
            // A placeholder: its create never gave it a server identity (refused, e.g. by
            // `found_after_uncertain`), so no mailbox on the server is the user's.
            if !mailboxes::is_local(&target) && imap::lookup(conn, &target).await?.is_some() {
                // Never delete another mailbox that has the name by now, nor mail the user
                // did not see in it (another client's since).
                if let Some(why) = another_mailbox_now(conn, &target, op, true).await? {
                    return Err(EngineError::Refused(format!("not deleted: {why}")));
                }
                imap::delete_mailbox(conn, &target).await?;
            }
            ItemOutcome::Done
        }
        MailboxAction::Subscribe { subscribed, .. } => {
            imap::set_subscribed(conn, &target, *subscribed).await?;
            ItemOutcome::Done
        }
        _ => return Err(EngineError::Refused("unknown mailbox change".into())),
    })
}

/// Runs a mailbox change over JMAP; every failure becomes its item outcome.
pub(crate) async fn jmap_execute(
    client: &jmap::Client,
    store: &Store,
    op: &MailboxOperation,
    attempt: Attempt,
) -> ItemOutcome {
    match jmap_run(client, store, op, attempt).await {
        Ok(o) => o,
        Err(e) => crate::classify::mailbox_outcome(&e),
    }
}

/// Sends an update of mailbox `id`. When the server refuses it, whether the mailbox is still
/// there is read back: Cyrus answers an update of a mailbox another client deleted with
/// `serverFail` ("Mailbox does not exist"), not `notFound`, and retrying it five times held
/// the queue up and then gave it up as a transient failure (model test, Cyrus JMAP seed 2006
/// with cuts). A mailbox gone is a refusal, as a missing mailbox is over IMAP.
async fn jmap_update(
    client: &jmap::Client,
    jacc: &jmap::AccountId,
    id: &jmap::MailboxId,
    set: jmap::Set<jmap::Mailbox>,
) -> Result<(), EngineError> {
    match client.call(set).await?.check() {
        Ok(()) => Ok(()),
        Err(e @ jmap::Error::SetItem { .. }) => {
            if jmap_get(client, jacc, id).await?.is_none() {
                return Err(EngineError::Refused(
                    "the mailbox no longer exists on the server".into(),
                ));
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The server's mailbox `id` (`None`: not found), with name, parent and role.
async fn jmap_get(
    client: &jmap::Client,
    jacc: &jmap::AccountId,
    id: &jmap::MailboxId,
) -> Result<Option<jmap::Mailbox>, EngineError> {
    let got = client
        .call(
            jmap::Get::<jmap::Mailbox>::new(jacc)
                .ids(vec![id.clone()])
                .properties(["name", "parentId", "role", "isSubscribed"]),
        )
        .await?;
    Ok(got.list.into_iter().next())
}

/// Why destroying mailbox `id` with its emails would take mail the user did not see in it
/// (`seen`), if it would: an email there that is not one of the ids seen, or more emails than
/// were seen. One `Email/query` (the ids the server returns are checked; the total covers the
/// rest).
async fn jmap_unseen_mail(
    client: &jmap::Client,
    jacc: &jmap::AccountId,
    id: &jmap::MailboxId,
    seen: &mailsync_outbox::SeenContent,
) -> Result<Option<String>, EngineError> {
    let cond = jmap::EmailFilterCondition {
        in_mailbox: Some(id.clone()),
        ..Default::default()
    };
    let limit = u64::try_from(mailsync_outbox::MAX_SEEN_IDS).unwrap_or(u64::MAX) + 1;
    let got = client
        .call(
            jmap::Query::<jmap::Email>::new(jacc)
                .filter(cond)
                .limit(limit)
                .calculate_total(true),
        )
        .await?;
    let total = got.total.unwrap_or(got.ids.len() as u64);
    if total > seen.count {
        return Ok(Some(format!(
            "mail arrived in it since the delete was asked ({total} emails, {} seen)",
            seen.count
        )));
    }
    if let Some(ids) = &seen.email_ids {
        let known: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let new = got
            .ids
            .iter()
            .filter(|e| !known.contains(e.as_str()))
            .count();
        if new > 0 {
            return Ok(Some(format!(
                "{new} email(s) arrived in it since the delete was asked"
            )));
        }
    }
    Ok(None)
}

fn same_place(m: &jmap::Mailbox, name: &str, parent: Option<&jmap::MailboxId>) -> bool {
    m.name.as_deref() == Some(name) && m.parent_id.as_ref() == parent
}

async fn jmap_run(
    client: &jmap::Client,
    store: &Store,
    op: &MailboxOperation,
    attempt: Attempt,
) -> Result<ItemOutcome, EngineError> {
    let (target, parent) = resolve(store, op).await?;
    let jacc = client.mail_account_id()?;
    let parent_id = parent.map(jmap::MailboxId::new);
    let target_id = jmap::MailboxId::new(target);
    let uncertain = attempt == Attempt::Uncertain;
    let mut set = jmap::Set::<jmap::Mailbox>::new(&jacc);
    match &op.change {
        MailboxAction::Create { name, role, .. } => {
            if uncertain {
                let all = client
                    .call(jmap::Get::<jmap::Mailbox>::new(&jacc).properties(["name", "parentId"]))
                    .await?;
                if let Some(id) = all
                    .list
                    .iter()
                    .find(|m| same_place(m, name, parent_id.as_ref()))
                    .and_then(|m| m.id.clone())
                {
                    return found_after_uncertain(store, op, name, id.as_str().to_owned()).await;
                }
            }
            let mut m = jmap::Mailbox::new(name.clone());
            if let Some(p) = &parent_id {
                m = m.with_parent(p.clone());
            }
            if let Some(r) = role {
                m = m.with_role(jmap_role(*r));
            }
            let created = set.create(m);
            let resp = client.call(set).await?;
            let id =
                resp.created_or_error(&created)?.id.clone().ok_or_else(|| {
                    EngineError::Refused("the server gave the mailbox no id".into())
                })?;
            // Read it back: a server may create the mailbox and drop the role (Cyrus 3.6
            // accepts a role another mailbox holds and then reports it inconsistently).
            let got = jmap_get(client, &jacc, &id)
                .await?
                .ok_or_else(|| EngineError::Refused("the created mailbox is not listed".into()))?;
            if let Some(r) = role
                && got.role != Some(jmap_role(*r))
            {
                return Err(EngineError::Refused(format!(
                    "the server did not give the role {r}"
                )));
            }
            Ok(relocated(id.as_str().to_owned()))
        }
        MailboxAction::Rename { name, .. } => {
            let p = parent_id
                .as_ref()
                .map_or(serde_json::Value::Null, |p| p.as_str().into());
            set.update(
                &target_id,
                jmap::Patch::new()
                    .set("name", name.clone())
                    .set("parentId", p),
            );
            jmap_update(client, &jacc, &target_id, set).await?;
            let got = jmap_get(client, &jacc, &target_id)
                .await?
                .ok_or_else(|| EngineError::Refused("the renamed mailbox is not listed".into()))?;
            if !same_place(&got, name, parent_id.as_ref()) {
                return Err(EngineError::Refused(
                    "the server did not keep the new name".into(),
                ));
            }
            Ok(relocated(target_id.as_str().to_owned()))
        }
        MailboxAction::Delete { .. } => {
            // A placeholder: its create never gave it a server identity (see the IMAP arm).
            if !mailboxes::is_local(target_id.as_str())
                && jmap_get(client, &jacc, &target_id).await?.is_some()
            {
                if let Some(seen) = &op.seen
                    && let Some(why) = jmap_unseen_mail(client, &jacc, &target_id, seen).await?
                {
                    return Err(EngineError::Refused(format!("not deleted: {why}")));
                }
                set.destroy([&target_id]);
                set.on_destroy_remove_emails(true);
                client.call(set).await?.check()?;
                if jmap_get(client, &jacc, &target_id).await?.is_some() {
                    return Err(EngineError::Refused(
                        "the mailbox is still listed after its destroy".into(),
                    ));
                }
            }
            Ok(ItemOutcome::Done)
        }
        MailboxAction::Subscribe { subscribed, .. } => {
            set.update(
                &target_id,
                jmap::Patch::new().set("isSubscribed", *subscribed),
            );
            jmap_update(client, &jacc, &target_id, set).await?;
            let got = jmap_get(client, &jacc, &target_id).await?;
            if got.and_then(|m| m.is_subscribed) != Some(*subscribed) {
                return Err(EngineError::Refused(
                    "the subscription did not change".into(),
                ));
            }
            Ok(ItemOutcome::Done)
        }
        _ => Err(EngineError::Refused("unknown mailbox change".into())),
    }
}
