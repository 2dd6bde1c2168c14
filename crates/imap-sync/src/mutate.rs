//! Server-side mutations: flags, move, delete, append, applied in order over one connection
//! with a typed outcome per item. Identities of moved/appended messages are updated locally
//! from COPYUID/APPENDUID so the next sync does not download them again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mailsync_store::emails::{self, Membership};
use mailsync_store::mailboxes::{self, Mailbox};
use mailsync_store::{EmailId, MailboxId, Store};

use crate::connection::Connection;
use crate::error::{Error, ResponseCode};
use crate::storeext;
use crate::uidset;
use crate::wire::{Cmd, Untagged};

/// A change to make on the server, at the protocol level (mailbox + UIDs). The outbox
/// crate knows nothing of IMAP; the engine translates its queue items into these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImapMutation {
    /// `UID STORE uids +FLAGS.SILENT (flags)`; flags are IMAP names (`\Seen`, `$Forwarded`).
    AddFlags {
        /// The mailbox holding the messages.
        mailbox: MailboxId,
        /// The UIDVALIDITY the UIDs were recorded under (the command runs only under it).
        uidvalidity: u32,
        /// Their UIDs.
        uids: Vec<u32>,
        /// Flags to add.
        flags: Vec<String>,
    },
    /// `UID STORE uids -FLAGS.SILENT (flags)`.
    RemoveFlags {
        /// The mailbox holding the messages.
        mailbox: MailboxId,
        /// The UIDVALIDITY the UIDs were recorded under (the command runs only under it).
        uidvalidity: u32,
        /// Their UIDs.
        uids: Vec<u32>,
        /// Flags to remove.
        flags: Vec<String>,
    },
    /// `UID MOVE`, else `UID COPY` + `\Deleted` + `UID EXPUNGE`.
    Move {
        /// Source mailbox.
        from: MailboxId,
        /// The UIDVALIDITY the UIDs were recorded under (the command runs only under it).
        uidvalidity: u32,
        /// UIDs in the source.
        uids: Vec<u32>,
        /// Target mailbox.
        to: MailboxId,
    },
    /// Deletes for good: `\Deleted` and `UID EXPUNGE` of these UIDs (a delete to the trash is
    /// a [`ImapMutation::Move`]).
    Delete {
        /// The mailbox holding the messages.
        mailbox: MailboxId,
        /// The UIDVALIDITY the UIDs were recorded under (the command runs only under it).
        uidvalidity: u32,
        /// Their UIDs.
        uids: Vec<u32>,
    },
    /// Changes nothing: checks that these UIDs are still in the mailbox (`UID SEARCH UID`),
    /// for a queued change whose actions cancelled out (moved away and back) and which must
    /// still find out whether another client moved the message meanwhile. UIDs not there come
    /// back in `missing`.
    Confirm {
        /// The mailbox holding the messages.
        mailbox: MailboxId,
        /// The UIDVALIDITY the UIDs were recorded under (checked like any other mutation's).
        uidvalidity: u32,
        /// Their UIDs.
        uids: Vec<u32>,
    },
    /// `APPEND` of a raw RFC 5322 message.
    Append {
        /// Target mailbox.
        mailbox: MailboxId,
        /// The message bytes.
        raw: Vec<u8>,
        /// Flags to set (`\Seen`, `\Draft`...).
        flags: Vec<String>,
        /// INTERNALDATE to give it (the server's clock otherwise).
        internal_date: Option<DateTime<Utc>>,
        /// A local email row standing for this message: given the server identity from
        /// APPENDUID, so the next sync updates it instead of adding a copy.
        local: Option<EmailId>,
        /// An earlier APPEND of this message may have been stored without its answer arriving
        /// (a cut): look for it first, and take it instead of appending a second copy.
        look_first: Option<AppendedBefore>,
    },
}

/// How to recognise the copy an earlier, unanswered APPEND may have stored: a message of the
/// target mailbox with this Message-ID (`UID SEARCH HEADER Message-ID`), other than `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedBefore {
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// A copy that is not it, as `(UIDVALIDITY, UID)`: the version a draft save replaces.
    pub except: Option<(u32, u32)>,
}

/// The result of one mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MutationOutcome {
    /// Done for every UID except those listed in `missing` and `refused`; each UID's result was
    /// read back from the server, not assumed from the tagged OK (which servers also give for
    /// UIDs that no longer exist).
    Ok {
        /// UIDVALIDITY of the target mailbox when new UIDs are reported.
        uidvalidity: Option<u32>,
        /// `(source UID, target UID)` of moved messages (COPYUID), when the server says.
        moved: Vec<(u32, u32)>,
        /// The UID of an appended message (APPENDUID), when the server says.
        appended_uid: Option<u32>,
        /// UIDs not in the mailbox (expunged or moved away by another client): nothing was done
        /// to them.
        missing: Vec<u32>,
        /// UIDs present whose read-back shows the change did not take (a flag the server does
        /// not keep, a move that left the message where it was).
        refused: Vec<u32>,
    },
    /// Nothing was sent: the source mailbox no longer exists (not listed locally any more, or
    /// the server answers `NO [NONEXISTENT]`), e.g. another client deleted or renamed it. The
    /// messages may still exist elsewhere.
    SourceGone {
        /// What happened.
        reason: String,
    },
    /// Nothing was sent: the mailbox's UIDVALIDITY is not the one the UIDs were recorded under
    /// (it was deleted and re-created, or renumbered), so those UIDs may name other messages.
    UidValidityChanged {
        /// The UIDVALIDITY the change was recorded under.
        expected: u32,
        /// The mailbox's UIDVALIDITY now.
        found: u32,
    },
    /// The connection failed while this item's commands were under way: the server may have
    /// applied them without the answer arriving, so it is unknown whether it took effect.
    /// Items after it were not sent ([`MutationOutcome::Transient`]).
    Interrupted {
        /// What happened.
        reason: String,
    },
    /// Not done; try again later (connection lost before it was sent, `[UNAVAILABLE]`,
    /// `[INUSE]`, local database busy). After a connection loss every following item is
    /// transient.
    Transient {
        /// What happened.
        reason: String,
        /// The response code, if the server gave one.
        code: Option<ResponseCode>,
    },
    /// Refused and will stay refused as is: `[NONEXISTENT]`/`[TRYCREATE]` (no such mailbox),
    /// `[NOPERM]`, `[OVERQUOTA]`, a `BAD`, an unknown local mailbox...
    Permanent {
        /// What happened.
        reason: String,
        /// The response code, if the server gave one.
        code: Option<ResponseCode>,
    },
}

impl MutationOutcome {
    fn ok() -> Self {
        Self::Ok {
            uidvalidity: None,
            moved: Vec::new(),
            appended_uid: None,
            missing: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn checked(missing: Vec<u32>, refused: Vec<u32>) -> Self {
        Self::Ok {
            uidvalidity: None,
            moved: Vec::new(),
            appended_uid: None,
            missing,
            refused,
        }
    }

    /// True for [`MutationOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }

    /// Classifies an error.
    pub fn from_error(e: &Error) -> Self {
        let reason = e.to_string();
        let code = e.response_code().cloned();
        let transient = match e {
            _ if e.is_connection() => true,
            Error::No { code: Some(c), .. } => c.is_transient(),
            Error::Store(s) => s.is_transient(),
            _ => false,
        };
        if transient {
            Self::Transient { reason, code }
        } else {
            Self::Permanent { reason, code }
        }
    }
}

fn valid_flag(f: &str) -> bool {
    let body = f.strip_prefix('\\').unwrap_or(f);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

/// Applies the mutations in order over one connection; returns one outcome per item, in the
/// same order. Consecutive items of the same kind on the same mailbox are sent as one command
/// (UID sets). A connection loss makes the item under way [`MutationOutcome::Interrupted`]
/// and all later ones [`MutationOutcome::Transient`].
pub async fn apply(
    conn: &mut Connection,
    store: &Store,
    items: &[ImapMutation],
) -> Vec<MutationOutcome> {
    apply_with(conn, store, items, &[]).await
}

/// [`apply`], addressing the mailboxes of `known` as given there instead of reading them from
/// the database: mailboxes the caller read already, and mailboxes the database no longer has
/// (the user deleted them, and the delete is still queued) whose copies changes queued before
/// the delete still address, by the name and UIDVALIDITY the caller knows.
pub async fn apply_with(
    conn: &mut Connection,
    store: &Store,
    items: &[ImapMutation],
    known: &[Mailbox],
) -> Vec<MutationOutcome> {
    let mut out: Vec<Option<MutationOutcome>> = vec![None; items.len()];
    let mut boxes: HashMap<MailboxId, Mailbox> = known.iter().map(|m| (m.id, m.clone())).collect();
    let mut i = 0;
    let mut dead: Option<String> = None;
    while i < items.len() {
        // Group consecutive compatible items.
        let mut j = i + 1;
        while j < items.len()
            && let (Some(a), Some(b)) = (items.get(i), items.get(j))
            && same_group(a, b)
        {
            j += 1;
        }
        let group = items.get(i..j).unwrap_or_default();
        let outcome = if let Some(reason) = &dead {
            MutationOutcome::Transient {
                reason: reason.clone(),
                code: None,
            }
        } else {
            match apply_group(conn, store, &mut boxes, group).await {
                Ok(o) => o,
                Err(e) if e.is_connection() => {
                    dead = Some(e.to_string());
                    MutationOutcome::Interrupted {
                        reason: e.to_string(),
                    }
                }
                Err(e) => MutationOutcome::from_error(&e),
            }
        };
        for slot in out.get_mut(i..j).unwrap_or_default() {
            *slot = Some(outcome.clone());
        }
        i = j;
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(MutationOutcome::ok))
        .collect()
}

fn same_group(a: &ImapMutation, b: &ImapMutation) -> bool {
    use ImapMutation as M;
    match (a, b) {
        (
            M::AddFlags {
                mailbox: m1,
                uidvalidity: v1,
                flags: f1,
                ..
            },
            M::AddFlags {
                mailbox: m2,
                uidvalidity: v2,
                flags: f2,
                ..
            },
        )
        | (
            M::RemoveFlags {
                mailbox: m1,
                uidvalidity: v1,
                flags: f1,
                ..
            },
            M::RemoveFlags {
                mailbox: m2,
                uidvalidity: v2,
                flags: f2,
                ..
            },
        ) => m1 == m2 && v1 == v2 && f1 == f2,
        (
            M::Move {
                from: a1,
                uidvalidity: v1,
                to: b1,
                ..
            },
            M::Move {
                from: a2,
                uidvalidity: v2,
                to: b2,
                ..
            },
        ) => a1 == a2 && v1 == v2 && b1 == b2,
        (
            M::Delete {
                mailbox: m1,
                uidvalidity: v1,
                ..
            },
            M::Delete {
                mailbox: m2,
                uidvalidity: v2,
                ..
            },
        ) => m1 == m2 && v1 == v2,
        (
            M::Confirm {
                mailbox: m1,
                uidvalidity: v1,
                ..
            },
            M::Confirm {
                mailbox: m2,
                uidvalidity: v2,
                ..
            },
        ) => m1 == m2 && v1 == v2,
        _ => false,
    }
}

async fn mailbox(
    store: &Store,
    boxes: &mut HashMap<MailboxId, Mailbox>,
    id: MailboxId,
) -> Result<Mailbox, Error> {
    if let Some(m) = boxes.get(&id) {
        return Ok(m.clone());
    }
    let m = mailboxes::get(store.conn(), id)
        .await
        .map_err(|e| match e {
            mailsync_store::StoreError::NotFound { what, key } => Error::NotFound { what, key },
            other => Error::Store(other),
        })?;
    boxes.insert(id, m.clone());
    Ok(m)
}

impl ImapMutation {
    /// The mailbox whose copies it addresses by UID (`None` for an APPEND).
    pub fn source_mailbox(&self) -> Option<MailboxId> {
        match self {
            Self::AddFlags { mailbox, .. }
            | Self::RemoveFlags { mailbox, .. }
            | Self::Delete { mailbox, .. }
            | Self::Confirm { mailbox, .. } => Some(*mailbox),
            Self::Move { from, .. } => Some(*from),
            Self::Append { .. } => None,
        }
    }
}

fn all_uids(group: &[ImapMutation]) -> Vec<u32> {
    let mut v: Vec<u32> = group
        .iter()
        .flat_map(|m| match m {
            ImapMutation::AddFlags { uids, .. }
            | ImapMutation::RemoveFlags { uids, .. }
            | ImapMutation::Move { uids, .. }
            | ImapMutation::Delete { uids, .. }
            | ImapMutation::Confirm { uids, .. } => uids.clone(),
            ImapMutation::Append { .. } => Vec::new(),
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

async fn apply_group(
    conn: &mut Connection,
    store: &Store,
    boxes: &mut HashMap<MailboxId, Mailbox>,
    group: &[ImapMutation],
) -> Result<MutationOutcome, Error> {
    let Some(first) = group.first() else {
        return Ok(MutationOutcome::ok());
    };
    let uids = all_uids(group);
    match first {
        ImapMutation::AddFlags {
            mailbox: m,
            uidvalidity,
            flags,
            ..
        }
        | ImapMutation::RemoveFlags {
            mailbox: m,
            uidvalidity,
            flags,
            ..
        } => {
            if let Some(bad) = flags.iter().find(|f| !valid_flag(f)) {
                return Ok(MutationOutcome::Permanent {
                    reason: format!("invalid IMAP flag {bad:?}"),
                    code: None,
                });
            }
            if uids.is_empty() || flags.is_empty() {
                return Ok(MutationOutcome::ok());
            }
            let mb = match source_mailbox(store, boxes, *m).await? {
                Ok(mb) => mb,
                Err(gone) => return Ok(gone),
            };
            if let Some(changed) = select_guarded(conn, &mb, *uidvalidity).await? {
                return Ok(changed);
            }
            let add = matches!(first, ImapMutation::AddFlags { .. });
            let op = if add {
                "+FLAGS.SILENT"
            } else {
                "-FLAGS.SILENT"
            };
            for (set, _) in uidset::chunked_sets(&uids, 500) {
                let cmd = Cmd::new("UID STORE")
                    .raw(&set)
                    .raw(op)
                    .raw(&format!("({})", flags.join(" ")));
                conn.run(&cmd).await?;
            }
            // Read back: a UID STORE of UIDs that are gone is answered OK, and a server may
            // silently drop keywords it does not keep (PERMANENTFLAGS).
            let now = fetch_flags(conn, &uids).await?;
            let mut missing = Vec::new();
            let mut refused = Vec::new();
            for u in &uids {
                match now.get(u) {
                    None => missing.push(*u),
                    Some(have) => {
                        let ok = flags
                            .iter()
                            .all(|f| have.iter().any(|h| h.eq_ignore_ascii_case(f)) == add);
                        if !ok {
                            refused.push(*u);
                        }
                    }
                }
            }
            Ok(MutationOutcome::checked(missing, refused))
        }
        ImapMutation::Move {
            from,
            uidvalidity,
            to,
            ..
        } => {
            let src = match source_mailbox(store, boxes, *from).await? {
                Ok(mb) => mb,
                Err(gone) => return Ok(gone),
            };
            let dst = mailbox(store, boxes, *to).await?;
            if let Some(changed) = select_guarded(conn, &src, *uidvalidity).await? {
                return Ok(changed);
            }
            move_uids(conn, store, &src, *uidvalidity, &dst, &uids).await
        }
        ImapMutation::Delete {
            mailbox: m,
            uidvalidity,
            ..
        } => {
            let src = match source_mailbox(store, boxes, *m).await? {
                Ok(mb) => mb,
                Err(gone) => return Ok(gone),
            };
            if let Some(changed) = select_guarded(conn, &src, *uidvalidity).await? {
                return Ok(changed);
            }
            // Permanent: the caller decided between the trash (a Move) and this. An expunge
            // must not turn into a move here: "to Trash, then delete for good" coalesced by
            // the outbox arrives as one Delete from the original mailbox.
            if uids.is_empty() {
                return Ok(MutationOutcome::ok());
            }
            let present = existing_uids(conn, &uids).await?;
            let missing: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| !present.contains(u))
                .collect();
            let wanted: Vec<u32> = present.iter().copied().collect();
            if !wanted.is_empty() {
                expunge_uids(conn, &wanted).await?;
            }
            // Read back: what is still there was not expunged.
            let left = existing_uids(conn, &wanted).await?;
            let refused: Vec<u32> = left.iter().copied().collect();
            let gone: Vec<i64> = wanted
                .iter()
                .filter(|u| !left.contains(u))
                .map(|&u| i64::from(u))
                .collect();
            emails::delete_by_uids(store.conn(), src.id, &gone).await?;
            Ok(MutationOutcome::checked(missing, refused))
        }
        ImapMutation::Confirm {
            mailbox: m,
            uidvalidity,
            ..
        } => {
            let mb = match source_mailbox(store, boxes, *m).await? {
                Ok(mb) => mb,
                Err(gone) => return Ok(gone),
            };
            if let Some(changed) = select_guarded(conn, &mb, *uidvalidity).await? {
                return Ok(changed);
            }
            let present = existing_uids(conn, &uids).await?;
            let missing = uids
                .iter()
                .copied()
                .filter(|u| !present.contains(u))
                .collect();
            Ok(MutationOutcome::checked(missing, Vec::new()))
        }
        ImapMutation::Append {
            mailbox: m,
            raw,
            flags,
            internal_date,
            local,
            look_first,
        } => {
            if let Some(bad) = flags.iter().find(|f| !valid_flag(f)) {
                return Ok(MutationOutcome::Permanent {
                    reason: format!("invalid IMAP flag {bad:?}"),
                    code: None,
                });
            }
            let mb = mailbox(store, boxes, *m).await?;
            let found = match look_first {
                Some(before) => appended_before(conn, &mb.remote_id, before).await?,
                None => None,
            };
            let (uidvalidity, uid) = match found {
                Some((uv, uid)) => {
                    tracing::info!(
                        uid,
                        "An earlier APPEND was stored without its answer; taking that copy."
                    );
                    (Some(uv), Some(uid))
                }
                None => {
                    let mut cmd = Cmd::new("APPEND").astring(&mb.remote_id);
                    if !flags.is_empty() {
                        cmd = cmd.raw(&format!("({})", flags.join(" ")));
                    }
                    if let Some(d) = internal_date {
                        cmd = cmd.raw(&format!("\"{}\"", d.format("%d-%b-%Y %H:%M:%S +0000")));
                    }
                    cmd = cmd.literal(raw.clone());
                    let (_, done) = conn.run(&cmd).await?;
                    match done.code {
                        Some(ResponseCode::AppendUid { uidvalidity, uids }) => {
                            (Some(uidvalidity), uids.first().copied())
                        }
                        _ => (None, None),
                    }
                }
            };
            if let (Some(id), Some(uv), Some(uid)) = (local, uidvalidity, uid) {
                let txn = store.begin().await?;
                let rid = emails::imap_remote_id(mb.id, uv, uid);
                // A copy found again (above) may have been synced onto a row of its own.
                if let Some(other) = emails::find_by_remote_id(&txn, mb.account_id, &rid).await?
                    && other.id != *id
                    && !emails::give_way(&txn, other.id).await?
                {
                    txn.commit().await?;
                    return Ok(MutationOutcome::Ok {
                        uidvalidity,
                        moved: Vec::new(),
                        appended_uid: Some(uid),
                        missing: Vec::new(),
                        refused: Vec::new(),
                    });
                }
                storeext::set_remote_id(&txn, *id, &rid).await?;
                emails::set_memberships(
                    &txn,
                    *id,
                    &[Membership {
                        mailbox_id: mb.id,
                        uidvalidity: Some(i64::from(uv)),
                        uid: Some(i64::from(uid)),
                        modseq: None,
                    }],
                )
                .await?;
                txn.commit().await?;
            }
            Ok(MutationOutcome::Ok {
                uidvalidity,
                moved: Vec::new(),
                appended_uid: uid,
                missing: Vec::new(),
                refused: Vec::new(),
            })
        }
    }
}

/// The mailbox messages are addressed in; `Err(outcome)` when it is no longer known locally
/// (the sync removed it: deleted or renamed by another client).
async fn source_mailbox(
    store: &Store,
    boxes: &mut HashMap<MailboxId, Mailbox>,
    id: MailboxId,
) -> Result<Result<Mailbox, MutationOutcome>, Error> {
    match mailbox(store, boxes, id).await {
        Ok(m) => Ok(Ok(m)),
        Err(Error::NotFound { .. }) => Ok(Err(MutationOutcome::SourceGone {
            reason: format!("mailbox {id} is no longer on the server"),
        })),
        Err(e) => Err(e),
    }
}

/// SELECTs the mailbox afresh (a cached selection could predate a delete and re-create by
/// another client) and checks its UIDVALIDITY: `Some` outcome when the UIDs recorded under
/// `expected` must not be used.
async fn select_guarded(
    conn: &mut Connection,
    mb: &Mailbox,
    expected: u32,
) -> Result<Option<MutationOutcome>, Error> {
    conn.forget_selection();
    let sel = match conn.select(&mb.remote_id).await {
        Ok(s) => s,
        // Dovecot answers a SELECT of a deleted mailbox with a bare NO, others with
        // [NONEXISTENT]; transient codes ([UNAVAILABLE], [INUSE]) stay errors.
        Err(Error::No {
            code: None | Some(ResponseCode::NonExistent),
            text,
            ..
        }) => {
            return Ok(Some(MutationOutcome::SourceGone {
                reason: format!("mailbox {} no longer exists on the server: {text}", mb.name),
            }));
        }
        Err(e) => return Err(e),
    };
    if sel.uidvalidity == expected {
        Ok(None)
    } else {
        tracing::info!(mailbox = %mb.name, expected, found = sel.uidvalidity, "UIDVALIDITY changed; not sending UID-addressed commands");
        Ok(Some(MutationOutcome::UidValidityChanged {
            expected,
            found: sel.uidvalidity,
        }))
    }
}

/// The copy an earlier APPEND to `mailbox` stored, if the mailbox holds one: the highest UID
/// with the Message-ID other than `before.except`, with the mailbox's UIDVALIDITY.
async fn appended_before(
    conn: &mut Connection,
    mailbox: &str,
    before: &AppendedBefore,
) -> Result<Option<(u32, u32)>, Error> {
    let sel = conn.select(mailbox).await?;
    let (data, _) = conn
        .run(
            &Cmd::new("UID SEARCH")
                .raw("HEADER")
                .astring("Message-ID")
                .astring(&format!("<{}>", before.message_id)),
        )
        .await?;
    let found = data
        .into_iter()
        .flat_map(|u| match u {
            Untagged::Search(v) => v,
            _ => Vec::new(),
        })
        .filter(|&uid| before.except != Some((sel.uidvalidity, uid)))
        .max();
    Ok(found.map(|uid| (sel.uidvalidity, uid)))
}

/// Which of `uids` exist in the selected mailbox (`UID SEARCH UID set`).
async fn existing_uids(
    conn: &mut Connection,
    uids: &[u32],
) -> Result<std::collections::BTreeSet<u32>, Error> {
    let mut out = std::collections::BTreeSet::new();
    for (set, _) in uidset::chunked_sets(uids, 500) {
        let (data, _) = conn
            .run(&Cmd::new("UID SEARCH").raw("UID").raw(&set))
            .await?;
        for u in data {
            if let Untagged::Search(v) = u {
                out.extend(v);
            }
        }
    }
    // Only the asked UIDs count (`n:*` style surprises cannot add others).
    out.retain(|u| uids.binary_search(u).is_ok());
    Ok(out)
}

/// The flags of `uids` in the selected mailbox, by UID; absent UIDs are not in the map.
async fn fetch_flags(
    conn: &mut Connection,
    uids: &[u32],
) -> Result<HashMap<u32, Vec<String>>, Error> {
    let mut out = HashMap::with_capacity(uids.len());
    for (set, _) in uidset::chunked_sets(uids, 500) {
        let (data, _) = conn
            .run(&Cmd::new("UID FETCH").raw(&set).raw("(UID FLAGS)"))
            .await?;
        for u in data {
            if let Untagged::Fetch(f) = u
                && let (Some(uid), Some(flags)) = (f.uid, f.flags)
                && uids.binary_search(&uid).is_ok()
            {
                out.insert(uid, flags);
            }
        }
    }
    Ok(out)
}

/// `\Deleted` then `UID EXPUNGE` (UIDPLUS) or `EXPUNGE` on the selected mailbox.
async fn expunge_uids(conn: &mut Connection, uids: &[u32]) -> Result<(), Error> {
    for (set, _) in uidset::chunked_sets(uids, 500) {
        conn.run(
            &Cmd::new("UID STORE")
                .raw(&set)
                .raw("+FLAGS.SILENT (\\Deleted)"),
        )
        .await?;
        if conn.has_capability("UIDPLUS") {
            conn.run(&Cmd::new("UID EXPUNGE").raw(&set)).await?;
        } else {
            // Without UIDPLUS this also expunges other messages marked \Deleted.
            conn.run(&Cmd::new("EXPUNGE")).await?;
        }
    }
    Ok(())
}

/// COPYUID response codes collected over the chunks of one move.
#[derive(Default)]
struct CopyUids {
    seen: bool,
    uidvalidity: Option<u32>,
    pairs: Vec<(u32, u32)>,
}

impl CopyUids {
    fn take(&mut self, code: &Option<ResponseCode>) {
        if let Some(ResponseCode::CopyUid {
            uidvalidity,
            source,
            destination,
        }) = code
        {
            self.seen = true;
            self.uidvalidity = Some(*uidvalidity);
            self.pairs
                .extend(source.iter().copied().zip(destination.iter().copied()));
        }
    }
}

/// Moves `uids` of the selected mailbox `src` (checked to have `uidvalidity`) to `dst`. Which
/// UIDs moved is read from COPYUID (RFC 4315) or, without it, by looking again.
async fn move_uids(
    conn: &mut Connection,
    store: &Store,
    src: &Mailbox,
    uidvalidity: u32,
    dst: &Mailbox,
    uids: &[u32],
) -> Result<MutationOutcome, Error> {
    if uids.is_empty() {
        return Ok(MutationOutcome::ok());
    }
    // Missing before the move: moved away or expunged by someone else. A MOVE of them is
    // answered OK and does nothing, so they must not count as moved.
    let present = existing_uids(conn, uids).await?;
    let mut missing: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !present.contains(u))
        .collect();
    let wanted: Vec<u32> = present.iter().copied().collect();
    let mut cu = CopyUids::default();
    for (set, members) in uidset::chunked_sets(&wanted, 500) {
        if conn.has_capability("MOVE") {
            let (data, done) = conn
                .run(&Cmd::new("UID MOVE").raw(&set).astring(&dst.remote_id))
                .await?;
            // RFC 6851: COPYUID comes in an untagged OK before the expunges.
            for u in &data {
                if let Untagged::Cond { code, .. } = u {
                    cu.take(code);
                }
            }
            cu.take(&done.code);
        } else {
            let before = cu.pairs.len();
            let (_, done) = conn
                .run(&Cmd::new("UID COPY").raw(&set).astring(&dst.remote_id))
                .await?;
            cu.take(&done.code);
            // Only what was copied may be expunged.
            let copied: Vec<u32> = if cu.seen {
                cu.pairs
                    .get(before..)
                    .unwrap_or_default()
                    .iter()
                    .map(|(s, _)| *s)
                    .filter(|u| members.contains(u))
                    .collect()
            } else {
                members.clone()
            };
            if !copied.is_empty() {
                expunge_uids(conn, &copied).await?;
            }
        }
    }
    let CopyUids {
        seen: copyuid_seen,
        uidvalidity: dst_uv,
        pairs: moved,
    } = cu;
    let mut refused = Vec::new();
    if copyuid_seen {
        // A UID present a moment ago but not in COPYUID vanished in between.
        let done: std::collections::BTreeSet<u32> = moved.iter().map(|(s, _)| *s).collect();
        missing.extend(wanted.iter().copied().filter(|u| !done.contains(u)));
        missing.sort_unstable();
    } else if !wanted.is_empty() {
        // No COPYUID: look again. Still in the source means it did not move.
        let left = existing_uids(conn, &wanted).await?;
        refused.extend(left.iter().copied());
    }
    // The moved messages keep their rows: same email, new identity in the target.
    let txn = store.begin().await?;
    if let Some(uv) = dst_uv {
        let olds: Vec<String> = moved
            .iter()
            .map(|(s, _)| emails::imap_remote_id(src.id, uidvalidity, *s))
            .collect();
        let ids = emails::ids_by_remote_ids(&txn, src.account_id, &olds).await?;
        for ((_, d), old) in moved.iter().zip(&olds) {
            let Some(id) = ids.get(old) else { continue };
            storeext::set_remote_id(&txn, *id, &emails::imap_remote_id(dst.id, uv, *d)).await?;
            emails::set_memberships(
                &txn,
                *id,
                &[Membership {
                    mailbox_id: dst.id,
                    uidvalidity: Some(i64::from(uv)),
                    uid: Some(i64::from(*d)),
                    modseq: None,
                }],
            )
            .await?;
        }
    }
    txn.commit().await?;
    Ok(MutationOutcome::Ok {
        uidvalidity: dst_uv,
        moved,
        appended_uid: None,
        missing,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_validated() {
        for ok in ["\\Seen", "$Forwarded", "Junk", "\\Deleted", "NonJunk"] {
            assert!(valid_flag(ok), "{ok}");
        }
        for bad in ["", "\\", "a b", "(x", "x)", "\"q\"", "a\\b", "\u{e9}"] {
            assert!(!valid_flag(bad), "{bad}");
        }
    }

    #[test]
    fn grouping_rules() {
        let add = |m: i64, f: &str| ImapMutation::AddFlags {
            mailbox: MailboxId(m),
            uidvalidity: 7,
            uids: vec![1],
            flags: vec![f.into()],
        };
        assert!(same_group(&add(1, "\\Seen"), &add(1, "\\Seen")));
        assert!(!same_group(&add(1, "\\Seen"), &add(2, "\\Seen")));
        assert!(!same_group(&add(1, "\\Seen"), &add(1, "\\Flagged")));
        let mv = |a: i64, b: i64| ImapMutation::Move {
            from: MailboxId(a),
            uidvalidity: 7,
            uids: vec![3],
            to: MailboxId(b),
        };
        assert!(same_group(&mv(1, 2), &mv(1, 2)));
        assert!(!same_group(&mv(1, 2), &mv(1, 3)));
        assert!(!same_group(&mv(1, 2), &add(1, "\\Seen")));
        // UIDs recorded under another UIDVALIDITY are never sent in the same command.
        let other = ImapMutation::AddFlags {
            mailbox: MailboxId(1),
            uidvalidity: 8,
            uids: vec![1],
            flags: vec!["\\Seen".into()],
        };
        assert!(!same_group(&add(1, "\\Seen"), &other));
    }

    #[test]
    fn classification() {
        let e = Error::No {
            command: "UID MOVE".into(),
            code: Some(ResponseCode::TryCreate),
            text: "no".into(),
        };
        assert!(matches!(
            MutationOutcome::from_error(&e),
            MutationOutcome::Permanent {
                code: Some(ResponseCode::TryCreate),
                ..
            }
        ));
        let e = Error::No {
            command: "UID STORE".into(),
            code: Some(ResponseCode::InUse),
            text: "busy".into(),
        };
        assert!(matches!(
            MutationOutcome::from_error(&e),
            MutationOutcome::Transient { .. }
        ));
        let e = Error::ConnectionLost {
            bye: None,
            source: None,
        };
        assert!(matches!(
            MutationOutcome::from_error(&e),
            MutationOutcome::Transient { .. }
        ));
        let e = Error::Bad {
            command: "UID STORE".into(),
            code: None,
            text: "syntax".into(),
        };
        assert!(matches!(
            MutationOutcome::from_error(&e),
            MutationOutcome::Permanent { .. }
        ));
    }
}
