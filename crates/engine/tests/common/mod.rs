//! Shared setup of the engine's real-server tests: an IMAP account on the test Dovecot, a
//! fresh user with a mailbox of generated mail, and an engine with that account synced once.
#![allow(dead_code)] // each test file uses part of it

use mailsync_engine::Engine;
use mailsync_store::accounts::{Account, Endpoint, NewAccount};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, BodyPolicy, EmailId, SecretRef, Security, Store, emails};
use mailsync_testkit::{FaultProxy, Generator, ImapClient, Servers, imap_append_bulk};

pub type E = Box<dyn std::error::Error>;

/// An IMAP account on the test Dovecot (plaintext to loopback), password by command.
pub fn dovecot_account(servers: &Servers, user: &str, pw: &str) -> NewAccount {
    NewAccount {
        name: format!("imap-{user}"),
        kind: AccountKind::Imap,
        email: format!("{user}@example.test"),
        display_name: None,
        username: user.into(),
        secret_ref: SecretRef::Command(format!("printf %s {pw}")),
        imap: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: servers.dovecot_imap_port(),
            security: Security::Plain,
        }),
        smtp: None,
        jmap_session_url: None,
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::None,
    }
}

/// Another client on a Dovecot user's mail.
pub fn dovecot_client(
    servers: &Servers,
    user: &mailsync_testkit::Account,
) -> Result<ImapClient, E> {
    Ok(ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
    )?)
}

/// [`dovecot_account`], reaching Dovecot through a new [`FaultProxy`] (returned with it).
pub fn dovecot_account_via_proxy(
    servers: &Servers,
    user: &str,
    pw: &str,
) -> Result<(NewAccount, FaultProxy), E> {
    let proxy = FaultProxy::start(servers.dovecot_host(), servers.dovecot_imap_port())?;
    let mut new = dovecot_account(servers, user, pw);
    new.imap = Some(Endpoint {
        host: proxy.host().into(),
        port: proxy.port(),
        security: Security::Plain,
    });
    Ok((new, proxy))
}

/// A JMAP account for `user` at `session_url`, password `testpw` by command.
pub fn jmap_account(user: &str, session_url: String) -> NewAccount {
    NewAccount {
        name: format!("jmap-{user}"),
        kind: AccountKind::Jmap,
        email: format!("{user}@example.test"),
        display_name: None,
        username: user.into(),
        secret_ref: SecretRef::Command("printf %s testpw".into()),
        imap: None,
        smtp: None,
        jmap_session_url: Some(session_url),
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::None,
    }
}

/// A fresh Dovecot user with `mailbox` (created unless INBOX) holding messages `range` of
/// `g`, and an engine on a temporary SQLite database with the account added and synced once.
pub struct Setup {
    pub servers: Servers,
    pub user: mailsync_testkit::Account,
    pub db: TempDb,
    pub engine: Engine,
    pub account: Account,
}

impl Setup {
    pub async fn dovecot(
        tag: &str,
        mailbox: &str,
        g: &Generator,
        range: std::ops::Range<usize>,
    ) -> Result<Setup, E> {
        let servers = Servers::load()?;
        let user = servers.fresh_dovecot_user(tag);
        let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
        if mailbox != "INBOX" {
            let mut other = ImapClient::login(host, port, &user.user, &user.password)?;
            other.create_mailbox(mailbox)?;
            other.logout();
        }
        let n = range.len();
        if n > 0 {
            imap_append_bulk(
                host,
                port,
                &user.user,
                &user.password,
                mailbox,
                g.messages(range),
                n,
            )?;
        }
        let db = TempDb::sqlite().await?;
        let engine = Engine::new(db.store.clone());
        let account = engine
            .add_account(dovecot_account(&servers, &user.user, &user.password))
            .await?;
        engine.sync_once(account.id).await?;
        Ok(Setup {
            servers,
            user,
            db,
            engine,
            account,
        })
    }

    /// Another client on the same account.
    pub fn other(&self) -> Result<ImapClient, E> {
        Ok(ImapClient::login(
            self.servers.dovecot_host(),
            self.servers.dovecot_imap_port(),
            &self.user.user,
            &self.user.password,
        )?)
    }

    /// Appends messages `range` of `g` to `mailbox` as another client.
    pub fn append(
        &self,
        mailbox: &str,
        g: &Generator,
        range: std::ops::Range<usize>,
    ) -> Result<(), E> {
        let n = range.len();
        imap_append_bulk(
            self.servers.dovecot_host(),
            self.servers.dovecot_imap_port(),
            &self.user.user,
            &self.user.password,
            mailbox,
            g.messages(range),
            n,
        )?;
        Ok(())
    }
}

/// The Message-IDs of messages `range` of `g`.
pub fn mids(g: &Generator, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| g.expected(i).message_id.unwrap_or_default())
        .collect()
}

/// The local email of each Message-ID (the first, if several).
pub async fn ids_of(store: &Store, account: &Account, mids: &[String]) -> Result<Vec<EmailId>, E> {
    let mut ids = Vec::with_capacity(mids.len());
    for mid in mids {
        let e = emails::find_by_message_id(store.conn(), account.id, mid).await?;
        ids.push(
            e.first()
                .map(|e| e.id)
                .ok_or_else(|| format!("{mid} not synced"))?,
        );
    }
    Ok(ids)
}

/// A Cyrus pool user over JMAP: its `boxes` emptied first (pool users persist between runs),
/// `n` fresh messages in INBOX (fresh Message-IDs each run: Cyrus dedupes identical bytes),
/// and an engine with the account added and synced once; `other` is an IMAP client on the same
/// mailbox store.
pub struct CyrusJmap {
    pub servers: Servers,
    pub who: mailsync_testkit::Account,
    pub g: Generator,
    pub db: TempDb,
    pub engine: Engine,
    pub account: Account,
    pub other: ImapClient,
}

/// A fresh seed per run: Cyrus keeps its mail between runs, and new
/// Message-IDs keep one run's messages from meeting another's.
pub fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// The first seed from now whose messages `0..n` all have a Message-ID (the generator leaves
/// one out of about a hundred without), since the tests find their messages by it.
pub fn seed_with_message_ids(n: usize) -> u64 {
    (time_seed()..)
        .find(|&s| {
            let g = Generator::new(s);
            (0..n).all(|i| g.expected(i).message_id.is_some())
        })
        .unwrap_or(1)
}

impl CyrusJmap {
    pub async fn setup(user: &str, boxes: &[&str], n: usize) -> Result<CyrusJmap, E> {
        Self::setup_seeded(user, boxes, n, seed_with_message_ids(n)).await
    }

    /// As [`CyrusJmap::setup`] with the generator's seed given (a test that
    /// needs a particular mix picks a seed that has it).
    pub async fn setup_seeded(
        user: &str,
        boxes: &[&str],
        n: usize,
        seed: u64,
    ) -> Result<CyrusJmap, E> {
        let servers = Servers::load()?;
        let who = mailsync_testkit::Account::new(user, mailsync_testkit::CYRUS_POOL_PASSWORD);
        let (host, port) = (servers.cyrus_host(), servers.cyrus_imap_port());
        let mut other = ImapClient::login(host, port, &who.user, &who.password)?;
        for b in boxes {
            if other.select(b)? > 0 {
                other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
                other.command("EXPUNGE")?;
            }
        }
        let g = Generator::new(seed);
        imap_append_bulk(
            host,
            port,
            &who.user,
            &who.password,
            "INBOX",
            g.messages(0..n),
            n,
        )?;
        let db = TempDb::sqlite().await?;
        let engine = Engine::new(db.store.clone());
        let account = engine
            .add_account(NewAccount {
                name: format!("jmap-{user}"),
                kind: AccountKind::Jmap,
                email: format!("{user}@example.test"),
                display_name: None,
                username: who.user.clone(),
                secret_ref: SecretRef::Command(format!("printf %s {}", who.password)),
                imap: None,
                smtp: None,
                jmap_session_url: Some(servers.jmap_session_url().into()),
                ca_file: None,
                allow_plaintext: false,
                body_policy: BodyPolicy::None,
            })
            .await?;
        engine.sync_once(account.id).await?;
        Ok(CyrusJmap {
            servers,
            who,
            g,
            db,
            engine,
            account,
            other,
        })
    }
}

/// The UID of the message with this Message-ID in the mailbox `imap` has selected.
pub fn uid_by_message_id(imap: &mut ImapClient, mid: &str) -> Result<String, E> {
    let r = imap.command(&format!("UID SEARCH HEADER Message-ID \"{mid}\""))?;
    r.lines()
        .find_map(|l| l.strip_prefix("* SEARCH ").map(|s| s.trim().to_owned()))
        .ok_or_else(|| format!("{mid} not found").into())
}

/// Subscribes, starts the account's worker and waits (at most 20 s) for its first cycle;
/// returns the subscription.
pub async fn start_synced(
    engine: &Engine,
    store: &Store,
    account: mailsync_store::AccountId,
) -> Result<mailsync_engine::Events, E> {
    use mailsync_engine::EngineEvent;
    let mut events = engine.subscribe();
    engine.start(mailsync_store::accounts::get(store.conn(), account).await?);
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), events.recv()).await? {
            Some(EngineEvent::Synced { .. }) => return Ok(events),
            Some(EngineEvent::Failed { message, .. }) => return Err(message.into()),
            _ => {}
        }
    }
}
