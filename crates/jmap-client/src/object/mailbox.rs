//! The Mailbox object (RFC 8621 §2) and its role vocabulary.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::id::MailboxId;
use crate::method::{Object, Queryable, Set};
use crate::session::capability;

/// A Mailbox. Properties are optional because `/get` may return a subset and `/set` create
/// sends only what is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mailbox {
    /// `id`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<MailboxId>,
    /// `name`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `parentId` (`None`: top level, or not requested).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MailboxId>,
    /// `role`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<MailboxRole>,
    /// `sortOrder`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<u64>,
    /// `totalEmails`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_emails: Option<u64>,
    /// `unreadEmails`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_emails: Option<u64>,
    /// `totalThreads`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_threads: Option<u64>,
    /// `unreadThreads`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_threads: Option<u64>,
    /// `myRights`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_rights: Option<MailboxRights>,
    /// `isSubscribed`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_subscribed: Option<bool>,
    /// Other properties.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Mailbox {
    /// A new mailbox for `Mailbox/set` create.
    pub fn new(name: impl Into<String>) -> Self {
        Mailbox {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Sets the role.
    #[must_use]
    pub fn with_role(mut self, role: MailboxRole) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets the parent.
    #[must_use]
    pub fn with_parent(mut self, parent: MailboxId) -> Self {
        self.parent_id = Some(parent);
        self
    }
}

impl Object for Mailbox {
    type Id = MailboxId;
    const NAME: &'static str = "Mailbox";
    const CAPABILITIES: &'static [&'static str] = &[capability::MAIL];

    fn id(&self) -> Option<&MailboxId> {
        self.id.as_ref()
    }
}

impl Queryable for Mailbox {
    type Condition = MailboxFilterCondition;
}

impl Set<Mailbox> {
    /// `onDestroyRemoveEmails`: destroy a non-empty mailbox, removing its Emails from it.
    pub fn on_destroy_remove_emails(&mut self, yes: bool) {
        self.argument("onDestroyRemoveEmails", Value::Bool(yes));
    }
}

/// The Mailbox FilterCondition (RFC 8621 §2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MailboxFilterCondition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MailboxId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<MailboxRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_any_role: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_subscribed: Option<bool>,
}

/// `myRights`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct MailboxRights {
    pub may_read_items: bool,
    pub may_add_items: bool,
    pub may_remove_items: bool,
    pub may_set_seen: bool,
    pub may_set_keywords: bool,
    pub may_create_child: bool,
    pub may_rename: bool,
    pub may_delete: bool,
    pub may_submit: bool,
}

/// A mailbox role (IANA "IMAP Mailbox Name Attributes", lower-case in JMAP).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum MailboxRole {
    Inbox,
    Drafts,
    Sent,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
    Important,
    Subscribed,
    Snoozed,
    Scheduled,
    Memos,
    /// Any other role, kept verbatim.
    Other(String),
}

impl MailboxRole {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            MailboxRole::Inbox => "inbox",
            MailboxRole::Drafts => "drafts",
            MailboxRole::Sent => "sent",
            MailboxRole::Trash => "trash",
            MailboxRole::Junk => "junk",
            MailboxRole::Archive => "archive",
            MailboxRole::All => "all",
            MailboxRole::Flagged => "flagged",
            MailboxRole::Important => "important",
            MailboxRole::Subscribed => "subscribed",
            MailboxRole::Snoozed => "snoozed",
            MailboxRole::Scheduled => "scheduled",
            MailboxRole::Memos => "memos",
            MailboxRole::Other(s) => s,
        }
    }

    /// Parses a role case-insensitively.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "inbox" => MailboxRole::Inbox,
            "drafts" => MailboxRole::Drafts,
            "sent" => MailboxRole::Sent,
            "trash" => MailboxRole::Trash,
            "junk" => MailboxRole::Junk,
            "archive" => MailboxRole::Archive,
            "all" => MailboxRole::All,
            "flagged" => MailboxRole::Flagged,
            "important" => MailboxRole::Important,
            "subscribed" => MailboxRole::Subscribed,
            "snoozed" => MailboxRole::Snoozed,
            "scheduled" => MailboxRole::Scheduled,
            "memos" => MailboxRole::Memos,
            _ => MailboxRole::Other(s.to_owned()),
        }
    }
}

impl fmt::Display for MailboxRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MailboxRole {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MailboxRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(MailboxRole::parse(&s))
    }
}
