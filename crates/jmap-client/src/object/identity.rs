//! The Identity object (RFC 8621 §6): who the user may send as.

use serde::{Deserialize, Serialize};

use crate::id::IdentityId;
use crate::method::Object;
use crate::object::email::EmailAddress;
use crate::session::capability;

/// An Identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Identity {
    /// `id`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<IdentityId>,
    /// `name` (display name)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `email` (Cyrus 3.6 returns `""`)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `replyTo`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Vec<EmailAddress>>,
    /// `bcc`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bcc: Option<Vec<EmailAddress>>,
    /// `textSignature`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_signature: Option<String>,
    /// `htmlSignature`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_signature: Option<String>,
    /// `mayDelete`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_delete: Option<bool>,
}

impl Object for Identity {
    type Id = IdentityId;
    const NAME: &'static str = "Identity";
    const CAPABILITIES: &'static [&'static str] = &[capability::SUBMISSION];

    fn id(&self) -> Option<&IdentityId> {
        self.id.as_ref()
    }
}
