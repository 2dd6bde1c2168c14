//! Test fixture shared by the unit tests (`src/tests`) and the integration tests: an account
//! with Inbox, Archive, Other and Trash mailboxes and IMAP-style emails, plus a fake server.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use mailsync_outbox::{
    AccountId, Attempt, BatchError, EmailId, Executor, Flags, ItemOutcome, MailboxId, Operation,
    Outbox, QueuedChange, Snapshot, Target,
};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::emails::{self, EmailUpsert, Membership};
use mailsync_store::mailboxes::{self, MailboxUpsert};
use mailsync_store::{AccountKind, BodyPolicy, Role, SecretRef, Store};

pub type R = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A store with one account and four mailboxes.
pub struct Fx {
    pub store: Store,
    pub outbox: Arc<Outbox>,
    pub account: AccountId,
    pub inbox: MailboxId,
    pub archive: MailboxId,
    pub other: MailboxId,
    pub trash: MailboxId,
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

impl Fx {
    /// Sets up the account in `store` (already migrated); `configure` adjusts the outbox.
    pub async fn new(store: Store, configure: impl FnOnce(Outbox) -> Outbox) -> Res<Self> {
        let c = store.conn();
        let account = accounts::create(
            c,
            NewAccount {
                name: "t".into(),
                kind: AccountKind::Imap,
                email: "t@example.test".into(),
                display_name: None,
                username: "t".into(),
                secret_ref: SecretRef::Env("MAILSYNC_TEST_PW".into()),
                imap: None,
                smtp: None,
                jmap_session_url: None,
                ca_file: None,
                allow_plaintext: false,
                body_policy: BodyPolicy::None,
            },
        )
        .await?
        .id;
        let boxes = mailboxes::upsert(
            c,
            account,
            &[
                mbox("INBOX", Some(Role::Inbox)),
                mbox("Archive", Some(Role::Archive)),
                mbox("Other", None),
                mbox("Trash", Some(Role::Trash)),
            ],
        )
        .await?;
        let outbox = Arc::new(configure(Outbox::new(store.clone())));
        Ok(Self {
            outbox,
            account,
            inbox: boxes[0].id,
            archive: boxes[1].id,
            other: boxes[2].id,
            trash: boxes[3].id,
            store,
        })
    }

    /// Adds a mailbox named `name` with `role` (Sent, Drafts: not in the fixture's set).
    pub async fn mailbox(&self, name: &str, role: Role) -> Res<MailboxId> {
        let made = [mbox(name, Some(role))];
        let up = mailboxes::upsert(self.store.conn(), self.account, &made).await?;
        Ok(up.first().ok_or("no mailbox")?.id)
    }

    /// An unseen email in the inbox with UID `n`.
    pub async fn email(&self, n: i64) -> Res<EmailId> {
        self.email_in(n, self.inbox, Flags::default()).await
    }

    /// An email with UID `n` in `mailbox` with `flags`.
    pub async fn email_in(&self, n: i64, mailbox: MailboxId, flags: Flags) -> Res<EmailId> {
        let remote = format!("{}/7/{n}", mailbox.0);
        let mut u = EmailUpsert::new(
            remote.clone(),
            Utc.timestamp_opt(1_700_000_000 + n, 0)
                .single()
                .unwrap_or_default(),
        );
        u.message_id = Some(format!("m{n}@example.test"));
        u.flags = flags;
        u.mailboxes = vec![Membership {
            mailbox_id: mailbox,
            uidvalidity: Some(7),
            uid: Some(n),
            modseq: Some(1),
        }];
        let c = self.store.conn();
        emails::upsert_batch(c, self.account, &[u]).await?;
        mailboxes::recount(c, mailbox).await?;
        let e = emails::find_by_remote_id(c, self.account, &remote)
            .await?
            .ok_or("email not stored")?;
        Ok(e.id)
    }

    /// The local flags and memberships of an email (`None` when the row is gone).
    pub async fn state(&self, id: EmailId) -> Res<Option<Snapshot>> {
        let c = self.store.conn();
        let Ok(e) = emails::get(c, id).await else {
            return Ok(None);
        };
        let mailboxes = emails::memberships(c, id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Some(Snapshot {
            flags: e.flags,
            mailboxes,
        }))
    }

    /// The mailbox ids an email is in locally.
    pub async fn where_is(&self, id: EmailId) -> Res<Vec<MailboxId>> {
        Ok(self
            .state(id)
            .await?
            .map(|s| s.mailbox_ids())
            .unwrap_or_default())
    }

    /// The stored (total, unread) of a mailbox.
    pub async fn counters(&self, mb: MailboxId) -> Res<(i64, i64)> {
        let m = mailboxes::get(self.store.conn(), mb).await?;
        Ok((m.status.total, m.status.unread))
    }

    /// Asserts that every mailbox's stored counters match a fresh count.
    pub async fn assert_counters_exact(&self) -> R {
        for mb in [self.inbox, self.archive, self.other, self.trash] {
            let stored = self.counters(mb).await?;
            let fresh = mailboxes::recount(self.store.conn(), mb).await?;
            assert_eq!(stored, fresh, "counters of mailbox {mb}");
        }
        Ok(())
    }

    pub fn seen() -> Flags {
        Flags {
            seen: true,
            ..Flags::default()
        }
    }
}

/// An email as the fake server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEmail {
    pub flags: Flags,
    pub mailboxes: BTreeSet<MailboxId>,
}

/// An in-memory server: applies changes exactly as the executor contract describes, and checks
/// that each item's `before` matches what it has (a wrong snapshot is a permanent failure).
#[derive(Debug, Default)]
pub struct FakeServer {
    pub emails: Mutex<HashMap<String, ServerEmail>>,
    /// Message-IDs submitted, in order (a double send shows up twice).
    pub sent: Mutex<Vec<String>>,
    /// Message-IDs filed in Sent.
    pub filed: Mutex<Vec<String>>,
    /// Every batch handed over.
    pub batches: Mutex<Vec<Vec<QueuedChange>>>,
    /// When set, the whole call fails like this.
    pub fail_with: Mutex<Option<BatchError>>,
}

impl FakeServer {
    /// A server holding the local emails of the fixture as they are now.
    pub async fn mirror(fx: &Fx, ids: &[EmailId]) -> Res<Arc<Self>> {
        let s = Self::default();
        for id in ids {
            let e = emails::get(fx.store.conn(), *id).await?;
            let st = fx.state(*id).await?.ok_or("no email")?;
            s.lock_emails().insert(
                e.remote_id,
                ServerEmail {
                    mailboxes: st.mailbox_ids().into_iter().collect(),
                    flags: st.flags,
                },
            );
        }
        Ok(Arc::new(s))
    }

    pub fn lock_emails(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServerEmail>> {
        self.emails.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(Vec::len)
            .collect()
    }

    fn apply(&self, item: &QueuedChange) -> ItemOutcome {
        match &item.operation {
            Operation::Send(m) => {
                let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
                let already = sent.contains(&m.message_id);
                match item.attempt {
                    Attempt::Submitted => {}
                    Attempt::Uncertain if already => {}
                    _ => sent.push(m.message_id.clone()),
                }
                self.filed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(m.message_id.clone());
                ItemOutcome::Done
            }
            // Mailbox changes are executed by the engine's drivers, tested on real servers.
            Operation::Mailbox(_) => ItemOutcome::Done,
            Operation::Email(c) => {
                let mut emails = self.lock_emails();
                let Some(e) = emails.get_mut(&c.remote_id) else {
                    return ItemOutcome::Permanent {
                        reason: "notFound".into(),
                    };
                };
                let source: BTreeSet<MailboxId> = c.before.mailbox_ids().into_iter().collect();
                if source != e.mailboxes {
                    return ItemOutcome::Permanent {
                        reason: format!("source {source:?} but server has {:?}", e.mailboxes),
                    };
                }
                for f in &c.flags {
                    f.flag.apply(&mut e.flags, f.value);
                }
                match &c.target {
                    Target::Stay => {}
                    Target::Mailboxes(m) => e.mailboxes = m.iter().copied().collect(),
                    Target::Destroy => {
                        emails.remove(&c.remote_id);
                    }
                }
                ItemOutcome::Done
            }
        }
    }
}

#[async_trait::async_trait]
impl Executor for FakeServer {
    async fn execute(
        &self,
        _account: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.to_vec());
        if let Some(e) = self
            .fail_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(e);
        }
        Ok(batch.iter().map(|i| self.apply(i)).collect())
    }
}
