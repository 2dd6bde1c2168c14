//! Search: the local full-text index composed with server-side search (for bodies not
//! cached and mail the database does not hold yet), one mechanism for both protocols: the
//! `ServerSearch` trait, implemented by the IMAP connection (`UID SEARCH` per mailbox) and
//! the JMAP client (`Email/query` + `SearchSnippet/get`), called through the account's
//! on-demand connection. Results are merged by email row (no duplicates) and marked by origin.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use mailsync_imap_sync as imap;
use mailsync_jmap_client::{self as jmap, EmailFilterCondition, Filter, keyword};
use mailsync_store::accounts::Account;
use mailsync_store::mailboxes::{self, Mailbox};
use mailsync_store::search::{Field, Query};
use mailsync_store::{AccountId, Address, EmailId, Store, StoreError, emails};

use crate::error::EngineError;

/// Where a result was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// In the local index only.
    Local,
    /// On the server only (the body is not cached, or the row is not in the database).
    Server,
    /// Both.
    Both,
}

impl Origin {
    /// `local`, `server` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Server => "server",
            Self::Both => "both",
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SearchHit {
    /// The email row; `None` for a server hit the database does not hold (yet).
    pub id: Option<EmailId>,
    /// Its account.
    pub account: AccountId,
    /// The server's identity of the message (the row's `remote_id` once stored).
    pub remote_id: String,
    /// Subject.
    pub subject: Option<String>,
    /// Senders.
    pub from: Vec<Address>,
    /// Sent date, else arrival.
    pub date: Option<DateTime<Utc>>,
    /// Mailbox names.
    pub mailboxes: Vec<String>,
    /// A piece of text around the match (local body, JMAP snippet) or the preview.
    pub snippet: Option<String>,
    /// Local relevance (0 for server-only hits).
    pub score: f64,
    /// Where it was found.
    pub origin: Origin,
}

/// What a search found, and the accounts whose server could not be searched.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SearchOutcome {
    /// Local hits first (best first), then server-only hits (newest first), at most the limit.
    pub hits: Vec<SearchHit>,
    /// Accounts whose server search failed, with the error (the other results stand).
    pub failed: Vec<(AccountId, EngineError)>,
}

/// A message the server matched.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerHit {
    /// Its row, where the database has one.
    pub email: Option<EmailId>,
    /// The server's identity, as the store's `remote_id` would be.
    pub remote_id: String,
    /// Headers given by the server (read only for hits without a row).
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub received_at: Option<DateTime<Utc>>,
    pub mailboxes: Vec<String>,
    /// The server's snippet (JMAP), plain text.
    pub snippet: Option<String>,
}

/// Server-side search, implemented by each protocol's connection; the engine composes.
#[async_trait::async_trait]
pub(crate) trait ServerSearch: Send {
    /// The account's messages matching `q` on the server, at most `limit` (newest first
    /// where the protocol can tell), each with its row where the store has one.
    async fn server_search(
        &mut self,
        store: &Store,
        account: &Account,
        q: &Query,
        limit: u64,
    ) -> Result<Vec<ServerHit>, EngineError>;
}

/// The account's mailboxes `in:` names (name or role, case-insensitive, as the local search
/// reads it); every selectable one without `in:`. A name no mailbox has is a bad query.
async fn mailboxes_for(
    store: &Store,
    account: &Account,
    q: &Query,
) -> Result<Vec<Mailbox>, EngineError> {
    let all: Vec<Mailbox> = mailboxes::list(store.conn(), account.id)
        .await?
        .into_iter()
        .filter(|m| m.selectable)
        .collect();
    let Some(want) = q.mailbox.as_deref().map(str::to_lowercase) else {
        return Ok(all);
    };
    let chosen: Vec<Mailbox> = all
        .into_iter()
        .filter(|m| m.name.to_lowercase() == want || m.role.is_some_and(|r| r.as_str() == want))
        .collect();
    if chosen.is_empty() {
        return Err(EngineError::Store(StoreError::BadQuery {
            reason: format!("in:{want}: account {} has no such mailbox", account.name),
        }));
    }
    Ok(chosen)
}

#[async_trait::async_trait]
impl ServerSearch for imap::Connection {
    async fn server_search(
        &mut self,
        store: &Store,
        account: &Account,
        q: &Query,
        limit: u64,
    ) -> Result<Vec<ServerHit>, EngineError> {
        let per_mailbox = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for mb in mailboxes_for(store, account, q).await? {
            let found = match imap::search_mailbox(self, &mb.remote_id, q, per_mailbox).await {
                Ok(f) => f,
                // Gone on the server since the last sync: nothing to find there.
                Err(e @ imap::Error::No { .. }) => {
                    tracing::info!(mailbox = %mb.name, error = %e, "Mailbox not searched.");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let known =
                emails::ids_by_uids(store.conn(), mb.id, found.uidvalidity, &found.uids).await?;
            let unknown: Vec<u32> = found
                .uids
                .iter()
                .copied()
                .filter(|u| !known.contains_key(u))
                .collect();
            let mut heads: HashMap<u32, imap::ServerMessage> = HashMap::new();
            if !unknown.is_empty() {
                for m in
                    imap::fetch_summaries(self, &mb.remote_id, found.uidvalidity, &unknown, false)
                        .await?
                {
                    heads.insert(m.uid, m);
                }
            }
            for uid in found.uids {
                let remote_id = emails::imap_remote_id(mb.id, found.uidvalidity, uid);
                if let Some(id) = known.get(&uid) {
                    out.push(ServerHit {
                        email: Some(*id),
                        remote_id,
                        subject: None,
                        from: Vec::new(),
                        received_at: None,
                        mailboxes: vec![mb.name.clone()],
                        snippet: None,
                    });
                } else if let Some(h) = heads.remove(&uid) {
                    out.push(ServerHit {
                        email: None,
                        remote_id,
                        subject: h.subject,
                        from: h.from,
                        received_at: h.received_at,
                        mailboxes: vec![mb.name.clone()],
                        snippet: None,
                    });
                }
                // Else expunged between SEARCH and FETCH: not a hit any more.
            }
        }
        Ok(out)
    }
}

/// The JMAP filter of `q`: every term and condition ANDed. `to:` covers To, Cc and Bcc as
/// the local index does; `in:` is the given mailboxes (any of them); `has:attachment` is
/// left to the caller.
pub(crate) fn jmap_filter(q: &Query, in_mailboxes: &[String]) -> Filter<EmailFilterCondition> {
    let cond = |f: &dyn Fn(&mut EmailFilterCondition)| {
        let mut c = EmailFilterCondition::default();
        f(&mut c);
        Filter::from(c)
    };
    let mut all: Vec<Filter<EmailFilterCondition>> = Vec::new();
    for t in &q.terms {
        let v = t.text.clone();
        all.push(match t.field {
            Field::From => cond(&|c| c.from = Some(v.clone())),
            Field::Subject => cond(&|c| c.subject = Some(v.clone())),
            Field::To => Filter::or([
                cond(&|c| c.to = Some(v.clone())),
                cond(&|c| c.cc = Some(v.clone())),
                cond(&|c| c.bcc = Some(v.clone())),
            ]),
            _ => cond(&|c| c.text = Some(v.clone())),
        });
    }
    let kw = |has: bool, k: &str| {
        let k = k.to_owned();
        if has {
            cond(&|c| c.has_keyword = Some(k.clone()))
        } else {
            cond(&|c| c.not_keyword = Some(k.clone()))
        }
    };
    if let Some(s) = q.seen {
        all.push(kw(s, keyword::SEEN));
    }
    if let Some(f) = q.flagged {
        all.push(kw(f, keyword::FLAGGED));
    }
    // No `hasAttachment` condition: Cyrus 3.6 matches nothing with it (while Email/get says
    // `hasAttachment: true`); the hits' property is checked instead (`server_search`).
    if let Some(t) = q.before {
        all.push(cond(&|c| c.before = Some(t)));
    }
    if let Some(t) = q.after {
        all.push(cond(&|c| c.after = Some(t)));
    }
    if !in_mailboxes.is_empty() {
        all.push(Filter::or(in_mailboxes.iter().map(|m| {
            let id = jmap::MailboxId::new(m.clone());
            cond(&|c| c.in_mailbox = Some(id.clone()))
        })));
    }
    Filter::and(all)
}

/// A JMAP snippet as plain text: `<mark>` and other tags dropped, HTML entities decoded.
pub(crate) fn plain_snippet(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait::async_trait]
impl ServerSearch for jmap::Client {
    async fn server_search(
        &mut self,
        store: &Store,
        account: &Account,
        q: &Query,
        limit: u64,
    ) -> Result<Vec<ServerHit>, EngineError> {
        let boxes = mailboxes::list(store.conn(), account.id).await?;
        let in_boxes: Vec<String> = if q.mailbox.is_some() {
            mailboxes_for(store, account, q)
                .await?
                .into_iter()
                .map(|m| m.remote_id)
                .collect()
        } else {
            Vec::new()
        };
        let names: HashMap<&str, &str> = boxes
            .iter()
            .map(|m| (m.remote_id.as_str(), m.name.as_str()))
            .collect();
        let jacc = self.mail_account_id()?;
        // has:attachment is checked on the hits, so ask for more of them.
        let asked = if q.has_attachment {
            limit.saturating_mul(5).clamp(limit, 1000)
        } else {
            limit
        };
        let found = self
            .search_emails(&jacc, jmap_filter(q, &in_boxes), asked)
            .await?;
        let with_attachment: HashSet<&str> = found
            .emails
            .iter()
            .filter(|e| e.has_attachment == Some(true))
            .filter_map(|e| e.id.as_ref().map(|i| i.as_str()))
            .collect();
        let remote: Vec<String> = found
            .ids
            .iter()
            .map(|i| i.as_str())
            .filter(|i| !q.has_attachment || with_attachment.contains(i))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(str::to_owned)
            .collect();
        let known = emails::ids_by_remote_ids(store.conn(), account.id, &remote).await?;
        let mut heads: HashMap<String, jmap::Email> = found
            .emails
            .into_iter()
            .filter_map(|e| Some((e.id.as_ref()?.as_str().to_owned(), e)))
            .collect();
        let snippets: HashMap<String, String> = found
            .snippets
            .into_iter()
            .filter_map(|s| {
                let text = s.preview.or(s.subject)?;
                Some((s.email_id?.as_str().to_owned(), plain_snippet(&text)))
            })
            .collect();
        let mut out = Vec::with_capacity(remote.len());
        for id in remote {
            let head = heads.remove(&id).unwrap_or_default();
            let mut mailboxes: Vec<String> = head
                .mailbox_ids
                .iter()
                .flatten()
                .filter(|(_, on)| **on)
                .filter_map(|(m, _)| names.get(m.as_str()).map(|n| (*n).to_owned()))
                .collect();
            mailboxes.sort();
            out.push(ServerHit {
                email: known.get(&id).copied(),
                subject: head.subject,
                from: head
                    .from
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| Address {
                        name: a.name,
                        email: a.email,
                    })
                    .collect(),
                received_at: head.received_at,
                mailboxes,
                snippet: snippets.get(&id).cloned().or(head.preview),
                remote_id: id,
            });
        }
        Ok(out)
    }
}

/// Merges local hits (best first) with server hits: one result per email row (a row found
/// by both is `Both`), server hits the database holds described from the database, the
/// others from what the server said; local first, then server-only newest first.
pub(crate) async fn merge(
    store: &Store,
    local: Vec<mailsync_store::search::Hit>,
    server: Vec<(AccountId, ServerHit)>,
    limit: u64,
) -> Result<Vec<SearchHit>, EngineError> {
    let on_server: HashSet<EmailId> = server.iter().filter_map(|(_, h)| h.email).collect();
    let mut seen: HashSet<EmailId> = HashSet::new();
    let mut out: Vec<SearchHit> = Vec::new();
    let server_snippets: HashMap<EmailId, String> = server
        .iter()
        .filter_map(|(_, h)| Some((h.email?, h.snippet.clone()?)))
        .collect();
    for h in local {
        let e = &h.summary.email;
        if !seen.insert(e.id) {
            continue;
        }
        out.push(SearchHit {
            id: Some(e.id),
            account: e.account_id,
            remote_id: e.remote_id.clone(),
            subject: e.subject.clone(),
            from: e.from.clone(),
            date: Some(e.sent_at.unwrap_or(e.received_at)),
            mailboxes: h.summary.mailboxes.clone(),
            snippet: h.snippet.or_else(|| server_snippets.get(&e.id).cloned()),
            score: h.score,
            origin: if on_server.contains(&e.id) {
                Origin::Both
            } else {
                Origin::Local
            },
        });
    }
    let rows: Vec<EmailId> = on_server
        .iter()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    let mut summaries = emails::summaries_by_ids(store.conn(), &rows).await?;
    let mut extra: Vec<SearchHit> = Vec::new();
    let mut remote_seen: HashSet<(AccountId, String)> = HashSet::new();
    for (account, h) in server {
        match h.email {
            Some(id) => {
                if !seen.insert(id) {
                    continue;
                }
                let Some(s) = summaries.remove(&id) else {
                    continue;
                };
                let e = s.email;
                let words: Vec<&str> = Vec::new();
                extra.push(SearchHit {
                    id: Some(id),
                    account,
                    remote_id: e.remote_id,
                    subject: e.subject,
                    from: e.from,
                    date: Some(e.sent_at.unwrap_or(e.received_at)),
                    mailboxes: s.mailboxes,
                    snippet: h.snippet.or_else(|| {
                        mailsync_store::search::snippet(None, e.preview.as_deref(), &words)
                    }),
                    score: 0.0,
                    origin: Origin::Server,
                });
            }
            None => {
                if !remote_seen.insert((account, h.remote_id.clone())) {
                    continue;
                }
                extra.push(SearchHit {
                    id: None,
                    account,
                    remote_id: h.remote_id,
                    subject: h.subject,
                    from: h.from,
                    date: h.received_at,
                    mailboxes: h.mailboxes,
                    snippet: h.snippet,
                    score: 0.0,
                    origin: Origin::Server,
                });
            }
        }
    }
    extra.sort_by_key(|h| std::cmp::Reverse(h.date));
    out.extend(extra);
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_store::search::parse;

    #[test]
    fn jmap_filter_translates_every_operator() -> Result<(), StoreError> {
        let q = parse(
            r#"budget from:ann to:bob subject:"big plan" is:unread is:flagged has:attachment before:2026-02-01 after:2026-01-01 in:inbox"#,
        )?;
        let f = serde_json::to_value(jmap_filter(&q, &["mb1".to_owned()])).unwrap_or_default();
        let want = serde_json::json!({
            "operator": "AND",
            "conditions": [
                {"text": "budget"},
                {"from": "ann"},
                {"operator": "OR", "conditions": [{"to": "bob"}, {"cc": "bob"}, {"bcc": "bob"}]},
                {"subject": "big plan"},
                {"notKeyword": "$seen"},
                {"hasKeyword": "$flagged"},
                {"before": "2026-02-01T00:00:00Z"},
                {"after": "2026-01-01T00:00:00Z"},
                {"operator": "OR", "conditions": [{"inMailbox": "mb1"}]},
            ]
        });
        assert_eq!(f, want);
        Ok(())
    }

    #[test]
    fn snippets_lose_their_markup() {
        assert_eq!(
            plain_snippet("the <mark>budget</mark> &amp; &lt;plan&gt;\n  here"),
            "the budget & <plan> here"
        );
    }
}
