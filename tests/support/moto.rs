//! A real S3-compatible server on loopback for tests: moto in server mode (PyPI
//! `moto[server]`), behind a small TCP relay that the test can switch off and on.
//!
//! moto keeps its buckets in memory, so killing it loses them. To test an endpoint that
//! goes away and comes back with its data, the endpoint the code under test uses is the
//! relay's port: [`Moto::stop`] closes the relay (new connections are refused, open ones
//! are cut) and [`Moto::start_again`] listens on the same port again, while moto itself
//! keeps running. [`Moto::kill`] ends moto itself.
//!
//! Without moto installed, [`Moto::try_start`] prints why the test is skipped and returns
//! `None`, except under `CI=true` (tests/support/real_parts.rs): then it panics, so a CI
//! machine without moto fails instead of passing by skipping.
//!
//! drd-repo's tests include this same file (crates/repo/tests/common/mod.rs), so it
//! needs nothing but std.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Credentials moto accepts (it checks none); pass them to the code under test.
pub const ACCESS_KEY_ID: &str = "test";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "test";
/// The region the buckets are made in.
pub const REGION: &str = "us-east-1";

/// A running moto server and the relay in front of it. Dropping it stops both.
pub struct Moto {
    child: Option<Child>,
    /// moto's own port (tests' setup requests go here, bypassing the relay).
    moto_port: u16,
    relay: Relay,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto, or skips (returns `None` after printing why) when moto is not
    /// installed; panics instead under `CI=true`.
    pub fn try_start() -> Option<Moto> {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            super::real_part_missing("moto", "python3 -m pip install 'moto[server]'");
            return None;
        }
        Some(Moto::start())
    }

    /// Starts moto on a free loopback port and waits until it answers (about 2 s);
    /// panics if it cannot.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("temp dir for moto");
        let log = dir.path().join("moto.log");
        let moto_port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(moto_port.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("moto log"))
            .stderr(std::fs::File::create(dir.path().join("moto.err")).expect("moto log"))
            .spawn()
            .expect("start python3 -m moto.server");
        let mut moto = Moto {
            child: Some(child),
            moto_port,
            relay: Relay::new(moto_port),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http(moto_port, "GET", "/", &[]).is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = moto.child.as_mut().map(Child::try_wait) {
                panic!("moto exited at start ({status}): {}", moto.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within 60 s: {}",
                moto.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto.relay.listen();
        moto
    }

    /// The endpoint URL to give the code under test (the relay), `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.relay.port)
    }

    /// The relay's port.
    pub fn port(&self) -> u16 {
        self.relay.port
    }

    /// Environment variables that point an AWS-style client (drd, `drd restore --repo
    /// s3://...`) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Creates a bucket; panics if moto refuses.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(self.moto_port, "PUT", &format!("/{name}"), &[])
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert_eq!(status, 200, "create bucket {name}: {}", lossy(&body));
    }

    /// Every key in a bucket under `prefix`, sorted. A ListObjectsV2 answer holds at
    /// most 1000 keys; the next pages are asked for with the answer's continuation
    /// token for as long as it says `IsTruncated`, so a prefix with more objects is
    /// counted whole.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={}", query_escape(prefix));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", query_escape(t)));
            }
            let (status, body) = http(self.moto_port, "GET", &path, &[])
                .unwrap_or_else(|e| panic!("list bucket {bucket}: {e}"));
            let body = lossy(&body);
            assert_eq!(status, 200, "list bucket {bucket}: {body}");
            keys.extend(
                body.split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .map(xml_unescape),
            );
            if xml_tag(&body, "IsTruncated") != Some("true") {
                break;
            }
            let next = xml_tag(&body, "NextContinuationToken")
                .map(xml_unescape)
                .unwrap_or_else(|| panic!("list bucket {bucket}: truncated, no token: {body}"));
            assert!(
                token.as_ref() != Some(&next),
                "list bucket {bucket}: the continuation token did not move"
            );
            token = Some(next);
        }
        keys.sort();
        keys
    }

    /// An object's bytes, or `None` if there is no such object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = http(self.moto_port, "GET", &format!("/{bucket}/{key}"), &[])
            .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"));
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("get {bucket}/{key}: status {other}: {}", lossy(&body)),
        }
    }

    /// Writes an object (to damage a repository on purpose).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, resp) = http(self.moto_port, "PUT", &format!("/{bucket}/{key}"), body)
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e}"));
        assert_eq!(status, 200, "put {bucket}/{key}: {}", lossy(&resp));
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, body) = http(self.moto_port, "DELETE", &format!("/{bucket}/{key}"), &[])
            .unwrap_or_else(|e| panic!("delete {bucket}/{key}: {e}"));
        assert!(
            status == 204 || status == 200,
            "delete {bucket}/{key}: {status} {}",
            lossy(&body)
        );
    }

    /// Makes the endpoint unreachable: connections to it are refused and open ones are
    /// cut. moto keeps running with its data.
    pub fn stop(&self) {
        self.relay.stop();
    }

    /// Listens on the same port again after [`Moto::stop`].
    pub fn start_again(&self) {
        self.relay.listen();
    }

    /// Freezes moto (SIGSTOP): connections are still accepted, but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused moto run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("moto runs").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Ends moto itself (its buckets are gone).
    pub fn kill(&mut self) {
        self.relay.stop();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What moto printed on stderr (its request log), for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.with_file_name("moto.err")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The text of the first `<name>...</name>` in `xml`.
fn xml_tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved
/// characters and `/`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// One HTTP/1.0 request to moto. moto does not check signatures, but it treats a request
/// without an Authorization header as anonymous and refuses object reads (403), so a
/// well-formed, unsigned one is sent.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential={ACCESS_KEY_ID}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, \
         Signature=0\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header in the answer"))?;
    let status = String::from_utf8_lossy(&resp[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status in the answer"))?;
    Ok((status, resp[split + 4..].to_vec()))
}

/// A TCP relay from a fixed loopback port to moto that can be switched off and on.
struct Relay {
    port: u16,
    upstream: u16,
    running: Arc<AtomicBool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Both ends of every relayed connection, to cut them on stop.
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn new(upstream: u16) -> Relay {
        Relay {
            port: free_port(),
            upstream,
            running: Arc::new(AtomicBool::new(false)),
            accept: Mutex::new(None),
            conns: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn listen(&self) {
        let mut accept = self.accept.lock().expect("relay lock");
        if accept.is_some() {
            return;
        }
        // The port was ours a moment ago; retry briefly if the kernel still holds it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("relay: bind 127.0.0.1:{} ({e}), retrying", self.port);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("relay: bind 127.0.0.1:{}: {e}", self.port),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        self.running.store(true, Ordering::SeqCst);
        let (running, conns, upstream) = (
            Arc::clone(&self.running),
            Arc::clone(&self.conns),
            self.upstream,
        );
        *accept = Some(std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => relay_one(client, upstream, &conns),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener here closes the port: connections are refused.
        }));
    }

    fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.lock().expect("relay lock").take() {
            let _ = t.join();
        }
        for c in self.conns.lock().expect("relay lock").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn relay_one(client: TcpStream, upstream: u16, conns: &Arc<Mutex<Vec<TcpStream>>>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    conns.lock().expect("relay lock").extend([c3, s3]);
    std::thread::spawn(move || pipe(client, server));
    std::thread::spawn(move || pipe(s2, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
