//! Property: any sequence of changes, queued (with flushes, outages and uncertain outcomes in
//! between) and then flushed, leaves the server and the local database exactly as applying and
//! flushing the changes one by one does, and as a plain model of the mailbox says.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mailsync_outbox::{
    AccountId, BatchError, Change, EmailId, Executor, Flag, Flags, ItemOutcome, MailboxId,
    ManualClock, QueuedChange, RetryPolicy,
};
use mailsync_store::testing::TempDb;
use proptest::prelude::*;
use support::{FakeServer, Fx, Res, ServerEmail};

const EMAILS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Seen(usize, bool),
    Flagged(usize, bool),
    Keyword(usize, bool),
    /// Move to mailbox 0 inbox, 1 archive, 2 other, 3 trash.
    Move(usize, usize),
    Delete(usize),
    /// Flush everything due (queued run only).
    Flush,
    /// A flush that finds the account offline (queued run only).
    Offline,
    /// A flush whose outcomes are all unknown: nothing applied, rows stay in flight.
    Unknown,
}

fn step() -> impl Strategy<Value = Step> {
    let e = 0..EMAILS;
    prop_oneof![
        4 => (e.clone(), any::<bool>()).prop_map(|(e, v)| Step::Seen(e, v)),
        3 => (e.clone(), any::<bool>()).prop_map(|(e, v)| Step::Flagged(e, v)),
        2 => (e.clone(), any::<bool>()).prop_map(|(e, v)| Step::Keyword(e, v)),
        4 => (e.clone(), 0..4usize).prop_map(|(e, m)| Step::Move(e, m)),
        2 => e.prop_map(Step::Delete),
        1 => Just(Step::Flush),
        1 => Just(Step::Offline),
        1 => Just(Step::Unknown),
    ]
}

/// The model: each email's flags and mailbox, or gone.
type Model = Vec<Option<(Flags, usize)>>;

/// Drops changes to emails the model has deleted permanently (the app cannot show them), and
/// returns the model's final state.
fn plan(steps: &[Step]) -> (Vec<Step>, Model) {
    let mut m: Model = vec![
        Some((Flags::default(), 0)),
        Some((
            Flags {
                seen: true,
                ..Flags::default()
            },
            0,
        )),
        Some((Flags::default(), 1)),
    ];
    let mut kept = Vec::new();
    for s in steps {
        let target = match s {
            Step::Seen(e, _)
            | Step::Flagged(e, _)
            | Step::Keyword(e, _)
            | Step::Move(e, _)
            | Step::Delete(e) => Some(*e),
            _ => None,
        };
        if let Some(e) = target {
            let Some((flags, mb)) = m[e].as_mut() else {
                continue;
            };
            match s {
                Step::Seen(_, v) => flags.seen = *v,
                Step::Flagged(_, v) => flags.flagged = *v,
                Step::Keyword(_, v) => Flag::Keyword("$Work".into()).apply(flags, *v),
                Step::Move(_, to) => *mb = *to,
                Step::Delete(_) if *mb == 3 => m[e] = None,
                Step::Delete(_) => *mb = 3,
                _ => {}
            }
        }
        kept.push(s.clone());
    }
    (kept, m)
}

struct Env {
    db: TempDb,
    fx: Fx,
    ids: Vec<EmailId>,
    server: Arc<FakeServer>,
    clock: ManualClock,
}

impl Env {
    async fn new(db: TempDb) -> Res<Self> {
        let clock = ManualClock::new(mailsync_store::now());
        let c = clock.clone();
        let fx = Fx::new(db.store.clone(), move |o| {
            o.with_clock(Arc::new(c))
                .with_policy(RetryPolicy::default().with_max_transient_failures(1000))
        })
        .await?;
        let ids = vec![
            fx.email(1).await?,
            fx.email_in(2, fx.inbox, Fx::seen()).await?,
            fx.email_in(3, fx.archive, Flags::default()).await?,
        ];
        let server = FakeServer::mirror(&fx, &ids).await?;
        Ok(Self {
            db,
            fx,
            ids,
            server,
            clock,
        })
    }

    fn mailbox(&self, i: usize) -> MailboxId {
        [self.fx.inbox, self.fx.archive, self.fx.other, self.fx.trash][i]
    }

    fn change(&self, s: &Step) -> Res<Option<Change>> {
        Ok(Some(match s {
            Step::Seen(e, v) => Change::seen(self.ids[*e], *v),
            Step::Flagged(e, v) => Change::flagged(self.ids[*e], *v),
            Step::Keyword(e, v) => Change::keyword(self.ids[*e], "$Work", *v)?,
            Step::Move(e, m) => Change::move_to(self.ids[*e], self.mailbox(*m)),
            Step::Delete(e) => Change::delete(self.ids[*e]),
            _ => return Ok(None),
        }))
    }

    async fn flush_with(&self, ex: &dyn Executor) -> Res<()> {
        // Far enough for any backoff: the schedule is tested elsewhere.
        self.clock.advance(Duration::from_secs(3600));
        let r = self.fx.outbox.flush(self.fx.account, ex).await?;
        assert_eq!(r.evicted, 0, "{r:?}");
        Ok(())
    }

    async fn drain(&self) -> Res<()> {
        for _ in 0..50 {
            self.flush_with(self.server.as_ref()).await?;
            if self.fx.outbox.next_due(self.fx.account).await?.is_none() {
                return Ok(());
            }
        }
        Err("queue did not drain".into())
    }

    /// (flags, mailbox ids) per email, `None` when gone; and the server's view.
    async fn outcome(&self) -> Res<(Vec<Option<(Flags, Vec<MailboxId>)>>, Vec<ServerEmail>)> {
        let mut local = Vec::new();
        for id in &self.ids {
            local.push(
                self.fx
                    .state(*id)
                    .await?
                    .map(|s| (s.flags.clone(), s.mailbox_ids())),
            );
        }
        let mut server: Vec<ServerEmail> = self.server.lock_emails().values().cloned().collect();
        server.sort_by_key(|e| format!("{e:?}"));
        Ok((local, server))
    }
}

/// Everything unknown: nothing is applied.
struct AllUnknown;

#[async_trait::async_trait]
impl Executor for AllUnknown {
    async fn execute(
        &self,
        _: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        Ok(batch
            .iter()
            .map(|_| ItemOutcome::Unknown {
                reason: "timeout".into(),
            })
            .collect())
    }
}

struct Offline;

#[async_trait::async_trait]
impl Executor for Offline {
    async fn execute(
        &self,
        _: AccountId,
        _: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError> {
        Err(BatchError::Offline("no network".into()))
    }
}

async fn check(steps: Vec<Step>, postgres: bool) -> Res<()> {
    let fresh = || async {
        if postgres {
            TempDb::postgres().await
        } else {
            TempDb::sqlite().await
        }
    };
    let (steps, model) = plan(&steps);

    // (a) Queued: changes pile up and coalesce; flushes, outages and unknown outcomes between.
    let a = Env::new(fresh().await?).await?;
    for s in &steps {
        match s {
            Step::Flush => a.flush_with(a.server.as_ref()).await?,
            Step::Offline => a.flush_with(&Offline).await?,
            Step::Unknown => a.flush_with(&AllUnknown).await?,
            _ => {
                if let Some(c) = a.change(s)? {
                    a.fx.outbox.enqueue(a.fx.account, c).await?;
                }
            }
        }
    }
    a.drain().await?;

    // (b) One by one: each change flushed before the next.
    let b = Env::new(fresh().await?).await?;
    for s in &steps {
        if let Some(c) = b.change(s)? {
            b.fx.outbox.enqueue(b.fx.account, c).await?;
            b.drain().await?;
        }
    }

    let (local_a, server_a) = a.outcome().await?;
    let (local_b, server_b) = b.outcome().await?;
    let expected: Vec<Option<(Flags, Vec<MailboxId>)>> = model
        .iter()
        .map(|m| m.as_ref().map(|(f, mb)| (f.clone(), vec![a.mailbox(*mb)])))
        .collect();
    assert_eq!(local_a, expected, "queued run, local");
    assert_eq!(local_b, expected, "one-by-one run, local");
    assert_eq!(server_a, server_b, "servers");
    let mut server_expected: Vec<ServerEmail> = expected
        .iter()
        .flatten()
        .map(|(f, m)| ServerEmail {
            flags: f.clone(),
            mailboxes: m.iter().copied().collect::<BTreeSet<_>>(),
        })
        .collect();
    server_expected.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(server_a, server_expected, "server matches the model");
    for env in [&a, &b] {
        let counts = env.fx.outbox.counts(env.fx.account).await?;
        assert_eq!((counts.queued(), counts.failed), (0, 0));
        env.fx.assert_counters_exact().await?;
    }
    a.db.cleanup().await?;
    b.db.cleanup().await?;
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn queued_then_flushed_equals_one_by_one_sqlite(steps in prop::collection::vec(step(), 1..30)) {
        runtime()
            .block_on(check(steps, false))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn queued_then_flushed_equals_one_by_one_postgres(steps in prop::collection::vec(step(), 1..30)) {
        runtime()
            .block_on(check(steps, true))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

/// Hand-picked sequences that exercise every rule at once, on both backends.
#[test]
fn known_tricky_sequences() -> Res<()> {
    use Step::*;
    let cases = vec![
        vec![
            Seen(0, true),
            Seen(0, false),
            Move(0, 1),
            Move(0, 2),
            Move(0, 0),
        ],
        vec![
            Move(0, 1),
            Unknown,
            Move(0, 2),
            Seen(0, true),
            Unknown,
            Move(0, 0),
            Flush,
        ],
        vec![
            Seen(1, false),
            Delete(1),
            Delete(1),
            Flagged(0, true),
            Offline,
            Delete(0),
        ],
        vec![
            Move(2, 3),
            Delete(2),
            Keyword(0, true),
            Unknown,
            Keyword(0, false),
            Delete(0),
        ],
        vec![
            Delete(0),
            Unknown,
            Move(0, 1),
            Delete(0),
            Delete(0),
            Flush,
            Seen(2, true),
        ],
    ];
    let rt = runtime();
    for (i, steps) in cases.into_iter().enumerate() {
        for pg in [false, true] {
            rt.block_on(check(steps.clone(), pg))
                .map_err(|e| format!("case {i} (postgres: {pg}): {e}"))?;
        }
    }
    Ok(())
}
