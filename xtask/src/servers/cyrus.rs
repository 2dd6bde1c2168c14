//! Cyrus IMAP 3.6: JMAP over plain HTTP, LMTP and IMAP on the same accounts, submission relayed
//! to the SMTP sink; provisions the test users.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailsync_testkit::ImapClient;

use super::{Instance, State};
use crate::util;

const IMAPD_CONF: &str = include_str!("../../assets/imapd.conf.in");
const CYRUS_CONF: &str = include_str!("../../assets/cyrus.conf.in");
const MASTER: &str = "/usr/lib/cyrus/bin/master";

/// Every Cyrus test account with its password (admin is the Cyrus admin).
pub fn users() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        [("alice", "alicepw"), ("bob", "bobpw"), ("admin", "adminpw")]
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
    for pool in mailsync_testkit::CYRUS_POOLS {
        for n in 1..=pool.size {
            v.push((
                format!("{}{n}", pool.prefix),
                mailsync_testkit::CYRUS_POOL_PASSWORD.into(),
            ));
        }
    }
    v
}

fn pidfile(inst: &Instance) -> std::path::PathBuf {
    inst.dir("cyrus").join("run/master.pid")
}

pub fn state(inst: &Instance) -> State {
    let Some(pid) = util::live_pid(&pidfile(inst), "cyrus/bin/master") else {
        return State::Stopped;
    };
    if util::http_get(inst.ports.http, "/", None).is_none() {
        return State::Unhealthy(pid, format!("no HTTP answer on {}", inst.ports.http));
    }
    if !util::greets(inst.ports.cyrus_imap, "* OK") {
        return State::Unhealthy(
            pid,
            format!("no IMAP greeting on {}", inst.ports.cyrus_imap),
        );
    }
    State::Running(pid)
}

pub fn start(inst: &Instance, bin_src: &Path) -> Result<()> {
    let p = &inst.ports;
    for port in [p.http, p.lmtp, p.cyrus_imap] {
        if util::port_open(port) {
            bail!("port {port} is already used by another program");
        }
    }
    if !Path::new(MASTER).is_file() {
        bail!("{MASTER} is missing (Debian packages cyrus-common, cyrus-caldav)");
    }
    let dir = inst.dir("cyrus");
    // Subdirectories of configdirectory must exist (gotcha C2).
    for sub in [
        "spool",
        "sieve",
        "tmp",
        "search",
        "run/proc",
        "run/lock",
        "run/socket",
        "bin",
    ] {
        fs::create_dir_all(dir.join(sub))?;
    }
    for sub in [
        "db", "socket", "log", "msg", "proc", "quota", "user", "sync", "lock", "ptclient",
    ] {
        fs::create_dir_all(dir.join("conf").join(sub))?;
    }
    fs::create_dir_all(dir.join("conf/log/smtpclient.host"))?;
    // imapd/idled/squatter from the .deb, copied so the `cyrus` user can surely execute them.
    for b in ["imapd", "idled", "squatter"] {
        let data = fs::read(bin_src.join(b)).with_context(|| format!("reading {b}"))?;
        util::write_mode(&dir.join("bin").join(b), &data, 0o755)?;
    }
    let state_dir = dir.display().to_string();
    let bin = dir.join("bin").display().to_string();
    let imapd_conf = dir.join("imapd.conf");
    fs::write(
        &imapd_conf,
        util::render(
            IMAPD_CONF,
            &[("STATE", &state_dir), ("SMTP_PORT", &p.smtp.to_string())],
        ),
    )?;
    fs::write(
        dir.join("cyrus.conf"),
        util::render(
            CYRUS_CONF,
            &[
                ("STATE", &state_dir),
                ("BIN", &bin),
                ("HTTP_PORT", &p.http.to_string()),
                ("LMTP_PORT", &p.lmtp.to_string()),
                ("IMAP_PORT", &p.cyrus_imap.to_string()),
            ],
        ),
    )?;
    // SASL users in a private sasldb; the realm must equal servername (gotcha C6).
    let sasldb = dir.join("sasldb2");
    for (user, pass) in users() {
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-f"])
            .arg(&sasldb)
            .args(["-u", "localhost", &user])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running saslpasswd2 (Debian package sasl2-bin)")?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(pass.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "saslpasswd2 {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The master drops to `cyrus` (group mail): all state must be theirs (gotcha C3).
    let (uid, _) = util::user_ids("cyrus")?;
    let gid = util::group_id("mail")?;
    for sub in ["conf", "spool", "sieve", "tmp", "search", "run"] {
        util::chown_recursive(&dir.join(sub), uid, gid)?;
    }
    std::os::unix::fs::chown(&sasldb, Some(uid), Some(gid))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o640))?;

    let _ = fs::remove_file(pidfile(inst));
    util::run_daemon(
        Command::new(MASTER)
            .arg("-C")
            .arg(&imapd_conf)
            .arg("-M")
            .arg(dir.join("cyrus.conf"))
            .arg("-p")
            .arg(pidfile(inst))
            .arg("-L")
            .arg(dir.join("master.log"))
            .arg("-d")
            .process_group(0),
        &dir.join("start.log"),
    )
    .context("starting the cyrus master")?;
    let ready = util::wait_until(Duration::from_secs(20), || {
        matches!(state(inst), State::Running(_)) && util::greets(p.lmtp, "220")
    });
    if !ready {
        let log = fs::read_to_string(dir.join("master.log")).unwrap_or_default();
        bail!(
            "cyrus did not answer on http {} / imap {} / lmtp {}; master.log:\n{}",
            p.http,
            p.cyrus_imap,
            p.lmtp,
            log.trim()
        );
    }
    provision(inst)?;
    // httpd never autocreates (gotcha C5): check that JMAP now sees alice's account.
    match util::http_get(p.http, "/jmap/", Some(("alice", "alicepw"))) {
        Some((200, body)) if body.contains("urn:ietf:params:jmap:mail") => Ok(()),
        other => bail!("JMAP session for alice is not usable after provisioning: {other:?}"),
    }
}

/// One IMAP login per user autocreates INBOX + Drafts/Sent/Trash/Junk/Archive (in parallel).
fn provision(inst: &Instance) -> Result<()> {
    let queue = Mutex::new(users());
    let errors = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some((user, pass)) = next else { break };
                    let login = ImapClient::login("127.0.0.1", inst.ports.cyrus_imap, &user, &pass);
                    if let Err(e) = login.map(ImapClient::logout)
                        && let Ok(mut v) = errors.lock()
                    {
                        v.push(format!("{user}: {e:#}"));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        bail!("provisioning Cyrus users failed: {}", errors.join("; "));
    }
    Ok(())
}

pub fn stop(inst: &Instance) {
    // SIGTERM: the master kills its children and exits.
    util::stop_pidfile(
        &pidfile(inst),
        "cyrus/bin/master",
        "TERM",
        Duration::from_secs(10),
    );
}
