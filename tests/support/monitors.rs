//! What the network and service monitor tests share: the checks as `drctl monitors
//! --json` shows them, and a real HTTP server on loopback whose answer the test sets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drd_integration_tests::{text, Daemon};
use drd_proto::MonitorCheck;

/// Every check of every monitor, from `drctl monitors --json` (which exits 1 while a
/// check fires, so its status is not asserted).
pub fn checks(daemon: &Daemon) -> Vec<MonitorCheck> {
    let out = daemon.drctl(&["monitors", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&out)))
}

/// The check `name` of `monitor`, if drd shows it.
pub fn check(daemon: &Daemon, monitor: &str, name: &str) -> Option<MonitorCheck> {
    checks(daemon)
        .into_iter()
        .find(|c| c.monitor == monitor && c.check == name)
}

/// A loopback HTTP server answering every request with the status the test sets, and
/// counting the requests.
pub struct HttpServer {
    pub port: u16,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
}

impl HttpServer {
    /// Listens on 127.0.0.1 and answers `status` until told otherwise.
    pub fn start(status: u16) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(status));
        let requests = Arc::new(AtomicUsize::new(0));
        let (answer, count) = (status.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let code = answer.load(Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        HttpServer {
            port,
            status,
            requests,
        }
    }

    /// From now on, answer `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT/health`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }
}
