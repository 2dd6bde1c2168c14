//! Queries over the IMAP identity of email copies (UID, UIDVALIDITY) that an IMAP sync needs:
//! UID-range deletes, identity re-matching after a UIDVALIDITY change, flag comparison, and the
//! removal of copies without a UID that no queued change stands behind (ghosts).

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};

use crate::entity::{email_mailboxes as em, emails as e, pending_changes as pc};
use crate::{AccountId, EmailId, Flags, MailboxId, StoreError};

const CHUNK: usize = 400;

/// Ranges shorter than this are deleted by listing their UIDs; longer ones by their bounds.
const LISTED_SPAN: u32 = 64;

/// Deletes the emails whose copy in `mailbox` has a UID in one of the inclusive ranges (either
/// bound first: `5:3` is `3:5`, as in IMAP). Single UIDs and short ranges, what scattered
/// expunges give, are deleted by lists of 400 UIDs per statement; long ranges by their
/// bounds (1 % of 100,000 messages expunged here and there is ~1,000 ranges; one statement
/// each made no measurable difference to that resync, whose deletes cost ~0.1 ms per email in
/// SQLite's cascades, but a statement per UID is not what a batch should be).
pub async fn delete_uid_ranges<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    ranges: &[(u32, u32)],
) -> Result<u64, StoreError> {
    let mut listed: Vec<i64> = Vec::new();
    let mut n = 0;
    for &(a, b) in ranges {
        let (lo, hi) = (Ord::min(a, b), Ord::max(a, b));
        if hi - lo < LISTED_SPAN {
            listed.extend((lo..=hi).map(i64::from));
        } else {
            let within = Expr::col(em::Column::Uid)
                .gte(i64::from(lo))
                .and(Expr::col(em::Column::Uid).lte(i64::from(hi)));
            n += delete_copies_where(c, mailbox, within).await?;
        }
    }
    listed.sort_unstable();
    listed.dedup();
    for chunk in listed.chunks(CHUNK) {
        let among = Expr::col(em::Column::Uid).is_in(chunk.iter().copied());
        n += delete_copies_where(c, mailbox, among).await?;
    }
    Ok(n)
}

/// Deletes the emails whose copy in `mailbox` meets `copies` (a condition on
/// `email_mailboxes`), recording them as removed first when changes are collected.
async fn delete_copies_where<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    copies: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, StoreError> {
    let sub = Query::select()
        .column(em::Column::EmailId)
        .from(em::Entity)
        .and_where(Expr::col(em::Column::MailboxId).eq(mailbox.0))
        .and_where(copies)
        .to_owned();
    crate::changes::removing_where(c, sub.clone()).await?;
    Ok(e::Entity::delete_many()
        .filter(e::Column::Id.in_subquery(sub))
        .exec(c)
        .await?
        .rows_affected)
}

/// Number of copies in `mailbox` that have a UID.
pub async fn count_with_uid<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
) -> Result<u64, StoreError> {
    Ok(em::Entity::find()
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .filter(em::Column::Uid.is_not_null())
        .count(c)
        .await?)
}

/// After a UIDVALIDITY change: forgets the UIDs of the mailbox's copies but keeps their old
/// UIDVALIDITY, so a later rescan can tell the leftovers of the old numbering (to re-match by
/// Message-ID, then delete) from local rows that never had a UID (pending local changes).
pub async fn detach_uids<C: ConnectionTrait>(c: &C, mailbox: MailboxId) -> Result<u64, StoreError> {
    Ok(em::Entity::update_many()
        .col_expr(em::Column::Uid, Expr::value(Option::<i64>::None))
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .filter(em::Column::Uid.is_not_null())
        .exec(c)
        .await?
        .rows_affected)
}

/// After a UIDVALIDITY change (or a mailbox replaced under the same name): every identity an
/// email of the account holds in `mailbox` is retired ([`crate::emails::retired_remote_id`]),
/// whether or not the email still has a copy there. An email a queued local change took out of
/// the mailbox (a delete, a move elsewhere) kept the old identity; a server that later hands
/// the old UIDVALIDITY out again (Cyrus: a mailbox renamed into the name keeps its own, which
/// can be the old one) made that identity name another message, which the next sync wrote
/// into the old row and the queued delete then removed (model test, Cyrus IMAP seed 25007).
/// The copies still in the mailbox are re-matched by Message-ID as before (the retired id
/// keeps the mailbox as its first part, which re-matching looks at). Run it in the
/// transaction that moves the checkpoint.
pub async fn retire_identities<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mailbox: MailboxId,
) -> Result<u64, StoreError> {
    let prefix = format!("{}/", mailbox.0);
    let retired = format!("{}/retired/", mailbox.0);
    // `mailbox.0` is a number: the expression holds no user text.
    let new_id = Expr::cust(format!("'{retired}' || CAST(id AS TEXT)"));
    Ok(e::Entity::update_many()
        .col_expr(e::Column::RemoteId, new_id)
        .filter(e::Column::AccountId.eq(account.0))
        .filter(e::Column::RemoteId.starts_with(prefix))
        .filter(e::Column::RemoteId.not_like(format!("{retired}%")))
        .exec(c)
        .await?
        .rows_affected)
}

/// Whether the mailbox has copies without a UID (re-match candidates).
pub async fn has_unmatched<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
) -> Result<bool, StoreError> {
    Ok(em::Entity::find()
        .filter(em::Column::MailboxId.eq(mailbox.0))
        .filter(em::Column::Uid.is_null())
        .count(c)
        .await?
        > 0)
}

/// Emails with a UID-less copy in `mailbox` whose Message-ID is one of `ids`, oldest first.
pub async fn unmatched_by_message_id<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mailbox: MailboxId,
    ids: &[String],
) -> Result<Vec<(EmailId, String)>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let members = Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::MailboxId).eq(mailbox.0))
            .and_where(Expr::col(em::Column::Uid).is_null())
            .to_owned();
        // An optimistic copy of an email with queued changes is never matched here: a
        // message with its Message-ID in that mailbox may be another client's copy, and taken
        // for ours it made the queued move look done while the source copy stayed (model
        // test: Cyrus IMAP seed 4078, a delete to the trash not sent yet; Dovecot seed 9141,
        // one cut before its MOVE). The flush reads the outcome back instead: a source UID
        // still there is moved, a missing one makes the change lost, and `reresolve` finds the
        // copy as a row of its own. A copy detached by a UIDVALIDITY change (its identity in
        // this mailbox) and one whose change is done (a MOVE answered without COPYUID) are
        // matched.
        let queued = Query::select()
            .column(pc::Column::EmailId)
            .from(pc::Entity)
            .and_where(Expr::col(pc::Column::EmailId).is_not_null())
            .to_owned();
        let rows: Vec<(i64, Option<String>)> = e::Entity::find()
            .select_only()
            .column(e::Column::Id)
            .column(e::Column::MessageId)
            .filter(e::Column::AccountId.eq(account.0))
            .filter(e::Column::MessageId.is_in(chunk.iter().cloned()))
            .filter(e::Column::Id.in_subquery(members))
            .filter(
                sea_orm::Condition::any()
                    .add(e::Column::Id.not_in_subquery(queued))
                    .add(e::Column::RemoteId.starts_with(format!("{}/", mailbox.0))),
            )
            .into_tuple()
            .all(c)
            .await?;
        out.extend(
            rows.into_iter()
                .filter_map(|(id, mid)| mid.map(|m| (EmailId(id), m))),
        );
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Gives an existing email row a new server identity (it is the same message under a new
/// UID), so the upsert that follows updates it and its cached body is kept.
pub async fn set_remote_id<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    remote_id: &str,
) -> Result<(), StoreError> {
    e::Entity::update_many()
        .col_expr(e::Column::RemoteId, Expr::value(remote_id.to_owned()))
        .filter(e::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    Ok(())
}

/// Deletes the emails left over from an older UIDVALIDITY in `mailbox` (UID-less copies that
/// still carry another UIDVALIDITY): they were not found again on the server.
pub async fn delete_stale<C: ConnectionTrait>(
    c: &C,
    mailbox: MailboxId,
    uidvalidity: u32,
) -> Result<u64, StoreError> {
    let stale = Expr::col(em::Column::Uid)
        .is_null()
        .and(Expr::col(em::Column::Uidvalidity).is_not_null())
        .and(Expr::col(em::Column::Uidvalidity).ne(i64::from(uidvalidity)));
    delete_copies_where(c, mailbox, stale).await
}

/// The stored flags of these emails, by remote id.
pub async fn flags_by_remote_ids<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    remote_ids: &[String],
) -> Result<HashMap<String, Flags>, StoreError> {
    let mut out = HashMap::with_capacity(remote_ids.len());
    for chunk in remote_ids.chunks(CHUNK) {
        let rows: Vec<(String, bool, bool, bool, bool, String)> = e::Entity::find()
            .select_only()
            .column(e::Column::RemoteId)
            .column(e::Column::Seen)
            .column(e::Column::Flagged)
            .column(e::Column::Answered)
            .column(e::Column::Draft)
            .column(e::Column::Keywords)
            .filter(e::Column::AccountId.eq(account.0))
            .filter(e::Column::RemoteId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(c)
            .await?;
        for (remote, seen, flagged, answered, draft, keywords) in rows {
            let keywords: Vec<String> = serde_json_keywords(&keywords)?;
            out.insert(
                remote,
                Flags {
                    seen,
                    flagged,
                    answered,
                    draft,
                    keywords,
                },
            );
        }
    }
    Ok(out)
}

fn serde_json_keywords(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json {
        what: "emails.keywords",
        source,
    })
}

/// Sets the preview of one email (computed after its body was downloaded).
pub async fn set_preview<C: ConnectionTrait>(
    c: &C,
    id: EmailId,
    preview: &str,
) -> Result<(), StoreError> {
    e::Entity::update_many()
        .col_expr(e::Column::Preview, Expr::value(preview.to_owned()))
        .filter(e::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    Ok(())
}

/// Removes ghosts after a complete sync of an account: copies without a UID (placed by an
/// optimistic move or append) that no queued change stands behind. The sync has fetched every
/// new message of every mailbox, so such a copy was either matched to its server copy by now or
/// does not exist on the server. Emails left in no mailbox are deleted. Returns the mailboxes
/// touched (to recount) and the number of emails deleted.
pub async fn delete_ghosts<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
) -> Result<(Vec<MailboxId>, u64), StoreError> {
    use crate::entity::mailboxes as mb;
    let queued = crate::queue::queued_email_ids();
    let boxes = Query::select()
        .column(mb::Column::Id)
        .from(mb::Entity)
        .and_where(Expr::col(mb::Column::AccountId).eq(account.0))
        .to_owned();
    let ghosts: Vec<(i64, i64)> = em::Entity::find()
        .select_only()
        .column(em::Column::EmailId)
        .column(em::Column::MailboxId)
        .filter(em::Column::MailboxId.in_subquery(boxes))
        .filter(em::Column::Uid.is_null())
        .filter(em::Column::EmailId.not_in_subquery(queued))
        .into_tuple()
        .all(c)
        .await?;
    if ghosts.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut mailboxes: Vec<MailboxId> = Vec::new();
    for (email, mailbox) in &ghosts {
        crate::changes::record_updated(EmailId(*email), [MailboxId(*mailbox)]);
        em::Entity::delete_many()
            .filter(em::Column::EmailId.eq(*email))
            .filter(em::Column::MailboxId.eq(*mailbox))
            .exec(c)
            .await?;
        mailboxes.push(MailboxId(*mailbox));
    }
    mailboxes.sort_unstable();
    mailboxes.dedup();
    let mut emails: Vec<i64> = ghosts.iter().map(|(e, _)| *e).collect();
    emails.sort_unstable();
    emails.dedup();
    let mut deleted = 0;
    for chunk in emails.chunks(CHUNK) {
        let members = Query::select()
            .column(em::Column::EmailId)
            .from(em::Entity)
            .and_where(Expr::col(em::Column::EmailId).is_in(chunk.iter().copied()))
            .to_owned();
        if crate::changes::collecting() {
            // The emails of this chunk left in no mailbox are the ones deleted below.
            let orphans: Vec<i64> = e::Entity::find()
                .select_only()
                .column(e::Column::Id)
                .filter(e::Column::Id.is_in(chunk.iter().copied()))
                .filter(e::Column::Id.not_in_subquery(members.clone()))
                .into_tuple()
                .all(c)
                .await?;
            crate::changes::removing_ids(c, &orphans).await?;
        }
        deleted += e::Entity::delete_many()
            .filter(e::Column::Id.is_in(chunk.iter().copied()))
            .filter(e::Column::Id.not_in_subquery(members))
            .exec(c)
            .await?
            .rows_affected;
    }
    Ok((mailboxes, deleted))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyword_json() {
        assert_eq!(
            super::serde_json_keywords(r#"["$Forwarded", "a\"b", "\u00e9"]"#).ok(),
            Some(vec!["$Forwarded".into(), "a\"b".into(), "é".into()])
        );
        assert_eq!(super::serde_json_keywords("[]").ok(), Some(vec![]));
        assert!(matches!(
            super::serde_json_keywords("nope"),
            Err(crate::StoreError::Json {
                what: "emails.keywords",
                ..
            })
        ));
    }
}
