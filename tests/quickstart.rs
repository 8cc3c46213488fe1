//! The quickstart as a newcomer runs it: `examples/` copied as a fresh clone has it, the
//! key made private as the quickstart's command does, drd started by a user who is not
//! root, and that user driving it with drctl: status, backup, backups, restore,
//! verify, and the emergency shutdown of the demo services (plan, abort and rollback,
//! a real shutdown, and the recovery that brings them back).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use drd_integration_tests::{
    assert_same_tree, bins, copy_from_workspace, eventually_within, open_tempdir, proc_state, text,
    wait_answering,
};

/// The newcomer, when the tests run as root (as CI does); otherwise the tests' own
/// user is the newcomer.
const NEWCOMER: u32 = 47_930;

/// A copy of the repository's quickstart, and the drd running it.
struct Quickstart {
    dir: tempfile::TempDir,
    drd: Child,
}

impl Quickstart {
    fn start() -> Quickstart {
        let dir = open_tempdir();
        copy_from_workspace(
            dir.path(),
            &[
                "examples/quickstart.toml",
                "examples/quickstart.key",
                "examples/quickstart-demo.sh",
                "docs/configuration.md",
                "docs/repository-format.md",
            ],
        );
        // What the quickstart's command does first (git checks the key out 0644).
        std::fs::set_permissions(
            dir.path().join("examples/quickstart.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if nix::unistd::geteuid().is_root() {
            chown_tree(dir.path());
        }
        let log = std::fs::File::create(dir.path().join("drd.log")).unwrap();
        let drd = as_newcomer(
            Command::new(&bins().drd)
                .args(["run", "--log-format", "text", "--config"])
                .arg("examples/quickstart.toml"),
            dir.path(),
        )
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
        let mut quickstart = Quickstart { dir, drd };
        quickstart.wait_ready();
        quickstart
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("drd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let socket = self.path("examples/quickstart-state/drd.sock");
        let log = self.path("drd.log");
        wait_answering(&mut self.drd, &socket, &log);
    }

    /// drctl as the README runs it: from the repository's root, with DRD_SOCKET set.
    fn drctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&bins().drctl);
        cmd.args(args)
            .env("DRD_SOCKET", "examples/quickstart-state/drd.sock")
            .stdin(Stdio::null());
        as_newcomer(&mut cmd, self.dir.path());
        cmd
    }

    fn drctl(&self, args: &[&str]) -> Output {
        self.drctl_command(args).output().unwrap()
    }

    /// Runs drctl and asserts that it succeeded; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.drctl(args);
        assert!(
            out.status.success(),
            "drctl {args:?}: {}\ndrd log:\n{}",
            text(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// The pid in a demo service's pidfile, if that process is alive.
    fn demo_pid(&self, name: &str) -> Option<i32> {
        let pidfile = self.path(&format!("examples/quickstart-state/{name}.pid"));
        let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.drd.kill();
        let _ = self.drd.wait();
        for name in ["demo-db", "demo-web"] {
            if let Some(pid) = self.demo_pid(name) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Runs `cmd` in `dir` as the newcomer.
fn as_newcomer<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    cmd.current_dir(dir);
    if nix::unistd::geteuid().is_root() {
        cmd.uid(NEWCOMER).gid(NEWCOMER);
    }
    cmd
}

fn chown_tree(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NEWCOMER), Some(NEWCOMER)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    proc_state(Path::new(&format!("/proc/{pid}/stat"))).is_some_and(|state| state != 'Z')
}

#[test]
fn the_user_who_started_the_quickstart_may_do_everything() {
    let qs = Quickstart::start();
    qs.ok(&["status"]);

    let backup = qs.json(&["backup", "--job", "docs"]);
    let snapshots = qs.json(&["backups"]);
    let list = snapshots.as_array().unwrap();
    assert_eq!(list.len(), 1, "{snapshots:#}");
    assert!(
        serde_json::to_string(&backup)
            .unwrap()
            .contains(list[0]["id"].as_str().unwrap()),
        "{backup:#}\n{snapshots:#}"
    );

    qs.ok(&["restore", "--backup-id", "latest", "--target", "restored"]);
    let docs = qs.path("docs");
    assert_same_tree(
        &docs,
        &qs.path("restored").join(docs.strip_prefix("/").unwrap()),
    );
    qs.ok(&["verify"]);
}

#[test]
fn the_quickstart_shows_a_shutdown_plan_and_its_demo_services_stop_and_come_back() {
    let qs = Quickstart::start();
    let plan = qs.ok(&["shutdown", "--dry-run"]);
    assert!(!plan.contains("no services"), "{plan}");
    for name in ["demo-db", "demo-web"] {
        assert!(plan.contains(name), "{name} not in the plan:\n{plan}");
    }

    // Start the demo services as the quickstart says.
    let out = as_newcomer(
        Command::new("sh").arg("examples/quickstart-demo.sh"),
        qs.dir.path(),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    eventually_within(
        "the demo services to start",
        Duration::from_secs(10),
        || qs.demo_pid("demo-db").is_some() && qs.demo_pid("demo-web").is_some(),
    );
    let web = qs.demo_pid("demo-web").unwrap();

    // A shutdown, aborted while demo-web (about two seconds to stop) is stopping: the
    // rollback starts demo-web again, and demo-db was never stopped.
    let running = qs
        .drctl_command(&["shutdown", "--trigger", "manual", "--yes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually_within("demo-web to be stopping", Duration::from_secs(30), || {
        let status = qs.json(&["status"]);
        status["shutdown"]["last_step"]
            .as_str()
            .is_some_and(|step| step.starts_with("stop demo-web"))
    });
    let db = qs.demo_pid("demo-db").unwrap();
    let abort = qs.json(&["abort"]);
    assert_eq!(abort["rolled_back"], true, "{abort:#}");
    let out = running.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "RolledBack", "{report:#}");
    for name in ["demo-db", "demo-web"] {
        assert!(
            qs.demo_pid(name).is_some(),
            "{name} is not running after the rollback; drd log:\n{}",
            qs.log()
        );
    }
    assert_ne!(
        qs.demo_pid("demo-web"),
        Some(web),
        "demo-web was not restarted"
    );
    assert_eq!(qs.demo_pid("demo-db"), Some(db), "demo-db was stopped");

    // A real shutdown to its end.
    let (db, web) = (
        qs.demo_pid("demo-db").unwrap(),
        qs.demo_pid("demo-web").unwrap(),
    );
    let report = qs.json(&["shutdown", "--trigger", "manual", "--yes"]);
    assert_eq!(report["outcome"], "Completed", "{report:#}");
    assert!(!alive(db) && !alive(web), "{report:#}");

    // And back: the recovery starts demo-db, then demo-web, and measures the RTO.
    let report = qs.json(&["recover", "--yes"]);
    assert_eq!(report["outcome"], "recovered", "{report:#}");
    assert!(report["rto_ms"].as_u64().is_some(), "{report:#}");
    for name in ["demo-db", "demo-web"] {
        assert!(qs.demo_pid(name).is_some(), "{name} did not come back");
    }
}
