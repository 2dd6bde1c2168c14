//! Integration tests against the real Dovecot and Cyrus from `cargo xtask servers up`.

mod common;
mod connect;
mod sync_dovecot;
mod incremental;
mod uidvalidity;
