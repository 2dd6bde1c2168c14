//! `attachment list|save`: an email's attachments from the database, and one of them saved to
//! a file through the engine (downloaded on first use, streamed, cached).

use std::path::{Path, PathBuf};

use mailsync_store::emails::{self, Attachment};
use mailsync_store::{EmailId, StoreError};
use serde_json::json;

use super::Ctx;
use crate::args::AttachmentCmd;
use crate::error::CliError;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: AttachmentCmd) -> Result<u8, CliError> {
    match cmd {
        AttachmentCmd::List { id, json } => list(ctx, id, json).await,
        AttachmentCmd::Save { id, part, output } => save(ctx, id, &part, output).await,
    }
}

/// The part a user names an attachment by: its part id (IMAP section, JMAP partId), else its
/// JMAP blob id.
fn part_of(a: &Attachment) -> &str {
    a.part_id
        .as_deref()
        .or(a.blob_id.as_deref())
        .unwrap_or_default()
}

/// The email's attachments; exit code 3 when the email does not exist.
async fn attachments_of(ctx: &Ctx, id: i64) -> Result<Vec<Attachment>, CliError> {
    let c = ctx.store().conn();
    let object = format!("email {id}");
    emails::get(c, EmailId(id)).await.map_err(|e| match e {
        StoreError::NotFound { .. } => CliError::not_found(format!("{object}: no such email")),
        other => CliError::store(&object, &other),
    })?;
    Ok(emails::attachments(c, EmailId(id)).await?)
}

async fn list(ctx: &Ctx, id: i64, json: bool) -> Result<u8, CliError> {
    for a in attachments_of(ctx, id).await? {
        if json {
            let mut v = output::attachment_json(&a);
            if let Some(o) = v.as_object_mut() {
                o.insert("part".into(), json!(part_of(&a)));
                o.insert("blob_id".into(), json!(a.blob_id));
            }
            output::json_line(&v)?;
        } else {
            output::line(format!(
                "{}  {}  {}  {}",
                output::cell(part_of(&a), 8),
                output::cell(a.file_name.as_deref().unwrap_or("-"), 30),
                output::cell(&a.mime_type, 28),
                a.size
            ))?;
        }
    }
    Ok(0)
}

/// A file name from a message, safe to create in the current directory: its last path
/// segment, without leading dots.
fn local_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim_start_matches('.')
        .trim()
        .to_owned();
    (!clean.is_empty()).then_some(clean)
}

async fn save(ctx: &Ctx, id: i64, part: &str, output: Option<PathBuf>) -> Result<u8, CliError> {
    let object = format!("email {id} part {part}");
    let all = attachments_of(ctx, id).await?;
    let Some(a) = all
        .iter()
        .find(|a| a.part_id.as_deref() == Some(part) || a.blob_id.as_deref() == Some(part))
    else {
        let parts: Vec<&str> = all.iter().map(part_of).collect();
        return Err(CliError::not_found(format!(
            "{object}: no such attachment (parts: {})",
            if parts.is_empty() {
                "none".to_owned()
            } else {
                parts.join(", ")
            }
        )));
    };
    let dest = match output {
        Some(p) => p,
        None => PathBuf::from(
            a.file_name
                .as_deref()
                .and_then(local_name)
                .unwrap_or_else(|| format!("part-{}", part.replace(['/', '\\'], "_"))),
        ),
    };
    let saved = ctx
        .engine
        .save_attachment(EmailId(id), part, Path::new(&dest))
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    output::line(format!(
        "saved {} ({} bytes{})",
        dest.display(),
        saved.bytes,
        if saved.cached { ", cached" } else { "" }
    ))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_stay_in_the_directory() {
        assert_eq!(local_name("a.pdf").as_deref(), Some("a.pdf"));
        assert_eq!(local_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(local_name("C:\\x\\..\\y.txt").as_deref(), Some("y.txt"));
        assert_eq!(local_name(".."), None);
        assert_eq!(local_name(".hidden").as_deref(), Some("hidden"));
    }
}
