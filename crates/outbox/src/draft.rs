//! Drafts through the queue: saving (a local email row in the Drafts-role mailbox plus a queued
//! `Replace` of its content), discarding, and sending one (a send plus the draft's discard).
//!
//! A draft is an ordinary email row whose queued row carries `Replace` ops. Successive saves
//! before a flush merge into one row and only the latest content goes up; a draft never
//! uploaded and then discarded leaves nothing to send and its local row is removed.

use chrono::{DateTime, Utc};
use mailsync_store::emails::{self, EmailUpsert};
use mailsync_store::{
    AccountId, Address, ConnectionTrait, EmailId, Flags, Role, bodies, mailboxes,
};

use crate::apply::{enqueue_ops, enqueue_send, load_email};
use crate::change::{OutgoingMessage, generate_message_id};
use crate::error::Error;
use crate::local::Touched;
use crate::model::{self, Op, Payload};
use crate::outbox::Enqueued;
use crate::rows;

/// The `remote_id` of a draft the server has not seen yet (unique: it embeds the Message-ID).
pub(crate) const LOCAL_PREFIX: &str = "local-draft:";

fn valid_address(a: &Address) -> bool {
    a.email.rsplit_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && !d.is_empty() && !a.email.contains(char::is_whitespace)
    })
}

/// Checks a draft (a sender; recipients may still be missing) and gives it a Message-ID.
pub(crate) fn prepare_draft(m: &mut OutgoingMessage) -> Result<(), Error> {
    if !valid_address(&m.from) {
        return Err(Error::InvalidMessage(format!(
            "bad sender address {:?}",
            m.from.email
        )));
    }
    if let Some(bad) =
        m.to.iter()
            .chain(&m.cc)
            .chain(&m.bcc)
            .find(|a| !valid_address(a))
    {
        return Err(Error::InvalidMessage(format!(
            "bad recipient address {:?}",
            bad.email
        )));
    }
    for a in &m.attachments {
        a.bytes()?;
    }
    let mid = m.message_id.trim().trim_matches(['<', '>']).to_owned();
    m.message_id = if mid.is_empty() {
        generate_message_id(&m.from.email)
    } else {
        mid
    };
    Ok(())
}

/// Saves a draft: a new one (`draft = None`) gets a local email row in the Drafts mailbox; an
/// existing one gets its new content. Either way the upload is queued (merged into a save not
/// sent yet). Returns the draft's email id.
pub(crate) async fn save<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    draft: Option<EmailId>,
    mut message: OutgoingMessage,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<(EmailId, Enqueued), Error> {
    let drafts = mailboxes::find_by_role(c, account, Role::Drafts)
        .await?
        .ok_or(Error::NoDraftsMailbox(account))?;
    let (id, remote_id, memberships, flags) = match draft {
        Some(id) => {
            let (email, snap) = load_email(c, account, id).await?;
            if !snap.mailboxes.iter().any(|l| l.mailbox_id == drafts.id) {
                return Err(Error::NotADraft(id));
            }
            // A draft keeps its Message-ID across versions.
            if let Some(mid) = &email.message_id {
                message.message_id.clone_from(mid);
            }
            (
                Some(id),
                email.remote_id,
                snap.mailboxes.into_iter().map(Into::into).collect(),
                email.flags,
            )
        }
        None => (None, String::new(), Vec::new(), Flags::default()),
    };
    prepare_draft(&mut message)?;
    let remote_id = if id.is_some() {
        remote_id
    } else {
        format!("{LOCAL_PREFIX}{}", message.message_id)
    };
    let mut u = EmailUpsert::new(remote_id.clone(), now);
    u.message_id = Some(message.message_id.clone());
    u.subject = Some(message.subject.clone());
    u.from = vec![message.from.clone()];
    u.to.clone_from(&message.to);
    u.cc.clone_from(&message.cc);
    u.bcc.clone_from(&message.bcc);
    u.in_reply_to = message.in_reply_to.clone();
    u.sent_at = Some(now);
    u.size = i64::try_from(message.text.len()).unwrap_or(i64::MAX);
    u.preview = Some(message.text.chars().take(256).collect());
    u.has_attachment = !message.attachments.is_empty();
    u.flags = flags;
    u.mailboxes = memberships;
    emails::upsert_batch(c, account, &[u]).await?;
    let email = emails::find_by_remote_id(c, account, &remote_id)
        .await?
        .ok_or(Error::DraftVanished)?;
    bodies::put(
        c,
        email.id,
        &bodies::Body {
            text: Some(message.text.clone()),
            html: message.html.clone(),
            raw: None,
            truncated: false,
        },
    )
    .await?;
    let mut ops = Vec::new();
    if id.is_none() {
        ops.push(Op::Move {
            to: vec![drafts.id],
        });
        for (flag, v) in [(crate::Flag::Draft, true), (crate::Flag::Seen, true)] {
            ops.push(Op::SetFlag { flag, value: v });
        }
    }
    // Earlier saves still queued are superseded: only the latest content is kept in the row.
    for row in rows::for_email(c, email.id).await? {
        if row.state == mailsync_store::queue::ChangeState::Pending
            && let Payload::Email(mut p) = row.payload
            && p.ops.iter().any(|o| matches!(o.op, Op::Replace { .. }))
        {
            p.ops.retain(|o| !matches!(o.op, Op::Replace { .. }));
            rows::update(
                c,
                row.id,
                Some(mailsync_store::queue::ChangeState::Pending),
                rows::Patch {
                    payload: Some(Payload::Email(p)),
                    ..rows::Patch::default()
                },
            )
            .await?;
        }
    }
    ops.push(Op::Replace {
        message: Box::new(message),
    });
    let r = enqueue_ops(c, account, email.id, ops, false, now, touched).await?;
    Ok((email.id, r))
}

/// Discards a draft: removed from the server (permanently, not to the trash) unless another
/// client filed a copy of it elsewhere, which stays; one that never reached the server only
/// leaves the database.
pub(crate) async fn discard<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: EmailId,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Enqueued, Error> {
    let (email, snap) = load_email(c, account, id).await?;
    let drafts = mailboxes::find_by_role(c, account, Role::Drafts)
        .await?
        .filter(|d| snap.mailboxes.iter().any(|l| l.mailbox_id == d.id));
    let Some(drafts) = drafts.filter(|_| email.flags.draft) else {
        return Err(Error::NotADraft(id));
    };
    // Out of Drafts, not destroyed outright: a copy another client filed elsewhere stays
    // (`Op::Discard`).
    let op = Op::Discard { from: drafts.id };
    let r = enqueue_ops(c, account, id, vec![op], false, now, touched).await?;
    // Nothing left queued for an email the server never had: the row goes too.
    if email.remote_id.starts_with(LOCAL_PREFIX) && rows::for_email(c, id).await?.is_empty() {
        emails::delete(c, id).await?;
    }
    Ok(r)
}

/// The message a draft holds: the content still queued, else what the database has of it.
pub(crate) async fn message<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: EmailId,
) -> Result<OutgoingMessage, Error> {
    let (email, _) = load_email(c, account, id).await?;
    for row in rows::for_email(c, id).await?.into_iter().rev() {
        if let Payload::Email(p) = &row.payload
            && let Some(m) = model::content(&p.ops)
        {
            return Ok(m);
        }
    }
    let body = bodies::get(c, id).await?.unwrap_or_default();
    Ok(OutgoingMessage {
        message_id: email.message_id.unwrap_or_default(),
        from: email.from.into_iter().next().unwrap_or_default(),
        to: email.to,
        cc: email.cc,
        bcc: email.bcc,
        subject: email.subject.unwrap_or_default(),
        text: body.text.unwrap_or_default(),
        html: body.html,
        attachments: Vec::new(),
        in_reply_to: email.in_reply_to,
        references: email
            .references
            .map(|r| r.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// Sends a draft: queues the send of its content (a fresh Message-ID: the draft's own may
/// already name the draft copy on the server) and its discard, in one transaction.
pub(crate) async fn send<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: EmailId,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Enqueued, Error> {
    let mut m = message(c, account, id).await?;
    let draft = crate::model::SentDraft {
        email: id.0,
        message_id: std::mem::take(&mut m.message_id),
    };
    let sent = enqueue_send(c, account, m, Some(draft), now).await?;
    discard(c, account, id, now, touched).await?;
    Ok(sent)
}
