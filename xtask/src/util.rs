//! Small process, file and network helpers shared by the xtask commands (std only).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root: xtask lives in `<root>/xtask`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs a command to completion; fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command that daemonizes. Its output goes to `log`, not to pipes: the daemon's
/// children inherit stdout/stderr and would keep a pipe open forever.
pub fn run_daemon(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        bail!("{cmd:?} failed ({status}): {}", text.trim());
    }
    Ok(())
}

/// Whether the current process runs as root.
pub fn is_root() -> bool {
    // /proc/self/status "Uid:\treal\teffective..."; avoids libc for one number.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Looks up `(uid, gid)` of a system user in /etc/passwd.
pub fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            let id = |s: &str| {
                s.parse::<u32>()
                    .with_context(|| format!("/etc/passwd entry of `{name}`: bad id {s:?}"))
            };
            return Ok((id(f[2])?, id(f[3])?));
        }
    }
    bail!("system user `{name}` does not exist (is its Debian package installed?)")
}

/// Looks up the gid of a system group in /etc/group.
pub fn group_id(name: &str) -> Result<u32> {
    let group = fs::read_to_string("/etc/group").context("reading /etc/group")?;
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 2 && f[0] == name {
            return f[2]
                .parse()
                .with_context(|| format!("/etc/group entry of `{name}`: bad gid {:?}", f[2]));
        }
    }
    bail!("system group `{name}` does not exist")
}

/// `chown -R uid:gid path` (no symlink following).
pub fn chown_recursive(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Writes a file with the given permission bits.
pub fn write_mode(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Replaces every `@KEY@` in a template.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("@{k}@"), v);
    }
    out
}

/// Reads a pid file (first line).
pub fn read_pid(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    s.lines().next()?.trim().parse().ok()
}

/// A process exists and is not a zombie (a daemonized master lingers as `Z` until pid 1 reaps
/// it, so `kill -0` would lie; recipe gotcha D3).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the last ')' (the command name may contain spaces or parens).
    match stat.rfind(')') {
        Some(i) => !matches!(
            stat[i + 1..].trim_start().chars().next(),
            Some('Z') | Some('X')
        ),
        None => false,
    }
}

/// The process' command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The pid from `pidfile` if that process is alive and its command line contains `expect`
/// (guards against a recycled pid: we never signal a process we did not start).
pub fn live_pid(pidfile: &Path, expect: &str) -> Option<u32> {
    let pid = read_pid(pidfile)?;
    (pid_alive(pid) && cmdline(pid).contains(expect)).then_some(pid)
}

/// Sends a signal by pid with kill(1) (std has no signal API, and no unsafe is allowed).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops the process named by `pidfile` (if it is ours and alive): `sig`, wait, then KILL.
/// Returns whether there was something to stop.
pub fn stop_pidfile(pidfile: &Path, expect: &str, sig: &str, grace: Duration) -> bool {
    let Some(pid) = live_pid(pidfile, expect) else {
        let _ = fs::remove_file(pidfile);
        return false;
    };
    signal(pid, sig);
    if !wait_until(grace, || !pid_alive(pid)) {
        eprintln!("  {expect} (pid {pid}) ignored {sig} for {grace:?}; sending KILL");
        signal(pid, "KILL");
        wait_until(Duration::from_secs(5), || !pid_alive(pid));
    }
    let _ = fs::remove_file(pidfile);
    true
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    Some(s)
}

/// Whether anything accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    connect(port).is_some()
}

/// Whether 127.0.0.1:`port` sends a first line starting with `prefix` (IMAP `* OK`, SMTP `220`).
pub fn greets(port: u16, prefix: &str) -> bool {
    let Some(s) = connect(port) else { return false };
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with(prefix)
}

/// A minimal HTTP/1.1 GET on loopback; returns (status, body).
pub fn http_get(port: u16, path: &str, basic: Option<(&str, &str)>) -> Option<(u16, String)> {
    let mut s = connect(port)?;
    let auth = basic
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                mailsync_testkit::generator::base64(format!("{u}:{p}").as_bytes())
            )
        })
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Formats a duration as seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_all_placeholders() {
        assert_eq!(
            render("a=@A@ b=@B@ a=@A@", &[("A", "1"), ("B", "2")]),
            "a=1 b=2 a=1"
        );
    }

    #[test]
    fn own_process_is_alive_and_bogus_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }
}
