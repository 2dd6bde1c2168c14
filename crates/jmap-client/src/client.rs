//! The [`Client`] (cheaply cloneable, `Send + Sync`), its builder, discovery and the
//! connection test, and sending requests within the server's limits.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;
use url::Url;

use crate::error::{Error, NotJmapReason};
use crate::id::AccountId;
use crate::request::exec::{self, ApiResponse, ChunkSender, Limits};
use crate::request::{Method, RequestBuilder, Response};
use crate::session::Session;
use crate::transport::{self, Credentials};

const SESSION_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The default limit of an API response body.
const DEFAULT_MAX_RESPONSE: u64 = 64 * 1024 * 1024;
/// See [`ClientBuilder::stall_timeout`]: below the 60 s a user waits at most for a dead server.
const DEFAULT_STALL: Duration = Duration::from_secs(45);

/// Configures and connects a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    credentials: Credentials,
    allow_insecure_http: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    pending_error: Option<Error>,
    connect_timeout: Duration,
    request_timeout: Duration,
    stall_timeout: Duration,
    max_response_bytes: u64,
    user_agent: String,
    max_calls_in_request: Option<u64>,
    max_objects_in_get: Option<u64>,
    max_objects_in_set: Option<u64>,
    dns_servers: Option<Vec<SocketAddr>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            credentials: Credentials::None,
            allow_insecure_http: false,
            extra_roots: Vec::new(),
            pending_error: None,
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(120),
            stall_timeout: DEFAULT_STALL,
            max_response_bytes: DEFAULT_MAX_RESPONSE,
            user_agent: concat!("mailsync-jmap-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_calls_in_request: None,
            max_objects_in_get: None,
            max_objects_in_set: None,
            dns_servers: None,
        }
    }
}

impl ClientBuilder {
    /// The credentials (Basic or Bearer).
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Allows plain `http://` to non-loopback hosts. Off by default: without it such URLs
    /// (including redirect targets) are refused with [`Error::InsecureUrl`]. Loopback
    /// (`127.0.0.0/8`, `::1`, `localhost`) is always allowed.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Trusts the CA certificates in this PEM data in addition to the platform's roots.
    #[must_use]
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        match transport::parse_pem_certificates(pem) {
            Ok(certs) => self.extra_roots.extend(certs),
            Err(e) => {
                self.pending_error.get_or_insert(e);
            }
        }
        self
    }

    /// TCP/TLS connect timeout (default 20 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest API response body read (default 64 MiB): a larger one fails with
    /// [`Error::ResponseTooLarge`] without being held in memory. Keep requests (e.g. how many
    /// bodies one `Email/get` fetches) well under it.
    #[must_use]
    pub fn max_response_size(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Timeout of one API or session request, including reading the response (default 120 s).
    /// Blob transfers and push streams are not bounded by it.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a response may make no useful progress (default 45 s): its head must arrive
    /// within it, and each later window of it must bring at least 1 KiB. A silent or
    /// trickling server fails within about this time even when `request_timeout` is longer.
    #[must_use]
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The `User-Agent`.
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Caps `maxCallsInRequest` below the server's value.
    #[must_use]
    pub fn max_calls_in_request(mut self, max: u64) -> Self {
        self.max_calls_in_request = Some(max.max(1));
        self
    }

    /// Caps `maxObjectsInGet` below the server's value.
    #[must_use]
    pub fn max_objects_in_get(mut self, max: u64) -> Self {
        self.max_objects_in_get = Some(max.max(1));
        self
    }

    /// Caps `maxObjectsInSet` below the server's value.
    #[must_use]
    pub fn max_objects_in_set(mut self, max: u64) -> Self {
        self.max_objects_in_set = Some(max.max(1));
        self
    }

    /// DNS servers for the `_jmap._tcp` SRV lookup of [`ClientBuilder::discover`] (default:
    /// the `nameserver`s of `/etc/resolv.conf`).
    #[must_use]
    pub fn dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.dns_servers = Some(servers);
        self
    }

    /// Connects to a Session URL (or a `/.well-known/jmap` URL; redirects are followed) and
    /// fetches the Session. This is the connection test: the error tells apart an unreachable
    /// host ([`Error::Transport`] `Connect`/`Timeout`), a TLS failure (`Tls`), bad credentials
    /// ([`Error::Unauthorized`]) and a URL that is not JMAP ([`Error::NotJmap`]).
    pub async fn connect(self, session_url: &str) -> Result<Client, Error> {
        let url = Url::parse(session_url).map_err(|source| Error::InvalidUrl {
            url: session_url.to_owned(),
            source,
        })?;
        refuse_userinfo(&url)?;
        let parts = self.into_parts()?;
        let session = fetch_session(&parts.http, &url, &parts.config).await?;
        Ok(Client::from_parts(parts, session))
    }

    /// Discovers the JMAP server from an email address, a host name (`host[:port]`) or a URL,
    /// then connects. For addresses and hosts it tries the `_jmap._tcp` SRV record, then
    /// `https://host/.well-known/jmap`; a URL without a path gets `/.well-known/jmap` appended.
    /// Bad credentials stop the search at once.
    pub async fn discover(self, input: &str) -> Result<Client, Error> {
        let candidates = discovery_candidates(input, self.dns_servers.as_deref()).await?;
        for url in &candidates {
            refuse_userinfo(url)?;
        }
        let parts = self.into_parts()?;
        let mut last = None;
        for url in candidates {
            tracing::debug!(%url, "trying JMAP discovery candidate");
            match fetch_session(&parts.http, &url, &parts.config).await {
                Ok(session) => return Ok(Client::from_parts(parts, session)),
                Err(e @ Error::Unauthorized { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config(format!("nothing to discover in {input:?}"))))
    }

    fn into_parts(self) -> Result<Parts, Error> {
        if let Some(e) = self.pending_error {
            return Err(e);
        }
        let http = transport::build_http_client(
            &self.extra_roots,
            self.allow_insecure_http,
            self.connect_timeout,
            &self.user_agent,
        )?;
        let auth = self.credentials.header()?;
        // The same trust as the HTTP client's, for the WebSocket push connection (RFC 8887).
        let mut tls = transport::tls_config(&self.extra_roots)?;
        tls.alpn_protocols.clear();
        Ok(Parts {
            http,
            config: Config {
                auth,
                tls: std::sync::Arc::new(tls),
                connect_timeout: self.connect_timeout,
                allow_insecure_http: self.allow_insecure_http,
                request_timeout: self.request_timeout,
                stall_timeout: self.stall_timeout,
                max_response_bytes: self.max_response_bytes,
                max_calls_in_request: self.max_calls_in_request,
                max_objects_in_get: self.max_objects_in_get,
                max_objects_in_set: self.max_objects_in_set,
            },
        })
    }
}

struct Parts {
    http: reqwest::Client,
    config: Config,
}

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) auth: Option<HeaderValue>,
    pub(crate) tls: std::sync::Arc<rustls::ClientConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) allow_insecure_http: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) max_response_bytes: u64,
    max_calls_in_request: Option<u64>,
    max_objects_in_get: Option<u64>,
    max_objects_in_set: Option<u64>,
}

async fn discovery_candidates(
    input: &str,
    dns_servers: Option<&[SocketAddr]>,
) -> Result<Vec<Url>, Error> {
    let input = input.trim();
    let invalid = |source| Error::InvalidUrl {
        url: input.to_owned(),
        source,
    };
    if input.contains("://") {
        let mut url = Url::parse(input).map_err(invalid)?;
        if url.path().is_empty() || url.path() == "/" {
            url = url.join("/.well-known/jmap").map_err(invalid)?;
        }
        return Ok(vec![url]);
    }
    let host = input.rsplit_once('@').map_or(input, |(_, domain)| domain);
    let mut out = Vec::new();
    let bare_host = host.split(':').next().unwrap_or(host);
    if !bare_host.is_empty()
        && bare_host.parse::<std::net::IpAddr>().is_err()
        && !host.contains(':')
    {
        let servers = match dns_servers {
            Some(s) => s.to_vec(),
            None => crate::dns::system_nameservers(),
        };
        let name = format!("_jmap._tcp.{bare_host}");
        for target in crate::dns::lookup_srv(&name, &servers, Duration::from_secs(3)).await {
            if let Ok(u) = Url::parse(&format!(
                "https://{}:{}/.well-known/jmap",
                target.host, target.port
            )) {
                out.push(u);
            }
        }
    }
    out.push(Url::parse(&format!("https://{host}/.well-known/jmap")).map_err(invalid)?);
    Ok(out)
}

/// Credentials belong in [`ClientBuilder::credentials`], where they are never logged; a
/// password inside a URL would end up in logs and error messages.
fn refuse_userinfo(url: &Url) -> Result<(), Error> {
    if url.password().is_some() || !url.username().is_empty() {
        return Err(Error::Config(
            "credentials inside the URL are not accepted; use ClientBuilder::credentials".into(),
        ));
    }
    Ok(())
}

fn authed(req: reqwest::RequestBuilder, config: &Config) -> reqwest::RequestBuilder {
    match &config.auth {
        Some(h) => req.header(AUTHORIZATION, h.clone()),
        None => req,
    }
}

async fn fetch_session(
    http: &reqwest::Client,
    url: &Url,
    config: &Config,
) -> Result<Session, Error> {
    transport::check_url_allowed(url, config.allow_insecure_http)?;
    let mut watch = transport::Watchdog::new(config.stall_timeout);
    let resp = watch
        .head(
            authed(http.get(url.clone()), config)
                .header(ACCEPT, "application/json")
                .timeout(config.request_timeout)
                .send(),
        )
        .await?;
    let final_url = resp.url().clone();
    let status = resp.status().as_u16();
    let ct = transport::content_type(resp.headers());
    let not_jmap = |reason| Error::NotJmap {
        url: final_url.to_string(),
        reason,
        source: None,
    };
    // Some servers and proxies refuse bad credentials with 403 instead of 401.
    if status == 401 || status == 403 {
        return Err(Error::Unauthorized { status });
    }
    if status == 429 || status >= 500 {
        return Err(transport::error_from_response(resp, &mut watch).await);
    }
    if !(200..300).contains(&status) {
        return Err(not_jmap(NotJmapReason::Status(status)));
    }
    if ct
        .as_deref()
        .is_some_and(|c| c.starts_with("text/html") || c.starts_with("application/xhtml"))
    {
        return Err(not_jmap(NotJmapReason::HtmlPage));
    }
    let body = transport::read_limited(resp, SESSION_BODY_LIMIT, &mut watch).await?;
    let looks_html = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(1)
        .any(|b| *b == b'<');
    if looks_html {
        return Err(not_jmap(NotJmapReason::HtmlPage));
    }
    Session::parse(&body, &final_url).map_err(|e| match e {
        Error::NotJmap {
            url,
            reason: NotJmapReason::NotJson { .. },
            source,
        } => Error::NotJmap {
            url,
            reason: NotJmapReason::NotJson {
                content_type: ct.clone(),
            },
            source,
        },
        other => other,
    })
}

/// A connected JMAP client. Cloning is cheap (an `Arc`); clones share the HTTP connection
/// pool and the Session.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: Config,
    session: RwLock<Arc<Session>>,
    request_permits: Semaphore,
    upload_permits: Semaphore,
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    fn from_parts(parts: Parts, session: Session) -> Client {
        let core = session.core().clone();
        let permits = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 64);
        Client {
            inner: Arc::new(Inner {
                http: parts.http,
                config: parts.config,
                request_permits: Semaphore::new(permits(core.max_concurrent_requests)),
                upload_permits: Semaphore::new(permits(core.max_concurrent_upload)),
                session: RwLock::new(Arc::new(session)),
            }),
        }
    }

    /// The current Session.
    pub fn session(&self) -> Arc<Session> {
        match self.inner.session.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches the Session again (done automatically when a response's `sessionState`
    /// differs from the current Session's `state`).
    pub async fn refresh_session(&self) -> Result<Arc<Session>, Error> {
        let url = self.session().url().clone();
        let session = Arc::new(fetch_session(&self.inner.http, &url, &self.inner.config).await?);
        match self.inner.session.write() {
            Ok(mut s) => *s = session.clone(),
            Err(poisoned) => *poisoned.into_inner() = session.clone(),
        }
        Ok(session)
    }

    /// The primary mail account id.
    pub fn mail_account_id(&self) -> Result<AccountId, Error> {
        self.session().mail_account_id()
    }

    /// A new, empty request.
    pub fn request(&self) -> RequestBuilder {
        RequestBuilder::new()
    }

    /// The limits in force: the server's, lowered by the builder's caps.
    pub(crate) fn limits(&self) -> Limits {
        let core = self.session().core().clone();
        let cap = |server: u64, mine: Option<u64>| {
            let v = mine.map_or(server, |m| m.min(server));
            usize::try_from(v).unwrap_or(usize::MAX)
        };
        let c = &self.inner.config;
        Limits {
            max_calls: cap(core.max_calls_in_request, c.max_calls_in_request),
            max_objects_in_get: cap(core.max_objects_in_get, c.max_objects_in_get),
            max_objects_in_set: cap(core.max_objects_in_set, c.max_objects_in_set),
            max_size_request: cap(core.max_size_request, None),
        }
    }

    /// Sends a request, splitting it as needed to respect `maxCallsInRequest`,
    /// `maxObjectsInGet`, `maxObjectsInSet` and `maxSizeRequest`.
    ///
    /// Request-level failures (HTTP errors, problem details, transport errors) are returned
    /// as `Err`; method-level errors are returned when the call's response is taken. When a
    /// request had to be sent as several HTTP requests and a later one fails, the earlier
    /// ones have been applied.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        let calls = request.into_calls()?;
        if calls.is_empty() {
            return Ok(Response::default());
        }
        let session = self.session();
        transport::check_url_allowed(session.api_url(), self.inner.config.allow_insecure_http)?;
        let sender = ApiSender {
            client: self,
            api_url: session.api_url().clone(),
        };
        let executed = exec::execute(calls, self.limits(), &sender).await?;
        if let Some(state) = &executed.session_state
            && state != session.state()
        {
            tracing::debug!("session state changed; refreshing the session");
            if let Err(e) = self.refresh_session().await {
                tracing::warn!(error = %e, "could not refresh the JMAP session");
            }
        }
        Ok(Response::new(
            executed.results,
            executed.session_state,
            executed.created_ids,
            executed.http_requests,
        ))
    }

    /// Sends a single method call and returns its typed response.
    pub async fn call<M: Method>(&self, method: M) -> Result<M::Response, Error> {
        let mut req = self.request();
        let handle = req.call(method);
        let mut resp = self.send(req).await?;
        resp.take(&handle)
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        authed(req, &self.inner.config)
    }

    pub(crate) fn upload_permits(&self) -> &Semaphore {
        &self.inner.upload_permits
    }
}

struct ApiSender<'a> {
    client: &'a Client,
    api_url: Url,
}

impl ChunkSender for ApiSender<'_> {
    async fn send_chunk(&self, body: Vec<u8>) -> Result<ApiResponse, Error> {
        let inner = &self.client.inner;
        let _permit = inner.request_permits.acquire().await.ok();
        let mut watch = transport::Watchdog::new(inner.config.stall_timeout);
        let resp = watch
            .head(
                self.client
                    .authed(inner.http.post(self.api_url.clone()))
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .timeout(inner.config.request_timeout)
                    .body(body)
                    .send(),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(transport::error_from_response(resp, &mut watch).await);
        }
        let bytes =
            transport::read_capped(resp, inner.config.max_response_bytes, &mut watch).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode("API response", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn discovery_candidates_forms() {
        let c = discovery_candidates("http://127.0.0.1:10080", Some(&[]))
            .await
            .unwrap();
        assert_eq!(c[0].as_str(), "http://127.0.0.1:10080/.well-known/jmap");
        let c = discovery_candidates("http://127.0.0.1:10080/jmap/", Some(&[]))
            .await
            .unwrap();
        assert_eq!(c[0].as_str(), "http://127.0.0.1:10080/jmap/");
        let c = discovery_candidates("user@example.org", Some(&[]))
            .await
            .unwrap();
        assert_eq!(
            c.last().unwrap().as_str(),
            "https://example.org/.well-known/jmap"
        );
        let c = discovery_candidates("mail.example.org:8443", Some(&[]))
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].as_str(),
            "https://mail.example.org:8443/.well-known/jmap"
        );
    }

    #[tokio::test]
    async fn credentials_in_urls_are_refused() {
        let e = Client::builder()
            .connect("https://u:secret@example.org/jmap")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if !m.contains("secret")),
            "{e:?}"
        );
        let e = Client::builder()
            .discover("http://u:secret@127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)));
    }

    #[test]
    fn public_types_are_thread_safe() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<Client>();
        send_sync::<Error>();
        send_sync::<crate::Response>();
        send::<crate::PushStream>();
    }

    #[allow(dead_code)]
    fn futures_are_send(client: &Client, account: &AccountId) {
        fn is_send<F: Send>(_: F) {}
        is_send(client.send(client.request()));
        is_send(client.call(crate::Get::<crate::Email>::new(account)));
        is_send(client.upload_bytes(account, "text/plain", Vec::new()));
        is_send(
            crate::ChangesPager::<crate::Email>::new(client, account, &crate::State::new("0"))
                .next_page(),
        );
    }
}
