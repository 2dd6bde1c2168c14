//! `sync`: one cycle per account (`--once`) or the daemon (workers until SIGINT/SIGTERM).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use mailsync_engine::worker::WorkerPolicy;
use mailsync_engine::{EngineEvent, SyncNow};
use mailsync_store::BodyPolicy;
use mailsync_store::accounts::{self, Account};
use mailsync_store::sync_log::SyncCounts;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Ctx;
use crate::args::SyncArgs;
use crate::error::{CliError, code};
use crate::output;

/// Parses `500ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t.as_str(), "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The worker policy for this run (`--poll-interval` / `MAILSYNC_POLL_INTERVAL`,
/// `--imap-connections`, `--status-interval`).
pub fn policy(a: &crate::args::PollArg) -> Result<WorkerPolicy, CliError> {
    let mut p = WorkerPolicy::default().with_imap_connections(a.imap_connections);
    match a.host_connections {
        Some(0) => return Err(CliError::usage("--host-connections must be at least 1")),
        Some(n) => p = p.with_host_connections(n),
        None => {}
    }
    for cap in a.imap_ignore.iter().filter(|c| !c.trim().is_empty()) {
        p = p.without_imap_extension(cap.trim());
    }
    if let Some(s) = a.status_interval.as_deref() {
        let d = parse_duration(s).ok_or_else(|| {
            CliError::usage(format!(
                "invalid status interval {s:?}: expected e.g. 500ms, 3s"
            ))
        })?;
        p = p.with_status_interval(d);
    }
    if let Some(s) = a.poll_interval.as_deref() {
        let d = parse_duration(s).ok_or_else(|| {
            CliError::usage(format!(
                "invalid poll interval {s:?}: expected e.g. 500ms, 5s, 2m"
            ))
        })?;
        p = p.with_poll_interval(d);
    }
    Ok(p)
}

fn summary(c: &SyncCounts) -> String {
    format!(
        "{} mailboxes, {} added, {} updated, {} removed, {} changes sent",
        c.mailboxes, c.emails_added, c.emails_updated, c.emails_removed, c.changes_flushed
    )
}

pub async fn run(ctx: &Ctx, a: SyncArgs) -> Result<u8, CliError> {
    let mut selected = ctx.accounts(&a.accounts).await?;
    if selected.is_empty() {
        return Err(CliError::not_found(
            "no accounts: add one with `mailsync account add`",
        ));
    }
    if let Some(b) = &a.bodies {
        let policy: BodyPolicy = b.parse().map_err(|_| {
            CliError::usage(format!(
                "invalid --bodies {b:?}: expected none, all or <N>kb"
            ))
        })?;
        for acc in &mut selected {
            accounts::set_body_policy(ctx.store().conn(), acc.id, policy).await?;
            // Daemon workers keep the account they start with: give them the new policy.
            acc.body_policy = policy;
        }
    }
    if a.once {
        once(ctx, &selected).await
    } else {
        let only = (!a.accounts.is_empty()).then(|| selected.iter().map(|x| x.id).collect());
        daemon(ctx, selected, only).await
    }
}

/// Counts for the progress bar: emails stored locally, and the sum of the mailbox totals the
/// server reported (an estimate: a JMAP email in two mailboxes counts twice).
async fn progress_counts(ctx: &Ctx, acc: &Account) -> (u64, u64) {
    let c = ctx.store().conn();
    let done = mailsync_store::emails::count(c, acc.id).await.unwrap_or(0);
    let total = mailsync_store::mailboxes::list(c, acc.id)
        .await
        .map(|l| l.iter().map(|m| m.status.total.max(0) as u64).sum())
        .unwrap_or(0);
    (done, total)
}

/// What [`cycle`] did.
pub enum Cycle {
    /// Ran here.
    Ran(SyncCounts),
    /// A running daemon holds the account: it was asked to sync now.
    Delegated {
        /// The daemon's lease owner name.
        owner: String,
    },
}

/// After handing an account to the running daemon: waits until `done` says the work left the
/// queue, at most `limit` (the daemon is woken within a second and then flushes).
pub async fn wait_for_daemon<F, Fut>(limit: Duration, mut done: F) -> Result<bool, CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CliError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if done().await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Flushes the account now: here, or by the running daemon that holds it (asked, then waited
/// for until `done` says the work left the queue, at most `limit`). The request is repeated
/// every second, and once the daemon's lease expired (a killed daemon) the cycle runs here.
pub async fn flush_now<F, Fut>(
    ctx: &Ctx,
    acc: &Account,
    limit: Duration,
    mut done: F,
) -> Result<Cycle, CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CliError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match cycle(ctx, acc, false).await? {
            Cycle::Ran(c) => return Ok(Cycle::Ran(c)),
            Cycle::Delegated { owner } => {
                if wait_for_daemon(Duration::from_secs(1), &mut done).await?
                    || Instant::now() >= deadline
                {
                    return Ok(Cycle::Delegated { owner });
                }
            }
        }
    }
}

/// Runs one cycle for an account, or asks the daemon holding its lease to run one (then
/// nothing races it). On a terminal (`progress`), a bar shows the messages stored so far
/// against the server's mailbox totals, with the rate; the engine has no progress callback, so
/// the bar polls the database.
pub async fn cycle(ctx: &Ctx, acc: &Account, progress: bool) -> Result<Cycle, CliError> {
    let started = Instant::now();
    let bar = if progress {
        let b = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {pos}/{len} messages ({per_sec}, {elapsed})",
        ) {
            b.set_style(style);
        }
        b.set_message(format!("syncing {:?}", acc.name));
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let (start_done, _) = if bar.is_some() {
        progress_counts(ctx, acc).await
    } else {
        (0, 0)
    };
    let sync = ctx.engine.sync_now(acc.id);
    tokio::pin!(sync);
    let res = loop {
        tokio::select! {
            r = &mut sync => break r,
            _ = tokio::time::sleep(Duration::from_millis(500)), if bar.is_some() => {
                if let Some(b) = &bar {
                    let (done, total) = progress_counts(ctx, acc).await;
                    let pos = done.saturating_sub(start_done);
                    b.set_length(total.saturating_sub(start_done).max(pos));
                    b.set_position(pos);
                }
            }
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let object = format!("account {:?}", acc.name);
    let out = match res.map_err(|e| CliError::engine(&object, &e))? {
        SyncNow::Ran(c) => Cycle::Ran(c),
        SyncNow::Delegated { owner } => Cycle::Delegated { owner },
        _ => Cycle::Delegated {
            owner: "another engine".into(),
        },
    };
    tracing::info!(account = %acc.name, elapsed = ?started.elapsed(), "Cycle done.");
    Ok(out)
}

async fn once(ctx: &Ctx, selected: &[Account]) -> Result<u8, CliError> {
    let progress = std::io::stderr().is_terminal();
    let mut first_code = 0;
    for acc in selected {
        let started = Instant::now();
        match cycle(ctx, acc, progress).await {
            Ok(Cycle::Ran(c)) => output::line(format!(
                "account {:?}: synced in {:.1}s: {}",
                acc.name,
                started.elapsed().as_secs_f64(),
                summary(&c)
            ))?,
            Ok(Cycle::Delegated { owner }) => output::line(format!(
                "account {:?}: a running daemon ({owner}) syncs it; asked it to sync now",
                acc.name
            ))?,
            Err(e) => {
                eprintln!("error: {}", e.message);
                if first_code == 0 {
                    first_code = e.code;
                }
            }
        }
    }
    Ok(first_code)
}

/// SIGTERM and SIGINT, which end the daemon and `watch`.
pub(super) fn stop_signals() -> Result<(Signal, Signal), CliError> {
    let term = signal(SignalKind::terminate())
        .map_err(|e| CliError::failure(format!("cannot listen for SIGTERM: {e}")))?;
    let int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::failure(format!("cannot listen for SIGINT: {e}")))?;
    Ok((term, int))
}

/// On SQLite only one daemon may run: registers this one and refuses to start when another
/// live daemon registered first (of two starting together, the later one gives way).
async fn single_daemon_on_sqlite(ctx: &Ctx) -> Result<(), CliError> {
    if ctx.store().backend() != mailsync_store::Backend::Sqlite {
        return Ok(());
    }
    let engine = &ctx.engine;
    let fail = |e: mailsync_engine::EngineError| CliError::engine("daemon registration", &e);
    engine.register_daemon().await.map_err(fail)?;
    let live = engine.daemons().await.map_err(fail)?;
    let me = live.iter().find(|d| d.owner == engine.owner());
    let first = live.iter().find(|d| {
        d.owner != engine.owner()
            && !dead_here(&d.owner, engine.owner())
            && me.is_none_or(|m| (d.started_at, &d.owner) < (m.started_at, &m.owner))
    });
    if let Some(other) = first {
        let _ = mailsync_store::daemons::remove(ctx.store().conn(), engine.owner()).await;
        return Err(CliError::failure(format!(
            "another mailsync daemon ({}, running since {}) already syncs this SQLite database; \
             SQLite supports one daemon at a time: stop it, or use PostgreSQL (--db \
             postgres://...) to share accounts among several daemons",
            other.owner,
            output::rfc3339(other.started_at)
        )));
    }
    Ok(())
}

/// Whether `other` (a lease owner name, `host/pid N/...`) names a process of this host that
/// is gone: a killed daemon's row is live until it expires, but a restart need not wait.
fn dead_here(other: &str, me: &str) -> bool {
    let host = |o: &str| o.split('/').next().map(str::to_owned);
    let pid = other
        .split('/')
        .nth(1)
        .and_then(|p| p.strip_prefix("pid "))
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if host(other) == host(me) => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

async fn daemon(
    ctx: &Ctx,
    selected: Vec<Account>,
    only: Option<Vec<mailsync_store::AccountId>>,
) -> Result<u8, CliError> {
    let (mut term, mut int) = stop_signals()?;
    single_daemon_on_sqlite(ctx).await?;
    let mut events = ctx.engine.subscribe();
    let names: std::collections::HashMap<_, _> =
        selected.iter().map(|a| (a.id, a.name.clone())).collect();
    eprintln!(
        "mailsync: daemon {} syncing {} account(s), shared with any other daemon on this database",
        ctx.engine.owner(),
        selected.len()
    );
    ctx.engine
        .start_fleet(only, mailsync_engine::fleet::FleetPolicy::default());
    loop {
        tokio::select! {
            _ = term.recv() => { eprintln!("mailsync: SIGTERM, shutting down"); break; }
            _ = int.recv() => { eprintln!("mailsync: SIGINT, shutting down"); break; }
            ev = events.recv() => match ev {
                Some(EngineEvent::Synced { account, counts }) => {
                    // Polls that change nothing stay quiet (they show with -v).
                    let name = names.get(&account).cloned().unwrap_or_default();
                    if counts != SyncCounts::default() {
                        eprintln!("mailsync: account {name:?}: synced: {}", summary(&counts));
                    } else {
                        tracing::info!(account = %name, "Synced, nothing new.");
                    }
                }
                Some(EngineEvent::Failed { account, message, disposition }) => {
                    let name = names.get(&account).cloned().unwrap_or_default();
                    eprintln!("mailsync: account {name:?}: sync failed ({disposition:?}): {message}");
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    if ctx.engine.shutdown(Duration::from_secs(10)).await {
        eprintln!("mailsync: stopped");
        Ok(0)
    } else {
        eprintln!("error: workers did not stop within 10 s; unfinished batches were rolled back");
        Ok(code::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_daemon_of_this_host_is_told_from_a_live_one() {
        let me = format!("h1/pid {}/1/0", std::process::id());
        assert!(!dead_here(&me, &me));
        // PIDs stay below 2^22 on Linux.
        assert!(dead_here("h1/pid 99999999/1/0", &me));
        assert!(
            !dead_here("h2/pid 99999999/1/0", &me),
            "another host: cannot tell"
        );
        assert!(!dead_here("something else", &me));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("fast"), None);
    }
}
