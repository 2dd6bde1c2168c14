//! SeaORM entities, one module per table, mirroring the schema at v12 (see the `migration` crate).
//!
//! These are plain row types. Hand-written queries live in the repository modules of the crate
//! root; callers normally use those rather than the entities directly.

pub mod account_leases;
pub mod accounts;
pub mod attachments;
pub mod email_bodies;
pub mod email_mailboxes;
pub mod emails;
pub mod failed_mutations;
pub mod mailboxes;
pub mod pending_changes;
pub mod sync_daemons;
pub mod sync_log;
pub mod sync_state;
pub mod thread_links;
