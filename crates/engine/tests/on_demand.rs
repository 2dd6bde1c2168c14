//! On-demand downloads through the engine on both protocols: every attachment of generated
//! mail of varied MIME shapes (base64, quoted-printable, inline images, forwarded messages)
//! saved with the decoded size the generator recorded, bodies and parts over ONE kept
//! connection per account, a part that does not exist rejected with nothing written; and
//! `edit_account`: new settings stored with the account's rows kept, a failing edit changing
//! nothing.

mod common;

use std::path::PathBuf;

use common::{CyrusJmap, E, Setup, ids_of, mids};
use mailsync_engine::Engine;
use mailsync_store::accounts::{self, Account};
use mailsync_store::{BodyPolicy, EmailId, SecretRef, Store, emails};
use mailsync_testkit::Generator;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(mailsync_testkit::unique_name(tag));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Saves every attachment of messages `range` of `g` and checks each decoded size against
/// the generator's; fetches the body of each too. Returns how many parts were saved.
async fn save_all(
    engine: &Engine,
    store: &Store,
    account: &Account,
    g: &Generator,
    range: std::ops::Range<usize>,
    out: &std::path::Path,
) -> Result<usize, E> {
    let mut saved = 0;
    for i in range {
        let want = g.expected(i);
        // Some generated messages have no Message-ID to find them by.
        let Some(mid) = want.message_id.clone() else {
            continue;
        };
        let id = ids_of(store, account, &[mid]).await?[0];
        let list = emails::attachments(store.conn(), id).await?;
        assert_eq!(
            list.len(),
            want.attachments.len(),
            "message {i}: attachments {list:#?} vs {:#?}",
            want.attachments
        );
        for (n, (a, w)) in list.iter().zip(&want.attachments).enumerate() {
            let part = a
                .part_id
                .clone()
                .or(a.blob_id.clone())
                .ok_or("no part id")?;
            let dest = out.join(format!("{i}-{n}"));
            let s = engine.save_attachment(id, &part, &dest).await?;
            let len = std::fs::metadata(&dest)?.len();
            assert_eq!(s.bytes, len);
            assert_eq!(
                len as usize, w.size,
                "message {i} part {part} ({}): decoded size",
                a.mime_type
            );
            saved += 1;
        }
        let body = engine.body(id).await?;
        assert!(
            body.text
                .as_deref()
                .unwrap_or_default()
                .contains(&want.token)
                || body
                    .html
                    .as_deref()
                    .unwrap_or_default()
                    .contains(&want.token),
            "message {i}: body has its token"
        );
    }
    Ok(saved)
}

/// A part that is not in the email's attachment list: an error, no file.
async fn missing_part_changes_nothing(engine: &Engine, id: EmailId, out: &std::path::Path) {
    let dest = out.join("missing");
    let err = engine.save_attachment(id, "97.3", &dest).await;
    assert!(err.is_err(), "{err:?}");
    assert!(!dest.exists());
    let err = engine.save_attachment(EmailId(i64::MAX), "1", &dest).await;
    assert!(err.is_err(), "{err:?}");
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_parts_and_bodies_over_one_connection_and_account_edit() -> Result<(), E> {
    let seed = 0x150d_0001;
    let g = Generator::new(seed);
    let s = Setup::dovecot("i15od", "INBOX", &g, 0..61).await?;
    let out = scratch("i15od");
    s.engine.set_parts_dir(out.join("cache"));
    let t = std::time::Instant::now();
    let saved = save_all(&s.engine, &s.db.store, &s.account, &g, 0..60, &out).await?;
    eprintln!("imap: {saved} parts and 60 bodies in {:?}", t.elapsed());
    assert!(saved >= 10, "the generator's mix has attachments: {saved}");
    assert_eq!(
        s.engine.on_demand_connections(),
        1,
        "bodies and parts reuse one connection"
    );
    let ids = ids_of(&s.db.store, &s.account, &mids(&g, 0..1)).await?;
    missing_part_changes_nothing(&s.engine, ids[0], &out).await;
    assert_eq!(
        s.engine.on_demand_connections(),
        1,
        "kept after a missing part"
    );

    // Account edit: a new secret reference and body policy; rows kept.
    let rows = emails::count(s.db.store.conn(), s.account.id).await?;
    let mut edited = s.account.clone();
    edited.body_policy = BodyPolicy::All;
    edited.secret_ref = SecretRef::Command(format!("printf '%s\\n' {}", s.user.password));
    let stored = s.engine.edit_account(edited.clone()).await?;
    assert_eq!(stored.secret_ref, edited.secret_ref);
    assert_eq!(stored.body_policy, BodyPolicy::All);
    assert_eq!(
        accounts::get(s.db.store.conn(), s.account.id)
            .await?
            .secret_ref,
        edited.secret_ref
    );
    assert_eq!(emails::count(s.db.store.conn(), s.account.id).await?, rows);
    // The on-demand connection is reopened with the new settings (message 60's body was
    // never fetched).
    let last = ids_of(&s.db.store, &s.account, &mids(&g, 60..61)).await?;
    s.engine.body(last[0]).await?;
    assert_eq!(
        s.engine.on_demand_connections(),
        2,
        "reopened after the edit"
    );

    // A failing edit (wrong password) changes nothing.
    let before = accounts::get(s.db.store.conn(), s.account.id).await?;
    let mut bad = before.clone();
    bad.secret_ref = SecretRef::Command("printf %s not-the-password".into());
    bad.body_policy = BodyPolicy::None;
    let err = s.engine.edit_account(bad).await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(
        accounts::get(s.db.store.conn(), s.account.id).await?,
        before
    );
    assert_eq!(emails::count(s.db.store.conn(), s.account.id).await?, rows);
    // Name and kind stay.
    let mut renamed = before.clone();
    renamed.name = "other".into();
    assert!(s.engine.edit_account(renamed).await.is_err());
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_blobs_and_bodies_over_one_connection() -> Result<(), E> {
    let user = mailsync_testkit::accounts::ATTACH.user(3);
    // The seed changes per run; take the first one from now whose 20
    // messages carry at least 5 attachments to save (most do).
    let attachments = |seed: u64| -> usize {
        let g = Generator::new(seed);
        (0..20)
            .map(|i| g.expected(i))
            .filter(|w| w.message_id.is_some())
            .map(|w| w.attachments.len())
            .sum()
    };
    let seed = (common::time_seed()..)
        .find(|&s| attachments(s) >= 5)
        .ok_or("no seed")?;
    let c = CyrusJmap::setup_seeded(&user, &["INBOX"], 20, seed).await?;
    let out = scratch("i15odj");
    c.engine.set_parts_dir(out.join("cache"));
    let t = std::time::Instant::now();
    let saved = save_all(&c.engine, &c.db.store, &c.account, &c.g, 0..20, &out).await?;
    eprintln!("jmap: {saved} parts and 20 bodies in {:?}", t.elapsed());
    assert_eq!(saved, attachments(seed), "every attachment saved");
    assert_eq!(c.engine.on_demand_connections(), 1);
    let ids = ids_of(&c.db.store, &c.account, &mids(&c.g, 0..1)).await?;
    missing_part_changes_nothing(&c.engine, ids[0], &out).await;
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

/// A message with a text part and one attachment `data` named `name` (part 2; mail-builder
/// encodes it in base64).
fn with_attachment(mid: &str, name: &str, data: &[u8]) -> Vec<u8> {
    mail_builder::MessageBuilder::new()
        .from("a@example.test")
        .to("b@example.test")
        .subject(name)
        .message_id(mid)
        .text_body(format!("see {name}"))
        .attachment("application/octet-stream", name, data.to_vec())
        .write_to_vec()
        .expect("message")
}

/// Through a proxy that counts connections and cuts one mid-download: a cut download leaves
/// neither the output nor a cache file; the next save reconnects once and writes the exact
/// bytes, and later bodies and parts reuse that connection (counted at the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_cut_download_writes_nothing_and_the_next_one_reconnects() -> Result<(), E> {
    use mailsync_testkit::{Cut, FaultProxy, Servers, imap_append_bulk};
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i15cut");
    let data: Vec<u8> = (0u32..2 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let tag = mailsync_testkit::unique_name("cut");
    let (m1, m2) = (format!("one.{tag}@t"), format!("two.{tag}@t"));
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        [
            with_attachment(&m1, "one.bin", &data),
            with_attachment(&m2, "two.bin", &data),
        ]
        .iter(),
        2,
    )?;
    let proxy = FaultProxy::start(servers.dovecot_host(), servers.dovecot_imap_port())?;
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let out = scratch("i15cut");
    engine.set_parts_dir(out.join("cache"));
    let mut new = common::dovecot_account(&servers, &user.user, &user.password);
    if let Some(ep) = new.imap.as_mut() {
        ep.port = proxy.port();
    }
    let account = engine.add_account(new).await?;
    engine.sync_once(account.id).await?;
    let before = proxy.connections();
    let ids = ids_of(&db.store, &account, &[m1, m2]).await?;

    // The proxy cuts the next connection it opens: the on-demand one, mid-download.
    proxy.arm(Cut::after_client_sends(b"BODY.PEEK[2]<", 300_000));
    let err = engine.save_attachment(ids[0], "2", &out.join("one")).await;
    assert!(err.is_err(), "cut mid-download: {err:?}");
    assert_eq!(proxy.cuts(), 1);
    assert!(!out.join("one").exists(), "no output");
    let cache = out.join("cache").join(account.id.to_string());
    let cached = std::fs::read_dir(&cache).map_or(0, |d| d.count());
    assert_eq!(cached, 0, "no cache file from a cut download");
    assert!(
        !std::fs::read_dir(&out)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("partial")),
        "no temporary output left"
    );

    // The next save reconnects once; then bodies and parts share that connection.
    engine
        .save_attachment(ids[0], "2", &out.join("one"))
        .await?;
    assert!(std::fs::read(out.join("one"))? == data);
    engine.body(ids[0]).await?;
    engine
        .save_attachment(ids[1], "2", &out.join("two"))
        .await?;
    engine.body(ids[1]).await?;
    assert!(std::fs::read(out.join("two"))? == data);
    assert_eq!(
        proxy.connections(),
        before + 2,
        "the cut connection and one more for everything after it"
    );
    assert_eq!(engine.on_demand_connections(), 2);
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
