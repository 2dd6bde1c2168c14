//! `cargo xtask load`: fills a test-server mailbox with generated messages (testkit loaders).

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mailsync_testkit::{Generator, Profile, Servers};

const USAGE: &str = "usage: cargo xtask load --server dovecot|cyrus --user U --password P \
[--mailbox M] --count N [--seed S] [--start I] [--chunk C] [--profile default|small] \
[--via imap|lmtp|maildir|none]";

struct Args {
    server: String,
    user: String,
    password: String,
    mailbox: String,
    count: usize,
    seed: u64,
    start: usize,
    chunk: usize,
    profile: Profile,
    via: String,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        server: String::new(),
        user: String::new(),
        password: String::new(),
        mailbox: "INBOX".into(),
        count: 0,
        seed: 0,
        start: 0,
        chunk: 500,
        profile: Profile::default(),
        via: "imap".into(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--server" => a.server = value()?.clone(),
            "--user" => a.user = value()?.clone(),
            "--password" => a.password = value()?.clone(),
            "--mailbox" => a.mailbox = value()?.clone(),
            "--count" => a.count = value()?.parse().context("--count")?,
            "--seed" => a.seed = value()?.parse().context("--seed")?,
            "--start" => a.start = value()?.parse().context("--start")?,
            "--chunk" => a.chunk = value()?.parse().context("--chunk")?,
            "--via" => a.via = value()?.clone(),
            "--profile" => {
                a.profile = match value()?.as_str() {
                    "default" => Profile::default(),
                    "small" => Profile::small(),
                    other => bail!("unknown profile {other}\n{USAGE}"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if a.server.is_empty() || a.user.is_empty() || a.count == 0 {
        bail!("--server, --user and --count are required\n{USAGE}");
    }
    if a.password.is_empty() {
        a.password = match a.user.as_str() {
            "alice" => "alicepw".into(),
            "bob" => "bobpw".into(),
            "admin" => "adminpw".into(),
            _ => "testpw".into(),
        };
    }
    Ok(a)
}

/// Generates on worker threads (in order) so generation overlaps with the server's work:
/// worker `k` makes indexes `start + k`, `start + k + W`, ... and the consumer takes them
/// round-robin.
fn produce(g: Generator, start: usize, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let receivers: Vec<mpsc::Receiver<Vec<u8>>> = (0..workers)
        .map(|k| {
            let (tx, rx) = mpsc::sync_channel(256);
            let g = g.clone();
            thread::spawn(move || {
                for i in (start + k..start + count).step_by(workers) {
                    if tx.send(g.message(i)).is_err() {
                        break;
                    }
                }
            });
            rx
        })
        .collect();
    (0..count).map_while(move |n| receivers[n % workers].recv().ok())
}

/// `cargo xtask load ...`.
pub fn cmd(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let s = Servers::load()?;
    let profile = a
        .profile
        .clone()
        .with_to(format!("{} <{}@example.test>", a.user, a.user));
    let g = Generator::with_profile(profile, a.seed);
    let messages = produce(g, a.start, a.count);
    let t = Instant::now();
    let n = match (a.server.as_str(), a.via.as_str()) {
        ("dovecot", "imap") => mailsync_testkit::imap_append_bulk(
            s.dovecot_host(),
            s.dovecot_imap_port(),
            &a.user,
            &a.password,
            &a.mailbox,
            messages,
            a.chunk,
        )?,
        ("cyrus", "imap") => mailsync_testkit::imap_append_bulk(
            s.cyrus_host(),
            s.cyrus_imap_port(),
            &a.user,
            &a.password,
            &a.mailbox,
            messages,
            a.chunk,
        )?,
        ("cyrus", "lmtp") => {
            if !a.mailbox.eq_ignore_ascii_case("INBOX") {
                bail!("--via lmtp delivers to INBOX only");
            }
            mailsync_testkit::lmtp_deliver(s.cyrus_lmtp(), &a.user, messages)?
        }
        ("dovecot", "maildir") => mailsync_testkit::maildir_populate(
            s.dovecot_conf(),
            s.dovecot_mail_root(),
            &a.user,
            &a.mailbox,
            messages,
        )?,
        // generation only, to measure the generator
        (_, "none") => messages.map(|m| m.len()).filter(|l| *l > 0).count(),
        (server, via) => bail!("cannot load {server} via {via}\n{USAGE}"),
    };
    let secs = t.elapsed().as_secs_f64();
    println!(
        "loaded {n} messages (seed {}, indexes {}..{}) into {}:{} {} via {} in {secs:.2}s ({:.0}/s)",
        a.seed,
        a.start,
        a.start + n,
        a.server,
        a.user,
        a.mailbox,
        a.via,
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}
