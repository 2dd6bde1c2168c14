//! Integration tests against the real Dovecot and Cyrus from `cargo xtask servers up`.

mod bodies;
mod body_debt;
mod common;
mod connect;
mod cyrus;
mod deleted_midsync;
mod idle;
mod incremental;
mod limits;
mod manage;
mod mutations;
mod names;
mod perf;
mod poison;
mod postgres;
mod sasl;
mod skeleton;
mod sync_dovecot;
mod uidvalidity;
