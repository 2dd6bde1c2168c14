//! A local OAuth 2 authorization server for tests ([`TokenEndpoint`]): a token endpoint for the
//! refresh-token grant (RFC 6749 §6) that issues short-lived access tokens, and the token
//! introspection endpoint (RFC 7662) that the test servers ask about them.
//!
//! Dovecot's `oauth2` passdb and the SMTP sink do not know this process: they ask the
//! introspection relay that `cargo xtask servers up` starts (in the SMTP sink's script, port
//! base + 81), which reads this endpoint's port from the token itself
//! (`mst-<port>-<n>-<random>`) and forwards the question here. So every test runs its own
//! issuer, with its own lifetimes and revocations, against the one shared Dovecot.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The user prefix Dovecot authenticates with OAuth 2 only (password users are `t_*`).
pub const OAUTH_USER_PREFIX: &str = "o_";

#[derive(Default)]
struct State {
    lifetime: Duration,
    /// refresh token -> user
    refresh: HashMap<String, String>,
    /// access token -> (user, expiry)
    access: HashMap<String, (String, Instant)>,
    /// Every token ever issued (access and refresh), to look for leaks.
    issued: Vec<String>,
    rotate: bool,
    garbage: bool,
    grants: usize,
    introspections: usize,
    /// The form fields of every token request, in order.
    requests: Vec<HashMap<String, String>>,
    counter: u64,
}

/// A token endpoint and introspection endpoint on `127.0.0.1:<random port>`, served by a
/// thread until dropped.
pub struct TokenEndpoint {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl TokenEndpoint {
    /// Starts an endpoint whose access tokens live `lifetime` (whole seconds are announced in
    /// `expires_in`).
    pub fn start(lifetime: Duration) -> std::io::Result<TokenEndpoint> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            lifetime,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(sock, port, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(TokenEndpoint { port, state, stop })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// A fresh Dovecot user that only OAuth 2 can log in: `o_<tag>_<unique>`.
    pub fn fresh_user(tag: &str) -> String {
        format!("{OAUTH_USER_PREFIX}{}", crate::unique_name(tag))
    }

    /// Issues a refresh token for `user` (what the provider's consent screen would give).
    pub fn refresh_token_for(&self, user: &str) -> String {
        self.with(|s| {
            s.counter += 1;
            let t = format!("msr-{}-{:016x}", s.counter, random());
            s.refresh.insert(t.clone(), user.to_owned());
            s.issued.push(t.clone());
            t
        })
    }

    /// Revokes a refresh token: the next grant with it fails with `invalid_grant`.
    pub fn revoke_refresh(&self, token: &str) {
        self.with(|s| s.refresh.remove(token));
    }

    /// Makes every access token issued so far inactive (as a provider does when the user
    /// changes the password), whatever its expiry.
    pub fn revoke_access_tokens(&self) {
        self.with(|s| s.access.clear());
    }

    /// With `true`, every grant returns a new refresh token and invalidates the one used.
    pub fn set_rotate(&self, rotate: bool) {
        self.with(|s| s.rotate = rotate);
    }

    /// With `true`, the token endpoint answers `200 OK` with an HTML page.
    pub fn set_garbage(&self, garbage: bool) {
        self.with(|s| s.garbage = garbage);
    }

    /// How many access tokens were granted.
    pub fn grants(&self) -> usize {
        self.with(|s| s.grants)
    }

    /// How many introspection questions were answered.
    pub fn introspections(&self) -> usize {
        self.with(|s| s.introspections)
    }

    /// The form fields of every token request so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.with(|s| s.requests.clone())
    }

    /// Every access and refresh token this endpoint issued.
    pub fn issued(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }

    /// Whether `token` is an access token this endpoint issued, not expired nor revoked (the
    /// introspection answer, without HTTP: for a test server in the same process).
    pub fn is_active(&self, token: &str) -> bool {
        self.with(|s| {
            s.access
                .get(token)
                .is_some_and(|(_, exp)| *exp > Instant::now())
        })
    }

    /// The refresh tokens currently valid.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.with(|s| s.refresh.keys().cloned().collect())
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `application/x-www-form-urlencoded` (also a query string) into fields.
fn form(s: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn respond(sock: &mut TcpStream, status: &str, ctype: &str, body: &str) {
    let _ = write!(
        sock,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.flush();
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn serve(mut sock: TcpStream, port: u16, state: &Mutex<State>) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = sock.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut len = 0usize;
    let mut bearer = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            } else if k == "authorization" {
                bearer = v.strip_prefix("Bearer ").map(str::to_owned);
            }
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match (method.as_str(), path) {
        ("POST", "/token") => {
            let f = form(&body);
            st.requests.push(f.clone());
            if st.garbage {
                drop(st);
                return respond(
                    &mut sock,
                    "200 OK",
                    "text/html",
                    "<html><body>Sign in to continue</body></html>",
                );
            }
            let refresh = f.get("refresh_token").cloned().unwrap_or_default();
            let user = match (
                f.get("grant_type").map(String::as_str),
                st.refresh.get(&refresh),
            ) {
                (Some("refresh_token"), Some(u)) => u.clone(),
                (Some("refresh_token"), None) => {
                    drop(st);
                    return respond(
                        &mut sock,
                        "400 Bad Request",
                        "application/json",
                        r#"{"error":"invalid_grant","error_description":"the refresh token was revoked"}"#,
                    );
                }
                _ => {
                    drop(st);
                    return respond(
                        &mut sock,
                        "400 Bad Request",
                        "application/json",
                        r#"{"error":"unsupported_grant_type"}"#,
                    );
                }
            };
            st.counter += 1;
            st.grants += 1;
            let access = format!("mst-{port}-{}-{:016x}", st.counter, random());
            let expiry = Instant::now() + st.lifetime;
            st.access.insert(access.clone(), (user.clone(), expiry));
            st.issued.push(access.clone());
            let mut extra = String::new();
            if st.rotate {
                st.refresh.remove(&refresh);
                st.counter += 1;
                let t = format!("msr-{}-{:016x}", st.counter, random());
                st.refresh.insert(t.clone(), user);
                st.issued.push(t.clone());
                extra = format!(r#","refresh_token":{}"#, json_str(&t));
            }
            let secs = st.lifetime.as_secs().max(1);
            drop(st);
            respond(
                &mut sock,
                "200 OK",
                "application/json",
                &format!(
                    r#"{{"access_token":{},"token_type":"Bearer","expires_in":{secs}{extra}}}"#,
                    json_str(&access)
                ),
            )
        }
        (_, "/introspect") => {
            st.introspections += 1;
            let token = form(&body)
                .remove("token")
                .or_else(|| form(query).remove("token"))
                .or(bearer)
                .unwrap_or_default();
            let answer = match st.access.get(&token) {
                Some((user, exp)) if *exp > Instant::now() => {
                    format!(r#"{{"active":true,"username":{}}}"#, json_str(user))
                }
                _ => r#"{"active":false}"#.to_owned(),
            };
            drop(st);
            respond(&mut sock, "200 OK", "application/json", &answer)
        }
        _ => {
            drop(st);
            respond(&mut sock, "404 Not Found", "text/plain", "not found")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(port: u16, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn grants_introspects_expires_and_revokes() {
        let ep = TokenEndpoint::start(Duration::from_millis(300)).expect("start");
        let rt = ep.refresh_token_for("o_x");
        let ans = post(
            ep.port,
            "/token",
            &format!("grant_type=refresh_token&refresh_token={rt}&client_id=c"),
        );
        assert!(ans.starts_with("HTTP/1.1 200"), "{ans}");
        let body = ans.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        let at = v["access_token"].as_str().expect("token").to_owned();
        assert!(at.starts_with(&format!("mst-{}-", ep.port)));
        assert!(post(ep.port, "/introspect", &format!("token={at}")).contains(r#""active":true"#));
        std::thread::sleep(Duration::from_millis(400));
        assert!(post(ep.port, "/introspect", &format!("token={at}")).contains(r#""active":false"#));
        ep.revoke_refresh(&rt);
        let ans = post(
            ep.port,
            "/token",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        );
        assert!(ans.contains("invalid_grant"), "{ans}");
        assert_eq!(ep.grants(), 1);
        assert_eq!(form("a=b%20c&d=e+f")["a"], "b c");
    }
}
