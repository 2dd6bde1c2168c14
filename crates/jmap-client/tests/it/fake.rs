//! A scripted HTTP/1.1 server on loopback (optionally over TLS) for behaviour the real
//! Cyrus cannot show: a spec-following EventSource endpoint, error pages, problem details,
//! insecure redirects. Every connection is closed after one response.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A streamed body: chunks written after delays, then closed or left open (hung).
    Stream {
        status: u16,
        headers: Vec<(&'static str, String)>,
        chunks: Vec<(Duration, Vec<u8>)>,
        hang: bool,
    },
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: serde_json::to_vec(body).unwrap(),
        }
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(
        handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        Self::start_inner(Arc::new(handler), None).await
    }

    pub async fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        Self::start_inner(
            Arc::new(handler),
            Some(tokio_rustls::TlsAcceptor::from(tls)),
        )
        .await
    }

    async fn start_inner(
        handler: Arc<Handler>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, handler, recorded).await;
                            }
                        }
                        None => serve(tcp, handler, recorded).await,
                    }
                });
            }
        });
        FakeServer {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).await.unwrap_or(0) == 0 {
                return;
            }
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                return;
            };
            let mut chunk = vec![0; n + 2];
            if r.read_exact(&mut chunk).await.is_err() {
                return;
            }
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let req = Recorded {
        method,
        target,
        headers,
        body,
    };
    let index = {
        let mut all = recorded.lock().unwrap();
        all.push(req.clone());
        all.len() - 1
    };
    let reply = handler(&req, index);
    let stream = r.get_mut();
    let head = |status: u16, headers: &[(&'static str, String)], extra: &str| {
        let mut s = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n{extra}");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let h = head(
                status,
                &headers,
                &format!("Content-Length: {}\r\n", body.len()),
            );
            let _ = stream.write_all(h.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
        }
        Reply::Stream {
            status,
            headers,
            chunks,
            hang,
        } => {
            let _ = stream
                .write_all(head(status, &headers, "").as_bytes())
                .await;
            let _ = stream.flush().await;
            for (delay, bytes) in chunks {
                tokio::time::sleep(delay).await;
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let _ = stream.shutdown().await;
        }
    }
}

/// A minimal valid Session whose URLs point back at the fake server.
pub fn session_json(event_source: bool, max_upload: u64, state: &str) -> serde_json::Value {
    let mut s = serde_json::json!({
        "capabilities": {
            "urn:ietf:params:jmap:core": {"maxSizeUpload": max_upload, "maxConcurrentUpload": 2, "maxSizeRequest": 1000000,
              "maxConcurrentRequests": 2, "maxCallsInRequest": 8, "maxObjectsInGet": 100, "maxObjectsInSet": 100, "collationAlgorithms": []},
            "urn:ietf:params:jmap:mail": {}
        },
        "accounts": {"u1": {"name": "u1", "isPersonal": true, "isReadOnly": false,
                            "accountCapabilities": {"urn:ietf:params:jmap:mail": {}}}},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "u1"},
        "username": "u1",
        "apiUrl": "/api",
        "downloadUrl": "/download/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/upload/{accountId}",
        "state": state
    });
    if event_source {
        s["eventSourceUrl"] = "/events?types={types}&closeafter={closeafter}&ping={ping}".into();
    }
    s
}
