//! Mailbox list sync: LIST (+ SPECIAL-USE, LIST-STATUS), names decoded from modified UTF-7,
//! roles from special-use attributes or well-known names, STATUS counters, and removal of
//! mailboxes that are gone from the server.

use std::collections::HashMap;

use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::mailboxes::{self, Mailbox, MailboxStatus, MailboxUpsert};
use mailsync_store::{AccountId, Role, Store};

use crate::connection::Connection;
use crate::error::Error;
use crate::plan::ServerState;
use crate::utf7;
use crate::wire::{ListEntry, StatusItems};

/// The role given by special-use attributes (RFC 6154), compared case-insensitively
/// (Cyrus sends `\sent`).
pub fn role_from_attributes<S: AsRef<str>>(attributes: &[S]) -> Option<Role> {
    attributes
        .iter()
        .find_map(|a| match a.as_ref().to_ascii_lowercase().as_str() {
            "\\sent" => Some(Role::Sent),
            "\\drafts" => Some(Role::Drafts),
            "\\trash" => Some(Role::Trash),
            "\\junk" => Some(Role::Junk),
            "\\archive" => Some(Role::Archive),
            _ => None,
        })
}

/// The role suggested by a well-known name (last hierarchy level, case-insensitive).
pub fn role_from_name(leaf: &str) -> Option<Role> {
    match leaf.trim().to_lowercase().as_str() {
        "inbox" => Some(Role::Inbox),
        "sent" | "sent items" | "sent messages" | "sent mail" => Some(Role::Sent),
        "trash" | "deleted items" | "deleted messages" | "bin" => Some(Role::Trash),
        "junk" | "spam" | "junk e-mail" | "junk email" => Some(Role::Junk),
        "drafts" => Some(Role::Drafts),
        "archive" | "archives" => Some(Role::Archive),
        _ => None,
    }
}

/// Assigns roles to listed mailboxes `(wire name, delimiter, attributes)`: INBOX is the inbox;
/// special-use attributes win; otherwise the first mailbox at the top level (or directly under
/// INBOX) with a well-known name gets a role nobody else has. `None` leaves a user-set role.
pub fn assign_roles(entries: &[(String, Option<String>, Vec<String>)]) -> Vec<Option<Role>> {
    let mut roles: Vec<Option<Role>> = entries
        .iter()
        .map(|(name, _, attrs)| {
            if name.eq_ignore_ascii_case("INBOX") {
                Some(Role::Inbox)
            } else {
                role_from_attributes(attrs)
            }
        })
        .collect();
    let mut taken: Vec<Role> = roles.iter().flatten().copied().collect();
    for (i, (name, delim, _)) in entries.iter().enumerate() {
        if roles.get(i).is_some_and(Option::is_some) {
            continue;
        }
        let decoded = utf7::decode(name).unwrap_or_else(|| name.clone());
        let parts: Vec<&str> = match delim.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => decoded.split(d).collect(),
            None => vec![decoded.as_str()],
        };
        let eligible = match parts.as_slice() {
            [_] => true,
            [first, _] => first.eq_ignore_ascii_case("INBOX"),
            _ => false,
        };
        if !eligible {
            continue;
        }
        if let Some(role) = parts.last().and_then(|l| role_from_name(l))
            && role != Role::Inbox
            && !taken.contains(&role)
        {
            taken.push(role);
            if let Some(slot) = roles.get_mut(i) {
                *slot = Some(role);
            }
        }
    }
    roles
}

fn is_selectable(attrs: &[String]) -> bool {
    !attrs
        .iter()
        .any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"))
}

pub(crate) fn to_state(s: &StatusItems) -> ServerState {
    ServerState {
        uidvalidity: s.uidvalidity,
        uidnext: s.uidnext,
        highestmodseq: s.highestmodseq,
        messages: s.messages,
    }
}

fn to_status(s: &StatusItems) -> MailboxStatus {
    MailboxStatus {
        total: i64::from(s.messages.unwrap_or(0)),
        unread: i64::from(s.unseen.unwrap_or(0)),
        uidvalidity: s.uidvalidity.map(i64::from),
        uidnext: s.uidnext.map(i64::from),
        highestmodseq: s.highestmodseq.and_then(|m| i64::try_from(m).ok()),
    }
}

/// What [`sync_mailboxes`] found.
#[derive(Debug, Clone, Default)]
pub struct MailboxesReport {
    /// Every mailbox of the account as stored now (selectable or not), in server order.
    pub mailboxes: Vec<Mailbox>,
    /// Mailboxes created locally.
    pub added: u64,
    /// Mailboxes removed locally (with their emails) because the server no longer lists them.
    pub removed: u64,
    /// Fresh server state per stored mailbox (from LIST-STATUS or STATUS), by position in
    /// `mailboxes`.
    pub(crate) states: Vec<Option<ServerState>>,
}

/// Lists the server's mailboxes and stores them: names, hierarchy, roles, counters; removes
/// (with their emails and checkpoints) the ones the server no longer has. One transaction.
pub async fn sync_mailboxes(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
) -> Result<MailboxesReport, Error> {
    let (lists, statuses) = conn.list().await?;
    let limit = conn.wire.timeouts.max_mailboxes;
    if lists.len() > limit {
        return Err(Error::TooManyMailboxes {
            count: lists.len(),
            limit,
        });
    }
    let mut status_by_name: HashMap<String, StatusItems> = statuses.into_iter().collect();
    // Without LIST-STATUS: STATUS every selectable mailbox, pipelined in one round trip.
    let missing: Vec<String> = lists
        .iter()
        .filter(|l| is_selectable(&l.attributes) && !status_by_name.contains_key(&l.name))
        .map(|l| l.name.clone())
        .collect();
    if !missing.is_empty() {
        let results = conn.status_many(&missing).await?;
        for (name, r) in missing.into_iter().zip(results) {
            match r {
                Ok(items) => {
                    status_by_name.insert(name, items);
                }
                // Deleted between LIST and STATUS: it will be gone from the next LIST.
                Err(e) if !e.is_connection() => tracing::debug!(%name, error = %e, "STATUS failed"),
                Err(e) => return Err(e),
            }
        }
    }
    let entries: Vec<(String, Option<String>, Vec<String>)> = lists
        .iter()
        .map(|l: &ListEntry| (l.name.clone(), l.delimiter.clone(), l.attributes.clone()))
        .collect();
    let roles = assign_roles(&entries);
    let upserts: Vec<MailboxUpsert> = lists
        .iter()
        .zip(roles)
        .map(|(l, role)| {
            let delim = l.delimiter.clone().filter(|d| !d.is_empty());
            let parent = delim.as_deref().and_then(|d| {
                l.name
                    .rfind(d)
                    .map(|i| l.name.get(..i).unwrap_or_default().to_owned())
                    .filter(|p| !p.is_empty())
            });
            MailboxUpsert {
                remote_id: l.name.clone(),
                name: utf7::decode(&l.name).unwrap_or_else(|| l.name.clone()),
                parent_remote_id: parent,
                delimiter: delim,
                selectable: is_selectable(&l.attributes),
                role,
                status: status_by_name.get(&l.name).map(to_status),
            }
        })
        .collect();
    let keep: Vec<String> = upserts.iter().map(|u| u.remote_id.clone()).collect();
    // Sets, not scans: an account may have 100,000 mailboxes.
    let keep_set: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
    let txn = store.begin().await?;
    let before = mailboxes::list(&txn, account).await?;
    let known: std::collections::HashSet<&str> =
        before.iter().map(|b| b.remote_id.as_str()).collect();
    let added = upserts
        .iter()
        .filter(|u| !known.contains(u.remote_id.as_str()))
        .count() as u64;
    for gone in before
        .iter()
        .filter(|b| !keep_set.contains(b.remote_id.as_str()))
    {
        checkpoints::delete(&txn, account, &Scope::imap_mailbox(gone.id)).await?;
    }
    let removed = mailboxes::delete_missing(&txn, account, &keep).await?;
    let stored = mailboxes::upsert(&txn, account, &upserts).await?;
    txn.commit().await?;
    let states = stored
        .iter()
        .map(|m| status_by_name.get(&m.remote_id).map(to_state))
        .collect();
    Ok(MailboxesReport {
        mailboxes: stored,
        added,
        removed,
        states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, attrs: &[&str]) -> (String, Option<String>, Vec<String>) {
        (
            name.to_owned(),
            Some("/".to_owned()),
            attrs.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    #[test]
    fn special_use_wins_and_is_case_insensitive() {
        let roles = assign_roles(&[
            e("INBOX", &[]),
            e("Sent", &["\\HasNoChildren", "\\sent"]),
            e("Gesendet", &["\\Sent"]),
            e("Papierkorb", &["\\TRASH"]),
            e("Spam", &["\\Junk"]),
        ]);
        assert_eq!(
            roles,
            vec![
                Some(Role::Inbox),
                Some(Role::Sent),
                Some(Role::Sent),
                Some(Role::Trash),
                Some(Role::Junk)
            ]
        );
    }

    #[test]
    fn names_when_no_special_use() {
        let roles = assign_roles(&[
            e("INBOX", &[]),
            e("Sent Items", &[]),
            e("Sent Messages", &[]),
            e("Deleted Messages", &[]),
            e("Bin", &[]),
            e("spam", &[]),
            e("Drafts", &[]),
            e("INBOX/Archive", &[]),
            e("Projects/Trash", &[]),
            e("Notes", &[]),
        ]);
        assert_eq!(
            roles,
            vec![
                Some(Role::Inbox),
                Some(Role::Sent),
                None,
                Some(Role::Trash),
                None,
                Some(Role::Junk),
                Some(Role::Drafts),
                Some(Role::Archive),
                None,
                None
            ]
        );
    }

    #[test]
    fn name_heuristics_do_not_duplicate_special_use() {
        let roles = assign_roles(&[e("Trash", &[]), e("Corbeille", &["\\Trash"])]);
        assert_eq!(roles, vec![None, Some(Role::Trash)]);
    }

    #[test]
    fn non_ascii_names_are_decoded_for_heuristics() {
        assert_eq!(role_from_name("Deleted Items"), Some(Role::Trash));
        let roles = assign_roles(&[e("&AMk-l&AOk-ments envoy&AOk-s", &[]), e("Sent", &[])]);
        assert_eq!(roles, vec![None, Some(Role::Sent)]);
    }
}
