//! The IMAP side of a worker: the outbox executor for IMAP (flags grouped into UID sets, moves,
//! deletes; sends over SMTP then APPEND to Sent) and the [`AccountDriver`] that runs a cycle
//! (flush, mailboxes, every mailbox's emails) and waits in IDLE on INBOX.
//!
//! IDLE must end with `DONE` to leave the connection usable; when the worker abandons a wait
//! (woken, shut down) the driver notices the interrupted IDLE and reconnects on the next cycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mailsync_imap_sync as imap;
use mailsync_imap_sync::{
    Auth, Connection, IdleOutcome, ImapConfig, ImapMutation, MutationOutcome, SyncOptions,
};
use mailsync_outbox::{
    Attempt, BatchError, EmailChange, Executor, Flag, ItemOutcome, Location, Operation, Outbox,
    QueuedChange, Target,
};
use mailsync_store::accounts::Account;
use mailsync_store::sync_log::SyncCounts;
use mailsync_store::{
    AccountId, EmailId, MailboxId, Role, Store, StoreError, emails, mailboxes, queue,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::classify::{Disposition, batch_error, classify, item_outcome};
use crate::compose;
use crate::error::EngineError;
use crate::secret;
use crate::smtp::{self, SmtpConfig};
use crate::worker::AccountDriver;

/// How long one IDLE lasts before it is re-issued (servers drop IDLE after 30 minutes).
pub const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

/// The IMAP configuration of an account (resolves its secret).
pub async fn config(account: &Account) -> Result<ImapConfig, EngineError> {
    let ep = account
        .imap
        .as_ref()
        .ok_or_else(|| EngineError::Config("IMAP account without an IMAP server".into()))?;
    let password = secret::resolve(&account.secret_ref).await?;
    let mut cfg = ImapConfig::new(
        ep.host.clone(),
        ep.port,
        ep.security,
        account.username.clone(),
        Auth::Password(password.expose().to_owned()),
    )
    .with_allow_plaintext(account.allow_plaintext);
    if let Some(ca) = &account.ca_file {
        cfg = cfg.with_ca_file(ca.clone());
    }
    Ok(cfg)
}

async fn smtp_config(account: &Account) -> Result<SmtpConfig, EngineError> {
    let ep = account
        .smtp
        .clone()
        .ok_or_else(|| EngineError::Config("no SMTP server configured for sending".into()))?;
    let password = secret::resolve(&account.secret_ref).await?;
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
        ca_pem,
        allow_plaintext: account.allow_plaintext,
    })
}

/// Tests an IMAP account: logs in and out.
pub async fn test(account: &Account) -> Result<(), EngineError> {
    let cfg = config(account).await?;
    let conn = Connection::connect(&cfg).await?;
    conn.logout().await;
    Ok(())
}

/// Fetches, parses and caches one email's body over a fresh connection.
pub async fn fetch_body(
    store: &Store,
    account: &Account,
    email: EmailId,
) -> Result<(), EngineError> {
    let cfg = config(account).await?;
    let mut conn = Connection::connect(&cfg).await?;
    let res = imap::fetch_body(&mut conn, store, email).await;
    conn.logout().await;
    res?;
    Ok(())
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

/// The one server copy an IMAP email change refers to.
fn source(c: &EmailChange) -> Option<(MailboxId, u32, Option<i64>)> {
    c.source().iter().find_map(|l: &Location| {
        let uid = u32::try_from(l.uid?).ok()?;
        Some((l.mailbox_id, uid, l.uidvalidity))
    })
}

fn outcome_of(o: &MutationOutcome) -> ItemOutcome {
    match o {
        MutationOutcome::Transient { reason, .. } => ItemOutcome::Transient {
            reason: reason.clone(),
            retry_after: None,
        },
        MutationOutcome::Permanent { reason, .. } => ItemOutcome::Permanent {
            reason: reason.clone(),
        },
        _ => ItemOutcome::Done,
    }
}

/// The worse of two outcomes (a permanent failure wins over a transient one over success).
fn worse(a: ItemOutcome, b: ItemOutcome) -> ItemOutcome {
    fn rank(o: &ItemOutcome) -> u8 {
        match o {
            ItemOutcome::Permanent { .. } => 3,
            ItemOutcome::Transient { .. } | ItemOutcome::Unknown { .. } => 2,
            ItemOutcome::Relocated { .. } => 1,
            _ => 0,
        }
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
    /// into UID sets, then moves grouped by (from, to), then deletes grouped by mailbox. 1,000
    /// "mark read" changes in one mailbox are one `UID STORE`.
    async fn emails(&self, items: &[(usize, &EmailChange)], out: &mut [Option<ItemOutcome>]) {
        type Group = (Vec<u32>, Vec<usize>);
        let mut add: BTreeMap<(MailboxId, String), Group> = BTreeMap::new();
        let mut remove: BTreeMap<(MailboxId, String), Group> = BTreeMap::new();
        let mut moves: BTreeMap<(MailboxId, MailboxId), Group> = BTreeMap::new();
        let mut deletes: BTreeMap<MailboxId, Group> = BTreeMap::new();
        for (i, c) in items {
            let Some((mailbox, uid, _)) = source(c) else {
                // Not on the server under a known UID yet (e.g. appended, not synced back).
                out[*i] = Some(ItemOutcome::Transient {
                    reason: "the message has no server UID yet; retrying after the next sync"
                        .into(),
                    retry_after: None,
                });
                continue;
            };
            for f in &c.flags {
                let map = if f.value { &mut add } else { &mut remove };
                let g = map.entry((mailbox, imap_flag(&f.flag))).or_default();
                g.0.push(uid);
                g.1.push(*i);
            }
            match &c.target {
                Target::Mailboxes(to) => match to.first() {
                    Some(dest) if *dest != mailbox => {
                        let g = moves.entry((mailbox, *dest)).or_default();
                        g.0.push(uid);
                        g.1.push(*i);
                    }
                    _ => {}
                },
                Target::Destroy => {
                    let g = deletes.entry(mailbox).or_default();
                    g.0.push(uid);
                    g.1.push(*i);
                }
                _ => {}
            }
            out[*i] = Some(ItemOutcome::Done);
        }
        let mut muts = Vec::new();
        let mut owners: Vec<Vec<usize>> = Vec::new();
        for ((mailbox, flag), (uids, who)) in add {
            muts.push(ImapMutation::AddFlags {
                mailbox,
                uids,
                flags: vec![flag],
            });
            owners.push(who);
        }
        for ((mailbox, flag), (uids, who)) in remove {
            muts.push(ImapMutation::RemoveFlags {
                mailbox,
                uids,
                flags: vec![flag],
            });
            owners.push(who);
        }
        for ((from, to), (uids, who)) in moves {
            muts.push(ImapMutation::Move { from, uids, to });
            owners.push(who);
        }
        for (mailbox, (uids, who)) in deletes {
            muts.push(ImapMutation::Delete { mailbox, uids });
            owners.push(who);
        }
        if muts.is_empty() {
            return;
        }
        let results = {
            let mut conn = self.conn.lock().await;
            imap::apply(&mut conn, self.store, &muts).await
        };
        for ((m, who), res) in muts.iter().zip(owners).zip(results) {
            // A move answered with COPYUID: tell the outbox each copy's new identity so the local
            // row follows it instead of being duplicated by the next sync. A group's `uids` and
            // `who` were pushed pairwise, so they line up.
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
            let uids: &[u32] = match m {
                ImapMutation::Move { uids, .. } => uids,
                _ => &[],
            };
            for (k, i) in who.into_iter().enumerate() {
                let mut o = outcome_of(&res);
                if let Some((to, v, new_uid)) = uids.get(k).and_then(|u| relocated.get(u)) {
                    o = ItemOutcome::Relocated {
                        remote_id: Some(emails::imap_remote_id(*to, *v, *new_uid)),
                        locations: vec![Location {
                            mailbox_id: *to,
                            uidvalidity: Some(i64::from(*v)),
                            uid: Some(i64::from(*new_uid)),
                            modseq: None,
                        }],
                    };
                }
                let prev = out[i].take().unwrap_or(ItemOutcome::Done);
                out[i] = Some(worse(prev, o));
            }
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
                let cfg = smtp_config(self.account)
                    .await
                    .map_err(|e| batch_error(&e))?;
                let session = match smtp::connect(&cfg).await {
                    Ok(s) => s,
                    Err(e) => {
                        let e = EngineError::from(e);
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
        let items: Vec<(usize, &EmailChange)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, q)| match &q.operation {
                Operation::Email(c) => Some((i, c)),
                _ => None,
            })
            .collect();
        self.emails(&items, &mut out).await;
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

/// Runs cycles and IDLE waits for an IMAP account.
pub struct ImapDriver {
    store: Store,
    outbox: Arc<Outbox>,
    account: Account,
    conn: Option<Connection>,
    /// True while an IDLE is in progress; still true at the next cycle means the wait was
    /// abandoned mid-IDLE and the connection must be replaced.
    idling: bool,
}

impl ImapDriver {
    /// A driver for `account`; it connects lazily.
    pub fn new(store: Store, outbox: Arc<Outbox>, account: Account) -> Self {
        Self {
            store,
            outbox,
            account,
            conn: None,
            idling: false,
        }
    }

    async fn connection(&mut self) -> Result<&mut Connection, EngineError> {
        if self.idling {
            self.idling = false;
            self.conn = None;
        }
        if self.conn.is_none() {
            let cfg = config(&self.account).await?;
            self.conn = Some(Connection::connect(&cfg).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| EngineError::Config("no IMAP connection".into()))
    }

    async fn run_cycle(&mut self) -> Result<SyncCounts, EngineError> {
        let store = self.store.clone();
        let outbox = self.outbox.clone();
        let account = self.account.clone();
        let conn = self.connection().await?;
        let flushed = {
            let executor = ImapExecutor {
                conn: Mutex::new(&mut *conn),
                store: &store,
                account: &account,
                outbox: &outbox,
            };
            outbox.flush(account.id, &executor).await?
        };
        let opts = SyncOptions::default().with_body_policy(account.body_policy);
        let report = imap::sync_account(conn, &store, account.id, &opts).await?;
        // Show still-queued changes again on top of what the sync wrote.
        let pending: Vec<EmailId> = queue::list(store.conn(), Some(account.id))
            .await?
            .into_iter()
            .filter_map(|p| p.email_id)
            .collect();
        if !pending.is_empty() {
            let txn = store.begin().await?;
            mailsync_outbox::reapply_after_sync(&txn, &pending).await?;
            txn.commit().await.map_err(StoreError::from)?;
        }
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let nboxes = i64::try_from(report.mailboxes.len()).unwrap_or(i64::MAX);
        // The other mailboxes were synced; the cycle still reports the first failure, with its
        // typed cause so that it is classified like any other IMAP error.
        let mut first_failure = None;
        for m in report.mailboxes {
            if let imap::MailboxResult::Failed(e) = m.result {
                tracing::warn!(mailbox = %m.name, error = %e, "Mailbox failed to sync.");
                if first_failure.is_none() {
                    first_failure = Some(EngineError::Mailbox {
                        mailbox: m.name,
                        source: Box::new(e),
                    });
                }
            }
        }
        if let Some(e) = first_failure {
            return Err(e);
        }
        if let Some(p) = &flushed.paused {
            return Err(EngineError::from_pause(p));
        }
        Ok(SyncCounts {
            mailboxes: nboxes,
            emails_added: to_i64(report.totals.added),
            emails_updated: to_i64(report.totals.updated),
            emails_removed: to_i64(report.totals.removed),
            changes_flushed: i64::from(flushed.done),
        })
    }
}

#[async_trait::async_trait]
impl AccountDriver for ImapDriver {
    async fn cycle(&mut self, _cancel: &CancellationToken) -> Result<SyncCounts, EngineError> {
        let res = self.run_cycle().await;
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
        // Set before waiting: if the worker drops this future mid-IDLE, the flag stays set.
        self.idling = true;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| EngineError::Config("no IMAP connection".into()))?;
        let res = imap::idle(conn, &inbox, std::future::pending::<()>(), IDLE_MAX).await;
        self.idling = false;
        match res {
            Ok(IdleOutcome::Changed | IdleOutcome::Woken | IdleOutcome::Timeout) => Ok(()),
            Ok(_) => Ok(()),
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }

    async fn reset_checkpoints(&mut self) -> Result<(), EngineError> {
        mailsync_store::checkpoints::delete_all(self.store.conn(), self.account.id).await?;
        Ok(())
    }
}
