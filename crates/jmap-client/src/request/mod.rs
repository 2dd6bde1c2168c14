//! Building JMAP requests (many method calls, typed result references, creation ids) and
//! reading responses by call handle.

pub(crate) mod exec;
pub(crate) mod pointer;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, MethodError};
use crate::id::State;
use crate::session::capability;

/// A JMAP method call: its name, the capabilities it needs, its arguments, and the type
/// of its successful response.
///
/// Implemented by every method type of this crate; implement it for a method this crate
/// does not cover (e.g. `VacationResponse/get`).
pub trait Method {
    /// The decoded successful response.
    type Response: DeserializeOwned;

    /// The method name, e.g. `Email/get`.
    fn name() -> Cow<'static, str>;

    /// Capability URIs the call needs in `using` (besides `urn:ietf:params:jmap:core`).
    fn capabilities() -> &'static [&'static str];

    /// How the client may split the call when it exceeds the server's limits.
    fn split_policy() -> SplitPolicy {
        SplitPolicy::None
    }

    /// The call's arguments.
    fn into_arguments(self) -> Result<Arguments, serde_json::Error>;
}

/// How an oversized call is split into several calls (and their responses merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitPolicy {
    /// Never split.
    None,
    /// A `/get`-like call: the id list in `field` is cut at `maxObjectsInGet`; responses are
    /// merged by concatenating `list` and `notFound`, keeping the first piece's `state`.
    Ids {
        /// The argument holding the ids (`ids`, or `emailIds` for SearchSnippet/get).
        field: &'static str,
    },
    /// A `/set` call: `create`, `update` and `destroy` are cut at `maxObjectsInSet` (in that
    /// order). With `ifInState`, each piece after the first is chained to the previous piece's
    /// `newState` by a result reference, so nothing after a failing piece is applied.
    Set,
    /// A call whose map argument `field` is cut at `maxObjectsInSet` (Email/import `emails`);
    /// `created`/`notCreated` are merged.
    Map {
        /// The argument holding the map.
        field: &'static str,
    },
}

/// The arguments object of a method call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arguments(Map<String, Value>);

impl Arguments {
    /// Empty arguments.
    pub fn new() -> Self {
        Arguments(Map::new())
    }

    /// Arguments from a serialisable struct (it must serialise to a JSON object).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        match serde_json::to_value(value)? {
            Value::Object(map) => Ok(Arguments(map)),
            _ => Err(serde::ser::Error::custom(
                "method arguments must be a JSON object",
            )),
        }
    }

    /// Sets an argument.
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.0.insert(name.to_owned(), serde_json::to_value(value)?);
        Ok(())
    }

    /// Sets an argument that may be a result reference (stored as `#name`).
    pub fn set_arg<T: Serialize>(
        &mut self,
        name: &str,
        arg: &Arg<T>,
    ) -> Result<(), serde_json::Error> {
        match arg {
            Arg::Value(v) => self.set(name, v),
            Arg::Ref(r) => self.set(&format!("#{name}"), r),
        }
    }

    /// Sets a raw JSON argument.
    pub fn set_value(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_owned(), value);
    }

    /// The arguments as a JSON map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Unwraps into the JSON map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// The handle of a call added to a [`RequestBuilder`]; use it to build result references and
/// to take the call's typed response from the [`Response`].
pub struct Call<M> {
    id: String,
    _method: PhantomData<fn() -> M>,
}

impl<M> Clone for Call<M> {
    fn clone(&self) -> Self {
        Call {
            id: self.id.clone(),
            _method: PhantomData,
        }
    }
}

impl<M: Method> fmt::Debug for Call<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Call({} {})", M::name(), self.id)
    }
}

impl<M: Method> Call<M> {
    /// The call id (`c0`, `c1`, … in request order).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An untyped escape hatch: a reference to any JSON pointer of this call's response,
    /// typed as `T` by the caller.
    pub fn reference<T>(&self, path: impl Into<Cow<'static, str>>) -> ResultRef<T> {
        ResultRef::new(self.id.clone(), M::name().into_owned(), path.into())
    }
}

/// A typed result reference (RFC 8620 §3.7): "the value at `path` in the response of call
/// `result_of`", usable where an argument of type `T` is expected.
pub struct ResultRef<T> {
    result_of: String,
    name: String,
    path: Cow<'static, str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> ResultRef<T> {
    pub(crate) fn new(result_of: String, name: String, path: Cow<'static, str>) -> Self {
        ResultRef {
            result_of,
            name,
            path,
            _type: PhantomData,
        }
    }

    /// The referenced call id.
    pub fn result_of(&self) -> &str {
        &self.result_of
    }

    /// The referenced method name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JSON pointer.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl<T> Clone for ResultRef<T> {
    fn clone(&self) -> Self {
        ResultRef::new(self.result_of.clone(), self.name.clone(), self.path.clone())
    }
}

impl<T> fmt::Debug for ResultRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResultRef({} {} {})",
            self.result_of, self.name, self.path
        )
    }
}

impl<T> Serialize for ResultRef<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("resultOf", &self.result_of)?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("path", &self.path)?;
        m.end()
    }
}

/// An argument given either as a value or as a result reference.
#[derive(Debug, Clone)]
pub enum Arg<T> {
    /// A literal value.
    Value(T),
    /// A back-reference to an earlier call's result.
    Ref(ResultRef<T>),
}

impl<T> From<T> for Arg<T> {
    fn from(v: T) -> Self {
        Arg::Value(v)
    }
}

impl<T> From<ResultRef<T>> for Arg<T> {
    fn from(r: ResultRef<T>) -> Self {
        Arg::Ref(r)
    }
}

impl<T> From<&ResultRef<T>> for Arg<T> {
    fn from(r: &ResultRef<T>) -> Self {
        Arg::Ref(r.clone())
    }
}

static NEXT_CREATION_ID: AtomicU64 = AtomicU64::new(0);

/// A creation id (RFC 8620 §5.3) for an object of type `O` created by a `/set` (or
/// Email/import) call. Later calls of the same request refer to the new object with
/// [`CreationId::reference`] (`#id`).
pub struct CreationId<O> {
    id: String,
    _object: PhantomData<fn() -> O>,
}

impl<O> CreationId<O> {
    /// A fresh creation id, unique within the process (`k0`, `k1`, …).
    pub fn generate() -> Self {
        let n = NEXT_CREATION_ID.fetch_add(1, Ordering::Relaxed);
        Self::named(format!("k{n}"))
    }

    /// A caller-chosen creation id (must be unique within the request; useful as an
    /// idempotency key the caller persists).
    pub fn named(id: impl Into<String>) -> Self {
        CreationId {
            id: id.into(),
            _object: PhantomData,
        }
    }

    /// The creation id without `#`.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl<O: crate::method::Object> CreationId<O> {
    /// The `#id` form, usable wherever an id of the new object is expected in a later call
    /// of the same request (e.g. `emailId` of an EmailSubmission, a key of `mailboxIds`).
    pub fn reference(&self) -> O::Id {
        O::Id::from(format!("#{}", self.id))
    }
}

impl<O> Clone for CreationId<O> {
    fn clone(&self) -> Self {
        CreationId::named(self.id.clone())
    }
}

impl<O> fmt::Debug for CreationId<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CreationId({})", self.id)
    }
}

impl<O> PartialEq for CreationId<O> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<O> Eq for CreationId<O> {}

#[derive(Debug, Clone)]
pub(crate) struct PendingCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) args: Map<String, Value>,
    pub(crate) capabilities: &'static [&'static str],
    pub(crate) split: SplitPolicy,
}

/// Collects method calls for one logical JMAP request.
///
/// [`Client::send`](crate::Client::send) sends it, transparently splitting it into several
/// HTTP requests (and oversized calls into several calls) to respect the server's limits.
#[derive(Debug, Default)]
pub struct RequestBuilder {
    calls: Vec<PendingCall>,
    error: Option<serde_json::Error>,
}

impl RequestBuilder {
    /// An empty request.
    pub fn new() -> Self {
        RequestBuilder::default()
    }

    /// Adds a method call and returns its handle.
    ///
    /// A call whose arguments cannot be serialised makes [`Client::send`](crate::Client::send)
    /// fail with [`Error::Encode`].
    pub fn call<M: Method>(&mut self, method: M) -> Call<M> {
        let id = format!("c{}", self.calls.len());
        let args = match method.into_arguments() {
            Ok(a) => a.into_map(),
            Err(e) => {
                self.error.get_or_insert(e);
                Map::new()
            }
        };
        self.calls.push(PendingCall {
            id: id.clone(),
            name: M::name().into_owned(),
            args,
            capabilities: M::capabilities(),
            split: M::split_policy(),
        });
        Call {
            id,
            _method: PhantomData,
        }
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True if no call was added.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The `using` list: core plus the capabilities of the calls present.
    pub fn using(&self) -> Vec<&'static str> {
        using_for(self.calls.iter())
    }

    /// The request as it would be sent if no splitting were needed (for logging and tests).
    pub fn to_json(&self) -> Result<Value, Error> {
        if let Some(e) = &self.error {
            return Err(Error::Encode(serde::ser::Error::custom(e.to_string())));
        }
        Ok(exec::request_body(&self.calls, &Map::new()))
    }

    pub(crate) fn into_calls(self) -> Result<Vec<PendingCall>, Error> {
        match self.error {
            Some(e) => Err(Error::Encode(e)),
            None => Ok(self.calls),
        }
    }
}

pub(crate) fn using_for<'a>(calls: impl Iterator<Item = &'a PendingCall>) -> Vec<&'static str> {
    let mut set = BTreeSet::new();
    set.insert(capability::CORE);
    for c in calls {
        set.extend(c.capabilities.iter().copied());
    }
    set.into_iter().collect()
}

/// The responses of a sent request, taken by call handle.
#[derive(Debug, Default)]
pub struct Response {
    results: HashMap<String, Vec<(String, Value)>>,
    session_state: Option<State>,
    created_ids: BTreeMap<String, String>,
    http_requests: usize,
}

impl Response {
    pub(crate) fn new(
        results: HashMap<String, Vec<(String, Value)>>,
        session_state: Option<State>,
        created_ids: BTreeMap<String, String>,
        http_requests: usize,
    ) -> Self {
        Response {
            results,
            session_state,
            created_ids,
            http_requests,
        }
    }

    /// Builds a response from an API response body (`{"methodResponses": …}`), e.g. to
    /// replay a recorded exchange in tests. Responses are keyed by their call ids, so take
    /// them with the handles of a [`RequestBuilder`] built the same way.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let api: exec::ApiResponse =
            serde_json::from_slice(body).map_err(|e| Error::decode("API response", e))?;
        let mut results: HashMap<String, Vec<(String, Value)>> = HashMap::new();
        for (name, args, id) in api.method_responses {
            results.entry(id).or_default().push((name, args));
        }
        Ok(Response::new(
            results,
            api.session_state,
            api.created_ids.unwrap_or_default(),
            1,
        ))
    }

    /// Takes the typed response of a call. A method-level error becomes [`Error::Method`];
    /// taking the same call twice gives [`Error::MissingResponse`].
    pub fn take<M: Method>(&mut self, call: &Call<M>) -> Result<M::Response, Error> {
        let name = M::name();
        let args = self.take_part(&call.id, &name)?;
        serde_json::from_value(args).map_err(|e| Error::decode(name.into_owned(), e))
    }

    /// Takes a call's response as raw JSON (after the same error handling as [`Response::take`]).
    pub fn take_raw<M: Method>(&mut self, call: &Call<M>) -> Result<Value, Error> {
        self.take_part(&call.id, &M::name())
    }

    /// Takes an additional response of another method that the server produced for a call
    /// (e.g. the implicit `Email/set` of `EmailSubmission/set` with `onSuccessUpdateEmail`).
    /// `Ok(None)` if there is none. Take the call's own response first: a remaining `error`
    /// response for the call is reported as the implicit call's failure.
    pub fn take_implicit<M: Method, N: Method>(
        &mut self,
        call: &Call<M>,
    ) -> Result<Option<N::Response>, Error> {
        let name = N::name();
        let Some(parts) = self.results.get_mut(&call.id) else {
            return Ok(None);
        };
        let Some(pos) = parts.iter().position(|(n, _)| *n == name || n == "error") else {
            return Ok(None);
        };
        let (n, args) = parts.remove(pos);
        if n == "error" {
            return Err(Error::Method(Box::new(MethodError::from_arguments(
                &name, &call.id, &args,
            ))));
        }
        serde_json::from_value(args)
            .map(Some)
            .map_err(|e| Error::decode(name.into_owned(), e))
    }

    fn take_part(&mut self, id: &str, name: &str) -> Result<Value, Error> {
        let missing = || Error::MissingResponse {
            call_id: id.to_owned(),
            method: name.to_owned(),
        };
        let parts = self.results.get_mut(id).ok_or_else(missing)?;
        let pos = parts
            .iter()
            .position(|(n, _)| n == name || n == "error")
            .ok_or_else(missing)?;
        let (n, args) = parts.remove(pos);
        if n == "error" {
            return Err(Error::Method(Box::new(MethodError::from_arguments(
                name, id, &args,
            ))));
        }
        Ok(args)
    }

    /// The `sessionState` of the (last) HTTP response.
    pub fn session_state(&self) -> Option<&State> {
        self.session_state.as_ref()
    }

    /// Creation id → server id for every object created by this request.
    pub fn created_ids(&self) -> &BTreeMap<String, String> {
        &self.created_ids
    }

    /// The server id assigned to a creation id, if it was created.
    pub fn created_id<O: crate::method::Object>(&self, creation: &CreationId<O>) -> Option<O::Id> {
        self.created_ids
            .get(creation.as_str())
            .map(|s| O::Id::from(s.clone()))
    }

    /// How many HTTP requests were needed (more than one when the request was split).
    pub fn http_requests(&self) -> usize {
        self.http_requests
    }
}
