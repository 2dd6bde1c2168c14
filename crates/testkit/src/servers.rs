//! Connection details of the real test servers started by `cargo xtask servers up`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::accounts::{Account, DOVECOT_T_PASSWORD};
use crate::error::Error;
use crate::sink::{self, SinkMessage};

/// Every key `cargo xtask servers up` writes (and `cargo xtask ci` exports).
pub const KEYS: &[&str] = &[
    "MAILSYNC_SERVERS_ROOT",
    "MAILSYNC_DOVECOT_HOST",
    "MAILSYNC_DOVECOT_IMAP_PORT",
    "MAILSYNC_DOVECOT_IMAPS_PORT",
    "MAILSYNC_DOVECOT_CONF",
    "MAILSYNC_DOVECOT_MAIL_ROOT",
    "MAILSYNC_CYRUS_HOST",
    "MAILSYNC_CYRUS_IMAP_PORT",
    "MAILSYNC_CYRUS_HTTP_PORT",
    "MAILSYNC_CYRUS_LMTP",
    "MAILSYNC_CYRUS_LMTP_SOCKET",
    "MAILSYNC_JMAP_SESSION_URL",
    "MAILSYNC_JMAP_WELL_KNOWN",
    "MAILSYNC_SMTP_HOST",
    "MAILSYNC_SMTP_PORT",
    "MAILSYNC_SMTP_SINK_DIR",
    "MAILSYNC_TLS_CA",
    "MAILSYNC_PG_URL",
];

/// Where the test servers listen, parsed and checked.
///
/// ```no_run
/// let servers = mailsync_testkit::Servers::load()?;
/// let (host, port) = (servers.dovecot_host(), servers.dovecot_imap_port());
/// # let _ = (host, port);
/// # Ok::<(), mailsync_testkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Servers {
    vars: BTreeMap<String, String>,
    source: Option<PathBuf>,
    dovecot_host: String,
    dovecot_imap_port: u16,
    dovecot_imaps_port: u16,
    dovecot_conf: PathBuf,
    dovecot_mail_root: PathBuf,
    cyrus_host: String,
    cyrus_imap_port: u16,
    cyrus_http_port: u16,
    cyrus_lmtp: String,
    jmap_session_url: String,
    jmap_well_known: String,
    smtp_host: String,
    smtp_port: u16,
    smtp_sink_dir: PathBuf,
    tls_ca: PathBuf,
    pg_url: String,
}

impl Servers {
    /// Loads the connection details: each key from the environment if set, else from the env
    /// file, which is `$MAILSYNC_SERVERS_ENV`, else `$MAILSYNC_SERVERS_ROOT/servers.env`, else
    /// the first `.state/servers.env` found walking up from `CARGO_MANIFEST_DIR` (or the current
    /// directory). Fails with [`Error::NotRunning`] when there is neither.
    pub fn load() -> Result<Servers, Error> {
        let mut searched = Vec::new();
        let file = find_env_file(&mut searched);
        let mut vars = BTreeMap::new();
        if let Some(path) = &file {
            vars = parse_env_file(path)?;
        }
        let mut from_env = false;
        for key in KEYS {
            if let Ok(v) = std::env::var(key) {
                vars.insert((*key).to_string(), v);
                from_env = true;
            }
        }
        if file.is_none() && !from_env {
            return Err(Error::NotRunning { searched });
        }
        Servers::from_vars(vars, file)
    }

    /// Parses one env file (`KEY=VALUE` lines), ignoring the environment.
    pub fn from_file(path: &Path) -> Result<Servers, Error> {
        let vars = parse_env_file(path)?;
        Servers::from_vars(vars, Some(path.to_path_buf()))
    }

    /// Builds from explicit `KEY=VALUE` pairs (for unit tests of code that takes a `Servers`).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Servers, Error> {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Servers::from_vars(vars, None)
    }

    fn from_vars(
        vars: BTreeMap<String, String>,
        source: Option<PathBuf>,
    ) -> Result<Servers, Error> {
        let get = |key: &'static str| -> Result<String, Error> {
            vars.get(key).cloned().ok_or_else(|| Error::MissingKey {
                key,
                source_file: source.clone(),
            })
        };
        let opt =
            |key: &str, default: &str| vars.get(key).cloned().unwrap_or_else(|| default.into());
        let port = |key: &'static str| -> Result<u16, Error> {
            let v = get(key)?;
            v.trim()
                .parse()
                .map_err(|_| Error::BadValue { key, value: v })
        };
        let dovecot_conf = PathBuf::from(get("MAILSYNC_DOVECOT_CONF")?);
        let dovecot_mail_root = match vars.get("MAILSYNC_DOVECOT_MAIL_ROOT") {
            Some(v) => PathBuf::from(v),
            None => dovecot_conf.parent().unwrap_or(Path::new("/")).join("mail"),
        };
        Ok(Servers {
            dovecot_host: get("MAILSYNC_DOVECOT_HOST")?,
            dovecot_imap_port: port("MAILSYNC_DOVECOT_IMAP_PORT")?,
            dovecot_imaps_port: port("MAILSYNC_DOVECOT_IMAPS_PORT")?,
            dovecot_conf,
            dovecot_mail_root,
            cyrus_host: opt("MAILSYNC_CYRUS_HOST", "127.0.0.1"),
            cyrus_imap_port: port("MAILSYNC_CYRUS_IMAP_PORT")?,
            cyrus_http_port: port("MAILSYNC_CYRUS_HTTP_PORT")?,
            cyrus_lmtp: get("MAILSYNC_CYRUS_LMTP")?,
            jmap_session_url: get("MAILSYNC_JMAP_SESSION_URL")?,
            jmap_well_known: get("MAILSYNC_JMAP_WELL_KNOWN")?,
            smtp_host: opt("MAILSYNC_SMTP_HOST", "127.0.0.1"),
            smtp_port: port("MAILSYNC_SMTP_PORT")?,
            smtp_sink_dir: PathBuf::from(get("MAILSYNC_SMTP_SINK_DIR")?),
            tls_ca: PathBuf::from(get("MAILSYNC_TLS_CA")?),
            pg_url: get("MAILSYNC_PG_URL")?,
            vars,
            source,
        })
    }

    /// The env file the details came from (`None` when all came from the environment).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Any key, raw (including keys this version does not know).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Dovecot's host (`127.0.0.1`).
    pub fn dovecot_host(&self) -> &str {
        &self.dovecot_host
    }
    /// Dovecot plain IMAP port (STARTTLS offered), 10143 by default.
    pub fn dovecot_imap_port(&self) -> u16 {
        self.dovecot_imap_port
    }
    /// Dovecot implicit-TLS IMAP port, 10993 by default.
    pub fn dovecot_imaps_port(&self) -> u16 {
        self.dovecot_imaps_port
    }
    /// Dovecot's config file, for `doveadm -c <conf>` (see [`Servers::doveadm`]).
    pub fn dovecot_conf(&self) -> &Path {
        &self.dovecot_conf
    }
    /// Directory holding each Dovecot user's home (`<root>/<user>/Maildir`).
    pub fn dovecot_mail_root(&self) -> &Path {
        &self.dovecot_mail_root
    }
    /// Cyrus' host (`127.0.0.1`).
    pub fn cyrus_host(&self) -> &str {
        &self.cyrus_host
    }
    /// Cyrus plain IMAP port, 10144 by default.
    pub fn cyrus_imap_port(&self) -> u16 {
        self.cyrus_imap_port
    }
    /// Cyrus HTTP (JMAP) port, 10080 by default.
    pub fn cyrus_http_port(&self) -> u16 {
        self.cyrus_http_port
    }
    /// Cyrus LMTP as `host:port` (`127.0.0.1:10024`).
    pub fn cyrus_lmtp(&self) -> &str {
        &self.cyrus_lmtp
    }
    /// Cyrus LMTP unix socket, if known.
    pub fn cyrus_lmtp_socket(&self) -> Option<&Path> {
        self.get("MAILSYNC_CYRUS_LMTP_SOCKET").map(Path::new)
    }
    /// JMAP session resource (`http://127.0.0.1:10080/jmap/`).
    pub fn jmap_session_url(&self) -> &str {
        &self.jmap_session_url
    }
    /// JMAP well-known URL (`http://127.0.0.1:10080/.well-known/jmap`, answers 301).
    pub fn jmap_well_known(&self) -> &str {
        &self.jmap_well_known
    }
    /// SMTP sink host (`127.0.0.1`).
    pub fn smtp_host(&self) -> &str {
        &self.smtp_host
    }
    /// SMTP sink port (STARTTLS with [`Servers::tls_ca`], any AUTH accepted), 10025 by default.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }
    /// The sink's directory (see [`crate::sink_messages`]).
    pub fn smtp_sink_dir(&self) -> &Path {
        &self.smtp_sink_dir
    }
    /// PEM file of the self-signed certificate of Dovecot IMAPS/STARTTLS and the sink.
    pub fn tls_ca(&self) -> &Path {
        &self.tls_ca
    }
    /// The PEM bytes of [`Servers::tls_ca`].
    pub fn tls_ca_pem(&self) -> Result<Vec<u8>, Error> {
        fs::read(&self.tls_ca).map_err(Error::io(format!("reading {}", self.tls_ca.display())))
    }
    /// PostgreSQL URL with trust auth (`postgres://postgres@127.0.0.1:5432/test`); create your
    /// own database per test run and drop it.
    pub fn pg_url(&self) -> &str {
        &self.pg_url
    }

    /// Dovecot `alice` (password `alicepw`).
    pub fn dovecot_alice(&self) -> Account {
        Account::new("alice", "alicepw")
    }

    /// A fresh, empty Dovecot account `t_<tag>_<unique>` (password `testpw`); it exists as soon
    /// as it logs in. `tag` should be short and `[a-z0-9_]`.
    pub fn fresh_dovecot_user(&self, tag: &str) -> Account {
        Account::new(format!("t_{}", unique_name(tag)), DOVECOT_T_PASSWORD)
    }

    /// Messages received by the SMTP sink so far, in arrival order.
    pub fn sink_messages(&self) -> Result<Vec<SinkMessage>, Error> {
        sink::sink_messages(&self.smtp_sink_dir)
    }

    /// Runs `doveadm -c <dovecot conf> <args>` ("another client"), returning its stdout.
    pub fn doveadm(&self, args: &[&str]) -> Result<String, Error> {
        crate::doveadm(&self.dovecot_conf, args)
    }
}

/// A name unique across processes and calls: `<tag>_<pid>_<time>_<counter>` (lowercase
/// alphanumerics and `_`), for Dovecot users, mailboxes, subjects and Message-IDs.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("{tag}_{}_{t:x}_{n}", std::process::id())
}

fn find_env_file(searched: &mut Vec<PathBuf>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(f) = std::env::var_os("MAILSYNC_SERVERS_ENV") {
        candidates.push(PathBuf::from(f));
    }
    if let Some(root) = std::env::var_os("MAILSYNC_SERVERS_ROOT") {
        candidates.push(PathBuf::from(root).join("servers.env"));
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("CARGO_MANIFEST_DIR") {
        starts.push(PathBuf::from(d));
    }
    if let Ok(d) = std::env::current_dir() {
        starts.push(d);
    }
    // This crate lives inside the workspace too.
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in starts {
        for dir in start.ancestors() {
            candidates.push(dir.join(".state").join("servers.env"));
        }
    }
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
        if !searched.contains(&c) {
            searched.push(c);
        }
    }
    None
}

fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text =
        fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    Ok(parse_env(&text))
}

/// Parses `KEY=VALUE` lines (`#` comments, optional `export `, optional quotes).
pub(crate) fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            vars.insert(k.trim().to_string(), v.to_string());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(&'static str, &'static str)> {
        vec![
            ("MAILSYNC_DOVECOT_HOST", "127.0.0.1"),
            ("MAILSYNC_DOVECOT_IMAP_PORT", "10143"),
            ("MAILSYNC_DOVECOT_IMAPS_PORT", "10993"),
            ("MAILSYNC_DOVECOT_CONF", "/x/dovecot/dovecot.conf"),
            ("MAILSYNC_CYRUS_IMAP_PORT", "10144"),
            ("MAILSYNC_CYRUS_HTTP_PORT", "10080"),
            ("MAILSYNC_CYRUS_LMTP", "127.0.0.1:10024"),
            ("MAILSYNC_JMAP_SESSION_URL", "http://127.0.0.1:10080/jmap/"),
            (
                "MAILSYNC_JMAP_WELL_KNOWN",
                "http://127.0.0.1:10080/.well-known/jmap",
            ),
            ("MAILSYNC_SMTP_PORT", "10025"),
            ("MAILSYNC_SMTP_SINK_DIR", "/x/smtp"),
            ("MAILSYNC_TLS_CA", "/x/tls/cert.pem"),
            ("MAILSYNC_PG_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ]
    }

    #[test]
    fn parses_pairs_with_defaults_for_optional_keys() {
        let s = Servers::from_pairs(sample()).unwrap();
        assert_eq!(s.dovecot_imap_port(), 10143);
        assert_eq!(s.cyrus_host(), "127.0.0.1");
        assert_eq!(s.dovecot_mail_root(), Path::new("/x/dovecot/mail"));
        assert_eq!(s.cyrus_lmtp_socket(), None);
    }

    #[test]
    fn missing_and_bad_keys_are_named() {
        let mut pairs = sample();
        pairs.retain(|(k, _)| *k != "MAILSYNC_PG_URL");
        match Servers::from_pairs(pairs) {
            Err(Error::MissingKey { key, .. }) => assert_eq!(key, "MAILSYNC_PG_URL"),
            other => panic!("expected MissingKey, got {other:?}"),
        }
        let mut pairs = sample();
        pairs.push(("MAILSYNC_SMTP_PORT", "smtp"));
        match Servers::from_pairs(pairs) {
            Err(Error::BadValue { key, value }) => {
                assert_eq!((key, value.as_str()), ("MAILSYNC_SMTP_PORT", "smtp"))
            }
            other => panic!("expected BadValue, got {other:?}"),
        }
    }

    #[test]
    fn env_file_syntax() {
        let v = parse_env("# c\nA=1\nexport B=\"two\"\n\n C = 3 \n");
        assert_eq!(v.get("A").map(String::as_str), Some("1"));
        assert_eq!(v.get("B").map(String::as_str), Some("two"));
        assert_eq!(v.get("C").map(String::as_str), Some("3"));
    }

    #[test]
    fn not_running_message_tells_what_to_do() {
        let e = Error::NotRunning {
            searched: vec![PathBuf::from("/a/.state/servers.env")],
        };
        let text = e.to_string();
        assert!(text.starts_with("test servers are not running: run `cargo xtask servers up`"));
        assert!(text.contains("/a/.state/servers.env"));
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }
}
