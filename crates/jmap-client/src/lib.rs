//! A typed JMAP client (RFC 8620 core, RFC 8621 mail and submission, EventSource push).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod blob;
mod client;
mod dns;
pub mod error;
pub mod id;
pub mod method;
pub mod object;
mod pager;
pub mod push;
pub mod request;
pub mod session;
mod transport;

pub use blob::UploadResponse;
pub use client::{Client, ClientBuilder};
pub use error::{
    Error, MethodError, MethodErrorType, NotJmapReason, ProblemDetails, ProblemType, PushUnavailableReason,
    SetError, SetErrorType, SetOperation, TransportError, TransportErrorKind,
};
pub use id::{AccountId, BlobId, EmailId, Id, IdentityId, JmapId, MailboxId, State, SubmissionId, ThreadId};
pub use method::{
    Changes, ChangesResponse, Comparator, Filter, Get, GetResponse, Object, Patch, Query, QueryChanges,
    QueryChangesResponse, QueryResponse, Queryable, Set, SetResponse,
};
pub use object::email::{
    Email, EmailAddress, EmailBodyPart, EmailBodyValue, EmailFilterCondition, EmailHeader, EmailImport,
    EmailImportItem, EmailImportResponse, keyword,
};
pub use object::identity::Identity;
pub use object::mailbox::{Mailbox, MailboxFilterCondition, MailboxRights, MailboxRole};
pub use object::snippet::{SearchSnippet, SearchSnippetGet, SearchSnippetGetResponse};
pub use object::submission::{DeliveryStatus, EmailSubmission, Envelope, SubmissionAddress, UndoStatus};
pub use object::thread::Thread;
pub use pager::{ChangesPage, ChangesPager, QueryPage, QueryPager};
pub use push::{PushConfig, PushEvent, PushStream, StateChange};
pub use request::{Arg, Call, CreationId, Method, RequestBuilder, Response, ResultRef};
pub use session::{Account, CoreCapabilities, Session, UrlTemplate, capability};
pub use transport::Credentials;
