//! The JMAP Session resource (RFC 8620 §2): parsing, URL templates, capabilities and limits.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::error::{Error, NotJmapReason};
use crate::id::{AccountId, State};

/// Capability URIs used by this crate.
pub mod capability {
    /// `urn:ietf:params:jmap:core` (RFC 8620)
    pub const CORE: &str = "urn:ietf:params:jmap:core";
    /// `urn:ietf:params:jmap:mail` (RFC 8621)
    pub const MAIL: &str = "urn:ietf:params:jmap:mail";
    /// `urn:ietf:params:jmap:submission` (RFC 8621)
    pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
    /// `urn:ietf:params:jmap:vacationresponse` (RFC 8621)
    pub const VACATION_RESPONSE: &str = "urn:ietf:params:jmap:vacationresponse";
    /// `urn:ietf:params:jmap:websocket` (RFC 8887)
    pub const WEBSOCKET: &str = "urn:ietf:params:jmap:websocket";
}

/// The limits of `urn:ietf:params:jmap:core`.
///
/// Missing or malformed values are replaced by the conservative minimums RFC 8620 §2
/// recommends, and zero is raised to one so that splitting never divides by zero.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoreCapabilities {
    /// `maxSizeUpload` in bytes.
    pub max_size_upload: u64,
    /// `maxConcurrentUpload`.
    pub max_concurrent_upload: u64,
    /// `maxSizeRequest` in bytes.
    pub max_size_request: u64,
    /// `maxConcurrentRequests`.
    pub max_concurrent_requests: u64,
    /// `maxCallsInRequest`.
    pub max_calls_in_request: u64,
    /// `maxObjectsInGet`.
    pub max_objects_in_get: u64,
    /// `maxObjectsInSet`.
    pub max_objects_in_set: u64,
    /// `collationAlgorithms`.
    pub collation_algorithms: Vec<String>,
}

impl Default for CoreCapabilities {
    fn default() -> Self {
        CoreCapabilities {
            max_size_upload: 50_000_000,
            max_concurrent_upload: 4,
            max_size_request: 10_000_000,
            max_concurrent_requests: 4,
            max_calls_in_request: 16,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
            collation_algorithms: Vec::new(),
        }
    }
}

impl CoreCapabilities {
    fn from_value(v: &Value) -> Self {
        let d = CoreCapabilities::default();
        let get = |name: &str, default: u64| {
            v.get(name)
                .and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
                .unwrap_or(default)
                .max(1)
        };
        CoreCapabilities {
            max_size_upload: get("maxSizeUpload", d.max_size_upload),
            max_concurrent_upload: get("maxConcurrentUpload", d.max_concurrent_upload),
            max_size_request: get("maxSizeRequest", d.max_size_request),
            max_concurrent_requests: get("maxConcurrentRequests", d.max_concurrent_requests),
            max_calls_in_request: get("maxCallsInRequest", d.max_calls_in_request),
            max_objects_in_get: get("maxObjectsInGet", d.max_objects_in_get),
            max_objects_in_set: get("maxObjectsInSet", d.max_objects_in_set),
            collation_algorithms: v
                .get("collationAlgorithms")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Per-account `urn:ietf:params:jmap:mail` capability (RFC 8621 §1.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct MailAccountCapabilities {
    /// `maxMailboxesPerEmail` (null: no limit).
    pub max_mailboxes_per_email: Option<u64>,
    /// `maxMailboxDepth` (null: no limit).
    pub max_mailbox_depth: Option<u64>,
    /// `maxSizeMailboxName`.
    pub max_size_mailbox_name: Option<u64>,
    /// `maxSizeAttachmentsPerEmail`.
    pub max_size_attachments_per_email: Option<u64>,
    /// `emailQuerySortOptions` (Cyrus 3.6 calls it `emailsListSortOptions`; both are read).
    #[serde(alias = "emailsListSortOptions")]
    pub email_query_sort_options: Vec<String>,
    /// `mayCreateTopLevelMailbox`.
    pub may_create_top_level_mailbox: Option<bool>,
}

/// Per-account `urn:ietf:params:jmap:submission` capability (RFC 8621 §1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct SubmissionAccountCapabilities {
    /// `maxDelayedSend` in seconds (0: delayed send unsupported).
    pub max_delayed_send: Option<u64>,
    /// `submissionExtensions`: SMTP EHLO keywords and their arguments.
    pub submission_extensions: BTreeMap<String, Vec<String>>,
}

/// One entry of the Session's `accounts`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Account {
    /// `name`
    pub name: String,
    /// `isPersonal`
    pub is_personal: bool,
    /// `isReadOnly`
    pub is_read_only: bool,
    /// `accountCapabilities` (Cyrus sends `null` for an unprovisioned account; read as empty).
    pub account_capabilities: BTreeMap<String, Value>,
}

impl Account {
    /// True if the account has the capability.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.account_capabilities.contains_key(capability)
    }

    /// The parsed mail capability, if the account has one.
    pub fn mail_capabilities(&self) -> Option<MailAccountCapabilities> {
        self.account_capabilities
            .get(crate::session::capability::MAIL)
            .map(|v| MailAccountCapabilities::deserialize(v).unwrap_or_default())
    }

    /// The parsed submission capability, if the account has one.
    pub fn submission_capabilities(&self) -> Option<SubmissionAccountCapabilities> {
        self.account_capabilities
            .get(crate::session::capability::SUBMISSION)
            .map(|v| SubmissionAccountCapabilities::deserialize(v).unwrap_or_default())
    }
}

/// An RFC 6570 level-1 URL template from the Session, resolved against the Session URL
/// (Cyrus sends relative templates).
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    template: String,
    base: Url,
}

impl UrlTemplate {
    pub(crate) fn new(template: String, base: Url) -> Self {
        UrlTemplate { template, base }
    }

    /// The template exactly as the server sent it.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Expands `{name}` variables (values are percent-encoded; unknown variables expand to
    /// the empty string, as RFC 6570 says for undefined values) and resolves the result
    /// against the Session URL.
    pub fn expand(&self, vars: &[(&str, &str)]) -> Result<Url, Error> {
        let mut out = String::with_capacity(self.template.len() + 32);
        let mut rest = self.template.as_str();
        while let Some((before, after)) = rest.split_once('{') {
            out.push_str(before);
            match after.split_once('}') {
                Some((name, tail)) => {
                    if let Some((_, value)) = vars.iter().find(|(n, _)| *n == name) {
                        out.push_str(&percent_encode(value));
                    }
                    rest = tail;
                }
                None => {
                    out.push('{');
                    out.push_str(after);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        self.base
            .join(&out)
            .map_err(|source| Error::InvalidUrl { url: out, source })
    }
}

impl std::fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UrlTemplate({:?} relative to {:?})",
            self.template,
            self.base.as_str()
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (RFC 6570 simple expansion).
fn percent_encode(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing into a String cannot fail; no temporary String per byte.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A parsed JMAP Session object.
#[derive(Clone, PartialEq)]
pub struct Session {
    url: Url,
    username: String,
    api_url: Url,
    download_url: UrlTemplate,
    upload_url: UrlTemplate,
    event_source_url: Option<UrlTemplate>,
    state: State,
    capabilities: BTreeMap<String, Value>,
    core: CoreCapabilities,
    accounts: BTreeMap<AccountId, Account>,
    primary_accounts: BTreeMap<String, AccountId>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("api_url", &self.api_url.as_str())
            .field("download_url", &self.download_url)
            .field("upload_url", &self.upload_url)
            .field("event_source_url", &self.event_source_url)
            .field("state", &self.state)
            .field("core", &self.core)
            .field("capabilities", &self.capabilities)
            .field("accounts", &self.accounts)
            .field("primary_accounts", &self.primary_accounts)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSession {
    #[serde(default)]
    capabilities: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    accounts: Option<BTreeMap<String, RawAccount>>,
    #[serde(default)]
    primary_accounts: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    download_url: Option<String>,
    #[serde(default)]
    upload_url: Option<String>,
    #[serde(default)]
    event_source_url: Option<String>,
    #[serde(default)]
    state: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAccount {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_personal: Option<bool>,
    #[serde(default)]
    is_read_only: Option<bool>,
    #[serde(default)]
    account_capabilities: Option<BTreeMap<String, Value>>,
}

impl Session {
    /// Parses a Session object fetched from `url` (the URL after redirects, used to resolve
    /// relative URLs).
    pub fn parse(body: &[u8], url: &Url) -> Result<Session, Error> {
        let not_jmap = |reason, source| Error::NotJmap {
            url: url.to_string(),
            reason,
            source,
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| not_jmap(NotJmapReason::NotJson { content_type: None }, Some(e)))?;
        if !value.is_object() {
            return Err(not_jmap(
                NotJmapReason::InvalidSession("not a JSON object"),
                None,
            ));
        }
        let raw: RawSession = serde_json::from_value(value).map_err(|e| {
            not_jmap(
                NotJmapReason::InvalidSession("malformed Session members"),
                Some(e),
            )
        })?;
        let capabilities = raw.capabilities.unwrap_or_default();
        let core_value = capabilities.get(capability::CORE).ok_or_else(|| {
            not_jmap(
                NotJmapReason::InvalidSession("no urn:ietf:params:jmap:core capability"),
                None,
            )
        })?;
        let core = CoreCapabilities::from_value(core_value);
        let api_url = raw
            .api_url
            .filter(|s| !s.is_empty())
            .ok_or_else(|| not_jmap(NotJmapReason::InvalidSession("no apiUrl"), None))?;
        let api_url = url.join(&api_url).map_err(|source| Error::InvalidUrl {
            url: api_url.clone(),
            source,
        })?;
        let template = |s: Option<String>| {
            s.filter(|s| !s.is_empty())
                .map(|s| UrlTemplate::new(s, url.clone()))
        };
        let download_url = template(raw.download_url)
            .ok_or_else(|| not_jmap(NotJmapReason::InvalidSession("no downloadUrl"), None))?;
        let upload_url = template(raw.upload_url)
            .ok_or_else(|| not_jmap(NotJmapReason::InvalidSession("no uploadUrl"), None))?;
        let event_source_url = template(raw.event_source_url);
        let state = match raw.state {
            Some(Value::String(s)) => State::new(s),
            Some(Value::Number(n)) => State::new(n.to_string()),
            _ => State::new(""),
        };
        let accounts = raw
            .accounts
            .unwrap_or_default()
            .into_iter()
            .map(|(id, a)| {
                (
                    AccountId::new(id),
                    Account {
                        name: a.name.unwrap_or_default(),
                        is_personal: a.is_personal.unwrap_or(false),
                        is_read_only: a.is_read_only.unwrap_or(false),
                        account_capabilities: a.account_capabilities.unwrap_or_default(),
                    },
                )
            })
            .collect();
        let primary_accounts = raw
            .primary_accounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(cap, id)| id.map(|id| (cap, AccountId::new(id))))
            .collect();
        Ok(Session {
            url: url.clone(),
            username: raw.username.unwrap_or_default(),
            api_url,
            download_url,
            upload_url,
            event_source_url,
            state,
            capabilities,
            core,
            accounts,
            primary_accounts,
        })
    }

    /// The URL the Session was fetched from (after redirects).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `username`
    pub fn username(&self) -> &str {
        &self.username
    }

    /// `apiUrl`, resolved.
    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// `downloadUrl` template.
    pub fn download_url(&self) -> &UrlTemplate {
        &self.download_url
    }

    /// `uploadUrl` template.
    pub fn upload_url(&self) -> &UrlTemplate {
        &self.upload_url
    }

    /// `eventSourceUrl` template, if the server advertises one.
    pub fn event_source_url(&self) -> Option<&UrlTemplate> {
        self.event_source_url.as_ref()
    }

    /// The Session `state`; compare with a response's `sessionState` to notice changes.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// All server capabilities, raw.
    pub fn capabilities(&self) -> &BTreeMap<String, Value> {
        &self.capabilities
    }

    /// True if the server advertises the capability.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.contains_key(capability)
    }

    /// The core limits.
    pub fn core(&self) -> &CoreCapabilities {
        &self.core
    }

    /// The accounts the user can access.
    pub fn accounts(&self) -> &BTreeMap<AccountId, Account> {
        &self.accounts
    }

    /// One account by id.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// `primaryAccounts`: capability URI → account id.
    pub fn primary_accounts(&self) -> &BTreeMap<String, AccountId> {
        &self.primary_accounts
    }

    /// The primary account for a capability.
    pub fn primary_account(&self, capability: &str) -> Option<&AccountId> {
        self.primary_accounts.get(capability)
    }

    /// The primary mail account: `primaryAccounts[mail]`, else the only account with the
    /// mail capability.
    pub fn mail_account_id(&self) -> Result<AccountId, Error> {
        self.account_for(capability::MAIL)
    }

    /// The account to use for a capability: the primary one, else the first account that has it.
    pub fn account_for(&self, capability: &str) -> Result<AccountId, Error> {
        if let Some(id) = self.primary_account(capability) {
            return Ok(id.clone());
        }
        self.accounts
            .iter()
            .find(|(_, a)| a.has_capability(capability))
            .map(|(id, _)| id.clone())
            .ok_or_else(|| Error::NoAccount {
                capability: capability.to_owned(),
            })
    }

    /// True if the server supports mail (RFC 8621).
    pub fn supports_mail(&self) -> bool {
        self.has_capability(capability::MAIL)
    }

    /// True if the server supports sending (EmailSubmission, Identity).
    pub fn supports_submission(&self) -> bool {
        self.has_capability(capability::SUBMISSION)
    }

    /// True if the server advertises an EventSource URL. It may still refuse to stream
    /// (Cyrus 3.6 answers 204); [`Client::event_source`](crate::Client::event_source) reports that.
    pub fn advertises_event_source(&self) -> bool {
        self.event_source_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:10080/jmap").unwrap()
    }

    #[test]
    fn template_expansion_encodes_and_resolves() {
        let t = UrlTemplate::new(
            "/jmap/download/{accountId}/{blobId}/{name}?accept={type}".into(),
            base(),
        );
        let u = t
            .expand(&[
                ("accountId", "a b"),
                ("blobId", "G1"),
                ("name", "x/y.eml"),
                ("type", "message/rfc822"),
            ])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:10080/jmap/download/a%20b/G1/x%2Fy.eml?accept=message%2Frfc822"
        );
        let abs = UrlTemplate::new("https://other.example/up/{accountId}".into(), base());
        assert_eq!(
            abs.expand(&[("accountId", "u1")]).unwrap().as_str(),
            "https://other.example/up/u1"
        );
        let unclosed = UrlTemplate::new("/x/{oops".into(), base());
        assert!(unclosed.expand(&[]).is_ok());
        let missing = UrlTemplate::new("/x/{a}/{b}".into(), base());
        assert_eq!(missing.expand(&[("a", "1")]).unwrap().path(), "/x/1/");
    }

    #[test]
    fn core_limits_are_never_zero() {
        let c = CoreCapabilities::from_value(
            &serde_json::json!({"maxObjectsInGet": 0, "maxCallsInRequest": "x"}),
        );
        assert_eq!(c.max_objects_in_get, 1);
        assert_eq!(c.max_calls_in_request, 16);
    }
}
