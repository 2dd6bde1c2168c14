//! `send`: builds an outgoing message, queues it through the outbox and sends it right away
//! when the account can be reached.

use std::path::Path;

use mailsync_outbox::{OutgoingAttachment, OutgoingMessage};
use mailsync_store::Address;

use super::Ctx;
use crate::args::SendArgs;
use crate::error::CliError;
use crate::output;

pub(super) fn address(s: &str) -> Address {
    // "Name <a@b>" or a bare address.
    let s = s.trim();
    if let (Some(lt), true) = (s.rfind('<'), s.ends_with('>')) {
        let name = s[..lt].trim().trim_matches('"').trim();
        return Address {
            name: (!name.is_empty()).then(|| name.to_owned()),
            email: s[lt + 1..s.len() - 1].trim().to_owned(),
        };
    }
    Address {
        name: None,
        email: s.to_owned(),
    }
}

pub(super) fn read_text(p: &Path, what: &str) -> Result<String, CliError> {
    if p == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::usage(format!("{what} from stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(p).map_err(|e| CliError::usage(format!("{what} {}: {e}", p.display())))
}

/// A MIME type from the file extension (the common ones; otherwise octet-stream).
pub(super) fn mime_type(p: &Path) -> &'static str {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ics" => "text/calendar",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// The attachments of `paths`, read now (a queued message does not depend on the files).
pub(super) fn attachments(
    paths: &[std::path::PathBuf],
) -> Result<Vec<OutgoingAttachment>, CliError> {
    let mut attachments = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p)
            .map_err(|e| CliError::usage(format!("--attach {}: {e}", p.display())))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        attachments.push(OutgoingAttachment::from_bytes(name, mime_type(p), &bytes));
    }
    Ok(attachments)
}

pub async fn run(ctx: &Ctx, a: SendArgs) -> Result<u8, CliError> {
    if let Some(id) = a.draft {
        let email = mailsync_store::emails::get(ctx.store().conn(), mailsync_store::EmailId(id))
            .await
            .map_err(|e| CliError::store(&format!("draft {id}"), &e))?;
        let acc = match &a.account {
            Some(name) => ctx.account(name).await?,
            None => mailsync_store::accounts::get(ctx.store().conn(), email.account_id).await?,
        };
        let object = format!("draft {id}");
        let failed_before = failed_ids(ctx, &acc).await?;
        let queued = ctx
            .engine
            .send_draft(acc.id, email.id)
            .await
            .map_err(|e| CliError::engine(&object, &e))?;
        return deliver(ctx, &acc, queued, a.queue_only, failed_before).await;
    }
    let name = a.account.clone().unwrap_or_default();
    let acc = ctx.account(&name).await?;
    let object = format!("account {:?}", acc.name);
    let text = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) => read_text(p, "--body-file")?,
        (None, None) => return Err(CliError::usage("give --body or --body-file")),
    };
    let html = match &a.html_file {
        Some(p) => Some(read_text(p, "--html-file")?),
        None => None,
    };
    let attachments = attachments(&a.attach)?;
    let msg = OutgoingMessage {
        from: Address {
            name: acc.display_name.clone(),
            email: acc.email.clone(),
        },
        to: a.to.iter().map(|s| address(s)).collect(),
        cc: a.cc.iter().map(|s| address(s)).collect(),
        bcc: a.bcc.iter().map(|s| address(s)).collect(),
        subject: a.subject.clone().unwrap_or_default(),
        text,
        html,
        attachments,
        ..OutgoingMessage::default()
    };
    let failed_before = failed_ids(ctx, &acc).await?;
    let queued = ctx.engine.send(acc.id, msg).await.map_err(|e| match e {
        mailsync_engine::EngineError::Outbox(mailsync_outbox::Error::InvalidMessage(m)) => {
            CliError::usage(format!("{object}: cannot send: {m}"))
        }
        other => CliError::engine(&object, &other),
    })?;
    deliver(ctx, &acc, queued, a.queue_only, failed_before).await
}

/// The account's failed changes now (a send refused later is one not among them).
async fn failed_ids(
    ctx: &Ctx,
    acc: &mailsync_store::accounts::Account,
) -> Result<Vec<mailsync_store::FailedId>, CliError> {
    let object = format!("account {:?}", acc.name);
    Ok(ctx
        .engine
        .outbox()
        .failed(acc.id)
        .await
        .map_err(|e| CliError::engine(&object, &e.into()))?
        .into_iter()
        .map(|f| f.id)
        .collect())
}

/// Sends a queued message now (here, or by the running daemon) and reports how it went.
async fn deliver(
    ctx: &Ctx,
    acc: &mailsync_store::accounts::Account,
    queued: mailsync_outbox::Enqueued,
    queue_only: bool,
    failed_before: Vec<mailsync_store::FailedId>,
) -> Result<u8, CliError> {
    let object = format!("account {:?}", acc.name);
    let Some(change) = queued.change_id() else {
        return Err(CliError::failure(format!(
            "{object}: the message was not queued"
        )));
    };
    if queue_only {
        output::line(format!(
            "queued as change {change}; it goes out at the next sync"
        ))?;
        return Ok(0);
    }
    // Here, or by the running daemon (then waited for until the send left the queue).
    let outbox = ctx.engine.outbox();
    let sent = || async {
        let pending = outbox
            .pending(acc.id)
            .await
            .map_err(|e| CliError::engine(&object, &e.into()))?;
        Ok(!pending.iter().any(|p| p.id == change))
    };
    let cycle = super::sync::flush_now(ctx, acc, std::time::Duration::from_secs(15), sent).await;
    match cycle {
        Ok(_) => {
            let pending = ctx
                .engine
                .outbox()
                .pending(acc.id)
                .await
                .map_err(|e| CliError::engine(&object, &e.into()))?;
            if let Some(p) = pending.iter().find(|p| p.id == change) {
                let why = p.last_error.as_deref().unwrap_or("waiting for its turn");
                eprintln!(
                    "error: {object}: message queued as change {change} but not sent yet: {why}"
                );
                return Ok(crate::error::code::FAILURE);
            }
            let failed = ctx
                .engine
                .outbox()
                .failed(acc.id)
                .await
                .map_err(|e| CliError::engine(&object, &e.into()))?;
            if let Some(f) = failed
                .iter()
                .find(|f| f.kind == "send" && !failed_before.contains(&f.id))
            {
                eprintln!(
                    "error: {object}: the server refused the message (failed change {}): {}",
                    f.id, f.reason
                );
                return Ok(crate::error::code::FAILURE);
            }
            output::line(format!("sent (change {change})"))?;
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "error: {} (the message stays queued as change {change} and goes out at the next sync)",
                e.message
            );
            Ok(e.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("a@b.c").email, "a@b.c");
        let a = address("\"Bob B\" <bob@x.org>");
        assert_eq!(
            (a.name.as_deref(), a.email.as_str()),
            (Some("Bob B"), "bob@x.org")
        );
        assert_eq!(mime_type(Path::new("r.PDF")), "application/pdf");
    }
}
