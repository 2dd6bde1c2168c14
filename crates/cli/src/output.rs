//! Output: lines on stdout (a closed pipe ends the command quietly) and the JSON shapes.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use mailsync_store::accounts::{Account, Endpoint};
use mailsync_store::emails::{Attachment, EmailSummary};
use mailsync_store::sync_log::SyncLogEntry;
use mailsync_store::{Address, SecretRef};
use serde_json::{Value, json};

use crate::error::CliError;

/// Prints one line on stdout. A closed stdout (`mailsync emails | head`) ends the command
/// quietly with exit code 0.
pub fn line(s: impl AsRef<str>) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", s.as_ref()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::new(0, "")),
        Err(e) => Err(e.into()),
    }
}

/// Prints one JSON object as a line.
pub fn json_line(v: &Value) -> Result<(), CliError> {
    line(v.to_string())
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn addr(a: &Address) -> String {
    a.to_string()
}

pub fn addrs(list: &[Address]) -> String {
    list.iter().map(addr).collect::<Vec<_>>().join(", ")
}

fn endpoint(e: &Option<Endpoint>) -> Value {
    match e {
        Some(e) => json!({"host": e.host, "port": e.port, "security": e.security.as_str()}),
        None => Value::Null,
    }
}

fn secret_source(r: &SecretRef) -> Value {
    match r {
        SecretRef::Env(v) => json!({"from": "env", "source": v}),
        SecretRef::Command(c) => json!({"from": "cmd", "source": c}),
    }
}

pub fn account_json(a: &Account) -> Value {
    // OAuth 2: the secret reference is the refresh token's.
    let oauth = match &a.oauth {
        Some(o) => json!({
            "token_url": o.token_url,
            "client_id": o.client_id,
            "client_secret": o.client_secret_ref.as_ref().map(secret_source),
            "scopes": o.scopes,
            "refresh_token": secret_source(&a.secret_ref),
            "refresh_store_cmd": o.refresh_store_cmd,
        }),
        None => Value::Null,
    };
    let password = match &a.oauth {
        Some(_) => Value::Null,
        None => secret_source(&a.secret_ref),
    };
    json!({
        "name": a.name,
        "kind": a.kind.as_str(),
        "email": a.email,
        "display_name": a.display_name,
        "username": a.username,
        "password": password,
        "oauth2": oauth,
        "imap": endpoint(&a.imap),
        "smtp": endpoint(&a.smtp),
        "jmap_session_url": a.jmap_session_url,
        "ca_file": a.ca_file,
        "allow_plaintext": a.allow_plaintext,
        "bodies": body_policy(a.body_policy),
        "created_at": rfc3339(a.created_at),
    })
}

/// The CLI spelling of a body policy (`none`, `all`, `<N>kb`).
pub fn body_policy(p: mailsync_store::BodyPolicy) -> String {
    match p {
        mailsync_store::BodyPolicy::MaxBytes(n) if n % 1024 == 0 => format!("{}kb", n / 1024),
        other => other.to_string(),
    }
}

pub fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

pub fn email_json(s: &EmailSummary, account: &str) -> Value {
    let e = &s.email;
    json!({
        "id": e.id.0,
        "account": account,
        "mailboxes": s.mailboxes,
        "message_id": e.message_id.as_deref().map(strip_brackets),
        "subject": e.subject,
        "from": if e.from.is_empty() { Value::Null } else { Value::String(addrs(&e.from)) },
        "to": e.to.iter().map(addr).collect::<Vec<_>>(),
        "date": rfc3339(e.sent_at.unwrap_or(e.received_at)),
        "received_at": rfc3339(e.received_at),
        "seen": e.flags.seen,
        "flagged": e.flags.flagged,
        "answered": e.flags.answered,
        "size": e.size,
        "has_attachments": e.has_attachment,
        "preview": e.preview,
    })
}

pub fn attachment_json(a: &Attachment) -> Value {
    json!({
        "file_name": a.file_name,
        "mime_type": a.mime_type,
        "size": a.size,
        "disposition": a.disposition,
        "content_id": a.content_id,
        "part_id": a.part_id,
    })
}

pub fn sync_log_json(e: &SyncLogEntry, account: &str) -> Value {
    json!({
        "id": e.id.0,
        "account": account,
        "started_at": rfc3339(e.started_at),
        "finished_at": e.finished_at.map(rfc3339),
        "status": e.status.as_str(),
        "error": e.error,
        "mailboxes": e.counts.mailboxes,
        "emails_added": e.counts.emails_added,
        "emails_updated": e.counts.emails_updated,
        "emails_removed": e.counts.emails_removed,
        "changes_flushed": e.counts.changes_flushed,
    })
}

/// Pads or cuts `s` to `width` characters.
pub fn cell(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        format!("{s:<width$}")
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
