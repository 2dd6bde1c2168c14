//! The running system of mailsync: composes the store, the JMAP client, IMAP sync and the outbox
//! into per-account sync workers with push/IDLE waits, sending, backoff and a sync log.
//!
//! # Overview
//! - [`worker`]: the per-account loop over an [`worker::AccountDriver`] (one cycle, then wait for
//!   the server, a wake or shutdown; back off 5 s doubling to 300 s after failures), writing one
//!   `sync_log` row per cycle.
//! - [`classify`]: the single place where errors become decisions (retry, offline, resync,
//!   needs the user, reject), specified by a table-driven test.
//! - [`compose`] and [`smtp`]: building messages with mail-builder (Bcc in the envelope only) and
//!   sending them with lettre.
//! - [`secret`]: resolving an account's secret reference; secrets are never stored or logged.
//! - [`oauth`]: OAuth 2 access tokens from the refresh-token grant, cached in memory and
//!   refreshed before expiry or after the server refused one.
//! - [`lease`]: holding an account's lease (one flusher per account across processes) with a
//!   heartbeat; [`Engine::sync_now`] hands an account held elsewhere to its holder.
//! - [`failpoint`]: named stopping points of the send path for the kill-point tests.
//!
//! Status: the protocol drivers (IMAP and JMAP) and the public `Engine` API are being built;
//! see `docs/ARCHITECTURE.md`.

pub mod backoff;
pub mod classify;
pub mod compose;
mod cycle;
pub mod engine;
pub mod error;
pub mod failpoint;
mod fetcher;
pub mod fleet;
pub mod hostcap;
pub mod imap_driver;
pub mod jmap_driver;
pub mod jmap_send;
/// JMAP→store sync lives in its own crate, beside `imap-sync`; re-exported under its old path.
pub use mailsync_jmap_sync as jmap_sync;
pub mod lease;
mod mailbox_admin;
pub mod oauth;
pub mod search;
pub mod secret;
pub mod sender;
pub mod smtp;
pub mod worker;

pub use engine::{AccountStatus, Engine, SyncNow};
pub use error::EngineError;
pub use fetcher::SavedPart;
pub use mailbox_admin::MailboxAction;
pub use mailsync_store::changes::QueueFate;
pub use search::{Origin, SearchHit, SearchOutcome};
pub use worker::{EmailRef, EngineEvent, Events};
