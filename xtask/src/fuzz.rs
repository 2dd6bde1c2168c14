//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (IMAP responses, MIME messages,
//! JMAP responses) for a given time each, starting from the committed seeds, and reports the
//! executions run. Installs cargo-fuzz when missing. Only the stable toolchain is assumed:
//! libFuzzer's instrumentation flags are stable, the rest is allowed with `RUSTC_BOOTSTRAP=1`,
//! and no sanitizer is used (`-s none`): crashes are panics, aborts and stack overflows.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

const TARGETS: &[&str] = &["imap_response", "mime_message", "jmap_response"];

const USAGE: &str = "\
usage: cargo xtask fuzz [--time SECS] [--target NAME]...

  Runs each fuzz target (imap_response, mime_message, jmap_response; or the named ones) for
  SECS seconds (default 30), from fuzz/seeds/<target> (seeds taken from the test servers) plus
  the corpus grown by earlier runs, and prints the executions run per target. A crash fails the
  command and leaves its input in fuzz/artifacts/<target>/: make it a regression test.
  Installs cargo-fuzz with `cargo install` when it is missing.";

pub fn cmd(args: &[String]) -> Result<()> {
    let mut secs: u64 = 30;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                secs = it
                    .next()
                    .context("--time needs a value")?
                    .parse()
                    .context("--time: not a number of seconds")?;
            }
            "--target" => {
                let t = it.next().context("--target needs a value")?;
                if !TARGETS.contains(&t.as_str()) {
                    bail!("unknown target `{t}`\n{USAGE}");
                }
                targets.push(t.clone());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|s| (*s).to_owned()).collect();
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = util::workspace_root().join("fuzz");
    let mut report = Vec::new();
    for t in &targets {
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        let seeds = fuzz_dir.join("seeds").join(t);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-s", "none", "-O", t])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={secs}"),
            "-max_len=1048576",
            "-print_final_stats=1",
        ]);
        eprintln!("==== fuzz {t}: {secs} s ====");
        let out = cmd
            .output()
            .with_context(|| format!("running cargo fuzz {t}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let runs = executions(&stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {t} failed after {runs:?} executions (input in fuzz/artifacts/{t}/):\n{}",
                tail.join("\n")
            );
        }
        report.push(format!(
            "{t}: {} executions in {secs} s, no crash",
            runs.unwrap_or(0)
        ));
    }
    println!("==== fuzz summary ====");
    for line in report {
        println!("  {line}");
    }
    Ok(())
}

/// The executions libFuzzer reports (`stat::number_of_executed_units: N`).
fn executions(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    eprintln!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    Ok(())
}
