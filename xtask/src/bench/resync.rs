//! `cargo xtask bench resync`: only the resync cells of the full bench (no-change and 1 % change
//! resync of one big INBOX, mailsync against mbsync and the QRESYNC floor), so they can be
//! measured at L in a few minutes without the first-sync cells around them.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mailsync_testkit::{Profile, Servers, unique_name};

use super::measure::{Sample, fmt_s, stats};
use super::{Ctx, PW, floor, sqlite_count};
use crate::util;

const USAGE: &str = "usage: cargo xtask bench resync [--messages N] [--runs R] [--profile small|default] [--bin PATH] [--no-peers]
  --messages  messages in INBOX (default 100000 = L)
  --runs      timed runs per cell (default 5)
  --profile   generated message profile (default small: the resync cost is per message, not per byte)
  --bin       the mailsync binary (default $MAILSYNC_BENCH_BIN, else target/release/mailsync)
  --no-peers  skip mbsync";

/// `cargo xtask bench resync ...`: prints a markdown table (docs are edited by hand).
pub fn cmd(args: &[String]) -> Result<()> {
    let mut n = 100_000usize;
    let mut runs = 5usize;
    let mut small = true;
    let mut peers = true;
    let mut bin = std::env::var_os("MAILSYNC_BENCH_BIN").map(std::path::PathBuf::from);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--messages" => n = it.next().context("--messages")?.parse()?,
            "--runs" => runs = it.next().context("--runs")?.parse()?,
            "--profile" => {
                small = match it.next().context("--profile")?.as_str() {
                    "small" => true,
                    "default" => false,
                    other => bail!("unknown profile {other}\n{USAGE}"),
                }
            }
            "--bin" => bin = Some(it.next().context("--bin")?.into()),
            "--no-peers" => peers = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let root = util::workspace_root();
    let bin = bin.unwrap_or_else(|| root.join("target/release/mailsync"));
    if !bin.exists() {
        bail!(
            "{} not found (cargo build --release -p mailsync)",
            bin.display()
        );
    }
    if !util::is_root() {
        bail!("bench resync loads the corpus straight into Dovecot's maildirs: run it as root");
    }
    let load_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let work = std::env::temp_dir().join(unique_name("mailsync-bench-resync"));
    fs::create_dir_all(&work)?;
    let mut cx = Ctx {
        s: Servers::load().context("test servers (run `cargo xtask servers up`)")?,
        bin: bin.clone(),
        xtask: std::env::current_exe()?,
        work: work.clone(),
        runs: runs.max(1),
        peers,
        rows: Vec::new(),
        extras: Vec::new(),
        commands: Vec::new(),
        dirs: 0,
        offlineimap_ok: false,
        pg: false,
    };
    let user = format!("t_{}", unique_name("benchresync"));
    let profile = if small {
        Profile::small()
    } else {
        Profile::default()
    };
    cx.load_profile(&user, n, profile)?;
    let mut out = Vec::new();
    let r = run(&mut cx, &user, runs.max(1), &mut out);
    cx.drop_user(&user);
    let _ = fs::remove_dir_all(&work);
    r?;
    let load_end = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n- binary `{}`; {n} `Profile::{}()` messages in INBOX (Dovecot, loopback); load average at the start {}, at the end {}\n- invoked as `cargo xtask bench resync {}`\n",
        bin.display(),
        if small { "small" } else { "default" },
        load_start.trim(),
        load_end.trim(),
        args.join(" ")
    );
    println!(
        "| scenario | tool | runs | wall median (min–max) s | CPU median s | peak RSS MiB | note |"
    );
    println!("|---|---|---|---|---|---|---|");
    for l in out {
        println!("{l}");
    }
    Ok(())
}

fn row(scenario: &str, tool: &str, v: &[Sample], note: &str) -> String {
    let (m, lo, hi) = stats(&v.iter().map(|s| s.wall).collect::<Vec<_>>());
    let (cpu, _, _) = stats(&v.iter().map(|s| s.cpu).collect::<Vec<_>>());
    let rss = v.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let l = format!(
        "| {scenario} | {tool} | {} | {} ({}–{}) | {} | {rss:.1} | {note} |",
        v.len(),
        fmt_s(m),
        fmt_s(lo),
        fmt_s(hi),
        fmt_s(cpu)
    );
    println!("  {l}");
    l
}

fn run(cx: &mut Ctx, user: &str, runs: usize, out: &mut Vec<String>) -> Result<()> {
    let d = cx.fresh_dir("ms")?;
    let db = d.join("db.sqlite");
    cx.add_imap(&db, user, cx.port(), "all")?;
    let sync = cx.ms(&db).args(["sync", "--once"]);
    let t = Instant::now();
    sync.run()?;
    println!(
        "  mailsync first sync (all bodies, untimed) {:.1} s",
        t.elapsed().as_secs_f64()
    );
    sync.run()?; // settles state: not counted
    let mut mb = None;
    if cx.peers {
        let (_mail, c) = cx.mbsync_conf(user, false)?;
        let t = Instant::now();
        c.run()?;
        println!(
            "  mbsync first sync (FSync no, untimed) {:.1} s",
            t.elapsed().as_secs_f64()
        );
        mb = Some(c);
    }

    let v = cx.repeat(runs, &sync, |_| Ok(()))?;
    out.push(row("no-change resync", "mailsync", &v, ""));
    let (uv, modseq) = floor::qresync_state(cx.host(), cx.port(), user, PW)?;
    let c = cx.floor(user, "qresync", &[uv.to_string(), modseq.to_string()]);
    let v = cx.repeat(runs, &c, |_| Ok(()))?;
    out.push(row(
        "no-change resync",
        "raw floor (QRESYNC SELECT)",
        &v,
        "",
    ));
    if let Some(c) = &mb {
        let v = cx.repeat(runs, c, |_| Ok(()))?;
        out.push(row("no-change resync", "mbsync (FSync no)", &v, ""));
    }

    let log = cx.fresh_dir("log")?;
    let mut round = 0usize;
    let mut tools = vec![
        ("mailsync", Some(sync.clone())),
        ("raw floor (QRESYNC SELECT)", None),
    ];
    if let Some(c) = &mb {
        tools.push(("mbsync (FSync no)", Some(c.clone())));
    }
    for (name, c) in tools {
        let mut v = Vec::new();
        let mut changed = (0, 0);
        for _ in 0..runs {
            round += 1;
            let c = match &c {
                Some(c) => c.clone(),
                None => {
                    let (uv, ms) = floor::qresync_state(cx.host(), cx.port(), user, PW)?;
                    cx.floor(user, "qresync", &[uv.to_string(), ms.to_string()])
                }
            };
            changed = cx.change_1pct(user, round)?;
            // the same quiet second as the full bench (mbsync's maildir timestamps)
            thread::sleep(Duration::from_millis(1500));
            v.push(c.timed(&log)?);
        }
        let note = if name == "mailsync" {
            let rows = sqlite_count(
                &db,
                "SELECT count(*) FROM emails e WHERE EXISTS (SELECT 1 FROM email_mailboxes m WHERE m.email_id = e.id)",
            )?;
            format!(
                "{} flagged + {} expunged per run; after: {rows} rows, server {}",
                changed.0,
                changed.1,
                cx.server_count(user)?
            )
        } else {
            String::new()
        };
        out.push(row("1 % change resync", name, &v, &note));
    }
    Ok(())
}
