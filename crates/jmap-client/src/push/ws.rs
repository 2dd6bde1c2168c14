//! Push over the JMAP WebSocket subprotocol (RFC 8887): connect with subprotocol `jmap` and the
//! client's credentials, send `WebSocketPushEnable` (data types, and the last `pushState` so
//! the server can tell what was missed), read `StateChange` messages; WebSocket pings watch a
//! quiet connection, and a lost one reconnects with backoff. The caller drives the stream.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use super::{PushConfig, PushEvent, PushStream, StateChange, backoff_delay, is_final};
use crate::client::Client;
use crate::error::{Error, PushUnavailableReason, TransportError, TransportErrorKind};
use crate::session::capability;
use crate::transport;

/// The largest push message accepted: a StateChange is a few hundred bytes.
const MAX_MESSAGE: usize = 1 << 20;

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// `urn:ietf:params:jmap:websocket` in the Session (RFC 8887 §4.1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebSocketCapability {
    url: String,
    #[serde(default)]
    supports_push: bool,
}

/// A message from the server; only `StateChange` matters here (no requests are sent).
#[derive(Debug, Deserialize)]
struct ServerMessage {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "pushState", default)]
    push_state: Option<String>,
}

impl Client {
    /// The WebSocket push URL, when the Session offers push over WebSocket (RFC 8887:
    /// `urn:ietf:params:jmap:websocket` with `supportsPush: true`).
    pub fn web_socket_push_url(&self) -> Option<Url> {
        let session = self.session();
        let cap: WebSocketCapability =
            serde_json::from_value(session.capabilities().get(capability::WEBSOCKET)?.clone())
                .ok()?;
        if !cap.supports_push {
            return None;
        }
        session.url().join(&cap.url).ok()
    }

    /// Opens push over WebSocket (RFC 8887). Nothing happens until the stream is polled; it
    /// yields the same [`PushEvent`]s as [`Client::event_source`]. On reconnection the last
    /// `pushState` received is sent with `WebSocketPushEnable`, so a server that keeps it
    /// reports at once what changed meanwhile; [`PushEvent::Connected`] still tells the
    /// caller to synchronise once, for servers that do not. Fails at once with
    /// [`Error::PushUnavailable`] when the Session offers no WebSocket push; the stream's
    /// first item is that error when the endpoint refuses the upgrade.
    pub fn web_socket_push(&self, config: PushConfig) -> Result<PushStream, Error> {
        let url = self.web_socket_push_url().ok_or(Error::PushUnavailable {
            reason: PushUnavailableReason::NoWebSocketPush,
        })?;
        let state = WsState {
            client: self.clone(),
            config,
            url,
            push_state: None,
            attempt: 0,
            pending: VecDeque::new(),
            phase: Phase::Connect,
        };
        Ok(PushStream {
            inner: Box::pin(futures::stream::unfold(state, step)),
        })
    }

    /// Push the best way the Session offers: WebSocket (RFC 8887) where it supports push,
    /// else EventSource (RFC 8620 §7.3).
    pub fn push(&self, config: PushConfig) -> Result<PushStream, Error> {
        if self.web_socket_push_url().is_some() {
            self.web_socket_push(config)
        } else {
            self.event_source(config)
        }
    }
}

enum Phase {
    Connect,
    Backoff(Duration),
    Streaming(Box<Ws>),
    Done,
}

struct WsState {
    client: Client,
    config: PushConfig,
    url: Url,
    /// The last `pushState` received (RFC 8887 §4.3.5.2), sent again on reconnection.
    push_state: Option<String>,
    attempt: u32,
    pending: VecDeque<PushEvent>,
    phase: Phase,
}

fn transport_error(kind: TransportErrorKind, message: &'static str) -> Error {
    Error::Transport(TransportError::new(kind, message))
}

fn ws_error(e: tungstenite::Error) -> Error {
    use tungstenite::Error as W;
    match e {
        W::Http(resp) => {
            let status = resp.status().as_u16();
            match status {
                401 => Error::Unauthorized { status },
                404 | 405 | 426 | 501 => Error::PushUnavailable {
                    reason: PushUnavailableReason::WebSocketRefused {
                        status: Some(status),
                    },
                },
                _ => transport_error(TransportErrorKind::Protocol, "WebSocket upgrade refused"),
            }
        }
        W::Protocol(tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_)) => {
            Error::PushUnavailable {
                reason: PushUnavailableReason::WebSocketRefused { status: None },
            }
        }
        W::Io(_) | W::ConnectionClosed | W::AlreadyClosed => {
            transport_error(TransportErrorKind::Body, "the WebSocket connection broke")
        }
        W::Tls(_) => transport_error(TransportErrorKind::Tls, "WebSocket TLS failure"),
        W::Capacity(_) => transport_error(
            TransportErrorKind::Protocol,
            "WebSocket message over the size limit",
        ),
        _ => transport_error(TransportErrorKind::Protocol, "WebSocket protocol error"),
    }
}

async fn connect(client: &Client, url: &Url) -> Result<Ws, Error> {
    let config = client.config();
    // ws/wss follow the same rule as http/https: plain text only to loopback or by opt-in.
    let mut as_http = url.clone();
    let tls = match url.scheme() {
        "wss" => true,
        "ws" => false,
        _ => {
            return Err(Error::Config(format!(
                "WebSocket URL {url} is neither ws: nor wss:"
            )));
        }
    };
    let _ = as_http.set_scheme(if tls { "https" } else { "http" });
    transport::check_url_allowed(&as_http, config.allow_insecure_http)?;
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("WebSocket URL {url} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        config.connect_timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| transport_error(TransportErrorKind::Timeout, "WebSocket connect timed out"))?
    .map_err(|_| {
        transport_error(
            TransportErrorKind::Connect,
            "cannot connect to the WebSocket endpoint",
        )
    })?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::Config(format!("invalid TLS server name {host:?}")))?;
        let connector = tokio_rustls::TlsConnector::from(config.tls.clone());
        let stream = tokio::time::timeout(config.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| transport_error(TransportErrorKind::Timeout, "TLS handshake timed out"))?
            .map_err(|_| transport_error(TransportErrorKind::Tls, "TLS handshake failed"))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|_| Error::Config(format!("invalid WebSocket URL {url}")))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("jmap"),
    );
    if let Some(auth) = &config.auth
        && let Ok(v) = tungstenite::http::HeaderValue::from_bytes(auth.as_bytes())
    {
        req.headers_mut().insert("Authorization", v);
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (ws, _resp) = tokio::time::timeout(
        config.request_timeout,
        tokio_tungstenite::client_async_with_config(req, io, Some(ws_config)),
    )
    .await
    .map_err(|_| transport_error(TransportErrorKind::Timeout, "no WebSocket upgrade answer"))?
    .map_err(ws_error)?;
    Ok(ws)
}

/// `WebSocketPushEnable` (RFC 8887 §4.3.5.2).
fn enable_message(config: &PushConfig, push_state: Option<&str>) -> String {
    let types = if config.types.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(config.types)
    };
    let mut m = serde_json::json!({"@type": "WebSocketPushEnable", "dataTypes": types});
    if let (Some(s), Some(obj)) = (push_state, m.as_object_mut()) {
        obj.insert("pushState".into(), serde_json::Value::String(s.to_owned()));
    }
    m.to_string()
}

impl WsState {
    fn disconnect(&mut self, error: Error) -> PushEvent {
        let retry_in = backoff_delay(&self.config, None, &mut self.attempt);
        tracing::debug!(error = %error, ?retry_in, "WebSocket push disconnected");
        self.phase = Phase::Backoff(retry_in);
        PushEvent::Disconnected { error, retry_in }
    }

    fn handle(&mut self, text: &str) {
        let Ok(head) = serde_json::from_str::<ServerMessage>(text) else {
            tracing::debug!("ignoring a WebSocket message that is not JSON");
            return;
        };
        if head.kind != "StateChange" {
            tracing::trace!(kind = head.kind, "ignoring a WebSocket message");
            return;
        }
        if let Some(s) = head.push_state {
            self.push_state = Some(s);
        }
        match serde_json::from_str::<StateChange>(text) {
            Ok(change) => self.pending.push_back(PushEvent::StateChange(change)),
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed StateChange"),
        }
    }
}

async fn step(mut st: WsState) -> Option<(Result<PushEvent, Error>, WsState)> {
    loop {
        if let Some(ev) = st.pending.pop_front() {
            return Some((Ok(ev), st));
        }
        match std::mem::replace(&mut st.phase, Phase::Done) {
            Phase::Done => return None,
            Phase::Backoff(delay) => {
                tokio::time::sleep(delay).await;
                st.phase = Phase::Connect;
            }
            Phase::Connect => {
                let res = match connect(&st.client, &st.url).await {
                    Ok(mut ws) => {
                        let msg = enable_message(&st.config, st.push_state.as_deref());
                        match ws.send(Message::text(msg)).await {
                            Ok(()) => Ok(ws),
                            Err(e) => Err(ws_error(e)),
                        }
                    }
                    Err(e) => Err(e),
                };
                match res {
                    Ok(ws) => {
                        st.attempt = 0;
                        st.phase = Phase::Streaming(Box::new(ws));
                        return Some((Ok(PushEvent::Connected), st));
                    }
                    Err(e) if is_final(&e) => return Some((Err(e), st)),
                    Err(e) => {
                        let ev = st.disconnect(e);
                        return Some((Ok(ev), st));
                    }
                }
            }
            Phase::Streaming(mut ws) => {
                // RFC 8887 has no application-level ping: a WebSocket ping every interval,
                // and the connection is dead after `dead_after` without any frame.
                let every = st.config.ping_interval.max(Duration::from_secs(1));
                let dead_after = st.config.dead_after(0);
                let mut last_rx = Instant::now();
                let error: Option<Error> = loop {
                    match tokio::time::timeout(every, ws.next()).await {
                        Err(_) => {
                            if last_rx.elapsed() >= dead_after {
                                break Some(transport_error(
                                    TransportErrorKind::Timeout,
                                    "no WebSocket frame within the expected interval",
                                ));
                            }
                            if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                                break Some(ws_error(e));
                            }
                        }
                        Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                            break Some(transport_error(
                                TransportErrorKind::Body,
                                "the server closed the WebSocket",
                            ));
                        }
                        Ok(Some(Err(e))) => break Some(ws_error(e)),
                        Ok(Some(Ok(msg))) => {
                            last_rx = Instant::now();
                            // Pongs are answered by the library; binary is not JMAP.
                            if let Message::Text(t) = msg {
                                st.handle(t.as_str());
                                if !st.pending.is_empty() {
                                    break None;
                                }
                            }
                        }
                    }
                };
                let Some(error) = error else {
                    st.phase = Phase::Streaming(ws);
                    continue;
                };
                let ev = st.disconnect(error);
                return Some((Ok(ev), st));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_message_names_types_and_push_state() {
        let c = PushConfig::default().types(["Email", "Mailbox"]);
        let v: serde_json::Value =
            serde_json::from_str(&enable_message(&c, Some("p7"))).expect("json");
        assert_eq!(v["@type"], "WebSocketPushEnable");
        assert_eq!(v["dataTypes"], serde_json::json!(["Email", "Mailbox"]));
        assert_eq!(v["pushState"], "p7");
        let v: serde_json::Value =
            serde_json::from_str(&enable_message(&PushConfig::default(), None)).expect("json");
        assert_eq!(v["dataTypes"], serde_json::Value::Null);
        assert!(v.get("pushState").is_none());
    }
}
