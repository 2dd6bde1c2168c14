//! The SMTP sink: Debian's python3-aiosmtpd running our `smtp_sink.py`, which keeps every
//! message and its envelope for tests to read, accepts AUTH XOAUTH2 for tokens the tests' issuers
//! vouch for, and relays Dovecot's OAuth 2 token introspection to them (port base + 81).

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Instance, State};
use crate::util;

const SCRIPT: &str = include_str!("../../assets/smtp_sink.py");
/// Debian's interpreter: `python3` on PATH may be a pyenv without aiosmtpd.
const PYTHON: &str = "/usr/bin/python3";

fn pidfile(inst: &Instance) -> std::path::PathBuf {
    inst.dir("smtp").join("smtp_sink.pid")
}

pub fn state(inst: &Instance) -> State {
    match util::live_pid(&pidfile(inst), "smtp_sink.py") {
        None => State::Stopped,
        Some(pid) if util::greets(inst.ports.smtp, "220") => State::Running(pid),
        Some(pid) => State::Unhealthy(pid, format!("no SMTP greeting on {}", inst.ports.smtp)),
    }
}

pub fn start(inst: &Instance) -> Result<()> {
    let dir = inst.dir("smtp");
    fs::create_dir_all(&dir)?;
    for port in [inst.ports.smtp, inst.ports.oauth] {
        if util::port_open(port) {
            bail!("port {port} is already used by another program");
        }
    }
    let bin = inst.dir("bin");
    fs::create_dir_all(&bin)?;
    let script = bin.join("smtp_sink.py");
    util::write_mode(&script, SCRIPT.as_bytes(), 0o755)?;
    let _ = fs::remove_file(pidfile(inst));
    let log = fs::File::create(dir.join("smtp_sink.log"))?;
    let tls = inst.tls_dir();
    let mut child = Command::new(PYTHON)
        .arg(&script)
        .arg(&dir)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &inst.ports.smtp.to_string(),
            "--oauth-port",
            &inst.ports.oauth.to_string(),
        ])
        .arg("--tls-cert")
        .arg(tls.join("cert.pem"))
        .arg("--tls-key")
        .arg(tls.join("key.pem"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // own process group: a Ctrl-C on the terminal must not hit it
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {PYTHON} (Debian package python3-minimal)"))?;
    let ready = util::wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_))) || matches!(state(inst), State::Running(_))
    });
    if !ready || !matches!(state(inst), State::Running(_)) {
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(dir.join("smtp_sink.log")).unwrap_or_default();
        bail!(
            "smtp sink did not start (needs Debian's python3-aiosmtpd); log:\n{}",
            log.trim()
        );
    }
    Ok(())
}

pub fn stop(inst: &Instance) {
    util::stop_pidfile(
        &pidfile(inst),
        "smtp_sink.py",
        "TERM",
        Duration::from_secs(5),
    );
}
