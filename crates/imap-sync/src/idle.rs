//! Waiting for changes: IDLE (RFC 2177), re-issued before the server's 30-minute limit, or
//! NOOP polling when the server has no IDLE.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use mailsync_store::mailboxes::Mailbox;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::error::Error;
use crate::wire::{Cmd, Response, Status};

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
    let mut wake = pin!(wake);
    conn.select(&mailbox.remote_id).await?;
    if !conn.has_capability("IDLE") {
        return poll(conn, wake, deadline).await;
    }
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
                    changed |= u.is_mailbox_change();
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
                            if u.is_mailbox_change() {
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
        let late_change = done(conn, &tag).await?;
        match outcome {
            Some(o) => return Ok(o),
            None if late_change => return Ok(IdleOutcome::Changed),
            None => {}
        }
    }
}

/// Ends IDLE; returns whether a change arrived in the meantime.
async fn done(conn: &mut Connection, tag: &str) -> Result<bool, Error> {
    conn.wire.write_all(b"DONE\r\n").await?;
    let mut changed = false;
    loop {
        match conn.wire.read().await? {
            Response::Untagged(u) => {
                conn.note(&u);
                changed |= u.is_mailbox_change();
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
) -> Result<IdleOutcome, Error> {
    loop {
        let (data, _) = conn.run(&Cmd::new("NOOP")).await?;
        if data.iter().any(|u| u.is_mailbox_change()) {
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
