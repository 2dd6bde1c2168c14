//! The JMAP flush is guarded by `ifInState` on the real Cyrus: another client (IMAP on the same
//! Cyrus user) changes a flag between the engine's sync and its flush; Cyrus answers the
//! guarded `Email/set` with `stateMismatch`, the engine resyncs and sends the queued change
//! again in the same cycle, and neither change is lost.

use mailsync_engine::Engine;
use mailsync_jmap_client::{Client, Credentials, Email, MethodErrorType, Patch, Set, State};
use mailsync_outbox::Change;
use mailsync_store::accounts::NewAccount;
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::emails;
use mailsync_store::{AccountKind, BodyPolicy, SecretRef};
use mailsync_testkit::{Generator, ImapClient, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;
type E = Box<dyn std::error::Error>;

fn uid_of(imap: &mut ImapClient, mid: &str) -> Result<String, E> {
    let r = imap.command(&format!("UID SEARCH HEADER Message-ID \"{mid}\""))?;
    r.lines()
        .find_map(|l| l.strip_prefix("* SEARCH ").map(|s| s.trim().to_owned()))
        .ok_or_else(|| format!("{mid} not found").into())
}

fn flags_of(imap: &mut ImapClient, uid: &str) -> Result<String, E> {
    Ok(imap
        .command(&format!("UID FETCH {uid} (FLAGS)"))?
        .lines()
        .collect::<Vec<_>>()
        .join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_flag_change_makes_the_guarded_set_resync_and_retry() -> R {
    let servers = Servers::load()?;
    let who = mailsync_testkit::Account::new("cl6", mailsync_testkit::CYRUS_POOL_PASSWORD);
    let (host, port) = (servers.cyrus_host(), servers.cyrus_imap_port());
    // The pool user persists between runs: start from an empty INBOX.
    let mut other = ImapClient::login(host, port, &who.user, &who.password)?;
    if other.select("INBOX")? > 0 {
        other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        other.command("EXPUNGE")?;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(61);
    let g = Generator::new(seed);
    imap_append_bulk(
        host,
        port,
        &who.user,
        &who.password,
        "INBOX",
        g.messages(0..2),
        2,
    )?;
    let mids: Vec<String> = (0..2)
        .map(|i| g.expected(i).message_id.unwrap_or_default())
        .collect();

    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let acc = engine
        .add_account(NewAccount {
            name: "guard-jmap".into(),
            kind: AccountKind::Jmap,
            email: format!("{}@example.test", who.user),
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
    engine.sync_once(acc.id).await?;
    let c = db.store.conn();
    let ours = emails::find_by_message_id(c, acc.id, &mids[0])
        .await?
        .into_iter()
        .next()
        .ok_or("synced")?;
    let synced = checkpoints::get(c, acc.id, &Scope::jmap("Email"))
        .await?
        .and_then(|c| c.state)
        .ok_or("Email checkpoint")?;

    // The other client flags the second message after our sync.
    other.select("INBOX")?;
    let u0 = uid_of(&mut other, &mids[0])?;
    let u1 = uid_of(&mut other, &mids[1])?;
    other.command(&format!("UID STORE {u1} +FLAGS.SILENT (\\Flagged)"))?;

    // Cyrus enforces the guard: an Email/set from the synced state is refused now.
    let client = Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .allow_insecure_http(true)
        .connect(servers.jmap_session_url())
        .await?;
    let jacc = client.mail_account_id()?;
    let mut probe = Set::<Email>::new(&jacc).if_in_state(&State::new(synced.clone()));
    probe.update(
        &mailsync_jmap_client::EmailId::new(ours.remote_id.clone()),
        Patch::new().keyword("$x-probe", false),
    );
    let refused = client.call(probe).await.expect_err("stale ifInState");
    assert_eq!(
        refused.method_error_type(),
        Some(MethodErrorType::StateMismatch)
    );

    // Our queued change goes out in one cycle all the same, and theirs stays.
    engine.enqueue(acc.id, Change::seen(ours.id, true)).await?;
    let counts = engine.sync_once(acc.id).await?;
    assert_eq!(counts.changes_flushed, 1, "{counts:?}");
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    assert!(engine.outbox().failed(acc.id).await?.is_empty());
    let f0 = flags_of(&mut other, &u0)?;
    let f1 = flags_of(&mut other, &u1)?;
    assert!(f0.contains("\\Seen"), "ours landed: {f0}");
    assert!(f1.contains("\\Flagged"), "theirs kept: {f1}");
    let theirs = emails::find_by_message_id(c, acc.id, &mids[1])
        .await?
        .into_iter()
        .next()
        .ok_or("synced")?;
    assert!(theirs.flags.flagged, "the database saw theirs");
    let ours = emails::get(c, ours.id).await?;
    assert!(ours.flags.seen);
    other.logout();
    db.cleanup().await?;
    Ok(())
}
