//! Runs one list of operations against a real server: the engine (outbox + protocol driver
//! cycles on a temporary SQLite database) and another client (raw IMAP on the same account),
//! then converges and asks the oracle. Also shrinks a failing list (delta debugging).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mailsync_engine::worker::{WorkerPolicy, run_cycle};
use mailsync_engine::{EngineError, engine::driver_for};
use mailsync_outbox::{Change, Enqueued, Outbox, OutgoingMessage, Undone};
use mailsync_outbox::{FixedJitter, ManualClock, RetryPolicy};
use mailsync_store::accounts::{self, Account, Endpoint, NewAccount};
use mailsync_store::bodies;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::sync_log::SyncCounts;
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, Address, BodyPolicy, Role, SecretRef, Security, mailboxes};
use mailsync_testkit::imap::quote_mailbox;
use mailsync_testkit::{Cut, FaultProxy, ImapClient, Servers, unique_name};
use tokio_util::sync::CancellationToken;

use super::ops::{ModelFlag, Op};
use super::oracle::{self, Divergence, Expect, Failed, Intent, Msg, Snapshot, View};

/// Where a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// IMAP on Dovecot (a fresh user per run).
    Dovecot,
    /// IMAP on Cyrus (user `en8`, reset before each run).
    CyrusImap,
    /// JMAP on Cyrus (user `en9`, reset before each run; the other client is IMAP on it).
    CyrusJmap,
}

/// Where the engine under test keeps its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A fresh SQLite file per run (the default).
    Sqlite,
    /// A fresh PostgreSQL database per run, on `MAILSYNC_PG_URL`'s server.
    Postgres,
}

/// How a run's engine is set up, beside its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Where it keeps its database.
    pub store: StoreKind,
    /// Whether it downloads every body ([`BodyPolicy::All`]; else none): the oracle then
    /// also checks each message's body is there and is that message's.
    pub bodies: bool,
}

impl Setup {
    /// `MAILSYNC_MODEL_STORE` (`sqlite` or `postgres`; SQLite when unset) and
    /// `MAILSYNC_MODEL_BODIES` (set: every body).
    pub fn from_env() -> Self {
        Self {
            store: match std::env::var("MAILSYNC_MODEL_STORE").as_deref() {
                Ok("postgres") => StoreKind::Postgres,
                _ => StoreKind::Sqlite,
            },
            bodies: std::env::var_os("MAILSYNC_MODEL_BODIES").is_some(),
        }
    }

    /// The same with the database on `store`.
    #[must_use]
    pub fn on(self, store: StoreKind) -> Self {
        Self { store, ..self }
    }

    /// The same with every body downloaded.
    #[must_use]
    pub fn with_bodies(self) -> Self {
        Self {
            bodies: true,
            ..self
        }
    }

    /// What differs from the default: (how a report names it, the option that gives it).
    fn differences(self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::new();
        if self.store == StoreKind::Postgres {
            v.push(("postgres", "--store postgres"));
        }
        if self.bodies {
            v.push(("bodies", "--bodies"));
        }
        v
    }

    /// How a report names it (`""` for the default).
    pub fn label(self) -> String {
        let names: Vec<&str> = self.differences().iter().map(|d| d.0).collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    }

    /// The options of `cargo xtask model` that give it.
    pub fn options(self) -> String {
        self.differences()
            .iter()
            .map(|d| format!(" {}", d.1))
            .collect()
    }
}

impl Backend {
    /// All of them.
    pub const ALL: [Backend; 3] = [Backend::Dovecot, Backend::CyrusImap, Backend::CyrusJmap];

    /// `dovecot`, `cyrus-imap`, `cyrus-jmap`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dovecot => "dovecot",
            Self::CyrusImap => "cyrus-imap",
            Self::CyrusJmap => "cyrus-jmap",
        }
    }

    /// From [`Backend::name`].
    pub fn parse(s: &str) -> Option<Backend> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    fn view(self) -> View {
        match self {
            Self::CyrusJmap => View::Jmap,
            _ => View::Imap,
        }
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Oracle failures (empty: the run passed).
    pub divergences: Vec<Divergence>,
    /// Things worth knowing that are not failures (refused enqueues, failed cycles mid-run,
    /// evicted changes).
    pub notes: Vec<String>,
    /// Sync cycles the convergence phase needed.
    pub converge_cycles: usize,
    /// Engine intents recorded, and how many of them nothing later superseded (checked).
    pub intents: (usize, usize),
    /// Messages on the server at the end (all mailboxes).
    pub server_messages: usize,
    /// Cycles of [`Op::Cut`] the proxy did cut, and of [`Op::Crash`] and [`Op::During`] it held
    /// or paused (the others ended before their byte).
    pub cuts: usize,
    /// Of those, the cycles killed ([`Op::Crash`]).
    pub crashes: usize,
    /// Of those, the cycles paused while the other client acted ([`Op::During`]).
    pub pauses: usize,
}

impl Outcome {
    /// The distinct divergence kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.divergences.iter().map(|d| d.kind.clone()).collect();
        k.sort();
        k.dedup();
        k
    }
}

const STANDARD: &[&str] = &["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"];
const CONVERGE_CYCLES: usize = 8;

struct Server {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl Server {
    fn login(&self) -> Result<ImapClient> {
        Ok(ImapClient::login(
            &self.host,
            self.port,
            &self.user,
            &self.password,
        )?)
    }
}

/// A message as the other client sees it.
#[derive(Debug, Clone)]
struct Fetched {
    uid: u32,
    message_id: String,
    seen: bool,
    flagged: bool,
    deleted: bool,
}

fn parse_fetch(line: &[u8]) -> Option<Fetched> {
    let text = String::from_utf8_lossy(line);
    if !text.starts_with("* ") || !text.contains(" FETCH (") {
        return None;
    }
    let uid = text
        .split("UID ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let flags = text
        .split("FLAGS (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or("")
        .to_ascii_lowercase();
    let lower = text.to_ascii_lowercase();
    let message_id = lower
        .find("message-id:")
        .map(|at| {
            let rest = &text[at + "message-id:".len()..];
            rest.split("\r\n")
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .unwrap_or_default();
    Some(Fetched {
        uid,
        message_id,
        seen: flags.contains("\\seen"),
        flagged: flags.contains("\\flagged"),
        deleted: flags.contains("\\deleted"),
    })
}

/// The messages of a mailbox (`None` when it does not exist), sorted by (Message-ID, UID).
fn fetch_all(c: &mut ImapClient, mailbox: &str) -> Result<Option<Vec<Fetched>>> {
    let r = c.command_any(&format!("SELECT {}", quote_mailbox(mailbox)))?;
    if r.status != "OK" {
        return Ok(None);
    }
    let exists = r.lines().any(|l| {
        l.strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" EXISTS"))
            .is_some_and(|n| n.trim() != "0")
    });
    if !exists {
        return Ok(Some(Vec::new()));
    }
    let r = c.command("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")?;
    let mut v: Vec<Fetched> = r.untagged.iter().filter_map(|l| parse_fetch(l)).collect();
    v.sort_by(|a, b| (&a.message_id, a.uid).cmp(&(&b.message_id, b.uid)));
    Ok(Some(v))
}

fn list_mailboxes(c: &mut ImapClient) -> Result<Vec<String>> {
    let r = c.command("LIST \"\" \"*\"")?;
    let mut out = Vec::new();
    for l in r.lines() {
        let Some(rest) = l.strip_prefix("* LIST ") else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        if lower.contains("\\noselect") || lower.contains("\\nonexistent") {
            continue;
        }
        let name = rest.rsplit(' ').next().unwrap_or("").trim_matches('"');
        out.push(name.to_string());
    }
    out.sort();
    Ok(out)
}

/// The server's state over IMAP (messages flagged \Deleted but not expunged are left out).
fn server_snapshot(c: &mut ImapClient) -> Result<Snapshot> {
    let mut s = Snapshot::default();
    for name in list_mailboxes(c)? {
        // A name listed without `\Noselect` that cannot be selected is no mailbox: Dovecot
        // lists `A` so when only `A/C` exists.
        let Some(msgs) = fetch_all(c, &name)? else {
            continue;
        };
        let v = msgs
            .into_iter()
            .filter(|m| !m.deleted)
            .map(|m| Msg::new(&m.message_id, m.seen, m.flagged))
            .collect();
        s.mailboxes.insert(normalize(&name, None), v);
    }
    Ok(s)
}

fn normalize(name: &str, role: Option<Role>) -> String {
    if role == Some(Role::Inbox) || name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name.into()
    }
}

/// Empties a shared (Cyrus) account: extra mailboxes deleted, the standard ones expunged.
fn reset_account(c: &mut ImapClient) -> Result<()> {
    // Children first: Cyrus refuses to delete a mailbox that has some ([HASCHILDREN]).
    let mut names = list_mailboxes(c)?;
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        if !STANDARD.contains(&name.as_str()) {
            // Cyrus' delayed delete refuses a second DELETE of a name within the same second.
            let cmd = format!("DELETE {}", quote_mailbox(&name));
            for attempt in 0.. {
                match c.command(&cmd) {
                    Ok(_) => break,
                    Err(_) if attempt < 5 => std::thread::sleep(Duration::from_millis(400)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    for name in STANDARD {
        c.create_mailbox(name)?;
        if c.select(name)? > 0 {
            c.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
            c.command("EXPUNGE")?;
        }
    }
    c.command("UNSELECT").or_else(|_| c.command("CLOSE"))?;
    Ok(())
}

fn raw_message(message_id: &str, n: usize) -> Vec<u8> {
    format!(
        "From: Other <other@example.test>\r\nTo: user@example.test\r\nSubject: model {n}\r\n\
         Message-ID: <{message_id}>\r\nDate: Thu, 03 Dec 2026 23:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn append(
    c: &mut ImapClient,
    mailbox: &str,
    message_id: &str,
    n: usize,
    seen: bool,
) -> Result<bool> {
    let raw = raw_message(message_id, n);
    let flags = if seen { "(\\Seen)" } else { "()" };
    let mut cmd = format!(
        "APPEND {} {flags} {{{}+}}\r\n",
        quote_mailbox(mailbox),
        raw.len()
    )
    .into_bytes();
    cmd.extend_from_slice(&raw);
    let cmd = String::from_utf8(cmd).map_err(|e| anyhow!("{e}"))?;
    Ok(c.command_any(&cmd)?.status == "OK")
}

/// The local (engine) side: store, outbox with a manual clock (retries come due when the
/// convergence phase advances it), account.
struct Local {
    db: TempDb,
    outbox: Arc<Outbox>,
    clock: ManualClock,
    account: Account,
    /// Between the engine and the server when the run has cuts ([`Op::Cut`]).
    proxy: Option<FaultProxy>,
}

/// An email the engine can act on.
#[derive(Debug, Clone)]
struct LocalEmail {
    id: i64,
    message_id: String,
    mailbox: String,
}

/// The engine's outbox as the model runs it: its clock, no jitter, large batches.
fn outbox_for(store: &mailsync_store::Store, clock: &ManualClock) -> Arc<Outbox> {
    Arc::new(
        Outbox::new(store.clone())
            .with_policy(RetryPolicy::default().with_batch_size(1000))
            .with_clock(Arc::new(clock.clone()))
            .with_jitter(Arc::new(FixedJitter(1.0))),
    )
}

/// [`Op::Crash`]: a cycle dropped where it stands once the proxy holds the connection at the
/// byte (the engine never sees a cut), then every connection closed and the outbox, the
/// engine's memory, made afresh: what a killed and restarted process has.
async fn crash(
    local: &mut Local,
    run: &mut Run,
    index: usize,
    op: &Op,
    client: bool,
    at: u32,
) -> Result<()> {
    let proxy = local
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow!("a crash in a run without the proxy"))?;
    let at = u64::from(at);
    let cut = if client {
        Cut::after_client_bytes(at)
    } else {
        Cut::after_server_bytes(at)
    };
    let before = proxy.cuts();
    proxy.arm(cut.over_all_connections().held());
    let reached = async {
        while proxy.cuts() == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let finished = tokio::select! {
        r = local.cycle() => Some(r),
        () = reached => None,
    };
    proxy.disarm();
    proxy.release();
    match finished {
        Some(Err(e)) => run.notes.push(format!("op {index} `{op}` failed: {e}")),
        Some(Ok(_)) => {}
        None => {
            run.notes.push(format!("op {index} `{op}`: killed"));
            run.crashes += 1;
            local.outbox = outbox_for(&local.db.store, &local.clock);
            // The restarted engine's first step (its first cycle starts with it, before the
            // user sees the account again).
            local.outbox.recover(local.account.id).await;
        }
    }
    Ok(())
}

impl Local {
    async fn cycle(&self) -> Result<SyncCounts, EngineError> {
        let store = &self.db.store;
        let account = accounts::get(store.conn(), self.account.id).await?;
        let mut driver = driver_for(store, &self.outbox, account, &WorkerPolicy::default());
        // Nobody listens to the model's events; a sender with no receiver drops them.
        let (events, _) = tokio::sync::broadcast::channel(16);
        run_cycle(
            store,
            self.account.id,
            driver.as_mut(),
            &CancellationToken::new(),
            &events,
        )
        .await
    }

    /// Mailboxes: (id, normalized name, role), selectable only, sorted by name.
    async fn mailboxes(&self) -> Result<Vec<(mailsync_store::MailboxId, String, Option<Role>)>> {
        let mut v: Vec<_> = mailboxes::list(self.db.store.conn(), self.account.id)
            .await?
            .into_iter()
            .filter(|m| m.selectable)
            .map(|m| (m.id, normalize(&m.name, m.role), m.role))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(v)
    }

    /// Every (email, mailbox) pair, sorted by (Message-ID, mailbox, id).
    async fn emails(&self) -> Result<Vec<LocalEmail>> {
        let mut out = Vec::new();
        for (id, name, _) in self.mailboxes().await? {
            let list = emails::list(
                self.db.store.conn(),
                &EmailFilter {
                    mailbox: Some(id),
                    ..Default::default()
                },
            )
            .await?;
            for s in list {
                out.push(LocalEmail {
                    id: s.email.id.0,
                    message_id: clean_id(s.email.message_id.as_deref()),
                    mailbox: name.clone(),
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.message_id, &a.mailbox, a.id).cmp(&(&b.message_id, &b.mailbox, b.id))
        });
        Ok(out)
    }

    /// With every body downloaded: each message the other client appended (subject
    /// `model N`, text `body N`) has its body in the database, and it is its own.
    async fn body_check(&self) -> Result<Vec<Divergence>> {
        let mut out = Vec::new();
        let c = self.db.store.conn();
        for (id, name, _) in self.mailboxes().await? {
            let filter = EmailFilter {
                mailbox: Some(id),
                ..Default::default()
            };
            for e in emails::list(c, &filter).await? {
                let e = e.email;
                // The engine's own drafts and sends have subjects of their own.
                let Some(n) = e
                    .subject
                    .as_deref()
                    .and_then(|s| s.strip_prefix("model "))
                    .filter(|n| n.parse::<u64>().is_ok())
                else {
                    continue;
                };
                let mid = clean_id(e.message_id.as_deref());
                let text = bodies::get(c, e.id)
                    .await?
                    .map(|b| b.text.unwrap_or_default());
                match text {
                    None => out.push(Divergence {
                        kind: "body-missing".into(),
                        detail: format!("{mid} in {name} (email {}) has no body", e.id.0),
                    }),
                    Some(t) if t.trim() != format!("body {n}") => out.push(Divergence {
                        kind: "body-not-its-own".into(),
                        detail: format!("{mid} in {name} (`model {n}`) has the body {t:?}"),
                    }),
                    Some(_) => {}
                }
            }
        }
        Ok(out)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        let mut ids = HashSet::new();
        for (id, name, _) in self.mailboxes().await? {
            let list = emails::list(
                self.db.store.conn(),
                &EmailFilter {
                    mailbox: Some(id),
                    ..Default::default()
                },
            )
            .await?;
            let v = list
                .into_iter()
                .map(|e| {
                    ids.insert(e.email.id);
                    Msg::new(
                        &clean_id(e.email.message_id.as_deref()),
                        e.email.flags.seen,
                        e.email.flags.flagged,
                    )
                })
                .collect();
            s.mailboxes.insert(name, v);
        }
        let total = emails::count(self.db.store.conn(), self.account.id).await? as usize;
        s.orphans = total.saturating_sub(ids.len());
        Ok(s)
    }
}

fn clean_id(id: Option<&str>) -> String {
    id.unwrap_or("")
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// The running state of one run.
struct Run {
    tag: String,
    intents: Vec<Intent>,
    /// Message-ID → how many copies the other client made of it (COPY).
    ever_copied: HashMap<String, usize>,
    expunged: HashSet<String>,
    moved_by_other: HashSet<String>,
    /// Names that were the source or target of a rename: a JMAP move follows the mailbox
    /// (by id) into its new name, an IMAP one goes by name, so promises naming them are not
    /// checked.
    renamed: HashSet<String>,
    /// Names the other client created (CREATE, or RENAME to them): a local mailbox of that
    /// name, made or renamed before the engine saw the server's, is another mailbox, so a
    /// promise that the name leaves the server is not checked.
    other_named: HashSet<String>,
    /// The engine addresses mailboxes by id (JMAP), not by name (IMAP).
    by_id: bool,
    appended: usize,
    sends: usize,
    /// Drafts saved, and draft versions written (for unique Message-IDs and contents).
    drafts: usize,
    versions: usize,
    notes: Vec<String>,
    crashes: usize,
    pauses: usize,
}

impl Run {
    /// Marks the intents on these messages or mailboxes as touched since. A mailbox's
    /// children and parents go with it: a RENAME or DELETE of `A` reaches `A/S`, and a
    /// CREATE of `A/S` may create `A` (Cyrus makes it an intermediate mailbox, and keeps it).
    fn touch(&mut self, ids: &[String], boxes: &[String]) {
        let below = |m: &str, b: &str| m.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
        let related = |m: &String| boxes.iter().any(|b| m == b || below(m, b) || below(b, m));
        for i in &mut self.intents {
            if ids.contains(&i.message_id) || i.mailboxes.iter().any(related) {
                i.superseded = true;
            }
        }
    }

    fn short(&self, s: &str) -> String {
        s.replace(&format!(".{}", self.tag), "")
    }
}

/// The queued row that carries an action, which an undo names (`oracle::undone`).
fn row_of(e: Enqueued) -> Option<i64> {
    match e {
        Enqueued::Queued(c) | Enqueued::Merged(c) | Enqueued::Collapsed(c) => Some(c.0),
        Enqueued::Unchanged => None,
    }
}

fn pick<T>(v: &[T], p: u32) -> Option<&T> {
    if v.is_empty() {
        None
    } else {
        v.get(p as usize % v.len())
    }
}

/// The name of the mailbox with `role` (normalized), if the account has one.
async fn role_name(
    local: &Local,
    role: Role,
) -> Result<Option<(mailsync_store::MailboxId, String)>> {
    Ok(local
        .mailboxes()
        .await?
        .into_iter()
        .find(|m| m.2 == Some(role))
        .map(|m| (m.0, m.1)))
}

fn draft_message(from: &str, message_id: &str, version: usize) -> OutgoingMessage {
    OutgoingMessage {
        message_id: message_id.into(),
        from: Address {
            name: None,
            email: from.into(),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: format!("model draft {message_id} v{version}"),
        text: format!("draft version {version}"),
        ..Default::default()
    }
}

/// Mailbox management and drafts by the engine (through the outbox), with their promises.
async fn mailbox_or_draft_op(
    local: &Local,
    run: &mut Run,
    index: usize,
    op: &Op,
    from: &str,
) -> Result<()> {
    use mailsync_outbox::MailboxChange;
    let acc = local.account.id;
    let ob = &local.outbox;
    let text = op.to_string();
    let no_role: Vec<(mailsync_store::MailboxId, String)> = local
        .mailboxes()
        .await?
        .into_iter()
        .filter(|m| m.2.is_none() && m.1 != "INBOX")
        .map(|m| (m.0, m.1))
        .collect();
    let mailbox_intent = |run: &mut Run, expect: Expect, boxes: Vec<String>| {
        let superseded = matches!(&expect, Expect::MailboxGone(n) if run.other_named.contains(n));
        run.intents.push(Intent {
            op: index,
            text: text.clone(),
            message_id: String::new(),
            email: None,
            change: None,
            expect,
            mailboxes: boxes,
            superseded,
            raced_expunge: false,
        });
    };
    match op {
        Op::MCreate { name } => match ob
            .manage_mailbox(
                acc,
                MailboxChange::Create {
                    name: name.clone(),
                    parent: None,
                    role: None,
                },
            )
            .await
        {
            Ok(_) => {
                run.touch(&[], std::slice::from_ref(name));
                mailbox_intent(run, Expect::MailboxExists(name.clone()), vec![name.clone()]);
            }
            Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
        },
        Op::MRename { pick, name } => {
            let Some((id, old)) = self::pick(&no_role, *pick).cloned() else {
                return Ok(());
            };
            let inside: Vec<String> = local
                .emails()
                .await?
                .into_iter()
                .filter(|e| e.mailbox == old)
                .map(|e| e.message_id)
                .collect();
            match ob
                .manage_mailbox(
                    acc,
                    MailboxChange::Rename {
                        mailbox: id,
                        name: name.clone(),
                        parent: None,
                    },
                )
                .await
            {
                Ok((_, Enqueued::Unchanged)) => {}
                Ok(_) => {
                    let boxes = vec![old.clone(), name.clone()];
                    run.touch(&inside, &boxes);
                    run.renamed.extend(boxes.iter().cloned());
                    mailbox_intent(run, Expect::MailboxExists(name.clone()), vec![name.clone()]);
                    mailbox_intent(run, Expect::MailboxGone(old.clone()), vec![old]);
                }
                Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
            }
        }
        Op::MDelete { pick } => {
            let Some((id, old)) = self::pick(&no_role, *pick).cloned() else {
                return Ok(());
            };
            let inside: Vec<String> = local
                .emails()
                .await?
                .into_iter()
                .filter(|e| e.mailbox == old)
                .map(|e| e.message_id)
                .collect();
            match ob
                .manage_mailbox(acc, MailboxChange::Delete { mailbox: id })
                .await
            {
                Ok(_) => {
                    run.touch(&inside, std::slice::from_ref(&old));
                    run.expunged.extend(inside);
                    mailbox_intent(run, Expect::MailboxGone(old.clone()), vec![old]);
                }
                Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
            }
        }
        Op::DSave => {
            let Some((_, drafts)) = role_name(local, Role::Drafts).await? else {
                run.notes
                    .push(format!("op {index} `{text}`: no Drafts mailbox"));
                return Ok(());
            };
            run.drafts += 1;
            let message_id = format!("d{}.{}@model.test", run.drafts, run.tag);
            match ob
                .save_draft(acc, None, draft_message(from, &message_id, 1))
                .await
            {
                Ok((email, queued)) => run.intents.push(Intent {
                    op: index,
                    text,
                    message_id,
                    email: Some(email.0),
                    change: row_of(queued),
                    expect: Expect::Draft {
                        drafts: drafts.clone(),
                        others: 0,
                    },
                    mailboxes: vec![drafts],
                    superseded: false,
                    raced_expunge: false,
                }),
                Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
            }
        }
        Op::DUpdate { pick } | Op::DDiscard { pick } | Op::DSend { pick } => {
            let Some((_, drafts)) = role_name(local, Role::Drafts).await? else {
                return Ok(());
            };
            let all = local.emails().await?;
            let mine: Vec<&LocalEmail> = all
                .iter()
                .filter(|e| e.mailbox == drafts && e.message_id.starts_with('d'))
                .collect();
            let Some(d) = self::pick(&mine, *pick).map(|d| (*d).clone()) else {
                return Ok(());
            };
            // The copies elsewhere the database shows (the other client's, synced): a discard
            // must leave them (`Expect::DraftGone`).
            let kept = all
                .iter()
                .filter(|e| e.message_id == d.message_id && e.mailbox != drafts)
                .count();
            // A copy the other client expunged or moved may be gone or in Drafts by now.
            let raced =
                run.expunged.contains(&d.message_id) || run.moved_by_other.contains(&d.message_id);
            let email = mailsync_store::EmailId(d.id);
            run.touch(std::slice::from_ref(&d.message_id), &[]);
            run.versions += 1;
            // Copies the other client filed are messages of their own (`Expect::DraftGone`).
            let others = run.ever_copied.get(&d.message_id).copied().unwrap_or(0);
            let (result, expect) = match op {
                Op::DUpdate { .. } => (
                    ob.save_draft(
                        acc,
                        Some(email),
                        draft_message(from, &d.message_id, run.versions),
                    )
                    .await
                    .map(|(_, q)| (row_of(q), None)),
                    Expect::Draft {
                        drafts: drafts.clone(),
                        others,
                    },
                ),
                Op::DDiscard { .. } => (
                    ob.discard_draft(acc, email)
                        .await
                        .map(|q| (row_of(q), None)),
                    Expect::DraftGone { others, kept },
                ),
                _ => (
                    // The discard is one action with the send: an undo of either half takes
                    // both back and names the send's row.
                    ob.send_draft(acc, email)
                        .await
                        .map(|q| (q.change_id().map(|c| c.0), Some(q))),
                    Expect::DraftGone { others, kept },
                ),
            };
            match result {
                Ok((row, sent)) => {
                    // Its row, so that an undo of this action (or of another one merged into
                    // the same row) lets go of its promise (model seed 19003).
                    run.intents.push(Intent {
                        op: index,
                        text: format!("{text} -> {}", run.short(&d.message_id)),
                        message_id: d.message_id.clone(),
                        email: Some(d.id),
                        change: row,
                        raced_expunge: raced && matches!(expect, Expect::DraftGone { .. }),
                        expect,
                        mailboxes: vec![drafts],
                        superseded: false,
                    });
                    // The send goes out with a fresh Message-ID: read it from the queue.
                    if let Some(c) = sent.and_then(Enqueued::change_id) {
                        let row = mailsync_store::queue::get(local.db.store.conn(), c).await?;
                        let mid = row
                            .and_then(|r| {
                                serde_json::from_str::<serde_json::Value>(&r.payload).ok()
                            })
                            .and_then(|v| v["message"]["message_id"].as_str().map(str::to_owned));
                        let sent_box = role_name(local, Role::Sent)
                            .await?
                            .map_or_else(|| "Sent".to_owned(), |m| m.1);
                        if let Some(mid) = mid {
                            run.intents.push(Intent {
                                op: index,
                                text: format!("{text} (its send)"),
                                message_id: mid,
                                email: None,
                                change: Some(c.0),
                                expect: Expect::Sent {
                                    sent: sent_box.clone(),
                                },
                                mailboxes: vec![sent_box],
                                superseded: false,
                                raced_expunge: false,
                            });
                        }
                    }
                }
                Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
            }
        }
        _ => bail!("not a mailbox or draft operation: {op}"),
    }
    Ok(())
}

async fn engine_op(local: &Local, run: &mut Run, index: usize, op: &Op, from: &str) -> Result<()> {
    if matches!(
        op,
        Op::MCreate { .. }
            | Op::MRename { .. }
            | Op::MDelete { .. }
            | Op::DSave
            | Op::DUpdate { .. }
            | Op::DDiscard { .. }
            | Op::DSend { .. }
    ) {
        return mailbox_or_draft_op(local, run, index, op, from).await;
    }
    let acc = local.account.id;
    let ob = &local.outbox;
    let text = op.to_string();
    let result = match op {
        Op::Sync => {
            if let Err(e) = local.cycle().await {
                run.notes.push(format!("op {index} `sync` failed: {e}"));
            }
            return Ok(());
        }
        Op::Cut { client, at } => {
            let proxy = local
                .proxy
                .as_ref()
                .ok_or_else(|| anyhow!("a cut in a run without the proxy"))?;
            let at = u64::from(*at);
            let cut = if *client {
                Cut::after_client_bytes(at)
            } else {
                Cut::after_server_bytes(at)
            };
            let before = proxy.cuts();
            proxy.arm(cut.over_all_connections());
            let r = local.cycle().await;
            proxy.disarm();
            let was_cut = proxy.cuts() > before;
            match r {
                Err(e) => run.notes.push(format!("op {index} `{op}` failed: {e}")),
                Ok(_) if was_cut => run.notes.push(format!(
                    "op {index} `{op}`: cut, and the cycle still succeeded"
                )),
                Ok(_) => {}
            }
            return Ok(());
        }
        Op::Undo => {
            match ob.undo_last(acc).await {
                Ok(Undone::Withdrawn(c) | Undone::Compensated { change: c, .. }) => {
                    // What an undone send promises: it does not go out, and the draft it was
                    // sent from (its discard is the same action, on the send's row) is back.
                    let of_row = |i: &&Intent| i.change == Some(c.0) && !i.superseded;
                    let a_send = run
                        .intents
                        .iter()
                        .filter(of_row)
                        .any(|i| matches!(i.expect, Expect::Sent { .. }));
                    let back: Vec<Intent> = run
                        .intents
                        .iter()
                        .filter(of_row)
                        .filter_map(|i| {
                            let expect = match &i.expect {
                                Expect::Sent { sent } => Expect::Unsent { sent: sent.clone() },
                                Expect::DraftGone { others, .. } if a_send => Expect::Draft {
                                    drafts: i.mailboxes.first().cloned()?,
                                    others: *others,
                                },
                                _ => return None,
                            };
                            Some(Intent {
                                op: index,
                                text: format!("undo of {}", i.text),
                                change: None,
                                expect,
                                ..i.clone()
                            })
                        })
                        .collect();
                    if !oracle::undone(&mut run.intents, c.0) {
                        for i in &mut run.intents {
                            i.superseded = true;
                        }
                    }
                    run.intents.extend(back);
                }
                Err(e) => run.notes.push(format!("op {index} `undo` refused: {e}")),
            }
            return Ok(());
        }
        Op::Send => {
            run.sends += 1;
            let message_id = format!("s{}.{}@model.test", run.sends, run.tag);
            let sent = local
                .mailboxes()
                .await?
                .into_iter()
                .find(|m| m.2 == Some(Role::Sent))
                .map(|m| m.1)
                .unwrap_or_else(|| "Sent".into());
            let msg = OutgoingMessage {
                message_id: message_id.clone(),
                from: Address {
                    name: None,
                    email: from.into(),
                },
                to: vec![Address {
                    name: None,
                    email: "bob@example.test".into(),
                }],
                subject: format!("model send {message_id}"),
                text: "sent by the model test".into(),
                ..Default::default()
            };
            let r = ob.enqueue(acc, Change::send(msg)).await;
            let change = match &r {
                Ok(e) => e.change_id().map(|c| c.0),
                Err(e) => {
                    run.notes.push(format!("op {index} `send` refused: {e}"));
                    return Ok(());
                }
            };
            run.intents.push(Intent {
                op: index,
                text,
                message_id,
                email: None,
                change,
                expect: Expect::Sent { sent: sent.clone() },
                mailboxes: vec![sent],
                superseded: false,
                raced_expunge: false,
            });
            return Ok(());
        }
        _ => {
            let all = local.emails().await?;
            let pick_of = |p: u32| pick(&all, p).cloned();
            let (p, change, expect, boxes) = match op {
                Op::Flag { pick, flag, value } => {
                    let Some(e) = pick_of(*pick) else {
                        return Ok(());
                    };
                    let ch = match flag {
                        ModelFlag::Seen => Change::seen(mailsync_store::EmailId(e.id), *value),
                        ModelFlag::Flagged => {
                            Change::flagged(mailsync_store::EmailId(e.id), *value)
                        }
                    };
                    (e, ch, Expect::Flag(*flag, *value), vec![])
                }
                Op::Move { pick, to } => {
                    let Some(e) = pick_of(*pick) else {
                        return Ok(());
                    };
                    let boxes = local.mailboxes().await?;
                    let Some((tid, tname, _)) = self::pick(&boxes, *to).cloned() else {
                        return Ok(());
                    };
                    let single = !run.ever_copied.contains_key(&e.message_id)
                        && all.iter().filter(|x| x.message_id == e.message_id).count() == 1;
                    let expect = Expect::Moved {
                        to: tname.clone(),
                        exclusive_from: single.then(|| e.mailbox.clone()),
                    };
                    let boxes = vec![e.mailbox.clone(), tname];
                    (
                        e.clone(),
                        Change::move_to(mailsync_store::EmailId(e.id), tid),
                        expect,
                        boxes,
                    )
                }
                Op::Delete { pick } => {
                    let Some(e) = pick_of(*pick) else {
                        return Ok(());
                    };
                    let trash = local
                        .mailboxes()
                        .await?
                        .into_iter()
                        .find(|m| m.2 == Some(Role::Trash))
                        .map(|m| m.1)
                        .unwrap_or_else(|| "Trash".into());
                    let single = !run.ever_copied.contains_key(&e.message_id)
                        && all.iter().filter(|x| x.message_id == e.message_id).count() == 1;
                    let expect = if e.mailbox == trash {
                        Expect::Destroyed { single }
                    } else {
                        Expect::Trashed {
                            trash: trash.clone(),
                            exclusive_from: single.then(|| e.mailbox.clone()),
                        }
                    };
                    let boxes = vec![e.mailbox.clone(), trash];
                    (
                        e.clone(),
                        Change::delete(mailsync_store::EmailId(e.id)),
                        expect,
                        boxes,
                    )
                }
                _ => unreachable!("engine ops are handled above"),
            };
            // This action touches the message: earlier promises about it are superseded.
            run.touch(std::slice::from_ref(&p.message_id), &[]);
            let raced = if run.moved_by_other.contains(&p.message_id) {
                " (after the other client moved it)"
            } else {
                ""
            };
            (p, change, expect, boxes, format!("{text}{raced}"))
        }
    };
    let (p, change, expect, boxes, text) = result;
    match ob.enqueue(acc, change).await {
        // Nothing to do locally: no intent (the user asked for the state they saw).
        Ok(Enqueued::Unchanged) => {}
        Ok(e) => {
            run.intents.push(Intent {
                op: index,
                text: format!("{text} -> {}", run.short(&p.message_id)),
                message_id: p.message_id.clone(),
                email: Some(p.id),
                change: row_of(e),
                expect,
                superseded: boxes.iter().any(|b| run.renamed.contains(b)),
                mailboxes: boxes,
                raced_expunge: run.expunged.contains(&p.message_id),
            });
        }
        Err(e) => run.notes.push(format!("op {index} `{text}` refused: {e}")),
    }
    Ok(())
}

/// [`other_op`], logging in again once when the server ended the session: after a change to
/// the mailbox it has selected (renamed or deleted by the engine), Dovecot may end the other
/// client's session ("IMAP session state is inconsistent, please relogin"), and a real client
/// logs in again.
fn other_op_again(
    c: &mut ImapClient,
    server: &Server,
    run: &mut Run,
    index: usize,
    op: &Op,
) -> Result<()> {
    if let Err(e) = other_op(c, run, index, op) {
        if !format!("{e:#}").contains("connection closed") {
            return Err(e);
        }
        *c = server.login().context("the other client's login again")?;
        run.notes.push(format!(
            "op {index} `{op}`: the other client logged in again"
        ));
        other_op(c, run, index, op)?;
    }
    Ok(())
}

/// Where an [`Op::During`] pauses its cycle: after `at` bytes from the client, or the server.
#[derive(Debug, Clone, Copy)]
struct Pause {
    client: bool,
    at: u32,
}

/// How long an [`Op::During`] pause lasts at most: a server that holds a lock while its answer
/// waits at the pause would otherwise keep the other client waiting for good.
const PAUSE_MAX: Duration = Duration::from_secs(5);

/// [`Op::During`]: a cycle paused at the byte while the other client does `inner` (on this
/// thread: the engine's connections wait at the proxy or in their sockets meanwhile), then
/// forwarded on. A cycle that ends before the byte is followed by `inner`.
#[allow(clippy::too_many_arguments)]
async fn during(
    local: &Local,
    other: &mut ImapClient,
    server: &Server,
    run: &mut Run,
    index: usize,
    op: &Op,
    pause: Pause,
    inner: &Op,
) -> Result<()> {
    let proxy = local
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow!("a `during` in a run without the proxy"))?;
    let at = u64::from(pause.at);
    let cut = if pause.client {
        Cut::after_client_bytes(at)
    } else {
        Cut::after_server_bytes(at)
    };
    proxy.arm(cut.over_all_connections().paused(PAUSE_MAX));
    let cycle = local.cycle();
    tokio::pin!(cycle);
    let reached = async {
        while !proxy.holding() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let finished = tokio::select! {
        r = &mut cycle => Some(r),
        () = reached => None,
    };
    proxy.disarm();
    let r = match finished {
        Some(r) => {
            other_op_again(other, server, run, index, inner)?;
            r
        }
        None => {
            let o =
                tokio::task::block_in_place(|| other_op_again(other, server, run, index, inner));
            proxy.resume();
            o?;
            run.notes.push(format!("op {index} `{op}`: paused"));
            run.pauses += 1;
            cycle.await
        }
    };
    if let Err(e) = r {
        run.notes.push(format!("op {index} `{op}` failed: {e}"));
    }
    Ok(())
}

fn other_op(c: &mut ImapClient, run: &mut Run, index: usize, op: &Op) -> Result<()> {
    let picked = |c: &mut ImapClient, mailbox: &str, p: u32| -> Result<Option<Fetched>> {
        Ok(fetch_all(c, mailbox)?.and_then(|v| {
            let v: Vec<Fetched> = v.into_iter().filter(|m| !m.deleted).collect();
            pick(&v, p).cloned()
        }))
    };
    let ok = |r: mailsync_testkit::imap::Response| r.status == "OK";
    match op {
        Op::OFlag {
            mailbox,
            pick,
            flag,
            value,
        } => {
            if let Some(m) = picked(c, mailbox, *pick)? {
                let sign = if *value { '+' } else { '-' };
                c.command(&format!(
                    "UID STORE {} {sign}FLAGS.SILENT ({})",
                    m.uid,
                    flag.imap()
                ))?;
                run.touch(&[m.message_id], &[]);
            }
        }
        Op::OMove { from, pick, to } | Op::OCopy { from, pick, to } => {
            if from == to {
                return Ok(());
            }
            if let Some(m) = picked(c, from, *pick)? {
                let verb = if matches!(op, Op::OMove { .. }) {
                    "MOVE"
                } else {
                    "COPY"
                };
                let r = c.command_any(&format!("UID {verb} {} {}", m.uid, quote_mailbox(to)))?;
                if ok(r) {
                    if verb == "COPY" {
                        *run.ever_copied.entry(m.message_id.clone()).or_default() += 1;
                    } else {
                        run.moved_by_other.insert(m.message_id.clone());
                    }
                }
                run.touch(&[m.message_id], &[]);
            }
        }
        Op::OExpunge { mailbox, pick } => {
            if let Some(m) = picked(c, mailbox, *pick)? {
                c.command(&format!("UID STORE {} +FLAGS.SILENT (\\Deleted)", m.uid))?;
                c.command(&format!("UID EXPUNGE {}", m.uid))?;
                run.expunged.insert(m.message_id.clone());
                run.touch(&[m.message_id], &[]);
            }
        }
        Op::OAppend { mailbox, seen } => {
            run.appended += 1;
            let id = format!("m{}.{}@model.test", run.appended, run.tag);
            if !append(c, mailbox, &id, run.appended, *seen)? {
                run.notes.push(format!("op {index} `{op}`: APPEND refused"));
            }
        }
        Op::OCreate { name } => {
            let created = ok(c.command_any(&format!("CREATE {}", quote_mailbox(name)))?);
            run.other_named.insert(name.clone());
            run.touch(&[], std::slice::from_ref(name));
            if created {
                other_mailbox_intent(run, index, op, name, None);
            }
        }
        Op::ODelete { name } | Op::ORename { from: name, .. } => {
            // `None`: no mailbox to select, only a placeholder for its children (Dovecot and
            // Cyrus list `A` as `\Noselect` when only `A/C` exists).
            let selected = fetch_all(c, name)?;
            let placeholder = selected.is_none();
            let inside: Vec<String> = selected
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.message_id)
                .collect();
            let _ = c.command_any("UNSELECT")?;
            let (cmd, boxes) = match op {
                Op::ORename { to, .. } => {
                    if to == name {
                        return Ok(());
                    }
                    (
                        format!("RENAME {} {}", quote_mailbox(name), quote_mailbox(to)),
                        vec![name.clone(), to.clone()],
                    )
                }
                _ => (
                    format!("DELETE {}", quote_mailbox(name)),
                    vec![name.clone()],
                ),
            };
            let done = ok(c.command_any(&cmd)?);
            if done {
                match op {
                    Op::ODelete { .. } => run.expunged.extend(inside.iter().cloned()),
                    _ => {
                        run.renamed.extend(boxes.iter().cloned());
                        run.other_named.extend(boxes.get(1).cloned());
                    }
                }
            }
            run.touch(&inside, &boxes);
            // A mailbox the user deleted or renamed away before is theirs, whatever its
            // name now: JMAP follows it by id (a delete of it is the user's to make).
            let users = run
                .intents
                .iter()
                .any(|i| matches!(&i.expect, Expect::MailboxGone(n) if n == name));
            // A placeholder renamed is a placeholder under the new name, gone with its last
            // child: no mailbox to keep (Dovecot and Cyrus IMAP seed 64012 with nested
            // mailboxes: `A` held only `A/C`, another client renamed it to `B`, the user then
            // renamed `B/C` to `E`, and `B` rightly went; the check took it for a loss).
            if done
                && !users
                && !placeholder
                && let Op::ORename { to, .. } = op
            {
                other_mailbox_intent(run, index, op, to, Some(name));
            }
        }
        _ => bail!("not an other-client operation: {op}"),
    }
    Ok(())
}

/// The other client's promise that the mailbox it just named `name` stays: superseded only by
/// a later operation on that name (the user's or the other client's). A user's delete queued
/// before it must not take it (model test, Cyrus IMAP: a delete of A held by a cut, then
/// another client renamed B to A; its UIDVALIDITY, taken from the clock, matched A's).
///
/// Checked only where the engine addresses mailboxes by name (IMAP). Over JMAP a user's
/// mailbox change names an id, so it can only act on the mailbox the user meant, which may be
/// the one the other client just renamed: a delete of the user's C after another client
/// renamed it to B rightly deletes B (Cyrus JMAP seed 19, which the check took for a loss).
/// Over IMAP the same holds where the server gives MAILBOXID (RFC 8474): the user's later
/// change of the mailbox under its old name (`renamed_from`) follows it to the new one
/// (Cyrus IMAP seed 64012 with nested mailboxes: another client renamed A to B, the user
/// renamed their A to E, and B, the same mailbox, became E).
fn other_mailbox_intent(
    run: &mut Run,
    index: usize,
    op: &Op,
    name: &str,
    renamed_from: Option<&String>,
) {
    if run.by_id {
        return;
    }
    run.intents.push(Intent {
        op: index,
        text: op.to_string(),
        message_id: String::new(),
        email: None,
        change: None,
        expect: Expect::OtherMailboxKept(name.to_owned()),
        mailboxes: std::iter::once(name.to_owned())
            .chain(renamed_from.cloned())
            .collect(),
        superseded: false,
        raced_expunge: false,
    });
}

/// Mailbox names as JMAP lists them (the inbox as `INBOX`), sorted.
async fn jmap_mailbox_names(servers: &Servers, server: &Server) -> Result<Vec<String>> {
    use mailsync_jmap_client::{Client, Credentials, Get, Mailbox, MailboxRole};
    let client = Client::builder()
        .credentials(Credentials::basic(&server.user, &server.password))
        .connect(servers.jmap_session_url())
        .await?;
    let jacc = client.mail_account_id()?;
    let got = client
        .call(Get::<Mailbox>::new(&jacc).properties(["name", "role"]))
        .await?;
    let mut names: Vec<String> = got
        .list
        .into_iter()
        .map(|m| {
            if m.role == Some(MailboxRole::Inbox) {
                "INBOX".to_string()
            } else {
                m.name.unwrap_or_default()
            }
        })
        .collect();
    names.sort();
    Ok(names)
}

fn new_account(backend: Backend, servers: &Servers, server: &Server) -> NewAccount {
    let imap = match backend {
        Backend::CyrusJmap => None,
        _ => Some(Endpoint {
            host: server.host.clone(),
            port: server.port,
            security: Security::Plain,
        }),
    };
    NewAccount {
        name: format!("model-{}", backend.name()),
        kind: match backend {
            Backend::CyrusJmap => AccountKind::Jmap,
            _ => AccountKind::Imap,
        },
        email: format!("{}@example.test", server.user),
        display_name: Some("Model".into()),
        username: server.user.clone(),
        secret_ref: SecretRef::Command(format!("printf %s {}", server.password)),
        imap,
        smtp: match backend {
            Backend::CyrusJmap => None,
            _ => Some(Endpoint {
                host: servers.smtp_host().into(),
                port: servers.smtp_port(),
                security: Security::Plain,
            }),
        },
        jmap_session_url: match backend {
            Backend::CyrusJmap => Some(servers.jmap_session_url().into()),
            _ => None,
        },
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::None,
    }
}

/// Runs `ops` on `backend` from a fresh start and asks the oracle. An `Err` is a harness or
/// setup failure (servers down), not a divergence.
pub async fn run_ops(backend: Backend, setup: Setup, ops: &[Op]) -> Result<Outcome> {
    let servers = Servers::load().context("test servers (run `cargo xtask servers up`)")?;
    let server = match backend {
        Backend::Dovecot => {
            let u = servers.fresh_dovecot_user("model");
            Server {
                host: servers.dovecot_host().into(),
                port: servers.dovecot_imap_port(),
                user: u.user,
                password: u.password,
            }
        }
        Backend::CyrusImap | Backend::CyrusJmap => {
            // en8 (IMAP) and en9 (JMAP); MAILSYNC_MODEL_CYRUS_USER=en10 moves a run aside.
            let n = std::env::var("MAILSYNC_MODEL_CYRUS_USER")
                .ok()
                .and_then(|u| u.strip_prefix("en").and_then(|n| n.parse().ok()))
                .filter(|n| (8..=10).contains(n))
                .unwrap_or(if backend == Backend::CyrusImap { 8 } else { 9 });
            let u = mailsync_testkit::Account::cyrus_pool(mailsync_testkit::accounts::ENGINE, n);
            Server {
                host: servers.cyrus_host().into(),
                port: servers.cyrus_imap_port(),
                user: u.user,
                password: u.password,
            }
        }
    };
    // Cyrus users are shared: runs on the same user (other processes, other worktrees) take
    // turns; the lock is released when the run ends.
    let _turn = match backend {
        Backend::Dovecot => None,
        _ => {
            let path = std::env::temp_dir().join(format!("mailsync-model-{}.lock", server.user));
            let f = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.lock()
                .with_context(|| format!("locking {}", path.display()))?;
            Some(f)
        }
    };
    let mut other = server.login().context("the other client's login")?;
    reset_account(&mut other).context("resetting the account")?;
    let tag = unique_name("r");
    let mut run = Run {
        tag: tag.clone(),
        intents: Vec::new(),
        ever_copied: HashMap::new(),
        expunged: HashSet::new(),
        moved_by_other: HashSet::new(),
        renamed: HashSet::new(),
        other_named: HashSet::new(),
        by_id: backend == Backend::CyrusJmap,
        appended: 0,
        sends: 0,
        drafts: 0,
        versions: 1,
        notes: Vec::new(),
        crashes: 0,
        pauses: 0,
    };
    // The starting mail: 6 in INBOX (2 read, 1 flagged), 2 in Archive, mailbox A with 1.
    other.create_mailbox("A")?;
    for (mailbox, seen) in [
        ("INBOX", true),
        ("INBOX", true),
        ("INBOX", false),
        ("INBOX", false),
        ("INBOX", false),
        ("INBOX", false),
        ("Archive", true),
        ("Archive", false),
        ("A", false),
    ] {
        run.appended += 1;
        let id = format!("m{}.{tag}@model.test", run.appended);
        if !append(&mut other, mailbox, &id, run.appended, seen)? {
            bail!("APPEND to {mailbox} refused");
        }
    }
    other.select("INBOX")?;
    other.command("STORE 4 +FLAGS.SILENT (\\Flagged)")?;
    other.command("UNSELECT")?;

    let db = match setup.store {
        StoreKind::Postgres => TempDb::postgres().await?,
        StoreKind::Sqlite => TempDb::sqlite().await?,
    };
    let mut new = new_account(backend, &servers, &server);
    if setup.bodies {
        new.body_policy = BodyPolicy::All;
    }
    // Runs with cuts reach the server through a proxy that cuts on request.
    let proxy = if ops
        .iter()
        .any(|o| matches!(o, Op::Cut { .. } | Op::Crash { .. } | Op::During { .. }))
    {
        let p = match backend {
            Backend::CyrusJmap => {
                FaultProxy::start(servers.cyrus_host(), servers.cyrus_http_port())
            }
            _ => FaultProxy::start(&server.host, server.port),
        }
        .context("starting the fault proxy")?;
        match backend {
            Backend::CyrusJmap => {
                let direct = format!("{}:{}", servers.cyrus_host(), servers.cyrus_http_port());
                new.jmap_session_url = Some(
                    servers
                        .jmap_session_url()
                        .replace(&direct, &format!("{}:{}", p.host(), p.port())),
                );
            }
            _ => {
                new.imap = Some(Endpoint {
                    host: p.host().into(),
                    port: p.port(),
                    security: Security::Plain,
                });
            }
        }
        Some(p)
    } else {
        None
    };
    let account = accounts::create(db.store.conn(), new).await?;
    let clock = ManualClock::new(chrono::Utc::now());
    let outbox = outbox_for(&db.store, &clock);
    let mut local = Local {
        db,
        outbox,
        clock,
        account,
        proxy,
    };
    local.cycle().await.context("the first sync")?;
    let from = format!("{}@example.test", server.user);
    let trace = std::env::var_os("MAILSYNC_MODEL_TRACE").is_some();
    for (index, op) in ops.iter().enumerate() {
        local.clock.advance(Duration::from_millis(10));
        if trace {
            let emails: Vec<String> = local
                .emails()
                .await?
                .iter()
                .map(|e| format!("{}:{}", run.short(&e.message_id), e.mailbox))
                .collect();
            eprintln!("  local before op {index}: {}", emails.join(" "));
            let sv = server_snapshot(&mut other)?;
            let mut on: Vec<String> = sv
                .mailboxes
                .iter()
                .flat_map(|(b, ms)| {
                    ms.iter().map(move |m| {
                        format!("{}:{b}{}", m.message_id, if m.seen { "" } else { "*" })
                    })
                })
                .map(|t| run.short(&t))
                .collect();
            on.sort();
            eprintln!("  server before op {index}: {}", on.join(" "));
            eprintln!("op {index}: {op}");
        }
        if let Op::Crash { client, at } = op {
            crash(&mut local, &mut run, index, op, *client, *at).await?;
        } else if let Op::During {
            client,
            at,
            other: o,
        } = op
        {
            let at = Pause {
                client: *client,
                at: *at,
            };
            during(&local, &mut other, &server, &mut run, index, op, at, o).await?;
        } else if op.is_engine() {
            engine_op(&local, &mut run, index, op, &from).await?;
        } else {
            other_op_again(&mut other, &server, &mut run, index, op)?;
        }
    }
    let _ = other.command_any("UNSELECT");

    // Converge: cycles until the queue is empty and a cycle changes nothing.
    let mut out = Outcome::default();
    let mut last_err = None;
    let mut converged = false;
    let mut retrying = false;
    for n in 1..=CONVERGE_CYCLES {
        // The manual clock jumps an hour, the servers' clocks do not: a retry, which the real
        // clock spaces by at least the policy's `min_delay` (1 s), must not reach the server
        // sooner (Cyrus refuses a mailbox name deleted twice within one second, and five
        // retries within that second gave the change up: seed 32 on Cyrus JMAP).
        if retrying {
            tokio::time::sleep(RetryPolicy::default().min_delay).await;
        }
        local.clock.advance(Duration::from_secs(3600));
        out.converge_cycles = n;
        let r = local.cycle().await;
        let pending = local.outbox.pending(local.account.id).await?;
        retrying = pending.iter().any(|p| p.last_error.is_some());
        if trace {
            // What each converging cycle did and left queued: a run that does not converge
            // shows here which changes keep failing or which echo keeps coming back.
            match &r {
                Ok(c) => eprintln!(
                    "converge cycle {n}: +{} ~{} -{} emails, {} changes sent, {} queued",
                    c.emails_added,
                    c.emails_updated,
                    c.emails_removed,
                    c.changes_flushed,
                    pending.len()
                ),
                Err(e) => {
                    // The whole chain: "store error" alone says nothing of which write failed.
                    let mut chain = e.to_string();
                    let mut src = std::error::Error::source(e);
                    while let Some(s) = src {
                        chain.push_str(&format!(": {s}"));
                        src = s.source();
                    }
                    eprintln!(
                        "converge cycle {n}: error: {chain}; {} queued",
                        pending.len()
                    )
                }
            }
            for p in &pending {
                eprintln!(
                    "  queued: {} ({}, {:?})",
                    p.description,
                    p.kind,
                    p.last_error.as_deref().unwrap_or("")
                );
            }
        }
        match r {
            Ok(c) => {
                last_err = None;
                let quiet = c.emails_added == 0
                    && c.emails_updated == 0
                    && c.emails_removed == 0
                    && c.changes_flushed == 0;
                if quiet && pending.is_empty() {
                    converged = true;
                    break;
                }
            }
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    let pending = local.outbox.pending(local.account.id).await?;
    if !pending.is_empty() {
        out.divergences.push(Divergence {
            kind: "queue-not-drained".into(),
            detail: pending
                .iter()
                .map(|p| {
                    format!(
                        "{} ({}, {:?})",
                        p.description,
                        p.kind,
                        p.last_error.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    if !converged {
        out.divergences.push(Divergence {
            kind: "not-converged".into(),
            detail: format!(
                "{CONVERGE_CYCLES} cycles after the last operation still changed something or failed{}",
                last_err.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            ),
        });
    }

    // The oracle.
    let db_snap = local.snapshot().await?;
    let sv_snap = server_snapshot(&mut other)?;
    let mut found = oracle::compare(&db_snap, &sv_snap, backend.view());
    if backend == Backend::CyrusJmap && found.iter().any(|d| d.kind == "mailboxes") {
        // Cyrus' IMAP and JMAP views can disagree on mailboxes for a moment (delayed delete):
        // what the JMAP account must match is JMAP's own list.
        let jmap = jmap_mailbox_names(&servers, &server).await?;
        let db_names: Vec<&String> = db_snap.mailboxes.keys().collect();
        let jmap_names: Vec<&String> = jmap.iter().collect();
        for d in &mut found {
            if d.kind == "mailboxes" {
                if db_names == jmap_names {
                    d.kind = "imap-jmap-views-differ".into();
                } else {
                    d.detail = format!("{}; JMAP lists {jmap:?}", d.detail);
                }
            }
        }
        found.retain(|d| {
            if d.kind == "imap-jmap-views-differ" {
                out.notes.push(format!(
                    "Cyrus IMAP and JMAP differ (database follows JMAP): {}",
                    d.detail
                ));
                false
            } else {
                true
            }
        });
    }
    out.divergences.extend(found);
    if setup.bodies {
        out.divergences.extend(local.body_check().await?);
    }
    let mut failed = Failed::default();
    for f in local.outbox.failed(local.account.id).await? {
        out.notes.push(format!(
            "failed: {} ({}): {}",
            f.description, f.kind, f.reason
        ));
        match f.email_id {
            Some(e) => {
                failed.emails.insert(e.0);
            }
            None if f.kind == "mailbox" => failed.mailboxes.push(f.description),
            None => failed.sends.push(f.description),
        }
    }
    // A failed send is known by its Message-ID too (a draft's send goes out under a new one,
    // which its description does not show).
    for f in
        mailsync_store::queue::list_failed(local.db.store.conn(), Some(local.account.id)).await?
    {
        let mid = serde_json::from_str::<serde_json::Value>(&f.payload)
            .ok()
            .and_then(|v| v["message"]["message_id"].as_str().map(str::to_owned));
        if let (None, Some(mid)) = (f.email_id, mid) {
            failed.sends.push(format!("send <{mid}>"));
        }
    }
    let mut sink: HashMap<String, usize> = HashMap::new();
    for m in servers.sink_messages()? {
        // Draft sends go out with a Message-ID the engine generates (not tagged).
        if let Some(id) = m.message_id()
            && (id.contains(&tag) || run.intents.iter().any(|i| i.message_id == id))
        {
            *sink.entry(id).or_default() += 1;
        }
    }
    out.divergences.extend(oracle::check_intents(
        &run.intents,
        &sv_snap,
        &sink,
        &failed,
    ));
    out.intents = (
        run.intents.len(),
        run.intents.iter().filter(|i| !i.superseded).count(),
    );
    out.server_messages = sv_snap.mailboxes.values().map(Vec::len).sum();
    for d in &mut out.divergences {
        d.detail = run.short(&d.detail);
    }
    out.notes.extend(run.notes.iter().map(|n| run.short(n)));
    out.cuts = local.proxy.as_ref().map_or(0, FaultProxy::cuts);
    out.crashes = run.crashes;
    out.pauses = run.pauses;
    other.logout();
    local.db.cleanup().await.ok();
    Ok(out)
}

/// Removes operations while the run still fails with one of `kinds` (delta debugging), within
/// `budget`; a candidate counts as failing when one of `tries` runs fails. Returns the smallest
/// failing list found and its outcome.
pub async fn shrink(
    backend: Backend,
    setup: Setup,
    ops: Vec<Op>,
    kinds: &[String],
    budget: Duration,
    tries: usize,
) -> (Vec<Op>, Option<Outcome>) {
    let start = Instant::now();
    let mut best = ops;
    let mut best_outcome = None;
    let mut n = 2usize;
    while best.len() >= 2 && start.elapsed() < budget {
        let chunk = best.len().div_ceil(n);
        let mut reduced = None;
        for i in 0..n {
            if start.elapsed() >= budget {
                break;
            }
            let lo = i * chunk;
            if lo >= best.len() {
                break;
            }
            let hi = (lo + chunk).min(best.len());
            let candidate: Vec<Op> = best[..lo].iter().chain(&best[hi..]).cloned().collect();
            if candidate.is_empty() {
                continue;
            }
            // A timing-dependent failure (Cyrus) may need a few tries to show again.
            let mut hit = None;
            for _ in 0..tries.max(1) {
                if let Ok(o) = run_ops(backend, setup, &candidate).await
                    && o.kinds().iter().any(|k| kinds.contains(k))
                {
                    hit = Some(o);
                    break;
                }
            }
            if let Some(o) = hit {
                reduced = Some((candidate, o));
                break;
            }
        }
        match reduced {
            Some((candidate, o)) => {
                best = candidate;
                best_outcome = Some(o);
                n = (n - 1).max(2);
            }
            None if n >= best.len() => break,
            None => n = (n * 2).min(best.len()),
        }
    }
    (best, best_outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_lines_of_both_servers_parse() {
        // Dovecot puts UID first; Cyrus may put FLAGS first. The literal is inlined.
        let dovecot = b"* 3 FETCH (UID 17 FLAGS (\\Seen \\Flagged) BODY[HEADER.FIELDS (MESSAGE-ID)] {34}\r\nMessage-ID: <m1.r@model.test>\r\n\r\n)";
        let f = parse_fetch(dovecot).unwrap();
        assert_eq!(
            (f.uid, f.message_id.as_str(), f.seen, f.flagged, f.deleted),
            (17, "m1.r@model.test", true, true, false)
        );
        let cyrus = b"* 1 FETCH (FLAGS (\\Deleted) UID 4 BODY[HEADER.FIELDS (MESSAGE-ID)] {33}\r\nmessage-id: <s2.r@model.test>\r\n\r\n)";
        let f = parse_fetch(cyrus).unwrap();
        assert_eq!(
            (f.uid, f.message_id.as_str(), f.seen, f.deleted),
            (4, "s2.r@model.test", false, true)
        );
        assert!(parse_fetch(b"* 3 EXISTS").is_none());
    }

    #[test]
    fn backends_round_trip_their_names() {
        for b in Backend::ALL {
            assert_eq!(Backend::parse(b.name()), Some(b));
        }
        assert_eq!(Backend::parse("exchange"), None);
    }
}
