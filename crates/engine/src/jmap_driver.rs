//! The JMAP side of a worker: the outbox executor for JMAP (one `Email/set` per batch, sends
//! through [`crate::jmap_send`]) and the [`AccountDriver`] that runs a cycle (session, flush,
//! mailbox changes, email changes) and waits for an EventSource `StateChange`, or polls every
//! 30 s where push is unavailable (Cyrus 3.6 in Debian). Push is WebSocket (RFC 8887) where
//! the Session offers it, else EventSource.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use mailsync_jmap_client as jmap;
use mailsync_jmap_client::{
    Client, Credentials, Email, Patch, PushConfig, PushEvent, PushStream, Set,
};
use mailsync_outbox::{
    Attempt, BatchError, EmailChange, Executor, Flag, FlushReport, ItemOutcome, Operation, Outbox,
    QueuedChange,
};
use mailsync_store::accounts::Account;
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::sync_log::SyncCounts;
use mailsync_store::{AccountId, MailboxId, Role, Store, mailboxes};
use tokio_util::sync::CancellationToken;

use crate::classify::{Disposition, batch_error, classify, item_outcome};
use crate::compose::Draft;
use crate::cycle::{self, Remote, Synced};
use crate::error::EngineError;
use crate::jmap_send::{self, Previous};
use crate::jmap_sync;
use crate::oauth::{self, Creds, Login};
use crate::secret::Secret;
use crate::worker::AccountDriver;

/// How often to poll when the server offers no push.
pub const POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Connects a JMAP client for an account (the connection test of `account add` too). An
/// OAuth 2 account whose token the server refuses gets a fresh token and one more try.
pub async fn connect(account: &Account) -> Result<Client, EngineError> {
    let url = session_url(account)?;
    oauth::with_login(account.into(), |login| connect_with(account, url, login)).await
}

fn session_url(account: &Account) -> Result<&str, EngineError> {
    account
        .jmap_session_url
        .as_deref()
        .ok_or_else(|| EngineError::Config("JMAP account without a session URL".into()))
}

async fn connect_with(account: &Account, url: &str, login: Login) -> Result<Client, EngineError> {
    let b = builder(&account.username, login, account.into()).await?;
    Ok(b.connect(url).await?)
}

/// A client builder with the login (`Authorization: Basic` for a password, `Bearer` for an
/// OAuth 2 access token), the account's CA and plaintext opt-in.
pub(crate) async fn builder(
    username: &str,
    login: Login,
    creds: Creds<'_>,
) -> Result<jmap::ClientBuilder, EngineError> {
    let credentials = match &login {
        Login::Password(p) => Credentials::basic(username, p.expose()),
        Login::Bearer(t) => Credentials::bearer(t.expose()),
    };
    let mut b = Client::builder()
        .credentials(credentials)
        .allow_insecure_http(creds.allow_plaintext)
        .connect_timeout(Duration::from_secs(15))
        .request_timeout(Duration::from_secs(120));
    if let Some(ca) = creds.ca_file {
        let pem = tokio::fs::read(ca)
            .await
            .map_err(|e| EngineError::Config(format!("cannot read CA file {ca}: {e}")))?;
        b = b.add_root_certificates_pem(&pem);
    }
    Ok(b)
}

/// Finds an account's JMAP Session URL from what the user gave: an email address or a host
/// (`_jmap._tcp` SRV, then `https://host/.well-known/jmap`, RFC 8620 §2.2), a URL without a
/// path (its `/.well-known/jmap`), or a full Session URL. Redirects are followed; the URL
/// returned is the one the Session was finally served from, so later connections skip the
/// discovery. Plain http is only used where the client allows it (loopback, or the opt-in).
pub async fn discover_session_url(
    input: &str,
    username: &str,
    creds: Creds<'_>,
) -> Result<String, EngineError> {
    let client = oauth::with_login(creds, |login| async move {
        Ok(builder(username, login, creds)
            .await?
            .discover(input)
            .await?)
    })
    .await?;
    Ok(client.session().url().to_string())
}

fn keyword(flag: &Flag) -> String {
    match flag {
        Flag::Seen => jmap::keyword::SEEN.to_owned(),
        Flag::Flagged => jmap::keyword::FLAGGED.to_owned(),
        Flag::Answered => jmap::keyword::ANSWERED.to_owned(),
        Flag::Draft => jmap::keyword::DRAFT.to_owned(),
        Flag::Keyword(k) => k.clone(),
    }
}

/// The mailboxes a change only takes the email out of, when that is all it does (it ends in
/// some of the mailboxes it is in and in no other), e.g. a draft discarded from Drafts that
/// another client filed elsewhere (`Op::Discard` in the outbox).
fn removal(c: &EmailChange) -> Option<Vec<MailboxId>> {
    let mailsync_outbox::Target::Mailboxes(to) = &c.target else {
        return None;
    };
    let from = c.before.mailbox_ids();
    let leave: Vec<MailboxId> = from.iter().filter(|m| !to.contains(m)).copied().collect();
    (!to.is_empty() && to.iter().all(|m| from.contains(m)) && !leave.is_empty()).then_some(leave)
}

/// Executes queued changes against a JMAP account.
pub struct JmapExecutor<'a> {
    /// The connected client.
    pub client: &'a Client,
    /// The store (mailbox id mapping, Sent/Drafts roles).
    pub store: &'a Store,
    /// The outbox, to journal each send's hand-over and acceptance as they happen.
    pub outbox: &'a Outbox,
    /// The Email state after this executor's own last `Email/set`: its changes are the only
    /// ones since the state it was guarded by, so the next batch may build on it.
    own_state: std::sync::Mutex<Option<jmap::State>>,
}

impl<'a> JmapExecutor<'a> {
    /// An executor for one flush.
    pub fn new(client: &'a Client, store: &'a Store, outbox: &'a Outbox) -> Self {
        JmapExecutor {
            client,
            store,
            outbox,
            own_state: std::sync::Mutex::new(None),
        }
    }

    /// The `ifInState` of the next `Email/set`: the Email state the local view was last synced
    /// at (or the state our own last set left), so that a change made by another client since
    /// is answered with `stateMismatch` (resync, then retry) instead of being overwritten.
    async fn guard_state(&self, account: AccountId) -> Result<Option<jmap::State>, BatchError> {
        if let Some(s) = self.own_state.lock().ok().and_then(|g| g.clone()) {
            return Ok(Some(s));
        }
        Ok(
            checkpoints::get(self.store.conn(), account, &Scope::jmap("Email"))
                .await
                .map_err(|e| batch_error(&e.into()))?
                .and_then(|c| c.state)
                .map(jmap::State::new),
        )
    }
}

impl JmapExecutor<'_> {
    /// Saves a draft's new content: `Email/set` create in its mailbox with its keywords
    /// (`$draft` among them), and only once the server created it, remove the version it
    /// replaces ([`Self::retire_old`]). Not one request: RFC 8620 handles every item of a set
    /// on its own, so a destroy next to a refused create would leave the user with neither
    /// version.
    ///
    /// An [`Attempt::Uncertain`] save (an earlier `Email/set` whose answer was lost) first
    /// looks for that attempt's copy and takes it instead of creating a second one; so does a
    /// create the server refuses as `alreadyExists` naming the existing copy (RFC 8621 §4.6:
    /// a server may refuse two Emails with the same content).
    async fn save_draft(
        &self,
        account: AccountId,
        c: &EmailChange,
        msg: &mailsync_outbox::OutgoingMessage,
        attempt: Attempt,
    ) -> Result<ItemOutcome, BatchError> {
        let draft = match Draft::try_from(msg) {
            Ok(d) => d,
            Err(e) => return Ok(item_outcome(&e)),
        };
        let drafts_box =
            match mailboxes::find_by_role(self.store.conn(), account, Role::Drafts).await {
                Ok(m) => m.map(|m| m.id),
                Err(e) => return Ok(item_outcome(&e.into())),
            };
        // Drafts, where the draft is there: `destination` takes the first mailbox by id, which
        // for a draft another client also filed elsewhere may be that other mailbox.
        let in_drafts = drafts_box.filter(|d| {
            c.target == mailsync_outbox::Target::Stay
                && c.source().iter().any(|l| l.mailbox_id == *d)
        });
        let Some(dest) = in_drafts.or_else(|| c.destination()) else {
            return Ok(ItemOutcome::Permanent {
                reason: "a draft with no mailbox to go to".into(),
            });
        };
        let remote = match mailboxes::get(self.store.conn(), dest).await {
            Ok(m) => jmap::MailboxId::new(m.remote_id),
            Err(e) => return Ok(item_outcome(&e.into())),
        };
        // The mailboxes the old version leaves: where the new one went, Drafts, and for a save
        // merged with a move the mailboxes it moves away from.
        let mut vacated = vec![dest];
        vacated.extend(drafts_box);
        if matches!(c.target, mailsync_outbox::Target::Mailboxes(_)) {
            vacated.extend(c.source().iter().map(|l| l.mailbox_id));
        }
        let mut leave = vec![remote.clone()];
        for m in vacated.into_iter().filter(|m| *m != dest) {
            if let Ok(mb) = mailboxes::get(self.store.conn(), m).await {
                leave.push(jmap::MailboxId::new(mb.remote_id));
            }
        }
        let jacc = self
            .client
            .mail_account_id()
            .map_err(|e| batch_error(&e.into()))?;
        let f = c.final_flags();
        let mut keywords: std::collections::BTreeMap<String, bool> =
            [(keyword(&Flag::Draft), true)].into();
        for (on, flag) in [
            (f.seen, Flag::Seen),
            (f.flagged, Flag::Flagged),
            (f.answered, Flag::Answered),
        ] {
            if on {
                keywords.insert(keyword(&flag), true);
            }
        }
        for k in &f.keywords {
            keywords.insert(k.clone(), true);
        }
        let result = async {
            let earlier = match attempt {
                Attempt::Uncertain => {
                    jmap_send::find_copy(self.client, &jacc, &draft.message_id, &remote, &c.remote_id)
                        .await?
                }
                _ => None,
            };
            let (id, size) = match earlier {
                Some(id) => {
                    tracing::info!(%id, "An earlier save of this draft was stored without its answer; taking that copy.");
                    (id, None)
                }
                None => {
                    let email = jmap_send::email_object(
                        self.client, &jacc, &draft, &remote, keywords, true,
                    )
                    .await?;
                    let mut set = Set::<Email>::new(&jacc);
                    let created = set.create(email);
                    let resp = self.client.call(set).await?;
                    match resp.created_or_error(&created) {
                        // `size` is server-set, returned with the id (RFC 8621 section 4.6).
                        Ok(e) => (
                            e.id.clone().ok_or_else(|| {
                                EngineError::Config("server returned no id for the draft".into())
                            })?,
                            e.size.and_then(|s| i64::try_from(s).ok()),
                        ),
                        Err(jmap::Error::SetItem { error, .. })
                            if error.kind == jmap::SetErrorType::AlreadyExists
                                && error.existing_id.as_deref().is_some_and(|x| x != c.remote_id) =>
                        {
                            (jmap::EmailId::new(error.existing_id.clone().unwrap_or_default()), None)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if !c.source().is_empty() {
                let old = jmap::EmailId::new(c.remote_id.clone());
                match self.retire_old(&jacc, &old, &leave).await {
                    Ok(()) => {}
                    // Cut: the save is tried again, as uncertain, which finds the new version
                    // above instead of creating it twice and removes the old one.
                    Err(e) if matches!(classify(&e), Disposition::Offline | Disposition::Retry { .. }) => {
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "The draft's new version is saved; removing the old one failed.");
                    }
                }
            }
            Ok::<_, EngineError>((id, size))
        }
        .await;
        // Our own sets moved the Email state on: the next guarded set must read it again.
        if let Ok(mut g) = self.own_state.lock() {
            *g = None;
        }
        match result {
            Ok((id, size)) => Ok(ItemOutcome::Relocated {
                remote_id: Some(id.as_str().to_owned()),
                locations: vec![mailsync_outbox::Location::plain(dest)],
                size,
            }),
            Err(e) => match classify(&e) {
                Disposition::Offline | Disposition::NeedsUser => Err(batch_error(&e)),
                _ => Ok(item_outcome(&e)),
            },
        }
    }

    /// Removes the version a draft's save replaced, once the new one is stored: out of the
    /// mailboxes the draft leaves (`leave`: Drafts) only, when the Email is in another one too
    /// (another client filed a copy of the draft there: on Cyrus the same Email in one more
    /// mailbox, which must stay, as it does over IMAP); destroyed when it is in no other.
    ///
    /// Decided on the old Email's mailboxes as the server has them, read just before and
    /// guarded by that read's state (`ifInState`), read again after a `stateMismatch`. The
    /// local view cannot guard this step: the save's own create moved the Email state on, and
    /// an interrupted save keeps the old version's base (`outbox::reapply_after_sync`).
    async fn retire_old(
        &self,
        jacc: &jmap::AccountId,
        old: &jmap::EmailId,
        leave: &[jmap::MailboxId],
    ) -> Result<(), EngineError> {
        const READS: usize = 3;
        for _ in 0..READS {
            let got = self
                .client
                .call(
                    jmap::Get::<Email>::new(jacc)
                        .ids(vec![old.clone()])
                        .properties(["mailboxIds"]),
                )
                .await?;
            // Already gone: nothing to remove.
            let Some(e) = got.list.first() else {
                return Ok(());
            };
            let now: Vec<&jmap::MailboxId> = e
                .mailbox_ids
                .iter()
                .flatten()
                .filter(|(_, on)| **on)
                .map(|(m, _)| m)
                .collect();
            let mut set = Set::<Email>::new(jacc).if_in_state(&got.state);
            if now.iter().any(|m| !leave.contains(m)) {
                let mut patch = Patch::new();
                for m in leave.iter().filter(|m| now.contains(m)) {
                    patch = patch.mailbox(m, false);
                }
                if patch.is_empty() {
                    return Ok(());
                }
                set.update(old, patch);
            } else {
                set.destroy([old]);
            }
            match self.client.call(set).await {
                Ok(r) => {
                    let errors: Vec<&jmap::SetError> = r
                        .not_updated
                        .values()
                        .chain(r.not_destroyed.values())
                        .collect();
                    if errors
                        .iter()
                        .any(|e| e.kind != jmap::SetErrorType::NotFound)
                    {
                        tracing::warn!(
                            ?errors,
                            "The draft's new version is saved; removing the old one failed."
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    let e = EngineError::from(e);
                    if classify(&e) != Disposition::Resync {
                        return Err(e);
                    }
                }
            }
        }
        // Changed under us every time: the old version stays (a duplicate, nothing lost).
        tracing::warn!(
            "The draft's new version is saved; the Email state changed {READS} times while \
             removing the old one, which stays."
        );
        Ok(())
    }

    async fn email_changes(
        &self,
        account: AccountId,
        items: &[(usize, &EmailChange)],
        out: &mut [Option<ItemOutcome>],
    ) -> Result<(), BatchError> {
        if items.is_empty() {
            return Ok(());
        }
        let jacc = self
            .client
            .mail_account_id()
            .map_err(|e| batch_error(&e.into()))?;
        let boxes: HashMap<MailboxId, String> = mailboxes::list(self.store.conn(), account)
            .await
            .map_err(|e| batch_error(&e.into()))?
            .into_iter()
            .map(|m| (m.id, m.remote_id))
            .collect();
        // Check that every move target still exists on the server: Cyrus accepts a patch into
        // a mailbox another client just deleted and the email then vanishes from every
        // mailbox, so such a move must be refused here (permanently) instead.
        // A change that only takes the email out of mailboxes adds it nowhere: nothing to check.
        let mut targets: Vec<jmap::MailboxId> = items
            .iter()
            .filter_map(|(_, c)| match &c.target {
                mailsync_outbox::Target::Mailboxes(to) if removal(c).is_none() => Some(to.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|m| boxes.get(&m).map(|r| jmap::MailboxId::new(r.clone())))
            .collect();
        targets.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        targets.dedup();
        let mut gone: std::collections::HashSet<String> = std::collections::HashSet::new();
        if !targets.is_empty() {
            let resp = self
                .client
                .call(
                    jmap::Get::<jmap::Mailbox>::new(&jacc)
                        .ids(targets)
                        .properties(["id"]),
                )
                .await
                .map_err(|e| batch_error(&e.into()))?;
            gone.extend(resp.not_found.iter().map(|m| m.as_str().to_owned()));
        }
        let mut set = Set::<Email>::new(&jacc);
        let mut destroys = Vec::new();
        for (i, c) in items {
            let id = jmap::EmailId::new(c.remote_id.clone());
            match &c.target {
                mailsync_outbox::Target::Destroy => {
                    destroys.push(id);
                }
                target => {
                    let mut patch = Patch::new();
                    for f in &c.flags {
                        patch = patch.keyword(&keyword(&f.flag), f.value);
                    }
                    if let Some(leave) = removal(c) {
                        // Out of these mailboxes only (`mailboxIds/<id>: null`, RFC 8621
                        // section 4.6), e.g. a draft discarded from Drafts whose copy another
                        // client filed elsewhere: the Email stays there.
                        for m in leave.iter().filter_map(|m| boxes.get(m)) {
                            patch = patch.mailbox(&jmap::MailboxId::new(m.clone()), false);
                        }
                    } else if let mailsync_outbox::Target::Mailboxes(to) = target {
                        let mut remote = Vec::with_capacity(to.len());
                        for m in to {
                            match boxes.get(m) {
                                Some(r) if gone.contains(r) => {
                                    out[*i] = Some(ItemOutcome::Permanent {
                                        reason: format!(
                                            "mailbox {r} no longer exists on the server"
                                        ),
                                    });
                                }
                                Some(r) => remote.push(jmap::MailboxId::new(r.clone())),
                                None => {
                                    out[*i] = Some(ItemOutcome::Permanent {
                                        reason: format!("mailbox {m} no longer exists"),
                                    });
                                }
                            }
                        }
                        if out[*i].is_some() {
                            continue;
                        }
                        patch = patch.mailboxes(remote.iter());
                    }
                    if patch.is_empty() {
                        out[*i] = Some(ItemOutcome::Done);
                        continue;
                    }
                    set.update(&id, patch);
                }
            }
        }
        set.destroy(destroys.iter());
        if set.is_empty() {
            return Ok(());
        }
        if let Some(state) = self.guard_state(account).await? {
            set = set.if_in_state(&state);
        }
        let resp = match self.client.call(set).await {
            Ok(r) => r,
            Err(e) => {
                // Whatever state we held is no longer the server's: read it again after the
                // resync.
                if let Ok(mut g) = self.own_state.lock() {
                    *g = None;
                }
                if e.may_have_reached_server() {
                    // Cut after the request left: the server may have applied it. Each item
                    // is uncertain (retried as such, undone by compensation, not withdrawn).
                    for (i, _) in items {
                        if out[*i].is_none() {
                            out[*i] = Some(ItemOutcome::Unknown {
                                reason: e.to_string(),
                            });
                        }
                    }
                    return Ok(());
                }
                return Err(batch_error(&e.into()));
            }
        };
        if let Ok(mut g) = self.own_state.lock() {
            *g = resp.new_state.clone();
        }
        for (i, c) in items {
            if out[*i].is_some() {
                continue;
            }
            let id = jmap::EmailId::new(c.remote_id.clone());
            let err = resp
                .not_updated
                .get(&id)
                .or_else(|| resp.not_destroyed.get(&id));
            out[*i] = Some(match err {
                None => ItemOutcome::Done,
                // Destroying what is already gone is success: the operation is idempotent.
                Some(e)
                    if e.kind == jmap::SetErrorType::NotFound
                        && c.target == mailsync_outbox::Target::Destroy =>
                {
                    ItemOutcome::Done
                }
                // Taken out of its last mailboxes: another client removed it from the others
                // since the view the change was decided on. Looked for again after the sync,
                // which shows where it is (for a discarded draft only in Drafts: destroyed
                // then); destroying it here could undo a move another client made.
                Some(e)
                    if e.kind == jmap::SetErrorType::InvalidProperties && removal(c).is_some() =>
                {
                    ItemOutcome::NotFound {
                        reason: format!(
                            "the email would be left in no mailbox ({}); looking at it again \
                             after the next sync",
                            e.description.as_deref().unwrap_or("invalidProperties")
                        ),
                    }
                }
                // An email another client destroyed: `notFound` becomes NotFound, so the
                // outbox looks for it again after the sync, as for IMAP.
                Some(e) => item_outcome(&EngineError::Jmap(jmap::Error::SetItem {
                    operation: jmap::SetOperation::Update,
                    id: c.remote_id.clone(),
                    error: Box::new(e.clone()),
                })),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Executor for JmapExecutor<'_> {
    async fn execute(
        &self,
        account: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        let mut out: Vec<Option<ItemOutcome>> = vec![None; batch.len()];
        let emails: Vec<(usize, &EmailChange)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, q)| match &q.operation {
                Operation::Email(c) if c.content.is_none() => Some((i, c)),
                _ => None,
            })
            .collect();
        self.email_changes(account, &emails, &mut out).await?;
        for (i, q) in batch.iter().enumerate() {
            if let Operation::Email(c) = &q.operation
                && let Some(msg) = &c.content
            {
                out[i] = Some(self.save_draft(account, c, msg, q.attempt).await?);
            }
        }
        for (i, q) in batch.iter().enumerate() {
            if let Operation::Mailbox(op) = &q.operation {
                out[i] = Some(
                    crate::mailbox_admin::jmap_execute(self.client, self.store, op, q.attempt)
                        .await,
                );
            }
        }
        for (i, q) in batch.iter().enumerate() {
            let Operation::Send(msg) = &q.operation else {
                continue;
            };
            let outcome = match Draft::try_from(msg) {
                Err(e) => item_outcome(&e),
                Ok(draft) => {
                    // JMAP moves the copy to Sent atomically with the submission
                    // (onSuccessUpdateEmail), so a Submitted row has nothing left to do.
                    if q.attempt == Attempt::Submitted {
                        ItemOutcome::Done
                    } else if q.attempt == Attempt::Uncertain {
                        // Handed over, acceptance unknown: only look, never submit.
                        match jmap_send::look(self.client, self.store, account, &draft.message_id)
                            .await
                        {
                            Ok(Previous::InSent(_)) => ItemOutcome::Done,
                            Ok(Previous::Draft(_)) => ItemOutcome::Unconfirmed {
                                reason: "handed to the JMAP server, interrupted before its \
                                         answer was recorded; its draft is in Drafts, not in Sent"
                                    .into(),
                            },
                            Ok(_) => ItemOutcome::Unconfirmed {
                                reason: "handed to the JMAP server, interrupted before its \
                                         answer was recorded; no email with its Message-ID"
                                    .into(),
                            },
                            Err(e) => match classify(&e) {
                                Disposition::Offline | Disposition::NeedsUser => {
                                    return Err(batch_error(&e));
                                }
                                _ => item_outcome(&e),
                            },
                        }
                    } else {
                        let journal = jmap_send::Journal {
                            outbox: self.outbox,
                            change: q.id,
                        };
                        match jmap_send::send(
                            self.client,
                            self.store,
                            account,
                            &draft,
                            Some(journal),
                        )
                        .await
                        {
                            Ok(_) => ItemOutcome::Done,
                            Err(e) => match classify(&e) {
                                Disposition::Offline | Disposition::NeedsUser => {
                                    return Err(batch_error(&e));
                                }
                                _ => item_outcome(&e),
                            },
                        }
                    }
                }
            };
            out[i] = Some(outcome);
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

/// Runs cycles and waits for a JMAP account.
pub struct JmapDriver {
    store: Store,
    outbox: std::sync::Arc<Outbox>,
    account: Account,
    client: Option<Client>,
    /// The OAuth 2 access token `client` was built with.
    client_token: Option<Secret>,
    push: Option<PushStream>,
    push_unavailable: bool,
    /// The push stream disconnected since its last `Connected`.
    push_was_down: bool,
    /// The open push stream is a WebSocket (RFC 8887).
    push_is_ws: bool,
    /// The WebSocket endpoint refused push: use EventSource.
    ws_refused: bool,
    poll_interval: Duration,
}

impl JmapDriver {
    /// A driver for `account`; it connects lazily on the first cycle.
    pub fn new(store: Store, outbox: std::sync::Arc<Outbox>, account: Account) -> Self {
        Self {
            store,
            outbox,
            account,
            client: None,
            client_token: None,
            push: None,
            push_unavailable: false,
            push_was_down: false,
            push_is_ws: false,
            ws_refused: false,
            poll_interval: POLL_INTERVAL,
        }
    }

    /// Changes the polling interval used when push is unavailable.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether the server refused push (the driver polls instead).
    pub fn push_unavailable(&self) -> bool {
        self.push_unavailable
    }

    /// Whether push runs over WebSocket (RFC 8887) rather than EventSource.
    pub fn push_is_web_socket(&self) -> bool {
        self.push.is_some() && self.push_is_ws
    }

    async fn client(&mut self) -> Result<Client, EngineError> {
        if self.account.oauth.is_none() {
            if let Some(c) = &self.client {
                return Ok(c.clone());
            }
            let c = connect(&self.account).await?;
            self.client = Some(c.clone());
            return Ok(c);
        }
        // OAuth 2: every request carries the token, so a client whose token was replaced
        // (refreshed ahead of its expiry) is rebuilt with the new one, push included.
        let login = oauth::login((&self.account).into()).await?;
        let Login::Bearer(token) = &login else {
            return Err(EngineError::Config(
                "OAuth 2 account without a token".into(),
            ));
        };
        if let (Some(c), Some(t)) = (&self.client, &self.client_token)
            && t == token
        {
            return Ok(c.clone());
        }
        let token = token.clone();
        let c = connect_with(&self.account, session_url(&self.account)?, login).await?;
        self.client = Some(c.clone());
        self.client_token = Some(token);
        self.push = None;
        Ok(c)
    }
}

#[async_trait::async_trait]
impl Remote for JmapDriver {
    async fn flush(
        &mut self,
        outbox: &Outbox,
        account: AccountId,
    ) -> Result<FlushReport, EngineError> {
        let client = self.client().await?;
        let executor = JmapExecutor::new(&client, &self.store, outbox);
        Ok(outbox.flush(account, &executor).await?)
    }

    async fn sync(&mut self) -> Result<Synced, EngineError> {
        let client = self.client().await?;
        let jacc = client.mail_account_id()?;
        let mailboxes =
            jmap_sync::sync_mailboxes(&client, &self.store, self.account.id, &jacc).await?;
        let counts = jmap_sync::sync_emails(
            &client,
            &self.store,
            self.account.id,
            &jacc,
            self.account.body_policy,
        )
        .await?;
        Ok(Synced {
            mailboxes,
            added: counts.added,
            updated: counts.updated,
            removed: counts.removed,
            // One Email/changes (or listing) covers every mailbox of the account.
            complete: true,
        })
    }
}

#[async_trait::async_trait]
impl AccountDriver for JmapDriver {
    async fn cycle(&mut self, _cancel: &CancellationToken) -> Result<SyncCounts, EngineError> {
        let outbox = self.outbox.clone();
        let account = self.account.id;
        let mut res = cycle::run(self, &outbox, account).await;
        if let Err(e) = &res
            && self.account.oauth.is_some()
            && crate::classify::is_auth_failure(e)
        {
            // The server refused the token before its expiry (revoked, or clocks apart):
            // one fresh token and one more cycle before "needs the user".
            self.client = None;
            self.push = None;
            oauth::relogin((&self.account).into()).await?;
            res = cycle::run(self, &outbox, account).await;
        }
        if res.is_err() {
            // Reconnect next time: the session may have moved.
            self.client = None;
            self.push = None;
        }
        res
    }

    async fn wait_for_change(&mut self) -> Result<(), EngineError> {
        if self.push.is_none() && !self.push_unavailable {
            let client = self.client().await?;
            let config = PushConfig::default().types(["Email", "Mailbox"]);
            // WebSocket push (RFC 8887) where the Session offers it, else EventSource.
            self.push_is_ws = !self.ws_refused && client.web_socket_push_url().is_some();
            let opened = if self.push_is_ws {
                client.web_socket_push(config)
            } else {
                client.event_source(config)
            };
            match opened {
                Ok(s) => {
                    self.push = Some(s);
                    self.push_was_down = false;
                }
                Err(e) if e.is_push_unavailable() => self.push_unavailable = true,
                Err(e) => return Err(e.into()),
            }
        }
        let Some(stream) = self.push.as_mut() else {
            tokio::time::sleep(self.poll_interval).await;
            return Ok(());
        };
        loop {
            match stream.next().await {
                Some(Ok(PushEvent::StateChange(_))) => return Ok(()),
                // After a reconnection, changes may have been missed while the stream was
                // down (the server does not replay them): sync once. The first connection of
                // a stream follows the cycle that just ran, so it needs no sync of its own.
                Some(Ok(PushEvent::Connected)) => {
                    if std::mem::take(&mut self.push_was_down) {
                        tracing::debug!("Push reconnected; syncing what may have been missed.");
                        return Ok(());
                    }
                }
                Some(Ok(PushEvent::Disconnected { .. })) => self.push_was_down = true,
                Some(Ok(_)) => {}
                Some(Err(e)) if e.is_push_unavailable() && self.push_is_ws => {
                    // The endpoint refused the upgrade: EventSource from the next wait on
                    // (this one returns, so the cycle in between covers the gap).
                    tracing::info!(error = %e, "WebSocket push refused; using EventSource.");
                    self.push = None;
                    self.ws_refused = true;
                    return Ok(());
                }
                Some(Err(e)) if e.is_push_unavailable() => {
                    self.push = None;
                    self.push_unavailable = true;
                    tracing::info!("Push unavailable; polling every {:?}.", self.poll_interval);
                    tokio::time::sleep(self.poll_interval).await;
                    return Ok(());
                }
                Some(Err(e)) => {
                    self.push = None;
                    return Err(e.into());
                }
                None => {
                    self.push = None;
                    return Ok(());
                }
            }
        }
    }

    async fn reset_checkpoints(&mut self) -> Result<(), EngineError> {
        mailsync_store::checkpoints::delete_all(self.store.conn(), self.account.id).await?;
        Ok(())
    }
}
