//! `cargo xtask demo`: the README's main job on a fresh machine. Installs what is missing,
//! starts the local servers, loads a few hundred realistic messages into an IMAP (Dovecot) and a
//! JMAP (Cyrus) account, adds both to a fresh `demo.db` with `mailsync account add`, syncs once,
//! shows what was synced, flags one email, sends one and shows it in Sent, then stops the
//! servers it started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mailsync_testkit::{Generator, Profile, imap_append_bulk};

use crate::{install, servers, util};

const MESSAGES: usize = 300;

struct Mailsync {
    bin: PathBuf,
    db: String,
}

impl Mailsync {
    /// Runs `mailsync --db DB ARGS...`, echoing the command; fails on a non-zero exit.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        println!("\n$ mailsync {}", args.join(" "));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--db").arg(&self.db).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("`mailsync {}` failed with {}", args.join(" "), out.status);
        }
        Ok(stdout)
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
}

fn build_cli() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("building the mailsync CLI ...");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "mailsync"])
        .current_dir(util::workspace_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p mailsync failed");
    }
    let bin = target_dir().join("debug").join("mailsync");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

fn first_id(json_lines: &str) -> Option<String> {
    let line = json_lines
        .lines()
        .find(|l| l.trim_start().starts_with('{'))?;
    let rest = line.split("\"id\":").nth(1)?;
    let id: String = rest
        .trim_start()
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}

/// `cargo xtask demo [--keep-servers]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let keep = match args {
        [] => false,
        [k] if k == "--keep-servers" => true,
        _ => bail!("usage: cargo xtask demo [--keep-servers]"),
    };
    let t0 = Instant::now();
    if util::is_root() {
        install::ensure_packages(install::SERVER_PACKAGES)?;
    }
    let inst = servers::Instance::from_env()?;
    let report = servers::up(&inst).context("starting the local servers")?;
    let owned = report.fresh && !keep;
    let res = run_demo(&inst);
    if owned {
        println!("\nstopping the servers this demo started ...");
        servers::down(&inst, false)?;
    }
    res?;
    println!("\ndemo finished in {}", util::secs(t0.elapsed()));
    Ok(())
}

fn run_demo(inst: &servers::Instance) -> Result<()> {
    let env: std::collections::HashMap<String, String> =
        servers::env_pairs(inst).into_iter().collect();
    let get = |k: &str| env.get(k).cloned().with_context(|| format!("{k} missing"));
    let imap_port: u16 = get("MAILSYNC_DOVECOT_IMAP_PORT")?.parse()?;
    let cyrus_imap_port: u16 = get("MAILSYNC_CYRUS_IMAP_PORT")?.parse()?;
    let smtp_port = get("MAILSYNC_SMTP_PORT")?;
    let well_known = get("MAILSYNC_JMAP_WELL_KNOWN")?;

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let imap_user = format!("t_demo{stamp}");
    let imap_pw = "testpw";
    let (jmap_user, jmap_pw) = ("alice", "alicepw");
    println!(
        "loading {MESSAGES} generated messages into Dovecot ({imap_user}) and Cyrus ({jmap_user}) ..."
    );
    imap_append_bulk(
        "127.0.0.1",
        imap_port,
        &imap_user,
        imap_pw,
        "INBOX",
        Generator::new(stamp).messages(0..MESSAGES),
        500,
    )?;
    imap_append_bulk(
        "127.0.0.1",
        cyrus_imap_port,
        jmap_user,
        jmap_pw,
        "INBOX",
        Generator::with_profile(Profile::small(), stamp ^ 0x5eed).messages(0..MESSAGES),
        500,
    )?;

    let bin = build_cli()?;
    let dir = target_dir().join("demo");
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db_path.display()));
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    let ms = Mailsync {
        bin,
        db: format!("sqlite://{}?mode=rwc", db_path.display()),
    };
    let pw_env = [
        ("DEMO_IMAP_PASSWORD", imap_pw),
        ("DEMO_JMAP_PASSWORD", jmap_pw),
    ];
    let imap_addr = format!("127.0.0.1:{imap_port}");
    let smtp_addr = format!("127.0.0.1:{smtp_port}");
    ms.run(
        &[
            "account",
            "add",
            "work",
            "--imap",
            &imap_addr,
            "--security",
            "plain",
            "--smtp",
            &smtp_addr,
            "--smtp-security",
            "plain",
            "--user",
            &imap_user,
            "--password-env",
            "DEMO_IMAP_PASSWORD",
        ],
        &pw_env,
    )?;
    ms.run(
        &[
            "account",
            "add",
            "home",
            "--jmap",
            &well_known,
            "--user",
            jmap_user,
            "--password-env",
            "DEMO_JMAP_PASSWORD",
            "--bodies",
            "64kb",
        ],
        &pw_env,
    )?;
    ms.run(&["account", "list"], &pw_env)?;
    ms.run(&["sync", "--once"], &pw_env)?;
    ms.run(&["mailboxes"], &pw_env)?;
    ms.run(&["emails", "--account", "work", "--limit", "5"], &pw_env)?;
    ms.run(&["emails", "--account", "home", "--limit", "5"], &pw_env)?;

    let newest = ms.run(
        &["emails", "--account", "work", "--limit", "1", "--json"],
        &pw_env,
    )?;
    let id = first_id(&newest).context("no email id in `mailsync emails --json`")?;
    ms.run(&["flag", &id, "--flagged", "--now"], &pw_env)?;
    ms.run(&["show", &id], &pw_env)?;

    ms.run(
        &[
            "send",
            "--account",
            "work",
            "--to",
            "bob@example.test",
            "--subject",
            "Hello from the mailsync demo",
            "--body",
            "Sent by cargo xtask demo.",
        ],
        &pw_env,
    )?;
    ms.run(&["sync", "--once", "--account", "work"], &pw_env)?;
    ms.run(
        &[
            "emails",
            "--account",
            "work",
            "--role",
            "sent",
            "--limit",
            "3",
        ],
        &pw_env,
    )?;
    ms.run(&["status"], &pw_env)?;
    println!("\nthe database is {}", Path::new(&db_path).display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::first_id;

    #[test]
    fn finds_the_id_of_the_first_json_line() {
        assert_eq!(
            first_id("{\"id\":42,\"account\":\"work\"}\n{\"id\":7}"),
            Some("42".into())
        );
        assert_eq!(first_id("{\"id\": \"e17\"}"), Some("e17".into()));
        assert_eq!(first_id("nothing"), None);
    }
}
