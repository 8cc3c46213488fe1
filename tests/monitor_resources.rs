//! The resource monitor through the real drd and drctl: a small real filesystem (a
//! 4 MiB tmpfs the test mounts; root needed) filled past the `fire` threshold fires
//! the disk check once and runs its actions; a value hovering between the thresholds
//! changes nothing; freeing space clears it once; the state survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drd_integration_tests::{audit_rows, eventually_within, running_as_root, text, Daemon};

/// Long enough for any sampling cycle on a loaded machine; never what a test checks.
const HANG: Duration = Duration::from_secs(60);

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = drd_integration_tests::open_tempdir();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "drd-test"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", mount.display());
        Tmpfs { _dir: dir, mount }
    }

    /// Makes `path` (inside the mount) `kib` KiB of data.
    fn fill(&self, name: &str, kib: usize) {
        std::fs::write(self.mount.join(name), vec![7u8; kib * 1024]).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn disk_check(daemon: &Daemon, mount: &Path) -> serde_json::Value {
    let checks = monitors(daemon);
    checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == format!("disk {}", mount.display()))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn monitors(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.drctl(&["monitors", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

fn audited(daemon: &Daemon, action: &str) -> Vec<String> {
    audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|(_, a, _, _)| a == action)
        .map(|(_, _, _, detail)| detail)
        .collect()
}

#[test]
fn a_filling_disk_fires_once_runs_its_actions_and_clears_once() {
    if !running_as_root("mounting a tmpfs") {
        return;
    }
    let fs = Tmpfs::mount("4m");
    let out = fs.mount.parent().unwrap().join("action.json");
    let daemon = Daemon::start(&format!(
        r#"
[monitors.resources]
interval = "1s"
disk = [{{ mount = "{mount}", fire = "75%", clear = "40%" }}]
on_fire = [{{ alert = "critical" }}, {{ exec = ["/bin/sh", "-c", "cat > {out}"] }}]
"#,
        mount = fs.mount.display(),
        out = out.display(),
    ));
    eventually_within("the first sample", HANG, || {
        disk_check(&daemon, &fs.mount)["state"] == "ok"
    });

    // 3.2 of 4 MiB: 80 % used.
    fs.fill("big", 3 * 1024 + 200);
    eventually_within("the check to fire", HANG, || {
        disk_check(&daemon, &fs.mount)["state"] == "firing"
    });
    let check = disk_check(&daemon, &fs.mount);
    assert!(
        check["evidence"].as_str().unwrap().contains("% used"),
        "{check}"
    );
    assert_eq!(check["fire"], ">= 75%");
    eventually_within("the exec action's output", HANG, || {
        out.exists() && std::fs::metadata(&out).unwrap().len() > 0
    });
    let condition: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(condition["state"], "fired");
    assert_eq!(
        condition["source"],
        format!("resources/disk {}", fs.mount.display())
    );
    // drctl says so with its exit code too.
    assert_eq!(daemon.drctl(&["monitors"]).status.code(), Some(1));
    let alerts = audited(&daemon, "alert");
    assert!(
        alerts
            .iter()
            .any(|a| a.starts_with("critical: resources/disk")),
        "{alerts:?}"
    );

    // Down to 60 %: between clear and fire, still firing, nothing new.
    std::fs::remove_file(fs.mount.join("big")).unwrap();
    fs.fill("big", 2 * 1024 + 400);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(disk_check(&daemon, &fs.mount)["state"], "firing");
    // Back to 80 % and down again: the same breach, not a new one.
    fs.fill("more", 800);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(fs.mount.join("more")).unwrap();
    assert_eq!(audited(&daemon, "monitor fired").len(), 1);

    // Freed: cleared once.
    std::fs::remove_file(fs.mount.join("big")).unwrap();
    eventually_within("the check to clear", HANG, || {
        disk_check(&daemon, &fs.mount)["state"] == "ok"
    });
    assert_eq!(audited(&daemon, "monitor cleared").len(), 1);
    assert_eq!(daemon.drctl(&["monitors"]).status.code(), Some(0));
    let fired = audited(&daemon, "monitor fired");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].contains("fire >= 75%"), "{fired:?}");
}

#[test]
fn a_firing_check_is_still_firing_after_a_restart_and_does_not_act_again() {
    if !running_as_root("mounting a tmpfs") {
        return;
    }
    let fs = Tmpfs::mount("4m");
    let mut daemon = Daemon::start(&format!(
        r#"
[monitors.resources]
interval = "1s"
disk = [{{ mount = "{mount}", fire = "75%", clear = "40%", on_fire = [{{ alert = "warning" }}] }}]
"#,
        mount = fs.mount.display(),
    ));
    fs.fill("big", 3 * 1024 + 200);
    eventually_within("the check to fire", HANG, || {
        disk_check(&daemon, &fs.mount)["state"] == "firing"
    });
    daemon.restart(&[]);
    eventually_within("a sample after the restart", HANG, || {
        disk_check(&daemon, &fs.mount)["value"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    });
    let check = disk_check(&daemon, &fs.mount);
    assert_eq!(check["state"], "firing", "{check}");
    assert_eq!(check["actions"].as_array().unwrap().len(), 1, "{check}");
    assert_eq!(audited(&daemon, "monitor fired").len(), 1);

    // A reload that takes the check out: it is gone from the list.
    daemon.rewrite_config("");
    assert!(daemon.drctl(&["reload"]).status.success());
    eventually_within("the check to be forgotten", HANG, || {
        monitors(&daemon).as_array().is_some_and(Vec::is_empty)
    });
}

#[test]
fn check_config_names_a_clear_threshold_on_the_wrong_side() {
    let dir = drd_integration_tests::open_tempdir();
    let config = dir.path().join("drd.toml");
    std::fs::write(
        &config,
        "[monitors.resources]\ndisk = [{ mount = \"/\", fire = \"90%\", clear = \"95%\" }]\n",
    )
    .unwrap();
    let out = Command::new(&drd_integration_tests::bins().drd)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("monitors.resources.disk[0]"), "{said}");
    assert!(
        said.contains("clear (95) must be below fire (90)"),
        "{said}"
    );
}
