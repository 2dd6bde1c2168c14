//! `mailbox create|rename|delete|subscribe|unsubscribe`: mailbox management on the server.

use std::str::FromStr;

use mailsync_engine::MailboxAction;
use mailsync_store::accounts::Account;
use mailsync_store::{MailboxId, Role, mailboxes};
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
    let m = ctx
        .engine
        .manage_mailbox(acc.id, action)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    match (&m, t.json) {
        (Some(m), true) => output::json_line(&json!({
            "id": m.id.0,
            "name": m.name,
            "role": m.role.map(|r| r.as_str()),
        }))?,
        (None, true) => output::json_line(&json!({ "id": null }))?,
        (Some(m), false) => output::line(format!("{}\t{}", m.id.0, m.name))?,
        (None, false) => {}
    }
    Ok(0)
}
