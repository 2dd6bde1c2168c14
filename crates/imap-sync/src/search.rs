//! Server-side search over IMAP: a parsed query (`store::search::Query`) as `UID SEARCH`
//! keys run in one mailbox, and the headers of hits the database does not hold.
//!
//! Translation: a word or phrase → `TEXT`, `from:` → `FROM`, `to:` → `OR OR TO CC BCC` (the
//! local `to:` covers all recipients), `subject:` → `SUBJECT`, `is:unread/read` →
//! `UNSEEN/SEEN`, `is:flagged/unflagged` → `FLAGGED/UNFLAGGED`, `before:` → `BEFORE`,
//! `after:` → `SINCE` (both on the internal date, day granularity). Strings go as typed
//! (servers match substrings of decoded text), with `CHARSET UTF-8` only when one is not
//! ASCII. `in:` chooses the mailbox (the caller's business). `has:attachment` has no SEARCH
//! key: the candidates' BODYSTRUCTUREs are read, newest first, until enough have one.
//!
//! ESEARCH (RFC 4731) is not used even where offered: imap-proto 0.17 cannot parse
//! `* ESEARCH` and async-imap then closes the connection for good (see the crate docs). A
//! plain `SEARCH` response is one line of UIDs, bounded like every line (4 MiB, about
//! 500,000 UIDs).

use chrono::{DateTime, Utc};
use mailsync_store::Address;
use mailsync_store::search::{Field, Query};

use crate::connection::Connection;
use crate::error::Error;
use crate::mime;
use crate::uidset;
use crate::wire::{Cmd, Untagged};

/// BODYSTRUCTUREs read per command while looking for attachments.
const STRUCTURE_CHUNK: usize = 200;

/// One piece of a SEARCH command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// An atom or keyword, sent as is.
    Atom(String),
    /// A string argument (quoted, or a literal when not printable ASCII).
    Str(String),
}

fn imap_date(t: DateTime<Utc>) -> String {
    t.format("%-d-%b-%Y").to_string()
}

/// The SEARCH keys of `q` (without `has:attachment`, which has none). `ALL` when nothing
/// else is asked.
fn keys(q: &Query) -> Vec<Key> {
    let mut k = Vec::new();
    let atom = |s: &str| Key::Atom(s.to_owned());
    for t in &q.terms {
        let s = Key::Str(t.text.clone());
        match t.field {
            Field::From => k.extend([atom("FROM"), s]),
            Field::Subject => k.extend([atom("SUBJECT"), s]),
            Field::To => k.extend([
                atom("OR"),
                atom("OR"),
                atom("TO"),
                s.clone(),
                atom("CC"),
                s.clone(),
                atom("BCC"),
                s,
            ]),
            // `Field` is non-exhaustive: anything else is searched as text.
            _ => k.extend([atom("TEXT"), s]),
        }
    }
    match q.seen {
        Some(true) => k.push(atom("SEEN")),
        Some(false) => k.push(atom("UNSEEN")),
        None => {}
    }
    match q.flagged {
        Some(true) => k.push(atom("FLAGGED")),
        Some(false) => k.push(atom("UNFLAGGED")),
        None => {}
    }
    if let Some(t) = q.before {
        k.extend([atom("BEFORE"), atom(&imap_date(t))]);
    }
    if let Some(t) = q.after {
        k.extend([atom("SINCE"), atom(&imap_date(t))]);
    }
    if k.is_empty() {
        k.push(atom("ALL"));
    }
    k
}

/// The `UID SEARCH` command for `keys`.
fn command(keys: &[Key]) -> Cmd {
    let utf8 = keys
        .iter()
        .any(|k| matches!(k, Key::Str(s) if !s.is_ascii()));
    let mut cmd = Cmd::new("UID SEARCH");
    if utf8 {
        cmd = cmd.raw("CHARSET UTF-8");
    }
    for k in keys {
        cmd = match k {
            Key::Atom(a) => cmd.raw(a),
            Key::Str(s) => cmd.astring(s),
        };
    }
    cmd
}

/// What a search found in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxHits {
    /// The mailbox's UIDVALIDITY when searched: the UIDs are valid under it only.
    pub uidvalidity: u32,
    /// Matching UIDs, newest (highest) first, at most the limit asked.
    pub uids: Vec<u32>,
    /// How many messages the server matched before the limit (with `has:attachment`: the
    /// candidates of the other keys).
    pub matched: usize,
}

/// Searches the mailbox named `mailbox` (its name as sent, i.e. the store's `remote_id`)
/// for `q`; keeps the newest `limit` matches.
pub async fn search_mailbox(
    conn: &mut Connection,
    mailbox: &str,
    q: &Query,
    limit: usize,
) -> Result<MailboxHits, Error> {
    let sel = conn.select(mailbox).await?;
    let (data, _) = conn.run(&command(&keys(q))).await?;
    let mut uids: Vec<u32> = data
        .into_iter()
        .flat_map(|u| match u {
            Untagged::Search(v) => v,
            _ => Vec::new(),
        })
        .collect();
    uids.sort_unstable_by(|a, b| b.cmp(a));
    uids.dedup();
    let matched = uids.len();
    if q.has_attachment {
        let mut kept = Vec::new();
        for chunk in uids.chunks(STRUCTURE_CHUNK) {
            let found = fetch_summaries(conn, mailbox, sel.uidvalidity, chunk, true).await?;
            let mut with: Vec<u32> = found
                .into_iter()
                .filter(|m| m.has_attachment == Some(true))
                .map(|m| m.uid)
                .collect();
            with.sort_unstable_by(|a, b| b.cmp(a));
            kept.extend(with);
            if kept.len() >= limit {
                break;
            }
        }
        uids = kept;
    }
    uids.truncate(limit);
    Ok(MailboxHits {
        uidvalidity: sel.uidvalidity,
        uids,
        matched,
    })
}

/// The headers of a message found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerMessage {
    /// Its UID.
    pub uid: u32,
    /// Decoded subject.
    pub subject: Option<String>,
    /// Decoded senders.
    pub from: Vec<Address>,
    /// The internal date (arrival).
    pub received_at: Option<DateTime<Utc>>,
    /// Whether its BODYSTRUCTURE names an attachment (when asked for).
    pub has_attachment: Option<bool>,
}

/// Subject, senders and arrival of `uids` in `mailbox` (and whether each has an attachment
/// when `structure`), read only while the mailbox's UIDVALIDITY is still `uidvalidity`
/// (otherwise [`Error::NotFound`]: the UIDs may name other messages). UIDs the server no
/// longer has are left out.
pub async fn fetch_summaries(
    conn: &mut Connection,
    mailbox: &str,
    uidvalidity: u32,
    uids: &[u32],
    structure: bool,
) -> Result<Vec<ServerMessage>, Error> {
    let sel = conn.select(mailbox).await?;
    if sel.uidvalidity != uidvalidity {
        return Err(Error::NotFound {
            what: "search hits (UIDVALIDITY changed; search again)",
            key: mailbox.to_owned(),
        });
    }
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let items = if structure {
        "(UID INTERNALDATE ENVELOPE BODYSTRUCTURE)"
    } else {
        "(UID INTERNALDATE ENVELOPE)"
    };
    let mut out = Vec::with_capacity(sorted.len());
    for (set, _) in uidset::chunked_sets(&sorted, 500) {
        let (data, _) = conn
            .run(&Cmd::new("UID FETCH").raw(&set).raw(items))
            .await?;
        for u in data {
            let Untagged::Fetch(f) = u else { continue };
            let Some(uid) = f.uid.filter(|u| sorted.binary_search(u).is_ok()) else {
                continue;
            };
            let env = f.envelope.unwrap_or_default();
            out.push(ServerMessage {
                uid,
                subject: env
                    .subject
                    .as_deref()
                    .map(mime::decode_words)
                    .filter(|s| !s.is_empty()),
                from: mime::envelope_addresses(&env.from),
                received_at: f.internal_date,
                has_attachment: f
                    .structure
                    .as_ref()
                    .map(|p| !mime::attachments(p).is_empty()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_store::search::parse;

    fn render(keys: &[Key]) -> String {
        keys.iter()
            .map(|k| match k {
                Key::Atom(a) => a.clone(),
                Key::Str(s) => format!("{s:?}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn translates_the_query_language() -> Result<(), mailsync_store::StoreError> {
        let q = parse(
            r#"budget "next quarter" from:alice@example.org to:bob subject:Plan is:unread is:flagged has:attachment in:Archive before:2026-02-01 after:2026-01-05"#,
        )?;
        assert_eq!(
            render(&keys(&q)),
            r#"TEXT "budget" TEXT "next quarter" FROM "alice@example.org" OR OR TO "bob" CC "bob" BCC "bob" SUBJECT "Plan" UNSEEN FLAGGED BEFORE 1-Feb-2026 SINCE 5-Jan-2026"#
        );
        assert_eq!(
            render(&keys(&parse("is:read is:unflagged")?)),
            "SEEN UNFLAGGED"
        );
        // Only a mailbox or an attachment asked: every message is a candidate.
        assert_eq!(render(&keys(&parse("in:INBOX has:attachment")?)), "ALL");
        Ok(())
    }

    #[test]
    fn utf8_only_when_needed() -> Result<(), mailsync_store::StoreError> {
        let ascii = format!("{:?}", command(&keys(&parse("hello")?)));
        assert_eq!(ascii, r#"UID SEARCH TEXT "hello""#);
        let utf8 = format!("{:?}", command(&keys(&parse("grüße")?)));
        assert_eq!(utf8, "UID SEARCH CHARSET UTF-8 TEXT {7 bytes}");
        Ok(())
    }
}
