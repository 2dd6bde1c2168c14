//! The IMAP side of a worker: the outbox executor for IMAP (flags grouped into UID sets, moves,
//! deletes; sends over SMTP then APPEND to Sent) and the [`AccountDriver`] that runs a cycle
//! (flush, mailboxes, every mailbox's emails) and waits for the server: NOTIFY on every mailbox
//! where offered, else IDLE on INBOX and on the most useful other mailboxes within the
//! account's connection budget, plus a STATUS round over the rest every few seconds.
//!
//! IDLE must end with `DONE` to leave the connection usable; when the worker abandons a wait
//! (woken, shut down) the driver notices the interrupted IDLE and reconnects on the next cycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mailsync_imap_sync as imap;
use mailsync_imap_sync::{
    AppendedBefore, Auth, Connection, IdleOutcome, ImapConfig, ImapMutation, MutationOutcome,
    SyncOptions,
};
use mailsync_outbox::{
    Attempt, BatchError, EmailChange, Executor, Flag, FlushReport, ItemOutcome, Location,
    Operation, Outbox, QueuedChange, Target,
};
use mailsync_store::accounts::Account;
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::sync_log::{self, SyncCounts};
use mailsync_store::{AccountId, EmailId, MailboxId, Role, Store, StoreError, emails, mailboxes};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::classify::{Disposition, batch_error, classify, classify_imap, item_outcome};
use crate::compose;
use crate::cycle::{self, Remote, Synced};
use crate::error::EngineError;
use crate::hostcap::{self, Capped, HostCap};
use crate::oauth::{self, Login};
use crate::smtp::{self, SmtpConfig};
use crate::worker::AccountDriver;

/// How long one IDLE lasts before it is re-issued (servers drop IDLE after 30 minutes).
pub const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

fn imap_config(account: &Account, login: Login) -> Result<ImapConfig, EngineError> {
    let ep = account
        .imap
        .as_ref()
        .ok_or_else(|| EngineError::Config("IMAP account without an IMAP server".into()))?;
    let auth = match login {
        Login::Password(p) => Auth::Password(p.expose().to_owned()),
        // OAUTHBEARER where advertised, else XOAUTH2.
        Login::Bearer(t) => Auth::Bearer(t.expose().to_owned()),
    };
    let mut cfg = ImapConfig::new(
        ep.host.clone(),
        ep.port,
        ep.security,
        account.username.clone(),
        auth,
    )
    .with_allow_plaintext(account.allow_plaintext);
    if let Some(ca) = &account.ca_file {
        cfg = cfg.with_ca_file(ca.clone());
    }
    Ok(cfg)
}

/// The IMAP configuration of an account (resolves its secret, or obtains an access token).
pub async fn config(account: &Account) -> Result<ImapConfig, EngineError> {
    imap_config(account, oauth::login(account.into()).await?)
}

/// Connects and logs in. An OAuth 2 account whose token the server refuses gets a fresh token
/// and one more try before the failure is reported.
pub async fn connect(account: &Account) -> Result<Connection, EngineError> {
    connect_ignoring(account, &[]).await
}

/// [`connect`], ignoring the capabilities in `disabled` (see
/// [`ImapConfig::disabled_extensions`]).
async fn connect_ignoring(
    account: &Account,
    disabled: &[String],
) -> Result<Connection, EngineError> {
    oauth::with_login(account.into(), |login| async move {
        let mut cfg = imap_config(account, login)?;
        for cap in disabled {
            cfg = cfg.disable_extension(cap);
        }
        Ok(Connection::connect(&cfg).await?)
    })
    .await
}

/// [`connect_ignoring`] within `cap`: waits for a place under the cap of the account's IMAP
/// host first, and keeps it with the connection.
pub(crate) async fn connect_capped(
    account: &Account,
    disabled: &[String],
    cap: Option<&Arc<HostCap>>,
) -> Result<Capped<Connection>, EngineError> {
    let capped = match (cap, &account.imap) {
        (Some(cap), Some(ep)) => Some((cap.clone(), ep.host.clone())),
        _ => None,
    };
    let permit = match &capped {
        Some((cap, host)) => Some(cap.acquire(host).await),
        None => None,
    };
    let conn = connect_ignoring(account, disabled).await?;
    Ok(Capped::new(conn, permit, capped))
}

/// Like [`connect_capped`], but only with a place free now (`Ok(None)` when there is none).
async fn try_connect_capped(
    account: &Account,
    disabled: &[String],
    cap: Option<&Arc<HostCap>>,
) -> Result<Option<Capped<Connection>>, EngineError> {
    let (permit, capped) = match (cap, &account.imap) {
        (Some(cap), Some(ep)) => match cap.try_acquire(&ep.host) {
            Some(p) => (Some(p), Some((cap.clone(), ep.host.clone()))),
            None => return Ok(None),
        },
        _ => (None, None),
    };
    let conn = connect_ignoring(account, disabled).await?;
    Ok(Some(Capped::new(conn, permit, capped)))
}

async fn smtp_config(account: &Account, login: Login) -> Result<SmtpConfig, EngineError> {
    let ep = account
        .smtp
        .clone()
        .ok_or_else(|| EngineError::Config("no SMTP server configured for sending".into()))?;
    let (password, bearer) = match login {
        Login::Password(p) => (p, false),
        Login::Bearer(t) => (t, true),
    };
    let ca_pem = match &account.ca_file {
        Some(f) => Some(
            tokio::fs::read(f)
                .await
                .map_err(|e| EngineError::Config(format!("cannot read CA file {f}: {e}")))?,
        ),
        None => None,
    };
    Ok(SmtpConfig {
        endpoint: ep,
        username: Some(account.username.clone()),
        password: Some(password),
        bearer,
        ca_pem,
        allow_plaintext: account.allow_plaintext,
    })
}

/// Connects to the account's SMTP server and authenticates (with one fresh token and a second
/// try when an OAuth 2 token is refused). Nothing is sent.
pub async fn smtp_connect(account: &Account) -> Result<smtp::SmtpSession, EngineError> {
    oauth::with_login(account.into(), |login| async move {
        let cfg = smtp_config(account, login).await?;
        Ok(smtp::connect(&cfg).await?)
    })
    .await
}

/// Tests an IMAP account: logs in and out, and with `smtp` authenticates to its SMTP server
/// when it has one. Returns the mechanisms used (`IMAP OAUTHBEARER, SMTP XOAUTH2`).
pub async fn test(account: &Account, smtp: bool) -> Result<String, EngineError> {
    let conn = connect(account).await?;
    let mut used = format!("IMAP {}", conn.mechanism());
    conn.logout().await;
    if smtp && account.smtp.is_some() {
        let session = smtp_connect(account).await?;
        used.push_str(&format!(", SMTP {}", session.mechanism()));
        session.quit().await;
    }
    Ok(used)
}

fn imap_flag(f: &Flag) -> String {
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Keyword(k) => k.clone(),
    }
}

/// The one server copy an IMAP email change refers to: mailbox, UID and the UIDVALIDITY the
/// UID was recorded under (a UID means nothing without it).
fn source(c: &EmailChange) -> Option<(MailboxId, u32, u32)> {
    c.source().iter().find_map(|l: &Location| {
        let uid = u32::try_from(l.uid?).ok()?;
        let uv = u32::try_from(l.uidvalidity?).ok()?;
        Some((l.mailbox_id, uid, uv))
    })
}

/// The outcome of one UID of a mutation, as read back by `imap-sync`.
fn outcome_of(o: &MutationOutcome, uid: u32) -> ItemOutcome {
    match o {
        MutationOutcome::Interrupted { reason } => ItemOutcome::Unknown {
            reason: reason.clone(),
        },
        MutationOutcome::Transient { reason, .. } => ItemOutcome::Transient {
            reason: reason.clone(),
            retry_after: None,
        },
        MutationOutcome::Permanent { reason, .. } => ItemOutcome::Permanent {
            reason: reason.clone(),
        },
        MutationOutcome::SourceGone { reason } => ItemOutcome::NotFound {
            reason: reason.clone(),
        },
        MutationOutcome::UidValidityChanged { expected, found } => ItemOutcome::NotFound {
            reason: format!(
                "the mailbox was re-created on the server (UIDVALIDITY {expected} is now {found})"
            ),
        },
        MutationOutcome::Ok { missing, .. } if missing.contains(&uid) => ItemOutcome::NotFound {
            reason: format!("UID {uid} is no longer in the mailbox (moved or expunged elsewhere)"),
        },
        MutationOutcome::Ok { refused, .. } if refused.contains(&uid) => ItemOutcome::Permanent {
            reason: format!("the server did not apply the change to UID {uid} (read back)"),
        },
        _ => ItemOutcome::Done,
    }
}

/// The worse of two outcomes (a permanent failure wins over a lost message over a transient
/// failure over success).
fn worse(a: ItemOutcome, b: ItemOutcome) -> ItemOutcome {
    fn rank(o: &ItemOutcome) -> u8 {
        match o {
            ItemOutcome::Permanent { .. } => 4,
            ItemOutcome::NotFound { .. } => 3,
            ItemOutcome::Transient { .. } | ItemOutcome::Unknown { .. } => 2,
            ItemOutcome::Relocated { .. } => 1,
            _ => 0,
        }
    }
    // Part of the change applied and part not sent: the whole is neither done nor untouched,
    // and only an uncertain retry (or a compensating undo) keeps the applied part in view.
    let applied = |o: &ItemOutcome| matches!(o, ItemOutcome::Done | ItemOutcome::Relocated { .. });
    let failed = |o: &ItemOutcome| matches!(o, ItemOutcome::Transient { .. });
    if (applied(&a) && failed(&b)) || (failed(&a) && applied(&b)) {
        let reason = match (&a, &b) {
            (ItemOutcome::Transient { reason, .. }, _)
            | (_, ItemOutcome::Transient { reason, .. }) => reason.clone(),
            _ => String::new(),
        };
        return ItemOutcome::Unknown {
            reason: format!("partly applied: {reason}"),
        };
    }
    if rank(&b) > rank(&a) { b } else { a }
}

/// Executes queued changes over one IMAP connection.
pub struct ImapExecutor<'a> {
    /// The connection (locked for the duration of a batch).
    pub conn: Mutex<&'a mut Connection>,
    /// The store.
    pub store: &'a Store,
    /// The account (SMTP settings for sends).
    pub account: &'a Account,
    /// The outbox, to journal each send's hand-over and acceptance as they happen.
    pub outbox: &'a Outbox,
}

impl ImapExecutor<'_> {
    /// Applies the email changes of a batch: all flag changes grouped by (mailbox, flag, on/off)
    /// into UID sets, then moves grouped by (from, to), then deletes grouped by mailbox, then
    /// presence checks of emails moved away and back. 1,000 "mark read" changes in one mailbox
    /// are one `UID STORE`.
    async fn emails(&self, items: &[(usize, &EmailChange)], out: &mut [Option<ItemOutcome>]) {
        // Groups are keyed by the UIDVALIDITY too: UIDs are only sent under the one they were
        // recorded with, which imap-sync checks against the freshly selected mailbox.
        type Group = (Vec<u32>, Vec<usize>);
        let mut add: BTreeMap<(MailboxId, u32, String), Group> = BTreeMap::new();
        let mut remove: BTreeMap<(MailboxId, u32, String), Group> = BTreeMap::new();
        let mut moves: BTreeMap<(MailboxId, u32, MailboxId), Group> = BTreeMap::new();
        let mut deletes: BTreeMap<(MailboxId, u32), Group> = BTreeMap::new();
        let mut confirms: BTreeMap<(MailboxId, u32), Group> = BTreeMap::new();
        for (i, c) in items {
            let Some((mailbox, uid, uv)) = source(c) else {
                // No server identity (placed by an optimistic move that the server did not
                // confirm, or its mailbox re-created): the sync must find it first.
                out[*i] = Some(ItemOutcome::NotFound {
                    reason: "the message has no server UID; looking for it after the next sync"
                        .into(),
                });
                continue;
            };
            for f in &c.flags {
                let map = if f.value { &mut add } else { &mut remove };
                let g = map.entry((mailbox, uv, imap_flag(&f.flag))).or_default();
                g.0.push(uid);
                g.1.push(*i);
            }
            match &c.target {
                Target::Mailboxes(to) => match to.first() {
                    Some(dest) if *dest != mailbox => {
                        let g = moves.entry((mailbox, uv, *dest)).or_default();
                        g.0.push(uid);
                        g.1.push(*i);
                    }
                    // Moved away and back before the server heard of it: check that another
                    // client did not move it meanwhile (a flag change's read-back checks that
                    // already). Gone means NotFound: found again after the sync, and moved back.
                    Some(_) if c.flags.is_empty() => {
                        let g = confirms.entry((mailbox, uv)).or_default();
                        g.0.push(uid);
                        g.1.push(*i);
                    }
                    _ => {}
                },
                Target::Destroy => {
                    let g = deletes.entry((mailbox, uv)).or_default();
                    g.0.push(uid);
                    g.1.push(*i);
                }
                _ => {}
            }
            out[*i] = Some(ItemOutcome::Done);
        }
        let mut muts = Vec::new();
        let mut owners: Vec<Group> = Vec::new();
        for ((mailbox, uidvalidity, flag), (uids, who)) in add {
            muts.push(ImapMutation::AddFlags {
                mailbox,
                uidvalidity,
                uids: uids.clone(),
                flags: vec![flag],
            });
            owners.push((uids, who));
        }
        for ((mailbox, uidvalidity, flag), (uids, who)) in remove {
            muts.push(ImapMutation::RemoveFlags {
                mailbox,
                uidvalidity,
                uids: uids.clone(),
                flags: vec![flag],
            });
            owners.push((uids, who));
        }
        for ((from, uidvalidity, to), (uids, who)) in moves {
            muts.push(ImapMutation::Move {
                from,
                uidvalidity,
                uids: uids.clone(),
                to,
            });
            owners.push((uids, who));
        }
        for ((mailbox, uidvalidity), (uids, who)) in deletes {
            muts.push(ImapMutation::Delete {
                mailbox,
                uidvalidity,
                uids: uids.clone(),
            });
            owners.push((uids, who));
        }
        for ((mailbox, uidvalidity), (uids, who)) in confirms {
            muts.push(ImapMutation::Confirm {
                mailbox,
                uidvalidity,
                uids: uids.clone(),
            });
            owners.push((uids, who));
        }
        if muts.is_empty() {
            return;
        }
        let known = self.addressed_mailboxes(&muts).await;
        let results = {
            let mut conn = self.conn.lock().await;
            imap::apply_with(&mut conn, self.store, &muts, &known).await
        };
        for ((m, (uids, who)), res) in muts.iter().zip(owners).zip(results) {
            // A move answered with COPYUID: tell the outbox each copy's new identity so the local
            // row follows it instead of being duplicated by the next sync.
            let relocated: HashMap<u32, (MailboxId, u32, u32)> = match (m, &res) {
                (
                    ImapMutation::Move { to, .. },
                    MutationOutcome::Ok {
                        uidvalidity: Some(v),
                        moved,
                        ..
                    },
                ) => moved
                    .iter()
                    .map(|(old, new)| (*old, (*to, *v, *new)))
                    .collect(),
                _ => HashMap::new(),
            };
            // A group's `uids` and `who` were pushed pairwise, so they line up.
            for (uid, i) in uids.into_iter().zip(who) {
                let mut o = outcome_of(&res, uid);
                if matches!(m, ImapMutation::Move { .. })
                    && let Some((to, v, new_uid)) = relocated.get(&uid)
                {
                    o = worse(
                        o,
                        ItemOutcome::Relocated {
                            remote_id: Some(emails::imap_remote_id(*to, *v, *new_uid)),
                            locations: vec![Location {
                                mailbox_id: *to,
                                uidvalidity: Some(i64::from(*v)),
                                uid: Some(i64::from(*new_uid)),
                                modseq: None,
                            }],
                            size: None,
                        },
                    );
                }
                out[i] = Some(match out[i].take() {
                    Some(prev) => worse(prev, o),
                    None => o,
                });
            }
        }
    }

    /// Saves a draft's new content: APPEND to its mailbox with its flags (`\Draft` among
    /// them), then expunge the version it replaces (under that copy's UIDVALIDITY). The new
    /// version is on the server before the old one goes, so a reader never sees neither; a
    /// failed expunge leaves both (the next sync shows the old one again) rather than retrying
    /// the APPEND and piling up copies.
    async fn draft(
        &self,
        c: &EmailChange,
        msg: &mailsync_outbox::OutgoingMessage,
        attempt: Attempt,
    ) -> ItemOutcome {
        let built = match compose::Draft::try_from(msg).and_then(|d| compose::build_draft(&d)) {
            Ok(b) => b,
            Err(e) => return item_outcome(&e),
        };
        let Some(dest) = c.destination() else {
            return ItemOutcome::Permanent {
                reason: "a draft with no mailbox to go to".into(),
            };
        };
        let f = c.final_flags();
        let mut flags = vec!["\\Draft".to_owned()];
        for (on, name) in [
            (f.seen, "\\Seen"),
            (f.flagged, "\\Flagged"),
            (f.answered, "\\Answered"),
        ] {
            if on {
                flags.push(name.into());
            }
        }
        flags.extend(f.keywords.iter().cloned());
        // The size of the stored copy is the bytes sent (RFC822.SIZE counts the message as
        // stored, and a server stores what it was given), unless a retry takes the copy an
        // earlier attempt stored, whose bytes it did not send (their Date may differ).
        let size = (attempt != Attempt::Uncertain)
            .then(|| i64::try_from(built.raw.len()).ok())
            .flatten();
        let mut conn = self.conn.lock().await;
        let appended = imap::apply(
            &mut conn,
            self.store,
            &[ImapMutation::Append {
                mailbox: dest,
                raw: built.raw,
                flags,
                internal_date: None,
                // The draft's row takes the new copy's identity before the old copy is
                // expunged (which removes the rows of the UIDs it expunges).
                local: Some(c.email_id),
                // An earlier attempt whose answer was lost may have stored this version.
                look_first: (attempt == Attempt::Uncertain).then(|| AppendedBefore {
                    message_id: msg.message_id.clone(),
                    except: source(c)
                        .filter(|(mailbox, ..)| *mailbox == dest)
                        .map(|(_, uid, uidvalidity)| (uidvalidity, uid)),
                }),
            }],
        )
        .await;
        let location = match appended.first() {
            Some(MutationOutcome::Ok {
                uidvalidity: Some(v),
                appended_uid: Some(uid),
                ..
            }) => Location {
                mailbox_id: dest,
                uidvalidity: Some(i64::from(*v)),
                uid: Some(i64::from(*uid)),
                modseq: None,
            },
            // No APPENDUID (no UIDPLUS): the next sync finds the new copy.
            Some(MutationOutcome::Ok { .. }) => Location::plain(dest),
            Some(o) => return outcome_of(o, 0),
            None => {
                return ItemOutcome::Transient {
                    reason: "no outcome for the APPEND".into(),
                    retry_after: None,
                };
            }
        };
        if let Some((mailbox, uid, uidvalidity)) = source(c) {
            let removed = imap::apply(
                &mut conn,
                self.store,
                &[ImapMutation::Delete {
                    mailbox,
                    uidvalidity,
                    uids: vec![uid],
                }],
            )
            .await;
            match removed.first().map(|o| (o, outcome_of(o, uid))) {
                Some((_, ItemOutcome::Done | ItemOutcome::NotFound { .. })) => {}
                // Cut or refused for now: the save is tried again, as uncertain, which finds
                // the new version above instead of appending it twice and removes the old.
                Some((_, t @ ItemOutcome::Transient { .. }))
                | Some((_, t @ ItemOutcome::Unknown { .. })) => {
                    return t;
                }
                Some((o, _)) => tracing::warn!(
                    ?o,
                    "The draft's new version is saved; removing the old one failed."
                ),
                None => {}
            }
        }
        let remote_id = match (location.uidvalidity, location.uid) {
            (Some(v), Some(u)) => Some(emails::imap_remote_id(
                dest,
                u32::try_from(v).unwrap_or_default(),
                u32::try_from(u).unwrap_or_default(),
            )),
            _ => None,
        };
        ItemOutcome::Relocated {
            remote_id,
            locations: vec![location],
            size,
        }
    }

    /// Is a copy with this Message-ID in the Sent mailbox (as last synced)?
    async fn in_sent(&self, sent: MailboxId, message_id: &str) -> Result<bool, StoreError> {
        for e in emails::find_by_message_id(self.store.conn(), self.account.id, message_id).await? {
            if emails::memberships(self.store.conn(), e.id)
                .await?
                .iter()
                .any(|m| m.mailbox_id == sent)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The mailboxes the mutations address, read once for the batch (imap-sync takes them
    /// instead of reading them again): the database's, and for one the database no longer has
    /// because the user deleted it and the delete is still queued, the name and UIDVALIDITY
    /// the queue recorded. A message moved out of a mailbox that was deleted next is moved
    /// first (queue order) and must be reached there, or the mailbox's delete takes it with it
    /// (model test, Dovecot seed 26010: a message deleted to the trash, then its mailbox). A
    /// mailbox that cannot be read is left out: imap-sync reads it, or finds it gone.
    async fn addressed_mailboxes(&self, muts: &[ImapMutation]) -> Vec<mailboxes::Mailbox> {
        let mut ids: Vec<MailboxId> = muts
            .iter()
            .filter_map(ImapMutation::source_mailbox)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut known = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match mailboxes::get(self.store.conn(), id).await {
                Ok(m) => known.push(m),
                Err(StoreError::NotFound { .. }) => missing.push(id),
                Err(_) => {}
            }
        }
        if missing.is_empty() {
            return known;
        }
        let queued = match self.outbox.mailboxes_being_deleted(self.account.id).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the queued mailbox deletes.");
                return known;
            }
        };
        known.extend(
            queued
                .into_iter()
                .filter(|op| missing.contains(&op.mailbox_id))
                .map(|op| mailboxes::Mailbox {
                    id: op.mailbox_id,
                    account_id: self.account.id,
                    name: op.remote_id.clone(),
                    remote_id: op.remote_id,
                    parent_remote_id: None,
                    delimiter: None,
                    selectable: true,
                    role: None,
                    status: mailboxes::MailboxStatus {
                        uidvalidity: op.seen.and_then(|s| s.uidvalidity),
                        ..Default::default()
                    },
                }),
        );
        known
    }

    /// The batch's email changes whose email's identity was retired, by position, each with its
    /// source's UID taken away (so it is looked for after the next sync, as a copy without a
    /// UID is). A UID is sent only under the UIDVALIDITY it was recorded with, but a server
    /// may hand an old UIDVALIDITY out again (Cyrus: a mailbox renamed into the name keeps its
    /// own), and the UID then names another message: the queued delete of a message whose
    /// mailbox was renumbered twice expunged the message a move had just put at that UID. A
    /// sync that renumbers a mailbox retires every identity held there
    /// (`uids::retire_identities`), which no UIDVALIDITY coming back revives. (An identity
    /// that merely differs from the source is normal: a draft save cut after its APPEND holds
    /// the new version's, and its retry removes the old one by the source's UID.)
    async fn retired_sources(
        &self,
        batch: &[QueuedChange],
    ) -> Result<HashMap<usize, EmailChange>, BatchError> {
        let sourced: Vec<(usize, &EmailChange)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, q)| match &q.operation {
                Operation::Email(c) if source(c).is_some() => Some((i, c)),
                _ => None,
            })
            .collect();
        if sourced.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<EmailId> = sourced.iter().map(|(_, c)| c.email_id).collect();
        let held = emails::remote_ids_by_id(self.store.conn(), &ids)
            .await
            .map_err(|e| batch_error(&e.into()))?;
        Ok(sourced
            .into_iter()
            .filter(|(_, c)| held.get(&c.email_id).is_some_and(|r| emails::is_retired(r)))
            .map(|(i, c)| {
                tracing::info!(email = %c.email_id, "A queued change's message was in a mailbox renumbered since; looking for it after the next sync.");
                let mut c = c.clone();
                for l in &mut c.before.mailboxes {
                    l.uid = None;
                }
                (i, c)
            })
            .collect())
    }

    /// Refreshes Sent from the server and tells whether a copy with this Message-ID is there.
    async fn filed(&self, sent: &mailboxes::Mailbox, message_id: &str) -> Result<bool, BatchError> {
        {
            let mut conn = self.conn.lock().await;
            let opts = SyncOptions::default();
            imap::sync_mailbox(&mut conn, self.store, self.account.id, sent, &opts)
                .await
                .map_err(|e| batch_error(&e.into()))?;
        }
        self.in_sent(sent.id, message_id)
            .await
            .map_err(|e| batch_error(&e.into()))
    }

    /// A send over SMTP, then APPEND to Sent, journaled in the outbox as it goes: "handing"
    /// before `MAIL FROM`, "accepted" right after the 250 to DATA (before the APPEND starts).
    /// An uncertain attempt (handed, acceptance unknown) is only looked for in Sent; an
    /// accepted one is only filed (unless a copy is already there). `Submitted` when the copy
    /// could not be filed yet.
    async fn send(
        &self,
        q: &QueuedChange,
        msg: &mailsync_outbox::OutgoingMessage,
    ) -> Result<ItemOutcome, BatchError> {
        let draft = match compose::Draft::try_from(msg) {
            Ok(d) => d,
            Err(e) => return Ok(item_outcome(&e)),
        };
        let built = match compose::build(&draft) {
            Ok(b) => b,
            Err(e) => return Ok(item_outcome(&e)),
        };
        let sent = mailboxes::find_by_role(self.store.conn(), self.account.id, Role::Sent)
            .await
            .map_err(|e| batch_error(&e.into()))?;
        match q.attempt {
            Attempt::Uncertain => {
                // Handed to the SMTP server, acceptance unknown. The copy is filed only after
                // acceptance, so a copy in Sent proves it went out; no copy proves nothing.
                if let Some(s) = &sent
                    && self.filed(s, &msg.message_id).await?
                {
                    return Ok(ItemOutcome::Done);
                }
                return Ok(ItemOutcome::Unconfirmed {
                    reason: "handed to the SMTP server, interrupted before its answer was \
                             recorded; no copy with its Message-ID in Sent"
                        .into(),
                });
            }
            Attempt::Submitted => {
                // Accepted earlier; an interrupted APPEND may have completed.
                if let Some(s) = &sent
                    && self.filed(s, &msg.message_id).await?
                {
                    return Ok(ItemOutcome::Done);
                }
            }
            Attempt::Fresh => {
                let session = match smtp_connect(self.account).await {
                    Ok(s) => s,
                    Err(e) => {
                        return match classify(&e) {
                            Disposition::Offline | Disposition::NeedsUser => Err(batch_error(&e)),
                            _ => Ok(item_outcome(&e)),
                        };
                    }
                };
                if let Err(e) = self.outbox.send_handing(q.id).await {
                    // Not journaled, so not sent: the hand-over must be on record first.
                    return Ok(item_outcome(&e.into()));
                }
                crate::failpoint::hit("send:handed").await;
                if let Err(e) = session.submit(&built).await {
                    return Ok(item_outcome(&EngineError::from(e)));
                }
                crate::failpoint::hit("send:delivered").await;
                if let Err(e) = self.outbox.send_accepted(q.id, None).await {
                    // The outcome below records it as accepted all the same.
                    tracing::warn!(change = %q.id, error = %e, "Could not journal the acceptance; filing anyway.");
                }
                crate::failpoint::hit("send:accepted").await;
            }
        }
        let Some(sent) = sent else {
            // Nowhere to file a copy: the message is sent, which is what matters.
            tracing::warn!("No Sent mailbox; the sent message is not filed.");
            return Ok(ItemOutcome::Done);
        };
        let res = {
            let mut conn = self.conn.lock().await;
            imap::apply(
                &mut conn,
                self.store,
                &[ImapMutation::Append {
                    mailbox: sent.id,
                    raw: built.raw.clone(),
                    flags: vec!["\\Seen".into()],
                    internal_date: None,
                    local: None,
                    // Filing a send looks in Sent itself first (`filed`).
                    look_first: None,
                }],
            )
            .await
        };
        Ok(match res.first() {
            Some(MutationOutcome::Ok { .. }) => {
                crate::failpoint::hit("send:filed").await;
                ItemOutcome::Done
            }
            // Sent, not filed: persisted as submitted so only the APPEND is retried.
            _ => ItemOutcome::Submitted,
        })
    }
}

#[async_trait::async_trait]
impl Executor for ImapExecutor<'_> {
    async fn execute(
        &self,
        _account: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        let mut out: Vec<Option<ItemOutcome>> = vec![None; batch.len()];
        let retired = self.retired_sources(batch).await?;
        let items: Vec<(usize, &EmailChange)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, q)| match &q.operation {
                Operation::Email(c) if c.content.is_none() => {
                    Some((i, retired.get(&i).unwrap_or(c)))
                }
                _ => None,
            })
            .collect();
        self.emails(&items, &mut out).await;
        for (i, q) in batch.iter().enumerate() {
            if let Operation::Email(c) = &q.operation
                && let Some(msg) = &c.content
            {
                let c = retired.get(&i).unwrap_or(c);
                out[i] = Some(self.draft(c, msg, q.attempt).await);
            }
        }
        for (i, q) in batch.iter().enumerate() {
            if let Operation::Mailbox(op) = &q.operation {
                let mut conn = self.conn.lock().await;
                out[i] = Some(
                    crate::mailbox_admin::imap_execute(&mut conn, self.store, op, q.attempt).await,
                );
            }
        }
        for (i, q) in batch.iter().enumerate() {
            if let Operation::Send(msg) = &q.operation {
                out[i] = Some(self.send(q, msg).await?);
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or(ItemOutcome::Unknown {
                    reason: "no outcome recorded".into(),
                })
            })
            .collect())
    }
}

/// How long a mailbox that failed `n` times in a row is left out of syncs: 5 s doubling, at
/// most 5 minutes.
fn mailbox_backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Runs cycles and IDLE waits for an IMAP account.
pub struct ImapDriver {
    store: Store,
    outbox: Arc<Outbox>,
    account: Account,
    conn: Option<Capped<Connection>>,
    /// The daemon's per-host connection cap, if any.
    cap: Option<Arc<HostCap>>,
    /// True while an IDLE is in progress; still true at the next cycle means the wait was
    /// abandoned mid-IDLE and the connection must be replaced.
    idling: bool,
    /// Mailboxes isolated after failing: consecutive failures and when to try again.
    isolated: HashMap<MailboxId, (u32, std::time::Instant)>,
    /// How the account is watched between cycles without NOTIFY.
    watch: ImapWatch,
    /// The extra IDLE connections (without NOTIFY), each on one mailbox.
    watchers: Vec<Watcher>,
    /// Counters each mailbox had at the last STATUS round, by name: a round wakes a cycle for
    /// what differs from these (or, the first time, from what the store recorded).
    seen: HashMap<String, imap::MailboxCounters>,
    /// When a change was last noticed in a mailbox (by name), to rank the extra IDLEs.
    activity: HashMap<String, std::time::Instant>,
}

/// How an IMAP account is watched between cycles when the server has no NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImapWatch {
    /// Connections the account may hold in all: the sync connection (which IDLEs on INBOX
    /// between cycles), the on-demand connection for bodies and attachments
    /// (`fetcher.rs`), and extra IDLE connections with what is left. Values under 2 count as 2.
    pub connections: usize,
    /// How often the mailboxes nobody IDLEs on are looked at (one LIST-STATUS, or pipelined
    /// STATUS): their new mail is at most about this late.
    pub status_interval: Duration,
    /// Capabilities to ignore (e.g. `NOTIFY`, to use this path on a server that has it).
    pub disabled_extensions: Vec<String>,
}

impl Default for ImapWatch {
    fn default() -> Self {
        Self {
            connections: 3,
            status_interval: Duration::from_secs(3),
            disabled_extensions: Vec::new(),
        }
    }
}

impl ImapWatch {
    /// How many extra IDLE connections the budget leaves.
    fn extra_idles(&self) -> usize {
        self.connections.max(2) - 2
    }
}

/// One extra IDLE connection.
#[derive(Default)]
struct Watcher {
    conn: Option<Capped<Connection>>,
    /// Still true when the worker dropped the wait mid-IDLE: replace the connection.
    idling: bool,
}

/// How useful an IDLE on this mailbox is, smaller first: where mail arrives on its own
/// (folders filled by server-side filters, archives), then Junk, then the folders that change
/// mostly by this user's own actions (Sent, Drafts, Trash).
fn role_rank(role: Option<Role>) -> u8 {
    match role {
        None | Some(Role::Archive) => 0,
        Some(Role::Junk) => 1,
        Some(_) => 2,
    }
}

/// The mailboxes (other than `inbox`) worth an IDLE of their own, best first: recent activity
/// noticed within the last hour first (newest first), then by [`role_rank`], then by name (so
/// the choice is stable).
fn rank_for_idle<'a>(
    candidates: &'a [mailboxes::Mailbox],
    activity: &HashMap<String, std::time::Instant>,
    now: std::time::Instant,
) -> Vec<&'a mailboxes::Mailbox> {
    let recent = |m: &mailboxes::Mailbox| {
        activity
            .get(&m.remote_id)
            .filter(|t| now.saturating_duration_since(**t) < Duration::from_secs(3600))
            .copied()
    };
    let mut v: Vec<&mailboxes::Mailbox> = candidates.iter().collect();
    v.sort_by(|a, b| {
        recent(b)
            .cmp(&recent(a))
            .then(role_rank(a.role).cmp(&role_rank(b.role)))
            .then(a.remote_id.cmp(&b.remote_id))
    });
    v
}

/// Whether a STATUS round's counters for a mailbox mean a change: against the previous round
/// when there was one, else against what the store recorded at the last sync (UIDVALIDITY,
/// UIDNEXT, HIGHESTMODSEQ; the stored message count may be a local recount, so it is not
/// compared). Comparing with the previous round too means a mailbox whose stored values never
/// match (isolated after failures, say) wakes one cycle per server change, not one per round.
fn status_changed(
    now: &imap::MailboxCounters,
    previous: Option<&imap::MailboxCounters>,
    stored: Option<&mailboxes::Mailbox>,
) -> bool {
    if let Some(p) = previous {
        return p != now;
    }
    let Some(m) = stored else {
        // A mailbox the store does not know yet: the next sync lists it.
        return true;
    };
    let differs = |a: Option<i64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if i64::try_from(b).ok() != Some(a));
    differs(m.status.uidvalidity, now.uidvalidity.map(u64::from))
        || differs(m.status.uidnext, now.uidnext.map(u64::from))
        || differs(m.status.highestmodseq, now.highestmodseq)
}

impl ImapDriver {
    /// A driver for `account`; it connects lazily.
    pub fn new(store: Store, outbox: Arc<Outbox>, account: Account) -> Self {
        Self {
            store,
            outbox,
            account,
            conn: None,
            cap: None,
            idling: false,
            isolated: HashMap::new(),
            watch: ImapWatch::default(),
            watchers: Vec::new(),
            seen: HashMap::new(),
            activity: HashMap::new(),
        }
    }

    /// How the account is watched without NOTIFY (connection budget, STATUS interval).
    #[must_use]
    pub fn with_watch(mut self, watch: ImapWatch) -> Self {
        self.watch = watch;
        self
    }

    /// Caps this account's connections with the daemon's per-host cap.
    #[must_use]
    pub fn with_host_cap(mut self, cap: Option<Arc<HostCap>>) -> Self {
        self.cap = cap;
        self
    }

    async fn connection(&mut self) -> Result<&mut Connection, EngineError> {
        if self.idling {
            self.idling = false;
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(
                connect_capped(
                    &self.account,
                    &self.watch.disabled_extensions,
                    self.cap.as_ref(),
                )
                .await?,
            );
        }
        self.conn
            .as_deref_mut()
            .ok_or_else(|| EngineError::Config("no IMAP connection".into()))
    }

    /// Records how each mailbox fared: a failing one is isolated (its own backoff and a
    /// sync-log row) while the others sync and IDLE goes on; a mailbox whose local view is
    /// stale (classified Resync, e.g. deleted meanwhile) loses only its own checkpoint.
    async fn isolate_failures(
        &mut self,
        mailboxes: Vec<imap::MailboxOutcome>,
    ) -> Result<(), EngineError> {
        for m in mailboxes {
            match m.result {
                imap::MailboxResult::Failed(e) => {
                    tracing::warn!(mailbox = %m.name, error = %e, "Mailbox failed to sync; isolating it.");
                    if classify_imap(&e) == Disposition::Resync {
                        checkpoints::delete(
                            self.store.conn(),
                            self.account.id,
                            &Scope::imap_mailbox(m.mailbox),
                        )
                        .await?;
                    }
                    let n = self
                        .isolated
                        .get(&m.mailbox)
                        .map_or(0, |(n, _)| *n)
                        .saturating_add(1);
                    self.isolated.insert(
                        m.mailbox,
                        (n, std::time::Instant::now() + mailbox_backoff(n)),
                    );
                    let row = sync_log::start(self.store.conn(), self.account.id).await?;
                    sync_log::finish(
                        self.store.conn(),
                        row,
                        Err(&format!("mailbox {}: {e}", m.name)),
                        SyncCounts::default(),
                    )
                    .await?;
                }
                imap::MailboxResult::Deferred => {}
                _ => {
                    self.isolated.remove(&m.mailbox);
                }
            }
        }
        Ok(())
    }
}

impl ImapDriver {
    /// Without NOTIFY: IDLE on INBOX (the sync connection) and on the most useful other
    /// mailboxes (one extra connection each, within the budget), all awaited together in this
    /// task, with a STATUS round over the remaining mailboxes every
    /// [`ImapWatch::status_interval`] between INBOX IDLEs. The first change anywhere ends every
    /// wait cleanly (`DONE`) and returns, so a cycle runs.
    async fn watch_without_notify(&mut self, inbox: mailboxes::Mailbox) -> Result<(), EngineError> {
        let all = match mailboxes::list(self.store.conn(), self.account.id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the mailboxes; watching INBOX only.");
                Vec::new()
            }
        };
        let others: Vec<mailboxes::Mailbox> = all
            .iter()
            .filter(|m| m.selectable && m.id != inbox.id)
            .cloned()
            .collect();
        let now = std::time::Instant::now();
        let chosen: Vec<mailboxes::Mailbox> = rank_for_idle(&others, &self.activity, now)
            .into_iter()
            .take(self.watch.extra_idles())
            .cloned()
            .collect();
        self.watchers.resize_with(chosen.len(), Watcher::default);
        for w in &mut self.watchers {
            if std::mem::take(&mut w.idling) {
                w.conn = None;
            }
            if w.conn.as_ref().is_some_and(|c| !c.is_usable()) {
                w.conn = None;
            }
            if w.conn.is_none() {
                // Never waits for a place under the host cap: an extra IDLE is a nicety.
                match try_connect_capped(
                    &self.account,
                    &self.watch.disabled_extensions,
                    self.cap.as_ref(),
                )
                .await
                {
                    Ok(c) => w.conn = c,
                    // The STATUS round does not cover it this time; the next wait tries again.
                    Err(e) => tracing::debug!(error = %e, "Could not open an IDLE connection."),
                }
            }
        }
        // Mailboxes without a live IDLE of their own (not chosen, or no connection for it now)
        // are in the STATUS round.
        let round: std::collections::HashSet<String> = others
            .iter()
            .filter(|m| {
                !chosen
                    .iter()
                    .zip(&self.watchers)
                    .any(|(c, w)| c.id == m.id && w.conn.is_some())
            })
            .map(|m| m.remote_id.clone())
            .collect();
        let stored: HashMap<&str, &mailboxes::Mailbox> =
            all.iter().map(|m| (m.remote_id.as_str(), m)).collect();
        let interval = self.watch.status_interval.max(Duration::from_millis(100));
        let stop = CancellationToken::new();
        let stop = &stop;
        let Self {
            conn,
            idling,
            watchers,
            seen,
            activity,
            ..
        } = self;
        let conn = conn
            .as_mut()
            .ok_or_else(|| EngineError::Config("no IMAP connection".into()))?;
        let conn_cap = conn.handle();
        let conn: &mut Connection = conn;
        // Set before waiting: if the worker drops this future mid-IDLE, the flags stay set.
        *idling = true;
        let main = async {
            let r = inbox_and_round(conn, &inbox, &round, &stored, seen, interval, stop).await;
            stop.cancel();
            r
        };
        // Another connection of the host waits for a place: end every wait (see `hostcap`).
        let yield_place = async {
            tokio::select! {
                () = hostcap::contended(conn_cap) => stop.cancel(),
                () = stop.cancelled() => {}
            }
        };
        let extras = watchers
            .iter_mut()
            .zip(&chosen)
            .filter(|(w, _)| w.conn.is_some())
            .map(|(w, mb)| async move {
                let Some(c) = w.conn.as_mut() else {
                    return (mb.remote_id.as_str(), Ok(IdleOutcome::Woken));
                };
                w.idling = true;
                let r = imap::idle(c, mb, stop.cancelled(), IDLE_MAX).await;
                match &r {
                    Ok(o) => {
                        w.idling = false;
                        if *o != IdleOutcome::Woken {
                            stop.cancel();
                        }
                    }
                    Err(_) => {
                        // Let the others end cleanly; this one reconnects at the next wait.
                        w.conn = None;
                        w.idling = false;
                        stop.cancel();
                    }
                }
                (mb.remote_id.as_str(), r)
            });
        let (main_res, extra_res, ()) =
            futures::join!(main, futures::future::join_all(extras), yield_place);
        *idling = false;
        let now = std::time::Instant::now();
        for (name, r) in extra_res {
            match r {
                Ok(IdleOutcome::Changed) => {
                    tracing::debug!(mailbox = name, "IDLE reported a change.");
                    activity.insert(name.to_owned(), now);
                }
                Err(e) => tracing::debug!(mailbox = name, error = %e, "IDLE connection failed."),
                Ok(_) => {}
            }
        }
        let changed = main_res?;
        for name in changed {
            tracing::debug!(mailbox = %name, "The STATUS round saw a change.");
            activity.insert(name, now);
        }
        Ok(())
    }
}

/// IDLE on INBOX in slices of `interval`, a STATUS round over `round` after each; returns the
/// mailboxes the round saw change (empty when INBOX changed, `stop` fired, or the IDLE limit
/// passed).
async fn inbox_and_round(
    conn: &mut Connection,
    inbox: &mailboxes::Mailbox,
    round: &std::collections::HashSet<String>,
    stored: &HashMap<&str, &mailboxes::Mailbox>,
    seen: &mut HashMap<String, imap::MailboxCounters>,
    interval: Duration,
    stop: &CancellationToken,
) -> Result<Vec<String>, imap::Error> {
    let deadline = tokio::time::Instant::now() + IDLE_MAX;
    loop {
        match imap::idle(conn, inbox, stop.cancelled(), interval).await? {
            IdleOutcome::Timeout => {}
            _ => return Ok(Vec::new()),
        }
        if round.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            continue;
        }
        let mut changed = Vec::new();
        let names: Vec<String> = round.iter().cloned().collect();
        for (name, counters) in imap::status_round(conn, &names).await? {
            // LIST-STATUS answers for every mailbox: only the round's own count.
            if !round.contains(&name) {
                continue;
            }
            if status_changed(
                &counters,
                seen.get(&name),
                stored.get(name.as_str()).copied(),
            ) {
                changed.push(name.clone());
            }
            seen.insert(name, counters);
        }
        if !changed.is_empty() || stop.is_cancelled() || tokio::time::Instant::now() >= deadline {
            return Ok(changed);
        }
    }
}

#[async_trait::async_trait]
impl Remote for ImapDriver {
    async fn flush(
        &mut self,
        outbox: &Outbox,
        account: AccountId,
    ) -> Result<FlushReport, EngineError> {
        let store = self.store.clone();
        let acc = self.account.clone();
        let queued = outbox.counts(account).await?.queued() > 0;
        let conn = self.connection().await?;
        if queued {
            // A mailbox another client renamed keeps its row (and UIDs); follow the new name
            // before the flush addresses it, rather than losing the changes to the old one.
            imap::follow_renames(conn, &store, account).await?;
        }
        let executor = ImapExecutor {
            conn: Mutex::new(&mut *conn),
            store: &store,
            account: &acc,
            outbox,
        };
        Ok(outbox.flush(account, &executor).await?)
    }

    async fn sync(&mut self) -> Result<Synced, EngineError> {
        let now = std::time::Instant::now();
        let deferred: Vec<MailboxId> = self
            .isolated
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(m, _)| *m)
            .collect();
        let store = self.store.clone();
        let account = self.account.clone();
        let opts = SyncOptions::default()
            .with_body_policy(account.body_policy)
            .with_deferred(deferred);
        let conn = self.connection().await?;
        let report = imap::sync_account(conn, &store, account.id, &opts).await?;
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let synced = Synced {
            mailboxes: i64::try_from(report.mailboxes.len()).unwrap_or(i64::MAX),
            added: to_i64(report.totals.added),
            updated: to_i64(report.totals.updated),
            removed: to_i64(report.totals.removed),
            complete: report.complete(),
        };
        self.isolate_failures(report.mailboxes).await?;
        Ok(synced)
    }
}

#[async_trait::async_trait]
impl AccountDriver for ImapDriver {
    async fn cycle(&mut self, _cancel: &CancellationToken) -> Result<SyncCounts, EngineError> {
        let outbox = self.outbox.clone();
        let account = self.account.id;
        let res = cycle::run(self, &outbox, account).await;
        if let Err(EngineError::Imap(e)) = &res
            && (e.is_connection() || e.is_auth())
        {
            self.conn = None;
        }
        res
    }

    async fn wait_for_change(&mut self) -> Result<(), EngineError> {
        let inbox =
            match mailboxes::find_by_role(self.store.conn(), self.account.id, Role::Inbox).await? {
                Some(m) => m,
                None => mailboxes::find_by_remote_id(self.store.conn(), self.account.id, "INBOX")
                    .await?
                    .ok_or_else(|| EngineError::Config("no INBOX to wait on".into()))?,
            };
        self.connection().await?;
        let notify = self
            .conn
            .as_ref()
            .is_some_and(|c| c.has_capability("NOTIFY"));
        let res = if notify {
            // NOTIFY (RFC 5465) watches every mailbox at once on the one connection.
            self.idling = true;
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| EngineError::Config("no IMAP connection".into()))?;
            let handle = conn.handle();
            // INBOX stays selected through the wait, so the cycle a new message starts
            // catches it up without re-selecting it (see `idle_account`).
            let r =
                imap::idle_account(conn, Some(&inbox), hostcap::contended(handle), IDLE_MAX).await;
            self.idling = false;
            r.map(|_| ()).map_err(EngineError::from)
        } else {
            self.watch_without_notify(inbox).await
        };
        if res.is_err() {
            self.conn = None;
        }
        if self.conn.as_ref().is_some_and(|c| c.is_contended()) {
            // Under the host cap another connection waits: give the place up, and look again
            // (a cycle, reconnecting in turn) after the STATUS interval.
            tracing::debug!("Giving the connection up to another waiting for the host cap.");
            self.conn = None;
            self.watchers.clear();
            tokio::time::sleep(self.watch.status_interval).await;
        }
        res
    }

    async fn reset_checkpoints(&mut self) -> Result<(), EngineError> {
        mailsync_store::checkpoints::delete_all(self.store.conn(), self.account.id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_store::mailboxes::{Mailbox, MailboxStatus};

    /// The outcomes of one change's steps (flags, then the move) combine into the one the
    /// outbox records: a step applied beside one not sent makes the whole uncertain.
    #[test]
    fn outcomes_of_one_change_combine() {
        let done = || ItemOutcome::Done;
        let cut = || ItemOutcome::Transient {
            reason: "cut".into(),
            retry_after: None,
        };
        let moved = || ItemOutcome::Relocated {
            remote_id: None,
            locations: Vec::new(),
            size: None,
        };
        let gone = || ItemOutcome::NotFound {
            reason: "gone".into(),
        };
        let refused = || ItemOutcome::Permanent {
            reason: "no".into(),
        };
        let kind = |o: &ItemOutcome| match o {
            ItemOutcome::Done => "done",
            ItemOutcome::Relocated { .. } => "relocated",
            ItemOutcome::Transient { .. } => "transient",
            ItemOutcome::Unknown { .. } => "unknown",
            ItemOutcome::NotFound { .. } => "not found",
            ItemOutcome::Permanent { .. } => "permanent",
            _ => "other",
        };
        let cases = [
            (done(), cut(), "unknown"),
            (cut(), done(), "unknown"),
            (moved(), cut(), "unknown"),
            (done(), done(), "done"),
            (cut(), cut(), "transient"),
            (done(), moved(), "relocated"),
            (gone(), cut(), "not found"),
            (done(), refused(), "permanent"),
        ];
        for (a, b, want) in cases {
            let what = format!("{a:?} + {b:?}");
            assert_eq!(kind(&worse(a, b)), want, "{what}");
        }
    }

    fn mb(id: i64, name: &str, role: Option<Role>) -> Mailbox {
        Mailbox {
            id: MailboxId(id),
            account_id: AccountId(1),
            remote_id: name.into(),
            name: name.into(),
            parent_remote_id: None,
            delimiter: Some("/".into()),
            selectable: true,
            role,
            status: MailboxStatus {
                total: 3,
                unread: 1,
                uidvalidity: Some(7),
                uidnext: Some(10),
                highestmodseq: Some(40),
            },
        }
    }

    fn names(v: &[&Mailbox]) -> Vec<String> {
        v.iter().map(|m| m.remote_id.clone()).collect()
    }

    /// Without activity: folders where mail arrives on its own first, then Junk, then the
    /// user's own Sent/Drafts/Trash; recent activity (newest first) beats roles; activity
    /// older than an hour no longer counts.
    #[test]
    fn idle_goes_to_recent_activity_then_roles_then_names() {
        let boxes = vec![
            mb(1, "Trash", Some(Role::Trash)),
            mb(2, "Sent", Some(Role::Sent)),
            mb(3, "Junk", Some(Role::Junk)),
            mb(4, "Lists", None),
            mb(5, "Archive", Some(Role::Archive)),
        ];
        let now = std::time::Instant::now() + Duration::from_secs(7200);
        let mut activity = HashMap::new();
        assert_eq!(
            names(&rank_for_idle(&boxes, &activity, now)),
            ["Archive", "Lists", "Junk", "Sent", "Trash"]
        );
        activity.insert("Trash".to_owned(), now - Duration::from_secs(60));
        activity.insert("Sent".to_owned(), now - Duration::from_secs(5));
        activity.insert("Lists".to_owned(), now - Duration::from_secs(4000));
        assert_eq!(
            names(&rank_for_idle(&boxes, &activity, now)),
            ["Sent", "Trash", "Archive", "Lists", "Junk"]
        );
    }

    /// The connection budget: sync and on-demand first, IDLEs with the rest.
    #[test]
    fn the_budget_leaves_idles_after_sync_and_on_demand() {
        let w = |n| ImapWatch {
            connections: n,
            ..ImapWatch::default()
        };
        assert_eq!(ImapWatch::default().extra_idles(), 1);
        assert_eq!(w(0).extra_idles(), 0);
        assert_eq!(w(2).extra_idles(), 0);
        assert_eq!(w(5).extra_idles(), 3);
    }

    /// A STATUS round wakes a cycle for counters that moved since the last round, or, the
    /// first time, for UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ the store does not have; a
    /// stored message count that differs (a local recount) alone does not.
    #[test]
    fn status_changes_against_the_last_round_or_the_store() {
        let stored = mb(1, "Lists", None);
        let mut c = imap::MailboxCounters::default();
        c.uidvalidity = Some(7);
        c.uidnext = Some(10);
        c.highestmodseq = Some(40);
        c.messages = Some(5);
        assert!(!status_changed(&c, None, Some(&stored)));
        let mut newer = c;
        newer.uidnext = Some(11);
        assert!(status_changed(&newer, None, Some(&stored)));
        assert!(status_changed(&newer, Some(&c), Some(&stored)));
        // Seen before: only a difference from the last round counts (no wake per round for
        // a mailbox whose stored values lag, e.g. isolated after failures).
        assert!(!status_changed(&newer, Some(&newer), Some(&stored)));
        let mut flagged = c;
        flagged.highestmodseq = Some(41);
        assert!(status_changed(&flagged, None, Some(&stored)));
        let mut seen = c;
        seen.unseen = Some(0);
        assert!(status_changed(&seen, Some(&c), Some(&stored)));
        assert!(
            status_changed(&c, None, None),
            "unknown mailbox: sync lists it"
        );
    }
}
