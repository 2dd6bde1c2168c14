//! On-demand download of one email's full message: `UID FETCH uid (BODY.PEEK[])`, parsed into
//! text, HTML and attachments, cached in the store.

use mailsync_store::bodies::{self, Body};
use mailsync_store::{EmailId, Store, emails, mailboxes};

use crate::connection::Connection;
use crate::error::{Error, ResponseCode};
use crate::mime::{self, BodyText, ParsedBody};
use crate::storeext;
use crate::wire::{Cmd, Event, Untagged};

/// Selects the mailbox of `email`'s IMAP copy and returns its decoded name and UID. Fails
/// with [`Error::NotFound`] when the email has no IMAP identity or the mailbox's UIDVALIDITY
/// is no longer the one its UID was recorded under (the UID may name another message).
pub(crate) async fn select_copy(
    conn: &mut Connection,
    store: &Store,
    email: EmailId,
) -> Result<(String, i64), Error> {
    let members = emails::memberships(store.conn(), email).await?;
    let (mailbox_id, uidvalidity, uid) = members
        .iter()
        .find_map(|m| Some((m.mailbox_id, m.uidvalidity?, m.uid?)))
        .ok_or_else(|| Error::NotFound {
            what: "IMAP copy of email",
            key: email.to_string(),
        })?;
    let mailbox = mailboxes::get(store.conn(), mailbox_id).await?;
    let sel = conn.select(&mailbox.remote_id).await?;
    if i64::from(sel.uidvalidity) != uidvalidity {
        return Err(Error::NotFound {
            what: "message (UIDVALIDITY changed; resync the mailbox)",
            key: format!("{}/{uid}", mailbox.name),
        });
    }
    Ok((mailbox.name, uid))
}

/// Downloads, parses and caches the body of `email` (raw message included), and fills in its
/// preview when it had none. Fails with [`Error::NotFound`] when the email has no IMAP
/// identity, its mailbox's UIDVALIDITY changed, or the server no longer has the message.
pub async fn fetch_body(
    conn: &mut Connection,
    store: &Store,
    email: EmailId,
) -> Result<ParsedBody, Error> {
    let row = emails::get(store.conn(), email).await?;
    let (mailbox, uid) = select_copy(conn, store, email).await?;
    let cmd = Cmd::new("UID FETCH")
        .raw(&uid.to_string())
        .raw("(UID BODY.PEEK[])");
    let gone = || Error::NotFound {
        what: "message on the server",
        key: format!("{mailbox}/{uid}"),
    };
    let tag = conn.wire.send(&cmd).await?;
    let mut raw: Option<Vec<u8>> = None;
    loop {
        match conn.wire.next(&tag).await {
            Ok(Event::Data(Untagged::Fetch(f))) => {
                if f.uid.map(i64::from) == Some(uid) && f.body.is_some() {
                    raw = f.body;
                }
            }
            Ok(Event::Data(other)) => conn.note(&other),
            Ok(Event::Done(_)) => break,
            Err(Error::No {
                code: Some(ResponseCode::ExpungeIssued | ResponseCode::NonExistent),
                ..
            }) => return Err(gone()),
            Err(e) => return Err(e),
        }
    }
    // An expunged message may come back as NIL or empty; no real message is empty.
    let raw = raw.filter(|r| !r.is_empty()).ok_or_else(gone)?;
    let parsed = mime::parse_message(&raw);
    let txn = store.begin().await?;
    bodies::put(
        &txn,
        email,
        &Body {
            raw: Some(raw),
            ..Body::from(BodyText::from(parsed.clone()))
        },
    )
    .await?;
    if row.preview.is_none()
        && let Some(p) = &parsed.preview
    {
        storeext::set_preview(&txn, email, p).await?;
    }
    txn.commit().await?;
    Ok(parsed)
}
