//! A typed JMAP client: RFC 8620 (core), RFC 8621 (mail, submission), and push over
//! EventSource or WebSocket (RFC 8887).
//!
//! The crate stands alone: no database, no other crate of the mailsync workspace, and no
//! spawned tasks (push is a [`Stream`](futures::Stream) the caller drives). TLS is rustls
//! with the *ring* provider and the platform verifier, configured explicitly, so the crate
//! needs no process-wide crypto provider.
//!
//! # Example
//!
//! ```no_run
//! use mailsync_jmap_client::*;
//!
//! # async fn example() -> Result<(), Error> {
//! let client = Client::builder()
//!     .credentials(Credentials::basic("alice", "secret"))
//!     .discover("alice@example.org") // SRV, then https://example.org/.well-known/jmap
//!     .await?;
//! let account = client.mail_account_id()?;
//!
//! // One HTTP request: the query, and the Emails it found through a back-reference.
//! let mut req = client.request();
//! let query = req.call(
//!     Query::<Email>::new(&account)
//!         .filter(EmailFilterCondition { has_keyword: Some(keyword::FLAGGED.into()), ..Default::default() })
//!         .sort([Comparator::descending("receivedAt")])
//!         .limit(50),
//! );
//! let get = req.call(Get::<Email>::new(&account).ids(query.ids()).properties(["subject", "keywords"]));
//! let mut resp = client.send(req).await?;
//! let state = resp.take(&get)?.state; // typed by handle, not by position
//!
//! // Later: what changed, with the created and updated Emails in the same request.
//! let mut changes = ChangesPager::<Email>::new(&client, &account, &state)
//!     .max_changes(256)
//!     .fetch_created(Get::new(&account).properties(["subject", "mailboxIds", "keywords"]))
//!     .fetch_updated(Get::new(&account).properties(["mailboxIds", "keywords"]));
//! while let Some(page) = changes.next_page().await? {
//!     println!("{} new, {} updated, {} gone", page.created.len(), page.updated.len(), page.changes.destroyed.len());
//! }
//!
//! // Mark one as read, only if nothing changed meanwhile.
//! let mut set = Set::<Email>::new(&account).if_in_state(changes.state());
//! set.update(&EmailId::new("M123"), Patch::new().keyword(keyword::SEEN, true));
//! match client.call(set).await {
//!     Err(e) if e.method_error_type() == Some(MethodErrorType::StateMismatch) => { /* resync */ }
//!     other => { other?.check()?; }
//! }
//! # Ok(()) }
//! ```
//!
//! Requests can be built and inspected without a server:
//!
//! ```
//! use mailsync_jmap_client::*;
//!
//! let account = AccountId::new("u1");
//! let mut req = RequestBuilder::new();
//! let changes = req.call(Changes::<Email>::new(&account, &State::new("42")).max_changes(100));
//! req.call(Get::<Email>::new(&account).ids(changes.created()));
//! let json = req.to_json().unwrap();
//! assert_eq!(json["methodCalls"][1][1]["#ids"]["path"], "/created");
//! assert_eq!(req.using(), ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]);
//! ```
//!
//! # Building requests
//!
//! [`RequestBuilder::call`] adds a method call and returns a [`Call`] handle. Handles give
//! typed result references ([`ResultRef`]): `query.ids()` (`/ids`), `changes.created()` /
//! `updated()` (`/created`, `/updated`), `get.list_ids()` (`/list/*/id`),
//! `email_get.thread_ids()` (`/list/*/threadId`), `thread_get.email_ids()`
//! (`/list/*/emailIds`), or [`Call::reference`] for any pointer. A `ResultRef<Vec<EmailId>>`
//! only fits where email ids are expected. `/set` and `Email/import` return a
//! [`CreationId`] per created object; its [`reference`](CreationId::reference) (`#id`) can
//! be used by later calls of the same request. `using` is computed from the calls present
//! (submission only when a submission or identity call is there).
//!
//! [`Client::send`] respects the server's limits transparently:
//! * an id list above `maxObjectsInGet` becomes several `/get` calls whose responses are
//!   merged; `create`/`update`/`destroy` above `maxObjectsInSet` become several `/set` calls,
//!   chained by `#ifInState` back-references when `ifInState` was given, so nothing after
//!   a failing piece is applied;
//! * more calls than `maxCallsInRequest` (or a body above `maxSizeRequest`) are sent as
//!   several HTTP requests; back-references into an earlier HTTP request are resolved on
//!   the client, creation ids travel in `createdIds`;
//! * a `/get` whose back-reference the server resolved to too many ids (`requestTooLarge`)
//!   is retried once with the reference resolved and split on the client.
//!
//! [`ClientBuilder::max_objects_in_get`] and friends lower the limits further. Uploads are
//! checked against `maxSizeUpload` and limited to `maxConcurrentUpload` at a time.
//!
//! Responses are taken by handle: [`Response::take`] gives the typed response or the
//! call's method error. The implicit `Email/set` of `EmailSubmission/set` with
//! `onSuccessUpdateEmail`/`onSuccessDestroyEmail` is read with
//! [`Response::take_on_success_email_set`].
//!
//! # Error model
//!
//! Every failure is an [`Error`] carrying typed facts, never a flattened string:
//!
//! | Variant | Meaning | Typical handling |
//! |---|---|---|
//! | [`Error::Transport`] (kind `Connect`, `Tls`, `Timeout`, `Body`, `Protocol`, …) | no usable HTTP exchange | offline / retry with backoff; `Tls` needs the user |
//! | [`Error::Unauthorized`] | HTTP 401 | ask for credentials |
//! | [`Error::Http`] `{ status, problem, retry_after }` | request-level error, with RFC 7807 [`ProblemDetails`] (`urn:ietf:params:jmap:error:limit`, `notJSON`, …) | 429/503: retry after `retry_after`; `limit`: split |
//! | [`Error::NotJmap`] `{ reason }` | the URL is not a JMAP Session (HTML page, 404, JSON that is not a Session) | configuration problem |
//! | [`Error::Method`] ([`MethodError`] with [`MethodErrorType`]) | a method-level error; unknown types are `ServerFail` (RFC 8620 §3.6.2) with the original name kept in `type_name` | `stateMismatch`, `cannotCalculateChanges`: resync; `serverUnavailable`: retry |
//! | [`Error::SetItem`] `{ operation, id, error }` | one `notCreated`/`notUpdated`/`notDestroyed` entry ([`SetError`] with [`SetErrorType`] and `properties`), from [`SetResponse::check`] / [`SetResponse::created_or_error`] | per item |
//! | [`Error::PushUnavailable`] | no EventSource push (e.g. Cyrus 3.6 answers 204) | poll instead |
//! | [`Error::StateNotAdvancing`] | a `/changes` loop made no progress (server bug) | full resync |
//! | [`Error::Decode`] | the server sent JSON that does not fit the expected type | report; never a panic |
//! | [`Error::InsecureUrl`], [`Error::InvalidUrl`], [`Error::Config`], [`Error::UploadTooLarge`], [`Error::Io`], [`Error::NoAccount`], … | local refusals and I/O | fix the input |
//!
//! Per-item set failures are *not* errors of the call: a `/set` response is `Ok` and lists
//! them in `not_created`/`not_updated`/`not_destroyed` (servers that send `null` maps, like
//! Cyrus, read as empty).
//!
//! # Security
//!
//! Plain `http://` is refused unless the host is loopback or the builder opted in with
//! [`ClientBuilder::allow_insecure_http`]; redirects to refused URLs fail too. Credentials
//! are sent as sensitive headers and never logged (`Debug` of [`Credentials`] redacts them).
//!
//! # Push
//!
//! [`Client::event_source`] returns a [`PushStream`] of [`PushEvent`]s: `Connected` (after
//! every (re)connection: synchronise once), `StateChange`, and `Disconnected` with the
//! backoff before the next attempt. A connection without data for `missed_pings + 1` ping
//! intervals is declared dead and reopened with `Last-Event-ID`. Errors that will not go
//! away end the stream: [`Error::PushUnavailable`] (Cyrus 3.6 in Debian has no EventSource
//! support and answers 204), [`Error::Unauthorized`]. Because no server of the test setup
//! streams events, the stream is tested against a spec-following SSE endpoint scripted
//! inside the test suite (`tests/it/http.rs`), and against Cyrus only for the 204 case.
//!
//! [`Client::web_socket_push`] gives the same events over the JMAP WebSocket subprotocol
//! (RFC 8887) where the Session's `urn:ietf:params:jmap:websocket` capability has
//! `supportsPush`: subprotocol `jmap` with the client's credentials on the upgrade,
//! `WebSocketPushEnable` with the data types and, on reconnection, the last `pushState`
//! received; WebSocket pings watch a quiet connection. [`Client::push`] picks WebSocket
//! where offered, else EventSource. Only push goes over the WebSocket (requests stay on
//! HTTP). Tested against the engine's scripted JMAP server (Cyrus 3.6 offers neither).
//!
//! # Supported and not supported
//!
//! Supported: discovery (DNS SRV `_jmap._tcp`, `/.well-known/jmap` with redirects, or a
//! Session URL), the whole Session (URL templates resolved against the Session URL,
//! capabilities, limits, accounts), Basic and Bearer auth; `Mailbox/get|changes|set`
//! (and `/query`), `Email/get|changes|query|queryChanges|set|import`,
//! `Thread/get|changes`, `Identity/get`, `EmailSubmission/get|changes|set` with
//! `onSuccessUpdateEmail`/`onSuccessDestroyEmail`, `SearchSnippet/get`; streaming blob
//! upload and download; EventSource and WebSocket push. Other methods can be added by implementing
//! [`Method`] (and [`method::Object`] for new data types).
//!
//! Not supported: JMAP requests over WebSocket (RFC 8887 is used for push only),
//! PushSubscription (web push), `/copy`
//! methods, `Blob/copy`, VacationResponse/MDN/Sieve/contacts/calendars as typed objects
//! (usable through a custom [`Method`]), OAuth token acquisition (pass a bearer token),
//! HTTP/2, and HTTP proxies (connections are direct). DNS SRV lookup uses the
//! `/etc/resolv.conf` name servers over UDP only.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod blob;
mod client;
mod dns;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod method;
pub mod object;
mod pager;
pub mod push;
pub mod request;
mod search;
pub mod session;
mod transport;

pub use blob::UploadResponse;
pub use client::{Client, ClientBuilder};
pub use error::{
    Error, MethodError, MethodErrorType, NotJmapReason, ProblemDetails, ProblemType,
    PushUnavailableReason, SetError, SetErrorType, SetOperation, TransportError,
    TransportErrorKind,
};
pub use id::{
    AccountId, BlobId, EmailId, Id, IdentityId, JmapId, MailboxId, State, SubmissionId, ThreadId,
};
pub use method::{
    Changes, ChangesResponse, Comparator, Filter, Get, GetResponse, Object, Patch, Query,
    QueryChanges, QueryChangesResponse, QueryResponse, Queryable, Set, SetResponse,
};
pub use object::email::{
    Email, EmailAddress, EmailBodyPart, EmailBodyValue, EmailFilterCondition, EmailHeader,
    EmailImport, EmailImportItem, EmailImportResponse, keyword,
};
pub use object::identity::Identity;
pub use object::mailbox::{Mailbox, MailboxFilterCondition, MailboxRights, MailboxRole};
pub use object::snippet::{SearchSnippet, SearchSnippetGet, SearchSnippetGetResponse};
pub use object::submission::{
    DeliveryStatus, EmailSubmission, Envelope, SubmissionAddress, SubmissionRef, UndoStatus,
};
pub use object::thread::Thread;
pub use pager::{ChangesPage, ChangesPager, QueryCursor, QueryPage, QueryPager};
pub use push::{PushConfig, PushEvent, PushStream, StateChange};
pub use request::{
    Arg, Arguments, Call, CreationId, Method, RequestBuilder, Response, ResultRef, SplitPolicy,
};
pub use search::EmailSearch;
pub use session::{
    Account, CoreCapabilities, MailAccountCapabilities, Session, SubmissionAccountCapabilities,
    UrlTemplate, capability,
};
pub use transport::Credentials;
