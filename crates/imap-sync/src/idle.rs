//! Waiting for changes: IDLE (RFC 2177), re-issued before the server's 30-minute limit, or
//! NOOP polling when the server has no IDLE; NOTIFY (RFC 5465) on every mailbox; and the cheap
//! STATUS round (LIST-STATUS, RFC 5819, where offered) over mailboxes nobody IDLEs on.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use mailsync_store::mailboxes::Mailbox;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::error::Error;
use crate::wire::{Cmd, Response, Status, Untagged};

/// Why [`idle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdleOutcome {
    /// The server reported a change to the mailbox (EXISTS, EXPUNGE, FETCH or VANISHED).
    Changed,
    /// The caller's wake future completed.
    Woken,
    /// `max_wait` elapsed without news.
    Timeout,
}

/// Waits on `mailbox` until the server reports a change, `wake` completes (for example
/// `notify.notified()` of a `tokio::sync::Notify` the caller fires), or `max_wait` elapses.
/// IDLE is ended cleanly (`DONE`) in every case, so the connection stays usable; use `wake`
/// rather than dropping this future (dropping it mid-IDLE leaves the connection unusable).
/// Without IDLE, NOOP is sent every [`crate::Timeouts::poll_interval`].
pub async fn idle<W>(
    conn: &mut Connection,
    mailbox: &Mailbox,
    wake: W,
    max_wait: Duration,
) -> Result<IdleOutcome, Error>
where
    W: Future<Output = ()>,
{
    let deadline = Instant::now() + max_wait;
    let wake = pin!(wake);
    conn.select(&mailbox.remote_id).await?;
    if !conn.has_capability("IDLE") {
        return poll(conn, wake, deadline, Untagged::is_mailbox_change).await;
    }
    idle_loop(conn, wake, deadline, Untagged::is_mailbox_change).await
}

/// A mailbox's counters as a STATUS round saw them: any difference between two rounds (or
/// from what the store recorded at the last sync) means something changed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MailboxCounters {
    /// `MESSAGES`: changes on arrivals and expunges.
    pub messages: Option<u32>,
    /// `UNSEEN`: changes when `\Seen` is set or cleared (servers without CONDSTORE too).
    pub unseen: Option<u32>,
    /// `UIDNEXT`: grows with every arrival, even one expunged since.
    pub uidnext: Option<u32>,
    /// `UIDVALIDITY`.
    pub uidvalidity: Option<u32>,
    /// `HIGHESTMODSEQ` (CONDSTORE): grows with every change, flags included.
    pub highestmodseq: Option<u64>,
}

impl From<&crate::wire::StatusItems> for MailboxCounters {
    fn from(s: &crate::wire::StatusItems) -> Self {
        Self {
            messages: s.messages,
            unseen: s.unseen,
            uidnext: s.uidnext,
            uidvalidity: s.uidvalidity,
            highestmodseq: s.highestmodseq,
        }
    }
}

/// One cheap look at many mailboxes at once, for servers without NOTIFY: a single
/// `LIST "" "*" RETURN (STATUS (...))` where LIST-STATUS (RFC 5819) is offered (it answers for
/// every mailbox; the caller picks), else `STATUS` of each of `names`, pipelined in one round
/// trip. Returns the counters by mailbox name (as sent on the wire). A mailbox that cannot be
/// examined (deleted meanwhile) is left out: the next sync's LIST notices it. Costs the
/// server an index look-up per mailbox; no mailbox is selected, so the selected one (and an
/// IDLE to come on it) is undisturbed.
pub async fn status_round(
    conn: &mut Connection,
    names: &[String],
) -> Result<Vec<(String, MailboxCounters)>, Error> {
    if conn.has_capability("LIST-STATUS") && conn.has_capability("LIST-EXTENDED") {
        let (_, statuses) = conn.list().await?;
        return Ok(statuses
            .iter()
            .map(|(name, items)| (name.clone(), MailboxCounters::from(items)))
            .collect());
    }
    // A STATUS of the selected mailbox is discouraged (RFC 3501 6.3.10): it is IDLEd on.
    let selected = conn.selected.as_ref().map(|s| s.name.clone());
    let names: Vec<String> = names
        .iter()
        .filter(|n| selected.as_deref() != Some(n.as_str()))
        .cloned()
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let results = conn.status_many(&names).await?;
    let mut out = Vec::with_capacity(names.len());
    for (name, r) in names.into_iter().zip(results) {
        match r {
            Ok(items) => out.push((name, MailboxCounters::from(&items))),
            Err(e) if e.is_connection() => return Err(e),
            Err(e) => tracing::debug!(%name, error = %e, "STATUS failed"),
        }
    }
    Ok(out)
}

/// The NOTIFY events asked for: new mail, expunges and flag changes in every personal mailbox,
/// and changes to the mailbox list (RFC 5465).
const NOTIFY_SET: &str =
    "SET (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))";

/// The same, with the selected mailbox reported as under IDLE (EXISTS, VANISHED, FETCH).
const NOTIFY_SET_SELECTED: &str = "SET (selected (MessageNew MessageExpunge FlagChange)) \
     (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))";

/// Waits for a change in *any* mailbox of the account with NOTIFY (RFC 5465): the server
/// reports other mailboxes' changes as STATUS responses and list changes as LIST responses, so
/// new mail filtered into a folder, or moved there by another client, is seen at once instead
/// of at the next round. Requires the `NOTIFY` capability (see [`Connection::has_capability`]).
/// With `keep`, that mailbox (INBOX, say) is selected, if it is not already, and stays
/// selected, its changes reported through NOTIFY's `selected` filter: the sync that follows
/// can then catch it up with QRESYNC without a new SELECT, whose cost grows with the mailbox
/// on some servers. Without `keep` the mailbox is unselected so that every mailbox reports
/// the same way. NOTIFY is turned off again (`NOTIFY NONE`) before returning, so a following
/// sync sees no unsolicited STATUS responses. Like [`idle`], ends cleanly on `wake` and on
/// `max_wait`.
pub async fn idle_account<W>(
    conn: &mut Connection,
    keep: Option<&Mailbox>,
    wake: W,
    max_wait: Duration,
) -> Result<IdleOutcome, Error>
where
    W: Future<Output = ()>,
{
    let deadline = Instant::now() + max_wait;
    let wake = pin!(wake);
    let set = match keep {
        Some(mb) => {
            conn.select(&mb.remote_id).await?;
            NOTIFY_SET_SELECTED
        }
        None => {
            if conn.selected.is_some() && conn.has_capability("UNSELECT") {
                conn.run(&Cmd::new("UNSELECT")).await?;
                conn.forget_selection();
            }
            NOTIFY_SET
        }
    };
    let (early, _) = conn.run(&Cmd::new("NOTIFY").raw(set)).await?;
    let res = if early.iter().any(is_account_change) {
        Ok(IdleOutcome::Changed)
    } else if conn.has_capability("IDLE") {
        idle_loop(conn, wake, deadline, is_account_change).await
    } else {
        poll(conn, wake, deadline, is_account_change).await
    };
    let outcome = res?;
    let (late, _) = conn.run(&Cmd::new("NOTIFY").raw("NONE")).await?;
    if outcome != IdleOutcome::Changed && late.iter().any(is_account_change) {
        return Ok(IdleOutcome::Changed);
    }
    Ok(outcome)
}

/// A change somewhere in the account, as NOTIFY reports it.
fn is_account_change(u: &Untagged) -> bool {
    u.is_mailbox_change() || matches!(u, Untagged::Status { .. } | Untagged::List(_))
}

/// IDLE until `changed` says an untagged response is news, `wake`, or the deadline; re-issued
/// before the server's limit.
async fn idle_loop<W>(
    conn: &mut Connection,
    mut wake: std::pin::Pin<&mut W>,
    deadline: Instant,
    is_change: fn(&Untagged) -> bool,
) -> Result<IdleOutcome, Error>
where
    W: Future<Output = ()>,
{
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(IdleOutcome::Timeout);
        }
        let round = deadline
            .saturating_duration_since(now)
            .min(conn.wire.timeouts.idle_reissue);
        let tag = conn
            .wire
            .send_expecting_continuation(&Cmd::new("IDLE"))
            .await?;
        let mut changed = false;
        loop {
            match conn.wire.read().await? {
                Response::Continue(_) => break,
                Response::Untagged(u) => {
                    conn.note(&u);
                    changed |= is_change(&u);
                }
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    conn.wire.set_ready();
                    return Err(match status {
                        Status::No => Error::No {
                            command: "IDLE".into(),
                            code,
                            text,
                        },
                        _ => Error::Bad {
                            command: "IDLE".into(),
                            code,
                            text,
                        },
                    });
                }
                Response::Tagged { .. } => {}
            }
        }
        let outcome = if changed {
            Some(IdleOutcome::Changed)
        } else {
            let sleep = tokio::time::sleep(round);
            let mut sleep = pin!(sleep);
            loop {
                tokio::select! {
                    r = conn.wire.read_untimed() => match r? {
                        Response::Untagged(u) => {
                            conn.note(&u);
                            if is_change(&u) {
                                break Some(IdleOutcome::Changed);
                            }
                        }
                        // The server ended IDLE on its own (rare): treat as a re-issue.
                        Response::Tagged { .. } => break None,
                        Response::Continue(_) => {}
                    },
                    () = &mut wake => break Some(IdleOutcome::Woken),
                    () = &mut sleep => break None,
                }
            }
        };
        let late_change = done(conn, &tag, is_change).await?;
        match outcome {
            Some(o) => return Ok(o),
            None if late_change => return Ok(IdleOutcome::Changed),
            None => {}
        }
    }
}

/// Ends IDLE; returns whether a change arrived in the meantime.
async fn done(
    conn: &mut Connection,
    tag: &str,
    is_change: fn(&Untagged) -> bool,
) -> Result<bool, Error> {
    conn.wire.write_all(b"DONE\r\n").await?;
    let mut changed = false;
    loop {
        match conn.wire.read().await? {
            Response::Untagged(u) => {
                conn.note(&u);
                changed |= is_change(&u);
            }
            Response::Tagged { tag: t, .. } if t == tag => {
                conn.wire.set_ready();
                return Ok(changed);
            }
            _ => {}
        }
    }
}

async fn poll<W: Future<Output = ()>>(
    conn: &mut Connection,
    mut wake: std::pin::Pin<&mut W>,
    deadline: Instant,
    is_change: fn(&Untagged) -> bool,
) -> Result<IdleOutcome, Error> {
    loop {
        let (data, _) = conn.run(&Cmd::new("NOOP")).await?;
        if data.iter().any(is_change) {
            return Ok(IdleOutcome::Changed);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(IdleOutcome::Timeout);
        }
        let wait = deadline
            .saturating_duration_since(now)
            .min(conn.wire.timeouts.poll_interval);
        tokio::select! {
            () = &mut wake => return Ok(IdleOutcome::Woken),
            () = tokio::time::sleep(wait) => {}
        }
    }
}
