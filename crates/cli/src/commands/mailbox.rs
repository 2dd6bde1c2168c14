//! `mailbox create|rename|delete|subscribe|unsubscribe`: mailbox management through the
//! outbox (applied locally, queued, sent now when the server is reachable).

use std::str::FromStr;
use std::time::Duration;

use mailsync_engine::MailboxAction;
use mailsync_store::accounts::Account;
use mailsync_store::{MailboxId, Role, mailboxes, queue};
use serde_json::json;

use super::Ctx;
use crate::args::{MailboxCmd, MailboxTarget};
use crate::error::CliError;
use crate::output;

async fn find(ctx: &Ctx, acc: &Account, name: &str) -> Result<MailboxId, CliError> {
    mailboxes::find_by_name(ctx.store().conn(), acc.id, name)
        .await?
        .map(|m| m.id)
        .ok_or_else(|| {
            CliError::not_found(format!(
                "account {:?}: no mailbox {name:?} (see `mailsync mailboxes`)",
                acc.name
            ))
        })
}

async fn parent(ctx: &Ctx, acc: &Account, p: Option<&str>) -> Result<Option<MailboxId>, CliError> {
    match p {
        Some(p) => Ok(Some(find(ctx, acc, p).await?)),
        None => Ok(None),
    }
}

pub async fn run(ctx: &Ctx, cmd: MailboxCmd) -> Result<u8, CliError> {
    let (t, action): (&MailboxTarget, _) = match &cmd {
        MailboxCmd::Create {
            target,
            parent: p,
            role,
        } => {
            let acc = ctx.account(&target.account).await?;
            let role = role
                .as_deref()
                .map(|r| {
                    Role::from_str(&r.to_ascii_lowercase())
                        .map_err(|_| CliError::usage(format!("unknown role {r:?}")))
                })
                .transpose()?;
            let parent = parent(ctx, &acc, p.as_deref()).await?;
            (
                target,
                MailboxAction::Create {
                    name: target.name.clone(),
                    parent,
                    role,
                },
            )
        }
        MailboxCmd::Rename {
            target,
            new_name,
            parent: p,
        } => {
            let acc = ctx.account(&target.account).await?;
            (
                target,
                MailboxAction::Rename {
                    mailbox: find(ctx, &acc, &target.name).await?,
                    name: new_name.clone(),
                    parent: parent(ctx, &acc, p.as_deref()).await?,
                },
            )
        }
        MailboxCmd::Delete { target } => {
            let acc = ctx.account(&target.account).await?;
            let mailbox = find(ctx, &acc, &target.name).await?;
            (target, MailboxAction::Delete { mailbox })
        }
        MailboxCmd::Subscribe { target } | MailboxCmd::Unsubscribe { target } => {
            let acc = ctx.account(&target.account).await?;
            let mailbox = find(ctx, &acc, &target.name).await?;
            let subscribed = matches!(cmd, MailboxCmd::Subscribe { .. });
            (
                target,
                MailboxAction::Subscribe {
                    mailbox,
                    subscribed,
                },
            )
        }
    };
    let acc = ctx.account(&t.account).await?;
    let object = format!("mailbox {:?} of account {:?}", t.name, acc.name);
    let (id, queued) = ctx
        .engine
        .queue_mailbox(acc.id, action)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    // Like `flag --now`: the change is queued (it survives anything from here on) and sent
    // now, here or by the daemon holding the account; the server's answer decides.
    let row = match queued.change_id() {
        Some(c) => ctx
            .engine
            .outbox()
            .pending(acc.id)
            .await
            .map_err(|e| CliError::engine(&object, &e.into()))?
            .into_iter()
            .find(|p| p.id == c),
        None => None,
    };
    let mut state = "done";
    if let Some(r) = &row {
        let c = ctx.store().conn();
        let gone = || async {
            Ok(queue::list(c, Some(acc.id))
                .await?
                .iter()
                .all(|p| p.id != r.id))
        };
        match super::sync::flush_now(ctx, &acc, Duration::from_secs(10), gone).await {
            Ok(_) => {}
            Err(e) if e.code == crate::error::code::UNREACHABLE => {
                eprintln!(
                    "{object}: {}; the change is queued and goes to the server at the next sync",
                    e.message
                );
                state = "queued";
            }
            Err(e) => {
                eprintln!("error: {} (the change stays queued)", e.message);
                state = "queued";
            }
        }
        if let Some(reason) = ctx
            .engine
            .eviction_of(acc.id, r)
            .await
            .map_err(|e| CliError::engine(&object, &e))?
        {
            return Err(CliError::failure(format!(
                "{object}: refused by the server: {reason} (see `mailsync failed`)"
            )));
        }
        if state == "done" && !gone().await? {
            state = "queued";
        }
    }
    let m = match id {
        Some(id) => match mailboxes::get(ctx.store().conn(), id).await {
            Ok(m) => Some(m),
            Err(mailsync_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(CliError::store(&object, &e)),
        },
        None => None,
    };
    match (&m, t.json) {
        (Some(m), true) => output::json_line(&json!({
            "id": m.id.0,
            "name": m.name,
            "role": m.role.map(|r| r.as_str()),
            "state": state,
        }))?,
        (None, true) => output::json_line(&json!({ "id": null, "state": state }))?,
        (Some(m), false) => output::line(format!("{}\t{}\t{state}", m.id.0, m.name))?,
        (None, false) => output::line(state)?,
    }
    Ok(0)
}
