//! Push over EventSource (RFC 8620 §7.3): a [`PushStream`] the caller drives (no task is
//! spawned), yielding parsed StateChange events, noticing a dead connection from missed
//! pings, and reconnecting with `Last-Event-ID` and exponential backoff. WebSocket push
//! (RFC 8887) is in `ws`, yielding the same events.

mod sse;
mod ws;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::Rng;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use serde::Deserialize;

use crate::client::Client;
use crate::error::{Error, PushUnavailableReason, TransportError, TransportErrorKind};
use crate::id::{AccountId, State};
use crate::session::UrlTemplate;
use crate::transport;
use sse::{SseEvent, SseParser};

/// A StateChange push object: account → type name (`Email`, `Mailbox`, …) → new state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateChange {
    /// `changed`
    #[serde(default)]
    pub changed: BTreeMap<AccountId, BTreeMap<String, State>>,
}

impl StateChange {
    /// The new state of a type in an account, if it changed.
    pub fn state_of(&self, account: &AccountId, type_name: &str) -> Option<&State> {
        self.changed.get(account)?.get(type_name)
    }
}

/// What the push stream reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum PushEvent {
    /// The stream is (re)connected. Changes may have been missed while disconnected, so
    /// callers should synchronise once (e.g. `/changes` from their stored states).
    Connected,
    /// Some data changed on the server.
    StateChange(StateChange),
    /// The connection failed or died (missed pings); the stream reconnects after `retry_in`.
    Disconnected {
        /// Why.
        error: Error,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
}

/// The longest ping interval (seconds) a server is believed to use; see
/// [`PushConfig`]'s dead-connection rule.
pub const MAX_PLAUSIBLE_PING_SECS: u64 = 600;

/// Push stream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushConfig {
    /// Type names to watch (`Email`, `Mailbox`, …); empty means all (`*`).
    pub types: Vec<String>,
    /// The `ping` interval asked of the server.
    pub ping_interval: Duration,
    /// The connection is declared dead after this many ping intervals without any data.
    pub missed_pings: u32,
    /// The first reconnection delay (doubled per failed attempt, with jitter).
    pub initial_backoff: Duration,
    /// The longest reconnection delay.
    pub max_backoff: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            types: Vec::new(),
            ping_interval: Duration::from_secs(30),
            missed_pings: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl PushConfig {
    /// Watch only these types.
    #[must_use]
    pub fn types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The ping interval (whole seconds, at least one).
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Pings that may be missed before reconnecting (at least one).
    #[must_use]
    pub fn missed_pings(mut self, n: u32) -> Self {
        self.missed_pings = n;
        self
    }

    /// Backoff bounds.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    fn ping_secs(&self) -> u64 {
        self.ping_interval.as_secs().max(1)
    }

    /// How long a connection may stay silent: `missed_pings + 1` ping intervals, the interval
    /// being the server's (it may raise ours to its minimum, RFC 8620 §7.3) unless that is
    /// implausible. An interval over [`MAX_PLAUSIBLE_PING_SECS`] (e.g. 30000, a server
    /// counting in milliseconds) is bounded by the one we asked for; taken as seconds it would
    /// leave a dead stream unnoticed for a day.
    fn dead_after(&self, server_interval_secs: u64) -> Duration {
        let server = if server_interval_secs > MAX_PLAUSIBLE_PING_SECS {
            tracing::debug!(
                server_interval_secs,
                "implausible ping interval; using the one asked for"
            );
            0
        } else {
            server_interval_secs
        };
        let secs = self.ping_secs().max(server);
        Duration::from_secs(secs.saturating_mul(u64::from(self.missed_pings.max(1)) + 1))
    }
}

/// The push stream: `Ok` items are [`PushEvent`]s; an `Err` is final (push unavailable,
/// bad credentials, refused URL) and the stream ends after it.
pub struct PushStream {
    inner: Pin<Box<dyn Stream<Item = Result<PushEvent, Error>> + Send>>,
}

impl fmt::Debug for PushStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushStream")
    }
}

impl Stream for PushStream {
    type Item = Result<PushEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

enum Phase {
    Connect,
    Backoff(Duration),
    Streaming(ByteStream),
    Done,
}

struct PushState {
    client: Client,
    config: PushConfig,
    template: UrlTemplate,
    last_event_id: Option<String>,
    server_retry: Option<Duration>,
    attempt: u32,
    dead_after: Duration,
    parser: SseParser,
    pending: VecDeque<PushEvent>,
    phase: Phase,
}

impl Client {
    /// Opens the EventSource push stream (`closeafter=no`). Nothing happens until the stream
    /// is polled. Fails at once with [`Error::PushUnavailable`] when the Session has no
    /// `eventSourceUrl`; the stream's first item is that error when the server refuses to
    /// stream (Cyrus 3.6 answers `204 No Content`): fall back to polling then.
    pub fn event_source(&self, config: PushConfig) -> Result<PushStream, Error> {
        let session = self.session();
        let template = session
            .event_source_url()
            .cloned()
            .ok_or(Error::PushUnavailable {
                reason: PushUnavailableReason::NoEventSourceUrl,
            })?;
        let state = PushState {
            client: self.clone(),
            dead_after: config.dead_after(0),
            config,
            template,
            last_event_id: None,
            server_retry: None,
            attempt: 0,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            phase: Phase::Connect,
        };
        Ok(PushStream {
            inner: Box::pin(futures::stream::unfold(state, step)),
        })
    }
}

fn is_final(e: &Error) -> bool {
    matches!(
        e,
        Error::PushUnavailable { .. }
            | Error::Unauthorized { .. }
            | Error::InsecureUrl { .. }
            | Error::InvalidUrl { .. }
            | Error::Config(_)
    )
}

async fn connect(
    client: &Client,
    config: &PushConfig,
    template: &UrlTemplate,
    last_event_id: Option<&str>,
) -> Result<ByteStream, Error> {
    let types = if config.types.is_empty() {
        "*".to_owned()
    } else {
        config.types.join(",")
    };
    let ping = config.ping_secs().to_string();
    let url = template.expand(&[("types", &types), ("closeafter", "no"), ("ping", &ping)])?;
    transport::check_url_allowed(&url, client.config().allow_insecure_http)?;
    let mut req = client
        .authed(client.http().get(url))
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache");
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    // Only the response head is bounded; the body is an endless stream watched by pings.
    let resp = tokio::time::timeout(client.config().request_timeout, req.send())
        .await
        .map_err(|_| {
            Error::Transport(TransportError::new(
                TransportErrorKind::Timeout,
                "no response from the EventSource endpoint",
            ))
        })?
        .map_err(transport::map_reqwest_error)?;
    let status = resp.status().as_u16();
    match status {
        204 => Err(Error::PushUnavailable {
            reason: PushUnavailableReason::NoContent,
        }),
        404 | 405 | 501 => Err(Error::PushUnavailable {
            reason: PushUnavailableReason::Status(status),
        }),
        200..=299 => {
            let ct = transport::content_type(resp.headers());
            if !ct
                .as_deref()
                .is_some_and(|c| c.starts_with("text/event-stream"))
            {
                return Err(Error::PushUnavailable {
                    reason: PushUnavailableReason::NotEventStream { content_type: ct },
                });
            }
            Ok(Box::pin(resp.bytes_stream()))
        }
        _ => {
            let mut watch = transport::Watchdog::new(client.config().stall_timeout);
            Err(transport::error_from_response(resp, &mut watch).await)
        }
    }
}

/// The delay before reconnection attempt `attempt` (then counted): the server's `retry` or
/// the configured initial backoff, doubled per failed attempt up to the maximum, jittered
/// down to half.
fn backoff_delay(
    config: &PushConfig,
    server_retry: Option<Duration>,
    attempt: &mut u32,
) -> Duration {
    let base = server_retry
        .unwrap_or(config.initial_backoff)
        .max(Duration::from_millis(10));
    let factor = 2u32.saturating_pow((*attempt).min(20));
    let delay = base
        .saturating_mul(factor)
        .min(config.max_backoff.max(base));
    *attempt = attempt.saturating_add(1);
    let low = delay / 2;
    if delay.is_zero() {
        return delay;
    }
    rand::rng().random_range(low..=delay)
}

impl PushState {
    fn next_delay(&mut self) -> Duration {
        backoff_delay(&self.config, self.server_retry, &mut self.attempt)
    }

    fn disconnect(&mut self, error: Error) -> PushEvent {
        let retry_in = self.next_delay();
        tracing::debug!(error = %error, ?retry_in, "push stream disconnected");
        self.phase = Phase::Backoff(retry_in);
        PushEvent::Disconnected { error, retry_in }
    }

    fn handle(&mut self, event: SseEvent) {
        if let Some(id) = event.id {
            self.last_event_id = Some(id);
        }
        match event.event.as_str() {
            "state" => match serde_json::from_str::<StateChange>(&event.data) {
                Ok(change) => self.pending.push_back(PushEvent::StateChange(change)),
                Err(e) => tracing::debug!(error = %e, "ignoring a malformed StateChange"),
            },
            "ping" => {
                let interval = serde_json::from_str::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("interval").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                self.dead_after = self.config.dead_after(interval);
            }
            other => tracing::trace!(event = other, "ignoring an unknown push event"),
        }
    }
}

fn transport_error(kind: TransportErrorKind, message: &'static str) -> Error {
    Error::Transport(TransportError::new(kind, message))
}

async fn step(mut st: PushState) -> Option<(Result<PushEvent, Error>, PushState)> {
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
            Phase::Connect => match connect(
                &st.client,
                &st.config,
                &st.template,
                st.last_event_id.as_deref(),
            )
            .await
            {
                Ok(stream) => {
                    st.attempt = 0;
                    st.parser = SseParser::new();
                    st.dead_after = st.config.dead_after(0);
                    st.phase = Phase::Streaming(stream);
                    return Some((Ok(PushEvent::Connected), st));
                }
                Err(e) if is_final(&e) => return Some((Err(e), st)),
                Err(e) => {
                    let ev = st.disconnect(e);
                    return Some((Ok(ev), st));
                }
            },
            Phase::Streaming(mut stream) => {
                let error = match tokio::time::timeout(st.dead_after, stream.next()).await {
                    Err(_) => transport_error(
                        TransportErrorKind::Timeout,
                        "no event or ping within the expected interval",
                    ),
                    Ok(None) => transport_error(
                        TransportErrorKind::Body,
                        "the server closed the event stream",
                    ),
                    Ok(Some(Err(e))) => transport::map_reqwest_error(e),
                    Ok(Some(Ok(bytes))) => match st.parser.feed(&bytes) {
                        Ok(events) => {
                            if let Some(ms) = st.parser.retry_ms {
                                st.server_retry = Some(Duration::from_millis(ms));
                            }
                            for ev in events {
                                st.handle(ev);
                            }
                            st.phase = Phase::Streaming(stream);
                            continue;
                        }
                        Err(_) => transport_error(
                            TransportErrorKind::Protocol,
                            "event stream line too long",
                        ),
                    },
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
    fn state_change_parses() {
        let c: StateChange = serde_json::from_str(
            r#"{"@type":"StateChange","changed":{"u1":{"Email":"s9","Mailbox":"m3"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.state_of(&AccountId::new("u1"), "Email"),
            Some(&State::new("s9"))
        );
        assert_eq!(c.state_of(&AccountId::new("u1"), "Thread"), None);
    }

    #[test]
    fn dead_after_uses_the_longer_interval() {
        let c = PushConfig::default()
            .ping_interval(Duration::from_secs(10))
            .missed_pings(2);
        assert_eq!(c.dead_after(0), Duration::from_secs(30));
        assert_eq!(c.dead_after(20), Duration::from_secs(60));
    }

    #[test]
    fn an_implausible_server_interval_is_bounded_by_ours() {
        let c = PushConfig::default()
            .ping_interval(Duration::from_secs(30))
            .missed_pings(2);
        // 30000: milliseconds sent where RFC 8620 says seconds.
        assert_eq!(c.dead_after(30_000), Duration::from_secs(90));
        assert_eq!(
            c.dead_after(MAX_PLAUSIBLE_PING_SECS),
            Duration::from_secs(1800)
        );
        assert_eq!(
            c.dead_after(MAX_PLAUSIBLE_PING_SECS + 1),
            Duration::from_secs(90)
        );
    }
}
