//! Sending from a JMAP account: attachments uploaded as blobs first, then `Email/set` (create in
//! Drafts with `$draft`) and `EmailSubmission/set` with `onSuccessUpdateEmail` (into Sent,
//! `$draft` removed) chained in one request. Bcc recipients travel in the envelope only.
//!
//! Exactly once: every send first looks for its Message-ID (`Email/query` on the header). Found
//! in Sent: done, nothing is submitted. Found as a draft (an earlier attempt created it and was
//! refused or never submitted it): only that draft is submitted. With a [`Journal`], the
//! hand-over is committed in the outbox right before the request that submits, and the
//! acceptance (with the EmailSubmission id) right after the server created the submission.
//! [`look`] is the read-only check the executor uses after an interruption.

use mailsync_jmap_client as jmap;
use mailsync_jmap_client::{
    Client, Email, EmailAddress, EmailBodyPart, EmailBodyValue, EmailFilterCondition,
    EmailSubmission, Envelope, Get, Identity, Patch, Query, Set, keyword,
};
use mailsync_outbox::Outbox;
use mailsync_store::{AccountId, Address, ChangeId, Role, Store, mailboxes};

use crate::compose::Draft;
use crate::error::EngineError;

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOutcome {
    /// Submitted now; the Email id of the copy in Sent.
    Submitted {
        /// The JMAP Email id.
        email_id: String,
    },
    /// An earlier attempt had already been submitted: nothing was sent again.
    AlreadySent {
        /// The JMAP Email id found in Sent.
        email_id: String,
    },
}

fn jaddr(a: &Address) -> EmailAddress {
    match &a.name {
        Some(n) if !n.is_empty() => EmailAddress::with_name(n.clone(), a.email.clone()),
        _ => EmailAddress::new(a.email.clone()),
    }
}

async fn role_mailbox(
    store: &Store,
    account: AccountId,
    role: Role,
) -> Result<jmap::MailboxId, EngineError> {
    mailboxes::find_by_role(store.conn(), account, role)
        .await?
        .map(|m| jmap::MailboxId::new(m.remote_id))
        .ok_or_else(|| EngineError::Config(format!("the account has no {role} mailbox")))
}

/// The identity to send as: the one whose address matches `from`, else the first.
async fn identity(
    client: &Client,
    jacc: &jmap::AccountId,
    from: &str,
) -> Result<jmap::IdentityId, EngineError> {
    let list = client.call(Get::<Identity>::new(jacc)).await?.list;
    list.iter()
        .find(|i| {
            i.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(from))
        })
        .or_else(|| list.first())
        .and_then(|i| i.id.clone())
        .ok_or_else(|| EngineError::Config("the JMAP account has no sending identity".into()))
}

/// Finds an Email with this Message-ID and tells whether it is in Sent or still a draft.
async fn find_previous(
    client: &Client,
    jacc: &jmap::AccountId,
    message_id: &str,
    sent: &jmap::MailboxId,
) -> Result<Option<(jmap::EmailId, bool)>, EngineError> {
    let found = client
        .call(
            Query::<Email>::new(jacc)
                .filter(EmailFilterCondition::header(
                    "Message-ID",
                    Some(format!("<{message_id}>")),
                ))
                .limit(5),
        )
        .await?;
    if found.ids.is_empty() {
        return Ok(None);
    }
    let got = client
        .call(
            Get::<Email>::new(jacc)
                .ids(found.ids)
                .properties(["id", "mailboxIds", "messageId"]),
        )
        .await?;
    for e in got.list {
        let exact = e
            .message_id
            .as_ref()
            .is_some_and(|v| v.iter().any(|m| m == message_id));
        if let (true, Some(id)) = (exact, e.id.clone()) {
            return Ok(Some((id, e.in_mailbox(sent))));
        }
    }
    Ok(None)
}

/// An Email with this Message-ID in `mailbox` other than `except` (the version a draft save
/// replaces): the copy an earlier, unanswered `Email/set` create may have stored.
pub(crate) async fn find_copy(
    client: &Client,
    jacc: &jmap::AccountId,
    message_id: &str,
    mailbox: &jmap::MailboxId,
    except: &str,
) -> Result<Option<jmap::EmailId>, EngineError> {
    let mut filter = EmailFilterCondition::header("Message-ID", Some(format!("<{message_id}>")));
    filter.in_mailbox = Some(mailbox.clone());
    let found = client
        .call(Query::<Email>::new(jacc).filter(filter).limit(10))
        .await?;
    let ids: Vec<jmap::EmailId> = found
        .ids
        .into_iter()
        .filter(|i| i.as_str() != except)
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    // The header filter may match a substring: keep an exact Message-ID in the mailbox.
    let got = client
        .call(
            Get::<Email>::new(jacc)
                .ids(ids)
                .properties(["id", "mailboxIds", "messageId"]),
        )
        .await?;
    Ok(got.list.into_iter().find_map(|e| {
        let exact = e
            .message_id
            .as_ref()
            .is_some_and(|v| v.iter().any(|m| m == message_id));
        if exact && e.in_mailbox(mailbox) {
            e.id
        } else {
            None
        }
    }))
}

/// Where the outbox records a send's progress while it is submitted.
#[derive(Debug, Clone, Copy)]
pub struct Journal<'a> {
    /// The outbox.
    pub outbox: &'a Outbox,
    /// The queued send.
    pub change: ChangeId,
}

impl Journal<'_> {
    async fn handing(self) -> Result<(), EngineError> {
        self.outbox.send_handing(self.change).await?;
        crate::failpoint::hit("send:handed").await;
        Ok(())
    }

    async fn accepted(self, submission_id: Option<String>) {
        crate::failpoint::hit("send:delivered").await;
        if let Err(e) = self.outbox.send_accepted(self.change, submission_id).await {
            // The Done outcome that follows records it all the same.
            tracing::warn!(change = %self.change, error = %e, "Could not journal the acceptance.");
        }
        crate::failpoint::hit("send:accepted").await;
    }
}

/// What the server has of a message, by its Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Previous {
    /// Nothing with this Message-ID.
    Nothing,
    /// In Sent: submitted (the submission moved it there).
    InSent(String),
    /// Only as a draft: created, not submitted.
    Draft(String),
}

/// Looks for `message_id` on the server without changing anything.
pub async fn look(
    client: &Client,
    store: &Store,
    account: AccountId,
    message_id: &str,
) -> Result<Previous, EngineError> {
    let jacc = client.mail_account_id()?;
    let sent = role_mailbox(store, account, Role::Sent).await?;
    Ok(
        match find_previous(client, &jacc, message_id, &sent).await? {
            None => Previous::Nothing,
            Some((id, true)) => Previous::InSent(id.as_str().to_owned()),
            Some((id, false)) => Previous::Draft(id.as_str().to_owned()),
        },
    )
}

/// Sends `draft` from a JMAP account, unless a copy with its Message-ID is already in Sent
/// (see the module docs); `journal` records the hand-over and the acceptance.
pub async fn send(
    client: &Client,
    store: &Store,
    account: AccountId,
    draft: &Draft,
    journal: Option<Journal<'_>>,
) -> Result<SendOutcome, EngineError> {
    let jacc = client.mail_account_id()?;
    let drafts = role_mailbox(store, account, Role::Drafts).await?;
    let sent = role_mailbox(store, account, Role::Sent).await?;
    let identity_id = identity(client, &jacc, &draft.from.email).await?;
    let recipients: Vec<String> = draft
        .to
        .iter()
        .chain(&draft.cc)
        .chain(&draft.bcc)
        .map(|a| a.email.clone())
        .collect();
    if recipients.is_empty() {
        return Err(EngineError::Compose("no recipients".into()));
    }
    let envelope = Envelope::new(draft.from.email.clone(), recipients);
    let move_to_sent = Patch::new()
        .mailbox(&drafts, false)
        .mailbox(&sent, true)
        .keyword(keyword::DRAFT, false);

    let existing = find_previous(client, &jacc, &draft.message_id, &sent).await?;
    if let Some((email_id, in_sent)) = existing {
        if in_sent {
            return Ok(SendOutcome::AlreadySent {
                email_id: email_id.as_str().to_owned(),
            });
        }
        // The draft exists but was never submitted: submit it, nothing else.
        let mut sub = Set::<EmailSubmission>::new(&jacc);
        let sc =
            sub.create(EmailSubmission::new(identity_id, email_id.clone()).with_envelope(envelope));
        sub.on_success_update_email(&sc, move_to_sent);
        if let Some(j) = journal {
            j.handing().await?;
        }
        let resp = client.call(sub).await?;
        let created = resp.created_or_error(&sc)?;
        if let Some(j) = journal {
            j.accepted(created.id.as_ref().map(|i| i.as_str().to_owned()))
                .await;
        }
        return Ok(SendOutcome::Submitted {
            email_id: email_id.as_str().to_owned(),
        });
    }

    let keywords = [
        (keyword::DRAFT.to_owned(), true),
        (keyword::SEEN.to_owned(), true),
    ]
    .into();
    let email = email_object(client, &jacc, draft, &drafts, keywords, false).await?;
    let mut req = client.request();
    let mut set = Set::<Email>::new(&jacc);
    let created = set.create(email);
    let set_call = req.call(set);
    let mut sub = Set::<EmailSubmission>::new(&jacc);
    let sc =
        sub.create(EmailSubmission::new(identity_id, created.reference()).with_envelope(envelope));
    sub.on_success_update_email(&sc, move_to_sent);
    let sub_call = req.call(sub);
    if let Some(j) = journal {
        j.handing().await?;
    }
    let mut resp = client.send(req).await?;
    let email_id = resp
        .take(&set_call)?
        .created_or_error(&created)?
        .id
        .clone()
        .ok_or_else(|| EngineError::Config("server returned no id for the created Email".into()))?;
    let submission_id = match resp.take(&sub_call).and_then(|r| {
        r.created_or_error(&sc)
            .map(|s| s.id.as_ref().map(|i| i.as_str().to_owned()))
    }) {
        Ok(id) => id,
        Err(e) => {
            // The server refused the submission: remove the draft the same request created,
            // so a refused send leaves nothing behind (a retry creates it again).
            let mut discard = Set::<Email>::new(&jacc);
            discard.destroy([&email_id]);
            if let Err(d) = client.call(discard).await {
                tracing::warn!(error = %d, "Could not remove the draft of a refused send.");
            }
            return Err(e.into());
        }
    };
    if let Some(j) = journal {
        j.accepted(submission_id).await;
    }
    Ok(SendOutcome::Submitted {
        email_id: email_id.as_str().to_owned(),
    })
}

/// The JMAP Email a [`Draft`] becomes (attachments uploaded as blobs first), in `mailbox` with
/// `keywords`. `keep_bcc`: a saved draft keeps its Bcc; a message to submit does not carry it.
pub(crate) async fn email_object(
    client: &Client,
    jacc: &jmap::AccountId,
    draft: &Draft,
    mailbox: &jmap::MailboxId,
    keywords: std::collections::BTreeMap<String, bool>,
    keep_bcc: bool,
) -> Result<Email, EngineError> {
    let mut attachments = Vec::with_capacity(draft.attachments.len());
    for a in &draft.attachments {
        let up = client
            .upload_bytes(jacc, &a.mime_type, a.content.clone())
            .await?;
        attachments.push(EmailBodyPart::from_blob(
            up.blob_id,
            a.mime_type.clone(),
            Some(a.file_name.clone()),
        ));
    }
    let mut body_values = vec![("text".to_owned(), EmailBodyValue::new(draft.text.clone()))];
    let mut html_body = None;
    if let Some(h) = &draft.html {
        body_values.push(("html".to_owned(), EmailBodyValue::new(h.clone())));
        html_body = Some(vec![EmailBodyPart::from_value("html", "text/html")]);
    }
    Ok(Email {
        mailbox_ids: Some([(mailbox.clone(), true)].into()),
        keywords: Some(keywords),
        bcc: (keep_bcc && !draft.bcc.is_empty()).then(|| draft.bcc.iter().map(jaddr).collect()),
        message_id: Some(vec![draft.message_id.clone()]),
        in_reply_to: draft.in_reply_to.clone().map(|r| vec![r]),
        references: (!draft.references.is_empty()).then(|| draft.references.clone()),
        from: Some(vec![jaddr(&draft.from)]),
        to: (!draft.to.is_empty()).then(|| draft.to.iter().map(jaddr).collect()),
        cc: (!draft.cc.is_empty()).then(|| draft.cc.iter().map(jaddr).collect()),
        subject: Some(draft.subject.clone()),
        body_values: Some(body_values.into_iter().collect()),
        text_body: Some(vec![EmailBodyPart::from_value("text", "text/plain")]),
        html_body,
        attachments: (!attachments.is_empty()).then_some(attachments),
        ..Default::default()
    })
}
