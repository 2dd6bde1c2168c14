//! A fault-injecting TCP proxy on loopback: forwards bytes both ways and, when armed, cuts one
//! connection a given number of server bytes after the client sent a given pattern (e.g. a
//! body download command), or after a given number of client bytes, to test what a sync keeps
//! when the network drops mid-download or mid-command. The bytes are counted on the next
//! connection opened, or over every connection opened after arming (for a client that spreads
//! its requests over a pool). (Servers that stall, trickle or reset: [`crate::HostileServer`].)
//!
//! ```no_run
//! use mailsync_testkit::{Cut, FaultProxy};
//! let proxy = FaultProxy::start("127.0.0.1", 10143)?;
//! proxy.arm(Cut::after_client_sends(b"BODY.PEEK[]", 50 * 1024));
//! // connect a client to 127.0.0.1:proxy.port(): the next connection is cut once.
//! # Ok::<(), mailsync_testkit::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crate::Error;

/// When to cut a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Start counting once the client has sent these bytes (empty: from the start).
    pub trigger: Vec<u8>,
    /// Server-to-client bytes forwarded after the trigger before the connection is cut.
    pub server_bytes: u64,
    /// Client-to-server bytes forwarded before the connection is cut (`None`: no limit), to
    /// cut while the client is sending (a command or an upload).
    pub client_bytes: Option<u64>,
    /// Whether the byte counts run over every connection opened after arming, the one that
    /// crosses a limit being cut (`false`: only the next connection opened is counted and
    /// cut). An HTTP client may open a second pooled connection whenever the first is not yet
    /// back in its pool, so "the next connection" may carry only part of its requests.
    pub across_connections: bool,
    /// Hold instead of cutting: at the limit the connection goes silent (nothing more is
    /// forwarded in that direction) until [`FaultProxy::release`], which closes every
    /// connection. A test drops its client meanwhile, as when the process is killed at that
    /// byte: the client never sees the cut.
    pub hold: bool,
    /// Pause instead of cutting: at the limit the connection goes silent in that direction
    /// until [`FaultProxy::resume`] or for at most this long, then forwards on as if nothing
    /// happened (nothing is lost or closed). A test makes another client act meanwhile, in
    /// the middle of the paused client's command or answer.
    pub pause: Option<std::time::Duration>,
}

impl Cut {
    /// Cuts `server_bytes` bytes of server data after the connection opened.
    pub fn after_server_bytes(server_bytes: u64) -> Self {
        Self {
            trigger: Vec::new(),
            server_bytes,
            client_bytes: None,
            across_connections: false,
            hold: false,
            pause: None,
        }
    }

    /// Cuts after `client_bytes` bytes the client sent (whatever the server sends).
    pub fn after_client_bytes(client_bytes: u64) -> Self {
        Self {
            trigger: Vec::new(),
            server_bytes: u64::MAX,
            client_bytes: Some(client_bytes),
            across_connections: false,
            hold: false,
            pause: None,
        }
    }

    /// Cuts `server_bytes` bytes of server data after the client sent `trigger`.
    pub fn after_client_sends(trigger: &[u8], server_bytes: u64) -> Self {
        Self {
            trigger: trigger.to_vec(),
            server_bytes,
            client_bytes: None,
            across_connections: false,
            hold: false,
            pause: None,
        }
    }

    /// The same cut, with its bytes counted over every connection opened after arming
    /// ([`Cut::across_connections`]).
    #[must_use]
    pub fn over_all_connections(mut self) -> Self {
        self.across_connections = true;
        self
    }

    /// The same limit, held instead of cut ([`Cut::hold`]).
    #[must_use]
    pub fn held(mut self) -> Self {
        self.hold = true;
        self
    }

    /// The same limit, paused for at most `max` instead of cut ([`Cut::pause`]).
    #[must_use]
    pub fn paused(mut self, max: std::time::Duration) -> Self {
        self.pause = Some(max);
        self
    }
}

/// An armed cut and what is left of its byte budgets, shared by the connections it counts.
struct Armed {
    cut: Cut,
    server_left: Mutex<u64>,
    client_left: Mutex<Option<u64>>,
    /// Set by the connection that was cut: the others pass through from then on.
    spent: AtomicBool,
}

impl Armed {
    fn new(cut: Cut) -> Self {
        Self {
            server_left: Mutex::new(cut.server_bytes),
            client_left: Mutex::new(cut.client_bytes),
            cut,
            spent: AtomicBool::new(false),
        }
    }

    /// Takes `n` bytes from `left` (a budget of this cut, locked by the caller): `Some(k)`
    /// when the limit falls within them, the connection then being cut after `k` bytes (once
    /// per cut, whichever connection gets there first).
    fn take(&self, left: &mut u64, n: usize, shared: &Shared) -> Option<usize> {
        if self.spent.load(Ordering::SeqCst) {
            return None;
        }
        if *left > n as u64 {
            *left -= n as u64;
            return None;
        }
        if self.spent.swap(true, Ordering::SeqCst) {
            return None;
        }
        // Counted before the client can see the cut.
        if self.cut.hold || self.cut.pause.is_some() {
            shared.held.store(true, Ordering::SeqCst);
        }
        shared.cuts.fetch_add(1, Ordering::SeqCst);
        let mut armed = shared.armed.lock().unwrap_or_else(PoisonError::into_inner);
        if armed
            .as_ref()
            .is_some_and(|a| std::ptr::eq(Arc::as_ptr(a), self))
        {
            *armed = None;
        }
        Some(usize::try_from(*left).unwrap_or(n))
    }
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Option<Arc<Armed>>>,
    /// The last cut armed, until [`FaultProxy::disarm`] withdraws it.
    latest: Mutex<Option<Arc<Armed>>>,
    cuts: AtomicUsize,
    connections: AtomicUsize,
    /// Connections open now (accepted, and the client has not closed its side yet).
    live: AtomicUsize,
    /// The most connections open at once so far.
    peak: AtomicUsize,
    forwarded: AtomicU64,
    stop: AtomicBool,
    /// An outage: new connections are closed at once, without reaching the server.
    down: AtomicBool,
    /// A held cut was reached and not yet released ([`Cut::hold`]).
    held: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    /// Accepted clients not yet counted as closed, with their counters: looked at on each
    /// accept ([`count_closed_clients`]).
    clients: Mutex<Vec<(TcpStream, Arc<Closed>)>>,
}

/// A TCP proxy from a loopback port to an upstream server, run on plain threads (so it works
/// under any async runtime or none). Stops, closing every connection, when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("cuts", &self.cuts())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards every connection to `host:port`.
    pub fn start(host: &str, port: u16) -> Result<Self, Error> {
        let io = |context: String| move |source| Error::Io { context, source };
        let upstream: SocketAddr = (host, port)
            .to_socket_addrs()
            .map_err(io(format!("resolving {host}:{port}")))?
            .next()
            .ok_or_else(|| {
                io(format!("resolving {host}:{port}"))(std::io::Error::other("no address"))
            })?;
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io("binding the proxy".to_owned()))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the proxy's address".to_owned()))?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || accept_loop(&listener, upstream, &s));
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

    /// Arms one cut: the next connection opened (or, [`Cut::across_connections`], the one of
    /// those opened from now on that reaches the limit) is cut as `cut` says; later ones pass
    /// through.
    pub fn arm(&self, cut: Cut) {
        let a = Arc::new(Armed::new(cut));
        *self
            .shared
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(a.clone());
        *self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(a);
    }

    /// Withdraws the last cut armed if it was not reached: every connection passes through
    /// from now on, those already counting it included.
    pub fn disarm(&self) {
        *self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(a) = self
            .shared
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            a.spent.store(true, Ordering::SeqCst);
        }
    }

    /// Ends a pause ([`Cut::pause`]): the paused connection forwards on.
    pub fn resume(&self) {
        self.shared.held.store(false, Ordering::SeqCst);
    }

    /// Whether a held or paused cut was reached and is not yet released or resumed.
    pub fn holding(&self) -> bool {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Ends a held cut ([`Cut::hold`]): every connection open now is closed (the held one
    /// included, without forwarding anything more).
    pub fn release(&self) {
        self.close_open();
        self.shared.held.store(false, Ordering::SeqCst);
    }

    /// Starts (`true`) or ends an outage: while down, every open connection is closed and new
    /// ones are closed as soon as they are accepted, as when the server is unreachable.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.close_open();
        }
    }

    /// Closes every connection open now.
    fn close_open(&self) {
        let open = std::mem::take(
            &mut *self
                .shared
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for s in open {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Server-to-client bytes forwarded so far, over every connection (to choose cut offsets
    /// within a run measured beforehand).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections are open now: accepted, and neither the client nor the server
    /// has closed it yet (a client's close is seen within moments, not atomically with it).
    pub fn open_now(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// The most connections open at once so far (counted at each accept, so a connection
    /// opened just as another closed may count both).
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        self.close_open();
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.down.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        count_closed_clients(shared);
        let now = shared.live.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        // Closed once, by whichever direction ends first.
        let closed = Arc::new(Closed {
            done: AtomicBool::new(false),
            shared: shared.clone(),
        });
        if let Ok(c) = client.try_clone() {
            shared
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((c, closed.clone()));
        }
        let cut = {
            let mut armed = shared.armed.lock().unwrap_or_else(PoisonError::into_inner);
            match armed.as_ref() {
                Some(a) if a.cut.across_connections => Some(a.clone()),
                _ => armed.take(),
            }
        };
        if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
            let mut open = shared.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.push(c);
            open.push(s);
        }
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let triggered = Arc::new(AtomicBool::new(
            cut.as_ref().is_none_or(|a| a.cut.trigger.is_empty()),
        ));
        let trigger = cut
            .as_ref()
            .map(|a| a.cut.trigger.clone())
            .unwrap_or_default();
        let (Ok(c_read), Ok(s_write)) = (client.try_clone(), server.try_clone()) else {
            closed.close();
            continue;
        };
        let t = triggered.clone();
        let sh = shared.clone();
        let cl = closed.clone();
        let c = cut.clone();
        thread::spawn(move || {
            client_to_server(c_read, s_write, &trigger, &t, c.as_deref(), &sh);
            cl.close();
        });
        let sh = shared.clone();
        thread::spawn(move || {
            server_to_client(server, client, cut.as_deref(), &triggered, &sh);
            closed.close();
        });
    }
}

/// Counts as closed every client whose close (FIN or reset) already waits in its socket while
/// its relay thread has not woken up to it yet. A client that closes a connection and then
/// opens another (as a connection cap makes it do) must not look like two open at once just
/// because the proxy's threads were slower than the client.
fn count_closed_clients(shared: &Shared) {
    let mut clients = shared
        .clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    clients.retain(|(s, closed)| {
        if closed.done.load(Ordering::SeqCst) {
            return false;
        }
        if peer_closed(s) {
            closed.close();
            return false;
        }
        true
    });
}

/// Whether the peer's close is waiting in `s`: a peek that neither waits nor takes data
/// (`MSG_PEEK | MSG_DONTWAIT`, Linux values) reads end-of-stream or an error. Data still
/// waiting (the relay thread has not read it yet) counts as open.
fn peer_closed(s: &TcpStream) -> bool {
    const MSG_PEEK: i32 = 0x02;
    const MSG_DONTWAIT: i32 = 0x40;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(s).recv_with_flags(&mut buf, MSG_PEEK | MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

/// One connection's end, counted once.
struct Closed {
    done: AtomicBool,
    shared: Arc<Shared>,
}

impl Closed {
    fn close(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.shared.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// For a paused cut ([`Cut::pause`]), waits until [`FaultProxy::resume`], the pause's
/// longest or the proxy's stop. Returns whether the cut was a pause (the caller forwards on).
fn pause_while_paused(a: &Armed, shared: &Shared) -> bool {
    let Some(max) = a.cut.pause else {
        return false;
    };
    let start = std::time::Instant::now();
    while shared.held.load(Ordering::SeqCst)
        && !shared.stop.load(Ordering::SeqCst)
        && start.elapsed() < max
    {
        thread::sleep(std::time::Duration::from_millis(1));
    }
    shared.held.store(false, Ordering::SeqCst);
    true
}

/// For a held cut, forwards nothing more until [`FaultProxy::release`] (or the proxy stops).
fn hold_while_held(a: &Armed, shared: &Shared) {
    if !a.cut.hold {
        return;
    }
    while shared.held.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn client_to_server(
    mut from: TcpStream,
    mut to: TcpStream,
    trigger: &[u8],
    seen: &AtomicBool,
    cut: Option<&Armed>,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The last bytes of the previous read, so a trigger split across reads is still found.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = buf.get(..n).unwrap_or_default();
        if !seen.load(Ordering::SeqCst) {
            tail.extend_from_slice(data);
            if tail.windows(trigger.len().max(1)).any(|w| w == trigger) {
                seen.store(true, Ordering::SeqCst);
            }
            let keep = trigger.len().saturating_sub(1);
            let drop_n = tail.len().saturating_sub(keep);
            tail.drain(..drop_n);
        }
        if let Some(a) = cut {
            let mut left = a.client_left.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(take) = left.as_mut().and_then(|l| a.take(l, n, shared)) {
                let _ = to.write_all(data.get(..take).unwrap_or_default());
                drop(left);
                if pause_while_paused(a, shared) {
                    if to.write_all(data.get(take..).unwrap_or_default()).is_err() {
                        break;
                    }
                    continue;
                }
                hold_while_held(a, shared);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
        if to.write_all(data).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn server_to_client(
    mut from: TcpStream,
    mut to: TcpStream,
    cut: Option<&Armed>,
    triggered: &AtomicBool,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = buf.get(..n).unwrap_or_default();
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(a) = cut.filter(|_| triggered.load(Ordering::SeqCst)) {
            let mut left = a.server_left.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(take) = a.take(&mut left, n, shared) {
                let _ = to.write_all(data.get(..take).unwrap_or_default());
                let _ = to.flush();
                drop(left);
                if pause_while_paused(a, shared) {
                    if to.write_all(data.get(take..).unwrap_or_default()).is_err() {
                        break;
                    }
                    continue;
                }
                hold_while_held(a, shared);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
        if to.write_all(data).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that closes a connection and at once opens the next never counts two open,
    /// however late the proxy's relay threads notice the close (the cap tests rely on it).
    #[test]
    fn a_closed_connection_is_not_counted_beside_the_next() -> Result<(), Box<dyn std::error::Error>>
    {
        let upstream = TcpListener::bind("127.0.0.1:0")?;
        let port = upstream.local_addr()?.port();
        // The upstream accepts and holds every connection until the test ends.
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        thread::spawn(move || {
            for s in upstream.incoming().flatten() {
                h.lock().unwrap_or_else(PoisonError::into_inner).push(s);
            }
        });
        let proxy = FaultProxy::start("127.0.0.1", port)?;
        let mut last = TcpStream::connect(proxy.addr)?;
        for _ in 0..50 {
            drop(last);
            last = TcpStream::connect(proxy.addr)?;
        }
        // Let the accept loop take the last one.
        let t0 = std::time::Instant::now();
        while proxy.connections() < 51 && t0.elapsed() < std::time::Duration::from_secs(5) {
            thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(proxy.connections(), 51);
        assert_eq!(
            proxy.peak(),
            1,
            "a closed connection counted beside the next"
        );
        drop(last);
        Ok(())
    }

    /// An upstream on a loopback port (returned) that sends 1,000 bytes on each connection
    /// and holds it open.
    fn upstream_sending_1000() -> Result<u16, std::io::Error> {
        let upstream = TcpListener::bind("127.0.0.1:0")?;
        let port = upstream.local_addr()?.port();
        thread::spawn(move || {
            let mut held = Vec::new();
            for mut s in upstream.incoming().flatten() {
                let _ = s.write_all(&[b'x'; 1000]);
                held.push(s);
            }
        });
        Ok(port)
    }

    /// Reads what a connection gets until the server side is cut (or 0.5 s pass: not cut).
    fn read_until_cut(s: &mut TcpStream) -> Result<(usize, bool), std::io::Error> {
        s.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
        let mut got = 0;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok((got, true)),
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok((got, false));
                }
                Err(_) => return Ok((got, true)),
            }
        }
    }

    /// A cut counted over all connections falls where their bytes together reach it, on the
    /// connection that gets there; a cut of the next connection only counts that one's.
    #[test]
    fn a_cut_counts_one_connection_or_all_of_them() -> Result<(), Box<dyn std::error::Error>> {
        let proxy = FaultProxy::start("127.0.0.1", upstream_sending_1000()?)?;
        for (cut, expected) in [
            (
                Cut::after_server_bytes(1500),
                [(1000, false), (1000, false)],
            ),
            (
                Cut::after_server_bytes(1500).over_all_connections(),
                [(1000, false), (500, true)],
            ),
        ] {
            let before = proxy.cuts();
            proxy.arm(cut.clone());
            let mut first = TcpStream::connect(proxy.addr)?;
            let got_first = read_until_cut(&mut first)?;
            let mut second = TcpStream::connect(proxy.addr)?;
            let got_second = read_until_cut(&mut second)?;
            assert_eq!([got_first, got_second], expected, "{cut:?}");
            assert_eq!(proxy.cuts() - before, usize::from(expected[1].1), "{cut:?}");
            // A third connection passes through: the cut is spent (or was the first's).
            let mut third = TcpStream::connect(proxy.addr)?;
            assert_eq!(read_until_cut(&mut third)?, (1000, false), "{cut:?}");
        }
        // A cut withdrawn before its limit cuts nothing, on connections opened before or after.
        let before = proxy.cuts();
        proxy.arm(Cut::after_server_bytes(1500).over_all_connections());
        let mut first = TcpStream::connect(proxy.addr)?;
        assert_eq!(read_until_cut(&mut first)?, (1000, false));
        proxy.disarm();
        let mut second = TcpStream::connect(proxy.addr)?;
        assert_eq!(read_until_cut(&mut second)?, (1000, false));
        assert_eq!(proxy.cuts(), before);
        Ok(())
    }

    /// A paused cut forwards up to its limit, then nothing until resumed, then the rest.
    #[test]
    fn a_paused_cut_forwards_the_rest_once_resumed() -> Result<(), Box<dyn std::error::Error>> {
        let proxy = FaultProxy::start("127.0.0.1", upstream_sending_1000()?)?;
        proxy.arm(Cut::after_server_bytes(600).paused(std::time::Duration::from_secs(60)));
        let mut c = TcpStream::connect(proxy.addr)?;
        assert_eq!(read_until_cut(&mut c)?, (600, false));
        assert!(proxy.holding());
        proxy.resume();
        assert_eq!(
            read_until_cut(&mut c)?,
            (400, false),
            "the rest, not closed"
        );
        assert!(!proxy.holding());
        // A pause ends by itself after its longest.
        proxy.arm(Cut::after_server_bytes(100).paused(std::time::Duration::from_secs(1)));
        let mut d = TcpStream::connect(proxy.addr)?;
        assert_eq!(read_until_cut(&mut d)?, (100, false));
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert_eq!(read_until_cut(&mut d)?, (900, false));
        Ok(())
    }

    /// A held cut forwards up to its limit and then nothing, without closing, until released.
    #[test]
    fn a_held_cut_goes_silent_until_released() -> Result<(), Box<dyn std::error::Error>> {
        let proxy = FaultProxy::start("127.0.0.1", upstream_sending_1000()?)?;
        proxy.arm(Cut::after_server_bytes(600).held());
        let mut c = TcpStream::connect(proxy.addr)?;
        // Not closed: the read times out after the 600 bytes.
        assert_eq!(read_until_cut(&mut c)?, (600, false));
        assert_eq!(proxy.cuts(), 1);
        proxy.release();
        assert_eq!(read_until_cut(&mut c)?, (0, true), "closed once released");
        Ok(())
    }
}
