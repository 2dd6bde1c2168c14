//! A small, spec-following JMAP server on loopback for engine tests (RFC 8620 core, the parts of
//! RFC 8621 the engine uses): Session, Mailbox/get|changes, Email/query|get|changes|set with
//! back-references and `ifInState`, Identity/get, an EventSource endpoint played from a
//! script (recording each connection's `Last-Event-ID`), and WebSocket push (RFC 8887:
//! subprotocol `jmap`, `WebSocketPushEnable` with `dataTypes` and `pushState`, `StateChange`
//! with `pushState` whenever the Email or Mailbox state moves, and at once on an enable whose
//! `pushState` is behind). What it checks is what the specs require and an independent server enforces:
//! `unsupportedSort` for a sort property RFC 8621 does not define (such as `id`),
//! `invalidArguments` for a `sinceState` it no longer accepts, `stateMismatch` for a stale
//! `ifInState`. Tests reach into [`World`] to play "another client".

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The sort properties RFC 8621 §4.4.2 defines for Email/query.
pub const EMAIL_SORT_PROPERTIES: &[&str] = &[
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// One email as stored by the fake.
#[derive(Debug, Clone)]
pub struct FEmail {
    pub id: String,
    pub received_at: String,
    pub subject: String,
    pub mailbox_ids: BTreeMap<String, bool>,
    pub keywords: BTreeMap<String, bool>,
}

/// One step of an EventSource connection.
#[derive(Debug, Clone)]
pub enum Sse {
    /// Write this raw SSE text.
    Send(String),
    /// Wait.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

/// Decides whether a bearer token is valid (RFC 6750), e.g. by asking a test token issuer.
#[derive(Clone)]
pub struct BearerCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for BearerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerCheck")
    }
}

/// Everything the fake serves; tests lock it to play another client.
#[derive(Debug, Default)]
pub struct World {
    pub mailboxes: BTreeMap<String, (String, Option<String>, Option<String>)>,
    pub mailbox_state: u64,
    /// (state after, mailbox id)
    pub mailbox_log: Vec<(u64, String)>,
    pub emails: BTreeMap<String, FEmail>,
    /// Insertion order (the server's own tie-breaker among equal receivedAt).
    pub order: Vec<String>,
    pub email_state: u64,
    /// (state after, email id, created?, destroyed?)
    pub email_log: Vec<(u64, String, bool, bool)>,
    /// Email states below this are answered with `invalidArguments` (a server that forgot them).
    pub forget_email_below: u64,
    /// Mailbox states below this are answered with `invalidArguments`.
    pub forget_mailbox_below: u64,
    /// `emailQuerySortOptions` advertised (and enforced).
    pub sort_options: Vec<String>,
    /// Identities for Identity/get: (id, name, email).
    pub identities: Vec<(String, String, String)>,
    /// One script per EventSource connection, in order; after the last: pings only.
    pub sse: VecDeque<Vec<Sse>>,
    /// Email ids by `#creationId`, for references in later calls.
    pub created_ids: BTreeMap<String, String>,
    /// Envelope senders of accepted submissions.
    pub submitted: Vec<String>,
    /// EventSource connections seen.
    pub sse_connections: usize,
    /// The `Last-Event-ID` header of each EventSource connection, in order.
    pub last_event_ids: Vec<Option<String>>,
    /// Advertise WebSocket push (RFC 8887) in the Session.
    pub websocket: bool,
    /// WebSocket connections seen (upgrades accepted).
    pub ws_connections: usize,
    /// `WebSocketPushEnable` messages received, in order.
    pub ws_enables: Vec<Value>,
    /// Set to make the server close the open WebSocket connections (then cleared).
    pub ws_drop: bool,
    /// Answer WebSocket upgrades with 404 (a Session advertising what its endpoint refuses).
    pub ws_refuse: bool,
    /// The `Authorization` header of each WebSocket upgrade.
    pub ws_authorization: Vec<String>,
    /// Every method call received: (name, arguments).
    pub calls: Vec<(String, Value)>,
    /// When set, every request must carry `Authorization: Bearer <token>` this accepts;
    /// others are answered `401` with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub bearer: Option<BearerCheck>,
    /// Requests answered 401.
    pub unauthorized: usize,
    /// `Authorization` schemes seen (`Basic`, `Bearer`).
    pub auth_schemes: Vec<String>,
    next_id: u64,
}

impl World {
    fn new() -> Self {
        World {
            sort_options: EMAIL_SORT_PROPERTIES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            mailbox_state: 1,
            email_state: 1,
            ..Default::default()
        }
    }

    /// Adds a mailbox (another client); returns its id.
    pub fn add_mailbox(&mut self, name: &str, parent: Option<&str>, role: Option<&str>) -> String {
        self.next_id += 1;
        let id = format!("M{}", self.next_id);
        self.mailboxes.insert(
            id.clone(),
            (
                name.to_owned(),
                parent.map(str::to_owned),
                role.map(str::to_owned),
            ),
        );
        self.mailbox_state += 1;
        self.mailbox_log.push((self.mailbox_state, id.clone()));
        id
    }

    /// Delivers an email (another client); returns its id.
    pub fn add_email(&mut self, mailbox: &str, received_at: &str, subject: &str) -> String {
        self.next_id += 1;
        let id = format!("E{}", self.next_id);
        self.emails.insert(
            id.clone(),
            FEmail {
                id: id.clone(),
                received_at: received_at.to_owned(),
                subject: subject.to_owned(),
                mailbox_ids: BTreeMap::from([(mailbox.to_owned(), true)]),
                keywords: BTreeMap::new(),
            },
        );
        self.order.push(id.clone());
        self.email_state += 1;
        self.email_log
            .push((self.email_state, id.clone(), true, false));
        id
    }

    /// Sets or clears a keyword (another client).
    pub fn set_keyword(&mut self, id: &str, keyword: &str, on: bool) {
        if let Some(e) = self.emails.get_mut(id) {
            if on {
                e.keywords.insert(keyword.to_owned(), true);
            } else {
                e.keywords.remove(keyword);
            }
            self.email_state += 1;
            self.email_log
                .push((self.email_state, id.to_owned(), false, false));
        }
    }

    /// The names of the calls received so far.
    pub fn call_names(&self) -> Vec<String> {
        self.calls.iter().map(|(n, _)| n.clone()).collect()
    }

    fn email_json(e: &FEmail) -> Value {
        json!({
            "id": e.id, "blobId": format!("B{}", e.id), "threadId": format!("T{}", e.id),
            "mailboxIds": e.mailbox_ids, "keywords": e.keywords, "size": 100,
            "receivedAt": e.received_at, "subject": e.subject,
            "messageId": [format!("{}@fake", e.id)],
            "from": [{"name": "A", "email": "a@fake.test"}], "to": [{"name": null, "email": "u1@fake.test"}],
            "preview": "", "hasAttachment": false, "attachments": [],
        })
    }

    fn parse_state(&self, s: &str, prefix: char, current: u64) -> Option<u64> {
        let n: u64 = s.strip_prefix(prefix)?.parse().ok()?;
        let below = if prefix == 'e' {
            self.forget_email_below
        } else {
            self.forget_mailbox_below
        };
        (n >= below && n <= current).then_some(n)
    }

    fn method(&mut self, name: &str, args: &Value) -> Result<Value, Value> {
        let err = |t: &str| json!({"type": t});
        match name {
            "Mailbox/get" => {
                let list: Vec<Value> = self
                    .mailboxes
                    .iter()
                    .map(|(id, (n, p, r))| {
                        json!({"id": id, "name": n, "parentId": p, "role": r,
                               "totalEmails": 0, "unreadEmails": 0})
                    })
                    .collect();
                Ok(
                    json!({"accountId": "u1", "state": format!("m{}", self.mailbox_state), "list": list, "notFound": []}),
                )
            }
            "Mailbox/changes" => {
                let since = args["sinceState"].as_str().unwrap_or("");
                let Some(n) = self.parse_state(since, 'm', self.mailbox_state) else {
                    return Err(
                        json!({"type": "invalidArguments", "description": "unknown state"}),
                    );
                };
                let mut created = Vec::new();
                let mut updated = Vec::new();
                for (s, id) in &self.mailbox_log {
                    if *s > n && self.mailboxes.contains_key(id) {
                        if created.contains(id) || updated.contains(id) {
                            continue;
                        }
                        created.push(id.clone());
                    }
                }
                updated.retain(|i| !created.contains(i));
                Ok(json!({"accountId": "u1", "oldState": since,
                    "newState": format!("m{}", self.mailbox_state), "hasMoreChanges": false,
                    "created": created, "updated": updated, "destroyed": []}))
            }
            "Email/query" => {
                let sort = args["sort"].as_array().cloned().unwrap_or_default();
                for c in &sort {
                    let p = c["property"].as_str().unwrap_or("");
                    if !EMAIL_SORT_PROPERTIES.contains(&p)
                        || !self.sort_options.iter().any(|o| o == p)
                    {
                        return Err(err("unsupportedSort"));
                    }
                }
                let mut ids: Vec<String> = self
                    .order
                    .iter()
                    .filter(|i| self.emails.contains_key(*i))
                    .cloned()
                    .collect();
                if let Some(c) = sort.first() {
                    let asc = c["isAscending"].as_bool().unwrap_or(true);
                    // Stable sort: ties keep insertion order, the server's own tie-breaker.
                    ids.sort_by(|a, b| {
                        let (x, y) = (&self.emails[a].received_at, &self.emails[b].received_at);
                        if asc { x.cmp(y) } else { y.cmp(x) }
                    });
                }
                let total = ids.len();
                let mut position = args["position"].as_i64().unwrap_or(0).max(0) as usize;
                if let Some(anchor) = args["anchor"].as_str() {
                    let Some(at) = ids.iter().position(|i| i == anchor) else {
                        return Err(err("anchorNotFound"));
                    };
                    position =
                        (at as i64 + args["anchorOffset"].as_i64().unwrap_or(0)).max(0) as usize;
                }
                let limit = args["limit"].as_u64().unwrap_or(u64::MAX) as usize;
                let page: Vec<String> = ids.iter().skip(position).take(limit).cloned().collect();
                let mut r = json!({"accountId": "u1", "queryState": format!("q{}", self.email_state),
                    "canCalculateChanges": false, "position": position, "ids": page});
                if args["calculateTotal"].as_bool() == Some(true) {
                    r["total"] = json!(total);
                }
                Ok(r)
            }
            "Email/get" => {
                let ids: Vec<String> = match args["ids"].as_array() {
                    Some(a) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    None => self.order.clone(),
                };
                let mut list = Vec::new();
                let mut not_found = Vec::new();
                for id in ids {
                    match self.emails.get(&id) {
                        Some(e) => list.push(Self::email_json(e)),
                        None => not_found.push(id),
                    }
                }
                Ok(
                    json!({"accountId": "u1", "state": format!("e{}", self.email_state),
                    "list": list, "notFound": not_found}),
                )
            }
            "Email/changes" => {
                let since = args["sinceState"].as_str().unwrap_or("");
                let Some(n) = self.parse_state(since, 'e', self.email_state) else {
                    return Err(
                        json!({"type": "invalidArguments", "description": "state is not valid"}),
                    );
                };
                let max = args["maxChanges"].as_u64().unwrap_or(u64::MAX) as usize;
                let mut touched: Vec<(String, bool)> = Vec::new();
                let mut new_state = self.email_state;
                let mut more = false;
                for (s, id, created, _) in &self.email_log {
                    if *s <= n {
                        continue;
                    }
                    if let Some(t) = touched.iter_mut().find(|(i, _)| i == id) {
                        t.1 |= *created;
                        continue;
                    }
                    if touched.len() == max {
                        new_state = *s - 1;
                        more = true;
                        break;
                    }
                    touched.push((id.clone(), *created));
                }
                let (mut created, mut updated, mut destroyed) = (vec![], vec![], vec![]);
                for (id, c) in touched {
                    match (self.emails.contains_key(&id), c) {
                        (false, true) => {}
                        (false, false) => destroyed.push(id),
                        (true, true) => created.push(id),
                        (true, false) => updated.push(id),
                    }
                }
                Ok(json!({"accountId": "u1", "oldState": since,
                    "newState": format!("e{new_state}"), "hasMoreChanges": more,
                    "created": created, "updated": updated, "destroyed": destroyed}))
            }
            "Email/set" => {
                let old = format!("e{}", self.email_state);
                if args["ifInState"].as_str().is_some_and(|want| want != old) {
                    return Err(err("stateMismatch"));
                }
                let mut updated = serde_json::Map::new();
                let mut not_updated = serde_json::Map::new();
                for (id, patch) in args["update"].as_object().cloned().unwrap_or_default() {
                    let Some(e) = self.emails.get_mut(&id) else {
                        not_updated.insert(id, json!({"type": "notFound"}));
                        continue;
                    };
                    for (path, v) in patch.as_object().cloned().unwrap_or_default() {
                        let (map, key) = if let Some(k) = path.strip_prefix("keywords/") {
                            (&mut e.keywords, k)
                        } else if let Some(k) = path.strip_prefix("mailboxIds/") {
                            (&mut e.mailbox_ids, k)
                        } else {
                            continue;
                        };
                        if v == json!(true) {
                            map.insert(key.to_owned(), true);
                        } else {
                            map.remove(key);
                        }
                    }
                    self.email_state += 1;
                    self.email_log
                        .push((self.email_state, id.clone(), false, false));
                    updated.insert(id, Value::Null);
                }
                let mut created = serde_json::Map::new();
                for (cid, obj) in args["create"].as_object().cloned().unwrap_or_default() {
                    self.next_id += 1;
                    let id = format!("E{}", self.next_id);
                    let boxes = obj["mailboxIds"].as_object().cloned().unwrap_or_default();
                    let keywords = obj["keywords"].as_object().cloned().unwrap_or_default();
                    self.emails.insert(
                        id.clone(),
                        FEmail {
                            id: id.clone(),
                            received_at: "2024-03-01T10:00:00Z".into(),
                            subject: obj["subject"].as_str().unwrap_or("").to_owned(),
                            mailbox_ids: boxes.keys().map(|k| (k.clone(), true)).collect(),
                            keywords: keywords.keys().map(|k| (k.clone(), true)).collect(),
                        },
                    );
                    self.order.push(id.clone());
                    self.email_state += 1;
                    self.email_log
                        .push((self.email_state, id.clone(), true, false));
                    self.created_ids.insert(format!("#{cid}"), id.clone());
                    created.insert(cid, json!({"id": id, "blobId": format!("B{id}"), "threadId": format!("T{id}"), "size": 100}));
                }
                let mut destroyed = Vec::new();
                for id in args["destroy"].as_array().cloned().unwrap_or_default() {
                    let id = id.as_str().unwrap_or("").to_owned();
                    if self.emails.remove(&id).is_some() {
                        self.email_state += 1;
                        self.email_log
                            .push((self.email_state, id.clone(), false, true));
                        destroyed.push(id);
                    }
                }
                Ok(json!({"accountId": "u1", "oldState": old,
                    "newState": format!("e{}", self.email_state), "created": created, "updated": updated,
                    "notUpdated": not_updated, "destroyed": destroyed}))
            }
            "EmailSubmission/set" => {
                // Refuses every submission whose identity's address is not the From (RFC 8621
                // §7.5 forbiddenFrom); the scripted identities are the allowed senders.
                let mut not_created = serde_json::Map::new();
                let mut created = serde_json::Map::new();
                for (cid, sub) in args["create"].as_object().cloned().unwrap_or_default() {
                    let from = sub["envelope"]["mailFrom"]["email"].as_str().unwrap_or("");
                    if self.identities.iter().any(|(_, _, e)| e == from) {
                        self.submitted.push(from.to_owned());
                        created.insert(cid, json!({"id": format!("S{}", self.submitted.len())}));
                    } else {
                        not_created.insert(cid, json!({"type": "forbiddenFrom"}));
                    }
                }
                Ok(
                    json!({"accountId": "u1", "oldState": "x1", "newState": "x1",
                    "created": created, "notCreated": not_created}),
                )
            }
            "Identity/get" => {
                let list: Vec<Value> = self
                    .identities
                    .iter()
                    .map(|(id, name, email)| json!({"id": id, "name": name, "email": email, "mayDelete": true}))
                    .collect();
                Ok(json!({"accountId": "u1", "state": "i1", "list": list, "notFound": []}))
            }
            _ => Err(err("unknownMethod")),
        }
    }
}

/// Resolves a JSON pointer with `*` over arrays (RFC 8620 §3.7).
fn pointer(v: &Value, path: &str) -> Option<Value> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let head = parts.next()?;
    let rest = parts.next();
    let next = if head == "*" {
        let arr = v.as_array()?;
        let mut out = Vec::new();
        for x in arr {
            match rest.map(|r| pointer(x, r)) {
                Some(Some(Value::Array(a))) => out.extend(a),
                Some(Some(y)) => out.push(y),
                Some(None) => return None,
                None => out.push(x.clone()),
            }
        }
        return Some(Value::Array(out));
    } else if head.is_empty() {
        v.clone()
    } else {
        v.get(head)?.clone()
    };
    match rest {
        Some(r) => pointer(&next, r),
        None => Some(next),
    }
}

/// The fake server; dropped with the test's runtime.
pub struct FakeJmap {
    pub world: Arc<Mutex<World>>,
    pub port: u16,
}

impl FakeJmap {
    /// Starts it on a free loopback port.
    pub async fn start() -> std::io::Result<FakeJmap> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let world = Arc::new(Mutex::new(World::new()));
        let w = world.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let w = w.clone();
                tokio::spawn(async move {
                    if is_ws(&stream).await {
                        serve_ws(stream, w).await;
                    } else {
                        serve_one(stream, w, port).await;
                    }
                });
            }
        });
        Ok(FakeJmap { world, port })
    }

    /// The Session URL.
    pub fn session_url(&self) -> String {
        format!("http://127.0.0.1:{}/jmap/session", self.port)
    }

    /// Locks the world.
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }
}

fn session(port: u16, w: &World) -> String {
    let mut v = session_value(port, w);
    if w.websocket {
        v["capabilities"]["urn:ietf:params:jmap:websocket"] =
            json!({"url": format!("ws://127.0.0.1:{port}/jmap/ws"), "supportsPush": true});
    }
    v.to_string()
}

fn session_value(port: u16, w: &World) -> Value {
    json!({
        "capabilities": {
            "urn:ietf:params:jmap:core": {"maxSizeUpload": 1000000, "maxConcurrentUpload": 2,
                "maxSizeRequest": 1000000, "maxConcurrentRequests": 2, "maxCallsInRequest": 16,
                "maxObjectsInGet": 500, "maxObjectsInSet": 500, "collationAlgorithms": []},
            "urn:ietf:params:jmap:mail": {},
            "urn:ietf:params:jmap:submission": {}
        },
        "accounts": {"u1": {"name": "u1@fake.test", "isPersonal": true, "isReadOnly": false,
            "accountCapabilities": {
                "urn:ietf:params:jmap:mail": {"maxMailboxesPerEmail": null, "maxMailboxDepth": null,
                    "maxSizeMailboxName": 255, "maxSizeAttachmentsPerEmail": 1000000,
                    "emailQuerySortOptions": w.sort_options, "mayCreateTopLevelMailbox": true},
                "urn:ietf:params:jmap:submission": {"maxDelayedSend": 0, "submissionExtensions": {}}}}},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "u1", "urn:ietf:params:jmap:submission": "u1"},
        "username": "u1",
        "apiUrl": format!("http://127.0.0.1:{port}/jmap/api"),
        "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/jmap/upload/{accountId}",
        "eventSourceUrl": "/jmap/events?types={types}&closeafter={closeafter}&ping={ping}",
        "state": "s1"
    })
}

/// The push state of the world: both type states, `<email>.<mailbox>`.
fn push_state(w: &World) -> String {
    format!("{}.{}", w.email_state, w.mailbox_state)
}

/// One WebSocket connection (RFC 8887): the upgrade needs subprotocol `jmap`; after a
/// `WebSocketPushEnable`, a `StateChange` goes out whenever the world's push state differs from
/// the last one the client has (its `pushState`, or the state at enable time).
// The upgrade callback's signature (a large `Err`) is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve_ws(stream: tokio::net::TcpStream, world: Arc<Mutex<World>>) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let w2 = world.clone();
    let check = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = {
            let mut w = w2.lock().expect("world lock");
            let auth = req
                .headers()
                .get("Authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            w.ws_authorization.push(auth);
            w.ws_refuse
        };
        if refuse {
            let mut e = ErrorResponse::new(None);
            *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
            return Err(e);
        }
        let jmap = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "jmap"));
        if !jmap {
            let mut e = ErrorResponse::new(Some("subprotocol jmap required".into()));
            *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
            return Err(e);
        }
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("jmap"),
        );
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    world.lock().expect("world lock").ws_connections += 1;
    // The push state the client has seen; None until push is enabled.
    let mut client_has: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["@type"] == "WebSocketPushEnable" {
                        let mut w = world.lock().expect("world lock");
                        w.ws_enables.push(v.clone());
                        client_has = Some(
                            v["pushState"].as_str().map_or_else(|| push_state(&w), str::to_owned),
                        );
                    } else if v["@type"] == "WebSocketPushDisable" {
                        client_has = None;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = tick.tick() => {
                let (drop, now, email, mailbox) = {
                    let mut w = world.lock().expect("world lock");
                    let drop = std::mem::take(&mut w.ws_drop);
                    (drop, push_state(&w), w.email_state, w.mailbox_state)
                };
                if drop {
                    let _ = ws.close(None).await;
                    return;
                }
                if client_has.as_ref().is_some_and(|c| *c != now) {
                    let msg = json!({"@type": "StateChange",
                        "changed": {"u1": {"Email": format!("e{email}"), "Mailbox": format!("m{mailbox}")}},
                        "pushState": now});
                    if ws.send(Message::text(msg.to_string())).await.is_err() {
                        return;
                    }
                    client_has = Some(now);
                }
            }
        }
    }
}

/// Whether a connection's request line asks for the WebSocket endpoint (peeked, not read).
async fn is_ws(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        match stream.peek(&mut buf).await {
            Ok(n) if n >= 16 || buf[..n].contains(&b'\n') => {
                return buf[..n].starts_with(b"GET /jmap/ws");
            }
            Ok(0) | Err(_) => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    false
}

fn api(world: &Mutex<World>, body: &[u8]) -> Value {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut w = world.lock().expect("world lock");
    let mut responses: Vec<Value> = Vec::new();
    for call in req["methodCalls"].as_array().cloned().unwrap_or_default() {
        let name = call[0].as_str().unwrap_or("").to_owned();
        let mut args = call[1].clone();
        let id = call[2].clone();
        // Back-references: "#name": {resultOf, name, path}.
        let mut bad = false;
        if let Some(obj) = args.as_object_mut() {
            let refs: Vec<String> = obj.keys().filter(|k| k.starts_with('#')).cloned().collect();
            for k in refs {
                let r = obj.remove(&k).unwrap_or(Value::Null);
                let found = responses
                    .iter()
                    .find(|x| x[2] == r["resultOf"] && x[0] == r["name"])
                    .and_then(|x| pointer(&x[1], r["path"].as_str().unwrap_or("")));
                match found {
                    Some(v) => {
                        obj.insert(k[1..].to_owned(), v);
                    }
                    None => bad = true,
                }
            }
        }
        let out = if bad {
            Err(json!({"type": "invalidResultReference"}))
        } else {
            w.calls.push((name.clone(), args.clone()));
            w.method(&name, &args)
        };
        responses.push(match out {
            Ok(v) => json!([name, v, id]),
            Err(e) => json!(["error", e, id]),
        });
    }
    json!({"methodResponses": responses, "sessionState": "s1"})
}

async fn serve_one(stream: tokio::net::TcpStream, world: Arc<Mutex<World>>, port: u16) {
    let (r, mut wr) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    if r.read_line(&mut line).await.is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut len = 0usize;
    let mut authorization = String::new();
    let mut last_event_id = None;
    loop {
        let mut h = String::new();
        match r.read_line(&mut h).await {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" => break,
            Ok(_) => {
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    } else if k.eq_ignore_ascii_case("authorization") {
                        authorization = v.trim().to_owned();
                    } else if k.eq_ignore_ascii_case("last-event-id") {
                        last_event_id = Some(v.trim().to_owned());
                    }
                }
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).await.is_err() {
        return;
    }
    let authorized = {
        let mut w = world.lock().expect("world lock");
        if let Some(scheme) = authorization.split_whitespace().next() {
            w.auth_schemes.push(scheme.to_owned());
        }
        let ok = match &w.bearer {
            None => true,
            Some(check) => authorization
                .strip_prefix("Bearer ")
                .is_some_and(|t| (check.0)(t.trim())),
        };
        if !ok {
            w.unauthorized += 1;
        }
        ok
    };
    if !authorized {
        let _ = wr
            .write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let reply = |ct: &str, body: String| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if target.starts_with("/jmap/events") {
        let script = {
            let mut w = world.lock().expect("world lock");
            w.sse_connections += 1;
            w.last_event_ids.push(last_event_id);
            w.sse.pop_front()
        };
        let _ = wr
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
            .await;
        match script {
            Some(steps) => {
                for s in steps {
                    match s {
                        Sse::Send(t) => {
                            if wr.write_all(t.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Sse::Sleep(d) => tokio::time::sleep(d).await,
                        Sse::Close => return,
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            None => loop {
                if wr
                    .write_all(b"event: ping\ndata: {\"interval\":1}\n\n")
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            },
        }
    } else if target.starts_with("/jmap/api") {
        let out = api(&world, &body).to_string();
        let _ = wr
            .write_all(reply("application/json", out).as_bytes())
            .await;
    } else {
        let s = {
            let w = world.lock().expect("world lock");
            session(port, &w)
        };
        let _ = wr.write_all(reply("application/json", s).as_bytes()).await;
    }
}
