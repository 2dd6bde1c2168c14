//! `watch`: runs the accounts' workers like the daemon and prints every engine event (emails
//! created / updated / removed with ids, mailboxes, queued changes, cycles), as NDJSON with
//! `--json`, for apps in any language to follow the database.

use std::time::Duration;

use mailsync_engine::{EmailRef, EngineEvent, QueueFate};
use mailsync_store::leases;
use mailsync_store::queue::ChangeState;
use serde_json::{Value, json};

use super::Ctx;
use crate::args::WatchArgs;
use crate::error::{CliError, code};
use crate::output;

pub async fn run(ctx: &Ctx, a: WatchArgs) -> Result<u8, CliError> {
    let selected = ctx.accounts(&a.accounts).await?;
    if selected.is_empty() {
        return Err(CliError::not_found(
            "no accounts: add one with `mailsync account add`",
        ));
    }
    let (mut term, mut int) = super::sync::stop_signals()?;
    // Subscribe before the workers start: the first cycle's events are not missed.
    let mut events = ctx.engine.subscribe();
    let names: std::collections::HashMap<_, _> =
        selected.iter().map(|x| (x.id, x.name.clone())).collect();
    let now = mailsync_store::now();
    for acc in selected {
        // Events exist only in the process that syncs: while another process (a running
        // `mailsync sync` daemon) holds the account, this worker waits for it and nothing
        // shows. Say so instead of printing nothing.
        if let Some(l) = leases::get(ctx.store().conn(), acc.id).await?
            && let Some(owner) = l.holder_at(now)
            && owner != ctx.engine.owner()
        {
            eprintln!(
                "mailsync: account {:?} is synced by another mailsync process ({owner}); its \
                 events show here once that process stops (run `mailsync watch` in place of \
                 `mailsync sync`: it syncs the same way)",
                acc.name
            );
            emit(
                a.json,
                json!({"type": "lease_held", "account": acc.name, "owner": owner}),
            )?;
        }
        ctx.engine.start(acc);
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            ev = events.recv() => match ev {
                Some(ev) => {
                    if let Some(v) = event_json(&ev, &names) {
                        emit(a.json, v)?;
                    }
                }
                None => break,
            },
        }
    }
    if ctx.engine.shutdown(Duration::from_secs(10)).await {
        Ok(0)
    } else {
        eprintln!("error: workers did not stop within 10 s; unfinished batches were rolled back");
        Ok(code::FAILURE)
    }
}

fn emit(json_out: bool, v: Value) -> Result<(), CliError> {
    if json_out {
        output::json_line(&v)
    } else {
        output::line(human(&v))
    }
}

/// One line for a person: the type, then the other fields as `key=value`.
fn human(v: &Value) -> String {
    let mut s = v["type"].as_str().unwrap_or("event").to_owned();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k != "type" {
                s.push_str(&format!(" {k}={val}"));
            }
        }
    }
    s
}

fn refs(list: &[EmailRef]) -> Value {
    Value::Array(
        list.iter()
            .map(|e| json!({"id": e.id.0, "mailboxes": e.mailboxes.iter().map(|m| m.0).collect::<Vec<_>>()}))
            .collect(),
    )
}

fn state_name(s: ChangeState) -> &'static str {
    match s {
        ChangeState::Pending => "pending",
        ChangeState::InFlight => "in_flight",
        ChangeState::Submitted => "accepted",
        ChangeState::Lost => "lost",
    }
}

/// The JSON object of an event (`None` for events with nothing to tell an app).
pub fn event_json(
    ev: &EngineEvent,
    names: &std::collections::HashMap<mailsync_store::AccountId, String>,
) -> Option<Value> {
    let name = |id: &mailsync_store::AccountId| names.get(id).cloned().unwrap_or_default();
    Some(match ev {
        EngineEvent::CycleStarted { account } => {
            json!({"type": "cycle_started", "account": name(account)})
        }
        EngineEvent::Synced { account, counts } => json!({
            "type": "cycle_finished", "account": name(account),
            "mailboxes": counts.mailboxes, "added": counts.emails_added,
            "updated": counts.emails_updated, "removed": counts.emails_removed,
            "changes_sent": counts.changes_flushed,
        }),
        EngineEvent::Failed {
            account,
            message,
            disposition,
        } => json!({
            "type": "cycle_failed", "account": name(account), "error": message,
            "disposition": format!("{disposition:?}"),
        }),
        EngineEvent::EmailsCreated { account, emails } => {
            json!({"type": "emails_created", "account": name(account), "emails": refs(emails)})
        }
        EngineEvent::EmailsUpdated { account, emails } => {
            json!({"type": "emails_updated", "account": name(account), "emails": refs(emails)})
        }
        EngineEvent::EmailsRemoved { account, emails } => {
            json!({"type": "emails_removed", "account": name(account), "emails": refs(emails)})
        }
        EngineEvent::MailboxesChanged { account, mailboxes } => json!({
            "type": "mailboxes_changed", "account": name(account),
            "mailboxes": mailboxes.iter().map(|m| m.0).collect::<Vec<_>>(),
        }),
        EngineEvent::Change {
            account,
            change,
            fate,
        } => {
            let mut v = json!({"type": "change", "account": name(account), "change": change.0});
            let (f, extra) = match fate {
                QueueFate::Queued => ("queued", None),
                QueueFate::State(s) => (state_name(*s), None),
                QueueFate::Retrying { error } => ("retrying", Some(("error", error))),
                QueueFate::Done => ("done", None),
                QueueFate::Evicted { reason } => ("evicted", Some(("reason", reason))),
                _ => ("other", None),
            };
            v["fate"] = json!(f);
            if let Some((k, val)) = extra {
                v[k] = json!(val);
            }
            v
        }
        EngineEvent::Lagged { missed } => json!({"type": "lagged", "missed": missed}),
        // Followed by the change's own events.
        _ => return None,
    })
}
