//! Executor tests against a scripted in-memory JMAP server (no network).

use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::id::{AccountId, EmailId};
use crate::method::{Get, Query, Set};
use crate::object::email::Email;
use crate::request::{RequestBuilder, Response};

/// A toy server: `Email/query` returns `limit` ids `e0..`, `Email/get` echoes ids (refusing
/// more than `max_get` with `requestTooLarge`), `Email/set` destroys with `ifInState`.
struct Toy {
    max_get: usize,
    state: Mutex<u64>,
    bodies: Mutex<Vec<Value>>,
}

impl Toy {
    fn new(max_get: usize) -> Self {
        Toy {
            max_get,
            state: Mutex::new(10),
            bodies: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self, body: &Value) -> ApiResponse {
        self.bodies.lock().unwrap().push(body.clone());
        let mut out: Vec<(String, Value, String)> = Vec::new();
        for call in body["methodCalls"].as_array().unwrap() {
            let name = call[0].as_str().unwrap().to_owned();
            let mut args = call[1].as_object().unwrap().clone();
            let id = call[2].as_str().unwrap().to_owned();
            // Resolve references against earlier responses of this HTTP request.
            let mut bad_ref = false;
            for (k, v) in args.clone() {
                if let Some(key) = k.strip_prefix('#') {
                    let target = out
                        .iter()
                        .find(|(n, _, i)| *i == v["resultOf"] && *n == v["name"]);
                    match target
                        .and_then(|(_, a, _)| pointer::evaluate(a, v["path"].as_str().unwrap()))
                    {
                        Some(val) => {
                            args.remove(&k);
                            args.insert(key.to_owned(), val);
                        }
                        None => bad_ref = true,
                    }
                }
            }
            if bad_ref {
                out.push((
                    "error".into(),
                    json!({"type": "invalidResultReference"}),
                    id,
                ));
                continue;
            }
            let result = match name.as_str() {
                "Email/query" => {
                    let n = args["limit"].as_u64().unwrap_or(3);
                    let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
                    (
                        name.clone(),
                        json!({"ids": ids, "queryState": "q1", "position": 0}),
                    )
                }
                "Email/get" => {
                    let ids = args["ids"].as_array().unwrap();
                    if ids.len() > self.max_get {
                        ("error".into(), json!({"type": "requestTooLarge"}))
                    } else {
                        let list: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
                        (
                            name.clone(),
                            json!({"state": "s1", "list": list, "notFound": null}),
                        )
                    }
                }
                "Email/set" => {
                    let mut st = self.state.lock().unwrap();
                    let current = st.to_string();
                    if let Some(want) = args.get("ifInState")
                        && want != &json!(current)
                    {
                        ("error".into(), json!({"type": "stateMismatch"}))
                    } else {
                        *st += 1;
                        let created: serde_json::Map<String, Value> = args
                            .get("create")
                            .and_then(Value::as_object)
                            .map(|m| {
                                m.keys()
                                    .map(|k| (k.clone(), json!({"id": format!("new-{k}")})))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (
                            name.clone(),
                            json!({"oldState": current, "newState": st.to_string(),
                                   "destroyed": args.get("destroy").cloned().unwrap_or(json!([])),
                                   "created": if created.is_empty() { Value::Null } else { Value::Object(created) },
                                   "notDestroyed": null}),
                        )
                    }
                }
                _ => ("error".into(), json!({"type": "unknownMethod"})),
            };
            out.push((result.0, result.1, id));
        }
        ApiResponse {
            method_responses: out,
            session_state: Some(State::new("ss")),
            created_ids: None,
        }
    }

    fn calls_per_request(&self) -> Vec<usize> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["methodCalls"].as_array().unwrap().len())
            .collect()
    }
}

impl ChunkSender for Toy {
    async fn send_chunk(&self, body: Vec<u8>) -> Result<ApiResponse, Error> {
        let v: Value = serde_json::from_slice(&body).unwrap();
        Ok(self.handle(&v))
    }
}

fn limits(calls: usize, get: usize, set: usize) -> Limits {
    Limits {
        max_calls: calls,
        max_objects_in_get: get,
        max_objects_in_set: set,
        max_size_request: 10_000_000,
    }
}

async fn run(req: RequestBuilder, limits: Limits, toy: &Toy) -> Response {
    let ex = execute(req.into_calls().unwrap(), limits, toy)
        .await
        .unwrap();
    Response::new(
        ex.results,
        ex.session_state,
        ex.created_ids,
        ex.http_requests,
    )
}

fn acct() -> AccountId {
    AccountId::new("a")
}

fn ids(n: usize) -> Vec<EmailId> {
    (0..n).map(|i| EmailId::new(format!("x{i}"))).collect()
}

#[tokio::test]
async fn fits_in_one_request_and_resolves_on_the_server() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let q = req.call(Query::<Email>::new(&acct()).limit(5));
    let g = req.call(Get::<Email>::new(&acct()).ids(q.ids()));
    let mut resp = run(req, limits(16, 100, 100), &toy).await;
    assert_eq!(resp.http_requests(), 1);
    assert_eq!(resp.take(&q).unwrap().ids.len(), 5);
    assert_eq!(resp.take(&g).unwrap().list.len(), 5);
    assert!(matches!(resp.take(&g), Err(Error::MissingResponse { .. })));
    let sent = &toy.bodies.lock().unwrap()[0];
    assert!(
        sent["methodCalls"][1][1].get("#ids").is_some(),
        "reference left to the server"
    );
}

#[tokio::test]
async fn too_many_calls_are_cut_and_references_resolved_locally() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let q = req.call(Query::<Email>::new(&acct()).limit(2));
        let g = req.call(Get::<Email>::new(&acct()).ids(q.ids()));
        handles.push((q, g));
    }
    let mut resp = run(req, limits(3, 100, 100), &toy).await;
    assert_eq!(toy.calls_per_request(), vec![3, 3]);
    // c3 (the second Get) references c2, which was sent in the first HTTP request.
    let second = &toy.bodies.lock().unwrap()[1];
    assert_eq!(second["methodCalls"][0][2], "c3");
    assert_eq!(second["methodCalls"][0][1]["ids"], json!(["e0", "e1"]));
    for (q, g) in &handles {
        assert_eq!(resp.take(q).unwrap().ids.len(), 2);
        assert_eq!(resp.take(g).unwrap().list.len(), 2);
    }
    assert_eq!(resp.http_requests(), 2);
}

#[tokio::test]
async fn oversized_get_is_split_and_merged_in_order() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let g = req.call(Get::<Email>::new(&acct()).ids(ids(250)));
    let mut resp = run(req, limits(16, 100, 100), &toy).await;
    assert_eq!(toy.calls_per_request(), vec![3]);
    let list = resp.take(&g).unwrap().list;
    let got: Vec<String> = list
        .iter()
        .map(|e| e.id.clone().unwrap().into_inner())
        .collect();
    let want: Vec<String> = ids(250).into_iter().map(EmailId::into_inner).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn server_side_request_too_large_falls_back_to_client_resolution() {
    // The query's result is referenced by a Get in the same HTTP request; the server
    // resolves 250 ids and refuses them (limit 100). The client resolves the reference
    // itself and splits the Get.
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let q = req.call(Query::<Email>::new(&acct()).limit(250));
    let g = req.call(Get::<Email>::new(&acct()).ids(q.ids()));
    let mut resp = run(req, limits(16, 100, 100), &toy).await;
    assert_eq!(resp.take(&q).unwrap().ids.len(), 250);
    assert_eq!(resp.take(&g).unwrap().list.len(), 250);
    assert_eq!(toy.calls_per_request(), vec![2, 3]);
}

#[tokio::test]
async fn request_too_large_is_retried_only_once() {
    // The client is misconfigured (thinks 1000 ids are fine): the retry is not split, fails
    // again, and the error is reported instead of looping.
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let q = req.call(Query::<Email>::new(&acct()).limit(250));
    let g = req.call(Get::<Email>::new(&acct()).ids(q.ids()));
    let mut resp = run(req, limits(16, 1000, 100), &toy).await;
    assert_eq!(
        resp.take(&g).unwrap_err().method_error_type(),
        Some(MethodErrorType::RequestTooLarge)
    );
    assert_eq!(toy.calls_per_request(), vec![2, 1]);
}

#[tokio::test]
async fn reference_into_a_split_call_waits_for_the_merged_result() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let g1 = req.call(Get::<Email>::new(&acct()).ids(ids(150)));
    let g2 = req.call(Get::<Email>::new(&acct()).ids(g1.list_ids()));
    let mut resp = run(req, limits(16, 100, 100), &toy).await;
    assert_eq!(toy.calls_per_request(), vec![2, 2]);
    assert_eq!(resp.take(&g1).unwrap().list.len(), 150);
    assert_eq!(resp.take(&g2).unwrap().list.len(), 150);
}

#[tokio::test]
async fn split_set_is_chained_by_if_in_state() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let mut set = Set::<Email>::new(&acct()).if_in_state(&State::new("10"));
    set.destroy(&ids(5));
    let s = req.call(set);
    let mut resp = run(req, limits(16, 100, 2), &toy).await;
    let r = resp.take(&s).unwrap();
    assert_eq!(r.destroyed.len(), 5);
    assert_eq!(r.old_state, Some(State::new("10")));
    assert_eq!(r.new_state, Some(State::new("13")));
    let body = &toy.bodies.lock().unwrap()[0];
    assert_eq!(body["methodCalls"][1][1]["#ifInState"]["resultOf"], "c0.0");
}

#[tokio::test]
async fn stale_state_on_a_split_set_applies_nothing() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let mut set = Set::<Email>::new(&acct()).if_in_state(&State::new("3"));
    set.destroy(&ids(5));
    let s = req.call(set);
    let mut resp = run(req, limits(16, 100, 2), &toy).await;
    let err = resp.take(&s).unwrap_err();
    assert_eq!(
        err.method_error_type(),
        Some(MethodErrorType::StateMismatch)
    );
    assert_eq!(*toy.state.lock().unwrap(), 10, "no piece was applied");
}

#[tokio::test]
async fn creation_ids_are_collected_and_sent_to_later_requests() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let mut set = Set::<Email>::new(&acct());
    let c = set.create(Email::default());
    req.call(set);
    req.call(Query::<Email>::new(&acct()).limit(1));
    let resp = run(req, limits(1, 100, 100), &toy).await;
    assert_eq!(
        resp.created_id(&c),
        Some(EmailId::new(format!("new-{}", c.as_str())))
    );
    let second = &toy.bodies.lock().unwrap()[1];
    assert_eq!(
        second["createdIds"][c.as_str()],
        json!(format!("new-{}", c.as_str()))
    );
}

#[tokio::test]
async fn failed_local_reference_is_an_invalid_result_reference() {
    let toy = Toy::new(100);
    let mut req = RequestBuilder::new();
    let set = Set::<Email>::new(&acct()).if_in_state(&State::new("nope"));
    let s = req.call(set);
    let g = req.call(Get::<Email>::new(&acct()).ids(s.reference::<Vec<EmailId>>("/destroyed")));
    let mut resp = run(req, limits(1, 100, 100), &toy).await;
    assert_eq!(
        resp.take(&s).unwrap_err().method_error_type(),
        Some(MethodErrorType::StateMismatch)
    );
    assert_eq!(
        resp.take(&g).unwrap_err().method_error_type(),
        Some(MethodErrorType::InvalidResultReference)
    );
    assert_eq!(
        toy.calls_per_request(),
        vec![1],
        "the failing reference was not sent"
    );
}

#[test]
fn limits_of_zero_do_not_panic() {
    let l = limits(0, 0, 0).sane();
    assert_eq!(
        (l.max_calls, l.max_objects_in_get, l.max_objects_in_set),
        (1, 1, 1)
    );
}
