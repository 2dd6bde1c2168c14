//! `cargo xtask servers up|down|status`: Dovecot, Cyrus, an SMTP sink and PostgreSQL on loopback,
//! all state in one throwaway (tmpfs) directory, every process stopped by pid file.

mod cyrus;
mod dovecot;
mod postgres;
mod sink;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{self, secs};

/// Default state root (tmpfs: Cyrus fsyncs every append and is 5-20x slower on disk).
pub const DEFAULT_ROOT: &str = "/dev/shm/mailsync-servers";
/// Default port base: ports are base + 143 (IMAP), 993, 80, 24, 144, 25, 81 (OAuth 2
/// introspection) and 432 for PostgreSQL.
pub const DEFAULT_PORT_BASE: u16 = 10000;
/// Marks a directory as a state root made by xtask (we only ever wipe such directories).
const MARKER: &str = ".mailsync-servers";

/// Loopback ports of one instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ports {
    pub imap: u16,
    pub imaps: u16,
    pub http: u16,
    pub lmtp: u16,
    pub cyrus_imap: u16,
    pub smtp: u16,
    /// The OAuth 2 token introspection relay (in the SMTP sink's process).
    pub oauth: u16,
    pub postgres: u16,
}

impl Ports {
    fn from_base(base: u16) -> Result<Ports> {
        let p = |off: u16| {
            base.checked_add(off)
                .with_context(|| format!("MAILSYNC_PORT_BASE {base} is too large"))
        };
        Ok(Ports {
            imap: p(143)?,
            imaps: p(993)?,
            http: p(80)?,
            lmtp: p(24)?,
            cyrus_imap: p(144)?,
            smtp: p(25)?,
            oauth: p(81)?,
            postgres: p(432)?,
        })
    }
}

/// One server instance: a state root plus a port base.
#[derive(Clone, Debug)]
pub struct Instance {
    pub root: PathBuf,
    pub base: u16,
    pub ports: Ports,
}

impl Instance {
    /// From `MAILSYNC_SERVERS_ROOT` and `MAILSYNC_PORT_BASE` (or the defaults).
    pub fn from_env() -> Result<Instance> {
        let root = std::env::var_os("MAILSYNC_SERVERS_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()?.join(root)
        };
        let base = match std::env::var("MAILSYNC_PORT_BASE") {
            Ok(s) => s
                .trim()
                .parse()
                .with_context(|| format!("MAILSYNC_PORT_BASE={s:?} is not a port number"))?,
            // an existing instance remembers its port base
            Err(_) => recorded_base(&root).unwrap_or(DEFAULT_PORT_BASE),
        };
        Ok(Instance {
            root,
            base,
            ports: Ports::from_base(base)?,
        })
    }

    /// Whether this is the shared default instance (whose env file goes into the workspace).
    pub fn is_default_root(&self) -> bool {
        self.root == Path::new(DEFAULT_ROOT)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir("tls")
    }

    /// The env file inside the state root (always written).
    pub fn env_file(&self) -> PathBuf {
        self.dir("servers.env")
    }

    fn marker(&self) -> PathBuf {
        self.dir(MARKER)
    }
}

/// The port base recorded in a state root's marker file.
fn recorded_base(root: &Path) -> Option<u16> {
    fs::read_to_string(root.join(MARKER))
        .ok()?
        .trim()
        .strip_prefix("port_base=")?
        .parse()
        .ok()
}

/// The env file tests read: `<workspace>/.state/servers.env` (default instance only).
pub fn workspace_env_file() -> PathBuf {
    util::workspace_root().join(".state").join("servers.env")
}

/// State of one component.
#[derive(Debug, PartialEq)]
pub enum State {
    Running(u32),
    /// Running elsewhere (the machine's PostgreSQL on 5432); nothing for us to stop.
    External(String),
    /// The process is alive but does not answer.
    Unhealthy(u32, String),
    Stopped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Running(pid) => write!(f, "running (pid {pid})"),
            State::External(what) => write!(f, "external ({what})"),
            State::Unhealthy(pid, why) => write!(f, "UNHEALTHY (pid {pid}): {why}"),
            State::Stopped => write!(f, "stopped"),
        }
    }
}

impl State {
    fn healthy(&self) -> bool {
        matches!(self, State::Running(_) | State::External(_))
    }
}

/// What `up` did.
pub struct UpReport {
    /// Nothing was running before: this call started a fresh instance.
    pub fresh: bool,
}

/// Whether the machine's PostgreSQL on 127.0.0.1:5432 takes trust logins to `test`.
pub fn postgres_available() -> bool {
    postgres::trust_ok(5432)
}

fn states(inst: &Instance) -> Vec<(&'static str, State)> {
    vec![
        ("smtp-sink", sink::state(inst)),
        ("dovecot", dovecot::state(inst)),
        ("cyrus", cyrus::state(inst)),
        ("postgres", postgres::state(inst)),
    ]
}

fn any_own_process(inst: &Instance) -> bool {
    states(inst)
        .iter()
        .any(|(_, s)| matches!(s, State::Running(_) | State::Unhealthy(..)))
}

/// Probes health a few times before calling a component unhealthy (a busy server may be slow).
fn settled_state(name: &str, inst: &Instance) -> State {
    let probe = || match name {
        "smtp-sink" => sink::state(inst),
        "dovecot" => dovecot::state(inst),
        "cyrus" => cyrus::state(inst),
        _ => postgres::state(inst),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = probe();
    while matches!(s, State::Unhealthy(..)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        s = probe();
    }
    s
}

/// Makes sure the component is running: a no-op if healthy. A running but unresponsive
/// component is an error, not restarted: the instance is shared, and a busy server (a big
/// load in progress) must not be killed under other tests.
fn ensure(
    name: &'static str,
    inst: &Instance,
    start: impl FnOnce(&Instance) -> Result<()>,
) -> Result<Option<Duration>> {
    match settled_state(name, inst) {
        State::Running(_) | State::External(_) => Ok(None),
        State::Unhealthy(pid, why) => bail!(
            "{name} (pid {pid}) is running but does not answer ({why}) after 5 s; if it is \
             stuck rather than busy: cargo xtask servers down && cargo xtask servers up"
        ),
        State::Stopped => {
            let t = Instant::now();
            start(inst).with_context(|| format!("starting {name}"))?;
            Ok(Some(t.elapsed()))
        }
    }
}

/// Brings the instance up (idempotent) and writes its env file(s).
pub fn up(inst: &Instance) -> Result<UpReport> {
    if !util::is_root() {
        bail!(
            "`servers up` must run as root: Dovecot and Cyrus drop privileges to the `mail` and \
             `cyrus` users"
        );
    }
    let t0 = Instant::now();
    let fresh = prepare_root(inst)?;
    let cyrus_bin = crate::install::cyrus_bin_dir()?;
    ensure_tls(inst)?;

    let mut started: Vec<(&str, Duration)> = Vec::new();
    // The sink first (Cyrus probes the SMTP server when it builds the JMAP session's submission
    // capabilities); Dovecot and PostgreSQL meanwhile.
    let (sink_r, dovecot_r, pg_r) = thread::scope(|s| {
        let a = s.spawn(|| ensure("smtp-sink", inst, sink::start));
        let b = s.spawn(|| ensure("dovecot", inst, dovecot::start));
        let c = s.spawn(|| ensure("postgres", inst, postgres::start));
        let join = |name: &str, h: thread::ScopedJoinHandle<'_, Result<Option<Duration>>>| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("starting {name}: thread panicked")))
        };
        let sink_r = join("smtp-sink", a);
        let cyrus_r = if sink_r.is_ok() {
            Some(ensure("cyrus", inst, |i| cyrus::start(i, &cyrus_bin)))
        } else {
            None
        };
        (
            sink_r.map(|d| (d, cyrus_r)),
            join("dovecot", b),
            join("postgres", c),
        )
    });
    let mut errors = Vec::new();
    match sink_r {
        Ok((d, cyrus_r)) => {
            if let Some(d) = d {
                started.push(("smtp-sink", d));
            }
            match cyrus_r {
                Some(Ok(Some(d))) => started.push(("cyrus", d)),
                Some(Ok(None)) | None => {}
                Some(Err(e)) => errors.push(e),
            }
        }
        Err(e) => errors.push(e),
    }
    for (name, r) in [("dovecot", dovecot_r), ("postgres", pg_r)] {
        match r {
            Ok(Some(d)) => started.push((name, d)),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        let msg: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        bail!("servers up failed:\n  {}", msg.join("\n  "));
    }
    write_env(inst)?;
    if started.is_empty() {
        println!(
            "servers already running and healthy (root {}, port base {}); checked in {}",
            inst.root.display(),
            inst.base,
            secs(t0.elapsed())
        );
    } else {
        for (name, d) in &started {
            println!("  {name:<9} started in {}", secs(*d));
        }
        println!(
            "servers up in {} (root {}, port base {})",
            secs(t0.elapsed()),
            inst.root.display(),
            inst.base
        );
    }
    println!("connection details: {}", env_files(inst).join(", "));
    Ok(UpReport { fresh })
}

fn env_files(inst: &Instance) -> Vec<String> {
    let mut v = vec![inst.env_file().display().to_string()];
    if inst.is_default_root() {
        v.push(workspace_env_file().display().to_string());
    }
    v
}

/// Creates (or validates, or wipes a dead) state root. Returns whether it is fresh.
fn prepare_root(inst: &Instance) -> Result<bool> {
    let marker = inst.marker();
    if marker.exists() {
        let recorded = recorded_base(&inst.root);
        if any_own_process(inst) {
            if recorded != Some(inst.base) {
                bail!(
                    "the instance in {} runs with port base {:?}, not {}; stop it first \
                     (`cargo xtask servers down`) or use its port base",
                    inst.root.display(),
                    recorded,
                    inst.base
                );
            }
            return Ok(false);
        }
        // Nothing of it runs any more: it is throwaway state from an earlier run.
        fs::remove_dir_all(&inst.root)
            .with_context(|| format!("wiping stale state {}", inst.root.display()))?;
    } else if inst.root.exists() && fs::read_dir(&inst.root)?.next().is_some() {
        bail!(
            "{} exists, is not empty and was not made by xtask; refusing to use it",
            inst.root.display()
        );
    }
    fs::create_dir_all(&inst.root).with_context(|| format!("creating {}", inst.root.display()))?;
    use std::os::unix::fs::PermissionsExt;
    // Dovecot and Cyrus run as `mail`/`cyrus` and must traverse the root.
    fs::set_permissions(&inst.root, fs::Permissions::from_mode(0o755))?;
    fs::write(&marker, format!("port_base={}\n", inst.base))?;
    Ok(true)
}

/// One self-signed certificate for Dovecot IMAPS/STARTTLS and the sink's STARTTLS.
fn ensure_tls(inst: &Instance) -> Result<()> {
    let dir = inst.tls_dir();
    if dir.join("cert.pem").is_file() && dir.join("key.pem").is_file() {
        return Ok(());
    }
    fs::create_dir_all(&dir)?;
    util::run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "3650", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            // A leaf, not a CA: rustls/webpki refuse a CA certificate used as the server's own
            // (CaUsedAsEndEntity); pinned as the trust anchor, this self-signed leaf verifies.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
    )
    .context("generating the test TLS certificate with openssl")?;
    Ok(())
}

/// The `KEY=VALUE` connection details of an instance.
pub fn env_pairs(inst: &Instance) -> Vec<(String, String)> {
    let p = &inst.ports;
    let r = |s: &str| inst.root.join(s).display().to_string();
    let pairs: Vec<(&str, String)> = vec![
        ("MAILSYNC_SERVERS_ROOT", inst.root.display().to_string()),
        ("MAILSYNC_DOVECOT_HOST", "127.0.0.1".into()),
        ("MAILSYNC_DOVECOT_IMAP_PORT", p.imap.to_string()),
        ("MAILSYNC_DOVECOT_IMAPS_PORT", p.imaps.to_string()),
        ("MAILSYNC_DOVECOT_CONF", r("dovecot/dovecot.conf")),
        ("MAILSYNC_DOVECOT_MAIL_ROOT", r("dovecot/mail")),
        ("MAILSYNC_CYRUS_HOST", "127.0.0.1".into()),
        ("MAILSYNC_CYRUS_IMAP_PORT", p.cyrus_imap.to_string()),
        ("MAILSYNC_CYRUS_HTTP_PORT", p.http.to_string()),
        ("MAILSYNC_CYRUS_LMTP", format!("127.0.0.1:{}", p.lmtp)),
        ("MAILSYNC_CYRUS_LMTP_SOCKET", r("cyrus/run/socket/lmtp")),
        (
            "MAILSYNC_JMAP_SESSION_URL",
            format!("http://127.0.0.1:{}/jmap/", p.http),
        ),
        (
            "MAILSYNC_JMAP_WELL_KNOWN",
            format!("http://127.0.0.1:{}/.well-known/jmap", p.http),
        ),
        ("MAILSYNC_SMTP_HOST", "127.0.0.1".into()),
        ("MAILSYNC_SMTP_PORT", p.smtp.to_string()),
        ("MAILSYNC_SMTP_SINK_DIR", r("smtp")),
        ("MAILSYNC_TLS_CA", r("tls/cert.pem")),
        ("MAILSYNC_PG_URL", postgres::url(inst)),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn write_env(inst: &Instance) -> Result<()> {
    let mut text = format!(
        "# written by `cargo xtask servers up`; instance root {} (port base {})\n",
        inst.root.display(),
        inst.base
    );
    for (k, v) in env_pairs(inst) {
        text.push_str(&format!("{k}={v}\n"));
    }
    write_atomic(&inst.env_file(), &text)?;
    if inst.is_default_root() {
        let f = workspace_env_file();
        fs::create_dir_all(f.parent().context("env file has no parent")?)?;
        write_atomic(&f, &text)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Stops every process of the instance by pid file; wipes the state unless `keep_state`.
pub fn down(inst: &Instance, keep_state: bool) -> Result<()> {
    let t0 = Instant::now();
    if !inst.root.exists() {
        println!("nothing to stop: {} does not exist", inst.root.display());
        return Ok(());
    }
    if !inst.marker().exists() {
        bail!(
            "{} is not a state root made by xtask; not touching it",
            inst.root.display()
        );
    }
    thread::scope(|s| {
        s.spawn(|| cyrus::stop(inst));
        s.spawn(|| dovecot::stop(inst));
        s.spawn(|| sink::stop(inst));
        s.spawn(|| postgres::stop(inst));
    });
    let left: Vec<String> = states(inst)
        .into_iter()
        .filter(|(_, s)| matches!(s, State::Running(_) | State::Unhealthy(..)))
        .map(|(n, s)| format!("{n}: {s}"))
        .collect();
    if !left.is_empty() {
        bail!("some servers did not stop: {}", left.join("; "));
    }
    if inst.is_default_root() {
        let _ = fs::remove_file(workspace_env_file());
    }
    if keep_state {
        let _ = fs::remove_file(inst.env_file());
        println!(
            "servers stopped in {}; state kept in {}",
            secs(t0.elapsed()),
            inst.root.display()
        );
    } else {
        fs::remove_dir_all(&inst.root)
            .with_context(|| format!("removing {}", inst.root.display()))?;
        println!(
            "servers stopped in {} and {} removed",
            secs(t0.elapsed()),
            inst.root.display()
        );
    }
    Ok(())
}

/// Prints each component's state; returns whether all are healthy.
pub fn status(inst: &Instance) -> bool {
    println!(
        "instance root {} (port base {})",
        inst.root.display(),
        inst.base
    );
    let mut all = true;
    for (name, s) in states(inst) {
        let ports = match name {
            "smtp-sink" => format!(
                "smtp {}, oauth introspection {}",
                inst.ports.smtp, inst.ports.oauth
            ),
            "dovecot" => format!("imap {}, imaps {}", inst.ports.imap, inst.ports.imaps),
            "cyrus" => format!(
                "http {}, lmtp {}, imap {}",
                inst.ports.http, inst.ports.lmtp, inst.ports.cyrus_imap
            ),
            _ => postgres::url(inst),
        };
        println!("  {name:<9} {s}  [{ports}]");
        all &= s.healthy();
    }
    if all {
        println!("connection details: {}", env_files(inst).join(", "));
    }
    all
}

/// Hidden `servers __guard PID`: waits until PID exits, then stops the instance. Started by
/// `cargo xtask ci` in its own process group, so it survives the Ctrl-C that kills the run.
pub fn guard(inst: &Instance, pid: u32) -> Result<()> {
    while util::pid_alive(pid) {
        thread::sleep(Duration::from_millis(250));
    }
    if inst.marker().exists() && any_own_process(inst) {
        eprintln!("xtask (pid {pid}) is gone; stopping the servers it started");
        down(inst, true)?;
    }
    Ok(())
}

/// `cargo xtask servers ...`.
pub fn cmd(args: &[String]) -> Result<()> {
    let inst = Instance::from_env()?;
    let sub = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    match sub {
        "up" => up(&inst).map(|_| ()),
        "down" => {
            let keep = match rest {
                [] => false,
                [k] if k == "--keep-state" => true,
                _ => bail!("usage: cargo xtask servers down [--keep-state]"),
            };
            down(&inst, keep)
        }
        "status" => {
            if status(&inst) {
                Ok(())
            } else {
                std::process::exit(3)
            }
        }
        "env" => {
            for (k, v) in env_pairs(&inst) {
                println!("{k}={v}");
            }
            Ok(())
        }
        "__guard" => {
            let pid = rest.first().context("__guard needs a pid")?.parse()?;
            guard(&inst, pid)
        }
        _ => bail!("usage: cargo xtask servers up|down [--keep-state]|status|env"),
    }
}
