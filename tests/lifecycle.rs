//! Starting and stopping the daemon: socket hygiene, a second daemon, SIGTERM.
#![allow(clippy::unwrap_used)]

use drd_integration_tests::{audit_rows, drctl, drd, open_tempdir, os, text, Daemon};
use nix::sys::signal::Signal;

#[test]
fn status_shows_version_workers_and_audit() {
    let daemon = Daemon::start("");
    let out = daemon.drctl(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("drd {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&daemon.socket().display().to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("catalog-maintenance"), "{stdout}");
    assert!(stdout.contains("start daemon"), "{stdout}");

    let out = daemon.drctl(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pid"], daemon.pid());
    assert_eq!(json["state"], "Running");
    assert_eq!(json["config_path"], daemon.config.display().to_string());
    assert!(json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["name"] == "catalog-maintenance"));
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let daemon = Daemon::start("");
    let out = drd(&[
        os("run"),
        os("--log-format"),
        os("text"),
        os("--config"),
        daemon.config.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another drd is already running"));
    // The first one is untouched and still serving.
    assert!(daemon.socket().exists());
    assert!(daemon.drctl(&["status"]).status.success());
}

#[test]
fn a_stale_socket_file_is_removed_at_start() {
    let dir = open_tempdir();
    let state = dir.path().join("run");
    std::fs::create_dir_all(&state).unwrap();
    // A socket file nobody listens on, as a killed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(state.join("drd.sock")).unwrap());
    assert!(state.join("drd.sock").exists());

    let mut daemon = Daemon {
        config: dir.path().join("drd.toml"),
        dir,
        child: None,
    };
    daemon.rewrite_config("");
    daemon.spawn(&[]);
    daemon.wait_ready();
    assert!(daemon.drctl(&["status"]).status.success());
    assert!(
        daemon.log().contains("removing stale socket"),
        "{}",
        daemon.log()
    );
}

#[test]
fn socket_mode_is_0660() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start("");
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut daemon = Daemon::start("");
    daemon.stop_with(Signal::SIGTERM);
    assert!(!daemon.socket().exists(), "socket left behind");
    let rows = audit_rows(&daemon.catalog());
    let actions: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert!(
        actions.contains(&("signal SIGTERM", "stop daemon")),
        "{rows:?}"
    );
    assert_eq!(actions.last(), Some(&("daemon", "stop daemon")), "{rows:?}");
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut daemon = Daemon::start("");
    daemon.stop_with(Signal::SIGINT);
    assert!(!daemon.socket().exists());
}

#[test]
fn drctl_says_when_drd_is_not_running() {
    let dir = open_tempdir();
    let socket = dir.path().join("nothing.sock");
    let out = drctl(&socket, &["status"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("drd is not running at {}", socket.display())),
        "{stderr}"
    );
}

#[test]
fn drctl_usage_errors_exit_64() {
    let out = drctl(std::path::Path::new("/nonexistent"), &["no-such-command"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}

#[test]
fn sigusr1_is_audited() {
    let daemon = Daemon::start("");
    daemon.signal(Signal::SIGUSR1);
    drd_integration_tests::eventually("SIGUSR1 audit entry", || {
        audit_rows(&daemon.catalog())
            .iter()
            .any(|r| r.0 == "signal SIGUSR1" && r.1 == "emergency shutdown")
    });
    assert!(daemon.drctl(&["status"]).status.success());
}
