//! OAuth 2 access tokens for accounts that log in with a bearer token: the refresh-token grant
//! (RFC 6749 §6) at the account's token endpoint, an in-memory cache with expiry, a refresh
//! ahead of expiry and on demand after the server refused a token, and the hand-back of a
//! rotated refresh token.
//!
//! Tokens live only in this process's memory (and in [`Secret`], whose `Debug` is redacted):
//! the database holds references (the refresh token's [`SecretRef`], the client secret's, the
//! command that stores a rotated refresh token), and nothing here logs a token.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use mailsync_store::SecretRef;
use mailsync_store::accounts::{Account, OAuth};
use tokio::io::AsyncWriteExt;

use crate::error::EngineError;
use crate::secret::{self, Secret};

/// What decides how an account logs in (an account, or the settings of one being added).
#[derive(Debug, Clone, Copy)]
pub struct Creds<'a> {
    /// The account's name (for log lines).
    pub name: &'a str,
    /// The password, or the refresh token when `oauth` is set.
    pub secret_ref: &'a SecretRef,
    /// OAuth 2 settings.
    pub oauth: Option<&'a OAuth>,
    /// Plain http to a non-loopback token endpoint allowed.
    pub allow_plaintext: bool,
    /// Extra CA certificate file.
    pub ca_file: Option<&'a str>,
}

impl<'a> From<&'a Account> for Creds<'a> {
    fn from(a: &'a Account) -> Self {
        Creds {
            name: &a.name,
            secret_ref: &a.secret_ref,
            oauth: a.oauth.as_ref(),
            allow_plaintext: a.allow_plaintext,
            ca_file: a.ca_file.as_deref(),
        }
    }
}

/// How an account logs in: with its password, or with an OAuth 2 access token.
#[derive(Debug, Clone)]
pub(crate) enum Login {
    /// A password (or app password).
    Password(Secret),
    /// An OAuth 2 access token (`Authorization: Bearer`, SASL OAUTHBEARER / XOAUTH2).
    Bearer(Secret),
}

/// Why no access token could be obtained. Classified in [`crate::classify`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The token endpoint could not be reached (connection, TLS, timeout).
    #[error("token endpoint {url} unreachable: {reason}")]
    Unreachable {
        /// The token endpoint.
        url: String,
        /// Why.
        reason: String,
        /// The failure was TLS (a certificate problem, not an outage).
        tls: bool,
    },
    /// The endpoint refused the grant with an RFC 6749 §5.2 error (`invalid_grant`: the
    /// refresh token was revoked or expired; `invalid_client`: wrong client id or secret).
    #[error("token endpoint {url} refused the refresh token: {error}{}; sign in again and give the new refresh token", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The token endpoint.
        url: String,
        /// The OAuth error code.
        error: String,
        /// The endpoint's `error_description`, if any.
        description: Option<String>,
    },
    /// The endpoint answered an HTTP error without an OAuth error body.
    #[error("token endpoint {url} answered HTTP {status}")]
    Http {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The endpoint answered something that is not a token response (an HTML page, a JSON
    /// object without `access_token`, a token type other than Bearer).
    #[error("token endpoint {url} did not answer with a token: {reason}")]
    Garbage {
        /// The token endpoint.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// An access token and when to stop using it.
struct Cached {
    access: Secret,
    /// Refresh at or after this instant (some time before the real expiry).
    refresh_at: Instant,
}

/// Per grant: the cached token and a refresh token that replaced the configured one.
#[derive(Default)]
struct Grant {
    cached: Option<Cached>,
    /// A rotated refresh token the endpoint returned (used from now on in this process,
    /// whether or not it could be handed back).
    rotated: Option<Secret>,
}

/// The grants of this process, keyed by what identifies one: endpoint, client, refresh token
/// reference. A token belongs to the grant, not to an engine: every engine and connection in
/// the process shares it. The per-grant async lock makes concurrent callers wait for one
/// refresh instead of each asking the endpoint.
type Grants = Mutex<HashMap<(String, String, String), Arc<tokio::sync::Mutex<Grant>>>>;
static GRANTS: LazyLock<Grants> = LazyLock::new(Grants::default);

fn grant_of(oauth: &OAuth, refresh: &SecretRef) -> Arc<tokio::sync::Mutex<Grant>> {
    let key = (
        oauth.token_url.clone(),
        oauth.client_id.clone(),
        refresh.to_string(),
    );
    let mut g = GRANTS.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(key).or_default().clone()
}

/// How long before its expiry a token is refreshed: a quarter of its life, at most a minute
/// (a one-hour token is refreshed at 59 minutes; a 3-second test token at 2.25 s).
fn margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(60))
}

/// How the account logs in now: its password, or a valid access token (refreshed first if
/// the cached one is near its expiry).
pub(crate) async fn login(c: Creds<'_>) -> Result<Login, EngineError> {
    match c.oauth {
        None => Ok(Login::Password(secret::resolve(c.secret_ref).await?)),
        Some(oauth) => Ok(Login::Bearer(access_token(c, oauth, false).await?)),
    }
}

/// After the server refused a token: forget it and get a new one (the retry before "needs
/// the user"). `None` for password accounts, where retrying would not help.
pub(crate) async fn relogin(c: Creds<'_>) -> Result<Option<Login>, EngineError> {
    match c.oauth {
        None => Ok(None),
        Some(oauth) => {
            tracing::info!(account = %c.name, "Server refused the access token; refreshing it once.");
            Ok(Some(Login::Bearer(access_token(c, oauth, true).await?)))
        }
    }
}

/// Runs `attempt` with the account's login; if it fails with refused credentials and the
/// account uses OAuth 2, refreshes the token once and runs it again.
pub(crate) async fn with_login<T, F, Fut>(c: Creds<'_>, attempt: F) -> Result<T, EngineError>
where
    F: Fn(Login) -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    match attempt(login(c).await?).await {
        Err(e) if crate::classify::is_auth_failure(&e) => match relogin(c).await? {
            Some(fresh) => attempt(fresh).await,
            None => Err(e),
        },
        other => other,
    }
}

async fn access_token(c: Creds<'_>, oauth: &OAuth, force: bool) -> Result<Secret, EngineError> {
    let grant = grant_of(oauth, c.secret_ref);
    let mut g = grant.lock().await;
    if !force
        && let Some(c) = &g.cached
        && Instant::now() < c.refresh_at
    {
        return Ok(c.access.clone());
    }
    g.cached = None;
    let refresh = match &g.rotated {
        Some(r) => r.clone(),
        None => secret::resolve(c.secret_ref).await?,
    };
    let client_secret = match &oauth.client_secret_ref {
        Some(r) => Some(secret::resolve(r).await?),
        None => None,
    };
    let started = Instant::now();
    let answer = request(c, oauth, &refresh, client_secret.as_ref()).await?;
    let lifetime = answer.expires_in.unwrap_or(Duration::from_secs(3600));
    tracing::debug!(
        account = %c.name,
        expires_in = lifetime.as_secs(),
        "Obtained an OAuth 2 access token."
    );
    if let Some(new) = answer.refresh_token
        && new.expose() != refresh.expose()
    {
        hand_back(c.name, oauth, &new).await;
        g.rotated = Some(new);
    }
    g.cached = Some(Cached {
        access: answer.access_token.clone(),
        refresh_at: started + lifetime.saturating_sub(margin(lifetime)),
    });
    Ok(answer.access_token)
}

/// Gives a rotated refresh token to the configured command (on its standard input), or tells
/// the user to store it. Never logs the token.
async fn hand_back(account: &str, oauth: &OAuth, token: &Secret) {
    let Some(cmd) = &oauth.refresh_store_cmd else {
        tracing::warn!(
            %account,
            "The token endpoint rotated the refresh token and no --oauth-refresh-store-cmd is \
             configured: it is used in memory until this process ends; then sign in again \
             or update the refresh token at its source."
        );
        return;
    };
    let stored = async {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(token.expose().as_bytes()).await?;
            stdin.write_all(b"\n").await?;
        }
        let status = child.wait().await?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(status.to_string()))
        }
    };
    match stored.await {
        Ok(()) => {
            tracing::info!(%account, "Stored the rotated refresh token.");
        }
        Err(e) => tracing::warn!(
            %account,
            command = %cmd,
            error = %e,
            "The token endpoint rotated the refresh token but the store command failed: it \
             is used in memory until this process ends; store it or sign in again."
        ),
    }
}

struct TokenAnswer {
    access_token: Secret,
    expires_in: Option<Duration>,
    refresh_token: Option<Secret>,
}

/// One refresh-token grant request (RFC 6749 §6): a form POST, client credentials in the body
/// (§2.3.1, which Google and Microsoft both accept), the answer read as §5.1 / §5.2.
async fn request(
    c: Creds<'_>,
    oauth: &OAuth,
    refresh: &Secret,
    client_secret: Option<&Secret>,
) -> Result<TokenAnswer, EngineError> {
    let url = oauth.token_url.clone();
    let unreachable = |reason: String, tls: bool| OAuthError::Unreachable {
        url: url.clone(),
        reason,
        tls,
    };
    let http = http_client(c, &url).await?;
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.expose()),
        ("client_id", &oauth.client_id),
    ];
    if let Some(s) = client_secret {
        form.push(("client_secret", s.expose()));
    }
    let scope = oauth.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let body = form_encode(&form);
    let resp = http
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(one_line(&e), is_tls(&e)))?;
    let status = resp.status().as_u16();
    // A token response is small; anything far bigger is not one.
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| unreachable(one_line(&e), false))?;
    parse_answer(&url, status, &bytes).map_err(EngineError::from)
}

/// Reads a token endpoint's answer: §5.1 success, §5.2 error, or neither.
fn parse_answer(url: &str, status: u16, body: &[u8]) -> Result<TokenAnswer, OAuthError> {
    #[derive(serde::Deserialize)]
    struct Success {
        access_token: String,
        token_type: String,
        expires_in: Option<serde_json::Value>,
        refresh_token: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Failure {
        error: String,
        error_description: Option<String>,
    }
    let garbage = |reason: String| OAuthError::Garbage {
        url: url.to_owned(),
        reason,
    };
    if !(200..300).contains(&status) {
        return match serde_json::from_slice::<Failure>(body) {
            Ok(f) => Err(OAuthError::Refused {
                url: url.to_owned(),
                error: f.error,
                description: f
                    .error_description
                    .map(|d| d.chars().filter(|c| !c.is_control()).take(200).collect()),
            }),
            Err(_) => Err(OAuthError::Http {
                url: url.to_owned(),
                status,
            }),
        };
    }
    let ok: Success = serde_json::from_slice(body).map_err(|e| {
        garbage(if body.first().is_some_and(|b| *b == b'<') {
            "an HTML page instead of JSON".to_owned()
        } else {
            format!("not a token response ({e})")
        })
    })?;
    if !ok.token_type.eq_ignore_ascii_case("bearer") {
        return Err(garbage(format!(
            "token type {:?} instead of Bearer",
            ok.token_type
        )));
    }
    if ok.access_token.is_empty() || ok.access_token.chars().any(|c| c.is_control()) {
        return Err(garbage("an empty or malformed access token".into()));
    }
    // RFC 6749 says a number; some endpoints send it as a string.
    let expires_in = match ok.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    Ok(TokenAnswer {
        access_token: Secret::new(ok.access_token),
        expires_in,
        refresh_token: ok.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
    })
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s.replace(['\r', '\n'], " ")
}

fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<rustls::Error>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// An HTTP client for the token endpoint: TLS with the platform's roots plus the account's
/// extra CA; plain http only to loopback or with the account's plaintext opt-in; no redirects
/// (a grant is never re-posted elsewhere).
async fn http_client(c: Creds<'_>, url: &str) -> Result<reqwest::Client, EngineError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| EngineError::Config(format!("token endpoint {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http"
            if crate::smtp::plaintext_allowed(
                parsed
                    .host_str()
                    .unwrap_or_default()
                    .trim_matches(['[', ']']),
                c.allow_plaintext,
            ) => {}
        _ => {
            return Err(EngineError::Config(format!(
                "token endpoint {url} is not https (plain http only to loopback or with \
                 --allow-plaintext)"
            )));
        }
    }
    let mut extra = Vec::new();
    if let Some(ca) = c.ca_file {
        let pem = tokio::fs::read(ca)
            .await
            .map_err(|e| EngineError::Config(format!("cannot read CA file {ca}: {e}")))?;
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for c in CertificateDer::pem_slice_iter(&pem) {
            extra.push(c.map_err(|e| EngineError::Config(format!("CA file {ca}: {e}")))?);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| EngineError::Config(format!("TLS verifier: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| EngineError::Config(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_rfc_6749_says() {
        let u = "https://t.example/token";
        let ok = parse_answer(
            u,
            200,
            br#"{"access_token":"a1","token_type":"bearer","expires_in":"3599","refresh_token":"r2"}"#,
        )
        .expect("success");
        assert_eq!(ok.access_token.expose(), "a1");
        assert_eq!(ok.expires_in, Some(Duration::from_secs(3599)));
        assert_eq!(ok.refresh_token.as_ref().map(Secret::expose), Some("r2"));
        let refused = parse_answer(
            u,
            400,
            br#"{"error":"invalid_grant","error_description":"Token has been\nrevoked."}"#,
        );
        assert!(
            matches!(&refused, Err(OAuthError::Refused { error, description: Some(d), .. }) if error == "invalid_grant" && !d.contains('\n')),
            "{:?}",
            refused.err()
        );
        assert!(matches!(
            parse_answer(u, 503, b"<html>busy</html>"),
            Err(OAuthError::Http { status: 503, .. })
        ));
        let html = parse_answer(u, 200, b"<html>sign in</html>")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            html.as_deref(),
            Some(
                "token endpoint https://t.example/token did not answer with a token: an HTML page instead of JSON"
            )
        );
        assert!(matches!(
            parse_answer(u, 200, br#"{"access_token":"a","token_type":"mac"}"#),
            Err(OAuthError::Garbage { .. })
        ));
        assert!(matches!(
            parse_answer(u, 200, br#"{"token_type":"Bearer"}"#),
            Err(OAuthError::Garbage { .. })
        ));
    }

    #[test]
    fn margins_and_form_encoding() {
        assert_eq!(margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(margin(Duration::from_secs(4)), Duration::from_secs(1));
        assert_eq!(
            form_encode(&[
                ("scope", "https://mail.google.com/ offline_access"),
                ("a", "b&c")
            ]),
            "scope=https%3A%2F%2Fmail.google.com%2F+offline_access&a=b%26c"
        );
    }
}
