//! Executing a request within the server's limits: splitting oversized calls, cutting the
//! call list into several HTTP requests, resolving result references across those requests
//! on the client, and merging split responses back under the caller's call handle.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{PendingCall, SplitPolicy, pointer, using_for};
use crate::error::{Error, MethodErrorType};
use crate::id::State;

/// The limits the executor honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_calls: usize,
    pub(crate) max_objects_in_get: usize,
    pub(crate) max_objects_in_set: usize,
    pub(crate) max_size_request: usize,
}

impl Limits {
    fn sane(self) -> Self {
        Limits {
            max_calls: self.max_calls.max(1),
            max_objects_in_get: self.max_objects_in_get.max(1),
            max_objects_in_set: self.max_objects_in_set.max(1),
            max_size_request: self.max_size_request.max(1),
        }
    }
}

/// A decoded API response envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiResponse {
    pub(crate) method_responses: Vec<(String, Value, String)>,
    #[serde(default)]
    pub(crate) session_state: Option<State>,
    #[serde(default)]
    pub(crate) created_ids: Option<BTreeMap<String, String>>,
}

/// Sends one HTTP request body to the API endpoint.
pub(crate) trait ChunkSender {
    fn send_chunk(&self, body: Vec<u8>) -> impl Future<Output = Result<ApiResponse, Error>> + Send;
}

pub(crate) fn request_body(calls: &[PendingCall], created_ids: &Map<String, Value>) -> Value {
    let method_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!([c.name, Value::Object(c.args.clone()), c.id]))
        .collect();
    let mut body = json!({
        "using": using_for(calls.iter()),
        "methodCalls": method_calls,
    });
    if !created_ids.is_empty()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("createdIds".into(), Value::Object(created_ids.clone()));
    }
    body
}

type Results = Vec<(String, Value)>;

#[derive(Debug, Clone)]
struct WireCall {
    call: PendingCall,
    handle: String,
    piece: Option<usize>,
    original_args: Map<String, Value>,
    /// Wire ids this call references that were left for the server to resolve.
    server_refs: Vec<String>,
    retried: bool,
}

struct RefArg {
    key: String,
    result_of: String,
    name: String,
    path: String,
}

fn references(args: &Map<String, Value>) -> Vec<RefArg> {
    args.iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix('#')?;
            let o = v.as_object()?;
            Some(RefArg {
                key: key.to_owned(),
                result_of: o.get("resultOf")?.as_str()?.to_owned(),
                name: o.get("name")?.as_str()?.to_owned(),
                path: o.get("path")?.as_str()?.to_owned(),
            })
        })
        .collect()
}

fn resolve(results: &Results, name: &str, path: &str) -> Result<Value, String> {
    let (_, args) = results
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| format!("the referenced call has no {name} response"))?;
    pointer::evaluate(args, path).ok_or_else(|| format!("path {path} does not resolve"))
}

fn error_result(kind: MethodErrorType, description: String) -> Results {
    vec![(
        "error".into(),
        json!({"type": kind.as_str(), "description": description}),
    )]
}

fn is_error(results: &Results, kind: Option<MethodErrorType>) -> bool {
    results.first().is_some_and(|(n, a)| {
        n == "error"
            && kind.is_none_or(|k| a.get("type").and_then(Value::as_str) == Some(k.as_str()))
    })
}

/// Splits a call into pieces when it exceeds the limits; `None` when it fits.
fn split(call: &PendingCall, limits: &Limits) -> Option<Vec<Map<String, Value>>> {
    match call.split {
        SplitPolicy::None => None,
        SplitPolicy::Ids { field } => {
            let ids = call.args.get(field)?.as_array()?;
            if ids.len() <= limits.max_objects_in_get {
                return None;
            }
            Some(
                ids.chunks(limits.max_objects_in_get)
                    .map(|chunk| {
                        let mut args = call.args.clone();
                        args.insert(field.to_owned(), Value::Array(chunk.to_vec()));
                        args
                    })
                    .collect(),
            )
        }
        SplitPolicy::Set => {
            let max = limits.max_objects_in_set;
            let count = |k: &str| match call.args.get(k) {
                Some(Value::Object(m)) => m.len(),
                Some(Value::Array(a)) => a.len(),
                _ => 0,
            };
            if count("create") + count("update") + count("destroy") <= max {
                return None;
            }
            let mut base = call.args.clone();
            let create = take_map(&mut base, "create");
            let update = take_map(&mut base, "update");
            let destroy = match base.remove("destroy") {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    // A destroy reference cannot be split; keep it on the first piece.
                    base.insert("destroy".into(), other);
                    Vec::new()
                }
                None => Vec::new(),
            };
            let mut items: Vec<(&'static str, Option<String>, Value)> = Vec::new();
            items.extend(create.into_iter().map(|(k, v)| ("create", Some(k), v)));
            items.extend(update.into_iter().map(|(k, v)| ("update", Some(k), v)));
            items.extend(destroy.into_iter().map(|v| ("destroy", None, v)));
            Some(
                items
                    .chunks(max)
                    .map(|chunk| {
                        let mut args = base.clone();
                        for (section, key, value) in chunk {
                            match key {
                                Some(k) => {
                                    let entry = args
                                        .entry(section.to_string())
                                        .or_insert_with(|| Value::Object(Map::new()));
                                    if let Value::Object(m) = entry {
                                        m.insert(k.clone(), value.clone());
                                    }
                                }
                                None => {
                                    let entry = args
                                        .entry(section.to_string())
                                        .or_insert_with(|| Value::Array(Vec::new()));
                                    if let Value::Array(a) = entry {
                                        a.push(value.clone());
                                    }
                                }
                            }
                        }
                        args
                    })
                    .collect(),
            )
        }
        SplitPolicy::Map { field } => {
            let map = call.args.get(field)?.as_object()?;
            if map.len() <= limits.max_objects_in_set {
                return None;
            }
            let entries: Vec<(&String, &Value)> = map.iter().collect();
            Some(
                entries
                    .chunks(limits.max_objects_in_set)
                    .map(|chunk| {
                        let mut args = call.args.clone();
                        let part: Map<String, Value> = chunk
                            .iter()
                            .map(|(k, v)| ((*k).clone(), (*v).clone()))
                            .collect();
                        args.insert(field.to_owned(), Value::Object(part));
                        args
                    })
                    .collect(),
            )
        }
    }
}

fn take_map(args: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match args.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Merges the results of the pieces of a split call.
fn merge(policy: SplitPolicy, name: &str, pieces: Vec<Results>) -> Results {
    if let Some(err) = pieces.iter().find(|r| is_error(r, None)) {
        return err.clone();
    }
    let mut args: Vec<Map<String, Value>> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece.into_iter().find(|(n, _)| n == name) {
            Some((_, Value::Object(m))) => args.push(m),
            _ => {
                return error_result(
                    MethodErrorType::ServerFail,
                    "a piece of a split call got no response".into(),
                );
            }
        }
    }
    let mut iter = args.into_iter();
    let Some(mut merged) = iter.next() else {
        return Vec::new();
    };
    let (arrays, maps): (&[&str], &[&str]) = match policy {
        SplitPolicy::Ids { .. } => (&["list", "notFound"], &[]),
        SplitPolicy::Set => (
            &["destroyed"],
            &[
                "created",
                "updated",
                "notCreated",
                "notUpdated",
                "notDestroyed",
            ],
        ),
        SplitPolicy::Map { .. } => (&[], &["created", "notCreated"]),
        SplitPolicy::None => (&[], &[]),
    };
    for next in iter {
        for key in arrays {
            if let Some(Value::Array(more)) = next.get(*key) {
                match merged.get_mut(*key) {
                    Some(Value::Array(a)) => a.extend(more.iter().cloned()),
                    _ => {
                        merged.insert((*key).to_owned(), Value::Array(more.clone()));
                    }
                }
            }
        }
        for key in maps {
            if let Some(Value::Object(more)) = next.get(*key) {
                match merged.get_mut(*key) {
                    Some(Value::Object(m)) => {
                        m.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())))
                    }
                    _ => {
                        merged.insert((*key).to_owned(), Value::Object(more.clone()));
                    }
                }
            }
        }
        if let Some(new_state) = next.get("newState")
            && !new_state.is_null()
        {
            merged.insert("newState".into(), new_state.clone());
        }
    }
    vec![(name.to_owned(), Value::Object(merged))]
}

/// Records creation ids from `created` maps of `/set`-like responses.
fn record_created(results: &Results, created: &mut Map<String, Value>) {
    for (name, args) in results {
        if name == "error" {
            continue;
        }
        if let Some(Value::Object(map)) = args.get("created") {
            for (cid, obj) in map {
                if let Some(id) = obj.get("id").and_then(Value::as_str) {
                    created.insert(cid.clone(), Value::String(id.to_owned()));
                }
            }
        }
    }
}

/// The outcome of executing a request.
pub(crate) struct Executed {
    pub(crate) results: HashMap<String, Results>,
    pub(crate) session_state: Option<State>,
    pub(crate) created_ids: BTreeMap<String, String>,
    pub(crate) http_requests: usize,
}

/// Executes the calls, possibly over several HTTP requests.
pub(crate) async fn execute<S: ChunkSender>(
    calls: Vec<PendingCall>,
    limits: Limits,
    sender: &S,
) -> Result<Executed, Error> {
    let limits = limits.sane();
    let mut queue: VecDeque<WireCall> = calls
        .into_iter()
        .map(|c| WireCall {
            handle: c.id.clone(),
            original_args: c.args.clone(),
            call: c,
            piece: None,
            server_refs: Vec::new(),
            retried: false,
        })
        .collect();
    // Results by wire id (for resolving references) and by handle (what the caller sees).
    let mut by_wire: HashMap<String, Results> = HashMap::new();
    let mut by_handle: HashMap<String, Results> = HashMap::new();
    let mut pieces: HashMap<String, (SplitPolicy, String, Vec<Option<Results>>)> = HashMap::new();
    let mut created: Map<String, Value> = Map::new();
    let mut session_state = None;
    let mut http_requests = 0usize;

    while !queue.is_empty() {
        let mut chunk: Vec<WireCall> = Vec::new();
        let mut chunk_ids: HashSet<String> = HashSet::new();
        let mut chunk_split_handles: HashSet<String> = HashSet::new();
        let mut chunk_size = 128usize;

        while let Some(mut wc) = queue.pop_front() {
            let refs = references(&wc.call.args);
            if refs
                .iter()
                .any(|r| chunk_split_handles.contains(&r.result_of))
            {
                // A split call's merged result only exists after its pieces ran: resolve it
                // on the client in the next HTTP request.
                queue.push_front(wc);
                break;
            }
            let mut failed = None;
            wc.server_refs.clear();
            for r in refs {
                if chunk_ids.contains(&r.result_of) {
                    wc.server_refs.push(r.result_of.clone());
                    continue;
                }
                let Some(source) = by_wire
                    .get(&r.result_of)
                    .or_else(|| by_handle.get(&r.result_of))
                else {
                    // Unknown call id: let the server report invalidResultReference.
                    continue;
                };
                match resolve(source, &r.name, &r.path) {
                    Ok(v) => {
                        wc.call.args.remove(&format!("#{}", r.key));
                        wc.call.args.insert(r.key.clone(), v);
                    }
                    Err(description) => {
                        failed = Some(error_result(
                            MethodErrorType::InvalidResultReference,
                            description,
                        ));
                        break;
                    }
                }
            }
            if let Some(err) = failed {
                store(&wc, err, &mut by_wire, &mut by_handle, &mut pieces);
                continue;
            }
            if wc.piece.is_none()
                && let Some(parts) = split(&wc.call, &limits)
            {
                let chained = wc.call.args.contains_key("ifInState");
                let n = parts.len();
                tracing::debug!(method = %wc.call.name, pieces = n, "splitting oversized call");
                pieces.insert(
                    wc.handle.clone(),
                    (wc.call.split, wc.call.name.clone(), vec![None; n]),
                );
                for (i, mut args) in parts.into_iter().enumerate().rev() {
                    if chained && i > 0 {
                        args.remove("ifInState");
                        args.insert(
                            "#ifInState".into(),
                            json!({"resultOf": format!("{}.{}", wc.handle, i - 1), "name": wc.call.name, "path": "/newState"}),
                        );
                    }
                    let mut call = wc.call.clone();
                    call.id = format!("{}.{}", wc.handle, i);
                    call.args = args;
                    queue.push_front(WireCall {
                        original_args: call.args.clone(),
                        call,
                        handle: wc.handle.clone(),
                        piece: Some(i),
                        server_refs: Vec::new(),
                        retried: wc.retried,
                    });
                }
                continue;
            }
            let size = serde_json::to_vec(&wc.call.args)
                .map(|v| v.len())
                .unwrap_or(0)
                + wc.call.name.len()
                + 32;
            if !chunk.is_empty()
                && (chunk.len() >= limits.max_calls || chunk_size + size > limits.max_size_request)
            {
                queue.push_front(wc);
                break;
            }
            chunk_size += size;
            chunk_ids.insert(wc.call.id.clone());
            if wc.piece.is_some() {
                chunk_split_handles.insert(wc.handle.clone());
            }
            chunk.push(wc);
        }
        if chunk.is_empty() {
            continue;
        }

        let calls: Vec<PendingCall> = chunk.iter().map(|w| w.call.clone()).collect();
        let body = request_body(&calls, &created);
        let bytes = serde_json::to_vec(&body).map_err(Error::Encode)?;
        tracing::debug!(
            calls = calls.len(),
            bytes = bytes.len(),
            "sending JMAP request"
        );
        let response = sender.send_chunk(bytes).await?;
        http_requests += 1;
        if response.session_state.is_some() {
            session_state = response.session_state;
        }
        if let Some(ids) = response.created_ids {
            created.extend(ids.into_iter().map(|(k, v)| (k, Value::String(v))));
        }
        let mut grouped: HashMap<String, Results> = HashMap::new();
        for (name, args, id) in response.method_responses {
            grouped.entry(id).or_default().push((name, args));
        }

        let mut retry: Vec<WireCall> = Vec::new();
        let mut retried_ids: HashSet<String> = HashSet::new();
        for wc in chunk {
            let results = grouped.remove(&wc.call.id).unwrap_or_default();
            let too_large = is_error(&results, Some(MethodErrorType::RequestTooLarge));
            let depends_on_retry =
                is_error(&results, None) && wc.server_refs.iter().any(|r| retried_ids.contains(r));
            if !wc.retried && ((too_large && !wc.server_refs.is_empty()) || depends_on_retry) {
                // The server resolved a reference to more ids than it accepts: resolve it
                // here instead and let the split logic cut it to size.
                tracing::debug!(method = %wc.call.name, "retrying with client-side reference resolution");
                retried_ids.insert(wc.call.id.clone());
                let mut again = wc.clone();
                again.call.args = wc.original_args.clone();
                again.retried = true;
                retry.push(again);
                continue;
            }
            record_created(&results, &mut created);
            store(&wc, results, &mut by_wire, &mut by_handle, &mut pieces);
        }
        for wc in retry.into_iter().rev() {
            queue.push_front(wc);
        }
    }

    let created_ids = created
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
        .collect();
    Ok(Executed {
        results: by_handle,
        session_state,
        created_ids,
        http_requests,
    })
}

fn store(
    wc: &WireCall,
    results: Results,
    by_wire: &mut HashMap<String, Results>,
    by_handle: &mut HashMap<String, Results>,
    pieces: &mut HashMap<String, (SplitPolicy, String, Vec<Option<Results>>)>,
) {
    by_wire.insert(wc.call.id.clone(), results.clone());
    match wc.piece {
        None => {
            by_handle.insert(wc.handle.clone(), results);
        }
        Some(i) => {
            let Some((policy, name, slots)) = pieces.get_mut(&wc.handle) else {
                return;
            };
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(results);
            }
            if slots.iter().all(Option::is_some) {
                let done: Vec<Results> = slots.iter_mut().filter_map(Option::take).collect();
                by_handle.insert(wc.handle.clone(), merge(*policy, name, done));
            }
        }
    }
}

#[cfg(test)]
mod tests;
