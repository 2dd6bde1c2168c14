//! Typed JMAP data objects (RFC 8621): Email, Mailbox, Thread, Identity, EmailSubmission,
//! SearchSnippet, and their type-specific methods.

pub mod email;
pub mod identity;
pub mod mailbox;
pub mod snippet;
pub mod submission;
pub mod thread;

/// Lenient (de)serialisation of RFC 3339 dates: a malformed date reads as `None` instead of
/// failing the whole response.
pub(crate) mod date {
    use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    fn parse(d: Option<Value>) -> Option<DateTime<FixedOffset>> {
        match d {
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s).ok(),
            _ => None,
        }
    }

    pub(crate) mod utc {
        use super::*;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Ok(parse(Option::<Value>::deserialize(d)?).map(|t| t.with_timezone(&Utc)))
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                None => s.serialize_none(),
            }
        }
    }

    pub(crate) mod offset {
        use super::*;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
            Ok(parse(Option::<Value>::deserialize(d)?))
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<DateTime<FixedOffset>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                None => s.serialize_none(),
            }
        }
    }
}
