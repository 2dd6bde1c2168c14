//! Dovecot IMAP (CONDSTORE, QRESYNC, IDLE, SPECIAL-USE, MOVE, UIDPLUS) on loopback; users
//! `o_*` log in with OAuth 2 only (XOAUTH2, OAUTHBEARER; tokens checked by introspection).

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Instance, State};
use crate::util;

const CONF: &str = include_str!("../../assets/dovecot.conf.in");

fn pidfile(inst: &Instance) -> std::path::PathBuf {
    inst.dir("dovecot").join("run/master.pid")
}

pub fn state(inst: &Instance) -> State {
    match util::live_pid(&pidfile(inst), "dovecot") {
        None => State::Stopped,
        Some(pid) if util::greets(inst.ports.imap, "* OK") => State::Running(pid),
        Some(pid) => State::Unhealthy(pid, format!("no IMAP greeting on {}", inst.ports.imap)),
    }
}

pub fn start(inst: &Instance) -> Result<()> {
    for port in [inst.ports.imap, inst.ports.imaps] {
        if util::port_open(port) {
            bail!("port {port} is already used by another program");
        }
    }
    let dir = inst.dir("dovecot");
    for sub in ["run", "lib", "log", "mail"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let users = dir.join("users");
    if !users.exists() {
        // passwd-file format; Dovecot rereads it when it changes
        util::write_mode(
            &users,
            b"alice:{PLAIN}alicepw::::::\nbob:{PLAIN}bobpw::::::\n",
            0o644,
        )?;
    }
    // Dovecot refuses to access mail as root (gotcha D1): mail is the Debian `mail` account.
    let (uid, gid) = util::user_ids("mail")?;
    util::chown_recursive(&dir.join("mail"), uid, gid)?;
    // The oauth2 passdb's settings: tokens are checked at the introspection relay (RFC 7662).
    fs::write(
        dir.join("dovecot-oauth2.conf.ext"),
        format!(
            "introspection_mode = post\nintrospection_url = http://127.0.0.1:{}/introspect\n\
             username_attribute = username\nactive_attribute = active\nactive_value = true\n",
            inst.ports.oauth
        ),
    )?;
    let conf = dir.join("dovecot.conf");
    let state_dir = dir.display().to_string();
    let tls = inst.tls_dir().display().to_string();
    let instance = format!("mailsync-{}", inst.base);
    let text = util::render(
        CONF,
        &[
            ("STATE", &state_dir),
            ("INSTANCE", &instance),
            ("IMAP_PORT", &inst.ports.imap.to_string()),
            ("IMAPS_PORT", &inst.ports.imaps.to_string()),
            ("MAIL_USER", "mail"),
            ("TLS_DIR", &tls),
            ("OAUTH_PORT", &inst.ports.oauth.to_string()),
        ],
    );
    fs::write(&conf, text)?;
    // dovecot daemonizes; the master's pid goes to base_dir/master.pid
    util::run_daemon(
        Command::new("dovecot")
            .arg("-c")
            .arg(&conf)
            .process_group(0),
        &dir.join("log/start.log"),
    )
    .context("starting dovecot (Debian packages dovecot-core, dovecot-imapd)")?;
    if !util::wait_until(Duration::from_secs(15), || {
        matches!(state(inst), State::Running(_))
    }) {
        let log = fs::read_to_string(dir.join("log/dovecot.log")).unwrap_or_default();
        bail!(
            "dovecot did not answer on port {}; log:\n{}",
            inst.ports.imap,
            log.trim()
        );
    }
    Ok(())
}

pub fn stop(inst: &Instance) {
    // Same as `doveadm stop`. The master sleeps 1 s after killing its children, then lingers
    // as a zombie until pid 1 reaps it, which counts as gone (gotcha D3).
    util::stop_pidfile(&pidfile(inst), "dovecot", "TERM", Duration::from_secs(10));
}
