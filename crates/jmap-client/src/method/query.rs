//! `Foo/query` and `Foo/queryChanges` (RFC 8620 §5.5, §5.6), filters and sort comparators.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Object, null_default};
use crate::id::{AccountId, JmapId, State};
use crate::request::{Arguments, Call, Method, ResultRef};

/// An object type that supports `/query`, with its filter condition type.
pub trait Queryable: Object {
    /// The FilterCondition type.
    type Condition: Serialize + Clone + std::fmt::Debug + Send + Sync + 'static;
}

/// A filter: a condition or an operator over sub-filters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Filter<C> {
    /// A FilterOperator.
    Operator(FilterOperator<C>),
    /// A FilterCondition.
    Condition(C),
}

impl<C> Filter<C> {
    /// All conditions must match.
    pub fn and(conditions: impl IntoIterator<Item = Filter<C>>) -> Self {
        Self::op(Operator::And, conditions)
    }

    /// At least one condition must match.
    pub fn or(conditions: impl IntoIterator<Item = Filter<C>>) -> Self {
        Self::op(Operator::Or, conditions)
    }

    /// No condition may match.
    pub fn not(conditions: impl IntoIterator<Item = Filter<C>>) -> Self {
        Self::op(Operator::Not, conditions)
    }

    fn op(operator: Operator, conditions: impl IntoIterator<Item = Filter<C>>) -> Self {
        Filter::Operator(FilterOperator {
            operator,
            conditions: conditions.into_iter().collect(),
        })
    }
}

impl<C> From<C> for Filter<C> {
    fn from(c: C) -> Self {
        Filter::Condition(c)
    }
}

/// A FilterOperator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterOperator<C> {
    /// `operator`
    pub operator: Operator,
    /// `conditions`
    pub conditions: Vec<Filter<C>>,
}

/// `AND`, `OR` or `NOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operator {
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `NOT`
    Not,
}

/// A sort Comparator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparator {
    /// `property`
    pub property: String,
    /// `isAscending`
    pub is_ascending: bool,
    /// `collation`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// `keyword` (for Email `hasKeyword`-style sorts)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
}

impl Comparator {
    /// Ascending by a property.
    pub fn ascending(property: impl Into<String>) -> Self {
        Comparator {
            property: property.into(),
            is_ascending: true,
            collation: None,
            keyword: None,
        }
    }

    /// Descending by a property.
    pub fn descending(property: impl Into<String>) -> Self {
        Comparator {
            is_ascending: false,
            ..Comparator::ascending(property)
        }
    }

    /// Sets the keyword (for `hasKeyword`, `allInThreadHaveKeyword`, …).
    #[must_use]
    pub fn keyword(mut self, keyword: impl Into<String>) -> Self {
        self.keyword = Some(keyword.into());
        self
    }
}

/// `Foo/query`: a sorted, filtered, paged list of ids.
#[derive(Debug, Clone)]
pub struct Query<O: Queryable> {
    account_id: AccountId,
    filter: Option<Filter<O::Condition>>,
    sort: Option<Vec<Comparator>>,
    position: Option<i64>,
    anchor: Option<O::Id>,
    anchor_offset: Option<i64>,
    limit: Option<u64>,
    calculate_total: Option<bool>,
    extra: Map<String, Value>,
}

impl<O: Queryable> Query<O> {
    /// A query over all objects.
    pub fn new(account_id: &AccountId) -> Self {
        Query {
            account_id: account_id.clone(),
            filter: None,
            sort: None,
            position: None,
            anchor: None,
            anchor_offset: None,
            limit: None,
            calculate_total: None,
            extra: Map::new(),
        }
    }

    /// `filter`
    #[must_use]
    pub fn filter(mut self, filter: impl Into<Filter<O::Condition>>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// `sort`. Use only the properties the data type defines (for Email: RFC 8621 §4.4.2,
    /// as listed in the account's `emailQuerySortOptions`); `id` is not one, and a server
    /// answers it with `unsupportedSort`. Ties (Cyrus' `receivedAt` has one-second
    /// resolution) are the server's to order: page by anchor and break them client-side.
    #[must_use]
    pub fn sort(mut self, sort: impl IntoIterator<Item = Comparator>) -> Self {
        self.sort = Some(sort.into_iter().collect());
        self
    }

    /// `position` (0-based; negative counts from the end).
    #[must_use]
    pub fn position(mut self, position: i64) -> Self {
        self.position = Some(position);
        self
    }

    /// `anchor` and `anchorOffset`: start relative to an id instead of a position.
    #[must_use]
    pub fn anchor(mut self, anchor: &O::Id, offset: i64) -> Self {
        self.anchor = Some(anchor.clone());
        self.anchor_offset = Some(offset);
        self
    }

    /// `limit`
    #[must_use]
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// `calculateTotal`
    #[must_use]
    pub fn calculate_total(mut self, yes: bool) -> Self {
        self.calculate_total = Some(yes);
        self
    }

    /// Sets any other argument (e.g. Email's `collapseThreads`).
    #[must_use]
    pub fn argument(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    pub(crate) fn filter_ref(&self) -> Option<&Filter<O::Condition>> {
        self.filter.as_ref()
    }

    pub(crate) fn sort_ref(&self) -> Option<&Vec<Comparator>> {
        self.sort.as_ref()
    }

    pub(crate) fn account_id(&self) -> &AccountId {
        &self.account_id
    }

    pub(crate) fn clear_paging(&mut self) {
        self.position = None;
        self.anchor = None;
        self.anchor_offset = None;
    }
}

impl<O: Queryable> Method for Query<O> {
    type Response = QueryResponse<O>;

    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}/query", O::NAME))
    }

    fn capabilities() -> &'static [&'static str] {
        O::CAPABILITIES
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        if let Some(f) = &self.filter {
            args.set("filter", f)?;
        }
        if let Some(s) = &self.sort {
            args.set("sort", s)?;
        }
        if let Some(p) = self.position {
            args.set("position", &p)?;
        }
        if let Some(a) = &self.anchor {
            args.set("anchor", a)?;
        }
        if let Some(o) = self.anchor_offset {
            args.set("anchorOffset", &o)?;
        }
        if let Some(l) = self.limit {
            args.set("limit", &l)?;
        }
        if let Some(c) = self.calculate_total {
            args.set("calculateTotal", &c)?;
        }
        for (k, v) in self.extra {
            args.set_value(&k, v);
        }
        Ok(args)
    }
}

/// The response to `Foo/query`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Queryable")]
pub struct QueryResponse<O: Queryable> {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `queryState`
    pub query_state: State,
    /// `canCalculateChanges`
    #[serde(default)]
    pub can_calculate_changes: bool,
    /// `position` of the first returned id.
    #[serde(default)]
    pub position: u64,
    /// `ids`
    #[serde(default, deserialize_with = "null_default")]
    pub ids: Vec<O::Id>,
    /// `total`, when `calculateTotal` was requested.
    #[serde(default)]
    pub total: Option<u64>,
    /// `limit`, when the server capped the requested limit.
    #[serde(default)]
    pub limit: Option<u64>,
}

impl<O: Queryable> Call<Query<O>> {
    /// Reference to the result ids (`/ids`).
    pub fn ids(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/ids")
    }
}

/// `Foo/queryChanges`: how a query's results changed since a query state.
#[derive(Debug, Clone)]
pub struct QueryChanges<O: Queryable> {
    account_id: AccountId,
    filter: Option<Filter<O::Condition>>,
    sort: Option<Vec<Comparator>>,
    since_query_state: State,
    max_changes: Option<u64>,
    up_to_id: Option<O::Id>,
    calculate_total: Option<bool>,
}

impl<O: Queryable> QueryChanges<O> {
    /// Changes of the query (same filter and sort as the original) since `since_query_state`.
    pub fn new(account_id: &AccountId, since_query_state: &State) -> Self {
        QueryChanges {
            account_id: account_id.clone(),
            filter: None,
            sort: None,
            since_query_state: since_query_state.clone(),
            max_changes: None,
            up_to_id: None,
            calculate_total: None,
        }
    }

    /// The changes of an existing query (copies its filter and sort).
    pub fn for_query(query: &Query<O>, since_query_state: &State) -> Self {
        QueryChanges {
            filter: query.filter_ref().cloned(),
            sort: query.sort_ref().cloned(),
            ..Self::new(query.account_id(), since_query_state)
        }
    }

    /// `filter` (must equal the original query's).
    #[must_use]
    pub fn filter(mut self, filter: impl Into<Filter<O::Condition>>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// `sort` (must equal the original query's).
    #[must_use]
    pub fn sort(mut self, sort: impl IntoIterator<Item = Comparator>) -> Self {
        self.sort = Some(sort.into_iter().collect());
        self
    }

    /// `maxChanges`
    #[must_use]
    pub fn max_changes(mut self, max: u64) -> Self {
        self.max_changes = Some(max);
        self
    }

    /// `upToId`
    #[must_use]
    pub fn up_to_id(mut self, id: &O::Id) -> Self {
        self.up_to_id = Some(id.clone());
        self
    }

    /// `calculateTotal`
    #[must_use]
    pub fn calculate_total(mut self, yes: bool) -> Self {
        self.calculate_total = Some(yes);
        self
    }
}

impl<O: Queryable> Method for QueryChanges<O> {
    type Response = QueryChangesResponse<O::Id>;

    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}/queryChanges", O::NAME))
    }

    fn capabilities() -> &'static [&'static str] {
        O::CAPABILITIES
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        if let Some(f) = &self.filter {
            args.set("filter", f)?;
        }
        if let Some(s) = &self.sort {
            args.set("sort", s)?;
        }
        args.set("sinceQueryState", &self.since_query_state)?;
        if let Some(m) = self.max_changes {
            args.set("maxChanges", &m)?;
        }
        if let Some(u) = &self.up_to_id {
            args.set("upToId", u)?;
        }
        if let Some(c) = self.calculate_total {
            args.set("calculateTotal", &c)?;
        }
        Ok(args)
    }
}

/// The response to `Foo/queryChanges`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound = "I: JmapId")]
pub struct QueryChangesResponse<I: JmapId> {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `oldQueryState`
    pub old_query_state: State,
    /// `newQueryState`
    pub new_query_state: State,
    /// `total`
    #[serde(default)]
    pub total: Option<u64>,
    /// `removed`
    #[serde(default, deserialize_with = "null_default")]
    pub removed: Vec<I>,
    /// `added`
    #[serde(default, deserialize_with = "null_default")]
    pub added: Vec<AddedItem<I>>,
}

/// An entry of `added`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound = "I: JmapId")]
pub struct AddedItem<I: JmapId> {
    /// `id`
    pub id: I,
    /// `index`
    pub index: u64,
}

impl<O: Queryable> Call<QueryChanges<O>> {
    /// Reference to the added ids (`/added/*/id`).
    pub fn added_ids(&self) -> ResultRef<Vec<O::Id>> {
        self.reference("/added/*/id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_serialise_untagged() {
        let f: Filter<Value> = Filter::and([
            Filter::Condition(json!({"a": 1})),
            Filter::not([json!({"b": 2}).into()]),
        ]);
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"operator": "AND", "conditions": [{"a": 1}, {"operator": "NOT", "conditions": [{"b": 2}]}]})
        );
        assert_eq!(
            serde_json::to_value(Comparator::descending("receivedAt")).unwrap(),
            json!({"property": "receivedAt", "isAscending": false})
        );
    }
}
