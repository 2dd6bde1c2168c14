//! Reading the local database: `mailboxes`, `emails` and `show` (bodies fetched on demand).

use std::collections::HashMap;

use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{EmailId, Role, mailboxes};
use serde_json::json;

use super::Ctx;
use crate::args::{EmailsArgs, MailboxesArgs, ShowArgs};
use crate::error::CliError;
use crate::output;

pub fn parse_role(s: &str) -> Result<Role, CliError> {
    s.to_ascii_lowercase().parse().map_err(|_| {
        CliError::usage(format!(
            "invalid role {s:?}: expected inbox, sent, drafts, trash, junk or archive"
        ))
    })
}

pub async fn mailboxes(ctx: &Ctx, a: MailboxesArgs) -> Result<u8, CliError> {
    let names: Vec<String> = a.account.into_iter().collect();
    for acc in ctx.accounts(&names).await? {
        for m in mailboxes::list(ctx.store().conn(), acc.id).await? {
            if a.json {
                output::json_line(&json!({
                    "account": acc.name,
                    "id": m.id.0,
                    "name": m.name,
                    "role": m.role.map(|r| r.as_str()),
                    "total": m.status.total,
                    "unread": m.status.unread,
                }))?;
            } else {
                output::line(format!(
                    "{}  {}  {}  {:>7}  {:>7}",
                    output::cell(&acc.name, 12),
                    output::cell(&m.name, 30),
                    output::cell(m.role.map(|r| r.as_str()).unwrap_or("-"), 8),
                    m.status.total,
                    m.status.unread
                ))?;
            }
        }
    }
    Ok(0)
}

pub async fn emails(ctx: &Ctx, a: EmailsArgs) -> Result<u8, CliError> {
    let c = ctx.store().conn();
    let names: Vec<String> = a.account.iter().cloned().collect();
    let accounts = ctx.accounts(&names).await?;
    let mut filter = EmailFilter {
        account: a
            .account
            .as_ref()
            .and_then(|_| accounts.first().map(|x| x.id)),
        limit: Some(a.limit),
        thread: a.thread.clone(),
        ..EmailFilter::default()
    };
    if let Some(r) = &a.role {
        filter.role = Some(parse_role(r)?);
    }
    if let Some(m) = ctx.mailbox_in(&accounts, a.mailbox.as_deref()).await? {
        filter.account = Some(m.account_id);
        filter.mailbox = Some(m.id);
    }
    let names: HashMap<_, _> = accounts.iter().map(|x| (x.id, x.name.clone())).collect();
    for s in emails::list(c, &filter).await? {
        let account = names.get(&s.email.account_id).cloned().unwrap_or_default();
        if a.json {
            output::json_line(&output::email_json(&s, &account))?;
        } else {
            let e = &s.email;
            let flags = format!(
                "{}{}{}",
                if e.flags.seen { ' ' } else { 'N' },
                if e.flags.flagged { 'F' } else { ' ' },
                if e.has_attachment { '@' } else { ' ' }
            );
            output::line(format!(
                "{:>6} {} {}  {}  {}",
                e.id.0,
                flags,
                e.sent_at.unwrap_or(e.received_at).format("%Y-%m-%d %H:%M"),
                output::cell(&output::addrs(&e.from), 24),
                e.subject.as_deref().unwrap_or("(no subject)")
            ))?;
        }
    }
    Ok(0)
}

pub async fn show(ctx: &Ctx, a: ShowArgs) -> Result<u8, CliError> {
    let c = ctx.store().conn();
    let id = EmailId(a.id);
    let object = format!("email {}", a.id);
    let email = emails::get(c, id).await.map_err(|e| match e {
        mailsync_store::StoreError::NotFound { .. } => {
            CliError::not_found(format!("{object}: no such email"))
        }
        other => CliError::store(&object, &other),
    })?;
    let body = ctx
        .engine
        .body(id)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    if a.json {
        let account = ctx.account_name(email.account_id).await?;
        let atts = emails::attachments(c, id).await?;
        let mboxes: Vec<String> = {
            let mut v = Vec::new();
            for m in emails::memberships(c, id).await? {
                v.push(mailboxes::get(c, m.mailbox_id).await?.name);
            }
            v
        };
        let summary = emails::EmailSummary {
            email: email.clone(),
            mailboxes: mboxes,
        };
        let mut v = output::email_json(&summary, &account);
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "headers".into(),
                json!({
                    "message_id": email.message_id.as_deref().map(output::strip_brackets),
                    "in_reply_to": email.in_reply_to,
                    "references": email.references,
                    "subject": email.subject,
                    "from": email.from.iter().map(output::addr).collect::<Vec<_>>(),
                    "to": email.to.iter().map(output::addr).collect::<Vec<_>>(),
                    "cc": email.cc.iter().map(output::addr).collect::<Vec<_>>(),
                    "bcc": email.bcc.iter().map(output::addr).collect::<Vec<_>>(),
                    "reply_to": email.reply_to.iter().map(output::addr).collect::<Vec<_>>(),
                    "date": email.sent_at.map(output::rfc3339),
                }),
            );
            o.insert("text".into(), json!(body.text));
            o.insert("html".into(), json!(body.html));
            o.insert(
                "attachments".into(),
                atts.iter().map(output::attachment_json).collect(),
            );
        }
        output::line(serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()))?;
        return Ok(0);
    }
    let content = if a.html {
        body.html.or(body.text)
    } else {
        body.text.or(body.html)
    };
    output::line(format!("From: {}", output::addrs(&email.from)))?;
    output::line(format!("To: {}", output::addrs(&email.to)))?;
    if !email.cc.is_empty() {
        output::line(format!("Cc: {}", output::addrs(&email.cc)))?;
    }
    output::line(format!(
        "Date: {}",
        output::rfc3339(email.sent_at.unwrap_or(email.received_at))
    ))?;
    output::line(format!(
        "Subject: {}",
        email.subject.as_deref().unwrap_or("")
    ))?;
    output::line("")?;
    output::line(content.unwrap_or_default())?;
    Ok(0)
}
