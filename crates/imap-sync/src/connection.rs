//! An authenticated IMAP connection: connect (TLS, STARTTLS, plaintext), authenticate
//! (LOGIN, PLAIN, XOAUTH2, OAUTHBEARER), CAPABILITY, ID, ENABLE, and the mailbox-level
//! commands the sync uses (LIST, STATUS, SELECT).

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use mailsync_store::Security;

use crate::config::{Auth, ImapConfig};
use crate::error::{Error, ResponseCode};
use crate::transport::{self, Transport};
use crate::wire::{Cmd, Done, Event, ListEntry, Response, Status, StatusItems, Untagged, Wire};

/// What SELECT told us about the selected mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Selected {
    /// The wire (modified UTF-7) name.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
    /// `None` with `[NOMODSEQ]` or without CONDSTORE.
    pub highestmodseq: Option<u64>,
    pub read_only: bool,
    /// RFC 8474 `[MAILBOXID (id)]` (servers with OBJECTID): the mailbox's identity, kept
    /// across renames and new when a mailbox of the same name is created again.
    pub mailbox_id: Option<String>,
}

/// An authenticated IMAP connection. Not cancel-safe in the middle of a command: if a future
/// of this crate is dropped before it completes, the connection reports
/// [`Error::ConnectionLost`] on its next use and must be replaced.
pub struct Connection {
    pub(crate) wire: Wire,
    caps: BTreeSet<String>,
    disabled: Vec<String>,
    condstore: bool,
    qresync: bool,
    pub(crate) selected: Option<Selected>,
    host: String,
    config: ImapConfig,
    mechanism: &'static str,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("condstore", &self.condstore)
            .field("qresync", &self.qresync)
            .field("selected", &self.selected.as_ref().map(|s| &s.name))
            .finish_non_exhaustive()
    }
}

fn caps_from(list: &[String]) -> BTreeSet<String> {
    list.iter().map(|c| c.to_ascii_uppercase()).collect()
}

impl Connection {
    /// Connects, secures, authenticates and enables CONDSTORE/QRESYNC when offered.
    pub async fn connect(cfg: &ImapConfig) -> Result<Connection, Error> {
        if cfg.security == Security::Plain
            && !cfg.allow_plaintext
            && !transport::is_loopback(&cfg.host)
        {
            return Err(Error::PlaintextRefused {
                host: cfg.host.clone(),
            });
        }
        let tcp = transport::tcp(cfg).await?;
        let t = match cfg.security {
            Security::Tls => transport::tls(cfg, tcp).await?,
            Security::Starttls | Security::Plain => Transport::Plain(tcp),
        };
        let mut wire = Wire::new(t, cfg.timeouts);
        wire.timeouts.read = cfg.timeouts.connect;
        let (mut caps, preauth) = greeting(&mut wire).await?;
        if cfg.security == Security::Starttls {
            let pre = match caps.take() {
                Some(c) => c,
                None => capability(&mut wire).await?,
            };
            if !pre.contains("STARTTLS") {
                return Err(Error::MissingCapability {
                    capability: "STARTTLS".into(),
                });
            }
            wire.run(&Cmd::new("STARTTLS")).await?;
            let Transport::Plain(tcp) = wire.into_transport() else {
                return Err(Error::Protocol("STARTTLS on a TLS stream".into()));
            };
            let t = transport::tls(cfg, tcp).await?;
            wire = Wire::new(t, cfg.timeouts);
            wire.timeouts.read = cfg.timeouts.connect;
            // Capabilities from before TLS must not be trusted.
            caps = None;
        }
        let pre = match caps {
            Some(c) => c,
            None => capability(&mut wire).await?,
        };
        wire.literal_plus = pre.contains("LITERAL+");
        let (mechanism, post) = if preauth {
            ("PREAUTH", None)
        } else {
            authenticate(&mut wire, cfg, &pre).await?
        };
        let caps = match post {
            Some(c) if c.contains("IMAP4REV1") || c.contains("IMAP4REV2") => c,
            _ => capability(&mut wire).await?,
        };
        wire.timeouts.read = cfg.timeouts.read;
        let mut conn = Connection {
            wire,
            caps,
            disabled: cfg
                .disabled_extensions
                .iter()
                .map(|d| d.to_ascii_uppercase())
                .collect(),
            condstore: false,
            qresync: false,
            selected: None,
            host: cfg.host.clone(),
            config: cfg.clone(),
            mechanism,
        };
        conn.wire.literal_plus = conn.has_capability("LITERAL+");
        if conn.has_capability("ID") {
            let id = Cmd::new("ID").raw(&format!(
                "(\"name\" {} \"version\" \"{}\")",
                quote(&cfg.client_name),
                env!("CARGO_PKG_VERSION")
            ));
            match conn.wire.run(&id).await {
                Ok(_) => {}
                Err(e) if e.is_connection() => return Err(e),
                Err(e) => tracing::debug!(error = %e, "ID refused"),
            }
        }
        conn.enable().await?;
        Ok(conn)
    }

    async fn enable(&mut self) -> Result<(), Error> {
        let want = if self.has_capability("QRESYNC") && self.has_capability("ENABLE") {
            "QRESYNC"
        } else if self.has_capability("CONDSTORE") && self.has_capability("ENABLE") {
            "CONDSTORE"
        } else {
            return Ok(());
        };
        let (data, _) = self.wire.run(&Cmd::new("ENABLE").raw(want)).await?;
        for u in data {
            if let Untagged::Capabilities(list) = u {
                for c in list {
                    match c.as_str() {
                        "QRESYNC" => {
                            self.qresync = true;
                            self.condstore = true;
                        }
                        "CONDSTORE" => self.condstore = true,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces this connection with a new one made from the same configuration (after a
    /// connection-class error). The selection is lost.
    pub async fn reconnect(&mut self) -> Result<(), Error> {
        let fresh = Connection::connect(&self.config).await?;
        *self = fresh;
        Ok(())
    }

    /// The configuration this connection was made from.
    pub fn config(&self) -> &ImapConfig {
        &self.config
    }

    /// How this connection authenticated: the SASL mechanism (`PLAIN`, `XOAUTH2`,
    /// `OAUTHBEARER`), `LOGIN`, or `PREAUTH`.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// Whether the server offers `cap` (case-insensitive) and it is not disabled by the
    /// configuration.
    pub fn has_capability(&self, cap: &str) -> bool {
        let c = cap.to_ascii_uppercase();
        self.caps.contains(&c) && !self.disabled.contains(&c)
    }

    /// The server's capabilities (upper case), including disabled ones.
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.caps.iter().map(String::as_str)
    }

    /// True when CONDSTORE is enabled (mod-sequences are available).
    pub fn condstore_enabled(&self) -> bool {
        self.condstore
    }

    /// False once the connection failed (lost, timed out, or a command was abandoned
    /// midway): drop it and connect again.
    pub fn is_usable(&self) -> bool {
        !self.wire.is_dead()
    }

    /// True when QRESYNC is enabled.
    pub fn qresync_enabled(&self) -> bool {
        self.qresync
    }

    /// Sends NOOP (a liveness check that also collects pending untagged data).
    pub async fn noop(&mut self) -> Result<(), Error> {
        let (data, _) = self.wire.run(&Cmd::new("NOOP")).await?;
        for u in &data {
            self.note(u);
        }
        Ok(())
    }

    /// Logs out politely (errors ignored: the connection is being dropped anyway).
    pub async fn logout(mut self) {
        let _ = self.wire.run(&Cmd::new("LOGOUT")).await;
    }

    /// Keeps `selected` current with unsolicited data seen during other commands.
    pub(crate) fn note(&mut self, u: &Untagged) {
        let Some(s) = self.selected.as_mut() else {
            return;
        };
        match u {
            Untagged::Exists(n) => s.exists = *n,
            Untagged::Expunge => s.exists = s.exists.saturating_sub(1),
            Untagged::Vanished {
                earlier: false,
                uids,
            } => {
                let n: u64 = uids.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
                s.exists = s
                    .exists
                    .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
            }
            _ => {}
        }
    }

    /// Runs a command, noting unsolicited data, returning the rest.
    pub(crate) async fn run(&mut self, cmd: &Cmd) -> Result<(Vec<Untagged>, Done), Error> {
        let (data, done) = self.wire.run(cmd).await?;
        for u in &data {
            self.note(u);
        }
        Ok((data, done))
    }

    /// Whether [`Connection::list`] asks the STATUS of every mailbox in the LIST itself.
    pub(crate) fn lists_status(&self) -> bool {
        self.has_capability("LIST-STATUS") && self.has_capability("LIST-EXTENDED")
    }

    /// How many mailboxes a plain `LIST "" "*"` names. A server answers it from its mailbox
    /// list alone, where LIST-STATUS opens every mailbox (Dovecot 2.3, 100,000 Maildir++
    /// folders, a fresh login: 27 s against 46 s; a second LIST in one session: 1 s).
    pub(crate) async fn count_mailboxes(&mut self) -> Result<usize, Error> {
        let (data, _) = self.run(&Cmd::new("LIST").raw("\"\" \"*\"")).await?;
        Ok(data
            .iter()
            .filter(|u| matches!(u, Untagged::List(_)))
            .count())
    }

    /// `LIST "" "*"`, with SPECIAL-USE and STATUS (LIST-STATUS) when offered.
    pub(crate) async fn list(
        &mut self,
    ) -> Result<(Vec<ListEntry>, Vec<(String, StatusItems)>), Error> {
        let cmd = if self.lists_status() {
            let mut ret = String::from("RETURN (");
            if self.has_capability("SPECIAL-USE") {
                ret.push_str("SPECIAL-USE ");
            }
            ret.push_str("STATUS (");
            ret.push_str(&self.status_items());
            ret.push_str("))");
            Cmd::new("LIST").raw("\"\" \"*\"").raw(&ret)
        } else {
            Cmd::new("LIST").raw("\"\" \"*\"")
        };
        let (data, _) = self.run(&cmd).await?;
        let mut lists = Vec::new();
        let mut statuses = Vec::new();
        for u in data {
            match u {
                Untagged::List(l) => lists.push(l),
                Untagged::Status { mailbox, items } => statuses.push((mailbox, items)),
                _ => {}
            }
        }
        Ok((lists, statuses))
    }

    pub(crate) fn status_items(&self) -> String {
        let mut s = String::from("MESSAGES UNSEEN UIDNEXT UIDVALIDITY");
        if self.condstore {
            s.push_str(" HIGHESTMODSEQ");
        }
        s
    }

    /// STATUS of several mailboxes in one round trip. A mailbox that cannot be examined
    /// (deleted meanwhile) gives its error in place.
    pub(crate) async fn status_many(
        &mut self,
        names: &[String],
    ) -> Result<Vec<Result<StatusItems, Error>>, Error> {
        let items = format!("({})", self.status_items());
        let cmds: Vec<Cmd> = names
            .iter()
            .map(|n| Cmd::new("STATUS").astring(n).raw(&items))
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for chunk in cmds.chunks(200) {
            let results = self.wire.pipeline(chunk).await?;
            for r in results {
                out.push(r.map(|(data, _)| {
                    data.into_iter()
                        .find_map(|u| match u {
                            Untagged::Status { items, .. } => Some(items),
                            _ => None,
                        })
                        .unwrap_or_default()
                }));
            }
        }
        Ok(out)
    }

    /// Sends SELECT and returns its tag; the caller reads the responses (QRESYNC may bring
    /// many FETCH/VANISHED) through [`SelectState`].
    pub(crate) async fn start_select(
        &mut self,
        name: &str,
        qresync: Option<(u32, u64, Option<u32>)>,
    ) -> Result<String, Error> {
        self.selected = None;
        let mut cmd = Cmd::new("SELECT").astring(name);
        match qresync {
            Some((uv, modseq, last_uid)) if self.qresync => {
                let known = last_uid
                    .filter(|&u| u > 0)
                    .map(|u| format!(" 1:{u}"))
                    .unwrap_or_default();
                cmd = cmd.raw(&format!("(QRESYNC ({uv} {modseq}{known}))"));
            }
            _ if self.condstore => cmd = cmd.raw("(CONDSTORE)"),
            _ => {}
        }
        self.wire.send(&cmd).await
    }

    /// A plain SELECT, collecting everything.
    pub(crate) async fn select(&mut self, name: &str) -> Result<Selected, Error> {
        if let Some(s) = &self.selected
            && s.name == name
        {
            return Ok(s.clone());
        }
        let tag = self.start_select(name, None).await?;
        let mut st = SelectState::new(name);
        loop {
            match self.wire.next(&tag).await? {
                Event::Data(u) => {
                    st.absorb(u);
                }
                Event::Done(d) => return self.finish_select(st, &d),
            }
        }
    }

    pub(crate) fn finish_select(
        &mut self,
        st: SelectState,
        done: &Done,
    ) -> Result<Selected, Error> {
        let mut sel = st.finish(self.condstore)?;
        if !self.has_capability("OBJECTID") {
            sel.mailbox_id = None;
        }
        if matches!(done.code, Some(ResponseCode::ReadOnly)) {
            sel.read_only = true;
        }
        self.selected = Some(sel.clone());
        Ok(sel)
    }

    /// Forgets the selection after a failed command that may have deselected.
    pub(crate) fn forget_selection(&mut self) {
        self.selected = None;
    }
}

/// Accumulates SELECT responses.
#[derive(Debug)]
pub(crate) struct SelectState {
    sel: Selected,
    uidvalidity: Option<u32>,
    nomodseq: bool,
}

impl SelectState {
    pub fn new(name: &str) -> Self {
        Self {
            sel: Selected {
                name: name.to_owned(),
                ..Selected::default()
            },
            uidvalidity: None,
            nomodseq: false,
        }
    }

    /// Takes in the mailbox-level data; returns data it does not consume (FETCH, VANISHED).
    pub fn absorb(&mut self, u: Untagged) -> Option<Untagged> {
        match u {
            Untagged::Exists(n) => self.sel.exists = n,
            Untagged::Cond {
                code: Some(code), ..
            } => match code {
                ResponseCode::UidValidity(v) => self.uidvalidity = Some(v),
                ResponseCode::UidNext(n) => self.sel.uidnext = Some(n),
                ResponseCode::HighestModSeq(m) => self.sel.highestmodseq = Some(m),
                ResponseCode::NoModSeq => self.nomodseq = true,
                ref c => {
                    if let Some(id) = mailbox_id_code(c) {
                        self.sel.mailbox_id = Some(id);
                    }
                }
            },
            u @ (Untagged::Fetch(_) | Untagged::Vanished { .. }) => return Some(u),
            _ => {}
        }
        None
    }

    fn finish(mut self, condstore: bool) -> Result<Selected, Error> {
        self.sel.uidvalidity = self.uidvalidity.ok_or_else(|| {
            Error::Protocol(format!("SELECT {} without UIDVALIDITY", self.sel.name))
        })?;
        if self.nomodseq || !condstore {
            self.sel.highestmodseq = None;
        }
        Ok(self.sel)
    }
}

/// The id of a `MAILBOXID (id)` response code (RFC 8474 §4.1), if `code` is one with a
/// well-formed id (`1*255(ALPHA / DIGIT / "_" / "-")`); anything else is not an identity.
pub(crate) fn mailbox_id_code(code: &ResponseCode) -> Option<String> {
    let ResponseCode::Other { name, args } = code else {
        return None;
    };
    if name != "MAILBOXID" {
        return None;
    }
    let id = args
        .as_deref()?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?
        .trim();
    is_objectid(id).then(|| id.to_owned())
}

/// An RFC 8474 object id: `1*255(ALPHA / DIGIT / "_" / "-")`. Anything else from a server is
/// no identity (and unbounded, it would not fit PostgreSQL's B-tree keys).
pub(crate) fn is_objectid(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An IMAP quoted string.
pub(crate) fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars().filter(|c| *c != '\r' && *c != '\n') {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Reads the greeting: its capabilities (when it carries them) and whether it is PREAUTH.
async fn greeting(wire: &mut Wire) -> Result<(Option<BTreeSet<String>>, bool), Error> {
    loop {
        match wire.read().await? {
            Response::Untagged(Untagged::Cond { status, code, text }) => {
                let caps = match code {
                    Some(ResponseCode::Capability(c)) => Some(caps_from(&c)),
                    _ => None,
                };
                return match status {
                    Status::Ok => Ok((caps, false)),
                    Status::PreAuth => Ok((caps, true)),
                    _ => {
                        wire.kill();
                        Err(Error::ConnectionLost {
                            bye: Some(text),
                            source: None,
                        })
                    }
                };
            }
            Response::Untagged(_) => continue,
            _ => return Err(Error::Protocol("no greeting".into())),
        }
    }
}

async fn capability(wire: &mut Wire) -> Result<BTreeSet<String>, Error> {
    let (data, _) = wire.run(&Cmd::new("CAPABILITY")).await?;
    let mut caps = BTreeSet::new();
    for u in data {
        if let Untagged::Capabilities(c) = u {
            caps.extend(c.into_iter().map(|s| s.to_ascii_uppercase()));
        }
    }
    Ok(caps)
}

fn auth_error(e: Error) -> Error {
    match e {
        Error::No { code, text, .. } => Error::Auth { code, text },
        other => other,
    }
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The XOAUTH2 initial response, and the answer to an error challenge (an empty line).
fn xoauth2(cfg: &ImapConfig, token: &str) -> (&'static str, String, &'static str) {
    let s = format!("user={}\x01auth=Bearer {token}\x01\x01", cfg.username);
    ("XOAUTH2", b64(s.as_bytes()), "")
}

/// The OAUTHBEARER initial response (RFC 7628 §3.1), and the answer to an error challenge
/// (a single 0x01).
fn oauthbearer(cfg: &ImapConfig, token: &str) -> (&'static str, String, &'static str) {
    let s = format!(
        "n,a={},\x01host={}\x01port={}\x01auth=Bearer {token}\x01\x01",
        cfg.username, cfg.host, cfg.port
    );
    ("OAUTHBEARER", b64(s.as_bytes()), "AQ==")
}

/// Authenticates; returns the mechanism used and the capabilities announced in the tagged OK,
/// if any.
async fn authenticate(
    wire: &mut Wire,
    cfg: &ImapConfig,
    caps: &BTreeSet<String>,
) -> Result<(&'static str, Option<BTreeSet<String>>), Error> {
    let sasl_ir = caps.contains("SASL-IR");
    let (mechanism, initial, on_error) = match &cfg.auth {
        Auth::Password(pw) if caps.contains("AUTH=PLAIN") => {
            let mut v = Vec::new();
            v.push(0);
            v.extend_from_slice(cfg.username.as_bytes());
            v.push(0);
            v.extend_from_slice(pw.as_bytes());
            ("PLAIN", b64(&v), "*")
        }
        Auth::Password(pw) | Auth::Login(pw) => {
            if caps.contains("LOGINDISABLED") {
                return Err(Error::MissingCapability {
                    capability: "LOGIN (the server says LOGINDISABLED)".into(),
                });
            }
            let cmd = Cmd::new("LOGIN")
                .astring(&cfg.username)
                .astring(pw)
                .sensitive();
            let (_, done) = wire.run(&cmd).await.map_err(auth_error)?;
            return Ok((
                "LOGIN",
                match done.code {
                    Some(ResponseCode::Capability(c)) => Some(caps_from(&c)),
                    _ => None,
                },
            ));
        }
        Auth::Bearer(token) if caps.contains("AUTH=OAUTHBEARER") => oauthbearer(cfg, token),
        Auth::Bearer(token) if caps.contains("AUTH=XOAUTH2") => xoauth2(cfg, token),
        Auth::Bearer(_) => {
            return Err(Error::MissingCapability {
                capability: "AUTH=OAUTHBEARER or AUTH=XOAUTH2".into(),
            });
        }
        Auth::XOAuth2(token) => {
            if !caps.contains("AUTH=XOAUTH2") {
                return Err(Error::MissingCapability {
                    capability: "AUTH=XOAUTH2".into(),
                });
            }
            xoauth2(cfg, token)
        }
        Auth::OAuthBearer(token) => {
            if !caps.contains("AUTH=OAUTHBEARER") {
                return Err(Error::MissingCapability {
                    capability: "AUTH=OAUTHBEARER".into(),
                });
            }
            oauthbearer(cfg, token)
        }
    };
    let cmd = if sasl_ir {
        Cmd::new("AUTHENTICATE")
            .raw(mechanism)
            .raw(&initial)
            .sensitive()
    } else {
        Cmd::new("AUTHENTICATE").raw(mechanism).sensitive()
    };
    let tag = wire.send_expecting_continuation(&cmd).await?;
    let mut sent_initial = sasl_ir;
    loop {
        match wire.read().await? {
            Response::Continue(_) => {
                let line = if sent_initial {
                    on_error.to_owned()
                } else {
                    sent_initial = true;
                    initial.clone()
                };
                wire.write_all(format!("{line}\r\n").as_bytes()).await?;
            }
            Response::Tagged {
                tag: t,
                status,
                code,
                text,
            } if t == tag => {
                wire.set_ready();
                return match status {
                    Status::Ok => Ok((
                        mechanism,
                        match code {
                            Some(ResponseCode::Capability(c)) => Some(caps_from(&c)),
                            _ => None,
                        },
                    )),
                    Status::No => Err(Error::Auth { code, text }),
                    _ => Err(Error::Bad {
                        command: format!("AUTHENTICATE {mechanism}"),
                        code,
                        text,
                    }),
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[MAILBOXID (id)]` (RFC 8474 §4.1) gives the id; a malformed one (Cyrus 3.6 answers a
    /// STATUS MAILBOXID with stray bytes) or another code gives none.
    #[test]
    fn mailbox_id_codes() {
        let code = |t: &str| ResponseCode::split_text(t).0.unwrap_or(ResponseCode::Alert);
        let id = |t: &str| mailbox_id_code(&code(t));
        assert_eq!(
            id("[MAILBOXID (4lo5qmxhpnyjr86psae4bu13)] Ok").as_deref(),
            Some("4lo5qmxhpnyjr86psae4bu13")
        );
        assert_eq!(id("[mailboxid (F_a-1)] Ok").as_deref(), Some("F_a-1"));
        for bad in [
            "[MAILBOXID ()] Ok",
            "[MAILBOXID (a b)] Ok",
            "[MAILBOXID (\u{a9}V)] Ok",
            "[MAILBOXID abc] Ok",
            "[MAILBOXID] Ok",
            "[UIDVALIDITY 3] Ok",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
        let long = format!("[MAILBOXID ({})] Ok", "a".repeat(256));
        assert_eq!(id(&long), None);
    }
}
