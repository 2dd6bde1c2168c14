//! `Foo/get` (RFC 8620 §5.1).

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Object, null_default};
use crate::id::{AccountId, State};
use crate::request::{Arg, Arguments, Call, Method, ResultRef, SplitPolicy};

/// `Foo/get`: fetch objects by id (or all of them when no ids are given).
#[derive(Debug, Clone)]
pub struct Get<O: Object> {
    account_id: AccountId,
    ids: Option<Arg<Vec<O::Id>>>,
    properties: Option<Vec<String>>,
    extra: Map<String, Value>,
    _object: PhantomData<fn() -> O>,
}

impl<O: Object> Get<O> {
    /// A `/get` of all objects (`ids: null`) with all default properties.
    pub fn new(account_id: &AccountId) -> Self {
        Get {
            account_id: account_id.clone(),
            ids: None,
            properties: None,
            extra: Map::new(),
            _object: PhantomData,
        }
    }

    /// The ids to fetch: a list, or a result reference such as
    /// [`Call::<Query<Email>>::ids`](crate::request::Call) or a `/changes` `created()`.
    #[must_use]
    pub fn ids(mut self, ids: impl Into<Arg<Vec<O::Id>>>) -> Self {
        self.ids = Some(ids.into());
        self
    }

    /// The properties to return (`id` is always returned).
    #[must_use]
    pub fn properties<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.properties = Some(properties.into_iter().map(Into::into).collect());
        self
    }

    /// Sets any other argument (for extensions).
    #[must_use]
    pub fn argument(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    pub(crate) fn set_extra(&mut self, name: &str, value: Value) {
        self.extra.insert(name.to_owned(), value);
    }
}

impl<O: Object> Method for Get<O> {
    type Response = GetResponse<O>;

    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}/get", O::NAME))
    }

    fn capabilities() -> &'static [&'static str] {
        O::CAPABILITIES
    }

    fn split_policy() -> SplitPolicy {
        SplitPolicy::Ids { field: "ids" }
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        match &self.ids {
            Some(ids) => args.set_arg("ids", ids)?,
            None => args.set_value("ids", Value::Null),
        }
        if let Some(p) = &self.properties {
            args.set("properties", p)?;
        }
        for (k, v) in self.extra {
            args.set_value(&k, v);
        }
        Ok(args)
    }
}

/// The response to `Foo/get`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Object")]
pub struct GetResponse<O: Object> {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `state`: the state of the objects of this type when the response was produced.
    pub state: State,
    /// `list`: the objects found.
    #[serde(default, deserialize_with = "null_default")]
    pub list: Vec<O>,
    /// `notFound`: the ids that do not exist.
    #[serde(default, deserialize_with = "null_default")]
    pub not_found: Vec<O::Id>,
}

impl<O: Object> Call<Get<O>> {
    /// Reference to the ids of the returned objects (`/list/*/id`).
    pub fn list_ids(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/list/*/id")
    }
}
