//! `mailsync`: the command-line tool over the mailsync engine.
//!
//! Accounts (`account add|edit|test|list|remove`), synchronisation (`sync --once` or a daemon
//! until SIGINT/SIGTERM), reading (`mailboxes`, `emails`, `show`, `attachment list|save`),
//! local changes that work offline
//! (`flag`, `move`, `delete`, `undo`), sending (`send`) and observation (`status`, `failed`,
//! `log`). Every listing has `--json`: one JSON object per line.
//!
//! # Database
//! `--db URL` (or `$MAILSYNC_DB`): `sqlite://PATH?mode=rwc` or `postgres://USER@HOST/DB`. The
//! default is `$XDG_DATA_HOME/mailsync/mailsync.db`, else `~/.local/share/mailsync/mailsync.db`.
//!
//! # Exit codes
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | usage error (bad flags or values) |
//! | 3 | not found: unknown account, email id, mailbox, failed-change id |
//! | 4 | needs the user: authentication failed, password variable missing, bad settings |
//! | 5 | server unreachable (offline, unknown host, refused, timeout) |
//! | 6 | the local database cannot be opened |
//!
//! Errors are one line on stderr: `error: account "work": authentication failed (server said: ...)`.
//!
//! # Environment
//! - `MAILSYNC_DB`: default for `--db`.
//! - `MAILSYNC_CACHE_DIR`: where downloaded attachments are cached (default: beside a SQLite
//!   database, `<db>.parts/`).
//! - `RUST_LOG`: tracing filter (else `-v` = info, `-vv` = debug for the mailsync crates).
//! - `MAILSYNC_POLL_INTERVAL` (or the hidden `sync --poll-interval`): how often `sync` polls
//!   servers without push (JMAP without EventSource, e.g. Cyrus); default 30 s. Accepts `500ms`,
//!   `1s`, `2m`.
//! - `MAILSYNC_IMAP_CONNECTIONS` / `MAILSYNC_STATUS_INTERVAL` (or `--imap-connections`,
//!   `--status-interval` of `sync` and `watch`): the IMAP connection budget per account
//!   (default 3) and, without NOTIFY, how often mailboxes without an IDLE are looked at
//!   (default 3 s).
//! - `MAILSYNC_HOST_CONNECTIONS` (or `--host-connections` of `sync` and `watch`): at most this
//!   many IMAP connections per server host for the whole process (default: no cap); with
//!   fewer than accounts, accounts take turns instead of keeping their push connection.

mod args;
mod commands;
mod error;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::error::CliError;

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => {
            let level = match verbose {
                0 => "error",
                1 => "info",
                _ => "debug",
            };
            let crates = [
                "mailsync",
                "mailsync_engine",
                "mailsync_store",
                "mailsync_outbox",
                "mailsync_jmap_client",
                "mailsync_imap_sync",
            ];
            let mut spec = String::from("warn");
            if verbose == 0 {
                spec = String::from("error");
            }
            for c in crates {
                spec.push_str(&format!(",{c}={level}"));
            }
            EnvFilter::new(spec)
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 1)
        .try_init();
}

/// Fixes glibc's mmap threshold at its default of 128 KiB. glibc raises the threshold to the
/// size of each mmapped block freed (up to 32 MiB), so once a message of a few MiB had been
/// read and dropped, every later body and batch buffer below that size came from the heap
/// arenas of whichever thread allocated it, and freed memory stayed there, fragmented. Fixed,
/// large buffers are mapped and unmapped as they come and go: with SQLite's memory bounded
/// (8 MiB), a first sync of 100,000 messages peaked at 55-61 MiB instead of 64-68 MiB, at the
/// same speed (docs/benchmarks.md).
/// Called first in `main`, before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it takes plain integers and
    // is called before any other thread is started.
    // A refusal (it returns 0) only leaves glibc's default behaviour: nothing to report.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::code::USAGE
            } else {
                0
            });
        }
    };
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::code::FAILURE);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Workers still running after a failed command must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError { code: 0, .. }) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
