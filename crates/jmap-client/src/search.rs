//! Server-side Email search in one request (RFC 8621 §4.4 and §5): `Email/query` with a
//! filter, `Email/get` of the hits' headers and `SearchSnippet/get`, the last two by
//! back-reference to the query's ids.

use crate::client::Client;
use crate::error::Error;
use crate::id::{AccountId, EmailId};
use crate::method::{Comparator, Filter, Get, Query};
use crate::object::email::{Email, EmailFilterCondition};
use crate::object::snippet::{SearchSnippet, SearchSnippetGet};

/// What [`Client::search_emails`] found, best first in the server's order.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EmailSearch {
    /// The matching ids, in the query's order (newest first where `receivedAt` sorts).
    pub ids: Vec<EmailId>,
    /// Their `id`, `subject`, `from`, `receivedAt`, `mailboxIds`, `preview`, `hasAttachment`
    /// (in any order).
    pub emails: Vec<Email>,
    /// Their snippets (`<mark>` around matches, HTML-escaped), where the server made one.
    pub snippets: Vec<SearchSnippet>,
    /// The server's count of all matches, when it gave one.
    pub total: Option<u64>,
}

impl Client {
    /// Runs `filter` over the account's Emails, at most `limit` hits, newest first by
    /// `receivedAt` unless the account's `emailQuerySortOptions` lacks it (then the server's
    /// order). One HTTP request: the query, the hits' headers and their snippets. A filter
    /// the server cannot run is [`Error::Method`] (`unsupportedFilter`, `invalidArguments`).
    pub async fn search_emails(
        &self,
        account: &AccountId,
        filter: Filter<EmailFilterCondition>,
        limit: u64,
    ) -> Result<EmailSearch, Error> {
        let offered = self
            .session()
            .account(account)
            .and_then(|a| a.mail_capabilities())
            .map(|c| c.email_query_sort_options)
            .unwrap_or_default();
        let mut query = Query::<Email>::new(account)
            .filter(filter.clone())
            .limit(limit)
            .calculate_total(true);
        if offered.is_empty() || offered.iter().any(|p| p == "receivedAt") {
            query = query.sort([Comparator::descending("receivedAt")]);
        }
        let mut req = self.request();
        let q = req.call(query);
        let get = req.call(Get::<Email>::new(account).ids(q.ids()).properties([
            "id",
            "subject",
            "from",
            "receivedAt",
            "mailboxIds",
            "preview",
            "hasAttachment",
        ]));
        let sn = req.call(SearchSnippetGet::new(account, filter, q.ids()));
        let mut resp = self.send(req).await?;
        let found = resp.take(&q)?;
        let emails = resp.take(&get)?.list;
        let snippets = resp.take(&sn)?.list;
        Ok(EmailSearch {
            ids: found.ids,
            emails,
            snippets,
            total: found.total,
        })
    }
}
