//! Identifier and state newtypes: opaque server strings that must not be mixed up.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Common behaviour of every JMAP id newtype.
///
/// Ids are opaque strings chosen by the server (RFC 8620 §1.2). A value starting with `#`
/// is a creation-id reference (RFC 8620 §5.3), valid only inside one request.
pub trait JmapId:
    Clone
    + fmt::Debug
    + fmt::Display
    + Ord
    + Hash
    + Serialize
    + DeserializeOwned
    + From<String>
    + AsRef<str>
    + Send
    + Sync
    + 'static
{
    /// The id as a string slice.
    fn as_str(&self) -> &str {
        self.as_ref()
    }

    /// Whether the server's id has the length RFC 8620 §1.2 allows (1 to 255 octets) and no
    /// control characters. The RFC also limits ids to `A-Z a-z 0-9 - _`; other printable
    /// characters are accepted, as a server's variant a client can still store and send back.
    /// A client keeps ids in indexes: one that is not an id (megabytes long, or with line
    /// breaks) is better left out than stored.
    fn is_well_formed(&self) -> bool {
        let s = self.as_str();
        (1..=255).contains(&s.len()) && !s.chars().any(char::is_control)
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string received from (or destined for) the server.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The wrapped string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps into the inner string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<&$name> for $name {
            fn from(value: &$name) -> Self {
                value.clone()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        string_newtype!($(#[$meta])* $name);
        impl JmapId for $name {}
    };
}

string_newtype!(
    /// An account id (`accountId`), a key of the Session's `accounts`.
    AccountId
);
string_newtype!(
    /// An opaque state string (`state`, `newState`, `queryState`, the Session `state`).
    ///
    /// States are only ever compared for equality and sent back to the server.
    State
);
id_newtype!(
    /// A generic JMAP id, for object types this crate has no dedicated newtype for.
    Id
);
id_newtype!(
    /// The id of an Email object.
    EmailId
);
id_newtype!(
    /// The id of a Mailbox object.
    MailboxId
);
id_newtype!(
    /// The id of a Thread object.
    ThreadId
);
id_newtype!(
    /// The id of a blob (raw message, attachment, uploaded data).
    BlobId
);
id_newtype!(
    /// The id of an Identity object.
    IdentityId
);
id_newtype!(
    /// The id of an EmailSubmission object.
    SubmissionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transparent_strings() {
        let id = EmailId::new("M1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"M1\"");
        let back: EmailId = serde_json::from_str("\"M1\"").unwrap();
        assert_eq!(back, id);
        assert_eq!(format!("{id}"), "M1");
        assert_eq!(format!("{id:?}"), "EmailId(\"M1\")");
        assert_eq!(id, "M1");
    }
}
