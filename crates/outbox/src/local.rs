//! The optimistic side: reading and writing an email's local flags and memberships, and
//! keeping the counters of the mailboxes it touches right.

use std::collections::BTreeSet;

use mailsync_store::emails::{self, Email, Membership};
use mailsync_store::entity::emails as e;
use mailsync_store::{ConnectionTrait, EmailId, MailboxId, StoreError, mailboxes};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::Error;
use crate::model::{Location, Snapshot};

/// Mailboxes whose counters must be recomputed before the transaction commits.
#[derive(Debug, Default)]
pub(crate) struct Touched(BTreeSet<MailboxId>);

impl Touched {
    pub(crate) fn add(&mut self, s: &Snapshot) {
        self.0.extend(s.mailboxes.iter().map(|l| l.mailbox_id));
    }

    /// Recounts every touched mailbox that still exists.
    pub(crate) async fn recount<C: ConnectionTrait>(self, c: &C) -> Result<(), Error> {
        for m in self.0 {
            mailboxes::recount(c, m).await?;
        }
        Ok(())
    }
}

/// Locks the email rows (in id order, so concurrent callers never deadlock) until the end of
/// the transaction: every read-modify-write of an email's state and queued rows runs under this
/// lock. A no-op update takes PostgreSQL's row lock and makes a SQLite transaction the writer
/// from its first statement.
pub(crate) async fn lock<C: ConnectionTrait>(
    c: &C,
    ids: impl IntoIterator<Item = EmailId>,
) -> Result<(), Error> {
    let sorted: BTreeSet<EmailId> = ids.into_iter().collect();
    for id in sorted {
        e::Entity::update_many()
            .col_expr(e::Column::UpdatedAt, Expr::col(e::Column::UpdatedAt))
            .filter(e::Column::Id.eq(id.0))
            .exec(c)
            .await?;
    }
    Ok(())
}

/// The email and its current local state; `None` when the email row is gone.
pub(crate) async fn load<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
) -> Result<Option<(Email, Snapshot)>, Error> {
    let email = match emails::get(c, id).await {
        Ok(e) => e,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mailboxes = emails::memberships(c, id)
        .await?
        .into_iter()
        .map(Location::from)
        .collect();
    let snap = Snapshot {
        flags: email.flags.clone(),
        mailboxes,
    };
    Ok(Some((email, snap)))
}

/// Writes `new` over `old` (what is stored now), touching only what differs.
pub(crate) async fn write<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    old: &Snapshot,
    new: &Snapshot,
    touched: &mut Touched,
) -> Result<(), Error> {
    if old.flags != new.flags {
        emails::set_flags(c, id, &new.flags).await?;
        // Seen changes the unread counter of every mailbox the email is in.
        touched.add(old);
        touched.add(new);
    }
    if old.mailboxes != new.mailboxes {
        let members: Vec<Membership> = new.mailboxes.iter().map(|l| (*l).into()).collect();
        emails::set_memberships(c, id, &members).await?;
        touched.add(old);
        touched.add(new);
    }
    Ok(())
}

/// [`write`] for a sync re-applying queued changes over what it wrote: a location whose
/// mailbox the sync has removed meanwhile (deleted on the server by another client) is left
/// out, and the email stays where it is when nothing else is left; the change itself fails
/// when flushed, which reverts it. Writing it failed the sync's transaction with a
/// foreign-key error, every cycle (model test, Dovecot and Cyrus IMAP seed 538: a lost move
/// re-resolved into a mailbox deleted meanwhile). A user's own change keeps [`write`], which
/// refuses such a mailbox.
pub(crate) async fn write_existing<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    old: &Snapshot,
    new: &Snapshot,
    touched: &mut Touched,
) -> Result<(), Error> {
    let mut kept = new.clone();
    kept.mailboxes = existing(c, &new.mailboxes).await?;
    if kept.mailboxes.is_empty() && !new.mailboxes.is_empty() {
        kept.mailboxes.clone_from(&old.mailboxes);
    }
    write(c, id, old, &kept, touched).await
}

/// The locations of `locations` whose mailbox still exists locally.
pub(crate) async fn existing<C: ConnectionTrait>(
    c: &C,
    locations: &[Location],
) -> Result<Vec<Location>, Error> {
    let mut kept = Vec::with_capacity(locations.len());
    for l in locations {
        if crate::outbox::not_found_is_none(mailboxes::get(c, l.mailbox_id).await)?.is_some() {
            kept.push(*l);
        }
    }
    Ok(kept)
}
