//! Connection settings: server, security, credentials, CA file, timeouts and extension opt-outs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mailsync_store::Security;

/// How to authenticate. Secrets are never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// A password: `AUTHENTICATE PLAIN` when the server offers it, else `LOGIN`.
    Password(String),
    /// A password, always sent with `LOGIN`.
    Login(String),
    /// An OAuth 2 access token with the `XOAUTH2` mechanism (Gmail, Outlook).
    XOAuth2(String),
    /// An OAuth 2 access token with `OAUTHBEARER` (RFC 7628).
    OAuthBearer(String),
    /// An OAuth 2 access token: `OAUTHBEARER` where the server advertises it, else `XOAUTH2`.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Password(_) => "Password",
            Self::Login(_) => "Login",
            Self::XOAuth2(_) => "XOAuth2",
            Self::OAuthBearer(_) => "OAuthBearer",
            Self::Bearer(_) => "Bearer",
        };
        write!(f, "{kind}(***)")
    }
}

/// Time limits. Every network wait is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP connect plus TLS handshake plus greeting.
    pub connect: Duration,
    /// Waiting for the next response line of a command (not the whole command: a long FETCH
    /// is fine as long as data keeps coming).
    pub read: Duration,
    /// Writing a command.
    pub write: Duration,
    /// How long one IDLE command lasts before it is re-issued (RFC 2177: under 29 minutes).
    pub idle_reissue: Duration,
    /// NOOP polling interval when the server has no IDLE.
    pub poll_interval: Duration,
    /// How long a response may arrive slower than [`Timeouts::min_response_rate`] before it
    /// is abandoned: bytes trickling in keep the inactivity timeout from firing, this does not.
    pub response_grace: Duration,
    /// The average rate (bytes per second) a response must reach after `response_grace`.
    pub min_response_rate: u64,
    /// The most bytes accepted without a line break. A line is parsed again as it grows, so
    /// this bounds CPU as well as memory against a line that never ends; literals with line
    /// breaks (message bodies) may be larger, up to 64 MiB per response. 4 MiB holds a SEARCH
    /// result of about 500,000 UIDs.
    pub max_line_bytes: u64,
    /// The longest a line without a line break may take to arrive: a server trickling an
    /// endless line fast enough for [`Timeouts::min_response_rate`] is still cut here, long
    /// before [`Timeouts::max_line_bytes`] (a response line is short; message bodies come in
    /// literals, whose lines end every 998 bytes at most).
    pub max_line_duration: Duration,
    /// The deepest parenthesis nesting accepted in a response (outside strings and literals).
    /// The IMAP parser (imap-proto) recurses once per level with a large frame: a
    /// BODYSTRUCTURE nested 60 deep overflows a 2 MiB thread stack in a debug build and aborts
    /// the process. Real ones nest a few levels; a message over the limit is fetched without
    /// BODYSTRUCTURE (its MIME tree is then parsed locally, without recursion).
    pub max_nesting: u32,
    /// The most mailboxes an account may list: each one costs a STATUS and a SELECT per
    /// sync, so a server listing 100,000 is refused ([`crate::Error::TooManyMailboxes`])
    /// rather than synced for hours.
    pub max_mailboxes: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(20),
            read: Duration::from_secs(120),
            write: Duration::from_secs(60),
            idle_reissue: Duration::from_secs(25 * 60),
            poll_interval: Duration::from_secs(60),
            response_grace: Duration::from_secs(60),
            min_response_rate: 512,
            max_line_bytes: 4 << 20,
            max_line_duration: Duration::from_secs(30),
            max_nesting: 32,
            max_mailboxes: 10_000,
        }
    }
}

impl Timeouts {
    /// The same limits with another read timeout.
    #[must_use]
    pub fn with_read(mut self, d: Duration) -> Self {
        self.read = d;
        self
    }
    /// The same limits with another connect timeout.
    #[must_use]
    pub fn with_connect(mut self, d: Duration) -> Self {
        self.connect = d;
        self
    }
    /// The same limits with another IDLE re-issue interval.
    #[must_use]
    pub fn with_idle_reissue(mut self, d: Duration) -> Self {
        self.idle_reissue = d;
        self
    }
    /// The same limits with another NOOP polling interval.
    #[must_use]
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
}

/// Everything needed to open an IMAP connection.
///
/// ```
/// use mailsync_imap_sync::{Auth, ImapConfig};
/// use mailsync_store::Security;
/// let cfg = ImapConfig::new("imap.example.org", 993, Security::Tls, "me", Auth::Password("pw".into()))
///     .with_ca_file("/etc/test-ca.pem");
/// assert_eq!(cfg.port, 993);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImapConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Implicit TLS, STARTTLS, or plaintext.
    pub security: Security,
    /// Login name.
    pub username: String,
    /// Credentials.
    pub auth: Auth,
    /// An extra CA certificate (PEM) trusted in addition to the system roots, e.g. the
    /// self-signed certificate of a test server. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Allow `Security::Plain` to a host that is not loopback. Off by default.
    pub allow_plaintext: bool,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Capabilities to ignore even when the server offers them (upper case, e.g. `QRESYNC`,
    /// `CONDSTORE`, `IDLE`, `MOVE`, `UIDPLUS`, `LIST-STATUS`, `PREVIEW`). Used to test the
    /// fallback paths, and as an escape hatch for servers with broken extensions.
    pub disabled_extensions: Vec<String>,
    /// Sent with `ID` when the server offers it.
    pub client_name: String,
}

impl ImapConfig {
    /// A configuration with default timeouts, no extra CA and plaintext only to loopback.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        security: Security,
        username: impl Into<String>,
        auth: Auth,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            security,
            username: username.into(),
            auth,
            ca_file: None,
            allow_plaintext: false,
            timeouts: Timeouts::default(),
            disabled_extensions: Vec::new(),
            client_name: "mailsync".to_owned(),
        }
    }

    /// The IMAP settings of a stored account (server, login, CA file, plaintext opt-in), with
    /// credentials the caller resolved from the account's secret reference. `None` when the
    /// account has no IMAP endpoint.
    pub fn from_account(account: &mailsync_store::accounts::Account, auth: Auth) -> Option<Self> {
        let ep = account.imap.as_ref()?;
        let mut cfg = Self::new(
            ep.host.clone(),
            ep.port,
            ep.security,
            account.username.clone(),
            auth,
        );
        cfg.ca_file = account.ca_file.as_ref().map(PathBuf::from);
        cfg.allow_plaintext = account.allow_plaintext;
        Some(cfg)
    }

    /// Trusts this PEM CA file in addition to the system roots.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Allows (or forbids) plaintext to non-loopback hosts.
    #[must_use]
    pub fn with_allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// Replaces the time limits.
    #[must_use]
    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// Ignores a capability (see [`ImapConfig::disabled_extensions`]).
    #[must_use]
    pub fn disable_extension(mut self, capability: &str) -> Self {
        self.disabled_extensions
            .push(capability.to_ascii_uppercase());
        self
    }
}
