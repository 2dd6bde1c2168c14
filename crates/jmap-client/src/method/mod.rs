//! The standard methods of RFC 8620 §5 (`/get`, `/changes`, `/set`, `/query`,
//! `/queryChanges`), generic over the object type, plus filters, sorting and patches.

mod changes;
mod get;
mod query;
mod set;

pub use changes::{Changes, ChangesResponse};
pub use get::{Get, GetResponse};
pub use query::{
    AddedItem, Comparator, Filter, FilterOperator, Operator, Query, QueryChanges,
    QueryChangesResponse, QueryResponse, Queryable,
};
pub use set::{Patch, Set, SetResponse};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::id::JmapId;

/// A JMAP data type (Email, Mailbox, …) usable with the generic standard methods.
pub trait Object:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The id type of this object.
    type Id: JmapId;
    /// The type name, e.g. `Email`.
    const NAME: &'static str;
    /// Capabilities a call on this type needs in `using`.
    const CAPABILITIES: &'static [&'static str];

    /// The object's id, if the property was returned.
    fn id(&self) -> Option<&Self::Id>;
}

/// Deserialises `null` as the type's default (Cyrus sends `null` for empty `/set` maps).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize as _;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
