//! The versioned, append-only history of the mailsync local database schema.
//!
//! Each step is one migration, numbered v1..v20 in the order of [`Migrator::migrations`].
//! A merged migration is never edited: a schema change is a new step. Migrations declare
//! their own identifiers (they never import the store's entities), so history stays frozen
//! when the entities move on.
//!
//! | version | migration | what it does |
//! |---|---|---|
//! | v1 | `m0001_create_accounts` | accounts (connection settings, a *reference* to the secret) |
//! | v2 | `m0002_create_mailboxes` | mailboxes with IMAP status counters |
//! | v3 | `m0003_create_emails` | emails and their mailbox memberships |
//! | v4 | `m0004_create_bodies_attachments` | cached bodies and attachment metadata |
//! | v5 | `m0005_create_sync_state` | server checkpoints per account and scope |
//! | v6 | `m0006_create_outbox` | pending changes and failed (evicted) mutations |
//! | v7 | `m0007_create_sync_log` | one row per sync cycle |
//! | v8 | `m0008_mailbox_role` | mailboxes gain a nullable `role` |
//! | v9 | `m0009_account_leases` | per-account lease (owner, expiry, heartbeat) and wake request |
//! | v10 | `m0011_account_oauth` | accounts gain OAuth 2 settings (references only, never a token) |
//! | v11 | `m0012_threads_search` | `thread_links` for local threading; full-text index (FTS5 / tsvector) kept by triggers |
//! | v12 | `m0014_fleet` | `sync_daemons` (live daemons' heartbeats), `account_leases.acquired_at`, `sync_log.owner` |
//! | v13 | `m0015_search_deferred` | the search index is filled in bulk per batch: triggers only note ids in `search_pending` |
//! | v14 | `m0016_body_debt` | `emails.body_cached` (kept by triggers on `email_bodies`) and an index to find the body debt without reading bodies |
//! | v15 | `m0017_search_docs_rebuilt` | PostgreSQL: every email noted for re-indexing (the store now builds the `tsvector`s itself) |
//! | v16 | `m0018_search_companion` | SQLite: the search index moves to a companion file (`<db>.search`); `search_pending` gains a sequence, `search_meta` a generation |
//! | v17 | `m0019_search_pairs` | PostgreSQL: every email noted for re-indexing (documents gain lexemes for their word pairs, so a phrase reads few documents) |
//! | v18 | `m0020_thread_merges` | local threading records merges in `thread_merges` instead of renaming links; `thread_links` loses its index by thread |
//! | v19 | `m0021_search_notes_locked` | PostgreSQL: noting an email for search locks its note, so the index can be filled beside the writers |
//! | v20 | `m0022_bodies_lz4` | PostgreSQL: bodies and search documents compressed with LZ4 instead of pglz (where the server has it) |

// `MigrationTrait` declares `&SchemaManager` with a late-bound lifetime; spelling it out breaks
// the impls, so the 2018-idiom lint is silenced for this crate only.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m0001_create_accounts;
mod m0002_create_mailboxes;
mod m0003_create_emails;
mod m0004_create_bodies_attachments;
mod m0005_create_sync_state;
mod m0006_create_outbox;
mod m0007_create_sync_log;
mod m0008_mailbox_role;
mod m0009_account_leases;
mod m0011_account_oauth;
mod m0012_threads_search;
mod m0014_fleet;
mod m0015_search_deferred;
mod m0016_body_debt;
mod m0017_search_docs_rebuilt;
mod m0018_search_companion;
mod m0019_search_pairs;
mod m0020_thread_merges;
mod m0021_search_notes_locked;
mod m0022_bodies_lz4;

/// The latest schema version (the number of migrations).
pub const LATEST_VERSION: u32 = 20;

/// Runs the mailsync migrations (see the crate docs for the list).
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_accounts::Migration),
            Box::new(m0002_create_mailboxes::Migration),
            Box::new(m0003_create_emails::Migration),
            Box::new(m0004_create_bodies_attachments::Migration),
            Box::new(m0005_create_sync_state::Migration),
            Box::new(m0006_create_outbox::Migration),
            Box::new(m0007_create_sync_log::Migration),
            Box::new(m0008_mailbox_role::Migration),
            Box::new(m0009_account_leases::Migration),
            Box::new(m0011_account_oauth::Migration),
            Box::new(m0012_threads_search::Migration),
            Box::new(m0014_fleet::Migration),
            Box::new(m0015_search_deferred::Migration),
            Box::new(m0016_body_debt::Migration),
            Box::new(m0017_search_docs_rebuilt::Migration),
            Box::new(m0018_search_companion::Migration),
            Box::new(m0019_search_pairs::Migration),
            Box::new(m0020_thread_merges::Migration),
            Box::new(m0021_search_notes_locked::Migration),
            Box::new(m0022_bodies_lz4::Migration),
        ]
    }
}
