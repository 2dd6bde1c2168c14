//! JMAP objects into the store: mailboxes (Mailbox/get, then Mailbox/changes) and emails
//! (Email/query + Email/get chained in one request per page, then Email/changes + Email/get of
//! created and updated), with bodies cached by the account's body policy.
//!
//! Bodies are a debt, not a one-shot: after the email objects, every sync fetches whatever the
//! policy wants and the cache lacks ([`bodies::wanted_missing`], the query the IMAP sync uses
//! too), in chunks committed one by one, so a download cut short or a policy raised later is
//! made good by the next sync even though the Email checkpoint has moved on.
//!
//! Checkpoints are the JMAP state strings under [`Scope::jmap`]`("Mailbox")` and `("Email")`,
//! written in the same transaction as the data they cover. A full listing commits its pages as it
//! goes (idempotent upserts), each with the listing's cursor ([`Scope::jmap_listing`]), and
//! writes the checkpoint, with the removal of emails the server no longer has, only at the end:
//! cut midway, the next cycle continues the listing after its last committed page.

use std::collections::{BTreeMap, HashMap, HashSet};

use mailsync_jmap_client as jmap;
use mailsync_jmap_client::{
    Changes, ChangesPager, Client, Comparator, Email, Get, MailboxRole, Query, QueryCursor,
    QueryPager,
};
use mailsync_store::bodies::{self, Body, DebtScope};
use mailsync_store::checkpoints::{self, Checkpoint, Scope};
use mailsync_store::emails::{self, Attachment, EmailUpsert, Membership};
use mailsync_store::mailboxes::{self, MailboxStatus, MailboxUpsert};
use mailsync_store::{AccountId, Address, BodyPolicy, Flags, MailboxId, Role, Store, StoreError};

mod error;

pub use error::{Error, StateRejection, state_rejection};

/// The most mailboxes an account may have (the IMAP sync's default limit too): every
/// change re-reads the whole list and recomputes every path, so a server listing 100,000 is
/// refused with [`Error::TooManyMailboxes`] rather than processed again and again.
pub const MAX_MAILBOXES: usize = 10_000;

/// Emails per page of a full listing (one Email/query + Email/get request each).
pub const PAGE_SIZE: u64 = 500;

/// The Email properties stored for every email.
pub const EMAIL_PROPERTIES: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "attachments",
];

/// What a JMAP sync pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JmapCounts {
    /// Mailboxes on the server.
    pub mailboxes: i64,
    /// Emails inserted.
    pub added: i64,
    /// Emails updated.
    pub updated: i64,
    /// Emails removed.
    pub removed: i64,
    /// Whether a full listing was needed (first run or lost checkpoint).
    pub full: bool,
    /// Set when the listing was full because the server rejected the stored Email state.
    pub email_state_rejected: Option<StateRejection>,
}

fn role(r: &MailboxRole) -> Option<Role> {
    match r {
        MailboxRole::Inbox => Some(Role::Inbox),
        MailboxRole::Sent => Some(Role::Sent),
        MailboxRole::Drafts => Some(Role::Drafts),
        MailboxRole::Trash => Some(Role::Trash),
        MailboxRole::Junk => Some(Role::Junk),
        MailboxRole::Archive => Some(Role::Archive),
        _ => None,
    }
}

/// After a full listing that followed a rejected state: checks that the server accepts the
/// state it has just given as the start of `Foo/changes`. A server that rejects even that
/// would make every cycle list everything again; the cycle fails instead (a sync-log error
/// row and backoff), so a rejected state leads to one full listing, never to a loop.
async fn check_fresh_state<O: jmap::Object>(
    client: &Client,
    jmap_account: &jmap::AccountId,
    state: &jmap::State,
) -> Result<(), Error> {
    match client
        .call(Changes::<O>::new(jmap_account, state).max_changes(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match state_rejection(&e) {
            Some(rejection) => Err(Error::StateRejectedAgain {
                data_type: O::NAME,
                rejection,
            }),
            None => Err(e.into()),
        },
    }
}

/// The separator of the full mailbox paths built from JMAP's parent chains.
pub const PATH_SEPARATOR: &str = "/";

/// Each mailbox's full path: the names along its `parentId` chain joined by `/`
/// (`Projects/2024`), the form IMAP servers show and users type. A chain that loops or
/// names a mailbox not in the list stops there.
pub fn full_paths(list: &[jmap::Mailbox]) -> HashMap<String, String> {
    let by_id: HashMap<&str, &jmap::Mailbox> = list
        .iter()
        .filter_map(|m| m.id.as_ref().map(|i| (i.as_str(), m)))
        .collect();
    let leaf = |m: &jmap::Mailbox, id: &str| m.name.clone().unwrap_or_else(|| id.to_owned());
    let mut out = HashMap::new();
    for (id, m) in &by_id {
        let mut parts = vec![leaf(m, id)];
        let mut seen = HashSet::from([*id]);
        let mut cur = m.parent_id.as_ref();
        while let Some(p) = cur {
            let Some(pm) = by_id.get(p.as_str()) else {
                break;
            };
            if !seen.insert(p.as_str()) {
                break;
            }
            parts.push(leaf(pm, p.as_str()));
            cur = pm.parent_id.as_ref();
        }
        parts.reverse();
        out.insert((*id).to_owned(), parts.join(PATH_SEPARATOR));
    }
    out
}

/// `id` when it is well formed (`JmapId::is_well_formed`: RFC 8620 §1.2's length, no control
/// characters); otherwise the object (`what`) is left out, with a warning. Unbounded, such ids
/// failed PostgreSQL's index writes, and so the sync, every cycle.
fn well_formed<'a, I: jmap::JmapId>(id: Option<&'a I>, what: &str) -> Option<&'a I> {
    let id = id?;
    if id.is_well_formed() {
        return Some(id);
    }
    tracing::warn!(
        what,
        bytes = id.as_str().len(),
        "An object whose JMAP id is malformed (RFC 8620 §1.2): left out."
    );
    None
}

/// A JMAP Mailbox as a store upsert; `None` without a well-formed id, as for emails.
fn mailbox_upsert(m: &jmap::Mailbox, paths: &HashMap<String, String>) -> Option<MailboxUpsert> {
    let id = well_formed(m.id.as_ref(), "mailbox")?;
    Some(MailboxUpsert {
        remote_id: id.as_str().to_owned(),
        name: paths
            .get(id.as_str())
            .cloned()
            .or_else(|| m.name.clone())
            .unwrap_or_else(|| id.as_str().to_owned()),
        parent_remote_id: m.parent_id.as_ref().map(|p| p.as_str().to_owned()),
        delimiter: Some(PATH_SEPARATOR.to_owned()),
        selectable: true,
        role: m.role.as_ref().and_then(role),
        status: Some(MailboxStatus {
            total: m
                .total_emails
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            unread: m
                .unread_emails
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            uidvalidity: None,
            uidnext: None,
            highestmodseq: None,
        }),
    })
}

/// Syncs the mailbox list: Mailbox/changes from the stored state, or Mailbox/get of all.
pub async fn sync_mailboxes(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
) -> Result<i64, Error> {
    let scope = Scope::jmap("Mailbox");
    let mut rejected = None;
    if let Some(state) = checkpoints::get(store.conn(), account, &scope)
        .await?
        .and_then(|c| c.state)
    {
        // Mailbox/changes only tells whether anything changed: a mailbox's name is its full
        // path (`Projects/2024`), which depends on its parents, so any change re-reads the
        // whole (short) list and recomputes every path.
        let mut pager =
            ChangesPager::<jmap::Mailbox>::new(client, jmap_account, &jmap::State::new(state));
        loop {
            match pager.next_page().await {
                Ok(Some(page)) => {
                    let c = &page.changes;
                    if !(c.created.is_empty() && c.updated.is_empty() && c.destroyed.is_empty()) {
                        break;
                    }
                    let txn = store.begin().await?;
                    checkpoints::put(
                        &txn,
                        account,
                        &scope,
                        &Checkpoint::state(page.changes.new_state.as_str()),
                    )
                    .await?;
                    txn.commit().await.map_err(StoreError::from)?;
                }
                Ok(None) => {
                    return Ok(mailboxes::list(store.conn(), account).await?.len() as i64);
                }
                Err(e) => match state_rejection(&e) {
                    Some(why) => {
                        tracing::warn!(error = %e, reason = %why,
                            "Mailbox state rejected by the server; listing all mailboxes once.");
                        rejected = Some(why);
                        break;
                    }
                    None => return Err(e.into()),
                },
            }
        }
    }
    let resp = client.call(Get::<jmap::Mailbox>::new(jmap_account)).await?;
    if resp.list.len() > MAX_MAILBOXES {
        return Err(Error::TooManyMailboxes {
            count: resp.list.len(),
            limit: MAX_MAILBOXES,
        });
    }
    let paths = full_paths(&resp.list);
    let items: Vec<_> = resp
        .list
        .iter()
        .filter_map(|m| mailbox_upsert(m, &paths))
        .collect();
    let keep: Vec<String> = items.iter().map(|m| m.remote_id.clone()).collect();
    let txn = store.begin().await?;
    mailboxes::upsert(&txn, account, &items).await?;
    mailboxes::delete_missing(&txn, account, &keep).await?;
    checkpoints::put(
        &txn,
        account,
        &scope,
        &Checkpoint::state(resp.state.as_str()),
    )
    .await?;
    txn.commit().await.map_err(StoreError::from)?;
    if rejected.is_some() {
        check_fresh_state::<jmap::Mailbox>(client, jmap_account, &resp.state).await?;
    }
    Ok(items.len() as i64)
}

fn addresses(v: &Option<Vec<jmap::EmailAddress>>) -> Vec<Address> {
    v.iter()
        .flatten()
        .map(|a| Address {
            name: a.name.clone().filter(|n| !n.is_empty()),
            email: a.email.clone(),
        })
        .collect()
}

fn flags(keywords: &Option<BTreeMap<String, bool>>) -> Flags {
    let mut f = Flags::default();
    for (k, on) in keywords.iter().flatten() {
        if !on {
            continue;
        }
        match k.to_ascii_lowercase().as_str() {
            "$seen" => f.seen = true,
            "$flagged" => f.flagged = true,
            "$answered" => f.answered = true,
            "$draft" => f.draft = true,
            _ => f.keywords.push(k.clone()),
        }
    }
    f.keywords.sort();
    f.keywords.dedup();
    f
}

/// Converts a JMAP Email into a store upsert; `None` for an email without a well-formed id
/// (RFC 8620 §1.2's length, no control characters) or without receivedAt. A malformed
/// `threadId` is none: the email is threaded locally.
pub fn email_upsert(e: &Email, boxes: &HashMap<String, MailboxId>) -> Option<EmailUpsert> {
    use jmap::JmapId as _;
    let id = well_formed(e.id.as_ref(), "email")?;
    let received = e.received_at?;
    let mut u = EmailUpsert::new(id.as_str(), received);
    u.blob_id = e.blob_id.as_ref().map(|b| b.as_str().to_owned());
    u.thread_id = e
        .thread_id
        .as_ref()
        .filter(|t| t.is_well_formed())
        .map(|t| t.as_str().to_owned());
    u.message_id = e.message_id.as_ref().and_then(|v| v.first().cloned());
    u.in_reply_to = e
        .in_reply_to
        .as_ref()
        .map(|v| v.join(" "))
        .filter(|s| !s.is_empty());
    u.references = e
        .references
        .as_ref()
        .map(|v| v.join(" "))
        .filter(|s| !s.is_empty());
    u.subject = e.subject.clone();
    u.from = addresses(&e.from);
    u.to = addresses(&e.to);
    u.cc = addresses(&e.cc);
    u.bcc = addresses(&e.bcc);
    u.reply_to = addresses(&e.reply_to);
    u.sent_at = e.sent_at.map(|d| d.with_timezone(&chrono::Utc));
    u.size = e.size.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
    u.flags = flags(&e.keywords);
    u.preview = e.preview.clone();
    u.has_attachment = e.has_attachment.unwrap_or(false);
    u.mailboxes = e
        .mailbox_ids
        .iter()
        .flatten()
        .filter(|(_, on)| **on)
        .filter_map(|(m, _)| boxes.get(m.as_str()).copied())
        .map(Membership::plain)
        .collect();
    u.attachments = e.attachments.as_ref().map(|parts| {
        parts
            .iter()
            .map(|p| Attachment {
                part_id: p.part_id.clone(),
                blob_id: p.blob_id.as_ref().map(|b| b.as_str().to_owned()),
                file_name: p.name.clone(),
                mime_type: p
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into())
                    .to_ascii_lowercase(),
                size: p.size.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
                disposition: p.disposition.clone(),
                content_id: p.cid.clone(),
            })
            .collect()
    });
    Some(u)
}

async fn mailbox_map(
    store: &Store,
    account: AccountId,
) -> Result<HashMap<String, MailboxId>, Error> {
    Ok(mailboxes::list(store.conn(), account)
        .await?
        .into_iter()
        .map(|m| (m.remote_id, m.id))
        .collect())
}

fn email_get(jmap_account: &jmap::AccountId) -> Get<Email> {
    Get::new(jmap_account).properties(EMAIL_PROPERTIES.iter().copied())
}

/// Syncs emails: Email/changes from the stored state, else a full paged listing; then pays the
/// body debt of the account under `policy`.
pub async fn sync_emails(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
    policy: BodyPolicy,
) -> Result<JmapCounts, Error> {
    let counts = sync_email_objects(client, store, account, jmap_account).await?;
    pay_body_debt(client, store, account, jmap_account, policy).await?;
    Ok(counts)
}

/// Email/changes from the stored state, else a full paged listing (objects only, no bodies).
async fn sync_email_objects(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
) -> Result<JmapCounts, Error> {
    let scope = Scope::jmap("Email");
    let boxes = mailbox_map(store, account).await?;
    let mut counts = JmapCounts::default();
    if let Some(state) = checkpoints::get(store.conn(), account, &scope)
        .await?
        .and_then(|c| c.state)
    {
        let mut pager = ChangesPager::<Email>::new(client, jmap_account, &jmap::State::new(state))
            .max_changes(PAGE_SIZE)
            .fetch_created(email_get(jmap_account))
            .fetch_updated(email_get(jmap_account));
        loop {
            match pager.next_page().await {
                Ok(Some(page)) => {
                    let items: Vec<_> = page
                        .created
                        .iter()
                        .chain(&page.updated)
                        .filter_map(|e| email_upsert(e, &boxes))
                        .collect();
                    let gone: Vec<String> = page
                        .changes
                        .destroyed
                        .iter()
                        .chain(&page.not_found)
                        .map(|i| i.as_str().to_owned())
                        .collect();
                    let txn = store.begin().await?;
                    let stats = emails::upsert_batch(&txn, account, &items).await?;
                    let removed = emails::delete_by_remote_ids(&txn, account, &gone).await?;
                    checkpoints::put(
                        &txn,
                        account,
                        &scope,
                        &Checkpoint::state(page.changes.new_state.as_str()),
                    )
                    .await?;
                    txn.commit().await.map_err(StoreError::from)?;
                    store.note_inserted(stats.inserted).await;
                    counts.added += stats.inserted as i64;
                    counts.updated += stats.updated as i64;
                    counts.removed += removed as i64;
                }
                Ok(None) => return Ok(counts),
                Err(e) => match state_rejection(&e) {
                    Some(why) => {
                        tracing::warn!(error = %e, reason = %why,
                            "Email state rejected by the server; listing all emails once.");
                        counts.email_state_rejected = Some(why);
                        checkpoints::delete(store.conn(), account, &scope).await?;
                        break;
                    }
                    None => return Err(e.into()),
                },
            }
        }
    }
    counts.full = true;
    full_listing(client, store, account, jmap_account, &boxes, &mut counts).await?;
    Ok(counts)
}

/// The first page of a full listing; each page that arrives doubles the next, up to
/// [`PAGE_SIZE`] (a slow start, so a network that cuts long responses still lets some pages
/// through).
const FIRST_PAGE_SIZE: u64 = 50;
/// The smallest page a resumed listing shrinks to.
const MIN_PAGE_SIZE: u64 = 10;

/// The cursor of an unfinished full listing, if one was stored (an unreadable one is ignored:
/// the listing starts again, which is always correct).
async fn listing_cursor(
    store: &Store,
    account: AccountId,
    scope: &Scope,
) -> Result<Option<QueryCursor>, Error> {
    Ok(checkpoints::get(store.conn(), account, scope)
        .await?
        .and_then(|c| c.state)
        .and_then(|s| serde_json::from_str(&s).ok()))
}

/// The full listing of emails. Each page commits with the listing's cursor
/// ([`Scope::jmap_listing`]), so a listing cut midway continues after its last committed page
/// in the next sync, starting with half the page that was cut (the cut may come from responses
/// too large for the network); the Email checkpoint (the first page's state), the
/// removal of emails the server no longer has and the cursor's removal commit together at the
/// end.
async fn full_listing(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
    boxes: &HashMap<String, MailboxId>,
    counts: &mut JmapCounts,
) -> Result<(), Error> {
    let scope = Scope::jmap("Email");
    let cursor_scope = Scope::jmap_listing("Email");
    let mut query = Query::<Email>::new(jmap_account);
    let sort = listing_sort(client, jmap_account);
    if !sort.is_empty() {
        query = query.sort(sort);
    }
    let mut pager = QueryPager::new(client, query, email_get(jmap_account), FIRST_PAGE_SIZE);
    let resumed = listing_cursor(store, account, &cursor_scope).await?;
    if let Some(c) = &resumed {
        tracing::info!(
            position = c.position,
            "continuing the full Email listing where it stopped"
        );
        pager = pager.resume(c);
        pager.set_page_size((c.page_size / 2).clamp(MIN_PAGE_SIZE, PAGE_SIZE));
    }
    // Stored before the first request, so even a cut before any page arrived makes the next
    // attempt start smaller.
    let cursor = serde_json::to_string(&pager.cursor()).unwrap_or_default();
    checkpoints::put(
        store.conn(),
        account,
        &cursor_scope,
        &Checkpoint::state(cursor),
    )
    .await?;
    let mut page_size = pager.cursor().page_size;
    let mut seen: HashSet<String> = HashSet::new();
    let mut next = pager.next_page().await?;
    while let Some(page) = next {
        let mut items: Vec<_> = page
            .objects
            .iter()
            .filter_map(|e| email_upsert(e, boxes))
            .collect();
        // Ties broken here, not on the wire: the same page is always written in the same order.
        items.sort_by(|a, b| {
            b.received_at
                .cmp(&a.received_at)
                .then_with(|| a.remote_id.cmp(&b.remote_id))
        });
        seen.extend(items.iter().map(|u| u.remote_id.clone()));
        page_size = (page_size * 2).min(PAGE_SIZE);
        pager.set_page_size(page_size);
        // Strings and numbers always serialise; an empty cursor would only restart the listing.
        let cursor = serde_json::to_string(&pager.cursor()).unwrap_or_default();
        let write = async {
            let txn = store.begin().await?;
            let stats = emails::upsert_batch(&txn, account, &items).await?;
            checkpoints::put(&txn, account, &cursor_scope, &Checkpoint::state(cursor)).await?;
            txn.commit().await.map_err(StoreError::from)?;
            store.note_inserted(stats.inserted).await;
            Ok::<_, Error>(stats)
        };
        // The next page is asked for while this one is written: the server's time and the
        // database's overlap. A failed write drops the page read beside it; the cursor
        // stored with the last committed page is where the next attempt resumes.
        let (written, fetched, ()) =
            futures::join!(write, pager.next_page(), store.checkpoint_wal());
        let stats = written?;
        counts.added += stats.inserted as i64;
        counts.updated += stats.updated as i64;
        next = fetched?;
    }
    // The oldest state seen during paging: changes made meanwhile are replayed next time.
    let Some(state) = pager.first_state().cloned() else {
        checkpoints::delete(store.conn(), account, &cursor_scope).await?;
        return Ok(());
    };
    // A resumed listing did not see the pages of earlier runs: what the server has is asked
    // again, ids only (a small answer), so no email is removed for having been listed before.
    if resumed.is_some() {
        seen = all_email_ids(client, jmap_account).await?;
    }
    let local = emails::remote_ids(store.conn(), account).await?;
    // An email with queued changes stays: a new draft not uploaded yet is not on the server,
    // and one the server lost is found gone by the outbox (model test, Cyrus JMAP seed 997
    // with cuts: a refused mailbox delete asked for this listing, which removed two new
    // drafts whose upload a cut had interrupted; one was then created without a local row).
    let queued = emails::remote_ids_with_queued_changes(store.conn(), account).await?;
    let stale: Vec<String> = local
        .into_iter()
        .filter(|r| !seen.contains(r) && !queued.contains(r))
        .collect();
    let txn = store.begin().await?;
    counts.removed += emails::delete_by_remote_ids(&txn, account, &stale).await? as i64;
    checkpoints::put(&txn, account, &scope, &Checkpoint::state(state.as_str())).await?;
    checkpoints::delete(&txn, account, &cursor_scope).await?;
    txn.commit().await.map_err(StoreError::from)?;
    if counts.email_state_rejected.is_some() {
        check_fresh_state::<Email>(client, jmap_account, &state).await?;
    }
    Ok(())
}

/// Ids per `Email/query` of [`all_email_ids`].
const ID_PAGE_SIZE: u64 = 5_000;

/// Every Email id of the account (`Email/query` without `/get`, paged by position).
async fn all_email_ids(
    client: &Client,
    jmap_account: &jmap::AccountId,
) -> Result<HashSet<String>, Error> {
    let mut ids = HashSet::new();
    let mut position: u64 = 0;
    loop {
        let resp = client
            .call(
                Query::<Email>::new(jmap_account)
                    .position(i64::try_from(position).unwrap_or(i64::MAX))
                    .limit(ID_PAGE_SIZE)
                    .calculate_total(true),
            )
            .await?;
        let n = resp.ids.len() as u64;
        ids.extend(resp.ids.into_iter().map(jmap::EmailId::into_inner));
        position = resp.position.saturating_add(n);
        if n == 0 || resp.total.is_some_and(|t| position >= t) {
            return Ok(ids);
        }
    }
}

/// The sort of the full listing: newest first by `receivedAt`, the one sort property RFC 8621
/// §4.4.2 requires every server to support, unless the account's `emailQuerySortOptions` says
/// otherwise (then the server's own order).
///
/// There is no tie-breaker on the wire: `id` is not an Email sort property, and a server answers
/// it with `unsupportedSort`. None is needed: pages after the first are addressed by anchor (the
/// last id seen), which is exact whatever order the server gives equal `receivedAt` values, the
/// listing keeps every id it saw and upserts by id (a repeat is harmless), and the following
/// `Email/changes` starts from the state of the first page, so an email that moved while paging
/// is reconciled. Within a page, emails are written in (receivedAt, id) order, decided here.
pub fn listing_sort(client: &Client, jmap_account: &jmap::AccountId) -> Vec<Comparator> {
    let offered = client
        .session()
        .account(jmap_account)
        .and_then(|a| a.mail_capabilities())
        .map(|c| c.email_query_sort_options)
        .unwrap_or_default();
    if offered.is_empty() || offered.iter().any(|p| p == "receivedAt") {
        vec![Comparator::descending("receivedAt")]
    } else {
        Vec::new()
    }
}

/// Bodies to fetch per request (and per committed chunk).
const BODY_BATCH: u64 = 50;

/// Fetches the bodies `policy` wants and the cache lacks, a page of the debt query per
/// Email/get, each committed on its own so a cut keeps what was stored. Paging by id passes
/// over an email the server no longer has (`notFound`); the sync that sees it destroyed
/// removes it.
async fn pay_body_debt(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
    policy: BodyPolicy,
) -> Result<(), Error> {
    let mut after = None;
    let mut paid = 0;
    // One batch is stored while the next is downloaded (the list of what is owed is read
    // past the last email asked for, so it does not wait for that write).
    let mut writing: Option<Vec<(String, Body)>> = None;
    loop {
        let owed = bodies::wanted_missing(
            store.conn(),
            account,
            DebtScope::Account,
            policy,
            after,
            BODY_BATCH,
        )
        .await?;
        let Some(last) = owed.last() else { break };
        after = Some(last.email);
        let ids: Vec<jmap::EmailId> = owed
            .iter()
            .map(|w| jmap::EmailId::new(&w.remote_id))
            .collect();
        let write = async {
            match writing.take() {
                Some(got) => store_bodies(store, account, &got).await,
                None => Ok(0),
            }
        };
        let (written, fetched, ()) = futures::join!(
            write,
            fetch_bodies(client, jmap_account, ids),
            store.checkpoint_wal()
        );
        paid += written?;
        writing = Some(fetched?);
    }
    if let Some(got) = writing {
        paid += store_bodies(store, account, &got).await?;
    }
    if paid > 0 {
        tracing::debug!(bodies = paid, "body debt paid");
    }
    Ok(())
}

/// Fetches text and HTML bodies of these emails (Email/get with body values) and caches them.
pub async fn fetch_and_store_bodies(
    client: &Client,
    store: &Store,
    account: AccountId,
    jmap_account: &jmap::AccountId,
    ids: Vec<jmap::EmailId>,
) -> Result<usize, Error> {
    let got = fetch_bodies(client, jmap_account, ids).await?;
    store_bodies(store, account, &got).await
}

/// Downloads the bodies of these emails, by remote id.
async fn fetch_bodies(
    client: &Client,
    jmap_account: &jmap::AccountId,
    ids: Vec<jmap::EmailId>,
) -> Result<Vec<(String, Body)>, Error> {
    let get = Get::<Email>::new(jmap_account)
        .ids(ids)
        .properties(["id", "textBody", "htmlBody", "bodyValues"])
        .fetch_text_body_values(true)
        .fetch_html_body_values(true)
        // Bounds the response (the client refuses one over 64 MiB): a body cut here is
        // stored as truncated, and the full message stays available on demand.
        .max_body_value_bytes(512 * 1024);
    let resp = client.call(get).await?;
    Ok(resp
        .list
        .iter()
        .filter_map(|e| Some((e.id.as_ref()?.as_str().to_owned(), body_of(e))))
        .collect())
}

/// Caches downloaded bodies and indexes them, in one transaction; the bodies of emails
/// deleted since they were asked for are dropped.
async fn store_bodies(
    store: &Store,
    account: AccountId,
    got: &[(String, Body)],
) -> Result<usize, Error> {
    let txn = store.begin().await?;
    let remote: Vec<String> = got.iter().map(|(r, _)| r.clone()).collect();
    let local = emails::ids_by_remote_ids(&txn, account, &remote).await?;
    let rows: Vec<_> = got
        .iter()
        .filter_map(|(r, b)| Some((*local.get(r)?, b)))
        .collect();
    bodies::put_many(&txn, &rows).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(rows.len())
}

fn join_parts(e: &Email, parts: &Option<Vec<jmap::EmailBodyPart>>) -> (Option<String>, bool) {
    let mut out = String::new();
    let mut truncated = false;
    let mut any = false;
    for p in parts.iter().flatten() {
        let Some(pid) = &p.part_id else { continue };
        if let Some(v) = e.body_values.as_ref().and_then(|b| b.get(pid)) {
            out.push_str(&v.value);
            truncated |= v.is_truncated;
            any = true;
        }
    }
    (any.then_some(out), truncated)
}

/// Text and HTML of an Email fetched with body values.
pub fn body_of(e: &Email) -> Body {
    let (text, t1) = join_parts(e, &e.text_body);
    let (html, t2) = join_parts(e, &e.html_body);
    // RFC 8621: htmlBody falls back to the text parts when there is no HTML; do not store the
    // text twice as if it were HTML.
    let html = html.filter(|h| Some(h) != text.as_ref());
    Body {
        text,
        html,
        raw: None,
        truncated: t1 || t2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids the server sends are kept only when RFC 8620 §1.2 allows them: an email with a
    /// malformed id is left out, a malformed `threadId` leaves the email to local threading.
    #[test]
    fn malformed_ids_are_not_stored() -> Result<(), serde_json::Error> {
        let email = |id: &str, thread: &str| {
            serde_json::from_value::<Email>(serde_json::json!({
                "id": id,
                "threadId": thread,
                "receivedAt": "2026-12-07T08:00:00Z",
            }))
        };
        let boxes = HashMap::new();
        let ok = email_upsert(&email("M1-a_b", "T1")?, &boxes).map(|u| u.thread_id);
        assert_eq!(ok, Some(Some("T1".to_owned())));
        let long = "T".repeat(256);
        let no_thread = email_upsert(&email("M1", &long)?, &boxes).map(|u| u.thread_id);
        assert_eq!(no_thread, Some(None));
        assert!(email_upsert(&email(&"M".repeat(20_000), "T1")?, &boxes).is_none());
        assert!(email_upsert(&email("M\n1", "T1")?, &boxes).is_none());
        assert!(
            email_upsert(&email("M.1:x", "T1")?, &boxes).is_some(),
            "a variant"
        );
        assert!(email_upsert(&email("", "T1")?, &boxes).is_none());
        Ok(())
    }
}
