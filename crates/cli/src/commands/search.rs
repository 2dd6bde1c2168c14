//! Conversations and search: `threads` (newest activity first) and `search` (local full-text
//! search, best match first, and with `--server` the servers' search, merged by the engine).

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
    let name_of = |id| names.get(&id).cloned().unwrap_or_default();
    let outcome = ctx
        .engine
        .search(account, &query, a.server, a.limit)
        .await
        .map_err(|e| CliError::engine("search", &e))?;
    for h in &outcome.hits {
        if a.json {
            output::json_line(&json!({
                "id": h.id.map(|i| i.0),
                "account": name_of(h.account),
                "subject": h.subject,
                "from": output::addrs(&h.from),
                "date": h.date.map(output::rfc3339),
                "mailboxes": h.mailboxes,
                "snippet": h.snippet,
                "score": h.score,
                "origin": h.origin.as_str(),
                "remote": h.remote_id,
            }))?;
        } else {
            let id = h.id.map_or_else(|| "-".to_owned(), |i| i.0.to_string());
            output::line(format!(
                "{:>6} {}  {}  {}  {:<6}  {}",
                id,
                h.date.map_or_else(
                    || " ".repeat(16),
                    |d| d.format("%Y-%m-%d %H:%M").to_string()
                ),
                output::cell(&output::addrs(&h.from), 24),
                output::cell(&h.mailboxes.join(","), 12),
                h.origin.as_str(),
                h.subject.as_deref().unwrap_or("(no subject)")
            ))?;
            if let Some(s) = &h.snippet {
                output::line(format!("       {}", output::cell(s, 100)))?;
            }
        }
    }
    // Every server that could not be searched, on stderr; the exit code of the first.
    let mut code = 0;
    for (id, e) in &outcome.failed {
        let err = CliError::engine(&format!("account {:?} (server search)", name_of(*id)), e);
        eprintln!("error: {}", err.message);
        if code == 0 {
            code = err.code;
        }
    }
    Ok(code)
}
