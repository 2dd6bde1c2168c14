//! `Foo/set` (RFC 8620 §5.3) and patch objects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Object, null_default};
use crate::error::{Error, SetError, SetOperation};
use crate::id::{AccountId, JmapId, State};
use crate::request::pointer::escape;
use crate::request::{Arg, Arguments, CreationId, Method, ResultRef, SplitPolicy};

/// A PatchObject (RFC 8620 §5.3): JSON-pointer paths (relative to the object) to new values;
/// `null` removes/resets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patch(Map<String, Value>);

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Patch::default()
    }

    /// Sets `path` (already a JSON pointer relative to the object, without leading `/`).
    #[must_use]
    pub fn set(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(path.into(), value.into());
        self
    }

    /// Adds (`true`) or removes (`false`) one Email keyword (`keywords/<kw>`), escaping it.
    #[must_use]
    pub fn keyword(self, keyword: &str, present: bool) -> Self {
        let path = format!("keywords/{}", escape(keyword));
        self.set(
            path,
            if present {
                Value::Bool(true)
            } else {
                Value::Null
            },
        )
    }

    /// Adds (`true`) or removes (`false`) the Email from one mailbox (`mailboxIds/<id>`).
    #[must_use]
    pub fn mailbox(self, mailbox_id: &impl JmapId, present: bool) -> Self {
        let path = format!("mailboxIds/{}", escape(mailbox_id.as_str()));
        self.set(
            path,
            if present {
                Value::Bool(true)
            } else {
                Value::Null
            },
        )
    }

    /// Replaces the whole keyword set.
    #[must_use]
    pub fn keywords<I: IntoIterator<Item = S>, S: Into<String>>(self, keywords: I) -> Self {
        let map: Map<String, Value> = keywords
            .into_iter()
            .map(|k| (k.into(), Value::Bool(true)))
            .collect();
        self.set("keywords", Value::Object(map))
    }

    /// Replaces the whole mailbox set.
    #[must_use]
    pub fn mailboxes<'a, I, M>(self, mailbox_ids: I) -> Self
    where
        I: IntoIterator<Item = &'a M>,
        M: JmapId,
    {
        let map: Map<String, Value> = mailbox_ids
            .into_iter()
            .map(|m| (m.as_str().to_owned(), Value::Bool(true)))
            .collect();
        self.set("mailboxIds", Value::Object(map))
    }

    /// True if nothing is patched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The paths and values.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// `Foo/set`: create, update and destroy objects.
#[derive(Debug, Clone)]
pub struct Set<O: Object> {
    account_id: AccountId,
    if_in_state: Option<State>,
    create: Vec<(String, O)>,
    update: Vec<(String, Patch)>,
    destroy: Option<Arg<Vec<O::Id>>>,
    extra: Map<String, Value>,
}

impl<O: Object> Set<O> {
    /// An empty `/set`.
    pub fn new(account_id: &AccountId) -> Self {
        Set {
            account_id: account_id.clone(),
            if_in_state: None,
            create: Vec::new(),
            update: Vec::new(),
            destroy: None,
            extra: Map::new(),
        }
    }

    /// `ifInState`: fail with `stateMismatch` unless the server is still in this state.
    #[must_use]
    pub fn if_in_state(mut self, state: &State) -> Self {
        self.if_in_state = Some(state.clone());
        self
    }

    /// Creates an object under a fresh creation id, returned for later references.
    pub fn create(&mut self, object: O) -> CreationId<O> {
        let id = CreationId::generate();
        self.create.push((id.as_str().to_owned(), object));
        id
    }

    /// Creates an object under a caller-chosen creation id.
    pub fn create_with_id(&mut self, id: &CreationId<O>, object: O) {
        self.create.push((id.as_str().to_owned(), object));
    }

    /// Patches an existing object.
    pub fn update(&mut self, id: &O::Id, patch: Patch) {
        self.update.push((id.as_str().to_owned(), patch));
    }

    /// Destroys objects (appends to a literal list; replaces a reference).
    pub fn destroy<'a>(&mut self, ids: impl IntoIterator<Item = &'a O::Id>) {
        let mut list = match self.destroy.take() {
            Some(Arg::Value(v)) => v,
            _ => Vec::new(),
        };
        list.extend(ids.into_iter().cloned());
        self.destroy = Some(Arg::Value(list));
    }

    /// Destroys the ids produced by an earlier call (e.g. a query's `ids()`).
    pub fn destroy_ref(&mut self, ids: ResultRef<Vec<O::Id>>) {
        self.destroy = Some(Arg::Ref(ids));
    }

    /// Sets any other argument (e.g. `onDestroyRemoveEmails`).
    pub fn argument(&mut self, name: &str, value: Value) {
        self.extra.insert(name.to_owned(), value);
    }

    /// Number of create + update + literal destroy operations.
    pub fn len(&self) -> usize {
        let d = match &self.destroy {
            Some(Arg::Value(v)) => v.len(),
            Some(Arg::Ref(_)) => 1,
            None => 0,
        };
        self.create.len() + self.update.len() + d
    }

    /// True if the set does nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn extra_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

pub(crate) fn set_arguments<O: Object>(set: Set<O>) -> Result<Arguments, serde_json::Error> {
    let mut args = Arguments::new();
    args.set("accountId", &set.account_id)?;
    if let Some(s) = &set.if_in_state {
        args.set("ifInState", s)?;
    }
    if !set.create.is_empty() {
        let mut m = Map::new();
        for (k, o) in &set.create {
            m.insert(k.clone(), serde_json::to_value(o)?);
        }
        args.set_value("create", Value::Object(m));
    }
    if !set.update.is_empty() {
        let mut m = Map::new();
        for (k, p) in set.update {
            m.insert(k, Value::Object(p.0));
        }
        args.set_value("update", Value::Object(m));
    }
    if let Some(d) = &set.destroy {
        args.set_arg("destroy", d)?;
    }
    for (k, v) in set.extra {
        args.set_value(&k, v);
    }
    Ok(args)
}

impl<O: Object> Method for Set<O> {
    type Response = SetResponse<O>;

    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}/set", O::NAME))
    }

    fn capabilities() -> &'static [&'static str] {
        O::CAPABILITIES
    }

    fn split_policy() -> SplitPolicy {
        SplitPolicy::Set
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        set_arguments(self)
    }
}

/// The response to `Foo/set`. Maps and lists a server sends as `null` read as empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Object")]
pub struct SetResponse<O: Object> {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `oldState` (absent in Cyrus' Email/import answers).
    #[serde(default)]
    pub old_state: Option<State>,
    /// `newState`
    #[serde(default)]
    pub new_state: Option<State>,
    /// `created`: creation id → the server-set properties (always including `id`).
    #[serde(default, deserialize_with = "null_default")]
    pub created: BTreeMap<String, O>,
    /// `updated`: id → `null` or the server-changed properties.
    #[serde(default, deserialize_with = "null_default")]
    pub updated: BTreeMap<O::Id, Option<O>>,
    /// `destroyed`
    #[serde(default, deserialize_with = "null_default")]
    pub destroyed: Vec<O::Id>,
    /// `notCreated`: creation id → error.
    #[serde(default, deserialize_with = "null_default")]
    pub not_created: BTreeMap<String, SetError>,
    /// `notUpdated`
    #[serde(default, deserialize_with = "null_default")]
    pub not_updated: BTreeMap<O::Id, SetError>,
    /// `notDestroyed`
    #[serde(default, deserialize_with = "null_default")]
    pub not_destroyed: BTreeMap<O::Id, SetError>,
}

impl<O: Object> SetResponse<O> {
    /// The created object (server-set properties) for a creation id.
    pub fn created(&self, id: &CreationId<O>) -> Option<&O> {
        self.created.get(id.as_str())
    }

    /// The error for a creation id, if it was not created.
    pub fn not_created(&self, id: &CreationId<O>) -> Option<&SetError> {
        self.not_created.get(id.as_str())
    }

    /// The created object, or the typed reason it was not created.
    pub fn created_or_error(&self, id: &CreationId<O>) -> Result<&O, Error> {
        if let Some(o) = self.created(id) {
            return Ok(o);
        }
        let error = self.not_created(id).cloned().unwrap_or_else(|| SetError {
            kind: crate::error::SetErrorType::Missing,
            description: Some("the server reported neither created nor notCreated".into()),
            properties: None,
            existing_id: None,
            extra: BTreeMap::new(),
        });
        Err(Error::SetItem {
            operation: SetOperation::Create,
            id: id.as_str().to_owned(),
            error: Box::new(error),
        })
    }

    /// `Err` with the first per-item failure, if any item failed.
    pub fn check(&self) -> Result<(), Error> {
        let first = self
            .not_created
            .iter()
            .map(|(k, e)| (SetOperation::Create, k.clone(), e))
            .chain(
                self.not_updated
                    .iter()
                    .map(|(k, e)| (SetOperation::Update, k.to_string(), e)),
            )
            .chain(
                self.not_destroyed
                    .iter()
                    .map(|(k, e)| (SetOperation::Destroy, k.to_string(), e)),
            )
            .next();
        match first {
            None => Ok(()),
            Some((operation, id, error)) => Err(Error::SetItem {
                operation,
                id,
                error: Box::new(error.clone()),
            }),
        }
    }

    /// True when every item succeeded.
    pub fn is_ok(&self) -> bool {
        self.not_created.is_empty() && self.not_updated.is_empty() && self.not_destroyed.is_empty()
    }
}
