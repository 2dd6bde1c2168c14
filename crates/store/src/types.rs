//! Typed values stored in the schema's text columns, and id newtypes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::StoreError;

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// Local id of an account.
    AccountId
);
id_newtype!(
    /// Local id of a mailbox.
    MailboxId
);
id_newtype!(
    /// Local id of an email: stable for the life of the row, used by the CLI.
    EmailId
);
id_newtype!(
    /// Id of a queued change in `pending_changes`.
    ChangeId
);
id_newtype!(
    /// Id of an evicted change in `failed_mutations`.
    FailedId
);
id_newtype!(
    /// Id of a `sync_log` row.
    SyncLogId
);

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum stored as text.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(StoreError::InvalidValue {
                        what: stringify!($name),
                        value: s.to_owned(),
                    }),
                }
            }
        }
    };
}

/// The protocol an account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// IMAP for reading, SMTP for sending.
    Imap,
    /// JMAP for everything.
    Jmap,
}
text_enum!(AccountKind { Imap => "imap", Jmap => "jmap" });

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte.
    Tls,
    /// Plaintext upgraded with STARTTLS (required, never optional).
    Starttls,
    /// No encryption: loopback or an explicit opt-in only.
    Plain,
}
text_enum!(Security { Tls => "tls", Starttls => "starttls", Plain => "plain" });

/// The role of a mailbox (RFC 6154 special use / RFC 8621 roles the engine acts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The inbox.
    Inbox,
    /// Sent mail.
    Sent,
    /// Drafts.
    Drafts,
    /// Deleted mail.
    Trash,
    /// Spam.
    Junk,
    /// Archive.
    Archive,
}
text_enum!(Role {
    Inbox => "inbox",
    Sent => "sent",
    Drafts => "drafts",
    Trash => "trash",
    Junk => "junk",
    Archive => "archive",
});

/// Which bodies are downloaded during sync (the rest are fetched on demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BodyPolicy {
    /// Headers only during sync.
    None,
    /// Every body.
    All,
    /// Bodies of messages up to this many bytes.
    MaxBytes(u64),
}

impl BodyPolicy {
    /// Whether a message of `size` bytes gets its body during sync.
    pub fn wants(self, size: u64) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::MaxBytes(max) => size <= max,
        }
    }
}

impl fmt::Display for BodyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::All => f.write_str("all"),
            Self::MaxBytes(n) => write!(f, "max:{n}"),
        }
    }
}

impl FromStr for BodyPolicy {
    type Err = StoreError;
    /// Accepts the stored form (`none`, `all`, `max:<bytes>`) and the CLI form (`<N>kb`).
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::InvalidValue {
            what: "BodyPolicy",
            value: s.to_owned(),
        };
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "none" => Ok(Self::None),
            "all" => Ok(Self::All),
            _ => {
                if let Some(n) = t.strip_prefix("max:") {
                    n.parse().map(Self::MaxBytes).map_err(|_| bad())
                } else if let Some(n) = t.strip_suffix("kb") {
                    n.trim()
                        .parse::<u64>()
                        .ok()
                        .and_then(|k| k.checked_mul(1024))
                        .map(Self::MaxBytes)
                        .ok_or_else(bad)
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Where the account's secret comes from. The database keeps this reference, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecretRef {
    /// An environment variable's name.
    Env(String),
    /// A shell command whose first output line is the secret.
    Command(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(v) => write!(f, "env:{v}"),
            Self::Command(c) => write!(f, "cmd:{c}"),
        }
    }
}

impl FromStr for SecretRef {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if let Some(v) = s.strip_prefix("env:") {
            Ok(Self::Env(v.to_owned()))
        } else if let Some(c) = s.strip_prefix("cmd:") {
            Ok(Self::Command(c.to_owned()))
        } else {
            Err(StoreError::InvalidValue {
                what: "SecretRef",
                value: s.to_owned(),
            })
        }
    }
}

/// A mailbox address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Address {
    /// Display name, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address itself (`local@domain`).
    pub email: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) if !n.is_empty() => write!(f, "{n} <{}>", self.email),
            _ => f.write_str(&self.email),
        }
    }
}

/// The flags mailsync tracks as columns, plus any other keywords.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flags {
    /// `\Seen` / `$seen`.
    pub seen: bool,
    /// `\Flagged` / `$flagged`.
    pub flagged: bool,
    /// `\Answered` / `$answered`.
    pub answered: bool,
    /// `\Draft` / `$draft`.
    pub draft: bool,
    /// Other keywords (IMAP keywords such as `$Forwarded`, JMAP keywords), sorted, no duplicates.
    pub keywords: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(*r));
        }
        for k in AccountKind::ALL {
            assert_eq!(k.as_str().parse::<AccountKind>().ok(), Some(*k));
        }
        assert!("spam".parse::<Role>().is_err());
    }

    #[test]
    fn body_policy_parses_stored_and_cli_forms() {
        let cases = [
            ("none", Some(BodyPolicy::None)),
            ("all", Some(BodyPolicy::All)),
            ("max:2048", Some(BodyPolicy::MaxBytes(2048))),
            ("64kb", Some(BodyPolicy::MaxBytes(64 * 1024))),
            ("64KB", Some(BodyPolicy::MaxBytes(64 * 1024))),
            ("lots", None),
            ("-1kb", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<BodyPolicy>().ok(), want, "{text}");
        }
        let p = BodyPolicy::MaxBytes(10);
        assert_eq!(p.to_string().parse::<BodyPolicy>().ok(), Some(p));
        assert!(p.wants(10) && !p.wants(11));
    }

    #[test]
    fn secret_ref_round_trips() {
        for s in [
            SecretRef::Env("PW".into()),
            SecretRef::Command("pass show x".into()),
        ] {
            assert_eq!(s.to_string().parse::<SecretRef>().ok(), Some(s));
        }
        assert!("hunter2".parse::<SecretRef>().is_err());
    }
}
