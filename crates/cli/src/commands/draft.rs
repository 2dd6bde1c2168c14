//! `draft save|list|delete`: drafts in the account's Drafts mailbox, saved through the outbox.

use mailsync_outbox::OutgoingMessage;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{Address, EmailId, Role};
use serde_json::json;

use super::Ctx;
use super::send::{address, attachments, read_text};
use crate::args::{DraftCmd, DraftListArgs, DraftSaveArgs};
use crate::error::CliError;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: DraftCmd) -> Result<u8, CliError> {
    match cmd {
        DraftCmd::Save(a) => save(ctx, a).await,
        DraftCmd::List(a) => list(ctx, a).await,
        DraftCmd::Delete { id } => delete(ctx, id).await,
    }
}

async fn save(ctx: &Ctx, a: DraftSaveArgs) -> Result<u8, CliError> {
    let acc = ctx.account(&a.account).await?;
    let object = format!("account {:?}", acc.name);
    let draft = a.draft.map(EmailId);
    // An update starts from the draft as it is: only the fields given change.
    let mut msg = match draft {
        Some(id) => ctx
            .engine
            .outbox()
            .draft_message(acc.id, id)
            .await
            .map_err(|e| CliError::engine(&format!("draft {id}"), &e.into()))?,
        None => OutgoingMessage::default(),
    };
    msg.from = Address {
        name: acc.display_name.clone(),
        email: acc.email.clone(),
    };
    if !a.to.is_empty() {
        msg.to = a.to.iter().map(|s| address(s)).collect();
    }
    if !a.cc.is_empty() {
        msg.cc = a.cc.iter().map(|s| address(s)).collect();
    }
    if !a.bcc.is_empty() {
        msg.bcc = a.bcc.iter().map(|s| address(s)).collect();
    }
    if let Some(s) = a.subject {
        msg.subject = s;
    }
    if let Some(b) = a.body {
        msg.text = b;
    } else if let Some(p) = &a.body_file {
        msg.text = read_text(p, "--body-file")?;
    }
    if !a.attach.is_empty() {
        msg.attachments = attachments(&a.attach)?;
    }
    let id = ctx
        .engine
        .save_draft(acc.id, draft, msg)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    if a.json {
        output::json_line(&json!({ "id": id.0 }))?;
    } else {
        output::line(id.0.to_string())?;
    }
    Ok(0)
}

async fn list(ctx: &Ctx, a: DraftListArgs) -> Result<u8, CliError> {
    let names: Vec<String> = a.account.into_iter().collect();
    for acc in ctx.accounts(&names).await? {
        let drafts = emails::list(
            ctx.store().conn(),
            &EmailFilter {
                account: Some(acc.id),
                role: Some(Role::Drafts),
                ..Default::default()
            },
        )
        .await?;
        for d in drafts {
            let e = &d.email;
            if a.json {
                output::json_line(&json!({
                    "id": e.id.0,
                    "account": acc.name,
                    "subject": e.subject,
                    "to": e.to.iter().map(output::addr).collect::<Vec<_>>(),
                    "cc": e.cc.iter().map(output::addr).collect::<Vec<_>>(),
                    "bcc": e.bcc.iter().map(output::addr).collect::<Vec<_>>(),
                    "saved_at": output::rfc3339(e.received_at),
                }))?;
            } else {
                output::line(format!(
                    "{:>6}  {}  {}  to {}",
                    e.id.0,
                    output::cell(&acc.name, 12),
                    output::cell(e.subject.as_deref().unwrap_or(""), 40),
                    output::addrs(&e.to)
                ))?;
            }
        }
    }
    Ok(0)
}

async fn delete(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let object = format!("draft {id}");
    let email = emails::get(ctx.store().conn(), EmailId(id))
        .await
        .map_err(|e| CliError::store(&object, &e))?;
    ctx.engine
        .discard_draft(email.account_id, email.id)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    output::line(format!("draft {id} deleted"))?;
    Ok(0)
}
