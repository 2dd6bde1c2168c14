//! `cargo xtask model`: the model test (issue #11) with more seeds, more operations, one
//! backend or a replayed operation list; runs `tests/tests/model.rs` with its settings in the
//! environment. Needs the test servers running (`cargo xtask servers up`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use mailsync_testkit::Servers;

use crate::util;

const USAGE: &str = "\
usage: cargo xtask model [--seeds N] [--seed-start S] [--seed S] [--ops M]
                         [--backend dovecot|cyrus-imap|cyrus-jmap] [--replay 'OPS']
                         [--shrink-secs T] [--shrink-max K] [--shrink-tries R]
                         [--cyrus-user en8|en9|en10] [--store sqlite|postgres] [--faults]
                         [--concurrent] [--bodies] [--nested] [--no-fail] [--release]

  Random interleavings of engine actions and another IMAP client's changes, checked by the
  oracle (database equals server, no lost intent). Defaults: the CI seeds (1..=5), 30
  operations, all three backends; per backend the first K (2) divergent seeds with new
  divergence kinds are shrunk, T (30) s each, a candidate list counting as failing when one of
  R (1) runs fails (raise R for timing-dependent Cyrus failures). --seeds N runs seeds
  S..S+N (S = --seed-start, default 1); --seed runs one; --replay runs a printed operation list
  (as printed for a failing seed). --faults turns half the syncs into cut ones (the
  engine's connections cut after a random number of bytes, through a proxy). --concurrent
  has a third of the other client's changes made while a sync cycle is paused at a random
  byte (the change lands mid-command or mid-answer). --bodies has the engine
  download every body, and the oracle check that each message has its own. --nested makes
  some mailboxes children of others (C becomes A/C, F becomes B/F).
  --no-fail reports without failing.
  The test servers must be up: `cargo xtask servers up`. Cyrus users are reset before each run:
  en8 (IMAP) and en9 (JMAP), or --cyrus-user; runs on one user take turns (a lock file).
  --store postgres keeps the engine's database in a fresh PostgreSQL database per run (on
  MAILSYNC_PG_URL's server) instead of a SQLite file.";

/// Maps the options to the test's environment variables.
fn env_of(args: &[String]) -> Result<(Vec<(&'static str, String)>, bool)> {
    let mut env = Vec::new();
    let mut release = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |key: &'static str| -> Result<()> {
            let v = it
                .next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
            env.push((key, v.clone()));
            Ok(())
        };
        match a.as_str() {
            "--seeds" => value("MAILSYNC_MODEL_SEEDS")?,
            "--seed-start" => value("MAILSYNC_MODEL_SEED_START")?,
            "--seed" => value("MAILSYNC_MODEL_SEED")?,
            "--ops" => value("MAILSYNC_MODEL_OPS")?,
            "--backend" => value("MAILSYNC_MODEL_BACKEND")?,
            "--replay" => value("MAILSYNC_MODEL_REPLAY")?,
            "--shrink-secs" => value("MAILSYNC_MODEL_SHRINK_SECS")?,
            "--shrink-max" => value("MAILSYNC_MODEL_SHRINK_MAX")?,
            "--shrink-tries" => value("MAILSYNC_MODEL_SHRINK_TRIES")?,
            "--cyrus-user" => value("MAILSYNC_MODEL_CYRUS_USER")?,
            "--store" => value("MAILSYNC_MODEL_STORE")?,
            "--no-fail" => env.push(("MAILSYNC_MODEL_NO_FAIL", "1".into())),
            "--faults" => env.push(("MAILSYNC_MODEL_FAULTS", "1".into())),
            "--concurrent" => env.push(("MAILSYNC_MODEL_CONCURRENT", "1".into())),
            "--bodies" => env.push(("MAILSYNC_MODEL_BODIES", "1".into())),
            "--nested" => env.push(("MAILSYNC_MODEL_NESTED", "1".into())),
            "--release" => release = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    for (k, v) in &env {
        let numeric = matches!(
            *k,
            "MAILSYNC_MODEL_SEEDS"
                | "MAILSYNC_MODEL_SEED_START"
                | "MAILSYNC_MODEL_SEED"
                | "MAILSYNC_MODEL_OPS"
                | "MAILSYNC_MODEL_SHRINK_SECS"
                | "MAILSYNC_MODEL_SHRINK_MAX"
                | "MAILSYNC_MODEL_SHRINK_TRIES"
        );
        if numeric && v.parse::<u64>().is_err() {
            bail!("{k}: `{v}` is not a number\n{USAGE}");
        }
        if *k == "MAILSYNC_MODEL_BACKEND"
            && !v
                .split(',')
                .all(|b| ["dovecot", "cyrus-imap", "cyrus-jmap"].contains(&b.trim()))
        {
            bail!("unknown backend `{v}`\n{USAGE}");
        }
        if *k == "MAILSYNC_MODEL_STORE" && !["sqlite", "postgres"].contains(&v.as_str()) {
            bail!("unknown store `{v}`\n{USAGE}");
        }
    }
    Ok((env, release))
}

pub fn cmd(args: &[String]) -> Result<()> {
    let (env, release) = env_of(args)?;
    Servers::load()
        .context("the model test needs the test servers: run `cargo xtask servers up`")?;
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(util::workspace_root())
        .args(["test", "-p", "mailsync-tests", "--test", "model"]);
    // What `cargo run` set for xtask itself would dirty build scripts that track it (ring
    // tracks CARGO_MANIFEST_DIR) and rebuild half the tree.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&k.as_ref())
        {
            c.env_remove(k.as_ref());
        }
    }
    if release {
        c.arg("--release");
    }
    c.args(["--", "--nocapture", "--test-threads=3"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    println!("$ {c:?}");
    let st = c.status().context("cannot run cargo test")?;
    if !st.success() {
        bail!("the model test failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn options_become_environment() {
        let (env, release) = env_of(&args(&[
            "--seeds",
            "200",
            "--ops",
            "40",
            "--backend",
            "dovecot",
        ]))
        .unwrap();
        assert!(!release);
        assert_eq!(
            env,
            [
                ("MAILSYNC_MODEL_SEEDS", "200".to_string()),
                ("MAILSYNC_MODEL_OPS", "40".into()),
                ("MAILSYNC_MODEL_BACKEND", "dovecot".into()),
            ]
        );
        assert!(env_of(&args(&["--seeds", "many"])).is_err());
        assert!(env_of(&args(&["--backend", "exchange"])).is_err());
        assert!(env_of(&args(&["--store", "postgres"])).is_ok());
        assert!(env_of(&args(&["--store", "mysql"])).is_err());
        assert!(env_of(&args(&["--ops"])).is_err());
        assert!(env_of(&args(&["--frobnicate"])).is_err());
    }
}
