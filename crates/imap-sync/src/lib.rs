//! IMAP sync of one account into the mailsync store, on async-imap: CONDSTORE/QRESYNC change
//! detection, IDLE, and server-side mutations.
//!
//! # Overview
//! * [`Connection::connect`] opens an authenticated connection from an [`ImapConfig`]
//!   (implicit TLS, STARTTLS or loopback plaintext; LOGIN, PLAIN, XOAUTH2, OAUTHBEARER) and
//!   enables QRESYNC (or CONDSTORE) when offered.
//! * [`sync_account`] runs one cycle: [`sync_mailboxes`] (LIST with SPECIAL-USE and
//!   LIST-STATUS), then [`sync_mailbox`] for every selectable mailbox. Each batch of new
//!   messages is written with the checkpoint covering it in one transaction.
//! * [`fetch_body`] downloads, parses and caches one email's body on demand; [`fetch_part`]
//!   streams one MIME part (an attachment), decoded, to a writer in 1 MiB ranges.
//! * [`idle`] waits for a change on a mailbox (IDLE, or NOOP polling); [`idle_account`] on
//!   every mailbox with NOTIFY; [`status_round`] looks at many mailboxes at once (LIST-STATUS
//!   or pipelined STATUS) for servers without NOTIFY.
//! * [`apply`] applies [`ImapMutation`]s (flags, move, delete, append) and returns a
//!   [`MutationOutcome`] per item.
//!
//! The library spawns no task; every network wait is bounded by [`Timeouts`].
//!
//! # Store identity
//! Every IMAP copy of a message is its own email row with
//! `remote_id = mailsync_store::emails::imap_remote_id(mailbox, uidvalidity, uid)` and one
//! membership `(mailbox, uidvalidity, uid, modseq)`. Checkpoints live under
//! `Scope::imap_mailbox(mailbox)`: UIDVALIDITY, the highest UID stored, and the
//! HIGHESTMODSEQ covered (only written once the whole mailbox is reconciled).
//!
//! Local rows with a UID-less membership in a mailbox (a pending local move or append made
//! by the engine, written with `Membership::plain`) are *adopted* by the sync when a new
//! server message in that mailbox has the same Message-ID: the row gets the server identity
//! and keeps its cached body. The same mechanism re-matches messages after a UIDVALIDITY
//! change: the old copies keep their old UIDVALIDITY with the UID cleared until they are
//! matched, and the unmatched ones are deleted once the mailbox is fully rescanned (so a run
//! killed midway converges on the next one). [`apply`] also rewrites identities itself when
//! the server reports COPYUID/APPENDUID.
//!
//! # Change detection
//! | server | unchanged mailbox | flags of known messages | expunges |
//! |---|---|---|---|
//! | QRESYNC | skipped (LIST-STATUS HIGHESTMODSEQ) | FETCH in `SELECT (QRESYNC ...)` | `VANISHED (EARLIER)` |
//! | CONDSTORE | skipped | `UID FETCH 1:n (FLAGS) (CHANGEDSINCE m)` | count check, then `UID SEARCH ALL` diff |
//! | neither | SELECT | `UID FETCH 1:n (FLAGS)` compared locally | count check, then `UID SEARCH ALL` diff |
//!
//! [`ImapConfig::disabled_extensions`] turns extensions off on the client side (the tests use
//! it to run the CONDSTORE-only and plain-IMAP paths against the same Dovecot).
//!
//! # async-imap pitfalls handled
//! async-imap (0.12) is used only for framing and parsing. Its high-level commands treat a
//! tagged `NO`/`BAD` as an empty success, drop response codes and push untagged data into a
//! channel that silently drops entries past 100, so this crate sends every command itself
//! and reads every response (`run_command`-style tagged writes, `read_response` reads):
//! `NO`/`BAD` become [`Error::No`]/[`Error::Bad`] with a typed [`ResponseCode`] (including the
//! codes imap-proto leaves in the text: `NONEXISTENT`, `NOPERM`, `CLOSED`, `NOMODSEQ`,
//! `MODIFIED`...). A parse error (which stops async-imap's stream for good) and an end of
//! stream are [`Error::ConnectionLost`]. Commands whose responses async-imap cannot parse
//! (`SEARCH ... MODSEQ`, `ESEARCH`, `NAMESPACE`) are never sent. `PREVIEW`, which imap-proto
//! parses and discards, is read from the raw response bytes.
//!
//! # Performance
//! New messages are fetched with one `UID FETCH last+1:*` per mailbox, streamed response by
//! response; every [`SyncOptions::batch_size`] messages (default 1,000) are written in one
//! transaction with their checkpoint, while the next batch is already being read from the
//! socket (no task is spawned: both futures run in the caller's task). Memory is bounded by
//! one batch in flight plus one being committed (and 16 MB of bodies per batch).
//!
//! Measured by `tests/it/perf.rs` and `tests/it/sync_dovecot.rs` against the loopback
//! Dovecot, release build, on the shared 2-core machine (load 4-6 from other jobs, so the
//! ranges are wide):
//!
//! | scenario | wall time |
//! |---|---|
//! | first sync, 2,000 generated messages of varied MIME (about 40 MB) | 0.5-1.1 s |
//! | first sync, 10,000 small messages, server cold / warm | 1.7-3.1 s / 0.9-1.5 s |
//! | no-change resync of 10,000 (QRESYNC, LIST-STATUS) | 2-30 ms |
//! | 1 % change (100 flagged, 100 expunged by another client) | 70-140 ms |
//!
//! A no-change cycle is one LIST-STATUS plus one checkpoint read per mailbox; no SELECT.
//!
//! # Recovery from unparsable responses
//! imap-proto rejects BODYSTRUCTURE strings that are not UTF-8 (raw Latin-1 file names from
//! old mailers), and async-imap then closes the stream. The sync reconnects
//! ([`Connection::reconnect`]), fetches that one message whole without BODYSTRUCTURE (its
//! attachments then come from parsing the body) and resumes after it.
//!
//! # Not implemented
//! * COMPRESS=DEFLATE: async-imap only offers it on its own `Session` (its `DeflateStream`
//!   constructor is private), which this crate does not use; doing it here would need
//!   `async-compression` as a new dependency.
//! * Newest-first download: batches go in ascending UID order so the checkpoint can say
//!   "everything up to UID n"; a first sync shows the oldest mail first.
//! * A mailbox renamed on the server is seen as deleted plus created: its emails are
//!   downloaded again (bodies not kept).
//!
//! # Errors
//! One [`Error`] type with [`Error::is_auth`], [`Error::is_connection`] and
//! [`Error::response_code`]. After a connection-class error, drop the [`Connection`] and
//! connect again; the checkpoints make the next run resume where the last committed batch
//! ended.
//!
//! # Example
//! ```no_run
//! # async fn demo(store: mailsync_store::Store, account: mailsync_store::AccountId)
//! # -> Result<(), mailsync_imap_sync::Error> {
//! use mailsync_imap_sync::{Auth, Connection, ImapConfig, SyncOptions, sync_account};
//! use mailsync_store::Security;
//! let cfg = ImapConfig::new("imap.example.org", 993, Security::Tls, "me", Auth::Password("pw".into()));
//! let mut conn = Connection::connect(&cfg).await?;
//! let report = sync_account(&mut conn, &store, account, &SyncOptions::default()).await?;
//! println!("{} new emails", report.totals.added);
//! # Ok(()) }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod body;
mod config;
mod connection;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod mailboxes;
mod manage;
mod mime;
mod mutate;
mod part;
pub mod plan;
mod rawscan;
mod search;
mod skeleton;
/// The UID-level queries live in the store, beside every other query.
pub(crate) use mailsync_store::uids as storeext;
mod sync;
mod transfer;
mod transport;
mod uidset;
pub mod utf7;
mod wire;

pub use body::fetch_body;
pub use config::{Auth, ImapConfig, Timeouts};
pub use connection::Connection;
pub use error::{Error, ResponseCode};
pub use idle::{IdleOutcome, MailboxCounters, idle, idle_account, status_round};
pub use mailboxes::{
    MailboxesReport, assign_roles, follow_renames, role_from_attributes, role_from_name,
    sync_mailboxes,
};
pub use manage::{
    ManagedMailbox, create_mailbox, delete_mailbox, lookup, mailbox_id, rename_mailbox,
    set_subscribed, unseen_mail, wire_name,
};
pub use mime::ParsedBody;
pub use mutate::{AppendedBefore, ImapMutation, MutationOutcome, apply, apply_with};
pub use part::fetch_part;
pub use search::{MailboxHits, ServerMessage, fetch_summaries, search_mailbox};
pub use sync::{
    AccountSyncReport, MailboxOutcome, MailboxResult, ProgressFn, SyncCounts, SyncOptions,
    SyncProgress, sync_account, sync_mailbox,
};
