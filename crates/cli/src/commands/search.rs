//! Conversations and search: `threads` (newest activity first) and `search` (local full-text
//! search, best match first).

use std::collections::HashMap;

use mailsync_store::{search as fts, threads};
use serde_json::json;

use super::Ctx;
use super::read::parse_role;
use crate::args::{SearchArgs, ThreadsArgs};
use crate::error::CliError;
use crate::output;

pub async fn threads(ctx: &Ctx, a: ThreadsArgs) -> Result<u8, CliError> {
    let names: Vec<String> = a.account.iter().cloned().collect();
    let accounts = ctx.accounts(&names).await?;
    let mut filter = threads::ThreadFilter {
        account: a
            .account
            .as_ref()
            .and_then(|_| accounts.first().map(|x| x.id)),
        limit: Some(a.limit),
        ..Default::default()
    };
    if let Some(r) = &a.role {
        filter.role = Some(parse_role(r)?);
    }
    if let Some(m) = ctx.mailbox_in(&accounts, a.mailbox.as_deref()).await? {
        filter.account = Some(m.account_id);
        filter.mailbox = Some(m.id);
    }
    let names: HashMap<_, _> = accounts.iter().map(|x| (x.id, x.name.clone())).collect();
    for t in threads::list(ctx.store().conn(), &filter).await? {
        let account = names.get(&t.account_id).cloned().unwrap_or_default();
        if a.json {
            output::json_line(&json!({
                "account": account,
                "thread": t.thread_id,
                "subject": t.subject,
                "participants": t.participants.iter().map(output::addr).collect::<Vec<_>>(),
                "count": t.count,
                "unread": t.unread,
                "last_date": output::rfc3339(t.last_at),
            }))?;
        } else {
            let who: Vec<String> = t
                .participants
                .iter()
                .map(|p| p.name.clone().unwrap_or_else(|| p.email.clone()))
                .collect();
            output::line(format!(
                "{}  {}  {:>4} {:>4}  {}  {}",
                output::cell(&t.thread_id, 18),
                t.last_at.format("%Y-%m-%d %H:%M"),
                t.count,
                t.unread,
                output::cell(&who.join(", "), 24),
                t.subject.as_deref().unwrap_or("(no subject)")
            ))?;
        }
    }
    Ok(0)
}

pub async fn search(ctx: &Ctx, a: SearchArgs) -> Result<u8, CliError> {
    let query = fts::parse(&a.query.join(" "))?;
    let names: Vec<String> = a.account.iter().cloned().collect();
    let accounts = ctx.accounts(&names).await?;
    let account = a
        .account
        .as_ref()
        .and_then(|_| accounts.first().map(|x| x.id));
    let names: HashMap<_, _> = accounts.iter().map(|x| (x.id, x.name.clone())).collect();
    for h in fts::search(ctx.store().conn(), account, &query, a.limit).await? {
        let e = &h.summary.email;
        let account = names.get(&e.account_id).cloned().unwrap_or_default();
        if a.json {
            output::json_line(&json!({
                "id": e.id.0,
                "account": account,
                "subject": e.subject,
                "from": output::addrs(&e.from),
                "date": output::rfc3339(e.sent_at.unwrap_or(e.received_at)),
                "mailboxes": h.summary.mailboxes,
                "snippet": h.snippet,
                "score": h.score,
                "origin": "local",
            }))?;
        } else {
            output::line(format!(
                "{:>6} {}  {}  {}  {}",
                e.id.0,
                e.sent_at.unwrap_or(e.received_at).format("%Y-%m-%d %H:%M"),
                output::cell(&output::addrs(&e.from), 24),
                output::cell(&h.summary.mailboxes.join(","), 12),
                e.subject.as_deref().unwrap_or("(no subject)")
            ))?;
            if let Some(s) = &h.snippet {
                output::line(format!("       {}", output::cell(s, 100)))?;
            }
        }
    }
    Ok(0)
}
