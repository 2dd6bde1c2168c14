//! Against the real Cyrus 3.6 of `cargo xtask servers up` (pool users jc1..jc10, one per
//! test; every test re-runs against the same servers: unique names, assertions on deltas).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use futures::StreamExt;
use mailsync_jmap_client::*;

use crate::servers::{
    Servers, imap_append, imap_on_message, lmtp_deliver, message, sink_message, unique, within,
};

async fn roles(client: &Client) -> (AccountId, BTreeMap<MailboxRole, MailboxId>) {
    let account = client.mail_account_id().unwrap();
    let r = client
        .call(Get::<Mailbox>::new(&account).properties(["id", "name", "role"]))
        .await
        .unwrap();
    let map = r
        .list
        .into_iter()
        .filter_map(|m| Some((m.role?, m.id?)))
        .collect();
    (account, map)
}

async fn email_state(client: &Client, account: &AccountId) -> State {
    client
        .call(Get::<Email>::new(account).ids(Vec::new()))
        .await
        .unwrap()
        .state
}

/// Email ids created since `since`, with their subjects.
async fn created_since(
    client: &Client,
    account: &AccountId,
    since: &State,
) -> (BTreeMap<String, EmailId>, State) {
    let mut pager = ChangesPager::<Email>::new(client, account, since)
        .fetch_created(Get::<Email>::new(account).properties(["id", "subject"]));
    let mut out = BTreeMap::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        for e in page.created {
            out.insert(e.subject.unwrap_or_default(), e.id.unwrap());
        }
    }
    (out, pager.state().clone())
}

#[tokio::test]
async fn cyrus_discovery_via_well_known_and_relative_urls() {
    within(60, async {
        let s = Servers::load();
        let base = format!("http://{}:{}", s.0.cyrus_host(), s.0.cyrus_http_port());
        let client = Client::builder()
            .credentials(Credentials::basic("jc1", "testpw"))
            .discover(&base)
            .await
            .unwrap();
        let session = client.session();
        // /.well-known/jmap answered with a 301 to /jmap, which was followed.
        assert_eq!(session.url().as_str(), format!("{base}/jmap"));
        assert_eq!(session.username(), "jc1");
        assert_eq!(
            session.api_url().as_str(),
            format!("{base}/jmap/"),
            "relative apiUrl resolved"
        );
        assert!(session.supports_mail() && session.supports_submission());
        assert!(session.advertises_event_source());
        assert_eq!(session.mail_account_id().unwrap(), AccountId::new("jc1"));
        assert_eq!(session.core().max_calls_in_request, 50);
        let via_url = Client::builder()
            .credentials(Credentials::basic("jc1", "testpw"))
            .connect(s.0.jmap_well_known())
            .await
            .unwrap();
        assert_eq!(via_url.session().api_url(), session.api_url());
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("testpw") && !debug.contains("amMxOnRlc3Rwdw"),
            "credentials leak into Debug"
        );
        let refreshed = client.refresh_session().await.unwrap();
        assert_eq!(refreshed.api_url(), session.api_url());
    })
    .await;
}

#[tokio::test]
async fn cyrus_mailbox_get_with_roles_changes_and_cross_request_creation_ids() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("jc2").await;
        let (account, roles) = roles(&client).await;
        for role in [
            MailboxRole::Inbox,
            MailboxRole::Drafts,
            MailboxRole::Sent,
            MailboxRole::Trash,
            MailboxRole::Junk,
            MailboxRole::Archive,
        ] {
            assert!(roles.contains_key(&role), "missing role {role}: {roles:?}");
        }
        let before = client
            .call(Get::<Mailbox>::new(&account).ids(Vec::new()))
            .await
            .unwrap()
            .state;

        // One logical request, forced into one call per HTTP request: the child refers to
        // its parent by creation id across HTTP requests (createdIds).
        let one_call = Client::builder()
            .credentials(Credentials::basic("jc2", "testpw"))
            .max_calls_in_request(1)
            .connect(s.session_url())
            .await
            .unwrap();
        let mut req = one_call.request();
        let mut set = Set::<Mailbox>::new(&account);
        let parent = set.create(Mailbox::new(unique("parent")));
        let p = req.call(set);
        let mut set = Set::<Mailbox>::new(&account);
        let child = set.create(Mailbox::new(unique("child")).with_parent(parent.reference()));
        let c = req.call(set);
        let get = req.call(
            Get::<Mailbox>::new(&account)
                .ids(vec![child.reference()])
                .properties(["parentId", "name"]),
        );
        let mut resp = one_call.send(req).await.unwrap();
        assert_eq!(resp.http_requests(), 3);
        let parent_id = resp
            .take(&p)
            .unwrap()
            .created_or_error(&parent)
            .unwrap()
            .id
            .clone()
            .unwrap();
        let child_id = resp
            .take(&c)
            .unwrap()
            .created_or_error(&child)
            .unwrap()
            .id
            .clone()
            .unwrap();
        let fetched = resp.take(&get).unwrap();
        assert_eq!(fetched.list[0].parent_id.as_ref(), Some(&parent_id));
        assert_eq!(resp.created_id(&child), Some(child_id.clone()));

        let changes = client
            .call(Changes::<Mailbox>::new(&account, &before))
            .await
            .unwrap();
        let created: HashSet<_> = changes.created.iter().collect();
        assert!(
            created.contains(&parent_id) && created.contains(&child_id),
            "{changes:?}"
        );

        // Clean up (children first), then see the destruction as a change.
        let after = changes.new_state;
        for id in [&child_id, &parent_id] {
            let mut set = Set::<Mailbox>::new(&account);
            set.destroy([id]);
            client.call(set).await.unwrap().check().unwrap();
        }
        let changes = client
            .call(Changes::<Mailbox>::new(&account, &after))
            .await
            .unwrap();
        assert!(changes.destroyed.contains(&child_id) && changes.destroyed.contains(&parent_id));
    })
    .await;
}

#[tokio::test]
async fn cyrus_query_and_get_chained_in_one_request() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("jc3").await;
        let (account, roles) = roles(&client).await;
        let inbox = &roles[&MailboxRole::Inbox];
        let token = unique("qg");
        for i in 0..3 {
            let subject = format!("{token} {i}");
            lmtp_deliver(
                &s,
                "jc3",
                vec![message(
                    "a@example.test",
                    "jc3@example.test",
                    &subject,
                    &unique("mid"),
                )],
            )
            .await;
        }
        let mut req = client.request();
        let q = req.call(
            Query::<Email>::new(&account)
                .filter(EmailFilterCondition::in_mailbox(inbox))
                .sort([
                    Comparator::descending("receivedAt"),
                    Comparator::descending("id"),
                ])
                .limit(10)
                .calculate_total(true),
        );
        let g = req.call(
            Get::<Email>::new(&account)
                .ids(q.ids())
                .properties([
                    "id",
                    "subject",
                    "threadId",
                    "textBody",
                    "bodyValues",
                    "mailboxIds",
                ])
                .fetch_text_body_values(true)
                .max_body_value_bytes(8),
        );
        let t = req.call(Get::<Thread>::new(&account).ids(g.thread_ids()));
        let again = req.call(
            Get::<Email>::new(&account)
                .ids(t.email_ids())
                .properties(["subject"]),
        );
        let mut resp = client.send(req).await.unwrap();
        assert_eq!(resp.http_requests(), 1, "one HTTP request");
        let qr = resp.take(&q).unwrap();
        assert!(qr.total.unwrap() >= 3);
        let gr = resp.take(&g).unwrap();
        assert_eq!(gr.list.len(), qr.ids.len());
        let ours: Vec<&Email> = gr
            .list
            .iter()
            .filter(|e| e.subject.as_deref().is_some_and(|s| s.starts_with(&token)))
            .collect();
        assert_eq!(ours.len(), 3);
        for e in &ours {
            assert!(e.in_mailbox(inbox));
            let values = e.body_values.as_ref().unwrap();
            let v = values.values().next().unwrap();
            assert!(v.is_truncated, "maxBodyValueBytes truncates: {v:?}");
            assert!(v.value.len() <= 8);
        }
        let threads = resp.take(&t).unwrap();
        assert!(!threads.list.is_empty());
        let again = resp.take(&again).unwrap();
        assert!(
            again
                .list
                .iter()
                .filter(|e| e.subject.as_deref().is_some_and(|s| s.starts_with(&token)))
                .count()
                >= 3
        );

        // Email/queryChanges: a new delivery shows up as added at the top.
        let late = format!("{token} late");
        lmtp_deliver(
            &s,
            "jc3",
            vec![message(
                "a@example.test",
                "jc3@example.test",
                &late,
                &unique("mid"),
            )],
        )
        .await;
        let qc = client
            .call(
                QueryChanges::<Email>::new(&account, &qr.query_state)
                    .filter(EmailFilterCondition::in_mailbox(inbox))
                    .sort([
                        Comparator::descending("receivedAt"),
                        Comparator::descending("id"),
                    ])
                    .calculate_total(true),
            )
            .await
            .unwrap();
        assert_eq!(qc.old_query_state, qr.query_state);
        assert_eq!(qc.added.len(), 1, "{qc:?}");
        // Near the top (receivedAt has one-second resolution, the id breaks the tie).
        assert!(qc.added[0].index < 4, "{qc:?}");
        let added = client
            .call(
                Get::<Email>::new(&account)
                    .ids(vec![qc.added[0].id.clone()])
                    .properties(["subject"]),
            )
            .await
            .unwrap();
        assert_eq!(added.list[0].subject.as_deref(), Some(late.as_str()));
        assert_eq!(qc.total, Some(qr.total.unwrap() + 1));

        // Full-text search and snippets (Xapian): the index lags the delivery slightly.
        let mut found = false;
        for _ in 0..50 {
            let text = EmailFilterCondition {
                text: Some(token.clone()),
                ..Default::default()
            };
            let mut req = client.request();
            let q = req.call(Query::<Email>::new(&account).filter(text.clone()));
            let sn = req.call(SearchSnippetGet::new(&account, text, q.ids()));
            let mut resp = client.send(req).await.unwrap();
            let ids = resp.take(&q).unwrap().ids;
            let snippets = resp.take(&sn).unwrap();
            if ids.len() == 4 {
                assert_eq!(snippets.list.len(), 4);
                assert!(
                    snippets
                        .list
                        .iter()
                        .all(|s| s.subject.as_deref().is_some_and(|x| x.contains("<mark>")))
                );
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "the four messages never became searchable");
    })
    .await;
}

#[tokio::test]
async fn cyrus_paging_through_more_than_500_emails() {
    within(240, async {
        let s = Servers::load();
        let client = s.client("jc4").await;
        let (account, _) = roles(&client).await;
        let name = unique("paging");
        let mut set = Set::<Mailbox>::new(&account);
        let mcid = set.create(Mailbox::new(name.clone()));
        let mailbox = client
            .call(set)
            .await
            .unwrap()
            .created_or_error(&mcid)
            .unwrap()
            .id
            .clone()
            .unwrap();

        let token = unique("pg");
        let msgs: Vec<Vec<u8>> = (0..520)
            .map(|i| {
                message(
                    "a@example.test",
                    "jc4@example.test",
                    &format!("{token} {i:03}"),
                    &unique("mid"),
                )
            })
            .collect();
        imap_append(&s, "jc4", &name, msgs).await;

        let query = Query::<Email>::new(&account)
            .filter(EmailFilterCondition::in_mailbox(&mailbox))
            .sort([
                Comparator::ascending("receivedAt"),
                Comparator::ascending("id"),
            ]);
        let get = Get::<Email>::new(&account).properties(["id", "subject"]);
        for anchor in [true, false] {
            let mut pager = QueryPager::new(&client, query.clone(), get.clone(), 100);
            if !anchor {
                pager = pager.position_paging();
            }
            let mut ids = Vec::new();
            let mut pages = 0;
            while let Some(page) = pager.next_page().await.unwrap() {
                pages += 1;
                assert_eq!(page.objects.len(), page.ids.len());
                if pages == 1 {
                    assert_eq!(page.total, Some(520));
                }
                ids.extend(page.ids);
            }
            assert_eq!(pages, 6, "anchor paging: {anchor}");
            assert_eq!(ids.len(), 520);
            assert_eq!(
                ids.iter().collect::<HashSet<_>>().len(),
                520,
                "no duplicates"
            );
            assert!(pager.first_state().is_some());
        }

        // The anchor vanishes between two pages: paging resumes by position, one page back,
        // and still sees every remaining email (some twice).
        let mut pager = QueryPager::new(&client, query.clone(), get.clone(), 100);
        let first = pager.next_page().await.unwrap().unwrap();
        let anchor = first.ids.last().unwrap().clone();
        let mut set = Set::<Email>::new(&account);
        set.destroy([&anchor]);
        client.call(set).await.unwrap().check().unwrap();
        let mut seen: HashSet<EmailId> = first.ids.into_iter().collect();
        let mut fetched = 0;
        while let Some(page) = pager.next_page().await.unwrap() {
            fetched += page.ids.len();
            seen.extend(page.ids);
        }
        assert!(pager.query_changed());
        assert!(fetched >= 419, "{fetched}");
        seen.remove(&anchor);
        assert_eq!(seen.len(), 519, "every remaining email was seen");

        // Literal ids beyond maxObjectsInGet/maxCallsInRequest (capped low) are split.
        let capped = Client::builder()
            .credentials(Credentials::basic("jc4", "testpw"))
            .max_objects_in_get(100)
            .max_objects_in_set(200)
            .max_calls_in_request(4)
            .connect(s.session_url())
            .await
            .unwrap();
        let all = capped.call(query.clone().limit(1000)).await.unwrap().ids;
        assert_eq!(all.len(), 519);
        let mut req = capped.request();
        let g = req.call(
            Get::<Email>::new(&account)
                .ids(all.clone())
                .properties(["subject"]),
        );
        let mut resp = capped.send(req).await.unwrap();
        assert_eq!(resp.http_requests(), 2, "6 pieces, 4 per request");
        let got = resp.take(&g).unwrap();
        assert_eq!(got.list.len(), 519);
        let got_ids: Vec<EmailId> = got.list.into_iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(got_ids, all, "merged in request order");

        // Clean up with a split destroy (3 pieces chained by ifInState), then the mailbox.
        let state = email_state(&capped, &account).await;
        let mut set = Set::<Email>::new(&account).if_in_state(&state);
        set.destroy(&all);
        let destroyed = capped.call(set).await.unwrap();
        assert_eq!(destroyed.destroyed.len(), 519);
        assert_eq!(destroyed.old_state.as_ref(), Some(&state));
        let mut set = Set::<Mailbox>::new(&account);
        set.destroy([&mailbox]);
        client.call(set).await.unwrap().check().unwrap();
    })
    .await;
}

#[tokio::test]
async fn cyrus_email_changes_after_lmtp_imap_flag_and_expunge() {
    within(90, async {
        let s = Servers::load();
        let client = s.client("jc5").await;
        let (account, roles) = roles(&client).await;
        let inbox = roles[&MailboxRole::Inbox].clone();
        let state0 = email_state(&client, &account).await;

        let mid = unique("mid");
        let subject = unique("changes");
        lmtp_deliver(
            &s,
            "jc5",
            vec![message(
                "a@example.test",
                "jc5@example.test",
                &subject,
                &mid,
            )],
        )
        .await;
        let (created, state1) = created_since(&client, &account, &state0).await;
        let id = created
            .get(&subject)
            .cloned()
            .unwrap_or_else(|| panic!("{subject} not created: {created:?}"));

        // Another client flags it over IMAP.
        imap_on_message(&s, "jc5", &mid, &["UID STORE {uid} +FLAGS (\\Flagged)"]).await;
        let mut pager = ChangesPager::<Email>::new(&client, &account, &state1).fetch_updated(
            Get::<Email>::new(&account).properties(["id", "keywords", "mailboxIds"]),
        );
        let mut updated = Vec::new();
        while let Some(page) = pager.next_page().await.unwrap() {
            assert!(page.changes.created.is_empty());
            updated.extend(page.updated);
        }
        let e = updated
            .iter()
            .find(|e| e.id.as_ref() == Some(&id))
            .expect("flag change seen as update");
        assert!(e.has_keyword(keyword::FLAGGED));
        assert!(e.in_mailbox(&inbox));
        let state2 = pager.state().clone();
        assert_ne!(state2, state1);

        // ... and expunges it.
        imap_on_message(
            &s,
            "jc5",
            &mid,
            &["UID STORE {uid} +FLAGS (\\Deleted)", "UID EXPUNGE {uid}"],
        )
        .await;
        let ch = client
            .call(Changes::<Email>::new(&account, &state2))
            .await
            .unwrap();
        assert!(ch.destroyed.contains(&id), "{ch:?}");

        // hasMoreChanges loop: five deliveries read two at a time.
        let token = unique("loop");
        let state3 = ch.new_state;
        for i in 0..5 {
            lmtp_deliver(
                &s,
                "jc5",
                vec![message(
                    "a@example.test",
                    "jc5@example.test",
                    &format!("{token} {i}"),
                    &unique("mid"),
                )],
            )
            .await;
        }
        let mut pager = ChangesPager::<Email>::new(&client, &account, &state3)
            .max_changes(2)
            .fetch_created(Get::<Email>::new(&account).properties(["subject"]));
        let mut pages = 0;
        let mut subjects = BTreeSet::new();
        while let Some(page) = pager.next_page().await.unwrap() {
            pages += 1;
            assert!(
                page.changes.created.len()
                    + page.changes.updated.len()
                    + page.changes.destroyed.len()
                    <= 2
            );
            subjects.extend(page.created.into_iter().filter_map(|e| e.subject));
        }
        assert!(
            pages >= 3,
            "maxChanges 2 over 5 creations took {pages} pages"
        );
        assert_eq!(subjects.iter().filter(|s| s.starts_with(&token)).count(), 5);
    })
    .await;
}

#[tokio::test]
async fn cyrus_stale_if_in_state_is_a_typed_state_mismatch() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("jc6").await;
        let (account, _) = roles(&client).await;
        let state0 = email_state(&client, &account).await;
        let token = unique("stale");
        for i in 0..3 {
            lmtp_deliver(
                &s,
                "jc6",
                vec![message(
                    "a@example.test",
                    "jc6@example.test",
                    &format!("{token} {i}"),
                    &unique("mid"),
                )],
            )
            .await;
        }
        let (created, current) = created_since(&client, &account, &state0).await;
        let ids: Vec<EmailId> = created
            .iter()
            .filter(|(s, _)| s.starts_with(&token))
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(ids.len(), 3);

        let mut set = Set::<Email>::new(&account).if_in_state(&state0);
        set.update(&ids[0], Patch::new().keyword(keyword::SEEN, true));
        let err = client.call(set).await.unwrap_err();
        let m = err.method_error().unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(m.kind, MethodErrorType::StateMismatch);
        assert_eq!(m.method, "Email/set");

        // Split into one update per call, chained by #ifInState: a stale state applies nothing.
        let split = Client::builder()
            .credentials(Credentials::basic("jc6", "testpw"))
            .max_objects_in_set(1)
            .connect(s.session_url())
            .await
            .unwrap();
        let mut set = Set::<Email>::new(&account).if_in_state(&state0);
        for id in &ids {
            set.update(id, Patch::new().keyword("$stale", true));
        }
        assert_eq!(
            split.call(set).await.unwrap_err().method_error_type(),
            Some(MethodErrorType::StateMismatch)
        );
        let mut set = Set::<Email>::new(&account).if_in_state(&current);
        for id in &ids {
            set.update(id, Patch::new().keyword(keyword::SEEN, true));
        }
        let r = split.call(set).await.unwrap();
        assert_eq!(r.updated.len(), 3);
        assert_eq!(r.old_state.as_ref(), Some(&current));
        let got = client
            .call(
                Get::<Email>::new(&account)
                    .ids(ids.clone())
                    .properties(["keywords"]),
            )
            .await
            .unwrap();
        for e in got.list {
            assert!(e.has_keyword(keyword::SEEN));
            assert!(
                !e.has_keyword("$stale"),
                "the stale split set applied nothing"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn cyrus_blob_upload_import_download() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("jc7").await;
        let (account, roles) = roles(&client).await;
        let inbox = roles[&MailboxRole::Inbox].clone();
        let raw = message(
            "a@example.test",
            "jc7@example.test",
            &unique("import"),
            &unique("mid"),
        );

        // Streamed from a reader, without a length (chunked body).
        let up = client
            .upload(
                &account,
                "message/rfc822",
                std::io::Cursor::new(raw.clone()),
                None,
            )
            .await
            .unwrap();
        assert_eq!(up.size, raw.len() as u64);
        // The same bytes with a length give the same blob.
        let up2 = client
            .upload_bytes(&account, "message/rfc822", raw.clone())
            .await
            .unwrap();
        assert_eq!(up2.blob_id, up.blob_id);

        let mut req = client.request();
        let mut import = EmailImport::new(&account);
        let i1 =
            import.email(EmailImportItem::new(up.blob_id.clone(), [&inbox]).keyword(keyword::SEEN));
        let ih = req.call(import);
        let g = req.call(
            Get::<Email>::new(&account)
                .ids(vec![i1.reference()])
                .properties(["keywords", "blobId"]),
        );
        let mut resp = client.send(req).await.unwrap();
        let imported = resp.take(&ih).unwrap();
        let email = imported
            .created(&i1)
            .unwrap_or_else(|| panic!("{imported:?}"));
        let id = email.id.clone().unwrap();
        let got = resp.take(&g).unwrap();
        assert_eq!(
            got.list[0].id.as_ref(),
            Some(&id),
            "creation reference resolved in the same request"
        );
        assert!(got.list[0].has_keyword(keyword::SEEN));

        let mut out = Vec::new();
        let n = client
            .download(
                &account,
                email.blob_id.as_ref().unwrap(),
                "m.eml",
                "message/rfc822",
                &mut out,
            )
            .await
            .unwrap();
        assert_eq!(n as usize, raw.len());
        assert_eq!(out, raw);
        assert_eq!(
            client
                .download_bytes(&account, &up.blob_id, 1 << 20)
                .await
                .unwrap(),
            raw
        );
        assert!(matches!(
            client.download_bytes(&account, &up.blob_id, 10).await,
            Err(Error::Io { .. })
        ));

        // Importing identical bytes again: alreadyExists with the existing id (Cyrus C13).
        let mut import = EmailImport::new(&account);
        let i2 = import.email(EmailImportItem::new(up.blob_id.clone(), [&inbox]));
        let again = client.call(import).await.unwrap();
        let e = again.not_created(&i2).unwrap();
        assert_eq!(e.kind, SetErrorType::AlreadyExists);
        assert_eq!(e.existing_id.as_deref(), Some(id.as_str()));

        // Unknown blob: typed per-item error.
        let mut import = EmailImport::new(&account);
        let i3 = import.email(EmailImportItem::new(BlobId::new("Gdoesnotexist"), [&inbox]));
        let r = client.call(import).await.unwrap();
        assert!(r.not_created(&i3).is_some(), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn cyrus_draft_and_submission_in_one_request_reach_the_sink_and_move_to_sent() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("jc8").await;
        let (account, roles) = roles(&client).await;
        let drafts = roles[&MailboxRole::Drafts].clone();
        let sent = roles[&MailboxRole::Sent].clone();
        let identities = client.call(Get::<Identity>::new(&account)).await.unwrap();
        let identity = identities.list[0].id.clone().unwrap();

        let mid = unique("sub");
        let subject = unique("submission");
        let mut req = client.request();
        let mut set = Set::<Email>::new(&account);
        let draft = set.create(Email {
            mailbox_ids: Some([(drafts.clone(), true)].into()),
            keywords: Some(
                [
                    (keyword::DRAFT.to_owned(), true),
                    (keyword::SEEN.to_owned(), true),
                ]
                .into(),
            ),
            from: Some(vec![EmailAddress::new("jc8@example.test")]),
            to: Some(vec![EmailAddress::new("bob@example.test")]),
            subject: Some(subject.clone()),
            message_id: Some(vec![mid.clone()]),
            body_values: Some([("b".to_owned(), EmailBodyValue::new("hello\n"))].into()),
            text_body: Some(vec![EmailBodyPart::from_value("b", "text/plain")]),
            ..Default::default()
        });
        let e = req.call(set);
        let mut sub = Set::<EmailSubmission>::new(&account);
        let sc = sub.create(
            EmailSubmission::new(identity, draft.reference())
                .with_envelope(Envelope::new("jc8@example.test", ["bob@example.test"])),
        );
        sub.on_success_update_email(
            &sc,
            Patch::new()
                .mailbox(&drafts, false)
                .mailbox(&sent, true)
                .keyword(keyword::DRAFT, false),
        );
        let sh = req.call(sub);
        let mut resp = client.send(req).await.unwrap();
        assert_eq!(resp.http_requests(), 1);
        let email_id = resp
            .take(&e)
            .unwrap()
            .created_or_error(&draft)
            .unwrap()
            .id
            .clone()
            .unwrap();
        let subr = resp.take(&sh).unwrap();
        subr.created_or_error(&sc).unwrap();
        let implicit = resp
            .take_on_success_email_set(&sh)
            .unwrap()
            .expect("implicit Email/set");
        assert!(implicit.updated.contains_key(&email_id), "{implicit:?}");

        let sent_msg = sink_message(&s, &mid).await;
        assert!(String::from_utf8_lossy(&sent_msg.raw).contains(&subject));
        assert_eq!(sent_msg.mail_from, "jc8@example.test");
        assert_eq!(sent_msg.rcpt_tos, ["bob@example.test"]);

        let after = client
            .call(
                Get::<Email>::new(&account)
                    .ids(vec![email_id])
                    .properties(["mailboxIds", "keywords"]),
            )
            .await
            .unwrap();
        let email = &after.list[0];
        assert!(
            email.in_mailbox(&sent) && !email.in_mailbox(&drafts),
            "{email:?}"
        );
        assert!(!email.has_keyword(keyword::DRAFT));

        // onSuccessDestroyEmail: send, then the draft disappears.
        let mid2 = unique("sub2");
        let mut req = client.request();
        let mut set = Set::<Email>::new(&account);
        let draft2 = set.create(Email {
            mailbox_ids: Some([(drafts.clone(), true)].into()),
            from: Some(vec![EmailAddress::new("jc8@example.test")]),
            to: Some(vec![EmailAddress::new("carol@example.test")]),
            subject: Some(unique("destroy-on-success")),
            message_id: Some(vec![mid2.clone()]),
            body_values: Some([("b".to_owned(), EmailBodyValue::new("bye\n"))].into()),
            text_body: Some(vec![EmailBodyPart::from_value("b", "text/plain")]),
            ..Default::default()
        });
        let e = req.call(set);
        let mut sub = Set::<EmailSubmission>::new(&account);
        let sc2 = sub.create(EmailSubmission::new(
            identities.list[0].id.clone().unwrap(),
            draft2.reference(),
        ));
        sub.on_success_destroy_email(&sc2);
        let sh = req.call(sub);
        let mut resp = client.send(req).await.unwrap();
        let id2 = resp
            .take(&e)
            .unwrap()
            .created_or_error(&draft2)
            .unwrap()
            .id
            .clone()
            .unwrap();
        resp.take(&sh).unwrap().created_or_error(&sc2).unwrap();
        let implicit = resp
            .take_on_success_email_set(&sh)
            .unwrap()
            .expect("implicit Email/set");
        assert_eq!(implicit.destroyed, std::slice::from_ref(&id2));
        let second = sink_message(&s, &mid2).await;
        assert_eq!(
            second.rcpt_tos,
            ["carol@example.test"],
            "envelope derived from the headers"
        );
        let gone = client
            .call(Get::<Email>::new(&account).ids(vec![id2.clone()]))
            .await
            .unwrap();
        assert_eq!(gone.not_found, [id2]);
    })
    .await;
}

#[tokio::test]
async fn cyrus_connection_test_errors_are_typed() {
    within(60, async {
        let s = Servers::load();
        let wrong = Client::builder()
            .credentials(Credentials::basic("jc9", "not-the-password"))
            .connect(s.session_url())
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, Error::Unauthorized { status: 401 }),
            "{wrong:?}"
        );

        let root = format!("http://{}:{}/", s.0.cyrus_host(), s.0.cyrus_http_port());
        let not_jmap = Client::builder()
            .credentials(Credentials::basic("jc9", "testpw"))
            .connect(&root)
            .await
            .unwrap_err();
        assert!(
            matches!(
                not_jmap,
                Error::NotJmap {
                    reason: NotJmapReason::Status(404),
                    ..
                }
            ),
            "{not_jmap:?}"
        );

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let unreachable = Client::builder()
            .connect(&format!("http://127.0.0.1:{port}/jmap/"))
            .await
            .unwrap_err();
        match &unreachable {
            Error::Transport(t) => {
                assert_eq!(t.kind(), TransportErrorKind::Connect, "{unreachable:?}")
            }
            other => panic!("{other:?}"),
        }

        // Dovecot's IMAPS port has a self-signed certificate: a TLS failure.
        let imaps = format!("https://127.0.0.1:{}/", s.0.dovecot_imaps_port());
        let tls = Client::builder().connect(&imaps).await.unwrap_err();
        match &tls {
            Error::Transport(t) => assert_eq!(t.kind(), TransportErrorKind::Tls, "{tls:?}"),
            other => panic!("{other:?}"),
        }
        // Trusting the test CA fixes the handshake; then the peer simply does not speak HTTP.
        let pem = s.0.tls_ca_pem().unwrap();
        let trusted = Client::builder()
            .add_root_certificates_pem(&pem)
            .request_timeout(Duration::from_secs(5))
            .connect(&imaps)
            .await
            .unwrap_err();
        match &trusted {
            Error::Transport(t) => assert_ne!(t.kind(), TransportErrorKind::Tls, "{trusted:?}"),
            other => panic!("{other:?}"),
        }
        let insecure = Client::builder()
            .connect("http://192.0.2.1/.well-known/jmap")
            .await
            .unwrap_err();
        assert!(
            matches!(insecure, Error::InsecureUrl { .. }),
            "{insecure:?}"
        );
        let bad_pem = Client::builder()
            .add_root_certificates_pem(b"junk")
            .connect(s.session_url())
            .await
            .unwrap_err();
        assert!(matches!(bad_pem, Error::Config(_)), "{bad_pem:?}");
    })
    .await;
}

#[tokio::test]
async fn cyrus_push_is_reported_unavailable() {
    within(30, async {
        let s = Servers::load();
        let client = s.client("jc10").await;
        let mut stream = client
            .event_source(PushConfig::default().types(["Email", "Mailbox"]))
            .unwrap();
        match stream.next().await {
            Some(Err(Error::PushUnavailable {
                reason: PushUnavailableReason::NoContent,
            })) => {}
            other => panic!("expected push unavailable (204), got {other:?}"),
        }
        assert!(
            stream.next().await.is_none(),
            "the stream ends after a final error"
        );
    })
    .await;
}
