//! The JMAP flush is guarded by `ifInState` on the real Cyrus: another client (IMAP on the same
//! Cyrus user) changes a flag between the engine's sync and its flush; Cyrus answers the
//! guarded `Email/set` with `stateMismatch`, the engine resyncs and sends the queued change
//! again in the same cycle, and neither change is lost.

mod common;

use common::{CyrusJmap, mids, uid_by_message_id};
use mailsync_jmap_client::{Client, Credentials, Email, MethodErrorType, Patch, Set, State};
use mailsync_outbox::Change;
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::emails;
use mailsync_testkit::ImapClient;

type R = Result<(), Box<dyn std::error::Error>>;
type E = Box<dyn std::error::Error>;

fn flags_of(imap: &mut ImapClient, uid: &str) -> Result<String, E> {
    Ok(imap
        .command(&format!("UID FETCH {uid} (FLAGS)"))?
        .lines()
        .collect::<Vec<_>>()
        .join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_flag_change_makes_the_guarded_set_resync_and_retry() -> R {
    let t = CyrusJmap::setup("cl6", &["INBOX"], 2).await?;
    let (servers, who, db, engine, acc) = (&t.servers, &t.who, &t.db, &t.engine, &t.account);
    let mut other = t.other;
    let mids = mids(&t.g, 0..2);
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
    let u0 = uid_by_message_id(&mut other, &mids[0])?;
    let u1 = uid_by_message_id(&mut other, &mids[1])?;
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
    t.db.cleanup().await?;
    Ok(())
}
