//! Integration tests against the real Dovecot and Cyrus from `cargo xtask servers up`.

mod common;
mod connect;
mod sync_dovecot;
mod incremental;
mod uidvalidity;
mod idle;
mod mutations;
mod cyrus;
mod names;
mod poison;
mod bodies;
mod perf;
mod postgres;
