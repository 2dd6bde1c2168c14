//! Store tests on both SQLite and PostgreSQL: migrations (fresh, up/down/up, v7 -> v8 and
//! v8 -> v9 with data), account leases (one owner, expiry, heartbeat, wake requests, racing
//! acquirers),
//! repository round trips, transactional checkpoints and a 10,000-email batched insert.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use mailsync_store::accounts::{self, Endpoint, NewAccount};
use mailsync_store::checkpoints::{self, Checkpoint, Scope};
use mailsync_store::emails::{self, Attachment, EmailFilter, EmailUpsert, Membership};
use mailsync_store::leases;
use mailsync_store::mailboxes::{self, MailboxStatus, MailboxUpsert};
use mailsync_store::queue::{self, ChangeState, ChangeUpdate, NewChange};
use mailsync_store::sync_log::{self, CycleStatus, SyncCounts};
use mailsync_store::testing::TempDb;
use mailsync_store::{
    AccountId, AccountKind, Address, BodyPolicy, ConnectionTrait, Flags, Role, SecretRef, Security,
    Store, StoreError, TransactionTrait, bodies,
};

type R = Result<(), Box<dyn std::error::Error>>;

/// Runs a test body against a fresh SQLite file and a fresh PostgreSQL database.
macro_rules! both_backends {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> super::R {
                let db = super::TempDb::sqlite_unmigrated().await?;
                let res = super::$body(&db.store).await;
                db.cleanup().await?;
                res
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> super::R {
                let db = super::TempDb::postgres_unmigrated().await.map_err(|e| format!(
                    "PostgreSQL is required for this test (MAILSYNC_PG_URL or {}): {e}",
                    mailsync_store::testing::DEFAULT_PG_URL))?;
                let res = super::$body(&db.store).await;
                db.cleanup().await?;
                res
            })*
        }
    };
}

both_backends! {
    fresh_migrate => fresh_migrate;
    up_down_up => up_down_up;
    v7_upgrade_keeps_rows => v7_upgrade_keeps_rows;
    v8_upgrade_keeps_rows => v8_upgrade_keeps_rows;
    lease_one_owner_expiry_and_wakes => lease_one_owner_expiry_and_wakes;
    lease_racing_acquirers_one_wins => lease_racing_acquirers_one_wins;
    fleet_leases_and_daemons => fleet_leases_and_daemons;
    account_round_trip => account_round_trip;
    mailbox_roles_and_removal => mailbox_roles_and_removal;
    email_upsert_round_trip => email_upsert_round_trip;
    checkpoint_commits_with_batch => checkpoint_commits_with_batch;
    queue_and_failed => queue_and_failed;
    sync_log_rows => sync_log_rows;
    bulk_insert_10000 => bulk_insert_10000;
    body_debt_wanted_missing => body_debt_wanted_missing;
    v13_upgrade_marks_cached_bodies => v13_upgrade_marks_cached_bodies;
    v14_upgrade_rebuilds_search_docs => v14_upgrade_rebuilds_search_docs;
    v16_upgrade_rebuilds_documents => v16_upgrade_rebuilds_documents;
    v19_upgrade_compresses_bodies_with_lz4 => v19_upgrade_compresses_bodies_with_lz4;
    bodies_stored_many_at_once => bodies_stored_many_at_once;
    a_body_written_with_its_email_marks_it_cached_in_place => a_body_written_with_its_email_marks_it_cached_in_place;
    planner_statistics_follow_a_growing_store => planner_statistics_follow_a_growing_store;
    v9_upgrade_threads_and_indexes => v9_upgrade_threads_and_indexes;
    threads_local_incremental => threads_local_incremental;
    thread_merges_chain_and_v18 => thread_merges_chain_and_v18;
    search_local_language_and_upkeep => search_local_language_and_upkeep;
    search_indexer_beside_an_open_writer => search_indexer_beside_an_open_writer;
    search_phrases_are_words_in_a_row_within_one_field => search_phrases_are_words_in_a_row_within_one_field;
    a_hostile_header_is_stored_and_does_not_hold_the_index_back => a_hostile_header_is_stored_and_does_not_hold_the_index_back;
    uid_ranges_delete_exactly => uid_ranges_delete_exactly;
    optimistic_copies_rematch_only_without_queued_changes => optimistic_copies_rematch_only_without_queued_changes;
    retired_identities_free_the_old_ones => retired_identities_free_the_old_ones;
    read_then_write_beside_a_committing_writer => read_then_write_beside_a_committing_writer;
}

const TABLES: &[&str] = &[
    "accounts",
    "mailboxes",
    "emails",
    "email_mailboxes",
    "email_bodies",
    "attachments",
    "sync_state",
    "pending_changes",
    "failed_mutations",
    "sync_log",
    "account_leases",
    "sync_daemons",
    "thread_links",
    "thread_merges",
];

/// The index is filled beside a writer's open transaction without waiting for it, and what
/// the writer changes is indexed once it commits: an email re-titled while its note waits
/// (PostgreSQL: the writer's trigger holds the note, so the indexer leaves it; v18's
/// triggers took no lock, and the indexer indexed the old title and dropped the note), and
/// an email being deleted (left alone, then gone from the index).
async fn search_indexer_beside_an_open_writer(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("beside")).await?.id;
    let inbox = mailboxes::upsert(c, acc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    emails::upsert_batch(
        c,
        acc,
        &[
            msg("x", inbox, 1, "alpha report", None),
            msg("y", inbox, 2, "gamma notes", None),
        ],
    )
    .await?;
    let step = || tokio::time::timeout(std::time::Duration::from_secs(3), store.index_noted(1_000));
    // The re-title, while the note of the insert still waits.
    let txn = store.begin().await?;
    emails::upsert_batch(&txn, acc, &[msg("x", inbox, 1, "omega report", None)]).await?;
    while step().await?? > 0 {}
    txn.commit().await?;
    assert_eq!(
        found_words(store, &["alpha", "omega", "gamma"]).await?,
        ["omega", "gamma"],
        "the committed title, not the one read beside the writer"
    );
    // The deletion, of an email whose note waits (a committed re-title).
    emails::upsert_batch(c, acc, &[msg("y", inbox, 2, "gamma memo", None)]).await?;
    let txn = store.begin().await?;
    emails::delete_by_remote_ids(&txn, acc, &["y".to_owned()]).await?;
    emails::upsert_batch(&txn, acc, &[msg("z", inbox, 3, "delta", None)]).await?;
    while step().await?? > 0 {}
    txn.commit().await?;
    assert_eq!(
        found_words(store, &["gamma", "memo", "delta"]).await?,
        ["delta"]
    );
    while step().await?? > 0 {}
    store.collect_noted().await?;
    assert_eq!(count(store, "search_pending").await?, 0);

    // PostgreSQL: the lowest notes name emails a writer holds (a deletion between locking
    // its rows and its trigger's noting them, here a `FOR UPDATE`); a small step still
    // takes the notes behind them, and its loop does not stop while they wait.
    if store.backend() == mailsync_store::Backend::Postgres {
        emails::upsert_batch(
            c,
            acc,
            &[
                msg("p", inbox, 4, "pfirst", None),
                msg("q", inbox, 5, "qsecond", None),
                msg("s", inbox, 6, "sthird", None),
            ],
        )
        .await?;
        let held = store.begin().await?;
        held.execute_unprepared("SELECT id FROM emails WHERE remote_id IN ('p', 'q') FOR UPDATE")
            .await?;
        let small =
            || tokio::time::timeout(std::time::Duration::from_secs(3), store.index_noted(2));
        let mut moved = 0;
        loop {
            match small().await?? {
                0 => break,
                n => moved += n,
            }
        }
        assert_eq!(moved, 1, "the note behind the held emails");
        assert_eq!(
            scalar(
                store,
                "SELECT COUNT(*) FROM email_search s JOIN emails e ON e.id = s.email_id \
                 WHERE e.remote_id = 's'"
            )
            .await?,
            1,
            "indexed beside the held emails, without a search's catching up"
        );
        assert_eq!(count(store, "search_pending").await?, 2);
        // The deletion commits: its notes are dropped, not indexed.
        emails::delete_by_remote_ids(&held, acc, &["p".to_owned(), "q".to_owned()]).await?;
        held.commit().await?;
        assert_eq!(small().await??, 2);
        assert_eq!(count(store, "search_pending").await?, 0);
        assert_eq!(found_words(store, &["pfirst", "sthird"]).await?, ["sthird"]);
    }
    Ok(())
}

/// VANISHED's ranges delete exactly the copies they name, in that mailbox only: single UIDs,
/// short ranges (listed) and long ones (by bounds), either bound first, overlapping, more
/// singles than one statement lists, UIDs the store never had.
async fn uid_ranges_delete_exactly(store: &Store) -> R {
    use mailsync_store::uids;
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("vanished")).await?.id;
    let boxes = mailboxes::upsert(
        c,
        acc,
        &[mbox("INBOX", Some(Role::Inbox)), mbox("Other", None)],
    )
    .await?;
    let (inbox, other) = (boxes[0].id, boxes[1].id);
    let n: i64 = 3_000;
    for (mailbox, tag) in [(inbox, "i"), (other, "o")] {
        let batch: Vec<EmailUpsert> = (1..=n)
            .map(|uid| email(&format!("{tag}{uid}"), mailbox, uid))
            .collect();
        for part in batch.chunks(500) {
            emails::upsert_batch(c, acc, part).await?;
        }
    }
    // Every third UID from 1 to 2,400 singly (800 of them: two lists), 2,500:2,510 written
    // backwards, 2,600:2,999 by bounds, 2,990 again inside it, and 5,000:5,010 never stored.
    let mut ranges: Vec<(u32, u32)> = (1..=2_400).step_by(3).map(|u| (u, u)).collect();
    ranges.extend([
        (2_510, 2_500),
        (2_600, 2_999),
        (2_990, 2_990),
        (5_000, 5_010),
    ]);
    let expect: std::collections::BTreeSet<i64> = (1..=2_400)
        .step_by(3)
        .chain(2_500..=2_510)
        .chain(2_600..=2_999)
        .collect();
    let txn = store.begin().await?;
    let removed = uids::delete_uid_ranges(&txn, inbox, &ranges).await?;
    txn.commit().await?;
    assert_eq!(removed, expect.len() as u64);
    let left = |mailbox: mailsync_store::MailboxId| async move {
        let rows = store
            .conn()
            .query_all_raw(sea_orm::Statement::from_string(
                store.conn().get_database_backend(),
                format!(
                    "SELECT uid FROM email_mailboxes WHERE mailbox_id = {} ORDER BY uid",
                    mailbox.0
                ),
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get_by_index::<i64>(0))
            .collect::<Result<std::collections::BTreeSet<i64>, _>>()
    };
    let want: std::collections::BTreeSet<i64> = (1..=n).filter(|u| !expect.contains(u)).collect();
    assert_eq!(left(inbox).await?, want);
    assert_eq!(
        left(other).await?.len(),
        n as usize,
        "the other mailbox untouched"
    );
    Ok(())
}

/// A copy without a UID (an optimistic move's, or one a UIDVALIDITY change detached) is
/// re-matched to a new server message with its Message-ID only when no queued change stands
/// behind it, or the copy's identity is in that mailbox already: whether a queued move made
/// that message is for the flush to read back (model test seeds 4078, 9141).
/// A mailbox renumbered: every identity held in it is retired, including one held by an email
/// no longer in it locally (a queued delete); a message given an old identity again is a new
/// row; a retired copy still in the mailbox is re-matched by Message-ID.
async fn retired_identities_free_the_old_ones(store: &Store) -> R {
    use mailsync_store::uids;
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("retire")).await?.id;
    let boxes = mailboxes::upsert(
        c,
        acc,
        &[mbox("INBOX", Some(Role::Inbox)), mbox("Box", None)],
    )
    .await?;
    let (inbox, bx) = (boxes[0].id, boxes[1].id);
    let (kept, taken_out, elsewhere) = (
        emails::imap_remote_id(bx, 7, 1),
        emails::imap_remote_id(bx, 7, 2),
        emails::imap_remote_id(inbox, 7, 1),
    );
    emails::upsert_batch(
        c,
        acc,
        &[
            email(&kept, bx, 1),
            email(&taken_out, bx, 2),
            email(&elsewhere, inbox, 1),
        ],
    )
    .await?;
    let ids = emails::ids_by_remote_ids(c, acc, &[kept.clone(), taken_out.clone()]).await?;
    let (kept_id, out_id) = (ids[&kept], ids[&taken_out]);
    emails::set_memberships(c, out_id, &[]).await?;

    let txn = store.begin().await?;
    uids::detach_uids(&txn, bx).await?;
    assert_eq!(uids::retire_identities(&txn, acc, bx).await?, 2);
    txn.commit().await?;
    for id in [kept_id, out_id] {
        let rid = emails::get(c, id).await?.remote_id;
        assert_eq!(rid, emails::retired_remote_id(bx, id));
        assert!(emails::is_retired(&rid));
    }
    assert!(!emails::is_retired(&elsewhere));
    assert!(
        emails::find_by_remote_id(c, acc, &elsewhere)
            .await?
            .is_some()
    );
    assert_eq!(uids::retire_identities(c, acc, bx).await?, 0, "idempotent");

    // The old UIDVALIDITY handed out again: UID 2 is another message, a new row.
    let mut other = email(&taken_out, bx, 2);
    other.message_id = Some("other@example.test".into());
    emails::upsert_batch(c, acc, &[other]).await?;
    assert_eq!(emails::count(c, acc).await?, 4);
    assert_eq!(emails::memberships(c, out_id).await?, vec![]);
    // The copy still in Box is found again by its Message-ID.
    let again =
        uids::unmatched_by_message_id(c, acc, bx, &[format!("{kept}@example.test")]).await?;
    assert_eq!(
        again.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![kept_id]
    );
    Ok(())
}

async fn optimistic_copies_rematch_only_without_queued_changes(store: &Store) -> R {
    use mailsync_store::uids;
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("rematch")).await?.id;
    let boxes = mailboxes::upsert(
        c,
        acc,
        &[
            mbox("INBOX", Some(Role::Inbox)),
            mbox("Trash", Some(Role::Trash)),
        ],
    )
    .await?;
    let (inbox, trash) = (boxes[0].id, boxes[1].id);
    // (name, identity's mailbox, queued change states)
    let cases: [(&str, mailsync_store::MailboxId, &[ChangeState]); 5] = [
        (
            "unsent",
            inbox,
            &[ChangeState::Pending, ChangeState::Pending],
        ),
        (
            "handed",
            inbox,
            &[ChangeState::InFlight, ChangeState::Pending],
        ),
        ("lost", inbox, &[ChangeState::Lost]),
        ("detached", trash, &[ChangeState::Pending]),
        ("unqueued", inbox, &[]),
    ];
    let mut ids = std::collections::BTreeMap::new();
    for (uid, (name, home, states)) in (1_u32..).zip(cases) {
        let mut u = email(&emails::imap_remote_id(home, 1, uid), home, i64::from(uid));
        u.message_id = Some(format!("{name}@example.test"));
        emails::upsert_batch(c, acc, &[u]).await?;
        let id = emails::ids_by_remote_ids(c, acc, &[emails::imap_remote_id(home, 1, uid)])
            .await?
            .into_values()
            .next()
            .ok_or("the email row")?;
        emails::set_memberships(
            c,
            id,
            &[Membership {
                mailbox_id: trash,
                uidvalidity: None,
                uid: None,
                modseq: None,
            }],
        )
        .await?;
        for st in states {
            let q = queue::insert(
                c,
                NewChange {
                    account_id: acc,
                    email_id: Some(id),
                    kind: "move".into(),
                    payload: "{}".into(),
                    next_attempt_at: Utc::now(),
                },
            )
            .await?;
            queue::update(
                c,
                q,
                ChangeUpdate {
                    state: Some(*st),
                    ..ChangeUpdate::default()
                },
            )
            .await?;
        }
        ids.insert(id, name);
    }
    let wanted: Vec<String> = ids.values().map(|n| format!("{n}@example.test")).collect();
    let found: std::collections::BTreeSet<&str> =
        uids::unmatched_by_message_id(c, acc, trash, &wanted)
            .await?
            .into_iter()
            .filter_map(|(id, _)| ids.get(&id).copied())
            .collect();
    assert_eq!(
        found,
        ["detached", "unqueued"].into_iter().collect(),
        "an optimistic copy with queued changes is left to the flush's read-back"
    );
    Ok(())
}

/// The first column of the first row of `sql`, an integer.
async fn scalar(store: &Store, sql: &str) -> Result<i64, Box<dyn std::error::Error>> {
    scalar_on(store.conn(), sql).await
}

/// [`scalar`] on a given connection or transaction.
async fn scalar_on<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
) -> Result<i64, Box<dyn std::error::Error>> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn count(store: &Store, table: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let row = store
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            store.conn().get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

async fn fresh_migrate(store: &Store) -> R {
    assert_eq!(store.schema_version().await?, 0);
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    assert_eq!(mailsync_store::LATEST_VERSION, 20);
    for t in TABLES {
        assert_eq!(count(store, t).await?, 0, "{t}");
    }
    // Migrating again is a no-op.
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    Ok(())
}

async fn up_down_up(store: &Store) -> R {
    store.migrate().await?;
    store.migrate_to(0).await?;
    assert_eq!(store.schema_version().await?, 0);
    for t in TABLES {
        assert!(count(store, t).await.is_err(), "{t} should be gone");
    }
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    let acc = accounts::create(store.conn(), new_account("again")).await?;
    mailboxes::upsert(store.conn(), acc.id, &[mbox("INBOX", Some(Role::Inbox))]).await?;
    Ok(())
}

async fn v7_upgrade_keeps_rows(store: &Store) -> R {
    store.migrate_to(7).await?;
    // Populate every table the way a v7 binary would have, with raw SQL (v7 has no role).
    let ts = "2026-01-02 03:04:05+00:00";
    let stmts = [
        format!("INSERT INTO accounts (name, kind, email, username, secret_ref, imap_host, imap_port, imap_security, allow_plaintext, body_policy, created_at, updated_at) VALUES ('old', 'imap', 'a@example.test', 'a', 'env:PW', 'imap.example.test', 993, 'tls', false, 'none', '{ts}', '{ts}')"),
        format!("INSERT INTO mailboxes (account_id, remote_id, name, selectable, total, unread, uidvalidity, uidnext, highestmodseq, created_at, updated_at) VALUES ((SELECT id FROM accounts), 'INBOX', 'INBOX', true, 2, 1, 7, 3, 9, '{ts}', '{ts}')"),
        format!("INSERT INTO mailboxes (account_id, remote_id, name, selectable, total, unread, created_at, updated_at) VALUES ((SELECT id FROM accounts), 'Sent', 'Sent', true, 0, 0, '{ts}', '{ts}')"),
        format!("INSERT INTO emails (account_id, remote_id, message_id, subject, from_addr, to_addr, cc_addr, bcc_addr, reply_to, received_at, size, seen, flagged, answered, draft, keywords, has_attachment, created_at, updated_at) VALUES ((SELECT id FROM accounts), '1/7/1', 'm1@x', 'hello', '[]', '[]', '[]', '[]', '[]', '{ts}', 10, true, false, false, false, '[]', false, '{ts}', '{ts}')"),
        "INSERT INTO email_mailboxes (email_id, mailbox_id, uidvalidity, uid, modseq) VALUES ((SELECT id FROM emails), (SELECT id FROM mailboxes WHERE remote_id = 'INBOX'), 7, 1, 5)".to_owned(),
        format!("INSERT INTO email_bodies (email_id, text_body, truncated, fetched_at) VALUES ((SELECT id FROM emails), 'body', false, '{ts}')"),
        "INSERT INTO attachments (email_id, mime_type, size) VALUES ((SELECT id FROM emails), 'application/pdf', 100)".to_owned(),
        format!("INSERT INTO sync_state (account_id, scope, uidvalidity, last_uid, highestmodseq, updated_at) VALUES ((SELECT id FROM accounts), 'imap:mailbox:1', 7, 2, 9, '{ts}')"),
        format!("INSERT INTO pending_changes (account_id, email_id, kind, payload, state, retry_count, next_attempt_at, created_at) VALUES ((SELECT id FROM accounts), (SELECT id FROM emails), 'flag', '{{}}', 'pending', 0, '{ts}', '{ts}')"),
        format!("INSERT INTO failed_mutations (account_id, kind, payload, reason, retry_count, created_at, failed_at) VALUES ((SELECT id FROM accounts), 'move', '{{}}', 'gone', 5, '{ts}', '{ts}')"),
        format!("INSERT INTO sync_log (account_id, started_at, finished_at, status, mailboxes, emails_added, emails_updated, emails_removed, changes_flushed) VALUES ((SELECT id FROM accounts), '{ts}', '{ts}', 'ok', 2, 1, 0, 0, 0)"),
    ];
    for s in &stmts {
        store.conn().execute_unprepared(s).await?;
    }
    let before: Vec<i64> = futures_counts(store, 10).await?;
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    assert_eq!(futures_counts(store, 10).await?, before, "every row kept");
    let acc = accounts::find_by_name(store.conn(), "old")
        .await?
        .ok_or("account")?;
    let boxes = mailboxes::list(store.conn(), acc.id).await?;
    assert_eq!(boxes.len(), 2);
    assert!(boxes.iter().all(|m| m.role.is_none()), "role starts null");
    let inbox = boxes
        .iter()
        .find(|m| m.remote_id == "INBOX")
        .ok_or("inbox")?;
    assert_eq!(inbox.status.uidvalidity, Some(7));
    mailboxes::set_role(store.conn(), inbox.id, Some(Role::Inbox)).await?;
    let e = emails::find_by_message_id(store.conn(), acc.id, "m1@x").await?;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].subject.as_deref(), Some("hello"));
    let body = bodies::get(store.conn(), e[0].id).await?.ok_or("body")?;
    assert_eq!(body.text.as_deref(), Some("body"));
    // New rows still insert after the upgrade (sequences/autoincrement intact).
    emails::upsert_batch(store.conn(), acc.id, &[email("1/7/2", inbox.id, 2)]).await?;
    Ok(())
}

async fn v8_upgrade_keeps_rows(store: &Store) -> R {
    store.migrate_to(8).await?;
    let c = store.conn();
    // Raw SQL: today's account entity has columns a v8 table lacks (v10 OAuth settings).
    let ts = "2026-01-02 03:04:05+00:00";
    c.execute_unprepared(&format!("INSERT INTO accounts (name, kind, email, username, secret_ref, imap_host, imap_port, imap_security, allow_plaintext, body_policy, created_at, updated_at) VALUES ('v8', 'imap', 'a@example.test', 'a', 'env:PW', 'imap.example.test', 993, 'tls', false, 'none', '{ts}', '{ts}')")).await?;
    let row = c
        .query_one_raw(sea_orm::Statement::from_string(
            c.get_database_backend(),
            "SELECT id FROM accounts WHERE name = 'v8'",
        ))
        .await?
        .ok_or("no row")?;
    let acc_id = AccountId(row.try_get::<i64>("", "id")?);
    mailboxes::upsert(c, acc_id, &[mbox("INBOX", Some(Role::Inbox))]).await?;
    let inbox = mailboxes::list(c, acc_id).await?[0].id;
    // A v8 schema has no thread_links: the row comes with a (server) thread id.
    let mut old = email("1/7/1", inbox, 1);
    old.thread_id = Some("t1".into());
    emails::upsert_batch(c, acc_id, &[old]).await?;
    let before = futures_counts(store, 10).await?;
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    assert_eq!(futures_counts(store, 10).await?, before, "every row kept");
    assert_eq!(count(store, "account_leases").await?, 0);
    // v10: the old account has no OAuth settings; new ones round-trip.
    let old = accounts::find_by_name(c, "v8").await?.ok_or("account")?;
    assert_eq!(old.oauth, None);
    let oauth = accounts::OAuth {
        token_url: "https://oauth2.googleapis.com/token".into(),
        client_id: "client".into(),
        client_secret_ref: Some(SecretRef::Command("pass show secret".into())),
        scopes: vec!["https://mail.google.com/".into(), "offline_access".into()],
        refresh_store_cmd: Some("pass insert -m -f rt".into()),
    };
    let with = accounts::create_with(c, new_account("oauth"), Some(oauth.clone())).await?;
    assert_eq!(with.oauth.as_ref(), Some(&oauth));
    let back = accounts::get(c, with.id).await?;
    assert_eq!(back.oauth, Some(oauth));
    accounts::delete(c, with.id).await?;
    // The new table works for the old account, and goes with it.
    let now = mailsync_store::now();
    let ttl = std::time::Duration::from_secs(30);
    assert!(leases::acquire(c, acc_id, "a", ttl, now).await?);
    accounts::delete(c, acc_id).await?;
    assert_eq!(count(store, "account_leases").await?, 0, "cascades");
    // And back down to v8.
    store.migrate_to(8).await?;
    assert!(count(store, "account_leases").await.is_err());
    Ok(())
}

async fn lease_one_owner_expiry_and_wakes(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("leased")).await?.id;
    let other = accounts::create(c, new_account("other")).await?.id;
    let ttl = std::time::Duration::from_secs(30);
    let t0 = mailsync_store::now();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    assert!(leases::get(c, acc).await?.is_none());
    assert!(leases::acquire(c, acc, "daemon", ttl, t0).await?);
    // Held: nobody else gets it, the holder may re-acquire and renew.
    assert!(!leases::acquire(c, acc, "cli", ttl, at(1)).await?);
    assert!(leases::acquire(c, acc, "daemon", ttl, at(2)).await?);
    assert!(leases::renew(c, acc, "daemon", ttl, at(20)).await?);
    assert!(!leases::renew(c, acc, "cli", ttl, at(20)).await?);
    let l = leases::get(c, acc).await?.ok_or("lease")?;
    assert_eq!(l.holder_at(at(49)), Some("daemon"));
    assert_eq!(l.heartbeat_at, Some(at(20)));
    assert!(!leases::acquire(c, acc, "cli", ttl, at(49)).await?);
    // A holder that stopped renewing (killed) loses it at expiry.
    assert_eq!(l.holder_at(at(50)), None);
    assert!(leases::acquire(c, acc, "cli", ttl, at(50)).await?);
    assert!(!leases::renew(c, acc, "daemon", ttl, at(51)).await?, "lost");
    // Released: free at once. Releasing what one does not hold does nothing.
    assert!(!leases::release(c, acc, "daemon").await?);
    assert!(leases::release(c, acc, "cli").await?);
    assert_eq!(
        leases::get(c, acc).await?.ok_or("lease")?.holder_at(at(52)),
        None
    );
    assert!(leases::acquire(c, acc, "daemon", ttl, at(53)).await?);
    // Wake requests reach the owner once; others' accounts are not its business.
    assert!(leases::take_wakes(c, "daemon").await?.is_empty());
    leases::request_wake(c, acc, at(54)).await?;
    leases::request_wake(c, other, at(54)).await?;
    assert_eq!(leases::take_wakes(c, "cli").await?, vec![]);
    assert_eq!(leases::take_wakes(c, "daemon").await?, vec![acc]);
    assert!(leases::take_wakes(c, "daemon").await?.is_empty());
    // A request for a free account waits for whoever takes it next.
    assert!(leases::acquire(c, other, "daemon", ttl, at(55)).await?);
    assert_eq!(leases::take_wakes(c, "daemon").await?, vec![other]);
    Ok(())
}

/// What a fleet daemon's coordinator reads and writes: the free accounts, its batched
/// renewal, since when a lease is held, and the live daemons.
async fn fleet_leases_and_daemons(store: &Store) -> R {
    use mailsync_store::daemons;
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("fa")).await?.id;
    let b = accounts::create(c, new_account("fb")).await?.id;
    let d = accounts::create(c, new_account("fd")).await?.id;
    let ttl = std::time::Duration::from_secs(20);
    let t0 = mailsync_store::now();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let free = |v: Vec<leases::Free>| v.into_iter().map(|f| f.account_id).collect::<Vec<_>>();
    assert_eq!(free(leases::free(c, t0, 10).await?), vec![a, b, d]);
    assert!(leases::acquire(c, a, "x", ttl, t0).await?);
    assert!(leases::acquire(c, b, "y", ttl, at(1)).await?);
    assert_eq!(free(leases::free(c, at(2), 10).await?), vec![d]);
    // One statement renews all of an owner's leases, and keeps their start.
    assert_eq!(leases::renew_all(c, "x", ttl, at(5)).await?, vec![a]);
    assert!(leases::acquire(c, a, "x", ttl, at(6)).await?);
    let l = leases::get(c, a).await?.ok_or("lease")?;
    assert_eq!((l.acquired_at, l.heartbeat_at), (Some(t0), Some(at(6))));
    // y stops renewing: its account is free after expiry (oldest free first), and a new
    // holder's start is its own.
    assert_eq!(free(leases::free(c, at(22), 10).await?), vec![d, b]);
    assert_eq!(free(leases::free(c, at(22), 1).await?), vec![d]);
    assert!(leases::acquire(c, b, "x", ttl, at(22)).await?);
    assert_eq!(
        leases::get(c, b).await?.ok_or("lease")?.acquired_at,
        Some(at(22))
    );
    assert_eq!(leases::renew_all(c, "y", ttl, at(23)).await?, vec![]);
    assert!(leases::release(c, b, "x").await?);
    assert_eq!(leases::get(c, b).await?.ok_or("lease")?.acquired_at, None);
    // Daemons: registered once, live until their expiry, removed on a clean stop.
    daemons::heartbeat(c, "x", ttl, t0).await?;
    daemons::heartbeat(c, "y", ttl, at(1)).await?;
    daemons::heartbeat(c, "x", ttl, at(10)).await?;
    let live = daemons::live(c, at(25)).await?;
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].owner.as_str(), live[0].started_at), ("x", t0));
    assert_eq!(daemons::live(c, at(5)).await?.len(), 2);
    daemons::remove(c, "x").await?;
    assert!(
        daemons::live(c, at(5))
            .await?
            .iter()
            .all(|d| d.owner == "y")
    );
    Ok(())
}

async fn lease_racing_acquirers_one_wins(store: &Store) -> R {
    store.migrate().await?;
    let acc = accounts::create(store.conn(), new_account("raced"))
        .await?
        .id;
    let ttl = std::time::Duration::from_secs(30);
    let now = mailsync_store::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner-{i}");
            // A busy SQLite is retried like the engine does.
            for _ in 0..50 {
                match leases::acquire(store.conn(), acc, &owner, ttl, now).await {
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    other => return other,
                }
            }
            Err(StoreError::NotFound {
                what: "a moment the database was not busy",
                key: owner,
            })
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await?? {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one acquirer holds the lease");
    Ok(())
}

/// Row counts of the first `n` tables of [`TABLES`] (the ones that exist at that version).
async fn futures_counts(store: &Store, n: usize) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for t in &TABLES[..n] {
        out.push(count(store, t).await?);
    }
    Ok(out)
}

fn new_account(name: &str) -> NewAccount {
    NewAccount {
        name: name.into(),
        kind: AccountKind::Imap,
        email: format!("{name}@example.test"),
        display_name: Some("Test User".into()),
        username: name.into(),
        secret_ref: SecretRef::Env("MAILSYNC_TEST_PW".into()),
        imap: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: 10993,
            security: Security::Tls,
        }),
        smtp: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: 10025,
            security: Security::Plain,
        }),
        jmap_session_url: None,
        ca_file: Some("/tmp/ca.pem".into()),
        allow_plaintext: false,
        body_policy: BodyPolicy::MaxBytes(65536),
    }
}

fn mbox(remote: &str, role: Option<Role>) -> MailboxUpsert {
    MailboxUpsert {
        remote_id: remote.into(),
        name: remote.into(),
        selectable: true,
        role,
        ..Default::default()
    }
}

fn email(remote: &str, mailbox: mailsync_store::MailboxId, uid: i64) -> EmailUpsert {
    let mut u = EmailUpsert::new(
        remote,
        Utc.timestamp_opt(1_700_000_000 + uid, 0)
            .single()
            .unwrap_or_default(),
    );
    u.message_id = Some(format!("{remote}@example.test"));
    u.subject = Some(format!("Subject {uid} — ünïcode"));
    u.from = vec![Address {
        name: Some("Ann".into()),
        email: "ann@example.test".into(),
    }];
    u.size = 1000 + uid;
    u.mailboxes = vec![Membership {
        mailbox_id: mailbox,
        uidvalidity: Some(7),
        uid: Some(uid),
        modseq: Some(uid),
    }];
    u
}

/// `bodies::put_many`: more rows than one statement takes, one body larger than a statement's
/// byte budget, and a second write replacing the first.
/// A first sync reports each batch's new emails: on PostgreSQL the sync's tables are analysed
/// each time the emails may have doubled (from 2,000 on), so the planner's row estimate follows
/// the table instead of staying at "empty"; on SQLite nothing happens.
async fn planner_statistics_follow_a_growing_store(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("grow")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let pg = store.conn().get_database_backend() == sea_orm::DbBackend::Postgres;
    let reltuples = || async {
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'emails'::regclass",
            ))
            .await?
            .ok_or("no row")?;
        Ok::<i64, Box<dyn std::error::Error>>(row.try_get::<i64>("", "n")?)
    };
    let mut refreshed = Vec::new();
    for b in 0..12u32 {
        let items: Vec<EmailUpsert> = (i64::from(b) * 500 + 1..=i64::from(b + 1) * 500)
            .map(|u| email(&format!("g{u}"), inbox, u))
            .collect();
        let stats = emails::upsert_batch(c, a.id, &items).await?;
        if store.note_inserted(stats.inserted).await {
            refreshed.push((b + 1) * 500);
            if pg {
                assert_eq!(reltuples().await?, i64::from((b + 1) * 500));
            }
        }
    }
    if pg {
        // 2,000 rows, then each doubling: 4,000; the next would be 8,000.
        assert_eq!(refreshed, vec![2_000, 4_000]);
    } else {
        assert!(refreshed.is_empty());
    }
    Ok(())
}

async fn bodies_stored_many_at_once(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("many")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let items: Vec<EmailUpsert> = (1..=250)
        .map(|u| email(&format!("m{u}"), inbox, u))
        .collect();
    emails::upsert_batch(c, a.id, &items).await?;
    let mut ids = Vec::new();
    for u in &items {
        ids.push(
            emails::find_by_remote_id(c, a.id, &u.remote_id)
                .await?
                .ok_or("email")?
                .id,
        );
    }
    let body = |t: String| bodies::Body {
        text: Some(t),
        html: None,
        raw: None,
        truncated: false,
    };
    let first: Vec<bodies::Body> = ids
        .iter()
        .enumerate()
        .map(|(i, _)| {
            body(if i == 7 {
                "x".repeat(5 << 20)
            } else {
                format!("first {i}")
            })
        })
        .collect();
    let rows: Vec<_> = ids.iter().copied().zip(first.iter()).collect();
    bodies::put_many(c, &rows).await?;
    assert_eq!(count(store, "email_bodies").await?, 250);
    let second: Vec<bodies::Body> = (0..3).map(|i| body(format!("second {i}"))).collect();
    let mut rows: Vec<_> = ids.iter().copied().zip(second.iter()).collect();
    // The same email twice in one call (a server sending a message twice): the last wins.
    let third = body("third 1".into());
    rows.push((ids[1], &third));
    bodies::put_many(c, &rows).await?;
    assert_eq!(
        bodies::get(c, ids[1])
            .await?
            .and_then(|b| b.text)
            .as_deref(),
        Some("third 1")
    );
    assert_eq!(count(store, "email_bodies").await?, 250);
    let got = |k: usize| {
        let id = ids[k];
        async move { Ok::<_, StoreError>(bodies::get(c, id).await?.and_then(|b| b.text)) }
    };
    assert_eq!(got(0).await?.as_deref(), Some("second 0"));
    assert_eq!(got(7).await?.map(|t| t.len()), Some(5 << 20));
    assert_eq!(got(249).await?.as_deref(), Some("first 249"));
    Ok(())
}

/// Emails whose bodies are written in the upsert's transaction (`body_in_transaction`, a first
/// sync with bodies) are inserted already marked cached, so storing their bodies rewrites no
/// email row; emails whose bodies come later are marked by the trigger, as before. Both end
/// cached, with no body debt left. Rows rewritten are counted inside the transaction
/// (PostgreSQL: `pg_stat_xact_user_tables`; SQLite: `total_changes()`, which counts a
/// trigger's updates too).
async fn a_body_written_with_its_email_marks_it_cached_in_place(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("inplace")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let pg = c.get_database_backend() == sea_orm::DbBackend::Postgres;
    let txn = store.begin().await?;
    let rewritten = if pg {
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables \
         WHERE relname = 'emails'"
    } else {
        "SELECT total_changes()"
    };
    let text = bodies::Body {
        text: Some("the body".into()),
        html: None,
        raw: None,
        truncated: false,
    };
    let mut changed = Vec::new();
    // Group "w": every body written with its email; "l": bodies written for emails not
    // marked (as a later download would); "m": a mixed batch, half with their bodies (a size
    // cap leaves the others owing).
    let with = |group: &str, u: i64| match group {
        "w" => true,
        "l" => false,
        _ => u % 2 == 0,
    };
    for (k, group) in ["w", "l", "m"].into_iter().enumerate() {
        let items: Vec<EmailUpsert> = (1..=10)
            .map(|u| {
                let mut e = email(&format!("{group}{u}"), inbox, 100 * k as i64 + u);
                e.body_in_transaction = with(group, u);
                e
            })
            .collect();
        emails::upsert_batch(&txn, a.id, &items).await?;
        let remotes: Vec<String> = items
            .iter()
            .filter(|e| group == "l" || e.body_in_transaction)
            .map(|e| e.remote_id.clone())
            .collect();
        let ids = emails::ids_by_remote_ids(&txn, a.id, &remotes).await?;
        let rows: Vec<_> = ids.values().map(|id| (*id, &text)).collect();
        let before = scalar_on(&txn, rewritten).await?;
        bodies::put_many(&txn, &rows).await?;
        changed.push(scalar_on(&txn, rewritten).await? - before);
    }
    if pg {
        assert_eq!(
            changed,
            vec![0, 10, 0],
            "email rows rewritten by the bodies' trigger"
        );
    } else {
        // Each write inserts its bodies (and their search notes); the second also marks its
        // 10 emails; the third writes 5 bodies.
        assert_eq!(changed[1] - changed[0], 10, "{changed:?}");
        assert_eq!(changed[0], 2 * changed[2], "{changed:?}");
    }
    txn.commit().await?;
    assert_eq!(
        scalar(store, "SELECT COUNT(*) FROM emails WHERE body_cached").await?,
        25
    );
    // The five emails of the mixed batch that came without a body still owe it.
    assert_eq!(
        scalar(
            store,
            "SELECT COUNT(*) FROM emails e WHERE NOT body_cached AND remote_id LIKE 'm%' \
             AND NOT EXISTS (SELECT 1 FROM email_bodies b WHERE b.email_id = e.id)"
        )
        .await?,
        5
    );
    assert_eq!(
        bodies::mailboxes_with_debt(c, a.id, BodyPolicy::All)
            .await?
            .len(),
        1
    );
    Ok(())
}

/// v14 -> v15: on PostgreSQL every email is noted so its search document is rebuilt by the
/// store (v15 builds the `tsvector` in Rust, v14 in SQL with `mailsync_search_doc`); for
/// plain ASCII text both give the same document. SQLite's index is untouched.
async fn v14_upgrade_rebuilds_search_docs(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate_to(14).await?;
    let c = store.conn();
    let pg = c.get_database_backend() == sea_orm::DbBackend::Postgres;
    let a = accounts::create(c, new_account("up15")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let texts = [
        (
            "Re: Q3 budget -- FINAL (v2.1)",
            "Numbers, numbers & more numbers: see budget_2026.xlsx; call +1 555-0100.",
        ),
        ("lunch?", "Budget lunch at 12:30, budget BUDGET budget."),
        ("", ""),
    ];
    let items: Vec<EmailUpsert> = texts
        .iter()
        .enumerate()
        .map(|(i, (subject, _))| {
            let mut u = email(&format!("v{i}"), inbox, i as i64 + 1);
            u.subject = Some((*subject).to_owned());
            // Today's local threading needs v18's `thread_merges`: a server thread id
            // keeps this v14 write to v14's tables.
            u.thread_id = Some("server".into());
            u.to = vec![Address {
                name: Some("Bob O'Neil".into()),
                email: "bob.oneil@example.net".into(),
            }];
            u.cc = vec![Address {
                name: None,
                email: "team-3@lists.example.org".into(),
            }];
            u
        })
        .collect();
    emails::upsert_batch(c, a.id, &items).await?;
    for (i, (_, body)) in texts.iter().enumerate() {
        let id = emails::find_by_remote_id(c, a.id, &format!("v{i}"))
            .await?
            .ok_or("email")?
            .id;
        bodies::put(
            c,
            id,
            &bodies::Body {
                text: (!body.is_empty()).then(|| (*body).to_owned()),
                html: None,
                raw: None,
                truncated: false,
            },
        )
        .await?;
    }
    // Indexed as v14 did: by the server's text-search functions on PostgreSQL.
    let v14_docs = "INSERT INTO email_search (email_id, doc) SELECT e.id, mailsync_search_doc(\
                    e.subject, e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, b.text_body) \
                    FROM emails e LEFT JOIN email_bodies b ON b.email_id = e.id";
    if pg {
        c.execute_unprepared(v14_docs).await?;
        c.execute_unprepared("DELETE FROM search_pending").await?;
    }
    store.migrate().await?;
    // PostgreSQL notes every email to rebuild its documents (v15); SQLite's index moves to
    // its companion file (v16), which is rebuilt from every email.
    assert_eq!(
        count(store, "search_pending").await?,
        3,
        "noted for rebuilding"
    );
    let hits = search::search(store, Some(a.id), &search::parse("budget")?, 10).await?;
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(count(store, "search_pending").await?, 0, "rebuilt");
    for (q, n) in [
        ("\"budget lunch\"", 1),
        ("to:oneil", 3),
        ("subject:v2", 1),
        ("555", 1),
    ] {
        let found = search::search(store, Some(a.id), &search::parse(q)?, 10).await?;
        assert_eq!(found.len(), n, "{q}");
    }
    if pg {
        // The store's documents are the server's, position for position and weight for weight.
        let differ = c
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM email_search s JOIN emails e ON e.id = s.email_id \
                 LEFT JOIN email_bodies b ON b.email_id = e.id WHERE ts_delete(s.doc, \
                 ARRAY(SELECT lexeme FROM unnest(s.doc) WHERE strpos(lexeme, '_') > 0)) <> \
                 mailsync_search_doc(e.subject, e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, \
                 b.text_body)",
            ))
            .await?
            .ok_or("no row")?
            .try_get::<i64>("", "n")?;
        assert_eq!(
            differ, 0,
            "documents built by the store differ from the server's (word pairs aside)"
        );
    }
    Ok(())
}

/// v16 -> v17: on PostgreSQL every email is noted so its document is rebuilt (v17 added word
/// pairs to documents; documents built now hold none, and phrases are found by positions);
/// a phrase is found before and after the upgrade. SQLite is unchanged.
async fn v16_upgrade_rebuilds_documents(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate_to(16).await?;
    let c = store.conn();
    let pg = c.get_database_backend() == sea_orm::DbBackend::Postgres;
    let a = accounts::create(c, new_account("up17")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let mut u = email("p1", inbox, 1);
    u.subject = Some("Quarterly budget review".into());
    // Not threaded locally: that needs v18's `thread_merges`.
    u.thread_id = Some("server".into());
    emails::upsert_batch(c, a.id, &[u]).await?;
    let phrase = search::parse("\"budget review\"")?;
    assert_eq!(
        search::search(store, Some(a.id), &phrase, 10).await?.len(),
        1
    );
    store.migrate().await?;
    assert_eq!(
        count(store, "search_pending").await?,
        if pg { 1 } else { 0 },
        "noted for rebuilding"
    );
    assert_eq!(
        search::search(store, Some(a.id), &phrase, 10).await?.len(),
        1
    );
    let three = search::parse("\"quarterly budget review\"")?;
    assert_eq!(
        search::search(store, Some(a.id), &three, 10).await?.len(),
        1
    );
    let apart = search::parse("\"quarterly review\"")?;
    assert_eq!(
        search::search(store, Some(a.id), &apart, 10).await?.len(),
        0
    );
    if pg {
        let pairs = c
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM email_search s, unnest(s.doc) u \
                 WHERE strpos(u.lexeme, '_') > 0",
            ))
            .await?
            .ok_or("no row")?
            .try_get::<i64>("", "n")?;
        assert_eq!(pairs, 0, "a rebuilt document holds no word pairs");
    }
    Ok(())
}

/// v19 -> v20: PostgreSQL compresses bodies and search documents written after the upgrade
/// with LZ4 (the test server is built with it), an older body stays readable, and going down
/// gives the columns back their default. SQLite: nothing changes, the bodies round-trip.
async fn v19_upgrade_compresses_bodies_with_lz4(store: &Store) -> R {
    store.migrate_to(19).await?;
    let c = store.conn();
    let pg = c.get_database_backend() == sea_orm::DbBackend::Postgres;
    let a = accounts::create(c, new_account("lz4")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    // Compressible and past TOAST's ~2 KB threshold.
    let text = |n: i64| format!("{n} ") + &"the quarterly budget review is due ".repeat(400);
    let put = |uid: i64| {
        let items = vec![email(&format!("z{uid}"), inbox, uid)];
        async move {
            emails::upsert_batch(c, a.id, &items).await?;
            let id = emails::ids_by_remote_ids(c, a.id, &[format!("z{uid}")])
                .await?
                .into_values()
                .next()
                .ok_or("no id")?;
            let body = bodies::Body {
                text: Some(text(uid)),
                html: Some(format!("<p>{}</p>", text(uid))),
                raw: None,
                truncated: false,
            };
            bodies::put_many(c, &[(id, &body)]).await?;
            Ok::<_, Box<dyn std::error::Error>>(id)
        }
    };
    // The compression of each body column's setting and of one stored value.
    let methods = |id: mailsync_store::EmailId| async move {
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT (SELECT string_agg(attname || '=' || attcompression::text, ',' ORDER BY                      attname) FROM pg_attribute WHERE attrelid = 'email_bodies'::regclass AND                      attname IN ('text_body', 'html_body', 'raw')) AS columns,                      (SELECT coalesce(pg_column_compression(text_body), '-') FROM email_bodies                      WHERE email_id = {}) AS stored",
                    id.0
                ),
            ))
            .await?
            .ok_or("no row")?;
        Ok::<_, Box<dyn std::error::Error>>((
            row.try_get::<String>("", "columns")?,
            row.try_get::<String>("", "stored")?,
        ))
    };
    let old = put(1).await?;
    // Before v20 a value takes the server's default (pglz unless configured otherwise).
    let default = if pg {
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_setting('default_toast_compression') AS d",
            ))
            .await?
            .ok_or("no row")?;
        row.try_get::<String>("", "d")?
    } else {
        String::new()
    };
    if pg {
        assert_eq!(
            methods(old).await?,
            ("html_body=,raw=,text_body=".into(), default.clone())
        );
    }
    store.migrate().await?;
    let new = put(2).await?;
    if pg {
        assert_eq!(
            methods(new).await?,
            ("html_body=l,raw=l,text_body=l".into(), "lz4".into())
        );
        // The search documents' column too ('l' = 108).
        assert_eq!(
            scalar(
                store,
                "SELECT ascii(attcompression::text)::bigint FROM pg_attribute WHERE attrelid = \
                 'email_search'::regclass AND attname = 'doc'"
            )
            .await?,
            i64::from(b'l')
        );
        assert_eq!(
            methods(old).await?.1,
            default,
            "older values stay as stored"
        );
    }
    for (id, uid) in [(old, 1), (new, 2)] {
        let b = bodies::get(c, id).await?.ok_or("body")?;
        assert_eq!(b.text, Some(text(uid)));
    }
    store.migrate_to(19).await?;
    if pg {
        assert_eq!(methods(new).await?.0, "html_body=,raw=,text_body=");
    }
    Ok(())
}

/// The body debt: wanted by the policy, missing from the cache, scoped to the IMAP copies of
/// one mailbox under one UIDVALIDITY or to the account, paged by id.
/// v13 -> v14: emails whose body is cached before the upgrade are marked, so the debt is the
/// same before and after; afterwards the triggers keep the mark for writes in plain SQL too.
async fn v13_upgrade_marks_cached_bodies(store: &Store) -> R {
    use bodies::{DebtScope, wanted_missing};
    store.migrate_to(13).await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("up14")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let items: Vec<EmailUpsert> = (1..=3).map(|u| email(&format!("u{u}"), inbox, u)).collect();
    // The v13 shape of an email row (no `body_cached`): written in SQL, as v13 code did.
    for (i, u) in items.iter().enumerate() {
        c.execute_unprepared(&format!(
            "INSERT INTO emails (account_id, remote_id, from_addr, to_addr, cc_addr, bcc_addr, \
             reply_to, received_at, size, seen, flagged, answered, draft, keywords, \
             has_attachment, created_at, updated_at) VALUES ({}, '{}', '[]', '[]', '[]', '[]', \
             '[]', '2026-01-02 03:04:05+00:00', 10, false, false, false, false, '[]', false, \
             '2026-01-02 03:04:05+00:00', '2026-01-02 03:04:05+00:00')",
            a.id.0, u.remote_id
        ))
        .await?;
        c.execute_unprepared(&format!(
            "INSERT INTO email_mailboxes (email_id, mailbox_id, uidvalidity, uid) \
             SELECT id, {}, 7, {} FROM emails WHERE remote_id = '{}'",
            inbox.0,
            i + 1,
            u.remote_id
        ))
        .await?;
    }
    c.execute_unprepared(
        "INSERT INTO email_bodies (email_id, text_body, truncated, fetched_at) SELECT id, 'x', \
         false, '2026-01-02 03:04:05+00:00' FROM emails WHERE remote_id = 'u2'",
    )
    .await?;
    store.migrate().await?;
    let scope = DebtScope::ImapMailbox {
        mailbox: inbox,
        uidvalidity: 7,
    };
    let owed = |policy| async move {
        let v = wanted_missing(c, a.id, scope, policy, None, 100).await?;
        Ok::<_, StoreError>(v.into_iter().map(|w| w.remote_id).collect::<Vec<_>>())
    };
    assert_eq!(
        owed(BodyPolicy::All).await?,
        ["u1", "u3"],
        "marked by the upgrade"
    );
    // A body written and one removed in plain SQL: the triggers follow.
    c.execute_unprepared(
        "INSERT INTO email_bodies (email_id, text_body, truncated, fetched_at) SELECT id, 'y', \
         false, '2026-01-02 03:04:05+00:00' FROM emails WHERE remote_id = 'u3'",
    )
    .await?;
    c.execute_unprepared(
        "DELETE FROM email_bodies WHERE email_id = (SELECT id FROM emails WHERE remote_id = 'u2')",
    )
    .await?;
    assert_eq!(
        owed(BodyPolicy::All).await?,
        ["u1", "u2"],
        "kept by the triggers"
    );
    let owing = bodies::mailboxes_with_debt(c, a.id, BodyPolicy::All).await?;
    assert_eq!(owing.into_iter().collect::<Vec<_>>(), [inbox]);
    // Down to v13 and up again keeps the rows and the marks.
    store.migrate_to(13).await?;
    store.migrate().await?;
    assert_eq!(
        owed(BodyPolicy::All).await?,
        ["u1", "u2"],
        "after down and up"
    );
    Ok(())
}

async fn body_debt_wanted_missing(store: &Store) -> R {
    use bodies::{DebtScope, wanted_missing};
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("debt")).await?;
    let other = accounts::create(c, new_account("debt-other")).await?;
    let boxes = mailboxes::upsert(
        c,
        a.id,
        &[mbox("INBOX", Some(Role::Inbox)), mbox("Stuff", None)],
    )
    .await?;
    let (inbox, stuff) = (boxes[0].id, boxes[1].id);
    let mut items: Vec<EmailUpsert> = (1..=5).map(|u| email(&format!("i{u}"), inbox, u)).collect();
    items[3].preview = Some("has one".into());
    // A leftover of an old UIDVALIDITY, and a copy without UID (a pending local move).
    let mut old = email("old", inbox, 9);
    old.mailboxes[0].uidvalidity = Some(6);
    let mut pending = email("pending", inbox, 10);
    pending.mailboxes[0].uid = None;
    // In two mailboxes (JMAP style): one debt, not two.
    let mut two = email("two", stuff, 1);
    two.mailboxes.push(Membership::plain(inbox));
    two.mailboxes[1].uidvalidity = Some(7);
    let orphan = email("orphan", stuff, 2);
    items.extend([old, pending, two, orphan]);
    emails::upsert_batch(c, a.id, &items).await?;
    let theirs = mailboxes::upsert(c, other.id, &[mbox("INBOX", Some(Role::Inbox))]).await?;
    emails::upsert_batch(c, other.id, &[email("x1", theirs[0].id, 1)]).await?;
    let id = |r: &'static str| async move {
        Ok::<_, StoreError>(emails::find_by_remote_id(c, a.id, r).await?.map(|e| e.id))
    };
    let i2 = id("i2").await?.ok_or("i2")?;
    bodies::put(c, i2, &bodies::Body::default()).await?;
    // A queued permanent delete keeps the row without memberships.
    emails::set_memberships(c, id("orphan").await?.ok_or("orphan")?, &[]).await?;

    let scope = DebtScope::ImapMailbox {
        mailbox: inbox,
        uidvalidity: 7,
    };
    let uids = |v: &[bodies::WantedBody]| v.iter().map(|w| w.uid).collect::<Vec<_>>();
    assert!(
        wanted_missing(c, a.id, scope, BodyPolicy::None, None, 100)
            .await?
            .is_empty()
    );
    let all = wanted_missing(c, a.id, scope, BodyPolicy::All, None, 100).await?;
    assert_eq!(uids(&all), [Some(1), Some(3), Some(4), Some(5)]);
    assert_eq!(all[0].remote_id, "i1");
    assert_eq!(all[0].size, 1001);
    assert!(all[0].needs_preview && !all[2].needs_preview);
    let small = wanted_missing(c, a.id, scope, BodyPolicy::MaxBytes(1003), None, 100).await?;
    assert_eq!(uids(&small), [Some(1), Some(3)]);
    // Paging by id passes over what was returned, whether or not it got its body.
    let p1 = wanted_missing(c, a.id, scope, BodyPolicy::All, None, 2).await?;
    let p2 = wanted_missing(
        c,
        a.id,
        scope,
        BodyPolicy::All,
        p1.last().map(|w| w.email),
        2,
    )
    .await?;
    let p3 = wanted_missing(
        c,
        a.id,
        scope,
        BodyPolicy::All,
        p2.last().map(|w| w.email),
        2,
    )
    .await?;
    assert_eq!(
        (uids(&p1), uids(&p2)),
        (vec![Some(1), Some(3)], vec![Some(4), Some(5)])
    );
    assert!(p3.is_empty());
    // Another UIDVALIDITY sees only its own copies.
    let old_scope = DebtScope::ImapMailbox {
        mailbox: inbox,
        uidvalidity: 6,
    };
    let o = wanted_missing(c, a.id, old_scope, BodyPolicy::All, None, 100).await?;
    assert_eq!(uids(&o), [Some(9)]);
    // The account: every email in some mailbox, once, without UIDs.
    let acc = wanted_missing(c, a.id, DebtScope::Account, BodyPolicy::All, None, 100).await?;
    let mut names: Vec<&str> = acc.iter().map(|w| w.remote_id.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["i1", "i3", "i4", "i5", "old", "pending", "two"]);
    assert!(acc.iter().all(|w| w.uid.is_none()));

    // Which mailboxes owe bodies: one query per account.
    let owing = bodies::mailboxes_with_debt(c, a.id, BodyPolicy::All).await?;
    assert_eq!(owing.into_iter().collect::<Vec<_>>(), [inbox, stuff]);
    assert!(
        bodies::mailboxes_with_debt(c, a.id, BodyPolicy::None)
            .await?
            .is_empty()
    );
    let two_id = id("two").await?.ok_or("two")?;
    bodies::put(c, two_id, &bodies::Body::default()).await?;
    let owing = bodies::mailboxes_with_debt(c, a.id, BodyPolicy::All).await?;
    assert_eq!(owing.into_iter().collect::<Vec<_>>(), [inbox]);
    for e in wanted_missing(c, a.id, DebtScope::Account, BodyPolicy::All, None, 100).await? {
        bodies::put(c, e.email, &bodies::Body::default()).await?;
    }
    assert!(
        bodies::mailboxes_with_debt(c, a.id, BodyPolicy::All)
            .await?
            .is_empty()
    );
    assert!(
        wanted_missing(c, a.id, scope, BodyPolicy::All, None, 100)
            .await?
            .is_empty()
    );
    // The other account's debt is its own.
    let theirs =
        wanted_missing(c, other.id, DebtScope::Account, BodyPolicy::All, None, 100).await?;
    assert_eq!(theirs.len(), 1);
    Ok(())
}

async fn account_round_trip(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("work")).await?;
    assert_eq!(a.name, "work");
    assert_eq!(a.secret_ref, SecretRef::Env("MAILSYNC_TEST_PW".into()));
    assert_eq!(a.imap.as_ref().map(|e| e.port), Some(10993));
    let again = accounts::get(c, a.id).await?;
    assert_eq!(again, a);
    assert!(matches!(
        accounts::create(c, new_account("work")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    accounts::set_body_policy(c, a.id, BodyPolicy::All).await?;
    assert_eq!(accounts::get(c, a.id).await?.body_policy, BodyPolicy::All);
    // An edit changes the settings in place: same id, same name, same creation time.
    let mut edited = accounts::get(c, a.id).await?;
    edited.secret_ref = SecretRef::Command("pass show work".into());
    edited.username = "me2".into();
    edited.smtp = None;
    edited.body_policy = BodyPolicy::MaxBytes(1024);
    if let Some(ep) = edited.imap.as_mut() {
        ep.port = 993;
    }
    let stored = accounts::update(c, &edited).await?;
    let back = accounts::get(c, a.id).await?;
    assert_eq!(back, stored);
    assert_eq!(
        (back.id, back.name.as_str(), back.created_at),
        (a.id, "work", a.created_at)
    );
    assert_eq!(back.secret_ref, edited.secret_ref);
    assert_eq!(back.username, "me2");
    assert_eq!(back.smtp, None);
    assert_eq!(back.imap.as_ref().map(|e| e.port), Some(993));
    assert_eq!(back.body_policy, BodyPolicy::MaxBytes(1024));
    let b = accounts::create(c, new_account("home")).await?;
    let names: Vec<_> = accounts::list(c)
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec!["home", "work"]);
    // Deleting an account deletes its data through the foreign keys.
    let inbox = mailboxes::upsert(c, b.id, &[mbox("INBOX", Some(Role::Inbox))]).await?;
    emails::upsert_batch(c, b.id, &[email("x/1/1", inbox[0].id, 1)]).await?;
    accounts::delete(c, b.id).await?;
    assert_eq!(count(store, "emails").await?, 0);
    assert_eq!(count(store, "mailboxes").await?, 0);
    assert!(matches!(
        accounts::get(c, b.id).await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

async fn mailbox_roles_and_removal(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("m")).await?;
    let boxes = mailboxes::upsert(
        c,
        a.id,
        &[
            mbox("INBOX", Some(Role::Inbox)),
            mbox("Sent", Some(Role::Sent)),
            mbox("Stuff", None),
        ],
    )
    .await?;
    assert_eq!(boxes.len(), 3);
    // A user-set role survives a sync that reports no role.
    mailboxes::set_role(c, boxes[2].id, Some(Role::Archive)).await?;
    mailboxes::upsert(c, a.id, &[mbox("Stuff", None)]).await?;
    let found = mailboxes::find_by_role(c, a.id, Role::Archive)
        .await?
        .ok_or("archive")?;
    assert_eq!(found.remote_id, "Stuff");
    mailboxes::update_status(
        c,
        boxes[0].id,
        MailboxStatus {
            total: 3,
            unread: 2,
            uidvalidity: Some(11),
            uidnext: Some(4),
            highestmodseq: Some(99),
        },
    )
    .await?;
    let inbox = mailboxes::find_by_name(c, a.id, "INBOX")
        .await?
        .ok_or("inbox")?;
    assert_eq!(inbox.status.highestmodseq, Some(99));
    // An email in INBOX and Stuff (JMAP style) survives the removal of Stuff; one only in Stuff goes.
    let mut both = email("j1", inbox.id, 1);
    both.mailboxes.push(Membership::plain(boxes[2].id));
    let only = email("j2", boxes[2].id, 2);
    emails::upsert_batch(c, a.id, &[both, only]).await?;
    let removed = mailboxes::delete_missing(c, a.id, &["INBOX".into(), "Sent".into()]).await?;
    assert_eq!(removed, 1);
    assert!(emails::find_by_remote_id(c, a.id, "j1").await?.is_some());
    assert!(emails::find_by_remote_id(c, a.id, "j2").await?.is_none());
    let (total, unread) = mailboxes::recount(c, inbox.id).await?;
    assert_eq!((total, unread), (1, 1));
    // A read email counts in the total only; an empty mailbox counts nothing.
    let mut read = email("j3", inbox.id, 3);
    read.flags.seen = true;
    emails::upsert_batch(c, a.id, &[read]).await?;
    assert_eq!(mailboxes::recount(c, inbox.id).await?, (2, 1));
    assert_eq!(mailboxes::recount(c, boxes[1].id).await?, (0, 0));
    Ok(())
}

async fn email_upsert_round_trip(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("e")).await?;
    let boxes = mailboxes::upsert(
        c,
        a.id,
        &[
            mbox("INBOX", Some(Role::Inbox)),
            mbox("Archive", Some(Role::Archive)),
        ],
    )
    .await?;
    let (inbox, archive) = (boxes[0].id, boxes[1].id);
    let mut e1 = email("1/7/1", inbox, 1);
    e1.has_attachment = true;
    e1.attachments = Some(vec![Attachment {
        part_id: Some("2".into()),
        file_name: Some("report.pdf".into()),
        mime_type: "application/pdf".into(),
        size: 12345,
        disposition: Some("attachment".into()),
        ..Default::default()
    }]);
    e1.flags.keywords = vec!["$Forwarded".into()];
    let e2 = email("1/7/2", inbox, 2);
    let e3 = email("2/7/1", archive, 1);
    let stats = emails::upsert_batch(c, a.id, &[e1.clone(), e2.clone(), e3]).await?;
    assert_eq!((stats.inserted, stats.updated), (3, 0));
    // Updating: same remote id, new flags; attachments left alone when None.
    let mut e1b = e1.clone();
    e1b.flags.seen = true;
    e1b.attachments = None;
    let stats = emails::upsert_batch(c, a.id, &[e1b]).await?;
    assert_eq!((stats.inserted, stats.updated), (0, 1));
    let got = emails::find_by_remote_id(c, a.id, "1/7/1")
        .await?
        .ok_or("e1")?;
    assert!(got.flags.seen);
    assert_eq!(got.flags.keywords, vec!["$Forwarded".to_owned()]);
    assert_eq!(got.from[0].to_string(), "Ann <ann@example.test>");
    assert_eq!(got.subject.as_deref(), Some("Subject 1 — ünïcode"));
    let att = emails::attachments(c, got.id).await?;
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].file_name.as_deref(), Some("report.pdf"));
    // Listing: newest first, by mailbox and by role, with mailbox names.
    let all = emails::list(
        c,
        &EmailFilter {
            account: Some(a.id),
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<_> = all.iter().map(|s| s.email.remote_id.as_str()).collect();
    assert_eq!(ids, vec!["1/7/2", "2/7/1", "1/7/1"]);
    let by_role = emails::list(
        c,
        &EmailFilter {
            account: Some(a.id),
            role: Some(Role::Archive),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(by_role.len(), 1);
    assert_eq!(by_role[0].mailboxes, vec!["Archive".to_owned()]);
    let limited = emails::list(
        c,
        &EmailFilter {
            mailbox: Some(inbox),
            limit: Some(1),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].email.remote_id, "1/7/2");
    // UIDs, flags by remote id, deletion by UID.
    assert_eq!(emails::uids_in_mailbox(c, inbox).await?, vec![1, 2]);
    assert_eq!(emails::max_uid(c, inbox).await?, Some(2));
    let flagged = Flags {
        flagged: true,
        ..Default::default()
    };
    let n = emails::set_flags_by_remote_ids(c, a.id, &[("1/7/2".into(), flagged.clone())]).await?;
    assert_eq!(n, 1);
    assert!(
        emails::find_by_remote_id(c, a.id, "1/7/2")
            .await?
            .ok_or("e2")?
            .flags
            .flagged
    );
    assert_eq!(emails::delete_by_uids(c, inbox, &[2]).await?, 1);
    assert_eq!(emails::uids_in_mailbox(c, inbox).await?, vec![1]);
    // Bodies.
    bodies::put(
        c,
        got.id,
        &bodies::Body {
            text: Some("hi".into()),
            html: Some("<p>hi</p>".into()),
            raw: Some(b"raw".to_vec()),
            truncated: false,
        },
    )
    .await?;
    bodies::put(
        c,
        got.id,
        &bodies::Body {
            text: Some("hi2".into()),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        bodies::get(c, got.id).await?.ok_or("body")?.text.as_deref(),
        Some("hi2")
    );
    // Optimistic move and its revert.
    let before = emails::memberships(c, got.id).await?;
    emails::set_memberships(c, got.id, &[Membership::plain(archive)]).await?;
    assert_eq!(emails::memberships(c, got.id).await?[0].mailbox_id, archive);
    emails::set_memberships(c, got.id, &before).await?;
    assert_eq!(emails::memberships(c, got.id).await?, before);
    // UIDVALIDITY change: uids forgotten, rows kept for re-matching by Message-ID.
    assert_eq!(emails::clear_uids(c, inbox).await?, 1);
    assert!(emails::uids_in_mailbox(c, inbox).await?.is_empty());
    assert_eq!(
        emails::find_by_message_id(c, a.id, "1/7/1@example.test")
            .await?
            .len(),
        1
    );
    assert_eq!(
        emails::delete_by_remote_ids(c, a.id, &["2/7/1".into()]).await?,
        1
    );
    assert_eq!(emails::count(c, a.id).await?, 1);
    Ok(())
}

async fn checkpoint_commits_with_batch(store: &Store) -> R {
    store.migrate().await?;
    let a = accounts::create(store.conn(), new_account("cp")).await?;
    let inbox =
        mailboxes::upsert(store.conn(), a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let scope = Scope::imap_mailbox(inbox);
    let cp = Checkpoint {
        uidvalidity: Some(7),
        last_uid: Some(2),
        highestmodseq: Some(5),
        state: None,
    };
    // A batch whose transaction is dropped leaves neither rows nor checkpoint.
    {
        let txn = store.begin().await?;
        emails::upsert_batch(&txn, a.id, &[email("1", inbox, 1), email("2", inbox, 2)]).await?;
        checkpoints::put(&txn, a.id, &scope, &cp).await?;
        drop(txn);
    }
    assert_eq!(emails::count(store.conn(), a.id).await?, 0);
    assert!(
        checkpoints::get(store.conn(), a.id, &scope)
            .await?
            .is_none()
    );
    // Committed: both.
    let txn = store.conn().begin().await?;
    emails::upsert_batch(&txn, a.id, &[email("1", inbox, 1), email("2", inbox, 2)]).await?;
    checkpoints::put(&txn, a.id, &scope, &cp).await?;
    txn.commit().await?;
    assert_eq!(emails::count(store.conn(), a.id).await?, 2);
    assert_eq!(
        checkpoints::get(store.conn(), a.id, &scope).await?,
        Some(cp)
    );
    checkpoints::put(
        store.conn(),
        a.id,
        &Scope::jmap("Email"),
        &Checkpoint::state("s1"),
    )
    .await?;
    checkpoints::put(
        store.conn(),
        a.id,
        &Scope::jmap("Email"),
        &Checkpoint::state("s2"),
    )
    .await?;
    assert_eq!(
        checkpoints::get(store.conn(), a.id, &Scope::jmap("Email"))
            .await?
            .and_then(|c| c.state),
        Some("s2".into())
    );
    checkpoints::delete(store.conn(), a.id, &Scope::jmap("Email")).await?;
    assert!(
        checkpoints::get(store.conn(), a.id, &Scope::jmap("Email"))
            .await?
            .is_none()
    );
    Ok(())
}

async fn queue_and_failed(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("q")).await?;
    let now = mailsync_store::now();
    let later = now + chrono::Duration::seconds(60);
    let id1 = queue::insert(
        c,
        NewChange {
            account_id: a.id,
            email_id: None,
            kind: "flag".into(),
            payload: "{\"a\":1}".into(),
            next_attempt_at: now,
        },
    )
    .await?;
    let id2 = queue::insert(
        c,
        NewChange {
            account_id: a.id,
            email_id: None,
            kind: "move".into(),
            payload: "{}".into(),
            next_attempt_at: later,
        },
    )
    .await?;
    let due = queue::due(c, a.id, now, 10).await?;
    assert_eq!(due.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id1]);
    assert_eq!(queue::count(c, a.id).await?, 2);
    queue::update(
        c,
        id1,
        ChangeUpdate {
            state: Some(ChangeState::Submitted),
            retry_count: Some(2),
            last_error: Some(Some("timeout".into())),
            ..Default::default()
        },
    )
    .await?;
    let p1 = queue::get(c, id1).await?.ok_or("p1")?;
    assert_eq!(
        (p1.state, p1.retry_count, p1.last_error.as_deref()),
        (ChangeState::Submitted, 2, Some("timeout"))
    );
    assert_eq!(queue::next_due_at(c, a.id).await?, Some(now));
    let f = queue::evict(c, id2, "mailbox does not exist").await?;
    assert_eq!(queue::count(c, a.id).await?, 1);
    assert_eq!(queue::count_failed(c, a.id).await?, 1);
    let failed = queue::list_failed(c, Some(a.id)).await?;
    assert_eq!(failed[0].reason, "mailbox does not exist");
    assert_eq!(failed[0].kind, "move");
    let back = queue::requeue_failed(c, f, now).await?;
    assert_eq!(queue::get(c, back).await?.ok_or("requeued")?.retry_count, 0);
    assert_eq!(queue::count_failed(c, a.id).await?, 0);
    let f2 = queue::evict(c, back, "again").await?;
    queue::dismiss_failed(c, f2).await?;
    assert!(queue::get_failed(c, f2).await?.is_none());
    queue::delete(c, id1).await?;
    assert_eq!(queue::count(c, a.id).await?, 0);
    Ok(())
}

async fn sync_log_rows(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("l")).await?;
    let id = sync_log::start(c, a.id).await?;
    assert!(sync_log::last_finished(c, a.id).await?.is_none());
    let counts = SyncCounts {
        mailboxes: 6,
        emails_added: 10,
        ..Default::default()
    };
    sync_log::finish(c, id, Ok(()), counts).await?;
    let id2 = sync_log::start(c, a.id).await?;
    sync_log::finish(
        c,
        id2,
        Err("authentication failed\nsecond line"),
        SyncCounts::default(),
    )
    .await?;
    let rows = sync_log::list(c, Some(a.id), 10).await?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, CycleStatus::Error);
    assert_eq!(rows[0].error.as_deref(), Some("authentication failed"));
    assert_eq!(rows[1].counts, counts);
    assert_eq!(
        sync_log::last_finished(c, a.id).await?.ok_or("last")?.id,
        id2
    );
    Ok(())
}

async fn bulk_insert_10000(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate().await?;
    let a = accounts::create(store.conn(), new_account("bulk")).await?;
    let inbox =
        mailboxes::upsert(store.conn(), a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(500);
    for uid in 1..=10_000i64 {
        let mut e = email(&format!("{}/7/{uid}", inbox.0), inbox, uid);
        e.flags.flagged = uid % 1_000 == 0;
        batch.push(e);
        if batch.len() == 500 {
            let txn = store.begin().await?;
            emails::upsert_batch(&txn, a.id, &batch).await?;
            checkpoints::put(
                &txn,
                a.id,
                &Scope::imap_mailbox(inbox),
                &Checkpoint {
                    uidvalidity: Some(7),
                    last_uid: Some(uid),
                    highestmodseq: None,
                    state: None,
                },
            )
            .await?;
            txn.commit().await?;
            batch.clear();
        }
    }
    let elapsed = started.elapsed();
    let backend = format!("{:?}", store.backend());
    println!(
        "bulk_insert_10000 {backend}: {:.0} ms ({:.0} emails/s)",
        elapsed.as_secs_f64() * 1e3,
        10_000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(emails::count(store.conn(), a.id).await?, 10_000);
    assert_eq!(count(store, "email_mailboxes").await?, 10_000);
    assert_eq!(emails::max_uid(store.conn(), inbox).await?, Some(10_000));
    // The body-debt check a no-change resync makes once per account, owing and paid up.
    let t = Instant::now();
    let owing = bodies::mailboxes_with_debt(store.conn(), a.id, BodyPolicy::All).await?;
    let owing_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(owing.len(), 1);
    let txn = store.begin().await?;
    let all = bodies::wanted_missing(
        &txn,
        a.id,
        bodies::DebtScope::Account,
        BodyPolicy::All,
        None,
        20_000,
    )
    .await?;
    assert_eq!(all.len(), 10_000);
    for w in all {
        bodies::put(&txn, w.email, &bodies::Body::default()).await?;
    }
    txn.commit().await?;
    let t = Instant::now();
    assert!(
        bodies::mailboxes_with_debt(store.conn(), a.id, BodyPolicy::All)
            .await?
            .is_empty()
    );
    println!(
        "mailboxes_with_debt over 10,000 emails {backend}: {owing_ms:.1} ms owing, {:.1} ms paid up",
        t.elapsed().as_secs_f64() * 1e3
    );
    // A word in every email: PostgreSQL walks the newest mail (its statistics, refreshed as a
    // sync's writer would, say 10,000 matches), SQLite ranks the newest FTS5 matches. Equal
    // scores, so the newest come first on both.
    store.note_inserted(10_000).await;
    let uids = |hits: Vec<search::Hit>| -> Vec<i64> {
        hits.iter()
            .filter_map(|h| h.summary.email.remote_id.rsplit('/').next()?.parse().ok())
            .collect()
    };
    let hits = search::search(store, Some(a.id), &search::parse("subject")?, 20).await?;
    assert_eq!(uids(hits), (9_981..=10_000).rev().collect::<Vec<i64>>());
    // A filter that leaves fewer than the limit in the newest mail walked: the index's
    // matches, all of them.
    let hits = search::search(store, Some(a.id), &search::parse("subject is:flagged")?, 20).await?;
    assert_eq!(
        uids(hits),
        (1..=10).rev().map(|k| k * 1_000).collect::<Vec<i64>>()
    );
    let hits = search::search(store, Some(a.id), &search::parse("\"subject 9999\"")?, 20).await?;
    assert_eq!(uids(hits), vec![9_999]);
    Ok(())
}

#[tokio::test]
async fn bad_url_is_a_clear_error() {
    let err = Store::open("mysql://x")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unsupported database URL"), "{err}");
    let err = Store::open("postgres://nobody:pw@127.0.0.1:1/none")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cannot open database") && !err.contains("pw@"),
        "{err}"
    );
}

#[allow(dead_code)]
fn unused(_: AccountId) {}

fn msg(
    remote: &str,
    inbox: mailsync_store::MailboxId,
    uid: i64,
    subject: &str,
    refs: Option<&str>,
) -> EmailUpsert {
    let mut u = email(remote, inbox, uid);
    u.message_id = Some(format!("{remote}@x"));
    u.subject = Some(subject.into());
    u.references = refs.map(str::to_owned);
    u
}

async fn thread_of(
    store: &Store,
    acc: AccountId,
    mid: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let e = emails::find_by_message_id(store.conn(), acc, mid).await?;
    Ok(e.first()
        .and_then(|e| e.thread_id.clone())
        .ok_or(format!("no thread for {mid}"))?)
}

/// Local threading: a reply before its parent, siblings of a missing parent, a message that
/// merges two threads, the subject fallback, a server thread id kept; the listing's counts.
async fn threads_local_incremental(store: &Store) -> R {
    use mailsync_store::threads::{self, ThreadFilter};
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("threads")).await?.id;
    mailboxes::upsert(
        c,
        acc,
        &[
            mbox("INBOX", Some(Role::Inbox)),
            mbox("Sent", Some(Role::Sent)),
        ],
    )
    .await?;
    let boxes = mailboxes::list(c, acc).await?;
    let inbox = boxes
        .iter()
        .find(|m| m.remote_id == "INBOX")
        .ok_or("inbox")?
        .id;
    let sent = boxes
        .iter()
        .find(|m| m.remote_id == "Sent")
        .ok_or("sent")?
        .id;
    // Two replies to a parent not yet here, in separate batches.
    emails::upsert_batch(c, acc, &[msg("r2", inbox, 2, "Re: Plan", Some("<p@x>"))]).await?;
    let mut r3 = msg("r3", sent, 3, "Re: Plan", None);
    r3.in_reply_to = Some("<p@x>".into());
    emails::upsert_batch(c, acc, &[r3]).await?;
    let t = thread_of(store, acc, "r2@x").await?;
    assert_eq!(
        thread_of(store, acc, "r3@x").await?,
        t,
        "siblings of a missing parent"
    );
    // The parent arrives later and joins.
    emails::upsert_batch(c, acc, &[msg("p", inbox, 1, "Plan", None)]).await?;
    assert_eq!(
        thread_of(store, acc, "p@x").await?,
        t,
        "parent joins its replies"
    );
    // Two unrelated threads, then a message naming both merges them.
    emails::upsert_batch(
        c,
        acc,
        &[
            msg("x1", inbox, 4, "Other", None),
            msg("y1", inbox, 5, "Third", None),
        ],
    )
    .await?;
    let (tx, ty) = (
        thread_of(store, acc, "x1@x").await?,
        thread_of(store, acc, "y1@x").await?,
    );
    assert_ne!(tx, ty);
    assert_ne!(tx, t);
    emails::upsert_batch(
        c,
        acc,
        &[msg("m", inbox, 6, "Re: Other", Some("<x1@x> <y1@x>"))],
    )
    .await?;
    let merged = thread_of(store, acc, "m@x").await?;
    assert_eq!(thread_of(store, acc, "x1@x").await?, merged);
    assert_eq!(thread_of(store, acc, "y1@x").await?, merged);
    // In one batch, a reply listed before its parent.
    emails::upsert_batch(
        c,
        acc,
        &[
            msg("b2", inbox, 8, "Re: Batch", Some("<b1@x>")),
            msg("b1", inbox, 7, "Batch", None),
        ],
    )
    .await?;
    assert_eq!(
        thread_of(store, acc, "b1@x").await?,
        thread_of(store, acc, "b2@x").await?
    );
    // Subject fallback: a bare "RE:" without references joins the thread of its base subject;
    // a second message with the same subject but not a reply starts its own.
    emails::upsert_batch(c, acc, &[msg("s1", inbox, 9, "Lunch", None)]).await?;
    emails::upsert_batch(c, acc, &[msg("s2", inbox, 10, "RE: lunch", None)]).await?;
    assert_eq!(
        thread_of(store, acc, "s1@x").await?,
        thread_of(store, acc, "s2@x").await?
    );
    emails::upsert_batch(c, acc, &[msg("s3", inbox, 11, "Lunch", None)]).await?;
    assert_ne!(
        thread_of(store, acc, "s3@x").await?,
        thread_of(store, acc, "s1@x").await?
    );
    // A server's thread id is kept as given.
    let mut srv = msg("j1", inbox, 12, "Re: Plan", Some("<p@x>"));
    srv.thread_id = Some("server-thread".into());
    emails::upsert_batch(c, acc, &[srv]).await?;
    assert_eq!(thread_of(store, acc, "j1@x").await?, "server-thread");
    // Re-upserting (a flag change) keeps the thread.
    let mut again = msg("r2", inbox, 2, "Re: Plan", Some("<p@x>"));
    again.flags.seen = true;
    emails::upsert_batch(c, acc, &[again]).await?;
    assert_eq!(thread_of(store, acc, "r2@x").await?, t);

    // The listing: newest activity first, counts over the whole conversation.
    let list = threads::list(
        c,
        &ThreadFilter {
            account: Some(acc),
            ..Default::default()
        },
    )
    .await?;
    let plan = list
        .iter()
        .find(|x| x.thread_id == t)
        .ok_or("plan thread")?;
    assert_eq!((plan.count, plan.unread), (3, 2));
    assert_eq!(
        plan.subject.as_deref(),
        Some("Plan"),
        "the oldest message's subject"
    );
    assert_eq!(plan.participants.len(), 1);
    assert_eq!(list[0].thread_id, "server-thread", "newest first");
    assert_eq!(list.len(), 6);
    // With a mailbox: conversations that have a message there, still counted whole.
    let in_sent = threads::list(
        c,
        &ThreadFilter {
            account: Some(acc),
            mailbox: Some(sent),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(in_sent.len(), 1);
    assert_eq!(in_sent[0].count, 3);
    let by_role = threads::list(
        c,
        &ThreadFilter {
            role: Some(Role::Sent),
            limit: Some(5),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(by_role.len(), 1);
    // Emails of one thread.
    let msgs = emails::list(
        c,
        &EmailFilter {
            thread: Some(merged.clone()),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(msgs.len(), 3);
    // Mail leaving: the thread stays with fewer messages, and a copy coming back rejoins it.
    emails::delete_by_remote_ids(c, acc, &["p".to_owned()]).await?;
    let list = threads::list(
        c,
        &ThreadFilter {
            account: Some(acc),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        list.iter().find(|x| x.thread_id == t).ok_or("plan")?.count,
        2
    );
    emails::upsert_batch(c, acc, &[msg("p", inbox, 1, "Plan", None)]).await?;
    assert_eq!(thread_of(store, acc, "p@x").await?, t);
    Ok(())
}

/// Merges that chain (schema v18): eight threads merged pairwise, then the pairs, then the
/// halves, so threads that won a merge lose a later one. Every message and every reply naming
/// any original message ends in one thread, and the recorded merges stay flat. Down to v17
/// applies the merges to the links; up again, threading goes on from v17's links (those and
/// one to a message never stored).
async fn thread_merges_chain_and_v18(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("merges")).await?.id;
    let inbox = mailboxes::upsert(c, acc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let mut uid = 0;
    let mut next = |remote: &str, subject: &str, refs: Option<&str>| {
        uid += 1;
        msg(remote, inbox, uid, subject, refs)
    };
    let roots: Vec<EmailUpsert> = (0..8)
        .map(|i| next(&format!("t{i}"), &format!("Topic {i}"), None))
        .collect();
    emails::upsert_batch(c, acc, &roots).await?;
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..8 {
        distinct.insert(thread_of(store, acc, &format!("t{i}@x")).await?);
    }
    assert_eq!(distinct.len(), 8);
    // Each round joins neighbours through a message naming one original message of each
    // side, in a batch of its own.
    let mut merger = 0;
    for step in [1usize, 2, 4] {
        for left in (0..8).step_by(step * 2) {
            let refs = format!("<t{left}@x> <t{}@x>", left + step);
            merger += 1;
            let m = next(&format!("j{merger}"), "Re: joined", Some(&refs));
            emails::upsert_batch(c, acc, &[m]).await?;
        }
    }
    let all = thread_of(store, acc, "t0@x").await?;
    for i in 0..8 {
        assert_eq!(
            thread_of(store, acc, &format!("t{i}@x")).await?,
            all,
            "t{i}"
        );
    }
    for j in 1..=merger {
        assert_eq!(
            thread_of(store, acc, &format!("j{j}@x")).await?,
            all,
            "j{j}"
        );
    }
    assert_eq!(count(store, "thread_merges").await?, 7, "one row per merge");
    assert_eq!(
        scalar(
            store,
            "SELECT COUNT(*) FROM thread_merges WHERE winner IN (SELECT loser FROM thread_merges)"
        )
        .await?,
        0,
        "merges stay flat"
    );
    // A late reply to any original message (whose link may name a losing thread) joins.
    for i in 0..8 {
        let r = next(&format!("late{i}"), "Re: late", Some(&format!("<t{i}@x>")));
        emails::upsert_batch(c, acc, &[r]).await?;
        assert_eq!(thread_of(store, acc, &format!("late{i}@x")).await?, all);
    }
    // Down to v17: the links carry the merges, the table goes.
    store.migrate_to(17).await?;
    assert!(count(store, "thread_merges").await.is_err());
    assert_eq!(
        scalar(
            store,
            "SELECT COUNT(*) FROM thread_links WHERE link_key LIKE 'm:t%' AND thread_id <> \
             (SELECT thread_id FROM emails WHERE message_id = 't0@x')"
        )
        .await?,
        0,
        "v17 links name the current thread"
    );
    // A v17 link to a message never stored (a reply's parent elsewhere).
    c.execute_unprepared(&format!(
        "INSERT INTO thread_links (account_id, link_key, thread_id) VALUES ({}, 'm:ghost@x', '{all}')",
        acc.0
    ))
    .await?;
    // Up again: threading goes on from v17's links.
    store.migrate().await?;
    let r = next("again", "Re: again", Some("<t5@x>"));
    emails::upsert_batch(c, acc, &[r]).await?;
    assert_eq!(thread_of(store, acc, "again@x").await?, all);
    let r = next("orphan", "Re: elsewhere", Some("<ghost@x>"));
    emails::upsert_batch(c, acc, &[r]).await?;
    assert_eq!(thread_of(store, acc, "orphan@x").await?, all, "copied link");
    Ok(())
}

/// Upgrading a v9 database with mail: existing mail is threaded and indexed, and the index
/// follows later changes; down to v9 removes it again.
async fn v9_upgrade_threads_and_indexes(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate_to(9).await?;
    let ts = "2026-01-02 03:04:05+00:00";
    let stmts = [
        format!("INSERT INTO accounts (name, kind, email, username, secret_ref, imap_host, imap_port, imap_security, allow_plaintext, body_policy, created_at, updated_at) VALUES ('old', 'imap', 'a@example.test', 'a', 'env:PW', 'imap.example.test', 993, 'tls', false, 'none', '{ts}', '{ts}')"),
        format!("INSERT INTO mailboxes (account_id, remote_id, name, selectable, total, unread, created_at, updated_at) VALUES ((SELECT id FROM accounts), 'INBOX', 'INBOX', true, 2, 1, '{ts}', '{ts}')"),
        format!("INSERT INTO emails (account_id, remote_id, message_id, subject, from_addr, to_addr, cc_addr, bcc_addr, reply_to, received_at, size, seen, flagged, answered, draft, keywords, has_attachment, created_at, updated_at) VALUES ((SELECT id FROM accounts), '1/7/2', 'reply@x', 'Re: Harbour', '[{{\"name\":\"Zoe Quill\",\"email\":\"zoe@example.org\"}}]', '[]', '[]', '[]', '[]', '{ts}', 10, true, false, false, false, '[]', false, '{ts}', '{ts}')"),
        format!("INSERT INTO emails (account_id, remote_id, message_id, subject, from_addr, to_addr, cc_addr, bcc_addr, reply_to, received_at, size, seen, flagged, answered, draft, keywords, has_attachment, created_at, updated_at) VALUES ((SELECT id FROM accounts), '1/7/1', 'parent@x', 'Harbour', '[]', '[]', '[]', '[]', '[]', '{ts}', 10, true, false, false, false, '[]', false, '{ts}', '{ts}')"),
        "UPDATE emails SET in_reply_to = 'parent@x' WHERE remote_id = '1/7/2'".to_owned(),
        "INSERT INTO email_mailboxes (email_id, mailbox_id, uidvalidity, uid) SELECT id, (SELECT id FROM mailboxes), 7, 1 FROM emails WHERE remote_id = '1/7/1'".to_owned(),
        "INSERT INTO email_mailboxes (email_id, mailbox_id, uidvalidity, uid) SELECT id, (SELECT id FROM mailboxes), 7, 2 FROM emails WHERE remote_id = '1/7/2'".to_owned(),
        format!("INSERT INTO email_bodies (email_id, text_body, truncated, fetched_at) SELECT id, 'the lighthouse keeper', false, '{ts}' FROM emails WHERE remote_id = '1/7/1'"),
    ];
    for s in &stmts {
        store.conn().execute_unprepared(s).await?;
    }
    let before = futures_counts(store, 11).await?;
    store.migrate().await?;
    assert_eq!(
        store.schema_version().await?,
        mailsync_store::LATEST_VERSION
    );
    assert_eq!(futures_counts(store, 11).await?, before, "every row kept");
    let acc = accounts::find_by_name(store.conn(), "old")
        .await?
        .ok_or("account")?
        .id;
    let t = thread_of(store, acc, "parent@x").await?;
    assert_eq!(
        thread_of(store, acc, "reply@x").await?,
        t,
        "old mail threaded"
    );
    let c = store.conn();
    let find = |q: &str| {
        let q = search::parse(q);
        async move { search::search(store, None, &q?, 10).await }
    };
    assert_eq!(find("lighthouse").await?.len(), 1, "old body indexed");
    assert_eq!(find("harbour").await?.len(), 2, "old subjects indexed");
    assert_eq!(find("from:quill").await?.len(), 1, "old addresses indexed");
    // A new reply after the upgrade joins the old thread and is indexed.
    let inbox = mailboxes::list(c, acc).await?[0].id;
    emails::upsert_batch(
        c,
        acc,
        &[msg("new", inbox, 3, "Re: Harbour", Some("<parent@x>"))],
    )
    .await?;
    assert_eq!(thread_of(store, acc, "new@x").await?, t);
    assert_eq!(find("harbour").await?.len(), 3);
    store.migrate_to(9).await?;
    assert!(count(store, "thread_links").await.is_err());
    assert_eq!(
        futures_counts(store, 11).await?[2],
        3,
        "emails kept on the way down"
    );
    store.migrate().await?;
    assert_eq!(find("harbour").await?.len(), 3, "re-indexed on the way up");
    Ok(())
}

/// The query language on both backends, ranking, and the index following every writer.
async fn search_local_language_and_upkeep(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("search")).await?.id;
    let other = accounts::create(c, new_account("search-other")).await?.id;
    mailboxes::upsert(
        c,
        acc,
        &[mbox("INBOX", Some(Role::Inbox)), mbox("Archive", None)],
    )
    .await?;
    mailboxes::upsert(c, other, &[mbox("INBOX", Some(Role::Inbox))]).await?;
    let boxes = mailboxes::list(c, acc).await?;
    let inbox = boxes
        .iter()
        .find(|m| m.remote_id == "INBOX")
        .ok_or("inbox")?
        .id;
    let archive = boxes
        .iter()
        .find(|m| m.remote_id == "Archive")
        .ok_or("archive")?
        .id;
    let addr = |n: &str, e: &str| Address {
        name: Some(n.into()),
        email: e.into(),
    };
    let mut a = msg("a", inbox, 1, "Quarterly budget review", None);
    a.from = vec![addr("Alice Liddell", "alice@example.org")];
    a.to = vec![addr("Bob", "bob@example.net")];
    a.flags.flagged = true;
    a.has_attachment = true;
    a.received_at = Utc
        .with_ymd_and_hms(2026, 1, 10, 12, 0, 0)
        .single()
        .ok_or("date")?;
    let mut b = msg("b", archive, 2, "Lunch", None);
    b.from = vec![addr("Carol", "carol@example.org")];
    b.flags.seen = true;
    b.received_at = Utc
        .with_ymd_and_hms(2026, 2, 10, 12, 0, 0)
        .single()
        .ok_or("date")?;
    let mut d = msg("d", inbox, 3, "Café meeting", None);
    d.from = vec![addr("Dave", "dave@example.org")];
    d.cc = vec![addr("Alice", "alice@example.org")];
    d.received_at = Utc
        .with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
        .single()
        .ok_or("date")?;
    emails::upsert_batch(c, acc, &[a, b, d]).await?;
    // Writes only note the rows; a writer's batch indexes every noted row in its transaction.
    assert_eq!(
        count(store, "search_pending").await?,
        3,
        "noted, not indexed"
    );
    let mut o = msg(
        "o",
        mailboxes::list(c, other).await?[0].id,
        1,
        "budget elsewhere",
        None,
    );
    o.remote_id = "o".into();
    emails::upsert_batch(c, other, &[o]).await?;
    // Both backends index beside the writes (SQLite in its companion file, PostgreSQL in
    // transactions of their own) and leave the notes to the indexer.
    assert_eq!(
        count(store, "search_pending").await?,
        4,
        "left to the indexer"
    );
    assert_eq!(store.index_noted(1_000).await?, 4, "every note passed");
    assert_eq!(store.index_noted(1_000).await?, 0, "current");
    // SQLite collects the notes it has passed once it has caught up; PostgreSQL's steps
    // delete theirs.
    let sqlite = store.backend() == mailsync_store::Backend::Sqlite;
    assert_eq!(store.collect_noted().await?, if sqlite { 4 } else { 0 });
    assert_eq!(count(store, "search_pending").await?, 0, "indexed");
    let id = |r: &str| {
        let r = r.to_owned();
        async move { Ok::<_, StoreError>(emails::find_by_remote_id(c, acc, &r).await?.map(|e| e.id)) }
    };
    let (ia, ib, id_) = (
        id("a").await?.ok_or("a")?,
        id("b").await?.ok_or("b")?,
        id("d").await?.ok_or("d")?,
    );
    bodies::put(
        c,
        ia,
        &bodies::Body {
            text: Some("Numbers for the next quarter are attached.".into()),
            html: None,
            raw: None,
            truncated: false,
        },
    )
    .await?;
    bodies::put(
        c,
        ib,
        &bodies::Body {
            text: Some("I hear the budget is fine.".into()),
            html: None,
            raw: None,
            truncated: false,
        },
    )
    .await?;
    let ids = |q: &str| {
        let q = q.to_owned();
        async move {
            let parsed = search::parse(&q)?;
            let hits = search::search(store, Some(acc), &parsed, 20).await?;
            Ok::<_, StoreError>(
                hits.into_iter()
                    .map(|h| h.summary.email.id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    // The bodies above were stored without indexing: the search catches up first.
    assert_eq!(count(store, "search_pending").await?, 2, "bodies noted");
    assert_eq!(
        ids("budget").await?,
        vec![ia, ib],
        "subject match ranks above body match"
    );
    assert_eq!(count(store, "search_pending").await?, 0, "caught up");
    assert_eq!(ids("BUDGET").await?, vec![ia, ib]);
    assert_eq!(ids("\"next quarter\"").await?, vec![ia]);
    assert_eq!(
        ids("\"quarter next\"").await?,
        Vec::<mailsync_store::EmailId>::new()
    );
    assert_eq!(ids("from:alice").await?, vec![ia]);
    assert_eq!(ids("from:alice@example.org").await?, vec![ia]);
    assert_eq!(
        ids("to:alice").await?,
        vec![id_],
        "Cc counts as a recipient"
    );
    assert_eq!(ids("subject:budget").await?, vec![ia]);
    assert_eq!(ids("budget in:archive").await?, vec![ib]);
    assert_eq!(ids("budget in:inbox").await?, vec![ia], "role");
    assert_eq!(ids("budget is:unread").await?, vec![ia]);
    assert_eq!(ids("is:flagged").await?, vec![ia]);
    assert_eq!(ids("has:attachment").await?, vec![ia]);
    assert_eq!(
        ids("is:unread").await?,
        vec![id_, ia],
        "no words: newest first"
    );
    assert_eq!(
        ids("after:2026-02-10").await?,
        vec![id_, ib],
        "after: includes the day"
    );
    assert_eq!(ids("before:2026-02-10").await?, vec![ia]);
    assert_eq!(ids("café").await?, vec![id_]);
    let hits = search::search(store, None, &search::parse("budget")?, 20).await?;
    assert_eq!(hits.len(), 3, "every account without one given");
    let snip = search::search(store, Some(acc), &search::parse("fine")?, 5).await?;
    assert!(
        snip[0]
            .snippet
            .as_deref()
            .unwrap_or_default()
            .contains("budget is fine"),
        "{:?}",
        snip[0].snippet
    );
    // Upkeep: a changed subject, a new body, a removed email, a removed body.
    let mut b2 = msg("b", archive, 2, "Dinner plans", None);
    b2.flags.seen = true;
    emails::upsert_batch(c, acc, &[b2]).await?;
    assert_eq!(ids("lunch").await?, Vec::<mailsync_store::EmailId>::new());
    assert_eq!(ids("dinner").await?, vec![ib]);
    assert_eq!(
        ids("budget").await?,
        vec![ia, ib],
        "body still indexed after a subject change"
    );
    bodies::put(
        c,
        id_,
        &bodies::Body {
            text: Some("zebra crossing".into()),
            html: None,
            raw: None,
            truncated: false,
        },
    )
    .await?;
    assert_eq!(ids("zebra").await?, vec![id_]);
    assert_eq!(ids("café zebra").await?, vec![id_]);
    emails::delete_by_remote_ids(c, acc, &["a".to_owned()]).await?;
    assert_eq!(ids("budget").await?, vec![ib]);
    assert_eq!(ids("quarter").await?, Vec::<mailsync_store::EmailId>::new());
    // Flag changes do not touch the index but are seen by the filters.
    emails::set_flags(
        c,
        ib,
        &Flags {
            seen: false,
            ..Flags::default()
        },
    )
    .await?;
    assert_eq!(ids("budget is:unread").await?, vec![ib]);
    // A bad query is a one-line error.
    match search::parse("from: \"x") {
        Err(StoreError::BadQuery { .. }) => {}
        other => return Err(format!("expected BadQuery, got {other:?}").into()),
    }
    Ok(())
}

/// A transaction that reads, then writes while another connection commits in between (the lease
/// heartbeat beside a sync batch) must not fail: on SQLite a deferred transaction gets
/// `SQLITE_BUSY_SNAPSHOT` (517) at once, with no busy wait; `Store::begin` is `BEGIN IMMEDIATE`.
async fn read_then_write_beside_a_committing_writer(store: &Store) -> R {
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("busy")).await?.id;
    let ttl = std::time::Duration::from_secs(30);
    leases::acquire(c, acc, "daemon", ttl, mailsync_store::now()).await?;
    for round in 0..3 {
        let txn = store.begin().await?;
        let before = count_in(&txn, "mailboxes").await?;
        // The heartbeat commits on another connection while the transaction is open.
        let other = store.clone();
        let heartbeat = tokio::spawn(async move {
            leases::renew(other.conn(), acc, "daemon", ttl, mailsync_store::now()).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        mailboxes::upsert(&txn, acc, &[mbox(&format!("Box{round}"), None)]).await?;
        txn.commit().await?;
        assert!(heartbeat.await??, "round {round}: renewed after the commit");
        assert_eq!(count(store, "mailboxes").await?, before + 1);
    }
    Ok(())
}

async fn count_in<C: ConnectionTrait>(
    c: &C,
    table: &str,
) -> Result<i64, Box<dyn std::error::Error>> {
    let row = c
        .query_one_raw(sea_orm::Statement::from_string(
            c.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// SQLite: a bulk writer's commits leave the WAL alone up to ~40 MB, and
/// `Store::checkpoint_wal` (which sync runs beside its next batch's write) copies what they
/// committed into the database file. Before, each commit past 1,000 pages (SQLite's default)
/// checkpointed in line and held up the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_commits_leave_the_checkpoint_to_checkpoint_wal() -> R {
    let db = TempDb::sqlite().await?;
    let store = &db.store;
    let c = store.conn();
    let file = db
        .url
        .trim_start_matches("sqlite://")
        .trim_end_matches("?mode=rwc")
        .to_owned();
    assert_eq!(
        scalar(store, "PRAGMA wal_autocheckpoint").await?,
        i64::from(mailsync_store::WAL_AUTOCHECKPOINT_PAGES)
    );
    // The WAL file is cut back to this when SQLite starts it over (605 MB kept after a first
    // sync of 100,000 messages without it; 64 MiB with it).
    assert_eq!(
        u64::try_from(scalar(store, "PRAGMA journal_size_limit").await?)?,
        mailsync_store::WAL_SIZE_LIMIT
    );
    store.checkpoint_wal().await;
    let a = accounts::create(c, new_account("wal")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let size = || std::fs::metadata(&file).map(|m| m.len());
    let empty = size()?;
    // ~8 MB in 4 commits: 2,000 pages, twice SQLite's default checkpoint threshold.
    let text = "lorem ipsum dolor sit amet ".repeat(150);
    for b in 0..4i64 {
        let items: Vec<EmailUpsert> = (b * 500 + 1..=(b + 1) * 500)
            .map(|u| email(&format!("w{u}"), inbox, u))
            .collect();
        let txn = store.begin().await?;
        emails::upsert_batch(&txn, a.id, &items).await?;
        let ids = emails::ids_by_remote_ids(
            &txn,
            a.id,
            &items
                .iter()
                .map(|u| u.remote_id.clone())
                .collect::<Vec<_>>(),
        )
        .await?;
        let body = mailsync_store::bodies::Body {
            text: Some(text.clone()),
            html: None,
            raw: None,
            truncated: false,
        };
        let rows: Vec<_> = ids.values().map(|id| (*id, &body)).collect();
        mailsync_store::bodies::put_many(&txn, &rows).await?;
        txn.commit().await?;
    }
    let committed = size()?;
    assert!(
        committed < empty + 1_000_000,
        "the commits checkpointed by themselves: {empty} -> {committed} bytes"
    );
    store.checkpoint_wal().await;
    let checkpointed = size()?;
    assert!(
        checkpointed > committed + 6_000_000,
        "checkpoint_wal copied too little: {committed} -> {checkpointed} bytes"
    );
    assert_eq!(count(store, "email_bodies").await?, 2_000);
    db.cleanup().await?;
    Ok(())
}

/// The search words of `store`'s account `acc`: which of `words` a search finds.
async fn found_words(
    store: &Store,
    words: &[&str],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use mailsync_store::search;
    let mut out = Vec::new();
    for w in words {
        if !search::search(store, None, &search::parse(w)?, 10)
            .await?
            .is_empty()
        {
            out.push((*w).to_owned());
        }
    }
    Ok(out)
}

/// Copies a SQLite database's files (main file and WAL) from `from` to `to`, removing any
/// `to` files first (a backup taken, or restored, while nobody has it open).
fn copy_db_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut dst = to.as_os_str().to_owned();
        dst.push(suffix);
        let _ = std::fs::remove_file(&dst);
        let mut src = from.as_os_str().to_owned();
        src.push(suffix);
        if suffix != "-shm" && std::path::Path::new(&src).exists() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// SQLite's search index lives in a companion file beside the database: indexing never waits
/// for the mail database's write lock (a writer's batch stays open throughout), and a
/// companion that is missing, belongs to another database, or is an older copy is rebuilt
/// when the store opens, so a search never misses mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_companion_indexes_beside_the_writer_and_is_rebuilt_when_out_of_step() -> R {
    let dir = tempfile::tempdir()?;
    let mail = dir.path().join("mail.db");
    let url = format!("sqlite://{}?mode=rwc", mail.display());
    let companion = mailsync_store::companion::path_for(&mail);
    let store = Store::open(&url).await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("companion")).await?.id;
    let inbox = mailboxes::upsert(c, acc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    emails::upsert_batch(c, acc, &[msg("1", inbox, 1, "lighthouse keeper", None)]).await?;

    // A writer's batch holds the mail database's write lock while the index catches up.
    let txn = store.begin().await?;
    emails::upsert_batch(&txn, acc, &[msg("2", inbox, 2, "harbour master", None)]).await?;
    let passed =
        tokio::time::timeout(std::time::Duration::from_secs(3), store.index_noted(1_000)).await??;
    assert_eq!(
        passed, 1,
        "indexed what was committed, without waiting for the writer"
    );
    txn.commit().await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "harbour"]).await?,
        ["lighthouse", "harbour"]
    );

    // An older copy of the companion, restored after the index moved on.
    let old = dir.path().join("old.search");
    store.close().await?;
    copy_db_files(&companion, &old)?;
    let store = Store::open(&url).await?;
    let c = store.conn();
    let two = emails::find_by_remote_id(c, acc, "2").await?.ok_or("2")?.id;
    emails::delete(c, two).await?;
    emails::upsert_batch(c, acc, &[msg("3", inbox, 3, "ferry timetable", None)]).await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "harbour", "ferry"]).await?,
        ["lighthouse", "ferry"]
    );
    assert_eq!(count(&store, "search_pending").await?, 0, "notes collected");
    store.close().await?;
    copy_db_files(&old, &companion)?;
    let store = Store::open(&url).await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "harbour", "ferry"]).await?,
        ["lighthouse", "ferry"],
        "an older companion is rebuilt"
    );
    store.close().await?;

    // Another database's companion.
    let other_mail = dir.path().join("other.db");
    let other = Store::open(&format!("sqlite://{}?mode=rwc", other_mail.display())).await?;
    let oc = other.conn();
    let oacc = accounts::create(oc, new_account("other")).await?.id;
    let obox = mailboxes::upsert(oc, oacc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let many: Vec<EmailUpsert> = (1..=5)
        .map(|i| msg(&i.to_string(), obox, i, "quarry", None))
        .collect();
    emails::upsert_batch(oc, oacc, &many).await?;
    assert_eq!(found_words(&other, &["quarry"]).await?, ["quarry"]);
    other.close().await?;
    copy_db_files(
        &mailsync_store::companion::path_for(&other_mail),
        &companion,
    )?;
    let store = Store::open(&url).await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "ferry", "quarry"]).await?,
        ["lighthouse", "ferry"],
        "another database's companion is rebuilt"
    );
    store.close().await?;

    // No companion at all.
    copy_db_files(&dir.path().join("none"), &companion)?;
    assert!(!companion.exists());
    let store = Store::open(&url).await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "ferry"]).await?,
        ["lighthouse", "ferry"],
        "a missing companion is rebuilt"
    );

    // FTS5's merge settings are applied to a new companion, and to one made before them.
    let merge = |store: &Store| {
        let c = store.search_conn().clone();
        async move {
            let rows = c
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT k, CAST(v AS INTEGER) AS v FROM main.email_fts_config \
                     WHERE k IN ('automerge', 'crisismerge') ORDER BY k",
                ))
                .await?;
            let mut out = Vec::new();
            for r in rows {
                out.push((r.try_get::<String>("", "k")?, r.try_get::<i64>("", "v")?));
            }
            Ok::<_, sea_orm::DbErr>(out)
        }
    };
    // The indexing steps ran on a thread of their own at a lower priority (Linux).
    #[cfg(target_os = "linux")]
    {
        let mut niced = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("ms-index-") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the name's closing parenthesis start at field 3; nice is field 19.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            niced.push(after.split_whitespace().nth(16).unwrap_or("?").to_owned());
        }
        // Other tests' stores may have a thread not yet lowered; this store's indexer is.
        assert!(
            niced.iter().any(|n| n == "10"),
            "an indexer thread at nice 10: {niced:?}"
        );
    }

    let want = vec![("automerge".to_owned(), 16), ("crisismerge".to_owned(), 64)];
    assert_eq!(merge(&store).await?, want);
    store
        .search_conn()
        .execute_unprepared(
            "INSERT INTO main.email_fts (email_fts, rank) VALUES ('automerge', 4); \
             INSERT INTO main.email_fts (email_fts, rank) VALUES ('crisismerge', 16)",
        )
        .await?;
    assert_ne!(merge(&store).await?, want);
    store.close().await?;
    let store = Store::open(&url).await?;
    assert_eq!(
        merge(&store).await?,
        want,
        "an older companion is reconfigured"
    );
    store.close().await?;
    Ok(())
}

/// A phrase matches its words in a row within one field, whatever else the text holds: the
/// same answers on both backends (SQLite indexes each distinct word once and checks phrases
/// against the text; PostgreSQL keeps positions). A phrase found only in mail older than the
/// first window of candidates (500 here) is still found, and its words apart are not.
async fn search_phrases_are_words_in_a_row_within_one_field(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate().await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("phrases")).await?.id;
    let inbox = mailboxes::upsert(c, acc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let body = |t: &str| bodies::Body {
        text: Some(t.into()),
        html: None,
        raw: None,
        truncated: false,
    };
    let mut ups = Vec::new();
    // 1: the phrase after a first "budget" that is not followed by "review".
    ups.push(msg("1", inbox, 1, "Notes", None));
    // 2: both words, apart. 3: one in the subject, the other in the body.
    ups.push(msg("2", inbox, 2, "Review", None));
    ups.push(msg("3", inbox, 3, "Budget", None));
    // 4: the phrase in the sender's name only.
    let mut four = msg("4", inbox, 4, "Hello", None);
    four.from = vec![Address {
        name: Some("Ann Budget".into()),
        email: "ann@example.test".into(),
    }];
    ups.push(four);
    // 5: outside ASCII. 10: a word FTS5's unicode61 splits at its combining marks (ह न द),
    // after those pieces on their own.
    ups.push(msg("5", inbox, 5, "Un été chaud", None));
    ups.push(msg("10", inbox, 6, "द न ह हिन्दी", None));
    // 11..=1205: both words, never in a row; old1..=3 hold the phrase and arrive between
    // them, behind 600 newer ones (arrival order is the index's order).
    for i in 11..=605 {
        ups.push(msg(
            &i.to_string(),
            inbox,
            10_000 + i,
            "alpha gamma beta",
            None,
        ));
    }
    emails::upsert_batch(c, acc, &ups).await?;
    let old: Vec<EmailUpsert> = (1..=3)
        .map(|i| {
            msg(
                &format!("old{i}"),
                inbox,
                20_000 + i,
                "beta alpha gamma",
                None,
            )
        })
        .collect();
    emails::upsert_batch(c, acc, &old).await?;
    let newer: Vec<EmailUpsert> = (606..=1205)
        .map(|i| msg(&i.to_string(), inbox, 10_000 + i, "alpha gamma beta", None))
        .collect();
    emails::upsert_batch(c, acc, &newer).await?;
    let id = |r: &str| {
        let r = r.to_owned();
        async move {
            Ok::<_, Box<dyn std::error::Error>>(
                emails::find_by_remote_id(c, acc, &r).await?.ok_or(r)?.id,
            )
        }
    };
    bodies::put(
        c,
        id("1").await?,
        &body("The budget of the year; the BUDGET, review: due."),
    )
    .await?;
    bodies::put(c, id("2").await?, &body("review the budget")).await?;
    bodies::put(c, id("3").await?, &body("review of the plan")).await?;
    let found = |q: &str| {
        let q = q.to_owned();
        async move {
            let mut ids: Vec<String> = search::search(store, Some(acc), &search::parse(&q)?, 10)
                .await?
                .into_iter()
                .map(|h| h.summary.email.remote_id)
                .collect();
            ids.sort();
            Ok::<_, Box<dyn std::error::Error>>(ids)
        }
    };
    assert_eq!(found("\"budget review\"").await?, ["1"]);
    assert_eq!(found("\"review the budget\"").await?, ["2"]);
    assert_eq!(found("\"budget of the year\"").await?, ["1"]);
    assert_eq!(found("\"year budget\"").await?, Vec::<String>::new());
    // Not across two fields (the subject's "Budget", the body's "review").
    assert_eq!(found("subject:budget review").await?, ["3"]);
    assert_eq!(found("\"budget review of\"").await?, Vec::<String>::new());
    // In the sender only, asked for anywhere or in from:.
    assert_eq!(found("\"ann budget\"").await?, ["4"]);
    assert_eq!(found("from:\"ann budget\"").await?, ["4"]);
    assert_eq!(found("subject:\"ann budget\"").await?, Vec::<String>::new());
    assert_eq!(found("\"Été chaud\"").await?, ["5"]);
    assert_eq!(found("\"chaud un\"").await?, Vec::<String>::new());
    assert_eq!(found("हिन्दी").await?, ["10"]);
    assert_eq!(found("subject:हिन्दी").await?, ["10"]);
    assert_eq!(found("\"ह हिन्दी\"").await?, ["10"]);
    // Behind 600 newer candidates with both words apart (the first window is 500).
    assert_eq!(found("\"beta alpha\"").await?, ["old1", "old2", "old3"]);
    assert_eq!(found("\"alpha beta\"").await?, Vec::<String>::new());
    assert_eq!(found("alpha beta").await?.len(), 10);
    Ok(())
}

/// A companion made before the distinct-word tokenizer (every word indexed, phrases asked of
/// FTS5) is dropped and rebuilt with it when the store opens, and what it held is found again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_companion_is_rebuilt_with_the_distinct_word_tokenizer() -> R {
    let dir = tempfile::tempdir()?;
    let mail = dir.path().join("mail.db");
    let url = format!("sqlite://{}?mode=rwc", mail.display());
    let store = Store::open(&url).await?;
    let c = store.conn();
    let acc = accounts::create(c, new_account("tokenizer")).await?.id;
    let inbox = mailboxes::upsert(c, acc, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    emails::upsert_batch(
        c,
        acc,
        &[msg("1", inbox, 1, "lighthouse lighthouse keeper", None)],
    )
    .await?;
    assert_eq!(found_words(&store, &["lighthouse"]).await?, ["lighthouse"]);
    let vocab = |store: &Store| {
        let c = store.search_conn().clone();
        async move {
            // One connection (the pool's other one has no such temporary table).
            let c = c.begin().await?;
            c.execute_unprepared(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, email_fts, 'row')",
            )
            .await?;
            let r = c
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT cnt FROM temp.vocab WHERE term = 'lighthouse'",
                ))
                .await?;
            r.map(|r| r.try_get::<i64>("", "cnt")).transpose()
        }
    };
    assert_eq!(vocab(&store).await?, Some(1), "each distinct word once");
    store.close().await?;

    // As a companion of the previous version: the table with `unicode61`, empty, its state
    // row saying it is current.
    let companion = mailsync_store::companion::path_for(&mail);
    let old = sea_orm::Database::connect(format!("sqlite://{}", companion.display())).await?;
    old.execute_unprepared(
        "DROP TABLE email_fts; CREATE VIRTUAL TABLE email_fts USING fts5(subject, sender, \
         recipients, body, content='', contentless_delete=1, \
         tokenize='unicode61 remove_diacritics 2')",
    )
    .await?;
    old.close().await?;

    let store = Store::open(&url).await?;
    assert_eq!(
        found_words(&store, &["lighthouse", "keeper"]).await?,
        ["lighthouse", "keeper"],
        "rebuilt"
    );
    let sql = store
        .search_conn()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT sql FROM main.sqlite_master WHERE name = 'email_fts'",
        ))
        .await?
        .ok_or("email_fts")?
        .try_get::<String>("", "sql")?;
    assert!(sql.contains(mailsync_fts::TOKENIZER), "{sql}");
    assert_eq!(vocab(&store).await?, Some(1));
    store.close().await?;
    Ok(())
}

/// A message whose subject and recipient list hold megabytes of distinct words and whose
/// Message-ID is 20,000 bytes long (hostile or broken mail, from anyone) is stored, indexed as
/// far as a document holds, and the mail after it is indexed too. On PostgreSQL each failed
/// every time, seen failing without each fix: the batch's write (an index row over the B-tree
/// limit: the subject's thread key, then the Message-ID), and the indexing step (the document
/// passed `tsvector`'s 1 MB), which held every later email's indexing back.
async fn a_hostile_header_is_stored_and_does_not_hold_the_index_back(store: &Store) -> R {
    use mailsync_store::search;
    store.migrate().await?;
    let c = store.conn();
    let a = accounts::create(c, new_account("huge")).await?;
    let inbox = mailboxes::upsert(c, a.id, &[mbox("INBOX", Some(Role::Inbox))]).await?[0].id;
    let mut huge = email("h1", inbox, 1);
    huge.subject = Some(
        (0..150_000)
            .map(|i| format!("w{i}x"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    huge.to = (0..20_000)
        .map(|i| Address {
            name: Some(format!("Person {i}")),
            email: format!("p{i}@host{i}.example"),
        })
        .collect();
    // Hardly compressible (PostgreSQL compresses a long index key before refusing it).
    let noise = mailsync_testkit::incompressible(20_000, 1);
    huge.message_id = Some(format!("{noise}@huge.example"));
    let mut plain = email("h2", inbox, 2);
    plain.subject = Some("quarterly budget".into());
    emails::upsert_batch(c, a.id, &[huge, plain]).await?;
    let hits = search::search(store, Some(a.id), &search::parse("budget")?, 10).await?;
    assert_eq!(hits.len(), 1, "the mail after it is indexed: {hits:?}");
    let hits = search::search(store, Some(a.id), &search::parse("w7x")?, 10).await?;
    assert_eq!(hits.len(), 1, "the huge one is indexed as far as it goes");
    let stored = emails::find_by_remote_id(c, a.id, "h1")
        .await?
        .ok_or("the huge one is stored")?;
    assert_eq!(
        stored.message_id, None,
        "no Message-ID is 20,000 bytes long"
    );
    Ok(())
}
