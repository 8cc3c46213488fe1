//! Real receivers for the alert tests: `receiver.py` (a loopback webhook that logs
//! every request and fails on demand) and Debian's `prometheus-alertmanager`, queried
//! with its own `amtool`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback HTTP receiver (tests/support/receiver.py). Dropping it stops it.
pub struct Receiver {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
    fail: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver that answers 200 (or 500 from the start with `failing`).
    pub fn start(failing: bool) -> Receiver {
        Receiver::start_with(failing, None)
    }

    /// Starts a receiver that answers requests to `path` only `secs` seconds after
    /// they arrive.
    pub fn start_slow(path: &str, secs: f64) -> Receiver {
        Receiver::start_with(false, Some((path, secs)))
    }

    fn start_with(failing: bool, slow: Option<(&str, f64)>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let (port_file, log, fail) = (
            dir.path().join("port"),
            dir.path().join("requests.jsonl"),
            dir.path().join("fail"),
        );
        if failing {
            std::fs::write(&fail, "").unwrap();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/receiver.py");
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .arg("--fail-while")
            .arg(&fail)
            .stdin(Stdio::null());
        if let Some((path, secs)) = slow {
            command.args(["--slow-path", path, "--slow-secs", &secs.to_string()]);
        }
        let child = command.spawn().expect("start tests/support/receiver.py");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "receiver.py did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Receiver {
            child,
            port,
            log,
            fail,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Makes it answer 500 (`true`) or 200.
    pub fn set_failing(&self, failing: bool) {
        if failing {
            std::fs::write(&self.fail, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.fail);
        }
    }

    /// Every request so far, oldest first: `{path, code, auth, token, body, at_ms,
    /// answered_ms}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager on loopback. Dropping it stops it.
pub struct Alertmanager {
    child: Child,
    /// Its base URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Debian's `prometheus-alertmanager`, or skips (returns `None` after
    /// printing why) where it is not installed; under `CI=true` that fails instead.
    pub fn try_start() -> Option<Alertmanager> {
        if !Path::new("/usr/bin/prometheus-alertmanager").exists()
            || !Path::new("/usr/bin/amtool").exists()
        {
            super::real_part_missing(
                "prometheus-alertmanager",
                "apt-get install prometheus-alertmanager",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while am.query().is_err() {
            assert!(Instant::now() < deadline, "Alertmanager did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(am)
    }

    /// The alerts Alertmanager holds as active, through `amtool alert query -o json`.
    pub fn query(&self) -> Result<Vec<serde_json::Value>, String> {
        let out = Command::new("/usr/bin/amtool")
            .args(["alert", "query", "--output=json"])
            .arg(format!("--alertmanager.url={}", self.url))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
