//! Golden files: the exact JSON of typed requests, and typed decoding of recorded responses
//! (Cyrus 3.6 transcripts and RFC 8620/8621 examples, including their quirks).

use chrono::{TimeZone, Utc};
use mailsync_jmap_client::*;
use url::Url;

use crate::support::{check_golden, golden_input};

fn acct() -> AccountId {
    AccountId::new("jc1")
}

fn request_golden(name: &str, req: &RequestBuilder) {
    let json = serde_json::to_string_pretty(&req.to_json().unwrap()).unwrap() + "\n";
    check_golden(&format!("requests/{name}.json"), &json);
}

fn debug_golden<T: std::fmt::Debug>(name: &str, value: &T) {
    check_golden(&format!("responses/{name}.txt"), &format!("{value:#?}\n"));
}

fn inbox() -> MailboxId {
    MailboxId::new("Minbox")
}

#[test]
fn request_query_then_get_by_back_reference() {
    let mut req = RequestBuilder::new();
    let filter = Filter::and([
        EmailFilterCondition::in_mailbox(&inbox()).into(),
        Filter::not([EmailFilterCondition {
            has_keyword: Some(keyword::SEEN.into()),
            ..Default::default()
        }
        .into()]),
    ]);
    let q = req.call(
        Query::<Email>::new(&acct())
            .filter(filter)
            .sort([
                Comparator::descending("receivedAt"),
                Comparator::ascending("id"),
            ])
            .position(100)
            .limit(50)
            .calculate_total(true),
    );
    req.call(
        Get::<Email>::new(&acct())
            .ids(q.ids())
            .properties([
                "id",
                "threadId",
                "mailboxIds",
                "keywords",
                "subject",
                "receivedAt",
                "textBody",
            ])
            .body_properties(["partId", "type", "size"])
            .fetch_text_body_values(true)
            .max_body_value_bytes(4096),
    );
    assert_eq!(
        req.using(),
        ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
    );
    request_golden("query_get", &req);
}

#[test]
fn request_changes_with_gets_of_created_and_updated() {
    let mut req = RequestBuilder::new();
    let c = req.call(Changes::<Email>::new(&acct(), &State::new("1034")).max_changes(256));
    req.call(Get::<Email>::new(&acct()).ids(c.created()).properties([
        "id",
        "threadId",
        "mailboxIds",
        "keywords",
        "subject",
    ]));
    req.call(Get::<Email>::new(&acct()).ids(c.updated()).properties([
        "id",
        "mailboxIds",
        "keywords",
    ]));
    request_golden("changes_get", &req);
}

#[test]
fn request_set_with_if_in_state_and_patches() {
    let mut req = RequestBuilder::new();
    let mut set = Set::<Email>::new(&acct()).if_in_state(&State::new("1036"));
    set.update(
        &EmailId::new("M1"),
        Patch::new()
            .keyword(keyword::SEEN, true)
            .keyword("$flagged", false)
            .keyword("odd/key~word", true),
    );
    set.update(
        &EmailId::new("M2"),
        Patch::new()
            .mailbox(&inbox(), false)
            .mailbox(&MailboxId::new("Marchive"), true),
    );
    set.update(
        &EmailId::new("M3"),
        Patch::new().keywords([keyword::SEEN, keyword::ANSWERED]),
    );
    set.destroy(&[EmailId::new("M4"), EmailId::new("M5")]);
    req.call(set);
    request_golden("email_set", &req);
}

#[test]
fn request_draft_and_submission_in_one_request() {
    let drafts = MailboxId::new("Mdrafts");
    let sent = MailboxId::new("Msent");
    let mut req = RequestBuilder::new();
    let mut set = Set::<Email>::new(&acct());
    let draft = CreationId::<Email>::named("draft");
    set.create_with_id(
        &draft,
        Email {
            mailbox_ids: Some([(drafts.clone(), true)].into()),
            keywords: Some(
                [
                    (keyword::DRAFT.to_owned(), true),
                    (keyword::SEEN.to_owned(), true),
                ]
                .into(),
            ),
            from: Some(vec![EmailAddress::with_name("JC One", "jc1@example.test")]),
            to: Some(vec![EmailAddress::new("bob@example.test")]),
            subject: Some("hello".into()),
            message_id: Some(vec!["unique-1@example.test".into()]),
            body_values: Some([("b".to_owned(), EmailBodyValue::new("hi\n"))].into()),
            text_body: Some(vec![EmailBodyPart::from_value("b", "text/plain")]),
            ..Default::default()
        },
    );
    req.call(set);
    let mut sub = Set::<EmailSubmission>::new(&acct());
    let s = CreationId::<EmailSubmission>::named("send");
    sub.create_with_id(
        &s,
        EmailSubmission::new(IdentityId::new("jc1"), draft.reference())
            .with_envelope(Envelope::new("jc1@example.test", ["bob@example.test"])),
    );
    sub.on_success_update_email(
        &s,
        Patch::new()
            .mailbox(&drafts, false)
            .mailbox(&sent, true)
            .keyword(keyword::DRAFT, false),
    );
    req.call(sub);
    assert_eq!(
        req.using(),
        [
            "urn:ietf:params:jmap:core",
            "urn:ietf:params:jmap:mail",
            "urn:ietf:params:jmap:submission"
        ]
    );
    request_golden("draft_submission", &req);
}

#[test]
fn request_submission_destroying_the_email_on_success() {
    let mut req = RequestBuilder::new();
    let mut sub = Set::<EmailSubmission>::new(&acct());
    let s = CreationId::<EmailSubmission>::named("s");
    sub.create_with_id(
        &s,
        EmailSubmission::new(IdentityId::new("jc1"), EmailId::new("Mexisting")),
    );
    sub.on_success_destroy_email(&s);
    sub.on_success_destroy_email(&SubmissionId::new("S9"));
    req.call(sub);
    request_golden("submission_destroy", &req);
}

#[test]
fn request_mailbox_get_all_and_changes_and_set() {
    let mut req = RequestBuilder::new();
    req.call(Get::<Mailbox>::new(&acct()));
    req.call(Changes::<Mailbox>::new(&acct(), &State::new("7")));
    let mut set = Set::<Mailbox>::new(&acct());
    set.create_with_id(
        &CreationId::named("m"),
        Mailbox::new("Spam").with_role(MailboxRole::Junk),
    );
    set.destroy(&[MailboxId::new("Mold")]);
    set.on_destroy_remove_emails(true);
    req.call(set);
    assert_eq!(
        req.using(),
        ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
    );
    request_golden("mailbox", &req);
}

#[test]
fn request_import_thread_snippet_identity_query_changes() {
    let mut req = RequestBuilder::new();
    let mut import = EmailImport::new(&acct());
    import.email_with_id(
        &CreationId::named("i1"),
        EmailImportItem::new(BlobId::new("G1"), [&inbox()])
            .keyword(keyword::SEEN)
            .received_at(Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()),
    );
    req.call(import);
    let g = req.call(
        Get::<Email>::new(&acct())
            .ids(vec![EmailId::new("M1")])
            .properties(["threadId"]),
    );
    let t = req.call(Get::<Thread>::new(&acct()).ids(g.thread_ids()));
    req.call(
        Get::<Email>::new(&acct())
            .ids(t.email_ids())
            .properties(["subject"]),
    );
    let text = EmailFilterCondition {
        text: Some("invoice".into()),
        ..Default::default()
    };
    let q = req.call(Query::<Email>::new(&acct()).filter(text.clone()).limit(10));
    req.call(SearchSnippetGet::new(&acct(), text.clone(), q.ids()));
    req.call(
        QueryChanges::<Email>::new(&acct(), &State::new("q1"))
            .filter(text)
            .max_changes(100),
    );
    req.call(Get::<Identity>::new(&acct()));
    request_golden("misc", &req);
}

#[test]
fn response_cyrus_session_with_relative_urls() {
    let url = Url::parse("http://127.0.0.1:10080/jmap").unwrap();
    let s = Session::parse(&golden_input("responses/session_cyrus.json"), &url).unwrap();
    assert_eq!(s.api_url().as_str(), "http://127.0.0.1:10080/jmap/");
    assert_eq!(
        s.upload_url()
            .expand(&[("accountId", "jc1")])
            .unwrap()
            .as_str(),
        "http://127.0.0.1:10080/jmap/upload/jc1/"
    );
    assert_eq!(
        s.event_source_url()
            .unwrap()
            .expand(&[("types", "*"), ("closeafter", "no"), ("ping", "30")])
            .unwrap()
            .as_str(),
        "http://127.0.0.1:10080/jmap/eventsource/?types=%2A&closeafter=no&ping=30"
    );
    assert!(s.supports_submission());
    assert_eq!(s.mail_account_id().unwrap(), AccountId::new("jc1"));
    assert_eq!(s.core().max_calls_in_request, 50);
    assert_eq!(s.core().max_objects_in_get, 4096);
    let mail = s
        .account(&AccountId::new("jc1"))
        .unwrap()
        .mail_capabilities()
        .unwrap();
    assert!(
        mail.email_query_sort_options
            .contains(&"receivedAt".to_owned())
    );
    // An unprovisioned account (Cyrus C5) has null accountCapabilities.
    assert!(
        s.account(&AccountId::new("ghost"))
            .unwrap()
            .account_capabilities
            .is_empty()
    );
    debug_golden("session_cyrus", &s);
}

#[test]
fn response_not_a_session() {
    let url = Url::parse("https://example.org/x").unwrap();
    for (body, want) in [
        (&b"[1,2]"[..], "not a JSON object"),
        (&b"{\"capabilities\":{}}"[..], "no urn:ietf:params:jmap:core capability"),
        (&b"{\"capabilities\":{\"urn:ietf:params:jmap:core\":{}},\"downloadUrl\":\"/d\",\"uploadUrl\":\"/u\"}"[..], "no apiUrl"),
        (&b"{\"capabilities\":[]}"[..], "malformed Session members"),
    ] {
        match Session::parse(body, &url) {
            Err(Error::NotJmap { reason: NotJmapReason::InvalidSession(r), .. }) => assert_eq!(r, want),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        Session::parse(b"<html>", &url),
        Err(Error::NotJmap {
            reason: NotJmapReason::NotJson { .. },
            source: Some(_),
            ..
        })
    ));
}

/// Rebuilds the request a recorded response answers, so its handles match the call ids.
fn replay<F: FnOnce(&mut RequestBuilder) -> R, R>(file: &str, build: F) -> (R, Response) {
    let mut req = RequestBuilder::new();
    let handles = build(&mut req);
    let resp = Response::from_json(&golden_input(&format!("responses/{file}"))).unwrap();
    (handles, resp)
}

#[test]
fn response_query_and_get_with_body_values() {
    let ((q, g), mut resp) = replay("query_get.json", |req| {
        let q = req.call(Query::<Email>::new(&acct()));
        let g = req.call(Get::<Email>::new(&acct()).ids(q.ids()));
        (q, g)
    });
    let qr = resp.take(&q).unwrap();
    assert_eq!(qr.total, Some(1000));
    let gr = resp.take(&g).unwrap();
    let e = &gr.list[0];
    assert!(e.has_keyword("$SEEN"));
    assert_eq!(
        e.text_body_text().as_deref(),
        Some("Hello Bob,\nsee you.\n")
    );
    assert_eq!(
        e.received_at,
        Some(Utc.with_ymd_and_hms(2026, 11, 24, 15, 40, 35).unwrap())
    );
    // A malformed date does not fail the response.
    assert_eq!(gr.list[1].received_at, None);
    assert!(gr.list[1].other.contains_key("header:List-Id:asText"));
    debug_golden("query_get", &(qr, gr));
}

#[test]
fn response_cyrus_set_with_nulls_and_item_errors() {
    let (s, mut resp) = replay("email_set_cyrus.json", |req| {
        req.call(Set::<Email>::new(&acct()))
    });
    let r = resp.take(&s).unwrap();
    assert!(
        r.created.is_empty() && r.not_created.is_empty(),
        "null maps read as empty"
    );
    assert_eq!(r.updated.len(), 1);
    assert_eq!(
        r.not_updated[&EmailId::new("Mgone")].kind,
        SetErrorType::NotFound
    );
    let props = &r.not_destroyed[&EmailId::new("Mbad")];
    assert_eq!(props.kind, SetErrorType::Other("somethingNew".into()));
    match r.check() {
        Err(Error::SetItem {
            operation: SetOperation::Update,
            id,
            error,
        }) => {
            assert_eq!(id, "Mgone");
            assert_eq!(error.kind, SetErrorType::NotFound);
        }
        other => panic!("{other:?}"),
    }
    debug_golden("email_set_cyrus", &r);
}

#[test]
fn response_method_errors_are_typed() {
    let ((a, b, c), mut resp) = replay("method_errors.json", |req| {
        (
            req.call(Set::<Email>::new(&acct())),
            req.call(Changes::<Email>::new(&acct(), &State::new("0"))),
            req.call(Get::<Email>::new(&acct())),
        )
    });
    let e = resp.take(&a).unwrap_err();
    let m = e.method_error().unwrap();
    assert_eq!(m.kind, MethodErrorType::StateMismatch);
    assert_eq!(
        (
            m.method.as_str(),
            m.call_id.as_str(),
            m.description.as_deref()
        ),
        ("Email/set", "c0", None)
    );
    assert_eq!(
        resp.take(&b).unwrap_err().method_error_type(),
        Some(MethodErrorType::CannotCalculateChanges)
    );
    let unknown = resp.take(&c).unwrap_err();
    let m = unknown.method_error().unwrap();
    assert_eq!(
        m.kind,
        MethodErrorType::ServerFail,
        "unknown types are serverFail (RFC 8620 §3.6.2)"
    );
    assert_eq!(m.type_name, "brandNewError");
    assert!(m.is_unknown_type());
}

#[test]
fn response_import_without_states_and_already_exists() {
    let (i, mut resp) = replay("email_import_cyrus.json", |req| {
        req.call(EmailImport::new(&acct()))
    });
    let r = resp.take(&i).unwrap();
    assert_eq!(r.old_state, None);
    assert_eq!(
        r.created["i1"].id,
        Some(EmailId::new("Ma5f1da92f28aa5ba14fca80f"))
    );
    let dup = &r.not_created["i2"];
    assert_eq!(dup.kind, SetErrorType::AlreadyExists);
    assert_eq!(
        dup.existing_id.as_deref(),
        Some("Ma5f1da92f28aa5ba14fca80f")
    );
    debug_golden("email_import_cyrus", &r);
}

#[test]
fn response_submission_with_implicit_email_set() {
    let ((e, s), mut resp) = replay("submission_cyrus.json", |req| {
        (
            req.call(Set::<Email>::new(&acct())),
            req.call(Set::<EmailSubmission>::new(&acct())),
        )
    });
    let er = resp.take(&e).unwrap();
    let draft = CreationId::<Email>::named("d");
    assert_eq!(er.created(&draft).unwrap().id, Some(EmailId::new("M44a3")));
    let sr = resp.take(&s).unwrap();
    let sub = &sr.created["s"];
    assert_eq!(sub.undo_status, Some(UndoStatus::Final));
    let implicit = resp.take_on_success_email_set(&s).unwrap().unwrap();
    assert!(implicit.updated.contains_key(&EmailId::new("M44a3")));
    assert_eq!(
        resp.created_ids().get("d").map(String::as_str),
        Some("M44a3")
    );
    assert!(resp.take_on_success_email_set(&s).unwrap().is_none());
    debug_golden("submission_cyrus", &(er, sr, implicit));
}

#[test]
fn response_mailboxes_changes_threads_identities() {
    let ((m, c, t, i), mut resp) = replay("mailbox_misc.json", |req| {
        (
            req.call(Get::<Mailbox>::new(&acct())),
            req.call(Changes::<Mailbox>::new(&acct(), &State::new("1"))),
            req.call(Get::<Thread>::new(&acct())),
            req.call(Get::<Identity>::new(&acct())),
        )
    });
    let m = resp.take(&m).unwrap();
    let roles: Vec<Option<MailboxRole>> = m.list.iter().map(|b| b.role.clone()).collect();
    assert_eq!(
        roles,
        [
            Some(MailboxRole::Inbox),
            Some(MailboxRole::Drafts),
            Some(MailboxRole::Other("x-custom".into())),
            None
        ]
    );
    assert!(m.list[0].my_rights.unwrap().may_add_items);
    let c = resp.take(&c).unwrap();
    assert_eq!(
        c.updated_properties.as_deref(),
        Some(&["totalEmails".to_owned(), "unreadEmails".to_owned()][..])
    );
    let t = resp.take(&t).unwrap();
    assert_eq!(t.list[0].email_ids.as_ref().unwrap().len(), 2);
    let i = resp.take(&i).unwrap();
    assert_eq!(i.list[0].email.as_deref(), Some(""));
    debug_golden("mailbox_misc", &(m, c, t, i));
}

#[test]
fn problem_details_golden() {
    let p: ProblemDetails =
        serde_json::from_slice(&golden_input("responses/problem_limit.json")).unwrap();
    assert_eq!(p.problem_type, ProblemType::Limit);
    assert_eq!(p.limit.as_deref(), Some("maxCallsInRequest"));
    let back = serde_json::to_string_pretty(&p).unwrap() + "\n";
    check_golden("responses/problem_limit.roundtrip.json", &back);
}
