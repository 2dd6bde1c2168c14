//! The EmailSubmission object (RFC 8621 §7) and `EmailSubmission/set` with
//! `onSuccessUpdateEmail` / `onSuccessDestroyEmail`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::Error;
use crate::id::{BlobId, EmailId, IdentityId, SubmissionId, ThreadId};
use crate::method::{Object, Patch, Set, SetResponse};
use crate::object::email::Email;
use crate::request::{Call, CreationId, Response};
use crate::session::capability;

/// An EmailSubmission: a request to send an Email.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailSubmission {
    /// `id`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<SubmissionId>,
    /// `identityId`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<IdentityId>,
    /// `emailId` (may be a creation reference `#…` of an Email created earlier in the request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_id: Option<EmailId>,
    /// `threadId`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
    /// `envelope` (the server derives it from the headers when absent)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// `sendAt`
    #[serde(with = "super::date::utc", skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// `undoStatus`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_status: Option<UndoStatus>,
    /// `deliveryStatus`: recipient → status (Cyrus 3.6: null)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<BTreeMap<String, DeliveryStatus>>,
    /// `dsnBlobIds`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsn_blob_ids: Option<Vec<BlobId>>,
    /// `mdnBlobIds`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdn_blob_ids: Option<Vec<BlobId>>,
    /// Other properties.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl EmailSubmission {
    /// A submission of `email_id` (or `creation.reference()`) as `identity_id`.
    pub fn new(identity_id: IdentityId, email_id: EmailId) -> Self {
        EmailSubmission {
            identity_id: Some(identity_id),
            email_id: Some(email_id),
            ..Default::default()
        }
    }

    /// Sets an explicit SMTP envelope.
    #[must_use]
    pub fn with_envelope(mut self, envelope: Envelope) -> Self {
        self.envelope = Some(envelope);
        self
    }
}

impl Object for EmailSubmission {
    type Id = SubmissionId;
    const NAME: &'static str = "EmailSubmission";
    const CAPABILITIES: &'static [&'static str] = &[capability::MAIL, capability::SUBMISSION];

    fn id(&self) -> Option<&SubmissionId> {
        self.id.as_ref()
    }
}

/// The SMTP envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Envelope {
    /// `mailFrom`
    pub mail_from: SubmissionAddress,
    /// `rcptTo`
    pub rcpt_to: Vec<SubmissionAddress>,
}

impl Envelope {
    /// An envelope from one address to several.
    pub fn new<I, S>(mail_from: impl Into<String>, rcpt_to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Envelope {
            mail_from: SubmissionAddress::new(mail_from),
            rcpt_to: rcpt_to.into_iter().map(SubmissionAddress::new).collect(),
        }
    }
}

/// An envelope address with optional SMTP parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubmissionAddress {
    /// The address.
    pub email: String,
    /// SMTP parameters (`null` values for parameters without a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, Option<String>>>,
}

impl SubmissionAddress {
    /// An address without parameters.
    pub fn new(email: impl Into<String>) -> Self {
        SubmissionAddress {
            email: email.into(),
            parameters: None,
        }
    }
}

/// `deliveryStatus` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeliveryStatus {
    /// `smtpReply`
    pub smtp_reply: String,
    /// `delivered`: `queued`, `yes`, `no` or `unknown`.
    pub delivered: String,
    /// `displayed`: `unknown` or `yes`.
    pub displayed: String,
}

/// `undoStatus`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UndoStatus {
    /// `pending`: may still be canceled.
    Pending,
    /// `final`: sent.
    Final,
    /// `canceled`
    Canceled,
    /// Any other value.
    Other(String),
}

impl UndoStatus {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            UndoStatus::Pending => "pending",
            UndoStatus::Final => "final",
            UndoStatus::Canceled => "canceled",
            UndoStatus::Other(s) => s,
        }
    }
}

impl fmt::Display for UndoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for UndoStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UndoStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "pending" => UndoStatus::Pending,
            "final" => UndoStatus::Final,
            "canceled" => UndoStatus::Canceled,
            _ => UndoStatus::Other(s),
        })
    }
}

/// Names a submission in `onSuccessUpdateEmail`/`onSuccessDestroyEmail`: one created in the
/// same call (`#creationId`) or an existing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRef(String);

impl From<&CreationId<EmailSubmission>> for SubmissionRef {
    fn from(c: &CreationId<EmailSubmission>) -> Self {
        SubmissionRef(format!("#{}", c.as_str()))
    }
}

impl From<&SubmissionId> for SubmissionRef {
    fn from(id: &SubmissionId) -> Self {
        SubmissionRef(id.as_str().to_owned())
    }
}

impl Set<EmailSubmission> {
    /// `onSuccessUpdateEmail`: patch the submitted Email when the submission succeeds (e.g.
    /// move Drafts → Sent and clear `$draft`). The server answers with an implicit
    /// `Email/set`; read it with [`Response::take_on_success_email_set`].
    pub fn on_success_update_email(&mut self, submission: impl Into<SubmissionRef>, patch: Patch) {
        let key = submission.into().0;
        let entry = self
            .extra_mut()
            .entry("onSuccessUpdateEmail")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(m) = entry {
            m.insert(key, Value::Object(patch.as_map().clone()));
        }
    }

    /// `onSuccessDestroyEmail`: destroy the submitted Email when the submission succeeds.
    pub fn on_success_destroy_email(&mut self, submission: impl Into<SubmissionRef>) {
        let key = submission.into().0;
        let entry = self
            .extra_mut()
            .entry("onSuccessDestroyEmail")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(Value::String(key));
        }
    }
}

impl Response {
    /// The implicit `Email/set` response the server produces for `onSuccessUpdateEmail` /
    /// `onSuccessDestroyEmail` (`Ok(None)` if there is none, e.g. the submission failed).
    pub fn take_on_success_email_set(
        &mut self,
        call: &Call<Set<EmailSubmission>>,
    ) -> Result<Option<SetResponse<Email>>, Error> {
        self.take_implicit::<Set<EmailSubmission>, Set<Email>>(call)
    }
}
