//! Optimistic updates and every coalescing rule, through the real store.

use super::support::{Fx, R};
use super::*;
use crate::{Change, ChangeState, EmailChange, Enqueued, Flag, FlagChange, Operation, Target};

fn email_op(q: &QueuedChange) -> &EmailChange {
    match &q.operation {
        Operation::Email(e) => e,
        _ => panic!("expected an email change"),
    }
}

#[tokio::test]
async fn enqueue_applies_locally_and_keeps_counters_right() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let b = fx.email(2).await?;
    assert_eq!(fx.counters(fx.inbox).await?, (2, 2));

    let r = fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    assert!(matches!(r, Enqueued::Queued(_)));
    assert!(fx.state(a).await?.is_some_and(|s| s.flags.seen));
    assert_eq!(fx.counters(fx.inbox).await?, (2, 1));

    fx.outbox
        .enqueue(fx.account, Change::move_to(b, fx.archive))
        .await?;
    assert_eq!(fx.where_is(b).await?, vec![fx.archive]);
    assert_eq!(fx.counters(fx.inbox).await?, (1, 0));
    assert_eq!(fx.counters(fx.archive).await?, (1, 1));
    fx.assert_counters_exact().await?;

    let pending = fx.outbox.pending(fx.account).await?;
    let kinds: Vec<&str> = pending.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, vec!["flags", "move"]);
    assert_eq!(pending[0].description, "mark read");
    assert!(pending.iter().all(|p| p.state == ChangeState::Pending));
    let counts = fx.outbox.counts(fx.account).await?;
    assert_eq!((counts.pending, counts.failed), (2, 0));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn seen_then_unseen_still_sends_unseen() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let first = fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    let second = fx
        .outbox
        .enqueue(fx.account, Change::seen(a, false))
        .await?;
    assert_eq!(second, Enqueued::Merged(first.change_id().ok_or("queued")?));
    assert!(fx.state(a).await?.is_some_and(|s| !s.flags.seen));
    assert_eq!(fx.counters(fx.inbox).await?, (1, 1));
    // Back where it started here, but another client may have marked it read meanwhile: the
    // user's last value goes up (one idempotent flag change).
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let batches = taken(&c);
    assert_eq!(batches.len(), 1);
    let op = email_op(&batches[0][0]);
    assert_eq!(
        op.flags,
        vec![FlagChange {
            flag: Flag::Seen,
            value: false
        }]
    );
    assert_eq!(op.target, Target::Stay);
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_later_value_of_the_same_flag_replaces_the_earlier() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::flagged(a, true))
        .await?
        .change_id()
        .ok_or("queued")?;
    let kw = Change::keyword(a, "$Forwarded", true)?;
    assert_eq!(
        fx.outbox.enqueue(fx.account, kw).await?,
        Enqueued::Merged(id)
    );
    assert_eq!(
        fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?,
        Enqueued::Merged(id)
    );
    // Flag off again, keyword off again: "seen" changes, and the other two go up with the
    // user's last value (another client may have set them meanwhile).
    fx.outbox
        .enqueue(fx.account, Change::flagged(a, false))
        .await?;
    fx.outbox
        .enqueue(fx.account, Change::keyword(a, "$Forwarded", false)?)
        .await?;
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let batches = taken(&c);
    assert_eq!(batches.len(), 1);
    let op = email_op(&batches[0][0]);
    let mut flags = op.flags.clone();
    flags.sort_by_key(|f| format!("{:?}", f.flag));
    let change = |flag, value| FlagChange { flag, value };
    assert_eq!(
        flags,
        vec![
            change(Flag::Flagged, false),
            change(Flag::Keyword("$Forwarded".into()), false),
            change(Flag::Seen, true),
        ]
    );
    assert_eq!(op.target, Target::Stay);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn move_a_to_b_then_b_to_c_is_a_to_c() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(5).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    let r = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.other))
        .await?;
    assert_eq!(r, Enqueued::Merged(id));
    assert_eq!(fx.where_is(a).await?, vec![fx.other]);
    assert_eq!(fx.counters(fx.archive).await?, (0, 0));
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let batches = taken(&c);
    let op = email_op(&batches[0][0]);
    // The source is where the server has it: the inbox, with its UID.
    assert_eq!(op.source().len(), 1);
    assert_eq!(op.source()[0].mailbox_id, fx.inbox);
    assert_eq!(op.source()[0].uid, Some(5));
    assert_eq!(op.source()[0].uidvalidity, Some(7));
    assert_eq!(op.target, Target::Mailboxes(vec![fx.other]));
    assert!(op.remote_id.ends_with("/7/5"));
    assert_eq!(op.message_id.as_deref(), Some("m5@example.test"));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_move_back_to_where_it_started_is_checked_not_sent() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(5).await?;
    let before = fx.state(a).await?.ok_or("state")?;
    let first = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    let r = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.inbox))
        .await?;
    assert_eq!(r, Enqueued::Merged(first.change_id().ok_or("queued")?));
    // Exactly as before, including the IMAP identity of the copy.
    assert_eq!(fx.state(a).await?.as_ref(), Some(&before));
    fx.assert_counters_exact().await?;
    // The executor is asked for the inbox, from the inbox: it checks the copy is still there
    // (another client may have moved it), so the user's last move wins either way.
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let batches = taken(&c);
    assert_eq!(batches.len(), 1);
    let op = email_op(&batches[0][0]);
    assert_eq!(op.target, Target::Mailboxes(vec![fx.inbox]));
    assert_eq!(op.before, before);
    assert!(op.flags.is_empty());
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn moving_to_the_current_mailbox_is_unchanged() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(5).await?;
    let r = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.inbox))
        .await?;
    assert_eq!(r, Enqueued::Unchanged);
    let seen = fx.email_in(6, fx.inbox, Fx::seen()).await?;
    let r = fx
        .outbox
        .enqueue(fx.account, Change::seen(seen, true))
        .await?;
    assert_eq!(r, Enqueued::Unchanged);
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn delete_moves_to_trash_and_keeps_flag_changes() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    fx.outbox.enqueue(fx.account, Change::delete(a)).await?;
    assert_eq!(fx.where_is(a).await?, vec![fx.trash]);
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "move");
    assert_eq!(
        pending[0].description,
        format!("mark read; delete (move to trash {})", fx.trash)
    );
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let batches = taken(&c);
    let op = email_op(&batches[0][0]);
    assert_eq!(op.source()[0].mailbox_id, fx.inbox);
    assert_eq!(op.target, Target::Mailboxes(vec![fx.trash]));
    assert_eq!(op.flags.len(), 1);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn permanent_delete_supersedes_flags_and_moves() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(a, true))
        .await?;
    // To the trash first, then delete from the trash: permanent.
    fx.outbox.enqueue(fx.account, Change::delete(a)).await?;
    fx.outbox.enqueue(fx.account, Change::delete(a)).await?;
    assert_eq!(fx.where_is(a).await?, Vec::<MailboxId>::new());
    assert_eq!(fx.counters(fx.trash).await?, (0, 0));
    assert_eq!(fx.counters(fx.inbox).await?, (0, 0));
    // A third delete of an email being deleted does nothing.
    assert_eq!(
        fx.outbox.enqueue(fx.account, Change::delete(a)).await?,
        Enqueued::Unchanged
    );
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "delete");
    assert_eq!(pending[0].description, "delete permanently");

    let c = calls();
    let report = fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    assert_eq!(report.done, 1);
    let batches = taken(&c);
    let op = email_op(&batches[0][0]);
    assert_eq!(op.target, Target::Destroy);
    assert!(op.flags.is_empty(), "flag changes are superseded");
    assert_eq!(op.source()[0].mailbox_id, fx.inbox);
    assert_eq!(op.source()[0].uid, Some(1));
    // Acknowledged: the local row goes too.
    assert_eq!(fx.state(a).await?, None);
    fx.assert_counters_exact().await?;
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn delete_without_a_trash_or_in_the_trash_is_permanent() -> R {
    let (db, fx) = setup(|o| o).await?;
    let in_trash = fx.email_in(3, fx.trash, Default::default()).await?;
    fx.outbox
        .enqueue(fx.account, Change::delete(in_trash))
        .await?;
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending[0].kind, "delete");
    // No trash role at all.
    mailsync_store::mailboxes::set_role(fx.store.conn(), fx.trash, None).await?;
    let b = fx.email(4).await?;
    fx.outbox.enqueue(fx.account, Change::delete(b)).await?;
    let pending = fx.outbox.pending(fx.account).await?;
    assert_eq!(pending[1].kind, "delete");
    assert_eq!(fx.where_is(b).await?, Vec::<MailboxId>::new());
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn invalid_requests_are_refused_without_side_effects() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let missing = crate::EmailId(9999);
    assert!(matches!(
        fx.outbox
            .enqueue(fx.account, Change::seen(missing, true))
            .await,
        Err(crate::Error::EmailNotFound(_))
    ));
    assert!(matches!(
        fx.outbox
            .enqueue(fx.account, Change::move_to(a, MailboxId(777)))
            .await,
        Err(crate::Error::MailboxNotFound(_))
    ));
    assert!(matches!(
        fx.outbox
            .enqueue(crate::AccountId(fx.account.0 + 1), Change::seen(a, true))
            .await,
        Err(crate::Error::WrongAccount { what: "email", .. })
    ));
    // All or nothing: a batch with one bad change leaves no trace.
    let r = fx
        .outbox
        .enqueue_all(
            fx.account,
            vec![Change::seen(a, true), Change::seen(missing, true)],
        )
        .await;
    assert!(r.is_err());
    assert!(fx.state(a).await?.is_some_and(|s| !s.flags.seen));
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn changes_of_different_emails_are_batched_oldest_first() -> R {
    let (db, fx) = setup(|o| o.with_policy(RetryPolicy::default().with_batch_size(100))).await?;
    let mut ids = Vec::new();
    for n in 1..=250 {
        ids.push(fx.email(n).await?);
    }
    let changes = ids.iter().map(|e| Change::seen(*e, true)).collect();
    fx.outbox.enqueue_all(fx.account, changes).await?;
    assert_eq!(fx.counters(fx.inbox).await?, (250, 0));
    let c = calls();
    let report = fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    assert_eq!(report.done, 250);
    let batches = taken(&c);
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let order: Vec<i64> = batches.iter().flatten().map(|q| q.id.0).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "oldest first");
    assert_eq!(report.next_due, None);
    db.cleanup().await?;
    Ok(())
}

use crate::MailboxId;
