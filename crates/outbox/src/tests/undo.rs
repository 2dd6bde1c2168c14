//! Cancel and undo, before and after the server saw the change; reverts that keep later
//! changes of the same email.

use std::time::Duration;

use super::support::R;
use super::*;
use crate::{
    Change, ChangeState, Enqueued, Error, Flag, FlagChange, Operation, OutgoingMessage, Target,
    UndoRefusal, Undone,
};
use mailsync_store::Address;

fn email_op(q: &QueuedChange) -> Result<&crate::EmailChange, &'static str> {
    match &q.operation {
        Operation::Email(e) => Ok(e),
        _ => Err("expected an email change"),
    }
}

#[tokio::test]
async fn cancel_before_flush_restores_the_local_state_exactly() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let before = fx.state(a).await?;
    let counters = fx.counters(fx.inbox).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::seen(a, true))
        .await?
        .change_id()
        .ok_or("queued")?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    assert_eq!(fx.outbox.cancel(id).await?, Undone::Withdrawn(id));
    assert_eq!(fx.state(a).await?, before);
    assert_eq!(fx.counters(fx.inbox).await?, counters);
    fx.assert_counters_exact().await?;
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    assert_eq!(fx.outbox.flush(fx.account, &never()).await?.batches, 0);
    assert!(matches!(
        fx.outbox.cancel(crate::ChangeId(id.0 + 100)).await,
        Err(Error::ChangeNotFound(_))
    ));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn undo_last_withdraws_only_the_last_action_and_walks_back() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let b = fx.email(2).await?;
    let original = fx.state(a).await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(b, true))
        .await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    // Last action: the move of a (merged with its earlier "seen").
    assert_eq!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(id)
    );
    let s = fx.state(a).await?.ok_or("gone")?;
    assert_eq!(s.mailboxes, original.clone().ok_or("gone")?.mailboxes);
    assert!(s.flags.seen, "the earlier action stays");
    assert_eq!(
        fx.outbox.pending(fx.account).await?[0].description,
        "mark read"
    );
    // Then b's flag, then a's seen.
    fx.outbox.undo_last(fx.account).await?;
    assert!(fx.state(b).await?.is_some_and(|s| !s.flags.flagged));
    fx.outbox.undo_last(fx.account).await?;
    assert_eq!(fx.state(a).await?, original);
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await,
        Err(Error::NothingToUndo(_))
    ));
    fx.assert_counters_exact().await?;
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn undo_after_flush_queues_the_compensating_move() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let r = fx.outbox.undo_last(fx.account).await?;
    let Undone::Compensated {
        change,
        compensation: Enqueued::Queued(comp),
    } = r
    else {
        return Err(format!("unexpected {r:?}").into());
    };
    assert_eq!(change, id);
    assert_eq!(fx.where_is(a).await?, vec![fx.inbox]);
    fx.assert_counters_exact().await?;
    // The compensation is not itself offered for undo, and the original is forgotten.
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await,
        Err(Error::NothingToUndo(_))
    ));
    assert!(matches!(
        fx.outbox.cancel(id).await,
        Err(Error::ChangeNotFound(_))
    ));
    taken(&c);
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let b = taken(&c);
    assert_eq!(b[0][0].id, comp);
    let op = email_op(&b[0][0])?;
    assert_eq!(op.source()[0].mailbox_id, fx.archive);
    assert_eq!(op.target, Target::Mailboxes(vec![fx.inbox]));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn cancel_of_an_acknowledged_flag_change_flags_back() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::seen(a, true))
        .await?
        .change_id()
        .ok_or("queued")?;
    let c = calls();
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    assert!(matches!(
        fx.outbox.cancel(id).await?,
        Undone::Compensated { change, .. } if change == id
    ));
    assert!(fx.state(a).await?.is_some_and(|s| !s.flags.seen));
    assert_eq!(fx.counters(fx.inbox).await?, (1, 1));
    taken(&c);
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let b = taken(&c);
    assert_eq!(
        email_op(&b[0][0])?.flags,
        vec![FlagChange {
            flag: Flag::Seen,
            value: false
        }]
    );
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn cancel_while_in_flight_compensates_after_it() -> R {
    let (db, fx, clock) = setup_clocked().await?;
    let a = fx.email(1).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    let c = calls();
    fx.outbox
        .flush(
            fx.account,
            &answering(ItemOutcome::Unknown { reason: "?".into() }, c.clone()),
        )
        .await?;
    let r = fx.outbox.cancel(id).await?;
    assert!(matches!(
        r,
        Undone::Compensated {
            compensation: Enqueued::Queued(_),
            ..
        }
    ));
    assert_eq!(fx.where_is(a).await?, vec![fx.inbox]);
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await,
        Err(Error::NothingToUndo(_))
    ));
    // The in-flight move goes first (checked), then the move back.
    clock.advance(Duration::from_secs(2));
    taken(&c);
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let b = taken(&c);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0][0].id, id);
    assert_eq!(
        email_op(&b[1][0])?.target,
        Target::Mailboxes(vec![fx.inbox])
    );
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn cancelling_a_change_with_later_ones_keeps_them() -> R {
    let (db, fx, clock) = setup_clocked().await?;
    let a = fx.email(1).await?;
    let first = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    let c = calls();
    // In flight (unknown), then the user marks it read: a second row, based on the moved copy.
    fx.outbox
        .flush(
            fx.account,
            &answering(ItemOutcome::Unknown { reason: "?".into() }, c.clone()),
        )
        .await?;
    fx.outbox.enqueue(fx.account, Change::seen(a, true)).await?;
    // The retry says "not applied": the first row is pending again, before the second.
    clock.advance(Duration::from_secs(2));
    fx.outbox
        .flush(
            fx.account,
            &answering(
                ItemOutcome::Transient {
                    reason: "503".into(),
                    retry_after: None,
                },
                c.clone(),
            ),
        )
        .await?;
    let items = fx.outbox.pending(fx.account).await?;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].state, ChangeState::Pending);
    assert_eq!(fx.outbox.cancel(first).await?, Undone::Withdrawn(first));
    // Back in the inbox with its UID, and still read.
    let s = fx.state(a).await?.ok_or("gone")?;
    assert_eq!(s.mailboxes[0].mailbox_id, fx.inbox);
    assert_eq!(s.mailboxes[0].uid, Some(1));
    assert!(s.flags.seen);
    fx.assert_counters_exact().await?;
    // The remaining change now targets the inbox copy.
    taken(&c);
    fx.outbox.flush(fx.account, &acking(c.clone())).await?;
    let b = taken(&c);
    let op = email_op(&b[0][0])?;
    assert_eq!(op.source()[0].uid, Some(1));
    assert_eq!(op.target, Target::Stay);
    assert_eq!(op.flags.len(), 1);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn eviction_reverts_only_its_own_effect() -> R {
    let (db, fx, clock) = setup_clocked().await?;
    let a = fx.email(1).await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    let c = calls();
    fx.outbox
        .flush(
            fx.account,
            &answering(ItemOutcome::Unknown { reason: "?".into() }, c.clone()),
        )
        .await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(a, true))
        .await?;
    clock.advance(Duration::from_secs(2));
    let mut m = MockExecutor::new();
    let mut seq = mockall::Sequence::new();
    m.expect_execute()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, batch| {
            Ok(batch
                .iter()
                .map(|_| ItemOutcome::Permanent {
                    reason: "NO [NONEXISTENT]".into(),
                })
                .collect())
        });
    // The flag change, next in line, finds the account offline.
    m.expect_execute()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|_, batch| batch.len() == 1)
        .returning(|_, _| Err(crate::BatchError::Offline("gone".into())));
    // The move is handed over alone (the flag waits for it) and is evicted.
    let report = fx.outbox.flush(fx.account, &m).await?;
    assert_eq!(report.evicted, 1);
    assert!(report.paused.is_some());
    let s = fx.state(a).await?.ok_or("gone")?;
    assert_eq!(s.mailboxes[0].mailbox_id, fx.inbox);
    assert_eq!(s.mailboxes[0].uid, Some(1));
    assert!(s.flags.flagged, "the later change stays applied");
    let items = fx.outbox.pending(fx.account).await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].description, "flag");
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_permanent_delete_can_be_cancelled_until_the_server_did_it() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email_in(1, fx.trash, Default::default()).await?;
    let before = fx.state(a).await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::delete(a))
        .await?
        .change_id()
        .ok_or("queued")?;
    assert_eq!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(id)
    );
    assert_eq!(fx.state(a).await?, before);
    let id = fx
        .outbox
        .enqueue(fx.account, Change::delete(a))
        .await?
        .change_id()
        .ok_or("queued")?;
    fx.outbox.flush(fx.account, &acking(calls())).await?;
    assert!(matches!(
        fx.outbox.cancel(id).await,
        Err(Error::CannotUndo {
            why: UndoRefusal::PermanentlyDeleted,
            ..
        })
    ));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_send_can_be_undone_until_it_is_handed_over() -> R {
    let (db, fx) = setup(|o| o).await?;
    let msg = OutgoingMessage {
        from: Address {
            name: None,
            email: "t@example.test".into(),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: "oops".into(),
        ..Default::default()
    };
    let id = fx
        .outbox
        .enqueue(fx.account, Change::send(msg.clone()))
        .await?
        .change_id()
        .ok_or("queued")?;
    assert_eq!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(id)
    );
    assert_eq!(fx.outbox.flush(fx.account, &never()).await?.batches, 0);
    let id = fx
        .outbox
        .enqueue(fx.account, Change::send(msg))
        .await?
        .change_id()
        .ok_or("queued")?;
    fx.outbox.flush(fx.account, &acking(calls())).await?;
    assert!(matches!(
        fx.outbox.cancel(id).await,
        Err(Error::CannotUndo {
            why: UndoRefusal::AlreadySent,
            ..
        })
    ));
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await,
        Err(Error::CannotUndo {
            why: UndoRefusal::AlreadySent,
            ..
        })
    ));
    db.cleanup().await?;
    Ok(())
}

/// Withdrawing a change puts the email back where it was, leaving out a mailbox deleted
/// since: writing it failed the transaction on the foreign key, and the revert of an evicted
/// change did so every cycle (model test, Cyrus JMAP seed 9319 under load).
#[tokio::test]
async fn a_withdrawal_into_a_mailbox_deleted_since_leaves_it_out() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx
        .email_in(1, fx.other, mailsync_store::Flags::default())
        .await?;
    let id = fx
        .outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?
        .change_id()
        .ok_or("queued")?;
    // Another client deleted the mailbox; the sync removed it, keeping the queued email.
    mailsync_store::mailboxes::delete_gone(fx.store.conn(), fx.other).await?;
    assert_eq!(fx.outbox.cancel(id).await?, Undone::Withdrawn(id));
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    assert!(
        !fx.where_is(a).await?.contains(&fx.other),
        "no location in the deleted mailbox"
    );
    db.cleanup().await?;
    Ok(())
}

/// An undo that leaves a row's last op a move into a mailbox deleted since shows the email
/// where the server has it: where the undone action had put it no longer matched the queue,
/// and the next sync's re-application took that place for the server's, without a UID, so
/// the queued move was found gone and the message was lost locally (model test, Dovecot seed
/// 13028 with cuts: a move to A merged with a move to C, A deleted by another client, the
/// move to C undone).
#[tokio::test]
async fn undo_after_a_move_into_a_deleted_mailbox_shows_the_email_where_the_server_has_it() -> R {
    let (db, fx) = setup(|o| o).await?;
    let a = fx.email(1).await?;
    let before = fx.state(a).await?.ok_or("stored")?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.other))
        .await?;
    fx.outbox
        .enqueue(fx.account, Change::move_to(a, fx.archive))
        .await?;
    // Another client deleted Other; the sync removed it (the email was not shown there).
    mailsync_store::mailboxes::delete_gone(fx.store.conn(), fx.other).await?;
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(_)
    ));
    assert_eq!(
        fx.state(a).await?.as_ref(),
        Some(&before),
        "back where the server has it"
    );
    assert_eq!(
        fx.outbox.counts(fx.account).await?.queued(),
        1,
        "the move to Other"
    );
    // A sync that did not write the email changes nothing, and the refused move leaves it
    // where it is, with its UID.
    fx.outbox.reapply_queued(fx.account).await?;
    assert_eq!(fx.state(a).await?.as_ref(), Some(&before));
    flush_refused(&fx, "mailbox not found").await?;
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    assert_eq!(fx.state(a).await?, Some(before));
    db.cleanup().await?;
    Ok(())
}

/// Undo in a new draft's queued row: an action merged after its first save (a flag) is taken
/// out alone, and a later save merged into it is refused, since the first content is not kept
/// and withdrawing the row would take the draft's creation with it (model test seed 11046).
#[tokio::test]
async fn undo_in_an_unsent_draft_never_takes_the_draft_away() -> R {
    let (db, fx) = setup(|o| o).await?;
    let drafts = fx.mailbox("Drafts", mailsync_store::Role::Drafts).await?;
    let msg = |subject: &str| OutgoingMessage {
        from: Address {
            name: None,
            email: "t@example.test".into(),
        },
        subject: subject.into(),
        text: format!("{subject} text"),
        ..Default::default()
    };
    let (d, _) = fx.outbox.save_draft(fx.account, None, msg("v1")).await?;
    fx.outbox
        .enqueue(fx.account, Change::flagged(d, true))
        .await?;
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(_)
    ));
    assert_eq!(fx.where_is(d).await?, vec![drafts], "the draft stays");
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 1, "its save");

    fx.outbox.save_draft(fx.account, Some(d), msg("v2")).await?;
    assert!(matches!(
        fx.outbox.undo_last(fx.account).await,
        Err(Error::CannotUndo {
            why: UndoRefusal::DraftSaved,
            ..
        })
    ));
    assert_eq!(fx.where_is(d).await?, vec![drafts], "the draft stays");
    assert_eq!(fx.outbox.draft_message(fx.account, d).await?.subject, "v2");
    db.cleanup().await?;
    Ok(())
}

/// Sending a draft is one action of the user's (a send queued, the draft discarded, both at
/// the same instant), and one undo takes it back whole: the send withdrawn and the draft in
/// Drafts with its content. Taking one half left the other: the send went out with its
/// draft back, or (the send withdrawn) the draft's content was gone, neither sent nor kept
/// (found in the model test's review, Dovecot seed 19003).
#[tokio::test]
async fn undo_after_sending_a_draft_takes_back_the_send_and_the_discard() -> R {
    let (db, fx) = setup(|o| o).await?;
    let drafts = fx.mailbox("Drafts", mailsync_store::Role::Drafts).await?;
    let msg = OutgoingMessage {
        text: "v1 text".into(),
        ..message("v1")
    };
    // A new draft, never uploaded (the discard withdraws its save and drops the row), and
    // one on the server (the discard queues a destroy).
    for uploaded in [false, true] {
        let (d, _) = fx.outbox.save_draft(fx.account, None, msg.clone()).await?;
        if uploaded {
            let up = ItemOutcome::Relocated {
                remote_id: Some(format!("S{}", d.0)),
                locations: vec![crate::Location::plain(drafts)],
                size: None,
            };
            fx.outbox.flush(fx.account, &answering(up, calls())).await?;
            assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
            assert_eq!(fx.where_is(d).await?, vec![drafts]);
        }
        let queued = fx.outbox.counts(fx.account).await?.queued();
        let draft_mid = fx.outbox.draft_message(fx.account, d).await?.message_id;
        let sent = fx
            .outbox
            .send_draft(fx.account, d)
            .await?
            .change_id()
            .ok_or("queued")?;
        assert_eq!(
            fx.outbox.undo_last(fx.account).await?,
            Undone::Withdrawn(sent),
            "uploaded: {uploaded}"
        );
        // The draft back in Drafts: the same email where its discard was still queued, one
        // saved again from the send's content (same Message-ID) where it had left.
        let back = mailsync_store::mailboxes::email_ids(fx.store.conn(), drafts).await?;
        assert_eq!(back.len(), 1, "uploaded: {uploaded}: one draft");
        let b = back[0];
        if uploaded {
            assert_eq!(b, d);
        }
        let m = fx.outbox.draft_message(fx.account, b).await?;
        assert_eq!((m.subject.as_str(), m.text.as_str()), ("v1", "v1 text"));
        assert_eq!(m.message_id, draft_mid);
        assert_eq!(
            fx.outbox.counts(fx.account).await?.queued(),
            queued,
            "uploaded: {uploaded}: nothing left queued of the send"
        );
        fx.outbox.discard_draft(fx.account, b).await?;
        flush_all_done(&fx).await?;
    }
    db.cleanup().await?;
    Ok(())
}

/// Flushes everything queued, the server acknowledging each change.
async fn flush_all_done(fx: &Fx) -> Result<(), crate::Error> {
    fx.outbox.flush(fx.account, &acking(calls())).await?;
    Ok(())
}

/// A new draft's upload cut after the server stored it, then the draft discarded (its own
/// row, the upload being uncertain): the sync stores the server's copy as an email of its
/// own, which shows the draft again. The user sends that copy and takes the send back: the
/// draft is back in Drafts and must stay there. The upload, tried again, finds the copy and
/// used to take its identity from the synced row, and the old discard then destroyed the
/// draft the undo had brought back, with nothing in the failed list (model test, Cyrus JMAP
/// seed 26005 with cuts). The user's later decision stands: the old discard goes to the
/// failed list and the synced row keeps the copy.
#[tokio::test]
async fn a_discard_queued_before_the_user_acted_on_the_synced_copy_gives_way() -> R {
    use mailsync_store::emails::{self, EmailUpsert, Membership};
    let (db, fx, clock) = setup_clocked().await?;
    let drafts = fx.mailbox("Drafts", mailsync_store::Role::Drafts).await?;
    let msg = OutgoingMessage {
        text: "v1 text".into(),
        ..message("v1")
    };
    let (d, _) = fx.outbox.save_draft(fx.account, None, msg).await?;
    let cut = ItemOutcome::Unknown {
        reason: "cut".into(),
    };
    fx.outbox
        .flush(fx.account, &answering(cut, calls()))
        .await?;
    fx.outbox.discard_draft(fx.account, d).await?;
    assert!(fx.where_is(d).await?.is_empty());

    let c = fx.store.conn();
    let mut u = EmailUpsert::new("S1".to_owned(), fx.outbox.now());
    u.message_id = emails::get(c, d).await?.message_id;
    u.size = 311;
    let m = message("v1");
    u.from = vec![m.from];
    u.to = m.to;
    u.flags = mailsync_store::Flags {
        seen: true,
        draft: true,
        ..Default::default()
    };
    u.mailboxes = vec![Membership {
        mailbox_id: drafts,
        uidvalidity: None,
        uid: None,
        modseq: None,
    }];
    emails::upsert_batch(c, fx.account, &[u]).await?;
    mailsync_store::mailboxes::recount(c, drafts).await?;
    let copy = emails::find_by_remote_id(c, fx.account, "S1")
        .await?
        .ok_or("not stored")?
        .id;

    let sent = fx
        .outbox
        .send_draft(fx.account, copy)
        .await?
        .change_id()
        .ok_or("queued")?;
    assert_eq!(
        fx.outbox.undo_last(fx.account).await?,
        Undone::Withdrawn(sent)
    );
    assert_eq!(fx.where_is(copy).await?, vec![drafts]);

    // The upload again: it finds the stored copy. Anything else handed over (the discard)
    // is recorded, and acknowledged.
    clock.advance(Duration::from_secs(60));
    let c2 = calls();
    let rec = c2.clone();
    let mut m = MockExecutor::new();
    m.expect_execute().returning(move |_, batch| {
        rec.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.to_vec());
        Ok(batch
            .iter()
            .map(|q| match q.attempt {
                crate::Attempt::Uncertain => ItemOutcome::Relocated {
                    remote_id: Some("S1".into()),
                    locations: vec![crate::Location::plain(drafts)],
                    size: Some(311),
                },
                _ => ItemOutcome::Done,
            })
            .collect())
    });
    fx.outbox.flush(fx.account, &m).await?;
    let handed: Vec<QueuedChange> = taken(&c2).into_iter().flatten().collect();
    assert_eq!(handed.len(), 1, "only the upload goes: {handed:?}");
    assert_eq!(fx.where_is(copy).await?, vec![drafts], "the draft stays");
    assert_eq!(fx.outbox.counts(fx.account).await?.queued(), 0);
    assert_eq!(
        fx.outbox.failed(fx.account).await?.len(),
        1,
        "the old discard"
    );
    db.cleanup().await?;
    Ok(())
}
