//! Observation: `status` (per account), `failed` (list, retry, dismiss) and `log`.

use mailsync_store::{FailedId, sync_log};
use serde_json::json;

use super::Ctx;
use crate::args::{FailedArgs, FailedCmd, JsonArg, LogArgs};
use crate::error::CliError;
use crate::output;

pub async fn status(ctx: &Ctx, a: JsonArg) -> Result<u8, CliError> {
    let all = ctx
        .engine
        .status()
        .await
        .map_err(|e| CliError::engine("status", &e))?;
    for s in all {
        let last = s.last_sync.as_ref();
        if a.json {
            output::json_line(&json!({
                "account": s.account.name,
                "kind": s.account.kind.as_str(),
                "last_sync": last.and_then(|l| l.finished_at).map(output::rfc3339),
                "last_result": last.map(|l| l.status.as_str()),
                "last_error": last.and_then(|l| l.error.clone()),
                "pending": s.pending,
                "failed": s.failed,
                "held_by": s.held_by.as_ref().map(|h| h.0.clone()),
                "held_since": s.held_by.as_ref().and_then(|h| h.1).map(output::rfc3339),
            }))?;
        } else {
            let when = last
                .and_then(|l| l.finished_at)
                .map(output::rfc3339)
                .unwrap_or_else(|| "never synced".into());
            let result = match last {
                Some(l) => match &l.error {
                    Some(e) => format!("{}: {e}", l.status.as_str()),
                    None => l.status.as_str().to_owned(),
                },
                None => "-".into(),
            };
            let held = match &s.held_by {
                Some((owner, Some(since))) => {
                    format!("  held by {owner} since {}", output::rfc3339(*since))
                }
                Some((owner, None)) => format!("  held by {owner}"),
                None => String::new(),
            };
            output::line(format!(
                "{}  {}  {}  pending {}  failed {}{held}",
                output::cell(&s.account.name, 16),
                output::cell(&when, 20),
                result,
                s.pending,
                s.failed
            ))?;
        }
    }
    Ok(0)
}

pub async fn failed(ctx: &Ctx, a: FailedArgs) -> Result<u8, CliError> {
    let outbox = ctx.engine.outbox();
    let not_found =
        |id: i64| CliError::not_found(format!("failed change {id}: no such failed change"));
    match a.action {
        Some(FailedCmd::Retry { id }) => {
            let r = outbox
                .retry_failed(FailedId(id))
                .await
                .map_err(|e| match e {
                    mailsync_outbox::Error::FailedNotFound(_) => not_found(id),
                    other => CliError::engine(&format!("failed change {id}"), &other.into()),
                })?;
            match r.change_id() {
                Some(c) => output::line(format!("failed change {id} queued again as change {c}"))?,
                None => output::line(format!("failed change {id}: nothing left to do"))?,
            }
            Ok(0)
        }
        Some(FailedCmd::Dismiss { id }) => {
            outbox
                .dismiss_failed(FailedId(id))
                .await
                .map_err(|e| match e {
                    mailsync_outbox::Error::FailedNotFound(_) => not_found(id),
                    other => CliError::engine(&format!("failed change {id}"), &other.into()),
                })?;
            output::line(format!("failed change {id} dismissed"))?;
            Ok(0)
        }
        None => {
            for acc in ctx.accounts(&[]).await? {
                let items = outbox
                    .failed(acc.id)
                    .await
                    .map_err(|e| CliError::engine(&format!("account {:?}", acc.name), &e.into()))?;
                for f in items {
                    if a.json {
                        output::json_line(&json!({
                            "id": f.id.0,
                            "account": acc.name,
                            "email_id": f.email_id.map(|e| e.0),
                            "kind": f.kind,
                            "description": f.description,
                            "reason": f.reason,
                            "retry_count": f.retry_count,
                            "created_at": output::rfc3339(f.created_at),
                            "failed_at": output::rfc3339(f.failed_at),
                        }))?;
                    } else {
                        output::line(format!(
                            "{:>5}  {}  {}  {}: {}",
                            f.id.0,
                            output::cell(&acc.name, 12),
                            output::rfc3339(f.failed_at),
                            f.description,
                            f.reason
                        ))?;
                    }
                }
            }
            Ok(0)
        }
    }
}

pub async fn log(ctx: &Ctx, a: LogArgs) -> Result<u8, CliError> {
    let account = match &a.account {
        Some(n) => Some(ctx.account(n).await?),
        None => None,
    };
    let names: std::collections::HashMap<_, _> = ctx
        .accounts(&[])
        .await?
        .into_iter()
        .map(|x| (x.id, x.name))
        .collect();
    for e in sync_log::list(ctx.store().conn(), account.map(|x| x.id), a.limit).await? {
        let name = names.get(&e.account_id).cloned().unwrap_or_default();
        if a.json {
            output::json_line(&output::sync_log_json(&e, &name))?;
        } else {
            output::line(format!(
                "{}  {}  {}  +{} ~{} -{} sent {}{}",
                output::rfc3339(e.started_at),
                output::cell(&name, 12),
                output::cell(e.status.as_str(), 7),
                e.counts.emails_added,
                e.counts.emails_updated,
                e.counts.emails_removed,
                e.counts.changes_flushed,
                e.error.map(|x| format!("  {x}")).unwrap_or_default()
            ))?;
        }
    }
    Ok(0)
}
