//! The network monitor through the real drd: real TCP listeners on loopback that the
//! test closes and reopens, a name that does not resolve, and the partition's quorum
//! and hold as a user sees them (`drctl monitors`' view, the audit log, an `exec`
//! action that writes a file).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use drd_integration_tests::{audit_rows, text, Daemon};
use drd_proto::CheckState;

#[path = "support/monitors.rs"]
mod monitors;
use monitors::check;

/// A listener on a free loopback port.
fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// An action that appends a line to `file` each time it runs.
fn exec_into(file: &Path) -> String {
    format!(
        "[{{ exec = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"] }}]",
        file.display(),
        file.display()
    )
}

fn state(daemon: &Daemon, name: &str) -> Option<CheckState> {
    check(daemon, "network", name).map(|c| c.state)
}

#[test]
fn a_quorum_failing_for_hold_is_a_partition_and_it_clears_after_clear_hold() {
    let dir = tempfile::tempdir().unwrap();
    let fired = dir.path().join("partition");
    let mut listeners: Vec<Option<TcpListener>> = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let (l, p) = listen();
        listeners.push(Some(l));
        ports.push(p);
    }
    let targets: Vec<String> = ports
        .iter()
        .map(|p| format!("\"tcp://127.0.0.1:{p}\""))
        .collect();
    let daemon = Daemon::start(&format!(
        "[monitors.network]\ntargets = [{}]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         hold = \"4s\"\nclear_hold = \"3s\"\non_fire = {}\n",
        targets.join(", "),
        exec_into(&fired)
    ));
    daemon.wait_until("every target answering", Duration::from_secs(10), || {
        check(&daemon, "network", "partition").is_some_and(|c| c.value == "0 of 3 failing")
    });

    // Two of three go away: a quorum fails, but not yet for `hold`.
    listeners[0] = None;
    listeners[1] = None;
    let gone = Instant::now();
    daemon.wait_until("the partition pending", Duration::from_secs(5), || {
        state(&daemon, "partition") == Some(CheckState::Pending)
    });
    assert!(gone.elapsed() < Duration::from_secs(4));
    assert!(!fired.exists(), "the partition fired before its hold");

    daemon.wait_until("the partition firing", Duration::from_secs(10), || {
        state(&daemon, "partition") == Some(CheckState::Firing)
    });
    assert!(
        gone.elapsed() >= Duration::from_secs(4),
        "fired {:?} after the targets went, before hold = 4s",
        gone.elapsed()
    );
    daemon.wait_until("the on_fire action ran", Duration::from_secs(10), || {
        std::fs::read_to_string(&fired).is_ok_and(|t| t.contains("network/partition"))
    });
    let condition = std::fs::read_to_string(&fired).unwrap();
    for port in &ports[..2] {
        assert!(
            condition.contains(&format!("tcp://127.0.0.1:{port}")),
            "the evidence names the failing target: {condition}"
        );
    }

    // They come back: a quorum answers, and after clear_hold the partition clears.
    listeners[0] = Some(TcpListener::bind(("127.0.0.1", ports[0])).unwrap());
    listeners[1] = Some(TcpListener::bind(("127.0.0.1", ports[1])).unwrap());
    let back = Instant::now();
    daemon.wait_until("the partition clearing", Duration::from_secs(5), || {
        state(&daemon, "partition") == Some(CheckState::Clearing)
    });
    daemon.wait_until("the partition cleared", Duration::from_secs(10), || {
        state(&daemon, "partition") == Some(CheckState::Ok)
    });
    assert!(
        back.elapsed() >= Duration::from_secs(3),
        "cleared {:?} after the targets came back, before clear_hold = 3s",
        back.elapsed()
    );
    // A check's state is kept (and shown) before its transition is audited, by design:
    // wait for the entry before reading the log.
    daemon.wait_for_audit("monitor network/partition", "monitor cleared", "ok");
    let rows = audit_rows(&daemon.catalog());
    let decisions: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "monitor network/partition" && r.1.starts_with("monitor "))
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(decisions, ["monitor fired", "monitor cleared"], "{rows:#?}");
    assert_eq!(
        std::fs::read_to_string(&fired)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        1,
        "the action ran once"
    );
}

#[test]
fn one_dead_target_of_three_is_a_target_finding_not_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("partition");
    let target = dir.path().join("target");
    let (_a, a) = listen();
    let (_b, b) = listen();
    let (dead, c) = listen();
    drop(dead);
    let daemon = Daemon::start(&format!(
        "[monitors.network]\n\
         targets = [\"tcp://127.0.0.1:{a}\", \"tcp://127.0.0.1:{b}\", {{ name = \"backup-host\", url = \"tcp://127.0.0.1:{c}\" }}]\n\
         interval = \"1s\"\ntimeout = \"1s\"\nhold = \"1s\"\non_fire = {}\non_target_fire = {}\n",
        exec_into(&partition),
        exec_into(&target)
    ));
    daemon.wait_until(
        "the dead target's check firing",
        Duration::from_secs(15),
        || state(&daemon, "target backup-host") == Some(CheckState::Firing),
    );
    daemon.wait_until("its action ran", Duration::from_secs(10), || {
        std::fs::read_to_string(&target).is_ok_and(|t| t.contains("backup-host"))
    });
    // Several more cycles, well past hold: still no partition.
    std::thread::sleep(Duration::from_secs(3));
    let view = check(&daemon, "network", "partition").unwrap();
    assert_eq!(view.state, CheckState::Ok, "{view:?}");
    assert_eq!(view.value, "1 of 3 failing");
    assert!(!partition.exists(), "one target is not a partition");
    assert_eq!(
        state(&daemon, &format!("target tcp://127.0.0.1:{a}")),
        Some(CheckState::Ok)
    );
}

#[test]
fn a_target_that_does_not_resolve_is_a_finding_and_drd_keeps_running() {
    let (_live, port) = listen();
    let daemon = Daemon::start(&format!(
        "[monitors.network]\n\
         targets = [\"dns://no-such-host.invalid\", \"tcp://no-such-host.invalid:80\", \"tcp://127.0.0.1:{port}\"]\n\
         interval = \"1s\"\ntimeout = \"2s\"\nhold = \"0s\"\n"
    ));
    daemon.wait_until("the name's check firing", Duration::from_secs(15), || {
        state(&daemon, "target dns://no-such-host.invalid") == Some(CheckState::Firing)
    });
    let view = check(&daemon, "network", "target dns://no-such-host.invalid").unwrap();
    assert!(
        view.evidence.contains("no-such-host.invalid"),
        "the evidence says what failed: {view:?}"
    );
    daemon.wait_until(
        "the tcp target by name firing",
        Duration::from_secs(15),
        || state(&daemon, "target tcp://no-such-host.invalid:80") == Some(CheckState::Firing),
    );
    // Two of three fail: that is a partition (hold 0s), and drd is still there.
    daemon.wait_until("the partition firing", Duration::from_secs(10), || {
        state(&daemon, "partition") == Some(CheckState::Firing)
    });
    let status = daemon.drctl(&["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("monitor network"),
        "the worker is listed: {}",
        text(&status)
    );
}

#[test]
fn check_config_names_a_quorum_bigger_than_the_targets_and_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drd.toml");
    std::fs::write(
        &config,
        "[monitors.network]\n\
         targets = [\"tcp://10.0.0.1:22\", \"ftp://files.example.net\", \"dns://example.net\"]\n\
         quorum = 4\n",
    )
    .unwrap();
    let out = drd_integration_tests::check_config(&config);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains("monitors.network.quorum") && said.contains("4 is bigger than the 3 targets"),
        "{said}"
    );
    assert!(
        said.contains("monitors.network.targets[1]") && said.contains("unknown scheme"),
        "{said}"
    );
}
