//! Mailbox list sync: LIST (+ SPECIAL-USE, LIST-STATUS), names decoded from modified UTF-7,
//! roles from special-use attributes or well-known names, STATUS counters, and removal of
//! mailboxes that are gone from the server.

use std::collections::{HashMap, HashSet};

use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::mailboxes::{self, Mailbox, MailboxStatus, MailboxUpsert};
use mailsync_store::{AccountId, MailboxId, Role, Store, emails};

use crate::ResponseCode;
use crate::connection::Connection;
use crate::error::Error;
use crate::plan::ServerState;
use crate::utf7;
use crate::wire::{Cmd, ListEntry, StatusItems, Untagged};

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

/// The longest mailbox name stored, in bytes as the server sends it.
pub const MAILBOX_NAME_MAX: usize = 2_000;

/// Whether a listed mailbox's name can be stored ([`MAILBOX_NAME_MAX`]); one that cannot is
/// logged and left out. (Dovecot and Cyrus refuse to create such names, so only a hostile
/// or broken server lists one.)
fn storable(l: &ListEntry) -> bool {
    let ok = l.name.len() <= MAILBOX_NAME_MAX;
    if !ok {
        tracing::warn!(
            bytes = l.name.len(),
            "A mailbox name too long to store: left out."
        );
    }
    ok
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

/// LIST (with STATUS of every selectable mailbox) as the upserts the store takes, and the
/// STATUS items by name.
///
/// `first`: the account has no mailbox stored yet, so it may be one to refuse. A plain LIST
/// counts its mailboxes before the server is asked the STATUS of each: an account over the
/// limit is refused in the time the server takes to name its mailboxes, not to open them all.
/// Later listings go straight to LIST-STATUS (one round trip a cycle) and are checked after.
async fn listing(
    conn: &mut Connection,
    first: bool,
) -> Result<(Vec<MailboxUpsert>, HashMap<String, StatusItems>), Error> {
    let limit = conn.wire.timeouts.max_mailboxes;
    if first && conn.lists_status() {
        let count = conn.count_mailboxes().await?;
        if count > limit {
            return Err(Error::TooManyMailboxes { count, limit });
        }
    }
    let (mut lists, statuses) = conn.list().await?;
    // A name no server gives a real mailbox (IMAP sets no limit; Dovecot and Cyrus stop far
    // below): left out with a warning. It is a B-tree key on PostgreSQL, which refuses an
    // index row over 2,704 bytes, and failed the listing's write, and the sync, every cycle.
    lists.retain(storable);
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
    // Listed, but the server says there is no such mailbox: deleted between LIST and STATUS,
    // or a parent Dovecot lists as `\HasChildren` without `\Noselect` though it holds
    // nothing (`CREATE A/C` where there is no `A`: STATUS and SELECT of `A` answer a bare
    // NO). Either way not a mailbox to sync, and not the one stored under that name
    // (`still_listed`).
    let mut absent: HashSet<String> = HashSet::new();
    if !missing.is_empty() {
        let results = conn.status_many(&missing).await?;
        for (name, r) in missing.into_iter().zip(results) {
            match r {
                Ok(items) => {
                    status_by_name.insert(name, items);
                }
                // Dovecot answers a bare NO, others [NONEXISTENT]; transient codes
                // ([UNAVAILABLE], [INUSE]) leave the mailbox as listed.
                Err(Error::No {
                    code: None | Some(ResponseCode::NonExistent),
                    ..
                }) => {
                    tracing::debug!(%name, "STATUS: no such mailbox");
                    absent.insert(name);
                }
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
                selectable: is_selectable(&l.attributes) && !absent.contains(&l.name),
                role,
                status: status_by_name.get(&l.name).map(to_status),
            }
        })
        .collect();
    Ok((upserts, status_by_name))
}

/// Follows renames made by another client (see `renames`) without touching anything else:
/// run before a flush, so queued changes address the mailbox by its current name instead of
/// failing on the old one. Returns how many mailboxes were renamed.
pub async fn follow_renames(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
) -> Result<usize, Error> {
    // Nothing stored, nothing another client can have renamed.
    if !mailboxes::any(store.conn(), account).await? {
        return Ok(0);
    }
    let (upserts, _) = listing(conn, false).await?;
    let stored = mailboxes::list(store.conn(), account).await?;
    let keep = still_listed(&stored, &upserts);
    let keep_set: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
    let verified = verified_renames(conn, store, &stored, &upserts, &keep_set).await?;
    let txn = store.begin().await?;
    let before = mailboxes::list(&txn, account).await?;
    let known: std::collections::HashSet<&str> =
        before.iter().map(|b| b.remote_id.as_str()).collect();
    let mut renamed = renames(&before, &upserts, &keep_set, &known);
    renamed.retain(|r| verified.contains(r));
    for (id, remote_id) in &renamed {
        tracing::info!(mailbox = %id, to = %remote_id, "Mailbox renamed on the server; queued changes follow it.");
        mailboxes::set_remote_id(&txn, *id, remote_id).await?;
    }
    txn.commit().await?;
    Ok(renamed.len())
}

/// Lists the server's mailboxes and stores them: names, hierarchy, roles, counters; removes
/// (with their emails and checkpoints) the ones the server no longer has. One transaction.
pub async fn sync_mailboxes(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
) -> Result<MailboxesReport, Error> {
    let first = !mailboxes::any(store.conn(), account).await?;
    let (upserts, status_by_name) = listing(conn, first).await?;
    let stored = mailboxes::list(store.conn(), account).await?;
    let keep = still_listed(&stored, &upserts);
    // Sets, not scans: an account may have 100,000 mailboxes.
    let keep_set: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
    let verified = verified_renames(conn, store, &stored, &upserts, &keep_set).await?;
    let txn = store.begin().await?;
    let before = mailboxes::list(&txn, account).await?;
    let known: std::collections::HashSet<&str> =
        before.iter().map(|b| b.remote_id.as_str()).collect();
    let added = upserts
        .iter()
        .filter(|u| !known.contains(u.remote_id.as_str()))
        .count() as u64;
    let mut renamed = renames(&before, &upserts, &keep_set, &known);
    renamed.retain(|r| verified.contains(r));
    for (id, remote_id) in &renamed {
        tracing::info!(mailbox = %id, to = %remote_id, "Mailbox renamed on the server; keeping its emails and checkpoint.");
        mailboxes::set_remote_id(&txn, *id, remote_id).await?;
    }
    let renamed_ids: std::collections::HashSet<_> = renamed.iter().map(|(id, _)| *id).collect();
    for gone in before
        .iter()
        .filter(|b| !keep_set.contains(b.remote_id.as_str()) && !renamed_ids.contains(&b.id))
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

/// The listed names whose stored mailbox is still there: every name listed, except one listed
/// as not selectable where a selectable mailbox was stored. That is a placeholder, not the
/// mailbox: another client renamed or deleted it and made a child under its name (`A/C`
/// after `RENAME A B`), or deleted it while it had children (RFC 3501: a DELETE of a mailbox
/// with inferiors leaves it `\Noselect`, its messages gone). Taking the placeholder for the
/// mailbox kept its emails as ghosts and hid the rename (model test, nested mailboxes,
/// Dovecot seed 52000). Its row goes (or follows the rename), and the placeholder is stored
/// afresh.
fn still_listed(stored: &[Mailbox], upserts: &[MailboxUpsert]) -> Vec<String> {
    let was_selectable: HashSet<&str> = stored
        .iter()
        .filter(|m| m.selectable)
        .map(|m| m.remote_id.as_str())
        .collect();
    upserts
        .iter()
        .filter(|u| u.selectable || !was_selectable.contains(u.remote_id.as_str()))
        .map(|u| u.remote_id.clone())
        .collect()
}

/// The rename candidates of `renames` among `before` (the stored mailboxes, read outside any
/// transaction, once per listing) that the server confirms
/// by content (`same_content`). Asked before the store transaction opens: no network wait
/// while holding the write lock.
async fn verified_renames(
    conn: &mut Connection,
    store: &Store,
    before: &[Mailbox],
    upserts: &[MailboxUpsert],
    keep: &HashSet<&str>,
) -> Result<HashSet<(MailboxId, String)>, Error> {
    let known: HashSet<&str> = before.iter().map(|b| b.remote_id.as_str()).collect();
    let mut out = HashSet::new();
    for (id, remote_id) in renames(before, upserts, keep, &known) {
        let (Some(gone), Some(new)) = (
            before.iter().find(|b| b.id == id),
            upserts.iter().find(|u| u.remote_id == remote_id),
        ) else {
            continue;
        };
        if same_content(conn, store, gone, new).await? {
            out.insert((id, remote_id));
        } else {
            tracing::info!(mailbox = %id, candidate = %remote_id, "Same UIDVALIDITY, other content: not a rename.");
        }
    }
    Ok(out)
}

/// How many of the stored copies with the highest UIDs a rename check compares.
const RENAME_PROBES: u64 = 5;

/// Whether the mailbox listed as `new` holds what the stored `gone` held: its stored copies
/// with the highest UIDs are at the same UIDs there, with the same Message-ID and size (see
/// `content_matches`).
/// UIDVALIDITY alone proves nothing across names: RFC 3501 only makes it differ from earlier
/// mailboxes of the *same* name, and a server that takes it from the clock gives two
/// mailboxes created in one second the same value (Cyrus; the model test found a deleted
/// mailbox "renamed" to a new one that way, its rows then naming other messages). A mailbox
/// with nothing stored is paired only with an empty one of the same UIDNEXT: keeping its
/// checkpoint can then miss nothing.
async fn same_content(
    conn: &mut Connection,
    store: &Store,
    gone: &Mailbox,
    new: &MailboxUpsert,
) -> Result<bool, Error> {
    let probes = emails::newest_by_uid(store.conn(), gone.id, RENAME_PROBES).await?;
    if probes.is_empty() {
        return Ok(new.status.as_ref().is_some_and(|s| {
            s.total == 0 && s.uidnext.is_some() && s.uidnext == gone.status.uidnext
        }));
    }
    match conn.select(&new.remote_id).await {
        Ok(_) => {}
        // Gone again, or not selectable: not this mailbox.
        Err(e) if !e.is_connection() => return Ok(false),
        Err(e) => return Err(e),
    }
    let set = probes
        .iter()
        .map(|(uid, _, _)| uid.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (data, _) = conn
        .run(
            &Cmd::new("UID FETCH")
                .raw(&set)
                .raw("(UID RFC822.SIZE ENVELOPE)"),
        )
        .await?;
    let mut there: HashMap<i64, (Option<String>, Option<i64>)> = HashMap::new();
    for u in data {
        if let Untagged::Fetch(f) = u
            && let Some(uid) = f.uid
        {
            let mid = f
                .envelope
                .as_ref()
                .and_then(|e| e.message_id.as_deref())
                .and_then(|m| crate::mime::message_ids(m).into_iter().next());
            there.insert(i64::from(uid), (mid, f.size.map(i64::from)));
        }
    }
    Ok(content_matches(&probes, &there))
}

/// The rename verdict on the probes: no probed UID holds another message (Message-ID, and size
/// where given), and at least one is confirmed. Probes the server no longer has are neutral
/// (expunged since); none left to confirm is no proof, and the mailbox is downloaded again.
fn content_matches(
    probes: &[(i64, Option<String>, i64)],
    there: &HashMap<i64, (Option<String>, Option<i64>)>,
) -> bool {
    let mut confirmed = false;
    for (uid, mid, size) in probes {
        if let Some((m, sz)) = there.get(uid) {
            if m != mid || sz.is_some_and(|s| s != *size) {
                return false;
            }
            confirmed = true;
        }
    }
    confirmed
}

/// Mailboxes that another client renamed: a known mailbox gone from the list and a new one with
/// the same UIDVALIDITY whose UIDNEXT did not go back (RFC 3501 keeps UIDVALIDITY across a
/// RENAME, and a deleted and re-created mailbox gets a new one). Only unambiguous pairs count:
/// a UIDVALIDITY shared by two gone or two new mailboxes pairs nothing, and the mailbox is
/// downloaded again as before. Returns (local id, new remote id): candidates, which
/// `verified_renames` confirms by content before anything follows them.
///
/// RFC 8474 MAILBOXID would identify the mailbox outright where OBJECTID is offered; the
/// UIDVALIDITY rule is used everywhere (Dovecot 2.3 does not offer OBJECTID).
fn renames(
    before: &[Mailbox],
    upserts: &[MailboxUpsert],
    keep: &std::collections::HashSet<&str>,
    known: &std::collections::HashSet<&str>,
) -> Vec<(mailsync_store::MailboxId, String)> {
    let gone: Vec<&Mailbox> = before
        .iter()
        .filter(|b| !keep.contains(b.remote_id.as_str()) && b.status.uidvalidity.is_some())
        .collect();
    let fresh: Vec<&MailboxUpsert> = upserts
        .iter()
        .filter(|u| !known.contains(u.remote_id.as_str()))
        .filter(|u| u.status.as_ref().is_some_and(|s| s.uidvalidity.is_some()))
        .collect();
    let uv_of = |u: &MailboxUpsert| u.status.as_ref().and_then(|s| s.uidvalidity);
    let mut out = Vec::new();
    for g in &gone {
        let uv = g.status.uidvalidity;
        if gone.iter().filter(|o| o.status.uidvalidity == uv).count() != 1 {
            continue;
        }
        let candidates: Vec<&&MailboxUpsert> = fresh.iter().filter(|u| uv_of(u) == uv).collect();
        let [u] = candidates.as_slice() else {
            continue;
        };
        let next_ok = match (g.status.uidnext, u.status.as_ref().and_then(|s| s.uidnext)) {
            (Some(old), Some(new)) => new >= old,
            _ => true,
        };
        if next_ok {
            out.push((g.id, u.remote_id.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_too_long_to_store_is_left_out() {
        let entry = |n: usize| ListEntry {
            attributes: Vec::new(),
            delimiter: Some("/".into()),
            name: "a".repeat(n),
        };
        assert!(storable(&entry(MAILBOX_NAME_MAX)));
        assert!(!storable(&entry(MAILBOX_NAME_MAX + 1)));
    }

    #[test]
    fn rename_needs_the_same_messages_at_the_same_uids() {
        let probes = vec![
            (3, Some("c@x".to_owned()), 30),
            (2, Some("b@x".to_owned()), 20),
            (1, None, 10),
        ];
        let there = |v: &[(i64, Option<&str>, Option<i64>)]| -> HashMap<_, _> {
            v.iter()
                .map(|(u, m, s)| (*u, (m.map(str::to_owned), *s)))
                .collect()
        };
        // A real rename, one message expunged since, one size not reported: paired.
        assert!(content_matches(
            &probes,
            &there(&[(2, Some("b@x"), Some(20)), (1, None, None)])
        ));
        // Another mailbox that happens to share the UIDVALIDITY: UID 1 is another message.
        assert!(!content_matches(
            &probes,
            &there(&[(1, Some("other@x"), Some(10))])
        ));
        // Same Message-ID, other size: another copy, not this one.
        assert!(!content_matches(
            &probes,
            &there(&[(3, Some("c@x"), Some(31))])
        ));
        // Nothing left to compare: no proof.
        assert!(!content_matches(&probes, &there(&[])));
    }

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

    fn status(uv: i64, next: i64) -> MailboxStatus {
        MailboxStatus {
            total: 0,
            unread: 0,
            uidvalidity: Some(uv),
            uidnext: Some(next),
            highestmodseq: None,
        }
    }

    fn known(id: i64, name: &str, uv: i64, next: i64) -> Mailbox {
        Mailbox {
            id: mailsync_store::MailboxId(id),
            account_id: AccountId(1),
            remote_id: name.into(),
            name: name.into(),
            parent_remote_id: None,
            delimiter: Some("/".into()),
            selectable: true,
            role: None,
            status: status(uv, next),
        }
    }

    fn listed(name: &str, uv: i64, next: i64) -> MailboxUpsert {
        MailboxUpsert {
            remote_id: name.into(),
            name: name.into(),
            parent_remote_id: None,
            delimiter: Some("/".into()),
            selectable: true,
            role: None,
            status: Some(status(uv, next)),
        }
    }

    fn pairs(before: &[Mailbox], now: &[MailboxUpsert]) -> Vec<(i64, String)> {
        let still = still_listed(before, now);
        let keep: std::collections::HashSet<&str> = still.iter().map(String::as_str).collect();
        let known: std::collections::HashSet<&str> =
            before.iter().map(|b| b.remote_id.as_str()).collect();
        renames(before, now, &keep, &known)
            .into_iter()
            .map(|(id, r)| (id.0, r))
            .collect()
    }

    /// Dovecot seed 52000: A renamed to B, then A/C created: A is listed again, as a parent
    /// the server says does not exist. That is not the stored A, which went to B.
    #[test]
    fn a_placeholder_under_a_renamed_mailboxs_name_is_not_that_mailbox() {
        let before = [known(1, "A", 100, 10), known(2, "X", 300, 1)];
        let mut placeholder = listed("A", 0, 0);
        placeholder.selectable = false;
        placeholder.status = None;
        let now = [
            listed("B", 100, 10),
            placeholder.clone(),
            listed("A/C", 101, 1),
        ];
        assert_eq!(pairs(&before, &now), vec![(1, "B".to_owned())]);
        assert_eq!(still_listed(&before, &now), ["B", "A/C"]);
        // A parent stored as one stays what it was.
        let mut parent = known(1, "A", 100, 10);
        parent.selectable = false;
        assert_eq!(still_listed(&[parent], &now), ["B", "A", "A/C"]);
    }

    #[test]
    fn a_rename_pairs_by_uidvalidity_only_when_unambiguous() {
        let before = [known(1, "A", 100, 10), known(2, "B", 200, 5)];
        // A renamed to C (a message arrived since): paired. B stays.
        let now = [listed("C", 100, 11), listed("B", 200, 5)];
        assert_eq!(pairs(&before, &now), vec![(1, "C".to_owned())]);
        // UIDNEXT went back: not the same mailbox.
        let now = [listed("C", 100, 3), listed("B", 200, 5)];
        assert!(pairs(&before, &now).is_empty());
        // Another UIDVALIDITY: a different mailbox (deleted, another one created).
        let now = [listed("C", 101, 10), listed("B", 200, 5)];
        assert!(pairs(&before, &now).is_empty());
        // Two new mailboxes with the same UIDVALIDITY: ambiguous, nothing paired.
        let now = [
            listed("C", 100, 10),
            listed("D", 100, 10),
            listed("B", 200, 5),
        ];
        assert!(pairs(&before, &now).is_empty());
        // Two gone with the same UIDVALIDITY: ambiguous too.
        let before = [known(1, "A", 100, 10), known(2, "B", 100, 10)];
        let now = [listed("C", 100, 10)];
        assert!(pairs(&before, &now).is_empty());
    }
}
