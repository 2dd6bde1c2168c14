//! `SearchSnippet/get` (RFC 8621 §5): highlighted search matches.

use std::borrow::Cow;

use serde::Deserialize;

use crate::id::{AccountId, EmailId};
use crate::method::{Filter, null_default};
use crate::object::email::EmailFilterCondition;
use crate::request::{Arg, Arguments, Method, SplitPolicy};
use crate::session::capability;

/// A SearchSnippet: `subject` and `preview` with matches marked by `<mark>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SearchSnippet {
    /// `emailId`
    pub email_id: Option<EmailId>,
    /// `subject` (HTML-escaped, with `<mark>`), or null if it did not match.
    pub subject: Option<String>,
    /// `preview` (HTML-escaped, with `<mark>`), or null.
    pub preview: Option<String>,
}

/// `SearchSnippet/get`.
#[derive(Debug, Clone)]
pub struct SearchSnippetGet {
    account_id: AccountId,
    filter: Option<Filter<EmailFilterCondition>>,
    email_ids: Arg<Vec<EmailId>>,
}

impl SearchSnippetGet {
    /// Snippets for `email_ids` (a list or a query's `ids()`) matching `filter`.
    pub fn new(
        account_id: &AccountId,
        filter: impl Into<Filter<EmailFilterCondition>>,
        email_ids: impl Into<Arg<Vec<EmailId>>>,
    ) -> Self {
        SearchSnippetGet {
            account_id: account_id.clone(),
            filter: Some(filter.into()),
            email_ids: email_ids.into(),
        }
    }
}

impl Method for SearchSnippetGet {
    type Response = SearchSnippetGetResponse;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SearchSnippet/get")
    }

    fn capabilities() -> &'static [&'static str] {
        &[capability::MAIL]
    }

    fn split_policy() -> SplitPolicy {
        SplitPolicy::Ids { field: "emailIds" }
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        if let Some(f) = &self.filter {
            args.set("filter", f)?;
        }
        args.set_arg("emailIds", &self.email_ids)?;
        Ok(args)
    }
}

/// The response to `SearchSnippet/get`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSnippetGetResponse {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `list`
    #[serde(default, deserialize_with = "null_default")]
    pub list: Vec<SearchSnippet>,
    /// `notFound`
    #[serde(default, deserialize_with = "null_default")]
    pub not_found: Vec<EmailId>,
}
