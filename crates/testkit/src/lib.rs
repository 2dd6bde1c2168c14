//! Test support for mailsync (dev-dependency only): where the real test servers are, who the
//! test users are, a deterministic generator of realistic messages and fast bulk loaders.

pub mod accounts;

pub use accounts::{CYRUS_POOL_PASSWORD, CYRUS_POOLS, CyrusPool};
