//! Test support for mailsync (dev-dependency only): where the real test servers are, who the
//! test users are, a deterministic generator of realistic messages and fast bulk loaders.
//!
//! ```no_run
//! use mailsync_testkit::{Servers, generate, imap_append_bulk};
//!
//! let servers = Servers::load()?; // fails clearly when `cargo xtask servers up` was not run
//! let user = servers.fresh_dovecot_user("doc");
//! let n = imap_append_bulk(
//!     servers.dovecot_host(),
//!     servers.dovecot_imap_port(),
//!     &user.user,
//!     &user.password,
//!     "INBOX",
//!     (0..100).map(|i| generate(42, i)),
//!     500,
//! )?;
//! assert_eq!(n, 100);
//! # Ok::<(), mailsync_testkit::Error>(())
//! ```

pub mod accounts;
mod doveadm;
mod error;
pub mod generator;
mod hostile;
pub mod imap;
mod load;
pub mod mutate;
pub mod oauth;
mod proxy;
mod servers;
mod sink;

pub use accounts::{Account, CYRUS_POOL_PASSWORD, CYRUS_POOLS, CyrusPool, DOVECOT_T_PASSWORD};
pub use doveadm::{doveadm, doveadm_with_input};
pub use error::Error;
pub use generator::{
    Expected, ExpectedAttachment, Generator, Kind, Profile, SubjectEncoding, expected, generate,
    incompressible,
};
pub use hostile::{HostileServer, Script, Then};
pub use imap::ImapClient;
pub use load::{imap_append_bulk, lmtp_deliver, maildir_populate};
pub use oauth::TokenEndpoint;
pub use proxy::{Cut, FaultProxy};
pub use servers::{KEYS, Servers, unique_name};
pub use sink::{SinkMessage, sink_messages, wait_for_sink_message};

/// The first header `name` (case-insensitive) of a raw message, unfolded and trimmed, not
/// RFC 2047-decoded. Only the header section (up to the first empty line) is searched.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut found: Option<String> = None;
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_unfolds_and_stops_at_body() {
        let raw = b"Subject: a\r\n  b\r\nX: 1\r\n\r\nSubject: body\r\n";
        assert_eq!(super::header(raw, "subject").as_deref(), Some("a b"));
        assert_eq!(super::header(raw, "x").as_deref(), Some("1"));
        assert_eq!(super::header(b"X: 1\r\n\r\nY: 2\r\n", "Y"), None);
    }
}
