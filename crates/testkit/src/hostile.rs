//! A deliberately broken server on loopback: every connection gets the same script (bytes to
//! send, then close, reset, stall or trickle forever), to test that clients end each case with
//! a typed error in bounded time.
//!
//! ```no_run
//! use mailsync_testkit::{HostileServer, Script};
//! // An HTTP server that stops in the middle of its headers.
//! let s = HostileServer::start(Script::send(b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec()))?;
//! // connect a client to 127.0.0.1:s.port()
//! # Ok::<(), mailsync_testkit::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::Error;

/// What the server does after sending its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Closes the connection (FIN).
    Close,
    /// Resets the connection (RST: linger 0, then close).
    Reset,
    /// Keeps the connection open and sends nothing more.
    Stall,
    /// Sends `byte` forever, one per `every` (a line that never ends).
    Trickle {
        /// The byte repeated.
        byte: u8,
        /// The interval between two bytes.
        every: Duration,
    },
    /// Sends `byte` forever as fast as the client reads.
    Flood {
        /// The byte repeated.
        byte: u8,
    },
}

/// Every connection's script: read what the client sends (and ignore it), send `first` once,
/// then do `then`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Sent as soon as the connection is accepted.
    pub first: Vec<u8>,
    /// What follows.
    pub then: Then,
    /// Whether `first` waits for the client's first bytes (an HTTP server answers a request;
    /// an IMAP server greets first).
    pub after_request: bool,
    /// Replies sent one per later burst of client bytes (one HTTP request each on a kept-alive
    /// connection), before `then`.
    pub more: Vec<Vec<u8>>,
}

impl Script {
    /// Sends `first` after the client's first bytes, then closes.
    pub fn send(first: Vec<u8>) -> Self {
        Self {
            first,
            then: Then::Close,
            after_request: true,
            more: Vec::new(),
        }
    }

    /// Closes at once, before reading anything (a TLS handshake or greeting cut short).
    pub fn close_at_once() -> Self {
        Self {
            first: Vec::new(),
            then: Then::Close,
            after_request: false,
            more: Vec::new(),
        }
    }

    /// Sends `first` as soon as the connection opens (a greeting), then `then`.
    pub fn greet(first: Vec<u8>, then: Then) -> Self {
        Self {
            first,
            then,
            after_request: false,
            more: Vec::new(),
        }
    }

    /// HTTP-style: answers the first request with `first`, each later one with the next of
    /// `more`, then `then`.
    pub fn replies(first: Vec<u8>, more: Vec<Vec<u8>>, then: Then) -> Self {
        Self {
            first,
            then,
            after_request: true,
            more,
        }
    }

    /// What follows `first`.
    #[must_use]
    pub fn then(mut self, then: Then) -> Self {
        self.then = then;
        self
    }
}

struct Shared {
    stop: AtomicBool,
    connections: AtomicUsize,
}

/// The server; stops, ending every connection's script, when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl HostileServer {
    /// Listens on an ephemeral loopback port; every connection runs `script` on its own thread.
    pub fn start(script: Script) -> Result<Self, Error> {
        Self::start_with(|_| script)
    }

    /// Like [`Self::start`], with a script that needs the port (an HTTP server's own URLs).
    pub fn start_with(script: impl FnOnce(u16) -> Script) -> Result<Self, Error> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| Error::Io { context, source }
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a hostile server"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the hostile server's address"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let script = script(addr.port());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let stop = s.clone();
                thread::spawn(move || serve(conn, &script, &stop.stop));
            }
        });
        Ok(Self { addr, shared })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The host clients connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop; each connection's thread sees the flag within 50 ms.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut conn: TcpStream, script: &Script, stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
    // Whatever the client sends is read and dropped, on its own thread, so the client never
    // blocks on a full send buffer. The reader ends when the script does, so that the script
    // holds the last handle (a reset needs the socket closed for real).
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = conn.try_clone().ok().map(|mut r| {
        let done = done.clone();
        let _ = r.set_read_timeout(Some(Duration::from_millis(50)));
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while !done.load(Ordering::SeqCst) {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let _ = tx.send(());
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        })
    });
    let finish = |conn: TcpStream, reset: bool| {
        done.store(true, Ordering::SeqCst);
        if let Some(r) = reader {
            let _ = r.join();
        }
        if reset {
            let _ = socket_linger_zero(&conn);
        } else {
            let _ = conn.shutdown(Shutdown::Both);
        }
        drop(conn);
    };
    if script.after_request && rx.recv_timeout(Duration::from_secs(30)).is_err() {
        return finish(conn, false);
    }
    if !script.first.is_empty() && conn.write_all(&script.first).is_err() {
        return finish(conn, false);
    }
    let _ = conn.flush();
    for reply in &script.more {
        if rx.recv_timeout(Duration::from_secs(30)).is_err() || conn.write_all(reply).is_err() {
            return finish(conn, false);
        }
    }
    let live = || !stop.load(Ordering::SeqCst);
    match script.then {
        Then::Close => {}
        Then::Reset => return finish(conn, true),
        Then::Stall => {
            while live() {
                thread::sleep(Duration::from_millis(50));
            }
        }
        Then::Trickle { byte, every } => {
            while live() && conn.write_all(&[byte]).is_ok() {
                thread::sleep(every);
            }
        }
        Then::Flood { byte } => {
            let chunk = vec![byte; 64 * 1024];
            while live() {
                match conn.write(&chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
    }
    finish(conn, false);
}

/// SO_LINGER 0, so that closing sends RST instead of FIN.
fn socket_linger_zero(conn: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO))
}
