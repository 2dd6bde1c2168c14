//! IMAP sync of one account into the mailsync store (async-imap, CONDSTORE/QRESYNC, IDLE,
//! server-side mutations).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod config;
mod connection;
mod error;
mod mime;
mod rawscan;
mod transport;
mod uidset;
pub mod utf7;
mod wire;

pub use config::{Auth, ImapConfig, Timeouts};
pub use connection::Connection;
pub use error::{Error, ResponseCode};
pub use mime::ParsedBody;
