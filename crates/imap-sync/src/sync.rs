//! Mailbox and account sync: checkpoint-driven plans, streamed `UID FETCH` committed batch by
//! batch with its checkpoint, QRESYNC/CONDSTORE change detection with fallbacks, UIDVALIDITY
//! rescans that re-match by Message-ID, optional body download (bodies the policy wants and the
//! cache lacks are a debt every sync pays, in bounded chunks).

use std::fmt;
use std::ops::AddAssign;
use std::sync::Arc;

use std::collections::HashMap;

use mailsync_store::bodies::{self, Body, DebtScope, WantedBody};
use mailsync_store::checkpoints::{self, Checkpoint, Scope};
use mailsync_store::emails::{self, EmailUpsert};
use mailsync_store::mailboxes::{self, Mailbox};
use mailsync_store::{AccountId, BodyPolicy, MailboxId, Role, Store};

use crate::connection::Selected;
use crate::connection::{Connection, SelectState};
use crate::error::{Error, ResponseCode};
use crate::mailboxes::{sync_mailboxes, to_state};
use crate::mime::{self, BodyText};
use crate::plan::{self, FlagCheck, Plan, ServerState};
use crate::skeleton;
use crate::storeext;
use crate::uidset;
use crate::wire::{Cmd, Event, FetchData, Untagged};

/// A progress callback: called after every committed batch.
pub type ProgressFn = Arc<dyn Fn(&SyncProgress) + Send + Sync>;

/// Progress of a mailbox sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncProgress {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Messages stored so far in this run.
    pub stored: u64,
    /// How many new messages are expected at most (from EXISTS or UIDNEXT).
    pub expected: Option<u64>,
}

/// Options of a sync run.
#[derive(Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Which bodies to download during sync (the others are fetched on demand).
    pub body_policy: BodyPolicy,
    /// Messages per committed batch (one transaction, with its checkpoint).
    pub batch_size: usize,
    /// Called after each committed batch.
    pub progress: Option<ProgressFn>,
    /// Mailboxes not to sync this time (isolated by the caller after repeated failures).
    pub deferred: Vec<MailboxId>,
}

impl fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncOptions")
            .field("body_policy", &self.body_policy)
            .field("batch_size", &self.batch_size)
            .field("progress", &self.progress.is_some())
            .field("deferred", &self.deferred)
            .finish()
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            body_policy: BodyPolicy::None,
            batch_size: 1000,
            progress: None,
            deferred: Vec::new(),
        }
    }
}

impl SyncOptions {
    /// Sets the body download policy.
    #[must_use]
    pub fn with_body_policy(mut self, p: BodyPolicy) -> Self {
        self.body_policy = p;
        self
    }
    /// Sets the batch size (at least 1).
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the progress callback.
    #[must_use]
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }
    /// Mailboxes to leave out of this run (reported as [`MailboxResult::Deferred`]).
    #[must_use]
    pub fn with_deferred(mut self, mailboxes: Vec<MailboxId>) -> Self {
        self.deferred = mailboxes;
        self
    }
}

/// What a sync changed locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Emails inserted.
    pub added: u64,
    /// Emails updated (flags changed, or re-matched after a UIDVALIDITY change).
    pub updated: u64,
    /// Emails deleted (expunged or moved away on the server).
    pub removed: u64,
}

impl AddAssign for SyncCounts {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.updated += o.updated;
        self.removed += o.removed;
    }
}

/// How one mailbox fared in an account sync.
#[derive(Debug)]
#[non_exhaustive]
pub enum MailboxResult {
    /// Unchanged on the server (proved by HIGHESTMODSEQ): not even selected.
    Skipped,
    /// Synced.
    Synced(SyncCounts),
    /// The server refused (e.g. deleted meanwhile); the other mailboxes went on.
    Failed(Error),
    /// Left out of this run as asked ([`SyncOptions::with_deferred`]).
    Deferred,
}

impl AccountSyncReport {
    /// Did every mailbox sync (none failed or deferred)? Only then does the database reflect
    /// the whole account, which conclusions like "this message is gone" need.
    pub fn complete(&self) -> bool {
        !self
            .mailboxes
            .iter()
            .any(|m| matches!(m.result, MailboxResult::Failed(_) | MailboxResult::Deferred))
    }
}

/// One mailbox of an account sync.
#[derive(Debug)]
#[non_exhaustive]
pub struct MailboxOutcome {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Its display name.
    pub name: String,
    /// What happened.
    pub result: MailboxResult,
}

/// What one account sync cycle did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct AccountSyncReport {
    /// Mailboxes created locally.
    pub mailboxes_added: u64,
    /// Mailboxes removed locally.
    pub mailboxes_removed: u64,
    /// Per selectable mailbox, INBOX first.
    pub mailboxes: Vec<MailboxOutcome>,
    /// Sum over the mailboxes.
    pub totals: SyncCounts,
}

/// Syncs the whole account: the mailbox list, then every selectable mailbox (INBOX first).
/// With QRESYNC/CONDSTORE an unchanged mailbox costs nothing beyond its LIST-STATUS line.
/// Connection and store errors abort the cycle; a mailbox the server refuses is reported in
/// its [`MailboxOutcome`] and the others go on.
pub async fn sync_account(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
    opts: &SyncOptions,
) -> Result<AccountSyncReport, Error> {
    // A server may answer the STATUS of the selected mailbox from its session's view of it
    // (Dovecot does), which lags behind other clients' changes until a command syncs it: NOOP
    // first, so the LIST-STATUS below cannot call a changed mailbox unchanged.
    if conn.selected.is_some() {
        conn.noop().await?;
    } else if conn.qresync_enabled() {
        // With QRESYNC, INBOX is selected before the LIST: its STATUS is then answered from
        // the open mailbox (Dovecot's maildir otherwise re-scans it for the STATUS, 0.1-0.3 s
        // at 100,000 messages, and again for a SELECT after a change), and INBOX is caught up
        // in place below. A connection that waited on INBOX has it selected already.
        match conn.select("INBOX").await {
            Ok(_) => {}
            Err(e) if e.is_connection() => return Err(e),
            Err(e) => tracing::debug!(error = %e, "SELECT INBOX before LIST failed"),
        }
    }
    let listed = sync_mailboxes(conn, store, account).await?;
    let mut report = AccountSyncReport {
        mailboxes_added: listed.added,
        mailboxes_removed: listed.removed,
        ..AccountSyncReport::default()
    };
    // Which mailboxes owe bodies, in one query for the account: an unchanged mailbox is
    // selected only when it does.
    let owing = bodies::mailboxes_with_debt(store.conn(), account, opts.body_policy).await?;
    let mut order: Vec<usize> = (0..listed.mailboxes.len()).collect();
    order.sort_by_key(|&i| {
        listed
            .mailboxes
            .get(i)
            .is_none_or(|m| m.role != Some(Role::Inbox))
    });
    for i in order {
        let Some(mb) = listed.mailboxes.get(i) else {
            continue;
        };
        if !mb.selectable {
            continue;
        }
        if opts.deferred.contains(&mb.id) {
            report.mailboxes.push(MailboxOutcome {
                mailbox: mb.id,
                name: mb.name.clone(),
                result: MailboxResult::Deferred,
            });
            continue;
        }
        let hint = listed.states.get(i).copied().flatten();
        let owes = Some(owing.contains(&mb.id));
        let result = match sync_mailbox_inner(conn, store, account, mb, opts, hint, owes).await {
            Ok(None) => MailboxResult::Skipped,
            Ok(Some(c)) => {
                report.totals += c;
                MailboxResult::Synced(c)
            }
            Err(e) if e.is_connection() || matches!(e, Error::Store(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(mailbox = %mb.name, error = %e, "mailbox sync failed");
                MailboxResult::Failed(e)
            }
        };
        report.mailboxes.push(MailboxOutcome {
            mailbox: mb.id,
            name: mb.name.clone(),
            result,
        });
    }
    // After a complete pass only: a copy that a failed mailbox would have matched is no ghost.
    if report.complete() {
        let txn = store.begin().await?;
        let (touched, removed) = storeext::delete_ghosts(&txn, account).await?;
        for m in touched {
            mailboxes::recount(&txn, m).await?;
        }
        txn.commit().await?;
        if removed > 0 {
            tracing::info!(removed, "Removed local copies the server does not have.");
        }
        report.totals.removed += removed;
    }
    Ok(report)
}

/// Syncs one mailbox (as stored by [`sync_mailboxes`]). Returns what changed locally; an
/// unchanged mailbox (by HIGHESTMODSEQ) returns zero counts without being selected, unless it
/// still owes bodies the policy wants.
pub async fn sync_mailbox(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
    mailbox: &Mailbox,
    opts: &SyncOptions,
) -> Result<SyncCounts, Error> {
    Ok(
        sync_mailbox_inner(conn, store, account, mailbox, opts, None, None)
            .await?
            .unwrap_or_default(),
    )
}

/// The items fetched for each new message.
fn fetch_items(conn: &Connection, with_body: bool) -> String {
    let mut s = String::from(
        "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (REFERENCES)]",
    );
    if conn.condstore_enabled() {
        s.push_str(" MODSEQ");
    }
    if conn.has_capability("PREVIEW") {
        s.push_str(" PREVIEW");
    }
    if conn.has_capability("OBJECTID") {
        s.push_str(" THREADID");
    }
    if with_body {
        s.push_str(" BODY.PEEK[]");
    }
    s.push(')');
    s
}

/// Keeps a batch in memory bounded when bodies are fetched with it. Two batches are in memory
/// at once (one committed while the next is read), with their parsed text: 16 MiB each held a
/// first sync at M (10,000 messages with bodies) at 82-84 MiB of peak RSS, 4 MiB at 68-71 MiB,
/// in the same time (docs/benchmarks.md).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Ctx<'a> {
    store: &'a Store,
    account: AccountId,
    mailbox: MailboxId,
    uidvalidity: u32,
    scope: Scope,
    opts: &'a SyncOptions,
}

async fn sync_mailbox_inner(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
    mb: &Mailbox,
    opts: &SyncOptions,
    hint: Option<ServerState>,
    owes_bodies: Option<bool>,
) -> Result<Option<SyncCounts>, Error> {
    if !mb.selectable {
        return Ok(None);
    }
    let scope = Scope::imap_mailbox(mb.id);
    let cp = checkpoints::get(store.conn(), account, &scope).await?;
    let selected_now = conn
        .selected
        .as_ref()
        .is_some_and(|s| s.name == mb.remote_id);
    let state = match hint {
        Some(s) => Some(s),
        // A STATUS on the selected mailbox is discouraged (RFC 3501 6.3.10); re-SELECT instead.
        None if selected_now => None,
        None => {
            let mut r = conn
                .status_many(std::slice::from_ref(&mb.remote_id))
                .await?;
            Some(to_state(&r.pop().unwrap_or(Ok(Default::default()))?))
        }
    };
    if let Some(s) = &state
        && plan::can_skip(cp.as_ref(), s)
    {
        settle_unchanged(conn, store, account, mb, opts, s, owes_bodies).await?;
        return Ok(None);
    }

    let mut counts = SyncCounts::default();
    let qparams = if conn.qresync_enabled() {
        plan::qresync_params(cp.as_ref())
    } else {
        None
    };
    let cp_uv = cp
        .as_ref()
        .and_then(|c| c.uidvalidity)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let mut flags = FlagSink::new(store, account, mb.id, cp_uv, opts.batch_size);
    let in_place = match (state.as_ref(), qparams) {
        (Some(s), Some(q)) => still_selected(conn, mb, s, q).map(|sel| (sel, q)),
        _ => None,
    };
    let sel = match in_place {
        Some((sel, q)) => {
            tracing::debug!(mailbox = %mb.name, "still selected: QRESYNC catch-up without SELECT");
            catch_up_selected(conn, store, mb, q, &mut flags, &mut counts).await?;
            sel
        }
        None => select_applying_qresync(conn, store, mb, qparams, &mut flags, &mut counts).await?,
    };
    counts.updated += flags.flush().await?;
    // The MAILBOXID recorded for the row, read once for both the check and the update below.
    let recorded = match &sel.mailbox_id {
        Some(_) => checkpoints::get(store.conn(), account, &Scope::imap_mailbox_id(mb.id)).await?,
        None => None,
    };
    let replaced = mailbox_replaced(recorded.as_ref(), &sel);

    let sel_state = ServerState {
        uidvalidity: Some(sel.uidvalidity),
        uidnext: sel.uidnext,
        highestmodseq: sel.highestmodseq,
        messages: Some(sel.exists),
    };
    let planned = match plan::plan(cp.as_ref(), &sel_state, qparams.is_some()) {
        // Another mailbox under this name (MAILBOXID changed) with the UIDVALIDITY of the
        // one the checkpoint describes: its UIDs are not the stored ones.
        Plan::Incremental { .. } if replaced => {
            tracing::info!(mailbox = %mb.name, "MAILBOXID changed under the same UIDVALIDITY: full resync.");
            Plan::Full { reset: true }
        }
        p => p,
    };
    tracing::debug!(mailbox = %mb.name, ?planned, "mailbox plan");
    let ctx = Ctx {
        store,
        account,
        mailbox: mb.id,
        uidvalidity: sel.uidvalidity,
        scope,
        opts,
    };
    let (last_uid, fetch_new, flag_check, kept_modseq) =
        follow_plan(&ctx, &planned, &sel, cp.as_ref()).await?;
    // After a reset has committed: a run cut before this finds the old id and resets again.
    record_mailbox_id(store, account, mb.id, &sel, recorded.as_ref()).await?;

    // New messages: one streamed UID FETCH, committed batch by batch with the checkpoint.
    let mut fetched = NewMessages {
        kept_modseq,
        ..NewMessages::default()
    };
    if fetch_new {
        fetched.expected = match planned {
            Plan::Full { .. } => Some(u64::from(sel.exists)),
            _ => sel
                .uidnext
                .map(|n| u64::from(n.saturating_sub(last_uid + 1))),
        };
        fetched.rematch = storeext::has_unmatched(store.conn(), mb.id).await?;
        fetch_new_messages(conn, &ctx, &mb.remote_id, last_uid, &mut fetched).await?;
        counts += fetched.counts;
    }

    // Flag changes of messages we already had.
    let mut flags = FlagSink::new(store, account, mb.id, sel.uidvalidity, opts.batch_size);
    counts.updated += fetch_flag_changes(conn, flag_check, last_uid, &mut flags).await?;
    counts.updated += flags.flush().await?;

    counts.removed += detect_expunges(conn, store, mb, sel.exists).await?;
    counts.removed += commit_mailbox(&ctx, &sel, last_uid, fetched.max_fetched).await?;
    // Bodies last, each chunk committed on its own: the mailbox's state is already safe, and
    // a cut here leaves the rest owed to the next sync.
    pay_body_debt(
        conn,
        store,
        account,
        mb.id,
        sel.uidvalidity,
        opts.body_policy,
    )
    .await?;
    Ok(Some(counts))
}

/// Flag updates of known messages, written in batches.
struct FlagSink<'a> {
    store: &'a Store,
    account: AccountId,
    mailbox: MailboxId,
    uidvalidity: u32,
    batch: usize,
    buf: Vec<(u32, Vec<String>)>,
}

impl<'a> FlagSink<'a> {
    fn new(
        store: &'a Store,
        account: AccountId,
        mailbox: MailboxId,
        uidvalidity: u32,
        batch: usize,
    ) -> Self {
        Self {
            store,
            account,
            mailbox,
            uidvalidity,
            batch: batch.max(1),
            buf: Vec::new(),
        }
    }

    /// Buffers one message's flags; returns how many emails changed if a batch was written.
    async fn push(&mut self, uid: u32, flags: Vec<String>) -> Result<u64, Error> {
        self.buf.push((uid, flags));
        if self.buf.len() >= self.batch {
            return self.flush().await;
        }
        Ok(0)
    }

    /// Writes what is buffered; returns how many emails changed.
    async fn flush(&mut self) -> Result<u64, Error> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let n = apply_flags(
            self.store,
            self.account,
            self.mailbox,
            self.uidvalidity,
            &self.buf,
        )
        .await?;
        self.buf.clear();
        Ok(n)
    }
}

/// Whether the SELECT reported a MAILBOXID other than the one recorded for this row: another
/// mailbox now has the name (RFC 8474 keeps a mailbox's id across renames and gives a mailbox
/// created again a new one), whatever its UIDVALIDITY says.
fn mailbox_replaced(recorded: Option<&Checkpoint>, sel: &Selected) -> bool {
    let Some(id) = &sel.mailbox_id else {
        return false;
    };
    recorded
        .and_then(|k| k.state.as_deref())
        .is_some_and(|k| k != id.as_str())
}

/// Records the MAILBOXID a SELECT reported (RFC 8474; servers with OBJECTID), with the
/// UIDVALIDITY it came with, when it is not the one recorded: a queued delete of the mailbox
/// carries it, so that the delete never takes another mailbox that has the name by then.
async fn record_mailbox_id(
    store: &Store,
    account: AccountId,
    mailbox: MailboxId,
    sel: &Selected,
    known: Option<&Checkpoint>,
) -> Result<(), Error> {
    let Some(id) = &sel.mailbox_id else {
        return Ok(());
    };
    let scope = Scope::imap_mailbox_id(mailbox);
    let uidvalidity = Some(i64::from(sel.uidvalidity));
    if known
        .is_some_and(|k| k.state.as_deref() == Some(id.as_str()) && k.uidvalidity == uidvalidity)
    {
        return Ok(());
    }
    let cp = Checkpoint {
        state: Some(id.clone()),
        uidvalidity,
        ..Checkpoint::default()
    };
    checkpoints::put(store.conn(), account, &scope, &cp).await?;
    Ok(())
}

/// SELECT (with QRESYNC parameters when there are any), applying what QRESYNC reports as it
/// streams in: VANISHED UIDs are deleted, FETCH flags go to `flags`.
async fn select_applying_qresync(
    conn: &mut Connection,
    store: &Store,
    mb: &Mailbox,
    qparams: Option<(u32, u64, Option<u32>)>,
    flags: &mut FlagSink<'_>,
    counts: &mut SyncCounts,
) -> Result<Selected, Error> {
    let tag = conn.start_select(&mb.remote_id, qparams).await?;
    let mut st = SelectState::new(&mb.remote_id);
    loop {
        let ev = match conn.wire.next(&tag).await {
            Ok(ev) => ev,
            Err(e) => {
                conn.forget_selection();
                return Err(e);
            }
        };
        match ev {
            Event::Data(u) => match st.absorb(u) {
                Some(Untagged::Vanished { uids, .. }) if qparams.is_some() => {
                    counts.removed += delete_vanished(store, mb.id, &uids).await?;
                }
                Some(Untagged::Fetch(f)) if qparams.is_some() => {
                    if let (Some(uid), Some(fl)) = (f.uid, f.flags) {
                        counts.updated += flags.push(uid, fl).await?;
                    }
                }
                _ => {}
            },
            Event::Done(d) => return conn.finish_select(st, &d),
        }
    }
}

/// The mailbox as it stands when it is still selected on this connection (the IDLE/NOTIFY
/// wait keeps INBOX selected) and QRESYNC can bring it up to date without a new SELECT: a
/// SELECT closes and re-opens the mailbox, which costs the server a re-scan that grows with
/// its size (Dovecot maildir at 100,000 messages: 0.1-1 s), while the catch-up below costs
/// what changed. `status` is this cycle's STATUS of the mailbox, taken before any of the
/// catch-up's commands: its UIDNEXT and HIGHESTMODSEQ are therefore lower bounds of what the
/// catch-up sees, which keeps the checkpoint behind the data. `None`: SELECT as usual.
fn still_selected(
    conn: &Connection,
    mb: &Mailbox,
    status: &ServerState,
    (uv, modseq, _): (u32, u64, Option<u32>),
) -> Option<Selected> {
    if !conn.qresync_enabled() {
        return None;
    }
    let cur = conn.selected.as_ref().filter(|s| s.name == mb.remote_id)?;
    let now = status.highestmodseq.filter(|&m| m >= modseq)?;
    let uidnext = status.uidnext?;
    (cur.uidvalidity == uv && status.uidvalidity == Some(uv)).then(|| Selected {
        uidnext: Some(uidnext),
        highestmodseq: Some(now),
        ..cur.clone()
    })
}

/// What a QRESYNC SELECT would have reported, asked of the mailbox already selected:
/// `UID FETCH 1:last (UID FLAGS) (CHANGEDSINCE modseq VANISHED)` (RFC 7162 3.2.6) gives the
/// flags changed and the UIDs expunged since the checkpoint, applied as they stream in.
async fn catch_up_selected(
    conn: &mut Connection,
    store: &Store,
    mb: &Mailbox,
    (_, modseq, last_uid): (u32, u64, Option<u32>),
    flags: &mut FlagSink<'_>,
    counts: &mut SyncCounts,
) -> Result<(), Error> {
    let Some(last) = last_uid.filter(|&u| u > 0) else {
        return Ok(());
    };
    let cmd = Cmd::new("UID FETCH")
        .raw(&format!("1:{last}"))
        .raw(&format!("(UID FLAGS) (CHANGEDSINCE {modseq} VANISHED)"));
    let tag = conn.wire.send(&cmd).await?;
    loop {
        match conn.wire.next(&tag).await? {
            Event::Data(Untagged::Fetch(f)) => {
                if let (Some(uid), Some(fl)) = (f.uid, f.flags)
                    && uid <= last
                {
                    counts.updated += flags.push(uid, fl).await?;
                }
            }
            Event::Data(u) => {
                conn.note(&u);
                if let Untagged::Vanished { uids, .. } = &u {
                    counts.removed += delete_vanished(store, mb.id, uids).await?;
                }
            }
            Event::Done(_) => return Ok(()),
        }
    }
}

/// Deletes the copies a VANISHED response names, in one transaction: one commit per response
/// rather than one per range (1 % of 100,000 UIDs expunged here and there is ~1,000 ranges,
/// and each commit of its own cost a write to the disk).
async fn delete_vanished(
    store: &Store,
    mailbox: MailboxId,
    uids: &[(u32, u32)],
) -> Result<u64, Error> {
    let txn = store.begin().await?;
    let n = storeext::delete_uid_ranges(&txn, mailbox, uids).await?;
    txn.commit().await?;
    Ok(n)
}

/// Carries out the plan's preparation (a UIDVALIDITY reset detaches the old UIDs and moves the
/// checkpoint in one transaction) and says what to fetch: `(last known UID, fetch new
/// messages?, how to find flag changes, HIGHESTMODSEQ to keep in batch checkpoints)`.
async fn follow_plan(
    ctx: &Ctx<'_>,
    planned: &Plan,
    sel: &Selected,
    cp: Option<&Checkpoint>,
) -> Result<(u32, bool, FlagCheck, Option<i64>), Error> {
    Ok(match planned {
        Plan::Full { reset } => {
            if *reset {
                // Old UIDs mean nothing now. Keep the rows for re-matching by Message-ID; the
                // checkpoint moves to the new UIDVALIDITY in the same transaction.
                let txn = ctx.store.begin().await?;
                storeext::detach_uids(&txn, ctx.mailbox).await?;
                storeext::retire_identities(&txn, ctx.account, ctx.mailbox).await?;
                checkpoints::put(
                    &txn,
                    ctx.account,
                    &ctx.scope,
                    &Checkpoint {
                        uidvalidity: Some(i64::from(sel.uidvalidity)),
                        last_uid: Some(0),
                        ..Checkpoint::default()
                    },
                )
                .await?;
                txn.commit().await?;
            }
            (0, sel.exists > 0, FlagCheck::Nothing, None)
        }
        Plan::Incremental {
            last_uid,
            fetch_new,
            flags,
            expunges: _,
        } => (
            *last_uid,
            *fetch_new,
            *flags,
            cp.and_then(|c| c.highestmodseq),
        ),
    })
}

/// Flag changes of the messages up to `last_uid`, as the plan says to find them.
async fn fetch_flag_changes(
    conn: &mut Connection,
    check: FlagCheck,
    last_uid: u32,
    flags: &mut FlagSink<'_>,
) -> Result<u64, Error> {
    let cmd = match check {
        FlagCheck::Nothing | FlagCheck::FromSelect => return Ok(0),
        FlagCheck::ChangedSince(m) => Cmd::new("UID FETCH")
            .raw(&format!("1:{last_uid}"))
            .raw(&format!("(UID FLAGS) (CHANGEDSINCE {m})")),
        FlagCheck::All => Cmd::new("UID FETCH")
            .raw(&format!("1:{last_uid}"))
            .raw("(UID FLAGS)"),
    };
    let mut changed = 0;
    let tag = conn.wire.send(&cmd).await?;
    loop {
        match conn.wire.next(&tag).await? {
            Event::Data(Untagged::Fetch(f)) => {
                if let (Some(uid), Some(fl)) = (f.uid, f.flags)
                    && uid <= last_uid
                {
                    changed += flags.push(uid, fl).await?;
                }
            }
            Event::Data(other) => conn.note(&other),
            Event::Done(_) => return Ok(changed),
        }
    }
}

/// Expunges: whatever QRESYNC said, counts must agree; otherwise compare UID lists. Returns
/// how many emails were removed.
async fn detect_expunges(
    conn: &mut Connection,
    store: &Store,
    mb: &Mailbox,
    exists_at_select: u32,
) -> Result<u64, Error> {
    let local = storeext::count_with_uid(store.conn(), mb.id).await?;
    let server_count = conn
        .selected
        .as_ref()
        .map_or(exists_at_select, |s| s.exists);
    if local == u64::from(server_count) {
        return Ok(0);
    }
    let (data, _) = conn.run(&Cmd::new("UID SEARCH").raw("ALL")).await?;
    let mut server: Vec<u32> = data
        .into_iter()
        .flat_map(|u| match u {
            Untagged::Search(v) => v,
            _ => Vec::new(),
        })
        .collect();
    server.sort_unstable();
    let gone: Vec<i64> = emails::uids_in_mailbox(store.conn(), mb.id)
        .await?
        .into_iter()
        .filter(|&u| u32::try_from(u).map_or(true, |u| server.binary_search(&u).is_err()))
        .collect();
    if gone.is_empty() {
        return Ok(0);
    }
    Ok(emails::delete_by_uids(store.conn(), mb.id, &gone).await?)
}

/// The mailbox is done: leftovers of an old UIDVALIDITY that did not re-match are deleted, and
/// the final checkpoint and the counters commit together. Returns how many emails were removed.
async fn commit_mailbox(
    ctx: &Ctx<'_>,
    sel: &Selected,
    last_uid: u32,
    max_fetched: u32,
) -> Result<u64, Error> {
    let txn = ctx.store.begin().await?;
    let removed = storeext::delete_stale(&txn, ctx.mailbox, sel.uidvalidity).await?;
    checkpoints::put(
        &txn,
        ctx.account,
        &ctx.scope,
        &Checkpoint {
            uidvalidity: Some(i64::from(sel.uidvalidity)),
            last_uid: Some(i64::from(plan::final_last_uid(
                last_uid,
                max_fetched,
                sel.uidnext,
            ))),
            highestmodseq: sel.highestmodseq.and_then(|m| i64::try_from(m).ok()),
            ..Checkpoint::default()
        },
    )
    .await?;
    mailboxes::recount(&txn, ctx.mailbox).await?;
    txn.commit().await?;
    Ok(removed)
}

/// An unchanged mailbox that still owes bodies (a download cut short, a policy raised since
/// its messages were stored) is selected just to pay them. `owes` is what the caller already
/// knows; without it one query for this mailbox decides.
async fn settle_unchanged(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
    mb: &Mailbox,
    opts: &SyncOptions,
    status: &ServerState,
    owes: Option<bool>,
) -> Result<(), Error> {
    let Some(uv) = status.uidvalidity else {
        return Ok(());
    };
    let owes = match owes {
        Some(o) => o,
        None => !bodies::wanted_missing(
            store.conn(),
            account,
            DebtScope::ImapMailbox {
                mailbox: mb.id,
                uidvalidity: i64::from(uv),
            },
            opts.body_policy,
            None,
            1,
        )
        .await?
        .is_empty(),
    };
    if !owes {
        return Ok(());
    }
    let sel = conn.select(&mb.remote_id).await?;
    pay_body_debt(
        conn,
        store,
        account,
        mb.id,
        sel.uidvalidity,
        opts.body_policy,
    )
    .await
}

/// Bounds the reconnect-and-skip recoveries of one mailbox sync.
const MAX_RECOVERIES: usize = 100;

/// State of the new-message download of one mailbox.
#[derive(Default)]
struct NewMessages {
    monotonic: bool,
    max_fetched: u32,
    stored: u64,
    expected: Option<u64>,
    rematch: bool,
    kept_modseq: Option<i64>,
    counts: SyncCounts,
}

/// Messages read but not yet committed, already turned into rows: each message is parsed as
/// it is read, so the parsing overlaps the previous batch's write (which runs on the
/// database's thread) and the raw message is dropped at once.
#[derive(Default)]
struct Batch {
    /// Messages read into this batch (some may have yielded no row).
    read: usize,
    upserts: Vec<EmailUpsert>,
    bodies: Vec<(String, Body)>,
    bytes: usize,
}

impl Batch {
    fn full(&self, batch: usize) -> bool {
        self.read >= batch || self.bytes >= MAX_BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.read == 0
    }

    /// Parses one fetched message into its row and, when the body came with it, its text.
    fn add(&mut self, ctx: &Ctx<'_>, f: FetchData) {
        self.read += 1;
        self.bytes += f.body.as_ref().map_or(0, Vec::len);
        let Some(mut u) = mime::to_upsert(&f, ctx.mailbox, ctx.uidvalidity) else {
            return;
        };
        if let Some(raw) = &f.body {
            // With a BODYSTRUCTURE the attachments are known (`to_upsert` took them from it)
            // and their bodies need no decoding; without one, mail-parser's list is all there is.
            let text = match &f.structure {
                Some(s) => skeleton::body_text(raw, s),
                None => {
                    let mut parsed = mime::parse_message(raw);
                    if u.attachments.is_none() {
                        let atts = std::mem::take(&mut parsed.attachments);
                        u.has_attachment = !atts.is_empty();
                        u.attachments = Some(atts);
                    }
                    BodyText::from(parsed)
                }
            };
            if u.preview.is_none() {
                u.preview.clone_from(&text.preview);
            }
            // `commit_new` stores the batch's bodies in the upsert's transaction.
            u.body_in_transaction = true;
            self.bodies.push((u.remote_id.clone(), Body::from(text)));
        }
        self.upserts.push(u);
    }
}

impl NewMessages {
    fn push(&mut self, ctx: &Ctx<'_>, b: &mut Batch, f: FetchData, uid: u32) {
        if uid < self.max_fetched {
            self.monotonic = false;
        }
        self.max_fetched = self.max_fetched.max(uid);
        b.add(ctx, f);
    }

    /// The checkpoint covering everything read so far: valid when responses came in UID
    /// order, which makes "everything up to the highest UID" true.
    fn checkpoint(&self, ctx: &Ctx<'_>) -> Option<Checkpoint> {
        self.monotonic.then(|| Checkpoint {
            uidvalidity: Some(i64::from(ctx.uidvalidity)),
            last_uid: Some(i64::from(self.max_fetched)),
            highestmodseq: self.kept_modseq,
            ..Checkpoint::default()
        })
    }

    fn committed(&mut self, ctx: &Ctx<'_>, done: Committed) {
        self.counts += done.counts;
        self.stored += done.stored;
        progress(ctx, self.stored, self.expected);
    }

    /// Commits a batch right away (outside the overlapped path).
    async fn flush(&mut self, ctx: &Ctx<'_>, b: &mut Batch) -> Result<(), Error> {
        if b.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(b);
        let done = commit_new(ctx, ready, self.rematch, self.checkpoint(ctx)).await?;
        self.committed(ctx, done);
        Ok(())
    }
}

/// How reading a batch ended.
enum Read {
    /// The batch is full; more may follow.
    Full,
    /// The command completed.
    Done,
    /// The server sent something unparsable; the connection is dead.
    Unparsable(Error),
}

/// Reads FETCH responses of `tag` into `b` until it is full or the command ends.
async fn read_batch(
    conn: &mut Connection,
    ctx: &Ctx<'_>,
    tag: &str,
    from: u32,
    batch: usize,
    st_max: &mut (bool, u32),
    b: &mut Batch,
) -> Result<Read, Error> {
    loop {
        match conn.wire.next(tag).await {
            Ok(Event::Data(Untagged::Fetch(f))) => {
                let Some(uid) = f.uid else { continue };
                // `n:*` returns the last message even when its UID is below n; and a FETCH
                // without ENVELOPE is an unsolicited flag update, not our data.
                if uid < from || f.envelope.is_none() {
                    continue;
                }
                if uid < st_max.1 {
                    st_max.0 = false;
                }
                st_max.1 = st_max.1.max(uid);
                b.add(ctx, *f);
                if b.full(batch) {
                    return Ok(Read::Full);
                }
                // While the server's data keeps coming, reading never waits, and the batch
                // being committed beside this one (`tokio::join!` in the same task) would only
                // take its next step once this batch is full: the database would sit idle.
                // Yielding after each message lets it go on as soon as its statement is done.
                tokio::task::yield_now().await;
            }
            Ok(Event::Data(other)) => conn.note(&other),
            Ok(Event::Done(_)) => return Ok(Read::Done),
            // Both leave the connection dead on one message's BODYSTRUCTURE: that message is
            // fetched again without it.
            Err(e @ (Error::Unparsable { .. } | Error::NestingTooDeep { .. })) => {
                return Ok(Read::Unparsable(e));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `UID FETCH last+1:*`, streamed: while one batch is committed (on the database's thread),
/// the next one is read from the socket and parsed (in this task). When the server sends a
/// response async-imap cannot parse (the connection is then dead), reconnects, fetches that
/// one message without BODYSTRUCTURE (its full body is parsed locally instead) and resumes
/// after it.
async fn fetch_new_messages(
    conn: &mut Connection,
    ctx: &Ctx<'_>,
    mailbox: &str,
    last_uid: u32,
    st: &mut NewMessages,
) -> Result<(), Error> {
    st.monotonic = true;
    let batch = ctx.opts.batch_size.max(1);
    let with_body = matches!(ctx.opts.body_policy, BodyPolicy::All);
    let mut from = last_uid.saturating_add(1);
    let mut recoveries = 0usize;
    loop {
        let cmd = Cmd::new("UID FETCH")
            .raw(&format!("{from}:*"))
            .raw(&fetch_items(conn, with_body));
        let tag = conn.wire.send(&cmd).await?;
        let mut cur = Batch::default();
        let mut order = (st.monotonic, st.max_fetched);
        let mut read = read_batch(conn, ctx, &tag, from, batch, &mut order, &mut cur).await?;
        (st.monotonic, st.max_fetched) = order;
        let failure = loop {
            match read {
                Read::Full => {
                    let ready = std::mem::take(&mut cur);
                    let cp = st.checkpoint(ctx);
                    let (committed, next, ()) = tokio::join!(
                        commit_new(ctx, ready, st.rematch, cp),
                        read_batch(conn, ctx, &tag, from, batch, &mut order, &mut cur),
                        ctx.store.checkpoint_wal()
                    );
                    st.committed(ctx, committed?);
                    read = next?;
                    (st.monotonic, st.max_fetched) = order;
                }
                Read::Done => break None,
                Read::Unparsable(e) if recoveries < MAX_RECOVERIES => break Some(e),
                Read::Unparsable(e) => return Err(e),
            }
        };
        st.flush(ctx, &mut cur).await?;
        let Some(e) = failure else { return Ok(()) };
        recoveries += 1;
        tracing::warn!(%mailbox, error = %e, "unparsable FETCH response; reconnecting to fetch that message without BODYSTRUCTURE");
        conn.reconnect().await?;
        let sel = conn.select(mailbox).await?;
        if sel.uidvalidity != ctx.uidvalidity {
            return Err(Error::Protocol(format!(
                "UIDVALIDITY of {mailbox} changed during the sync"
            )));
        }
        // Responses arrive in UID order: the culprit is the first UID after the last one read.
        let after = st.max_fetched.max(from.saturating_sub(1)).saturating_add(1);
        let Some(uid) = next_uid(conn, after, sel.uidnext).await? else {
            return Ok(());
        };
        let mut items = String::from("(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY.PEEK[]");
        if conn.condstore_enabled() {
            items.push_str(" MODSEQ");
        }
        items.push(')');
        let (data, _) = conn
            .run(&Cmd::new("UID FETCH").raw(&uid.to_string()).raw(&items))
            .await?;
        for u in data {
            if let Untagged::Fetch(mut f) = u
                && f.uid == Some(uid)
            {
                // The header section holds References; BODYSTRUCTURE is replaced by parsing.
                if let Some(raw) = &f.body {
                    let end = raw
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(raw.len(), |p| p + 4);
                    f.header = raw.get(..end).map(<[u8]>::to_vec);
                }
                st.push(ctx, &mut cur, *f, uid);
            }
        }
        st.flush(ctx, &mut cur).await?;
        from = uid.saturating_add(1);
    }
}

/// The smallest UID at or above `from` (looking in windows, so a sparse mailbox is cheap).
async fn next_uid(
    conn: &mut Connection,
    from: u32,
    uidnext: Option<u32>,
) -> Result<Option<u32>, Error> {
    const WINDOW: u32 = 1000;
    let mut lo = from;
    loop {
        let bounded = uidnext.is_some_and(|n| lo.saturating_add(WINDOW) < n);
        let range = if bounded {
            format!("{lo}:{}", lo.saturating_add(WINDOW - 1))
        } else {
            format!("{lo}:*")
        };
        let (data, _) = conn
            .run(&Cmd::new("UID FETCH").raw(&range).raw("(UID)"))
            .await?;
        let found = data
            .iter()
            .filter_map(|u| match u {
                Untagged::Fetch(f) => f.uid.filter(|&x| x >= lo),
                _ => None,
            })
            .min();
        if found.is_some() || !bounded {
            return Ok(found);
        }
        lo = lo.saturating_add(WINDOW);
    }
}

fn progress(ctx: &Ctx<'_>, stored: u64, expected: Option<u64>) {
    if let Some(p) = &ctx.opts.progress {
        p(&SyncProgress {
            mailbox: ctx.mailbox,
            stored,
            expected,
        });
    }
}

/// What committing a batch did.
struct Committed {
    counts: SyncCounts,
    stored: u64,
}

/// Stores a batch of new messages (re-matching UID-less rows by Message-ID first) and the
/// checkpoint covering it, in one transaction.
async fn commit_new(
    ctx: &Ctx<'_>,
    ready: Batch,
    rematch: bool,
    checkpoint: Option<Checkpoint>,
) -> Result<Committed, Error> {
    let Batch {
        upserts,
        bodies: bodies_out,
        ..
    } = ready;
    let n = upserts.len() as u64;
    let started = std::time::Instant::now();
    let txn = ctx.store.begin().await?;
    if rematch {
        rematch_batch(&txn, ctx, &upserts).await?;
    }
    let stats = emails::upsert_batch(&txn, ctx.account, &upserts).await?;
    if !bodies_out.is_empty() {
        let remotes: Vec<String> = bodies_out.iter().map(|(r, _)| r.clone()).collect();
        let ids = emails::ids_by_remote_ids(&txn, ctx.account, &remotes).await?;
        let rows: Vec<_> = bodies_out
            .iter()
            .filter_map(|(r, b)| ids.get(r).map(|id| (*id, b)))
            .collect();
        bodies::put_many(&txn, &rows).await?;
    }
    if let Some(cp) = checkpoint {
        checkpoints::put(&txn, ctx.account, &ctx.scope, &cp).await?;
    }
    txn.commit().await?;
    ctx.store.note_inserted(stats.inserted).await;
    tracing::debug!(
        messages = n,
        ms = started.elapsed().as_millis() as u64,
        "batch committed"
    );
    Ok(Committed {
        counts: SyncCounts {
            added: stats.inserted,
            updated: stats.updated,
            removed: 0,
        },
        stored: n,
    })
}

/// Gives UID-less rows of this mailbox with the same Message-ID (leftovers of an old
/// UIDVALIDITY, or local rows of a pending move/append) the identity of the new messages, so
/// the upsert updates them and their cached bodies survive.
async fn rematch_batch<C: sea_orm::ConnectionTrait>(
    c: &C,
    ctx: &Ctx<'_>,
    upserts: &[EmailUpsert],
) -> Result<(), Error> {
    let ids: Vec<String> = upserts
        .iter()
        .filter_map(|u| u.message_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut candidates =
        storeext::unmatched_by_message_id(c, ctx.account, ctx.mailbox, &ids).await?;
    if candidates.is_empty() {
        return Ok(());
    }
    // A message some row already has under this identity (a move answered with COPYUID
    // after a reset detached this mailbox's copies) is that row; a UID-less copy with its
    // Message-ID is another one. Giving it the identity too failed the batch on the unique
    // remote id, in every later sync (model test, Cyrus IMAP seed 30001, 800 ops).
    let remotes: Vec<String> = upserts.iter().map(|u| u.remote_id.clone()).collect();
    let held = emails::ids_by_remote_ids(c, ctx.account, &remotes).await?;
    for u in upserts {
        let Some(mid) = &u.message_id else { continue };
        if held.contains_key(&u.remote_id) {
            continue;
        }
        if let Some(pos) = candidates.iter().position(|(_, m)| m == mid) {
            let (id, _) = candidates.remove(pos);
            storeext::set_remote_id(c, id, &u.remote_id).await?;
        }
    }
    Ok(())
}

/// Compares fetched flags with the stored ones and writes the differences. Returns how many
/// emails changed.
async fn apply_flags(
    store: &Store,
    account: AccountId,
    mailbox: MailboxId,
    uidvalidity: u32,
    items: &[(u32, Vec<String>)],
) -> Result<u64, Error> {
    let remotes: Vec<String> = items
        .iter()
        .map(|(uid, _)| emails::imap_remote_id(mailbox, uidvalidity, *uid))
        .collect();
    // One transaction per batch: its reads and its few grouped updates commit once.
    let txn = store.begin().await?;
    let current = storeext::flags_by_remote_ids(&txn, account, &remotes).await?;
    let changes: Vec<(String, mailsync_store::Flags)> = items
        .iter()
        .zip(remotes)
        .filter_map(|((_, f), r)| {
            let new = mime::flags_from(f);
            match current.get(&r) {
                Some(old) if *old != new => Some((r, new)),
                _ => None,
            }
        })
        .collect();
    if changes.is_empty() {
        return Ok(0);
    }
    emails::set_flags_by_remote_ids(&txn, account, &changes).await?;
    txn.commit().await?;
    Ok(changes.len() as u64)
}

/// Bodies per debt query, and so at most per `UID FETCH`.
const DEBT_PAGE: u64 = 100;

/// Pays the body debt of the mailbox's copies numbered under `uidvalidity` (the one selected):
/// pages of the "wanted, missing" query, each downloaded in chunks bounded in count and bytes
/// and committed on its own, so a cut keeps what was stored. Paging by id passes over a
/// message the server no longer has; the sync that notices its expunge removes it.
async fn pay_body_debt(
    conn: &mut Connection,
    store: &Store,
    account: AccountId,
    mailbox: MailboxId,
    uidvalidity: u32,
    policy: BodyPolicy,
) -> Result<(), Error> {
    let scope = DebtScope::ImapMailbox {
        mailbox,
        uidvalidity: i64::from(uidvalidity),
    };
    let mut after = None;
    let mut paid = 0usize;
    let mut parsed: Option<Vec<FetchedBody>> = None;
    loop {
        let owed =
            bodies::wanted_missing(store.conn(), account, scope, policy, after, DEBT_PAGE).await?;
        let Some(last) = owed.last() else { break };
        after = Some(last.email);
        let mut rest = owed.as_slice();
        while !rest.is_empty() {
            // At least one message per chunk, then as many as fit in the memory bound.
            let mut bytes = 0i64;
            let n = rest
                .iter()
                .position(|w| {
                    bytes = bytes.saturating_add(w.size.max(0));
                    bytes > MAX_BATCH_BYTES as i64
                })
                .unwrap_or(rest.len())
                .max(1);
            let (chunk, tail) = rest.split_at(n.min(rest.len()));
            // The previous chunk is stored while this one is read and parsed (as a first
            // sync's batches are; the list of what is owed is read past the last email asked
            // for, so it does not wait for that write).
            let write = async {
                match parsed.take() {
                    Some(rows) => store_bodies(store, &rows).await,
                    None => Ok(0),
                }
            };
            let (written, read, ()) =
                tokio::join!(write, read_bodies(conn, chunk), store.checkpoint_wal());
            paid += written?;
            parsed = Some(read?);
            rest = tail;
        }
    }
    if let Some(rows) = parsed {
        paid += store_bodies(store, &rows).await?;
    }
    if paid > 0 {
        tracing::debug!(mailbox = %mailbox, bodies = paid, "body debt paid");
    }
    Ok(())
}

/// A downloaded body, parsed: the email, the preview to set when it had none, the texts.
type FetchedBody = (mailsync_store::EmailId, Option<String>, Body);

/// Downloads and parses the bodies of these messages (`UID FETCH` of up to 100 UIDs at a
/// time), parsing each as it arrives and yielding after it, so a write joined beside this
/// goes on meanwhile.
async fn read_bodies(
    conn: &mut Connection,
    owed: &[WantedBody],
) -> Result<Vec<FetchedBody>, Error> {
    let by_uid: HashMap<u32, &WantedBody> = owed
        .iter()
        .filter_map(|w| Some((u32::try_from(w.uid?).ok()?, w)))
        .collect();
    let uids: Vec<u32> = by_uid.keys().copied().collect();
    let mut got = Vec::with_capacity(owed.len());
    for (set, _) in uidset::chunked_sets(&uids, 100) {
        let cmd = Cmd::new("UID FETCH").raw(&set).raw("(UID BODY.PEEK[])");
        let tag = conn.wire.send(&cmd).await?;
        loop {
            match conn.wire.next(&tag).await {
                Ok(Event::Data(Untagged::Fetch(f))) => {
                    // An expunged message may come back as NIL or empty; no real one is empty.
                    if let (Some(w), Some(raw)) = (f.uid.and_then(|u| by_uid.get(&u)), f.body)
                        && !raw.is_empty()
                    {
                        // Only `BODY.PEEK[]` is fetched here, so mail-parser parses it all.
                        let mut text = BodyText::from(mime::parse_message(&raw));
                        let preview = if w.needs_preview {
                            text.preview.take()
                        } else {
                            None
                        };
                        got.push((w.email, preview, Body::from(text)));
                        tokio::task::yield_now().await;
                    }
                }
                Ok(Event::Data(other)) => conn.note(&other),
                Ok(Event::Done(_)) => break,
                // Some servers refuse a FETCH naming expunged messages; the rest stays owed.
                Err(Error::No {
                    code: Some(ResponseCode::ExpungeIssued | ResponseCode::NonExistent),
                    ..
                }) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(got)
}

/// Stores downloaded bodies (and the previews of emails that had none), in one transaction.
async fn store_bodies(store: &Store, got: &[FetchedBody]) -> Result<usize, Error> {
    let txn = store.begin().await?;
    for (email, preview, _) in got {
        if let Some(p) = preview {
            storeext::set_preview(&txn, *email, p).await?;
        }
    }
    let rows: Vec<_> = got.iter().map(|(id, _, b)| (*id, b)).collect();
    bodies::put_many(&txn, &rows).await?;
    txn.commit().await?;
    Ok(got.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let mut a = SyncCounts {
            added: 1,
            updated: 2,
            removed: 3,
        };
        a += SyncCounts {
            added: 10,
            updated: 20,
            removed: 30,
        };
        assert_eq!(
            a,
            SyncCounts {
                added: 11,
                updated: 22,
                removed: 33
            }
        );
        let o = SyncOptions::default().with_batch_size(0);
        assert_eq!(o.batch_size, 1);
        assert!(format!("{o:?}").contains("batch_size: 1"));
    }
}
