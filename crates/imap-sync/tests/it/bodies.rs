//! Bodies: on-demand download and cache, and the sync-time body policies (all, up to N bytes).

use mailsync_imap_sync::{Error, SyncOptions, fetch_body, sync_account};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{BodyPolicy, Role, bodies, mailboxes};
use mailsync_testkit::{Generator, Kind};

use crate::common::*;

#[tokio::test]
async fn fetch_body_on_demand_parses_and_caches() -> anyhow::Result<()> {
    let user = fresh_user("body");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::new(51);
    // Pick a plain, an alternative and a nested message.
    let mut picks = Vec::new();
    for kind in [Kind::Plain, Kind::Alternative, Kind::Nested] {
        let i = (0..400)
            .find(|&i| g.expected(i).kind == kind)
            .expect("kind present");
        picks.push(i);
    }
    append(
        &cfg,
        &user,
        "INBOX",
        picks.iter().map(|&i| g.message(i)).collect(),
    )
    .await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = mailboxes::find_by_role(db.store.conn(), account, Role::Inbox)
        .await?
        .expect("inbox");
    let uv = u32::try_from(inbox.status.uidvalidity.expect("uv"))?;
    for (n, &i) in picks.iter().enumerate() {
        let x = g.expected(i);
        let remote = emails::imap_remote_id(inbox.id, uv, u32::try_from(n + 1)?);
        let e = emails::find_by_remote_id(db.store.conn(), account, &remote)
            .await?
            .expect("email");
        assert!(
            bodies::get(db.store.conn(), e.id).await?.is_none(),
            "no body before asking"
        );
        let parsed = limit(30, fetch_body(&mut conn, &db.store, e.id)).await?;
        assert!(
            parsed.text.as_deref().is_some_and(|t| t.contains(&x.token)),
            "{:?} text",
            x.kind
        );
        assert_eq!(parsed.html.is_some(), x.has_html, "{:?} html", x.kind);
        if x.has_html {
            assert!(parsed.html.as_deref().is_some_and(|h| h.contains(&x.token)));
        }
        assert_eq!(
            parsed.attachments.len(),
            x.attachments.len(),
            "{:?} attachments",
            x.kind
        );
        let cached = bodies::get(db.store.conn(), e.id).await?.expect("cached");
        assert_eq!(cached.text, parsed.text);
        assert_eq!(cached.raw.as_ref().map(Vec::len), Some(x.size));
    }
    // A message gone from the server is a typed NotFound.
    let remote = emails::imap_remote_id(inbox.id, uv, 1);
    let e = emails::find_by_remote_id(db.store.conn(), account, &remote)
        .await?
        .expect("email");
    doveadm(vec![
        "expunge".into(),
        "-u".into(),
        u,
        "mailbox".into(),
        "INBOX".into(),
        "uid".into(),
        "1".into(),
    ])
    .await?;
    let err = limit(30, fetch_body(&mut conn, &db.store, e.id))
        .await
        .expect_err("gone");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn body_policies_during_sync() -> anyhow::Result<()> {
    let user = fresh_user("bpol");
    let cfg = dovecot(&user);
    let g = Generator::new(52);
    let n = 60;
    append(&cfg, &user, "INBOX", (0..n).map(|i| g.message(i)).collect()).await?;
    let limit_bytes: u64 = 8 * 1024;
    for (policy, want) in [
        (BodyPolicy::None, 0usize),
        (BodyPolicy::All, n),
        (
            BodyPolicy::MaxBytes(limit_bytes),
            (0..n)
                .filter(|&i| g.expected(i).size as u64 <= limit_bytes)
                .count(),
        ),
    ] {
        let (db, account) = store().await?;
        let mut conn = connect(&cfg.clone().disable_extension("PREVIEW")).await;
        let opts = SyncOptions::default()
            .with_body_policy(policy)
            .with_batch_size(7);
        let r = limit(60, sync_account(&mut conn, &db.store, account, &opts)).await?;
        assert_eq!(r.totals.added, n as u64);
        let mut with_body = 0;
        let mut with_preview = 0;
        for s in emails::list(db.store.conn(), &EmailFilter::default()).await? {
            if let Some(b) = bodies::get(db.store.conn(), s.email.id).await? {
                with_body += 1;
                assert!(b.text.is_some());
                assert!(
                    policy != BodyPolicy::MaxBytes(limit_bytes)
                        || s.email.size as u64 <= limit_bytes
                );
            }
            if s.email.preview.is_some() {
                with_preview += 1;
            }
        }
        assert_eq!(with_body, want, "{policy:?}");
        // Without server previews, the preview comes from the downloaded body.
        assert_eq!(with_preview, want, "{policy:?}");
        assert!(
            want == 0 || want == n || (want > 0 && want < n),
            "the limit splits the corpus"
        );
    }
    Ok(())
}

/// `fetch_part`: base64 and quoted-printable parts decoded to the exact bytes, in ranges (a
/// part larger than one range), and a part the message does not have is `NotFound` with
/// nothing written.
#[tokio::test]
async fn fetch_part_decodes_exact_bytes_and_rejects_missing_parts() -> anyhow::Result<()> {
    use base64::Engine as _;
    use mailsync_imap_sync::fetch_part;
    let user = fresh_user("part");
    let cfg = dovecot(&user);
    // 3 MiB of varied bytes: more than two 1 MiB ranges once encoded.
    let binary: Vec<u8> = (0u32..3 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&binary);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap_or_default())
        .collect();
    let raw = format!(
        "From: a@example.test\r\nTo: b@example.test\r\nSubject: parts\r\n\
         Message-ID: <parts@example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --B\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --B\r\nContent-Type: text/plain; name=\"q.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =3D=\r\n ok\r\n--B--\r\n",
        lines.join("\r\n")
    );
    append(&cfg, &user, "INBOX", vec![raw.into_bytes()]).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let e = emails::find_by_message_id(db.store.conn(), account, "parts@example.test")
        .await?
        .into_iter()
        .next()
        .expect("synced");
    let atts = emails::attachments(db.store.conn(), e.id).await?;
    let parts: Vec<_> = atts.iter().filter_map(|a| a.part_id.clone()).collect();
    assert_eq!(parts, ["2", "3"], "{atts:#?}");
    let mut out = Vec::new();
    let n = limit(30, fetch_part(&mut conn, &db.store, e.id, "2", &mut out)).await?;
    assert_eq!(n as usize, binary.len());
    assert!(out == binary, "base64 part decoded exactly");
    let mut out = Vec::new();
    limit(30, fetch_part(&mut conn, &db.store, e.id, "3", &mut out)).await?;
    assert_eq!(out, "café = ok".as_bytes());
    for missing in ["7", "2.4", "x"] {
        let mut out = Vec::new();
        let err = limit(
            30,
            fetch_part(&mut conn, &db.store, e.id, missing, &mut out),
        )
        .await;
        assert!(
            matches!(err, Err(Error::NotFound { .. })),
            "part {missing}: {err:?}"
        );
        assert!(out.is_empty());
    }
    Ok(())
}
