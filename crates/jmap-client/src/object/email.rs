//! The Email object (RFC 8621 §4), its filter, the Email/get body options and Email/import.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SetError;
use crate::id::{AccountId, BlobId, EmailId, MailboxId, State, ThreadId};
use crate::method::{Get, Object, Queryable, null_default};
use crate::request::{Arguments, Call, CreationId, Method, ResultRef, SplitPolicy};
use crate::session::capability;

/// Standard keywords (RFC 8621 §4.1.1, IANA registry).
pub mod keyword {
    /// `$seen`
    pub const SEEN: &str = "$seen";
    /// `$draft`
    pub const DRAFT: &str = "$draft";
    /// `$flagged`
    pub const FLAGGED: &str = "$flagged";
    /// `$answered`
    pub const ANSWERED: &str = "$answered";
    /// `$forwarded`
    pub const FORWARDED: &str = "$forwarded";
    /// `$junk`
    pub const JUNK: &str = "$junk";
    /// `$notjunk`
    pub const NOT_JUNK: &str = "$notjunk";
    /// `$phishing`
    pub const PHISHING: &str = "$phishing";
}

/// An Email. Every property is optional because `/get` returns only the requested ones;
/// unknown and `header:…` properties are kept in [`Email::other`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Email {
    /// `id`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<EmailId>,
    /// `blobId`: the raw RFC 5322 message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_id: Option<BlobId>,
    /// `threadId`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
    /// `mailboxIds`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox_ids: Option<BTreeMap<MailboxId, bool>>,
    /// `keywords` (lower-case on most servers)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<BTreeMap<String, bool>>,
    /// `size` of the raw message in octets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `receivedAt` (a malformed date reads as `None`).
    #[serde(with = "super::date::utc", skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// `messageId`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Vec<String>>,
    /// `inReplyTo`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<Vec<String>>,
    /// `references`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<String>>,
    /// `sender`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Vec<EmailAddress>>,
    /// `from`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<EmailAddress>>,
    /// `to`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<EmailAddress>>,
    /// `cc`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<EmailAddress>>,
    /// `bcc`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bcc: Option<Vec<EmailAddress>>,
    /// `replyTo`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Vec<EmailAddress>>,
    /// `subject`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `sentAt` (the Date header, with its offset).
    #[serde(with = "super::date::offset", skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<FixedOffset>>,
    /// `headers`: all header fields in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<EmailHeader>>,
    /// `bodyStructure`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_structure: Option<EmailBodyPart>,
    /// `bodyValues`: partId → decoded text (when requested with `fetch*BodyValues`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_values: Option<BTreeMap<String, EmailBodyValue>>,
    /// `textBody`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_body: Option<Vec<EmailBodyPart>>,
    /// `htmlBody`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_body: Option<Vec<EmailBodyPart>>,
    /// `attachments`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<EmailBodyPart>>,
    /// `hasAttachment`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_attachment: Option<bool>,
    /// `preview`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Other properties (e.g. `header:List-Id:asText`) and server extensions.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Email {
    /// True if the keyword is set (compared case-insensitively, as keywords are).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keywords.as_ref().is_some_and(|k| {
            k.iter()
                .any(|(name, on)| *on && name.eq_ignore_ascii_case(keyword))
        })
    }

    /// True if the Email is in the mailbox.
    pub fn in_mailbox(&self, mailbox: &MailboxId) -> bool {
        self.mailbox_ids
            .as_ref()
            .is_some_and(|m| m.get(mailbox).copied().unwrap_or(false))
    }

    /// The concatenated decoded text of `textBody` parts whose values were fetched.
    pub fn text_body_text(&self) -> Option<String> {
        let parts = self.text_body.as_ref()?;
        let values = self.body_values.as_ref()?;
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.part_id.as_ref())
            .filter_map(|id| values.get(id))
            .map(|v| v.value.as_str())
            .collect();
        if texts.is_empty() {
            None
        } else {
            Some(texts.concat())
        }
    }
}

impl Object for Email {
    type Id = EmailId;
    const NAME: &'static str = "Email";
    const CAPABILITIES: &'static [&'static str] = &[capability::MAIL];

    fn id(&self) -> Option<&EmailId> {
        self.id.as_ref()
    }
}

impl Queryable for Email {
    type Condition = EmailFilterCondition;
}

/// An address in `from`, `to`, … (`EmailAddress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmailAddress {
    /// The display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address (`""` when the header had a group or was unparsable).
    #[serde(deserialize_with = "null_default")]
    pub email: String,
}

impl EmailAddress {
    /// An address without a display name.
    pub fn new(email: impl Into<String>) -> Self {
        EmailAddress {
            name: None,
            email: email.into(),
        }
    }

    /// An address with a display name.
    pub fn with_name(name: impl Into<String>, email: impl Into<String>) -> Self {
        EmailAddress {
            name: Some(name.into()),
            email: email.into(),
        }
    }
}

/// A raw header field (`EmailHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmailHeader {
    /// The field name as it appears in the message.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// The raw value.
    #[serde(deserialize_with = "null_default")]
    pub value: String,
}

/// A MIME part (`EmailBodyPart`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailBodyPart {
    /// `partId` (null for multipart parts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_id: Option<String>,
    /// `blobId` (null for multipart parts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_id: Option<BlobId>,
    /// `size` of the decoded content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `headers`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<EmailHeader>>,
    /// `name` (file name)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `type` (media type)
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `charset`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// `disposition`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// `cid`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// `language`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Vec<String>>,
    /// `location`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `subParts` (multipart only)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_parts: Option<Vec<EmailBodyPart>>,
    /// Other properties.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl EmailBodyPart {
    /// A part referring to a `bodyValues` entry, for creating an Email.
    pub fn from_value(part_id: impl Into<String>, content_type: impl Into<String>) -> Self {
        EmailBodyPart {
            part_id: Some(part_id.into()),
            content_type: Some(content_type.into()),
            ..Default::default()
        }
    }

    /// A part referring to an uploaded blob (an attachment), for creating an Email.
    pub fn from_blob(
        blob_id: BlobId,
        content_type: impl Into<String>,
        name: Option<String>,
    ) -> Self {
        EmailBodyPart {
            blob_id: Some(blob_id),
            content_type: Some(content_type.into()),
            name,
            disposition: Some("attachment".into()),
            ..Default::default()
        }
    }
}

/// A decoded body value (`EmailBodyValue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailBodyValue {
    /// The decoded text.
    #[serde(deserialize_with = "null_default")]
    pub value: String,
    /// `isEncodingProblem`
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_encoding_problem: bool,
    /// `isTruncated` (cut at `maxBodyValueBytes`)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_truncated: bool,
}

impl EmailBodyValue {
    /// A value for creating an Email.
    pub fn new(value: impl Into<String>) -> Self {
        EmailBodyValue {
            value: value.into(),
            ..Default::default()
        }
    }
}

/// The Email FilterCondition (RFC 8621 §4.4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct EmailFilterCondition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_mailbox: Option<MailboxId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_mailbox_other_than: Option<Vec<MailboxId>>,
    #[serde(skip_serializing_if = "Option::is_none", with = "super::date::utc")]
    pub before: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none", with = "super::date::utc")]
    pub after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_in_thread_have_keyword: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub some_in_thread_have_keyword: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub none_in_thread_have_keyword: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_keyword: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_keyword: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_attachment: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bcc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `[name]` or `[name, value]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
}

impl EmailFilterCondition {
    /// Emails in a mailbox.
    pub fn in_mailbox(mailbox: &MailboxId) -> Self {
        EmailFilterCondition {
            in_mailbox: Some(mailbox.clone()),
            ..Default::default()
        }
    }

    /// Emails with a header (optionally containing a value), e.g. `Message-ID`.
    pub fn header(name: impl Into<String>, value: Option<String>) -> Self {
        let mut h = vec![name.into()];
        h.extend(value);
        EmailFilterCondition {
            header: Some(h),
            ..Default::default()
        }
    }
}

impl Get<Email> {
    /// `bodyProperties`: the properties of each EmailBodyPart returned.
    #[must_use]
    pub fn body_properties<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let v: Vec<String> = properties.into_iter().map(Into::into).collect();
        self.set_extra("bodyProperties", Value::from(v));
        self
    }

    /// `fetchTextBodyValues`
    #[must_use]
    pub fn fetch_text_body_values(mut self, yes: bool) -> Self {
        self.set_extra("fetchTextBodyValues", Value::Bool(yes));
        self
    }

    /// `fetchHTMLBodyValues`
    #[must_use]
    pub fn fetch_html_body_values(mut self, yes: bool) -> Self {
        self.set_extra("fetchHTMLBodyValues", Value::Bool(yes));
        self
    }

    /// `fetchAllBodyValues`
    #[must_use]
    pub fn fetch_all_body_values(mut self, yes: bool) -> Self {
        self.set_extra("fetchAllBodyValues", Value::Bool(yes));
        self
    }

    /// `maxBodyValueBytes`: truncate each body value (`isTruncated` is then set).
    #[must_use]
    pub fn max_body_value_bytes(mut self, max: u64) -> Self {
        self.set_extra("maxBodyValueBytes", Value::from(max));
        self
    }
}

impl Call<Get<Email>> {
    /// Reference to the thread ids of the returned Emails (`/list/*/threadId`).
    pub fn thread_ids(&self) -> ResultRef<Vec<ThreadId>> {
        self.reference("/list/*/threadId")
    }
}

/// One message to import (`EmailImport`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailImportItem {
    /// The uploaded raw message.
    pub blob_id: BlobId,
    /// Mailboxes to put it in (at least one).
    pub mailbox_ids: BTreeMap<MailboxId, bool>,
    /// Keywords to set.
    pub keywords: BTreeMap<String, bool>,
    /// `receivedAt` (the server uses the import time when absent).
    #[serde(skip_serializing_if = "Option::is_none", with = "super::date::utc")]
    pub received_at: Option<DateTime<Utc>>,
}

impl EmailImportItem {
    /// Import a blob into mailboxes.
    pub fn new<'a>(blob_id: BlobId, mailbox_ids: impl IntoIterator<Item = &'a MailboxId>) -> Self {
        EmailImportItem {
            blob_id,
            mailbox_ids: mailbox_ids.into_iter().map(|m| (m.clone(), true)).collect(),
            keywords: BTreeMap::new(),
            received_at: None,
        }
    }

    /// Adds a keyword.
    #[must_use]
    pub fn keyword(mut self, keyword: impl Into<String>) -> Self {
        self.keywords.insert(keyword.into(), true);
        self
    }

    /// Sets `receivedAt`.
    #[must_use]
    pub fn received_at(mut self, at: DateTime<Utc>) -> Self {
        self.received_at = Some(at);
        self
    }
}

/// `Email/import`: turn uploaded RFC 5322 blobs into Emails.
#[derive(Debug, Clone)]
pub struct EmailImport {
    account_id: AccountId,
    if_in_state: Option<State>,
    emails: Vec<(String, EmailImportItem)>,
}

impl EmailImport {
    /// An empty import.
    pub fn new(account_id: &AccountId) -> Self {
        EmailImport {
            account_id: account_id.clone(),
            if_in_state: None,
            emails: Vec::new(),
        }
    }

    /// `ifInState`
    #[must_use]
    pub fn if_in_state(mut self, state: &State) -> Self {
        self.if_in_state = Some(state.clone());
        self
    }

    /// Adds a message; the creation id can be referenced later in the same request.
    pub fn email(&mut self, item: EmailImportItem) -> CreationId<Email> {
        let id = CreationId::generate();
        self.emails.push((id.as_str().to_owned(), item));
        id
    }

    /// Adds a message under a caller-chosen creation id.
    pub fn email_with_id(&mut self, id: &CreationId<Email>, item: EmailImportItem) {
        self.emails.push((id.as_str().to_owned(), item));
    }
}

impl Method for EmailImport {
    type Response = EmailImportResponse;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Email/import")
    }

    fn capabilities() -> &'static [&'static str] {
        &[capability::MAIL]
    }

    fn split_policy() -> SplitPolicy {
        SplitPolicy::Map { field: "emails" }
    }

    fn into_arguments(self) -> Result<Arguments, serde_json::Error> {
        let mut args = Arguments::new();
        args.set("accountId", &self.account_id)?;
        if let Some(s) = &self.if_in_state {
            args.set("ifInState", s)?;
        }
        let emails: serde_json::Map<String, Value> = self
            .emails
            .into_iter()
            .map(|(k, v)| serde_json::to_value(v).map(|v| (k, v)))
            .collect::<Result<_, _>>()?;
        args.set_value("emails", Value::Object(emails));
        Ok(args)
    }
}

/// The response to `Email/import`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailImportResponse {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `oldState` (Cyrus 3.6 omits it)
    #[serde(default)]
    pub old_state: Option<State>,
    /// `newState` (Cyrus 3.6 omits it)
    #[serde(default)]
    pub new_state: Option<State>,
    /// `created`: creation id → `{id, blobId, threadId, size}`.
    #[serde(default, deserialize_with = "null_default")]
    pub created: BTreeMap<String, Email>,
    /// `notCreated` (e.g. `alreadyExists` with `existingId`).
    #[serde(default, deserialize_with = "null_default")]
    pub not_created: BTreeMap<String, SetError>,
}

impl EmailImportResponse {
    /// The imported Email for a creation id.
    pub fn created(&self, id: &CreationId<Email>) -> Option<&Email> {
        self.created.get(id.as_str())
    }

    /// The error for a creation id.
    pub fn not_created(&self, id: &CreationId<Email>) -> Option<&SetError> {
        self.not_created.get(id.as_str())
    }
}
