//! Paged helpers built on the request builder: a query pager (`/query` + `/get` chained in
//! one request per page) and a changes pager (`/changes` + `/get` of created and updated
//! objects in one request per page, looping while `hasMoreChanges`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, MethodErrorType};
use crate::id::{AccountId, State};
use crate::method::{
    Changes, ChangesResponse, Get, GetResponse, Object, Query, QueryResponse, Queryable,
};

/// One page of a [`QueryPager`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage<O: Queryable> {
    /// The ids of this page, in query order.
    pub ids: Vec<O::Id>,
    /// The objects fetched for them (order as returned by the server).
    pub objects: Vec<O>,
    /// Ids the `/get` did not find (destroyed between query and get).
    pub not_found: Vec<O::Id>,
    /// The position of the first id.
    pub position: u64,
    /// `total`, if the server computed it.
    pub total: Option<u64>,
    /// The `queryState` of this page.
    pub query_state: State,
    /// The `/get` `state` of this page.
    pub state: State,
}

/// Where a [`QueryPager`] stands between pages. A caller that commits each page can store it
/// with the page and continue the listing in a later process ([`QueryPager::resume`]) instead
/// of starting again: a listing cut again and again still completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCursor {
    /// The position after the last page.
    pub position: u64,
    /// The last id of the last page (the anchor of the next one).
    pub last_id: Option<String>,
    /// The `/get` state of the first page (where `/changes` starts after the listing).
    pub first_state: Option<State>,
    /// The `queryState` of the first page.
    pub first_query_state: Option<State>,
    /// The page size in use.
    pub page_size: u64,
}

/// Pages through a query, fetching each page's objects in the same request.
///
/// Pages after the first are addressed by anchor (the last id seen, offset 1) so that
/// concurrent insertions before the current position do not shift the window; when the
/// anchor has disappeared (`anchorNotFound`) paging resumes by position one page back, so
/// ids may repeat (callers should upsert) but none is skipped unless more than a page of
/// earlier results vanished.
/// Anchors are exact whatever order the server gives equal sort keys, so no tie-breaker is
/// needed on the wire (nor allowed: `id` is not an Email sort property).
///
/// To synchronise afterwards, start `/changes` from [`QueryPager::first_state`]: the
/// state of the first page is the oldest, so nothing that changed during paging is missed.
#[derive(Debug)]
pub struct QueryPager<O: Queryable> {
    client: Client,
    query: Query<O>,
    get: Get<O>,
    page_size: u64,
    position: u64,
    last_id: Option<O::Id>,
    first_state: Option<State>,
    first_query_state: Option<State>,
    query_changed: bool,
    use_anchor: bool,
    done: bool,
}

impl<O: Queryable> QueryPager<O> {
    /// `query` gives filter and sort (its paging arguments are replaced); `get` gives the
    /// properties (its ids are replaced by a reference to each page's ids).
    pub fn new(client: &Client, query: Query<O>, get: Get<O>, page_size: u64) -> Self {
        QueryPager {
            client: client.clone(),
            query,
            get,
            page_size: page_size.max(1),
            position: 0,
            last_id: None,
            first_state: None,
            first_query_state: None,
            query_changed: false,
            use_anchor: true,
            done: false,
        }
    }

    /// Pages by position only (no anchors).
    #[must_use]
    pub fn position_paging(mut self) -> Self {
        self.use_anchor = false;
        self
    }

    /// Continues a listing where `cursor` says an earlier pager stopped: the next page starts
    /// after its last id (or at its position when that id has gone), and [`Self::first_state`]
    /// stays the first page's state of the whole listing.
    #[must_use]
    pub fn resume(mut self, cursor: &QueryCursor) -> Self {
        self.position = cursor.position;
        self.last_id = cursor.last_id.clone().map(O::Id::from);
        self.first_state = cursor.first_state.clone();
        self.first_query_state = cursor.first_query_state.clone();
        self
    }

    /// Where the pager stands now (after the last page returned).
    pub fn cursor(&self) -> QueryCursor {
        QueryCursor {
            position: self.position,
            last_id: self.last_id.as_ref().map(|i| i.as_ref().to_owned()),
            first_state: self.first_state.clone(),
            first_query_state: self.first_query_state.clone(),
            page_size: self.page_size,
        }
    }

    /// Changes the size of the following pages.
    pub fn set_page_size(&mut self, page_size: u64) {
        self.page_size = page_size.max(1);
    }

    /// The `/get` state of the first page (where a following `/changes` should start).
    pub fn first_state(&self) -> Option<&State> {
        self.first_state.as_ref()
    }

    /// The `queryState` of the first page.
    pub fn first_query_state(&self) -> Option<&State> {
        self.first_query_state.as_ref()
    }

    /// True if the `queryState` changed while paging (results may have shifted; a
    /// `/changes` from [`QueryPager::first_state`] reconciles).
    pub fn query_changed(&self) -> bool {
        self.query_changed
    }

    /// The next page, or `None` when the results are exhausted.
    pub async fn next_page(&mut self) -> Result<Option<QueryPage<O>>, Error> {
        if self.done {
            return Ok(None);
        }
        let anchored = self.use_anchor && self.last_id.is_some();
        let result = self.fetch(anchored).await;
        let (qr, gr) = match result {
            Err(e)
                if anchored && e.method_error_type() == Some(MethodErrorType::AnchorNotFound) =>
            {
                tracing::debug!("query anchor vanished; continuing by position, one page back");
                self.position = self.position.saturating_sub(self.page_size);
                self.fetch(false).await?
            }
            other => other?,
        };
        let QueryResponse {
            ids,
            position,
            total,
            query_state,
            limit,
            ..
        } = qr;
        let GetResponse {
            list: objects,
            not_found,
            state,
            ..
        } = gr;
        if self.first_state.is_none() {
            self.first_state = Some(state.clone());
            self.first_query_state = Some(query_state.clone());
        } else if self.first_query_state.as_ref() != Some(&query_state) {
            self.query_changed = true;
        }
        let effective = limit.unwrap_or(self.page_size).min(self.page_size).max(1);
        let n = ids.len() as u64;
        self.position = position.saturating_add(n);
        if n < effective || total.is_some_and(|t| self.position >= t) {
            self.done = true;
        }
        if ids.is_empty() {
            self.done = true;
            return Ok(None);
        }
        self.last_id = ids.last().cloned();
        Ok(Some(QueryPage {
            ids,
            objects,
            not_found,
            position,
            total,
            query_state,
            state,
        }))
    }

    async fn fetch(&self, anchored: bool) -> Result<(QueryResponse<O>, GetResponse<O>), Error> {
        let mut query = self.query.clone();
        query.clear_paging();
        query = query
            .limit(self.page_size)
            .calculate_total(self.first_state.is_none());
        query = match (&self.last_id, anchored) {
            (Some(id), true) => query.anchor(id, 1),
            _ => query.position(i64::try_from(self.position).unwrap_or(i64::MAX)),
        };
        let mut req = self.client.request();
        let q = req.call(query);
        let g = req.call(self.get.clone().ids(q.ids()));
        let mut resp = self.client.send(req).await?;
        Ok((resp.take(&q)?, resp.take(&g)?))
    }
}

/// One page of a [`ChangesPager`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage<O: Object> {
    /// The `/changes` response (ids, old and new state, `hasMoreChanges`).
    pub changes: ChangesResponse<O>,
    /// The created objects (empty unless fetching was configured).
    pub created: Vec<O>,
    /// The updated objects (empty unless fetching was configured).
    pub updated: Vec<O>,
    /// Created or updated ids the `/get` no longer found (destroyed meanwhile).
    pub not_found: Vec<O::Id>,
}

/// Loops over `/changes` until `hasMoreChanges` is false, optionally fetching the created
/// and updated objects in the same request through `/created` and `/updated`
/// back-references. Stops with [`Error::StateNotAdvancing`] when a server reports more
/// changes without its state advancing (or returns to an earlier state).
#[derive(Debug)]
pub struct ChangesPager<O: Object> {
    client: Client,
    account_id: AccountId,
    since: State,
    max_changes: Option<u64>,
    fetch_created: Option<Get<O>>,
    fetch_updated: Option<Get<O>>,
    seen: HashSet<State>,
    done: bool,
}

impl<O: Object> ChangesPager<O> {
    /// Changes since `since`.
    pub fn new(client: &Client, account_id: &AccountId, since: &State) -> Self {
        ChangesPager {
            client: client.clone(),
            account_id: account_id.clone(),
            since: since.clone(),
            max_changes: None,
            fetch_created: None,
            fetch_updated: None,
            seen: HashSet::new(),
            done: false,
        }
    }

    /// `maxChanges` per page.
    #[must_use]
    pub fn max_changes(mut self, max: u64) -> Self {
        self.max_changes = Some(max.max(1));
        self
    }

    /// Fetches created objects with this `/get` (its ids are replaced by `#ids` → `/created`).
    #[must_use]
    pub fn fetch_created(mut self, get: Get<O>) -> Self {
        self.fetch_created = Some(get);
        self
    }

    /// Fetches updated objects with this `/get` (its ids are replaced by `#ids` → `/updated`),
    /// e.g. with only `keywords` and `mailboxIds` for Emails.
    #[must_use]
    pub fn fetch_updated(mut self, get: Get<O>) -> Self {
        self.fetch_updated = Some(get);
        self
    }

    /// The state the next page starts from (after the last page: the new state to store).
    pub fn state(&self) -> &State {
        &self.since
    }

    /// The next page; `None` once a page with `hasMoreChanges: false` was returned.
    pub async fn next_page(&mut self) -> Result<Option<ChangesPage<O>>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut changes = Changes::<O>::new(&self.account_id, &self.since);
        if let Some(m) = self.max_changes {
            changes = changes.max_changes(m);
        }
        let mut req = self.client.request();
        let c = req.call(changes);
        let created = self
            .fetch_created
            .clone()
            .map(|g| req.call(g.ids(c.created())));
        let updated = self
            .fetch_updated
            .clone()
            .map(|g| req.call(g.ids(c.updated())));
        let mut resp = self.client.send(req).await?;
        let changes = resp.take(&c)?;
        let mut page = ChangesPage {
            changes,
            created: Vec::new(),
            updated: Vec::new(),
            not_found: Vec::new(),
        };
        if let Some(h) = created {
            let r = resp.take(&h)?;
            page.created = r.list;
            page.not_found.extend(r.not_found);
        }
        if let Some(h) = updated {
            let r = resp.take(&h)?;
            page.updated = r.list;
            page.not_found.extend(r.not_found);
        }
        let ch = &page.changes;
        if ch.has_more_changes
            && (ch.new_state == ch.old_state || self.seen.contains(&ch.new_state))
        {
            return Err(Error::StateNotAdvancing {
                method: format!("{}/changes", O::NAME),
                state: ch.new_state.clone(),
            });
        }
        self.seen.insert(ch.old_state.clone());
        self.since = ch.new_state.clone();
        self.done = !ch.has_more_changes;
        Ok(Some(page))
    }
}
