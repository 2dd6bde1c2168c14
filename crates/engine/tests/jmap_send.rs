//! Sending from a JMAP account on the real Cyrus: one request creates the draft and submits it,
//! the SMTP sink receives it once (Bcc in the envelope only), exactly one copy lands in Sent
//! without `$draft`, and a retry after a possible earlier submission sends nothing twice.

use std::time::Duration;

use mailsync_engine::compose::{Draft, DraftAttachment};
use mailsync_engine::jmap_send::{self, SendOutcome};
use mailsync_engine::jmap_sync;
use mailsync_jmap_client::{Client, Credentials};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::emails;
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, Address, BodyPolicy, Role, SecretRef, mailboxes};
use mailsync_testkit::{
    Account, Servers, accounts::ENGINE, sink_messages, unique_name, wait_for_sink_message,
};

type R = Result<(), Box<dyn std::error::Error>>;

fn addr(e: &str) -> Address {
    Address {
        name: None,
        email: e.into(),
    }
}

async fn run(db: &TempDb) -> R {
    let servers = Servers::load()?;
    let who = Account::cyrus_pool(ENGINE, 2);
    let c = Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .connect(servers.jmap_session_url())
        .await?;
    let jacc = c.mail_account_id()?;
    let store = &db.store;
    let account = accounts::create(
        store.conn(),
        NewAccount {
            name: who.user.clone(),
            kind: AccountKind::Jmap,
            email: format!("{}@example.test", who.user),
            display_name: Some("Engine Two".into()),
            username: who.user.clone(),
            secret_ref: SecretRef::Env("UNUSED".into()),
            imap: None,
            smtp: None,
            jmap_session_url: Some(servers.jmap_session_url().into()),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?
    .id;
    jmap_sync::sync_mailboxes(&c, store, account, &jacc).await?;

    let message_id = format!("{}@mailsync.test", unique_name("jsend"));
    let draft = Draft {
        message_id: message_id.clone(),
        from: Address {
            name: Some("Engine Two".into()),
            email: format!("{}@example.test", who.user),
        },
        to: vec![addr("bob@example.test")],
        cc: vec![],
        bcc: vec![addr("hidden@example.test")],
        subject: format!("JMAP send {message_id}"),
        text: "Hello over JMAP.\n".into(),
        html: Some("<p>Hello over <b>JMAP</b>.</p>".into()),
        attachments: vec![DraftAttachment {
            file_name: "notes.txt".into(),
            mime_type: "text/plain".into(),
            content: b"attached notes\n".to_vec(),
        }],
        ..Default::default()
    };
    let out = jmap_send::send(&c, store, account, &draft, None).await?;
    let SendOutcome::Submitted { email_id } = out else {
        return Err(format!("unexpected outcome {out:?}").into());
    };
    let mid = message_id.clone();
    let got = wait_for_sink_message(servers.smtp_sink_dir(), Duration::from_secs(15), |m| {
        m.message_id().as_deref() == Some(mid.as_str())
    })?;
    let mut rcpt = got.rcpt_tos.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["bob@example.test", "hidden@example.test"]);
    assert!(got.header("Bcc").is_none(), "Bcc must not be a header");
    assert!(String::from_utf8_lossy(&got.raw).contains("notes.txt"));

    // The copy is in Sent, not Drafts, without $draft.
    jmap_sync::sync_emails(&c, store, account, &jacc, BodyPolicy::None).await?;
    let local = emails::find_by_remote_id(store.conn(), account, &email_id)
        .await?
        .ok_or("synced copy")?;
    assert!(!local.flags.draft, "the sent copy lost $draft");
    let sent = mailboxes::find_by_role(store.conn(), account, Role::Sent)
        .await?
        .ok_or("sent")?;
    let members = emails::memberships(store.conn(), local.id).await?;
    assert_eq!(
        members.iter().map(|m| m.mailbox_id).collect::<Vec<_>>(),
        vec![sent.id]
    );
    assert_eq!(
        emails::find_by_message_id(store.conn(), account, &message_id)
            .await?
            .len(),
        1
    );

    // A retry of the same message after a possible submission sends nothing.
    let again = jmap_send::send(&c, store, account, &draft, None).await?;
    assert_eq!(
        again,
        SendOutcome::AlreadySent {
            email_id: email_id.clone()
        }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copies = sink_messages(servers.smtp_sink_dir())?
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some(message_id.as_str()))
        .count();
    assert_eq!(copies, 1, "delivered exactly once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_send_once_into_sent() -> R {
    let db = TempDb::sqlite().await?;
    let res = tokio::time::timeout(Duration::from_secs(60), run(&db)).await;
    db.cleanup().await?;
    res.map_err(|_| "timed out")?
}
