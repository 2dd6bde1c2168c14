//! `mailsync attachment list|save` end to end on both protocols: Dovecot over IMAP (part
//! downloaded with partial `BODY.PEEK[part]` fetches, decoded from base64 / quoted-printable)
//! and Cyrus over JMAP (blob download), against the bytes the test generated: byte-identical
//! files, the cache, bad input (unknown part or email, unwritable output), and a 40 MB
//! attachment saved with the CLI's peak RSS (VmHWM) measured.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, PW_VAR, R, deliver, unique};
use mailsync_testkit::Servers;
use serde_json::Value;

/// Size of the large attachment.
const LARGE: usize = 40 << 20;

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Base64 in lines of 76, as mailers write it.
fn base64_lines(data: &[u8]) -> String {
    let b64 = mailsync_testkit::base64(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 38);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// A message with a text body and attachments (name, type, encoding, encoded content).
fn message(subject: &str, parts: &[(&str, &str, &str, String)]) -> Vec<u8> {
    let mid = format!("{}@att.test", mailsync_testkit::unique_name("m"));
    let mut m = format!(
        "From: Sender <sender@example.test>\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\
         Date: {}\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"xx-b\"\r\n\r\n\
         --xx-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    for (name, mime, enc, content) in parts {
        m.push_str(&format!(
            "--xx-b\r\nContent-Type: {mime}; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: {enc}\r\n\r\n{content}"
        ));
        if !content.ends_with("\r\n") {
            m.push_str("\r\n");
        }
    }
    m.push_str("--xx-b--\r\n");
    m.into_bytes()
}

/// What the test generated: the small message's attachments and the large one.
struct Fixture {
    small_subject: String,
    large_subject: String,
    binary: Vec<u8>,
    qp_text: Vec<u8>,
    large: Vec<u8>,
    messages: Vec<Vec<u8>>,
}

fn fixture(tag: &str) -> Fixture {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    let binary = noise(seed, 300_001);
    // Quoted-printable with an escape, a soft line break and a long line.
    let qp_text = format!("caf\u{e9} = 1\r\n{}\r\nend\r\n", "x".repeat(100)).into_bytes();
    let qp_encoded = format!("caf=C3=A9 =3D 1\r\n{}=\r\n{}\r\nend\r\n", "x".repeat(70), "x".repeat(30));
    let large = noise(seed ^ 0xdead_beef, LARGE);
    let small_subject = unique(&format!("{tag}-small"));
    let large_subject = unique(&format!("{tag}-large"));
    let messages = vec![
        message(
            &small_subject,
            &[
                ("data.bin", "application/octet-stream", "base64", base64_lines(&binary)),
                ("notes.txt", "text/plain", "quoted-printable", qp_encoded),
            ],
        ),
        message(
            &large_subject,
            &[("big.bin", "application/octet-stream", "base64", base64_lines(&large))],
        ),
    ];
    Fixture {
        small_subject,
        large_subject,
        binary,
        qp_text,
        large,
        messages,
    }
}

/// `attachment list ID --json`.
fn list(env: &Env, id: i64) -> Vec<Value> {
    env.run(&["attachment", "list", &id.to_string(), "--json"])
        .ok()
        .json_lines()
}

/// The `part` of the attachment named `name`.
fn part_named(list: &[Value], name: &str) -> String {
    let a = list
        .iter()
        .find(|a| a["file_name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list:#?}"));
    a["part"].as_str().expect("part").to_owned()
}

/// Runs the binary itself (not through `timeout`, so the pid is mailsync's) and samples its
/// peak RSS (VmHWM, kB) from /proc until it exits; the high-water mark only grows, so the
/// last sample misses at most the final few milliseconds.
fn run_measured(env: &Env, args: &[&str]) -> Result<(i32, u64), Box<dyn std::error::Error>> {
    let mut child = env
        .daemon(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let start = Instant::now();
    let mut hwm = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            hwm = hwm.max(kb);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            return Err("mailsync did not finish in 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    assert!(status.success(), "mailsync {args:?}: {status}: {err}");
    Ok((status.code().unwrap_or(-1), hwm))
}

fn same_file(path: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    assert_eq!(got.len(), want.len(), "{what}: size");
    assert!(got == want, "{what}: bytes differ");
}

/// Every check on one synced account: listing, byte-identical saves (small, QP, cached,
/// large with peak RSS), and bad input changing nothing.
fn check_account(env: &Env, f: &Fixture, proto: &str) -> R {
    let small = env
        .email_by_subject(&f.small_subject)
        .ok_or("small message synced")?["id"]
        .as_i64()
        .ok_or("id")?;
    let large = env
        .email_by_subject(&f.large_subject)
        .ok_or("large message synced")?["id"]
        .as_i64()
        .ok_or("id")?;
    let atts = list(env, small);
    assert_eq!(atts.len(), 2, "{proto}: two attachments: {atts:#?}");
    assert!(
        atts.iter()
            .any(|a| a["file_name"] == "data.bin" && a["mime_type"] == "application/octet-stream"),
        "{proto}: {atts:#?}"
    );
    let text = env.run(&["attachment", "list", &small.to_string()]).ok();
    assert!(
        text.stdout.contains("data.bin") && text.stdout.contains("notes.txt"),
        "{text:#?}"
    );
    let bin_part = part_named(&atts, "data.bin");
    let qp_part = part_named(&atts, "notes.txt");

    // Byte-identical, first downloaded then from the cache.
    let out = env.path(&format!("{proto}-data.bin"));
    let o = env
        .run(&["attachment", "save", &small.to_string(), &bin_part, "-o", out.to_str().ok_or("path")?])
        .ok();
    assert!(!o.stdout.contains("cached"), "{o:#?}");
    same_file(&out, &f.binary, &format!("{proto} base64 part"));
    let again = env.path(&format!("{proto}-data2.bin"));
    let o = env
        .run(&["attachment", "save", &small.to_string(), &bin_part, "-o", again.to_str().ok_or("path")?])
        .ok();
    assert!(o.stdout.contains("cached"), "second save from the cache: {o:#?}");
    same_file(&again, &f.binary, &format!("{proto} cached part"));
    // Without -o: the attachment's own name, in the current directory.
    let o = env.run_with(&["attachment", "save", &small.to_string(), &qp_part], |c| {
        c.current_dir(env.dir.path());
    });
    let o = o.ok();
    assert!(o.stdout.contains("notes.txt"), "{o:#?}");
    same_file(&env.path("notes.txt"), &f.qp_text, &format!("{proto} quoted-printable part"));

    // Bad input: one line, exit code, nothing written.
    let missing = env.path(&format!("{proto}-missing.bin"));
    env.run(&["attachment", "save", &small.to_string(), "9", "-o", missing.to_str().ok_or("path")?])
        .fails(3);
    assert!(!missing.exists());
    env.run(&["attachment", "save", "99999999", "1", "-o", missing.to_str().ok_or("path")?])
        .fails(3);
    env.run(&["attachment", "list", "99999999"]).fails(3);
    let unwritable = env.path("no-such-dir/x.bin");
    let cache_before = cache_files(env);
    let o = env
        .run(&["attachment", "save", &large.to_string(), &part_named(&list(env, large), "big.bin"), "-o", unwritable.to_str().ok_or("path")?])
        .fails(1);
    assert!(o.stderr.contains("no-such-dir"), "{o:#?}");
    assert_eq!(cache_files(env), cache_before, "nothing downloaded for an unwritable output");

    // The large one: byte-identical, and peak RSS far below its size. The baseline is the
    // same command for the small attachment from the cache.
    let big_part = part_named(&list(env, large), "big.bin");
    let big_out = env.path(&format!("{proto}-big.bin"));
    let (_, base_kb) = run_measured(
        env,
        &["attachment", "save", &small.to_string(), &bin_part, "-o", again.to_str().ok_or("path")?],
    )?;
    let t = Instant::now();
    let (_, big_kb) = run_measured(
        env,
        &["attachment", "save", &large.to_string(), &big_part, "-o", big_out.to_str().ok_or("path")?],
    )?;
    let took = t.elapsed();
    same_file(&big_out, &f.large, &format!("{proto} 40 MB part"));
    eprintln!(
        "{proto}: 40 MB attachment saved in {took:?}; peak RSS {big_kb} kB (baseline {base_kb} kB)"
    );
    assert!(
        big_kb < base_kb + (LARGE as u64 / 1024) / 2,
        "{proto}: peak RSS grew by {} kB for a {} kB attachment",
        big_kb.saturating_sub(base_kb),
        LARGE / 1024
    );
    Ok(())
}

/// Files in the parts cache (beside the database).
fn cache_files(env: &Env) -> usize {
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { count(&p) } else { 1 }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&env.path("x.db.parts"))
}

#[test]
fn imap_attachments_are_saved_byte_identical() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("i15att").user;
    let f = fixture("imap");
    mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        "INBOX",
        f.messages.iter(),
        1,
    )?;
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    env.run(&[
        "account", "add", "d", "--imap", &imap, "--security", "plain", "--user", &user,
        "--password-env", PW_VAR, "--bodies", "none",
    ])
    .ok();
    env.run(&["sync", "--once"]).ok();
    check_account(&env, &f, "imap")
}

#[test]
fn jmap_attachments_are_saved_byte_identical() -> R {
    let servers = Servers::load()?;
    let user = mailsync_testkit::ATTACH.user(1);
    // Pool users persist between runs: empty the INBOX first.
    let mut imap = mailsync_testkit::ImapClient::login(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        &user,
        mailsync_testkit::CYRUS_POOL_PASSWORD,
    )?;
    if imap.select("INBOX")? > 0 {
        imap.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        imap.command("EXPUNGE")?;
    }
    imap.logout();
    let env = Env::new();
    let f = fixture("jmap");
    deliver(&user, f.messages.clone());
    env.add_jmap("c", &user).ok();
    env.run(&["sync", "--once"]).ok();
    check_account(&env, &f, "jmap")
}
