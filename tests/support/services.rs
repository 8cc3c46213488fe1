//! Fake services for the shutdown tests: real processes (tests/support/fake_service.py:
//! traps SIGTERM, takes a set time to exit, logs when it was told, when it went and when
//! it started) under one folder, their `[services.*]` config, and drctl helpers.
//!
//! A test orders its actions by events, never by a delay: a [`gated`] service's stop
//! blocks on a fifo until the test lets it go ([`Services::stopping`]), and a shutdown
//! or an abort can be followed step by step ([`Follow`]) or waited for in the audit log
//! ([`wait_audited`]). Every wait has a generous deadline that only says "it hung".
//!
//! Included with `#[path]` by more than one test crate, and each uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drd_integration_tests::gate::{finish, Gate, Held};
use drd_integration_tests::{eventually_within, text, Daemon, RawConn};
use drd_proto::{Event, Reply, Request, Response, ServerFrame};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a test waits for anything before it calls it a hang: far longer than any
/// step takes on a loaded machine, and never the thing a test checks.
pub const HANG: Duration = Duration::from_secs(120);

const PYTHON: &str = "/usr/bin/python3";

fn fake_service() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/fake_service.py")
}

/// A fake service's settings.
#[derive(Clone, Default)]
pub struct Spec {
    pub name: &'static str,
    pub depends_on: &'static [&'static str],
    pub stop_delay: f64,
    pub ignore_term: bool,
    pub stop_timeout: &'static str,
    pub extra: String,
    /// A copy started after [`Services::start`] (by a rollback) waits before it writes
    /// its pidfile until the test releases it (see [`Services::starting`]).
    pub start_gate: bool,
    /// Its start command (for a rollback) is `/bin/false`.
    pub broken_start: bool,
    /// Its start command (for a rollback), instead of a copy of itself.
    pub start: Option<Vec<String>>,
    /// Its stop, once it has logged `term`, blocks until the test releases it (see
    /// [`Services::stopping`]).
    pub stop_gate: bool,
}

pub fn spec(name: &'static str, depends_on: &'static [&'static str], stop_delay: f64) -> Spec {
    Spec {
        name,
        depends_on,
        stop_delay,
        stop_timeout: "10s",
        ..Spec::default()
    }
}

/// A service whose stop blocks until the test releases it: drd cannot see it gone
/// before the test has done what it wants done while the stop is in progress. Its stop
/// timeout is long, so drd never kills it while the test holds it.
pub fn gated(name: &'static str, depends_on: &'static [&'static str]) -> Spec {
    Spec {
        stop_gate: true,
        stop_timeout: "10m",
        ..spec(name, depends_on, 0.0)
    }
}

/// Fake services running under one folder; every one still alive is killed on drop.
pub struct Services {
    dir: tempfile::TempDir,
    specs: Vec<Spec>,
    children: Vec<Child>,
    stop_gates: BTreeMap<&'static str, Gate>,
    start_gates: BTreeMap<&'static str, Gate>,
}

impl Services {
    pub fn start(specs: Vec<Spec>) -> Services {
        let dir = drd_integration_tests::open_tempdir();
        let mut services = Services {
            dir,
            specs,
            children: Vec::new(),
            stop_gates: BTreeMap::new(),
            start_gates: BTreeMap::new(),
        };
        for spec in &services.specs {
            if spec.stop_gate {
                let gate = Gate::new(&services.gate_path(spec.name, "stop"));
                services.stop_gates.insert(spec.name, gate);
            }
        }
        for i in 0..services.specs.len() {
            let argv = services.argv(&services.specs[i]);
            let child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            services.children.push(child);
        }
        for spec in &services.specs {
            let pidfile = services.pidfile(spec.name);
            eventually_within(&format!("{} to write its pidfile", spec.name), HANG, || {
                pidfile.exists()
            });
        }
        // Made only now, so the copies above did not wait at it.
        for spec in &services.specs {
            if spec.start_gate {
                let gate = Gate::new(&services.gate_path(spec.name, "start"));
                services.start_gates.insert(spec.name, gate);
            }
        }
        services
    }

    pub fn pidfile(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pid"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }

    /// The fifo `NAME.WHICH` (`stop` or `start`) a gated service waits at.
    fn gate_path(&self, name: &str, which: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.{which}"))
    }

    /// Waits until the gated service `name` has been told to stop and is held in its
    /// stop; it exits once the returned gate is released (`.release(b"")`).
    pub fn stopping(&self, name: &str) -> Held {
        Self::held_at(&self.stop_gates, name, "was never told to stop")
    }

    /// Waits until a copy of `name` started after [`Services::start`] (by a rollback)
    /// is held before writing its pidfile; it goes on once the gate is released.
    pub fn starting(&self, name: &str) -> Held {
        Self::held_at(&self.start_gates, name, "had no new copy started")
    }

    fn held_at(gates: &BTreeMap<&'static str, Gate>, name: &str, never: &str) -> Held {
        gates
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no such gate"))
            .wait_reader_for(&format!("{name} {never}"))
    }

    /// The signal that ended the first process of `name` (the one started here), once
    /// it has ended; `None` if it exited on its own.
    pub fn ended_by(&mut self, name: &str) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let i = self
            .specs
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"));
        let mut status = None;
        eventually_within(&format!("{name} to end"), HANG, || {
            status = self.children[i].try_wait().unwrap();
            status.is_some()
        });
        status.unwrap().signal()
    }

    fn argv(&self, spec: &Spec) -> Vec<String> {
        let mut argv = vec![
            PYTHON.to_owned(),
            fake_service().display().to_string(),
            "--name".to_owned(),
            spec.name.to_owned(),
            "--pidfile".to_owned(),
            self.pidfile(spec.name).display().to_string(),
            "--log".to_owned(),
            self.log_path().display().to_string(),
            "--stop-delay".to_owned(),
            spec.stop_delay.to_string(),
        ];
        if spec.ignore_term {
            argv.push("--ignore-term".to_owned());
        }
        for (gated, which) in [(spec.stop_gate, "stop"), (spec.start_gate, "start")] {
            if gated {
                argv.push(format!("--{which}-gate"));
                argv.push(self.gate_path(spec.name, which).display().to_string());
            }
        }
        argv
    }

    /// `[services.*]` tables for drd's config.
    pub fn config(&self) -> String {
        let mut out = String::new();
        for spec in &self.specs {
            let start: Vec<String> = if let Some(start) = &spec.start {
                start.iter().map(|a| format!("{a:?}")).collect()
            } else if spec.broken_start {
                vec![format!("{:?}", "/bin/false")]
            } else {
                self.argv(spec).iter().map(|a| format!("{a:?}")).collect()
            };
            let deps: Vec<String> = spec.depends_on.iter().map(|d| format!("{d:?}")).collect();
            out.push_str(&format!(
                "\n[services.{}]\ndriver = \"process\"\npidfile = \"{}\"\nstart = [{}]\n\
                 depends_on = [{}]\nstop_timeout = \"{}\"\n{}\n",
                spec.name,
                self.pidfile(spec.name).display(),
                start.join(", "),
                deps.join(", "),
                spec.stop_timeout,
                spec.extra,
            ));
        }
        out
    }

    /// Every (name, what) -> times logged, in order.
    pub fn log(&self) -> BTreeMap<(String, String), Vec<f64>> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut map: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            if let [name, what, t] = parts[..] {
                map.entry((name.to_owned(), what.to_owned()))
                    .or_default()
                    .push(t.parse().unwrap());
            }
        }
        map
    }

    pub fn first(&self, name: &str, what: &str) -> f64 {
        self.log()
            .get(&(name.to_owned(), what.to_owned()))
            .and_then(|v| v.first().copied())
            .unwrap_or_else(|| panic!("{name} never logged {what}; log: {:?}", self.log()))
    }

    pub fn count(&self, name: &str, what: &str) -> usize {
        self.log()
            .get(&(name.to_owned(), what.to_owned()))
            .map_or(0, Vec::len)
    }

    /// When `name` logged its second start (a rollback brought it back). drd counts
    /// a service as up once its pidfile names it, a moment before the service logs
    /// its start, so the line is waited for.
    pub fn restarted_at(&self, name: &str) -> f64 {
        let second = || {
            self.log()
                .get(&(name.to_owned(), "start".to_owned()))?
                .get(1)
                .copied()
        };
        let mut found = None;
        eventually_within(&format!("{name} to log its second start"), HANG, || {
            found = second();
            found.is_some()
        });
        found.unwrap()
    }

    /// The live processes of `name` (found by the pidfile in their command line),
    /// whether or not they have written their pidfile yet.
    pub fn copies(&mut self, name: &str) -> Vec<i32> {
        for child in &mut self.children {
            let _ = child.try_wait();
        }
        let pidfile = self.pidfile(name).display().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let mine = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == pidfile.as_bytes());
            if mine && alive(pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Whether the process in `name`'s pidfile is alive (and not a zombie).
    pub fn running(&mut self, name: &str) -> bool {
        // Reap the ones we started, so an exited one is not a zombie.
        for child in &mut self.children {
            let _ = child.try_wait();
        }
        let Ok(pid) = std::fs::read_to_string(self.pidfile(name)) else {
            return false;
        };
        alive(pid.trim().parse().unwrap())
    }
}

/// Whether `pid` is alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 2..].split(' ').next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let names: Vec<&'static str> = self.specs.iter().map(|s| s.name).collect();
        for name in names {
            // Copies a rollback started that have not written their pidfile too.
            for pid in self.copies(name) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Ok(pid) = std::fs::read_to_string(self.pidfile(name)) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn report_service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report:#}"))
}

/// Runs `drctl shutdown ARGS --json` and returns its exit code and report.
pub fn shutdown(daemon: &Daemon, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    json_command(daemon, "shutdown", args)
}

/// Runs `drctl COMMAND ARGS --json` and returns its exit code and report.
pub fn json_command(
    daemon: &Daemon,
    command: &str,
    args: &[&str],
) -> (Option<i32>, serde_json::Value) {
    let mut all = vec![command];
    all.extend_from_slice(args);
    all.push("--json");
    let out = daemon.drctl(&all);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("drctl {all:?}: {e}: {}", text(&out)));
    (out.status.code(), report)
}

/// Waits for `child` (a drctl run with `--json`, from [`Daemon::spawn_drctl`]) to end,
/// and returns its exit code and report.
pub fn json_of(child: Child) -> (Option<i32>, serde_json::Value) {
    let out = finish(child, HANG);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", text(&out)));
    (out.status.code(), report)
}

/// Waits until the audit log holds an entry `action`: for `abort shutdown`, the abort
/// has reached the run (it stops at the run's next safe point).
pub fn wait_audited(daemon: &Daemon, action: &str) {
    daemon.wait_for_audit_where(&format!("audit entry {action:?}"), HANG, |r| r.1 == action);
}

/// A shutdown request (or an abort) on its own connection, read step by step: the
/// test learns what drd has done from the events drd streams, in drd's order.
pub struct Follow {
    conn: RawConn,
    seen: Vec<String>,
}

impl Follow {
    pub fn start(daemon: &Daemon, request: Request) -> Follow {
        Follow {
            conn: RawConn::request(&daemon.socket(), request, HANG),
            seen: Vec::new(),
        }
    }

    /// Reads up to the first step about `subject` in state `state` and checks that
    /// its detail holds `detail`; panics if the answer comes first.
    pub fn until(&mut self, subject: &str, state: &str, detail: &str) {
        loop {
            match self.conn.read_frame().unwrap() {
                Some(ServerFrame::Event(Event::Shutdown(event)))
                    if event.subject.as_deref() == Some(subject)
                        && event.state.as_str() == state =>
                {
                    assert!(event.detail.contains(detail), "{event:?}");
                    return;
                }
                Some(ServerFrame::Event(event)) => self.seen.push(format!("{event:?}")),
                other => panic!(
                    "no step {subject} {state} before {other:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Reads up to a step (as [`Follow::until`]), only then lets `held` go, and reads
    /// to the answer.
    pub fn release_at(mut self, step: [&str; 3], held: Held) -> serde_json::Value {
        let [subject, state, detail] = step;
        self.until(subject, state, detail);
        held.release(b"");
        self.answer()
    }

    /// Reads to the answer: the report as `drctl --json` prints it; panics on an error.
    pub fn answer(mut self) -> serde_json::Value {
        loop {
            match self.conn.read_frame().unwrap() {
                Some(ServerFrame::Event(_)) => {}
                Some(ServerFrame::Response(Response::Ok(Reply::ShutdownFinished(report)))) => {
                    return serde_json::to_value(report).unwrap()
                }
                Some(ServerFrame::Response(Response::Ok(Reply::Aborted(report)))) => {
                    return serde_json::to_value(report).unwrap()
                }
                Some(ServerFrame::Response(Response::Ok(Reply::Recovered(report)))) => {
                    return serde_json::to_value(report).unwrap()
                }
                other => panic!("not a shutdown's answer: {other:?}"),
            }
        }
    }
}
