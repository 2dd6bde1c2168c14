//! Dispatch: opens the database, builds the engine and runs one command.

mod account;
mod attachment;
mod changes;
mod draft;
mod mailbox;
mod read;
mod search;
mod send;
mod status;
mod sync;
mod watch;

use std::path::PathBuf;

use mailsync_engine::Engine;
use mailsync_store::accounts::{self, Account};
use mailsync_store::{AccountId, Store};

use crate::args::{Cli, Command};
use crate::error::CliError;

/// What every command works with.
pub struct Ctx {
    pub engine: Engine,
}

impl Ctx {
    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// The account named `name`, or exit code 3.
    pub async fn account(&self, name: &str) -> Result<Account, CliError> {
        accounts::find_by_name(self.store().conn(), name)
            .await?
            .ok_or_else(|| CliError::not_found(format!("account {name:?}: no such account")))
    }

    /// The selected accounts (all when `names` is empty).
    pub async fn accounts(&self, names: &[String]) -> Result<Vec<Account>, CliError> {
        if names.is_empty() {
            return Ok(accounts::list(self.store().conn()).await?);
        }
        let mut out = Vec::new();
        for n in names {
            out.push(self.account(n).await?);
        }
        Ok(out)
    }

    /// The mailbox an account calls `name`: its full path (`Projects/2024`), its server id,
    /// or its last segment (`2024`) when exactly one mailbox ends so. A last segment shared by
    /// several mailboxes is a usage error naming them all, never a silent pick.
    pub async fn mailbox(
        &self,
        account: AccountId,
        name: &str,
    ) -> Result<Option<mailsync_store::mailboxes::Mailbox>, CliError> {
        let all = mailsync_store::mailboxes::list(self.store().conn(), account).await?;
        if let Some(m) = all.iter().find(|m| m.name == name) {
            return Ok(Some(m.clone()));
        }
        if let Some(m) = all.iter().find(|m| m.remote_id == name) {
            return Ok(Some(m.clone()));
        }
        let mut found: Vec<_> = all.iter().filter(|m| last_segment(m) == name).collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop().cloned()),
            _ => {
                let mut names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
                names.sort_unstable();
                Err(CliError::usage(format!(
                    "mailbox {name:?} is ambiguous: {}; give the full name",
                    names.join(", ")
                )))
            }
        }
    }

    /// The mailbox `name` (as [`Ctx::mailbox`] resolves it) among `accounts`: not found is
    /// exit code 3, a name found in several accounts a usage error. `None` for no name.
    pub async fn mailbox_in(
        &self,
        accounts: &[Account],
        name: Option<&str>,
    ) -> Result<Option<mailsync_store::mailboxes::Mailbox>, CliError> {
        let Some(name) = name else { return Ok(None) };
        let mut found = Vec::new();
        for acc in accounts {
            if let Some(m) = self.mailbox(acc.id, name).await? {
                found.push(m);
            }
        }
        match found.len() {
            0 => Err(CliError::not_found(format!(
                "mailbox {name:?}: no such mailbox"
            ))),
            1 => Ok(found.pop()),
            _ => Err(CliError::usage(format!(
                "mailbox {name:?} exists in several accounts: add --account"
            ))),
        }
    }

    /// The name of an account by id (for listings).
    pub async fn account_name(&self, id: AccountId) -> Result<String, CliError> {
        Ok(accounts::get(self.store().conn(), id).await?.name)
    }
}

/// The last segment of a mailbox's full name, split at its hierarchy delimiter.
fn last_segment(m: &mailsync_store::mailboxes::Mailbox) -> &str {
    match m.delimiter.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => m.name.rsplit(d).next().unwrap_or(&m.name),
        None => &m.name,
    }
}

/// The default database: `$XDG_DATA_HOME/mailsync/mailsync.db`, else under `~/.local/share`.
fn default_db() -> Result<String, CliError> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/share"),
            None => {
                return Err(CliError::usage(
                    "no --db given and neither $MAILSYNC_DB, $XDG_DATA_HOME nor $HOME is set",
                ));
            }
        },
    };
    let dir = base.join("mailsync");
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::new(
            crate::error::code::DATABASE,
            format!("database directory {}: {e}", dir.display()),
        )
    })?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join("mailsync.db").display()
    ))
}

/// Where downloaded attachment parts are cached: `$MAILSYNC_CACHE_DIR`, else beside a SQLite
/// database (`<db>.parts`), else `$XDG_CACHE_HOME/mailsync/parts` (or `~/.cache/...`).
fn parts_dir(db_url: &str) -> PathBuf {
    if let Some(d) = std::env::var_os("MAILSYNC_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(rest) = db_url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or("");
        if !path.is_empty() && path != ":memory:" {
            return PathBuf::from(format!("{path}.parts"));
        }
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => std::env::temp_dir(),
        },
    };
    base.join("mailsync").join("parts")
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    let url = match cli.db {
        Some(u) if !u.is_empty() => u,
        _ => default_db()?,
    };
    let store = Store::open(&url)
        .await
        .map_err(|e| CliError::database(&e))?;
    let mut policy = match &cli.command {
        Command::Sync(a) => sync::policy(&a.poll)?,
        Command::Watch(a) => sync::policy(&a.poll)?,
        _ => mailsync_engine::worker::WorkerPolicy::default(),
    };
    if let Ok(s) = std::env::var("MAILSYNC_LEASE_TTL") {
        let ttl = sync::parse_duration(&s).ok_or_else(|| {
            CliError::usage(format!(
                "invalid MAILSYNC_LEASE_TTL {s:?}: expected e.g. 30s, 2s"
            ))
        })?;
        policy = policy.with_lease(ttl, ttl / 4);
    }
    let ctx = Ctx {
        engine: Engine::with_policy(store, policy),
    };
    ctx.engine.set_parts_dir(parts_dir(&url));
    match cli.command {
        Command::Account(a) => account::run(&ctx, a).await,
        Command::Sync(a) => sync::run(&ctx, a).await,
        Command::Watch(a) => watch::run(&ctx, a).await,
        Command::Mailboxes(a) => read::mailboxes(&ctx, a).await,
        Command::Emails(a) => read::emails(&ctx, a).await,
        Command::Threads(a) => search::threads(&ctx, a).await,
        Command::Search(a) => search::search(&ctx, a).await,
        Command::Show(a) => read::show(&ctx, a).await,
        Command::Attachment(a) => attachment::run(&ctx, a).await,
        Command::Flag(a) => changes::flag(&ctx, a).await,
        Command::Move(a) => changes::move_to(&ctx, a).await,
        Command::Delete(a) => changes::delete(&ctx, a).await,
        Command::Undo(a) => changes::undo(&ctx, a).await,
        Command::Send(a) => send::run(&ctx, a).await,
        Command::Draft(a) => draft::run(&ctx, a).await,
        Command::Mailbox(a) => mailbox::run(&ctx, a).await,
        Command::Status(a) => status::status(&ctx, a).await,
        Command::Failed(a) => status::failed(&ctx, a).await,
        Command::Log(a) => status::log(&ctx, a).await,
    }
}
