//! Local changes through the outbox: `flag`, `move`, `delete` (applied at once, queued, sent at
//! the next sync or right away with `--now`) and `undo`.

use std::collections::HashMap;
use std::time::Duration;

use mailsync_outbox::{Change, Enqueued, Undone};
use mailsync_store::accounts::Account;
use mailsync_store::emails::{self, Email};
use mailsync_store::{AccountId, EmailId, MailboxId, StoreError, mailboxes, queue};

use super::Ctx;
use crate::args::{DeleteArgs, FlagArgs, MoveArgs, UndoArgs};
use crate::error::CliError;
use crate::output;

/// Loads every email first, so an unknown id changes nothing.
async fn load(ctx: &Ctx, ids: &[i64]) -> Result<Vec<Email>, CliError> {
    let mut out = Vec::new();
    for &id in ids {
        let e = emails::get(ctx.store().conn(), EmailId(id))
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    CliError::not_found(format!("email {id}: no such email"))
                }
                other => CliError::store(&format!("email {id}"), &other),
            })?;
        out.push(e);
    }
    Ok(out)
}

fn describe(id: EmailId, what: &str, r: Enqueued) -> String {
    match r {
        Enqueued::Queued(c) => format!("email {id}: {what} (queued as change {c})"),
        Enqueued::Merged(c) => format!("email {id}: {what} (merged into queued change {c})"),
        Enqueued::Collapsed(_) => format!("email {id}: {what} (cancels a queued change)"),
        Enqueued::Unchanged => format!("email {id}: already so, nothing to do"),
    }
}

async fn apply(ctx: &Ctx, list: Vec<(Email, Change, String)>, now: bool) -> Result<u8, CliError> {
    // One transaction per account: a thousand ids cost one commit, and a failure changes nothing.
    let mut touched: Vec<AccountId> = Vec::new();
    for (e, _, _) in &list {
        if !touched.contains(&e.account_id) {
            touched.push(e.account_id);
        }
    }
    for &account in &touched {
        let mine: Vec<&(Email, Change, String)> = list
            .iter()
            .filter(|(e, _, _)| e.account_id == account)
            .collect();
        let changes = mine.iter().map(|(_, c, _)| c.clone()).collect();
        let results = match ctx.engine.enqueue_all(account, changes).await {
            Ok(r) => r,
            Err(err) => {
                let object = match mine.as_slice() {
                    [(e, _, _)] => format!("email {}", e.id),
                    _ => match ctx.account_name(account).await {
                        Ok(name) => format!("account {name:?}"),
                        Err(_) => format!("account {account}"),
                    },
                };
                return Err(CliError::engine(&object, &err));
            }
        };
        for ((e, _, what), r) in mine.iter().zip(results) {
            output::line(describe(e.id, what, r))?;
        }
    }
    if now {
        return sync_now(ctx, &touched).await;
    }
    Ok(0)
}

/// Syncs the accounts right away (`--now`); the changes stay queued if that fails.
async fn sync_now(ctx: &Ctx, accounts: &[AccountId]) -> Result<u8, CliError> {
    let mut first = 0;
    for &id in accounts {
        let acc: Account = mailsync_store::accounts::get(ctx.store().conn(), id).await?;
        let c = ctx.store().conn();
        let before = queue::count(c, id).await?;
        let drained = || async { Ok(queue::count(c, id).await? == 0) };
        match super::sync::flush_now(ctx, &acc, Duration::from_secs(10), drained).await {
            Ok(super::sync::Cycle::Delegated { owner }) => {
                let left = queue::count(c, id).await?;
                output::line(format!(
                    "account {:?}: handed to the running daemon ({owner}): {} changes sent, {} still queued",
                    acc.name,
                    before.saturating_sub(left),
                    left
                ))?;
            }
            Ok(super::sync::Cycle::Ran(c)) => {
                let left = queue::count(ctx.store().conn(), id).await?;
                output::line(format!(
                    "account {:?}: {} changes sent, {} still queued",
                    acc.name, c.changes_flushed, left
                ))?;
            }
            Err(e) => {
                eprintln!("error: {} (the changes stay queued)", e.message);
                if first == 0 {
                    first = e.code;
                }
            }
        }
    }
    Ok(first)
}

pub async fn flag(ctx: &Ctx, a: FlagArgs) -> Result<u8, CliError> {
    let emails = load(ctx, &a.ids).await?;
    let list = emails
        .into_iter()
        .map(|e| {
            let (change, what) = if a.seen {
                (Change::seen(e.id, true), "marked seen")
            } else if a.unseen {
                (Change::seen(e.id, false), "marked unseen")
            } else if a.flagged {
                (Change::flagged(e.id, true), "flagged")
            } else {
                (Change::flagged(e.id, false), "unflagged")
            };
            (e, change, what.to_owned())
        })
        .collect();
    apply(ctx, list, a.now).await
}

/// The mailbox `to` of an account: by name first, then by role.
async fn target(ctx: &Ctx, account: AccountId, to: &str) -> Result<(MailboxId, String), CliError> {
    let c = ctx.store().conn();
    if let Some(m) = ctx.mailbox(account, to).await? {
        return Ok((m.id, m.name));
    }
    if let Ok(role) = to.to_ascii_lowercase().parse::<mailsync_store::Role>()
        && let Some(m) = mailboxes::find_by_role(c, account, role).await?
    {
        return Ok((m.id, m.name));
    }
    let name = ctx.account_name(account).await?;
    Err(CliError::not_found(format!(
        "mailbox {to:?}: no such mailbox or role in account {name:?}"
    )))
}

pub async fn move_to(ctx: &Ctx, a: MoveArgs) -> Result<u8, CliError> {
    let emails = load(ctx, &a.ids).await?;
    // The target is resolved once per account, not once per email.
    let mut targets: HashMap<AccountId, (MailboxId, String)> = HashMap::new();
    let mut list = Vec::with_capacity(emails.len());
    for e in emails {
        let (mb, name) = match targets.get(&e.account_id) {
            Some(t) => t.clone(),
            None => {
                let t = target(ctx, e.account_id, &a.to).await?;
                targets.insert(e.account_id, t.clone());
                t
            }
        };
        let change = Change::move_to(e.id, mb);
        list.push((e, change, format!("moved to {name:?}")));
    }
    apply(ctx, list, a.now).await
}

pub async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<u8, CliError> {
    let emails = load(ctx, &a.ids).await?;
    let list = emails
        .into_iter()
        .map(|e| {
            let id = e.id;
            (e, Change::delete(id), "deleted".to_owned())
        })
        .collect();
    apply(ctx, list, a.now).await
}

pub async fn undo(ctx: &Ctx, a: UndoArgs) -> Result<u8, CliError> {
    let acc = match &a.account {
        Some(n) => ctx.account(n).await?,
        None => {
            // The account whose change was queued last.
            let latest = queue::list(ctx.store().conn(), None)
                .await?
                .into_iter()
                .max_by_key(|c| (c.created_at, c.id));
            match latest {
                Some(c) => mailsync_store::accounts::get(ctx.store().conn(), c.account_id).await?,
                None => return Err(CliError::not_found("nothing to undo: no queued change")),
            }
        }
    };
    let object = format!("account {:?}", acc.name);
    let r = ctx
        .engine
        .outbox()
        .undo_last(acc.id)
        .await
        .map_err(|e| match e {
            mailsync_outbox::Error::NothingToUndo(_) => {
                CliError::not_found(format!("{object}: nothing to undo"))
            }
            other => CliError::engine(&object, &other.into()),
        })?;
    match r {
        Undone::Withdrawn(c) => {
            output::line(format!("change {c} withdrawn (local state restored)"))?
        }
        Undone::Compensated { change, .. } => output::line(format!(
            "change {change} had reached the server: the reverse change was queued"
        ))?,
    }
    Ok(0)
}
