//! `Foo/changes` (RFC 8620 §5.2).

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;

use super::{Object, null_default};
use crate::id::{AccountId, State};
use crate::request::{Arguments, Call, Method, ResultRef};

/// `Foo/changes`: the ids created, updated and destroyed since a state.
#[derive(Debug, Clone)]
pub struct Changes<O: Object> {
    account_id: AccountId,
    since_state: State,
    max_changes: Option<u64>,
    _object: PhantomData<fn() -> O>,
}

impl<O: Object> Changes<O> {
    /// Changes since `since_state`.
    pub fn new(account_id: &AccountId, since_state: &State) -> Self {
        Changes {
            account_id: account_id.clone(),
            since_state: since_state.clone(),
            max_changes: None,
            _object: PhantomData,
        }
    }

    /// `maxChanges`: an upper bound on the number of ids returned.
    #[must_use]
    pub fn max_changes(mut self, max: u64) -> Self {
        self.max_changes = Some(max.max(1));
        self
    }
}

impl<O: Object> Method for Changes<O> {
    type Response = ChangesResponse<O>;

    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}/changes", O::NAME))
    }

    fn capabilities() -> &'static [&'static str] {
        O::CAPABILITIES
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        args.set("sinceState", &self.since_state)?;
        if let Some(m) = self.max_changes {
            args.set("maxChanges", &m)?;
        }
        Ok(args)
    }
}

/// The response to `Foo/changes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Object")]
pub struct ChangesResponse<O: Object> {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `oldState`
    pub old_state: State,
    /// `newState`
    pub new_state: State,
    /// `hasMoreChanges`: call again with `newState` to get the rest.
    #[serde(default)]
    pub has_more_changes: bool,
    /// `created`
    #[serde(default, deserialize_with = "null_default")]
    pub created: Vec<O::Id>,
    /// `updated`
    #[serde(default, deserialize_with = "null_default")]
    pub updated: Vec<O::Id>,
    /// `destroyed`
    #[serde(default, deserialize_with = "null_default")]
    pub destroyed: Vec<O::Id>,
    /// `updatedProperties` (Mailbox/changes only): when set, only these properties changed.
    #[serde(default)]
    pub updated_properties: Option<Vec<String>>,
}

impl<O: Object> ChangesResponse<O> {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.destroyed.is_empty()
    }
}

impl<O: Object> Call<Changes<O>> {
    /// Reference to the created ids (`/created`).
    pub fn created(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/created")
    }

    /// Reference to the updated ids (`/updated`).
    pub fn updated(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/updated")
    }

    /// Reference to the destroyed ids (`/destroyed`).
    pub fn destroyed(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/destroyed")
    }
}
