//! HTTP plumbing: TLS configuration (rustls + ring + platform verifier), credentials, the
//! plain-HTTP policy, and mapping HTTP failures to typed [`Error`]s.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use url::{Host, Url};

use crate::error::{Error, ProblemDetails, TransportError, TransportErrorKind};

/// How the client authenticates.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password (never logged, redacted in `Debug`).
        password: String,
    },
    /// An OAuth bearer token (never logged, redacted in `Debug`).
    Bearer(String),
}

impl Credentials {
    /// HTTP Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// A bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Credentials::Bearer(token.into())
    }

    /// The `Authorization` header value, marked sensitive so it is never logged by the stack.
    pub(crate) fn header(&self) -> Result<Option<HeaderValue>, Error> {
        let raw = match self {
            Credentials::None => return Ok(None),
            Credentials::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            Credentials::Bearer(token) => format!("Bearer {token}"),
        };
        let mut value = HeaderValue::from_str(&raw).map_err(|_| {
            Error::Config("credentials contain characters not allowed in an HTTP header".into())
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// True when the URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// Secure by default: `https` always, `http` only to loopback or with an explicit opt-in.
pub(crate) fn check_url_allowed(url: &Url, allow_insecure_http: bool) -> Result<(), Error> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        _ => Err(Error::InsecureUrl {
            url: url.to_string(),
        }),
    }
}

/// Parses PEM certificates (extra trust anchors).
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config("no certificate found in PEM data".into()));
    }
    Ok(certs)
}

/// Builds the rustls configuration explicitly (ring provider, platform verifier plus extra
/// roots), so the library never depends on a process-wide default provider.
pub(crate) fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            provider.clone(),
        )
    }
    .map_err(|e| Error::Config(format!("cannot build the TLS certificate verifier: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // The HTTP stack is built without HTTP/2, so only offer HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Marker error returned by the redirect policy when a redirect leads to a refused URL.
#[derive(Debug)]
pub(crate) struct InsecureRedirect(pub(crate) String);

impl fmt::Display for InsecureRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redirect to refused URL {}", self.0)
    }
}

impl std::error::Error for InsecureRedirect {}

pub(crate) fn build_http_client(
    extra_roots: &[CertificateDer<'static>],
    allow_insecure_http: bool,
    connect_timeout: Duration,
    user_agent: &str,
) -> Result<reqwest::Client, Error> {
    let tls = tls_config(extra_roots)?;
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("too many redirects")
        } else if check_url_allowed(attempt.url(), allow_insecure_http).is_err() {
            let url = attempt.url().to_string();
            attempt.error(InsecureRedirect(url))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(policy)
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .no_proxy()
        .build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

/// Maps an HTTP-library error to a typed [`Error`] without exposing the library's type.
pub(crate) fn map_reqwest_error(e: reqwest::Error) -> Error {
    if let Some(url) = find_in_chain::<InsecureRedirect>(&e).map(|r| r.0.clone()) {
        return Error::InsecureUrl { url };
    }
    let tls = find_in_chain::<rustls::Error>(&e).is_some();
    // A connection that ends before the response is complete (even mid-headers) is the
    // network failing, like a cut mid-body, not the server speaking bad HTTP.
    let cut = find_in_chain::<hyper::Error>(&e)
        .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        || find_in_chain::<std::io::Error>(&e).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        });
    let kind = if tls {
        TransportErrorKind::Tls
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_redirect() {
        TransportErrorKind::Redirect
    } else if cut || e.is_body() || e.is_decode() {
        TransportErrorKind::Body
    } else if e.is_request() {
        // Typically hyper failing on a malformed status line or a connection closed early.
        TransportErrorKind::Protocol
    } else {
        TransportErrorKind::Other
    };
    Error::Transport(TransportError::new(kind, e))
}

/// Finds an error of type `T` in a source chain, also looking inside `io::Error`s (whose
/// `source()` skips the error they wrap).
pub(crate) fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        depth += 1;
        if depth > 32 {
            return None;
        }
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(t) = find_in_chain::<T>(inner) {
                return Some(t);
            }
        }
        current = e.source();
    }
    None
}

/// Parses `Retry-After` (delta-seconds or HTTP-date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
}

/// Turns a non-success response into [`Error::Unauthorized`] or [`Error::Http`] (with the
/// problem details when the body is `application/problem+json` or any JSON object with a `type`).
pub(crate) async fn error_from_response(resp: reqwest::Response, watch: &mut Watchdog) -> Error {
    let status = resp.status().as_u16();
    if status == 401 {
        return Error::Unauthorized { status };
    }
    let retry_after = retry_after(resp.headers());
    let ct = content_type(resp.headers());
    // A problem document is small; do not read arbitrarily large error pages.
    let body = read_limited(resp, 64 * 1024, watch)
        .await
        .unwrap_or_default();
    let problem = if ct.as_deref().is_some_and(|c| c.contains("json")) {
        serde_json::from_slice::<ProblemDetails>(&body)
            .ok()
            .map(Box::new)
    } else {
        None
    };
    Error::Http {
        status,
        problem,
        retry_after,
    }
}

/// Fewer bytes than this in a whole stall window is no useful progress (a trickle): the
/// response is given up like a silent one. Even a poor mobile link carries this in a second.
pub(crate) const MIN_PROGRESS_BYTES: u64 = 1024;

/// The "useful progress" rule for one HTTP exchange: the response head must arrive within
/// `stall`, and every later window of `stall` must bring at least [`MIN_PROGRESS_BYTES`]. A
/// silent server and one sending a byte now and then both end within about `stall`, while a
/// large response on a slow but working link is never cut for its size alone.
#[derive(Debug)]
pub(crate) struct Watchdog {
    stall: Duration,
    window_start: Instant,
    in_window: u64,
}

impl Watchdog {
    pub(crate) fn new(stall: Duration) -> Self {
        Self {
            stall,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    fn stalled(&self, what: &str) -> Error {
        Error::Transport(TransportError::new(
            TransportErrorKind::Timeout,
            format!(
                "{what} stalled: less than {MIN_PROGRESS_BYTES} bytes in {} s",
                self.stall.as_secs()
            ),
        ))
    }

    /// Sends a request: its response head must arrive within the stall window.
    pub(crate) async fn head(
        &mut self,
        send: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, Error> {
        let resp = tokio::time::timeout(self.stall, send)
            .await
            .map_err(|_| self.stalled("the response"))?
            .map_err(map_reqwest_error)?;
        self.window_start = Instant::now();
        self.in_window = 0;
        Ok(resp)
    }

    /// Awaits the next body chunk from `next` under the progress rule.
    pub(crate) async fn chunk<T: AsRef<[u8]>>(
        &mut self,
        next: impl Future<Output = Result<Option<T>, Error>>,
    ) -> Result<Option<T>, Error> {
        let mut next = std::pin::pin!(next);
        loop {
            let now = Instant::now();
            let end = self.window_start + self.stall;
            if now >= end {
                if self.in_window < MIN_PROGRESS_BYTES {
                    return Err(self.stalled("the response body"));
                }
                self.window_start = now;
                self.in_window = 0;
                continue;
            }
            if let Ok(r) = tokio::time::timeout(end - now, next.as_mut()).await {
                let r = r?;
                if let Some(c) = &r {
                    self.in_window += c.as_ref().len() as u64;
                }
                return Ok(r);
            }
        }
    }
}

/// Reads a whole response body of at most `limit` bytes, streaming: a larger one (by its
/// `Content-Length` or as it arrives) is [`Error::ResponseTooLarge`], never held in memory; a
/// body that stops making progress ends under `watch`'s rule.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    watch: &mut Watchdog,
) -> Result<Vec<u8>, Error> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(Error::ResponseTooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = watch
        .chunk(async { resp.chunk().await.map_err(map_reqwest_error) })
        .await?
    {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::ResponseTooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a response body, keeping at most `limit` bytes: the rest is not read and the
/// result is silently truncated (callers then fail to parse it).
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    watch: &mut Watchdog,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(chunk) = watch
        .chunk(async { resp.chunk().await.map_err(map_reqwest_error) })
        .await?
    {
        if out.len() + chunk.len() > limit {
            let take = limit.saturating_sub(out.len());
            out.extend_from_slice(chunk.get(..take).unwrap_or_default());
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_opted_in() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://localhost/",
            "http://a.localhost/",
            "https://example.org/",
        ] {
            assert!(
                check_url_allowed(&Url::parse(ok).unwrap(), false).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://example.org/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "http://localhost.example.org/",
        ] {
            assert!(
                matches!(
                    check_url_allowed(&Url::parse(bad).unwrap(), false),
                    Err(Error::InsecureUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(check_url_allowed(&Url::parse("http://example.org/").unwrap(), true).is_ok());
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::basic("alice", "s3cret");
        let d = format!("{c:?}");
        assert!(d.contains("alice") && !d.contains("s3cret"), "{d}");
        assert!(!format!("{:?}", Credentials::bearer("tok123")).contains("tok123"));
        let h = c.header().unwrap().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn tls_config_builds_without_global_provider() {
        let c = tls_config(&[]).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(parse_pem_certificates(b"not pem").is_err());
    }
}
