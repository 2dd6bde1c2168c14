//! A counting TCP proxy in front of Dovecot: every line a client sends is recorded, so the
//! commands (round trips) of a sync can be counted exactly without server-side logging.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Result;

/// What the clients sent through the proxy.
#[derive(Debug, Default)]
pub struct Log {
    /// Client lines (first 100 bytes each), in order, all connections interleaved.
    pub lines: Vec<String>,
    /// Connections accepted.
    pub connections: u64,
}

/// A running proxy; lives until the process ends.
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
}

impl Proxy {
    pub fn start(upstream: (String, u16)) -> Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let log = Arc::new(Mutex::new(Log::default()));
        let lg = log.clone();
        thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    continue;
                };
                if let Ok(mut g) = lg.lock() {
                    g.connections += 1;
                }
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                thread::spawn(move || {
                    let mut from = server;
                    let _ = io::copy(&mut from, &mut c2);
                    let _ = c2.shutdown(Shutdown::Both);
                });
                let lg = lg.clone();
                thread::spawn(move || {
                    let mut r = BufReader::new(client);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match r.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        if let Ok(mut g) = lg.lock() {
                            let n = line.len().min(100);
                            g.lines
                                .push(String::from_utf8_lossy(&line[..n]).into_owned());
                        }
                        if s2.write_all(&line).is_err() {
                            break;
                        }
                    }
                    let _ = s2.shutdown(Shutdown::Both);
                });
            }
        });
        Ok(Proxy { port, log })
    }

    /// Empties the log and returns what it held.
    pub fn take(&self) -> Log {
        self.log
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }
}
