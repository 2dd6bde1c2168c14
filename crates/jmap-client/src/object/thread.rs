//! The Thread object (RFC 8621 §3).

use serde::{Deserialize, Serialize};

use crate::id::{EmailId, ThreadId};
use crate::method::{Get, Object};
use crate::request::{Call, ResultRef};
use crate::session::capability;

/// A Thread: the Emails of one conversation, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Thread {
    /// `id`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ThreadId>,
    /// `emailIds`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_ids: Option<Vec<EmailId>>,
}

impl Object for Thread {
    type Id = ThreadId;
    const NAME: &'static str = "Thread";
    const CAPABILITIES: &'static [&'static str] = &[capability::MAIL];

    fn id(&self) -> Option<&ThreadId> {
        self.id.as_ref()
    }
}

impl Call<Get<Thread>> {
    /// Reference to all Email ids of the returned Threads, flattened (`/list/*/emailIds`).
    pub fn email_ids(&self) -> ResultRef<Vec<EmailId>> {
        self.reference("/list/*/emailIds")
    }
}
