//! Deadman switches through the real daemon: pings through the real `drctl`, a switch
//! going late then down and running its `on_down` action, a run that started and never
//! finished, a failure ping, pause and resume, drd restarted while a switch is up (its
//! state kept, one grace instead of a false "down"), an unknown name, and a user who
//! may ping only its own switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drd_integration_tests::{audit_rows, running_as_root, text, AuditRow, Daemon};

/// A uid and gid that no one on the test machine uses.
const OTHER: u32 = 47_914;

/// `drctl deadman --json` (which exits 1 while a switch is down), parsed.
fn switches(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.drctl(&["deadman", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One switch as `drctl deadman --json` shows it.
fn switch(daemon: &Daemon, name: &str) -> serde_json::Value {
    switches(daemon)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no switch {name}"))
}

/// Waits until switch `name` is in `state`.
fn wait_state(daemon: &Daemon, name: &str, state: &str, timeout: Duration) {
    daemon.wait_until(&format!("{name} {state}"), timeout, || {
        switch(daemon, name)["state"] == state
    });
}

/// `drctl heartbeat ARGS --json`, which must succeed; the switch after the ping.
fn ping(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["heartbeat"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = daemon.drctl(&all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The audit entries by the switch `name` (actor `monitor deadman/NAME`).
fn switch_audit(daemon: &Daemon, name: &str) -> Vec<AuditRow> {
    let actor = format!("monitor deadman/{name}");
    audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|r| r.0 == actor)
        .collect()
}

/// The switch's audit entries once one of them is `action`: the state is kept (and
/// shown) before the transition is audited and acted on.
fn audit_once(daemon: &Daemon, name: &str, action: &str) -> Vec<AuditRow> {
    daemon.wait_until(
        &format!("{name}: {action} audited"),
        Duration::from_secs(10),
        || switch_audit(daemon, name).iter().any(|r| r.1 == action),
    );
    switch_audit(daemon, name)
}

fn actions(rows: &[AuditRow]) -> Vec<&str> {
    rows.iter().map(|r| r.1.as_str()).collect()
}

#[test]
fn a_switch_goes_late_then_down_runs_on_down_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("down.json");
    let daemon = Daemon::start(&format!(
        "[deadman.export]\nperiod = \"1s\"\ngrace = \"1s\"\n\
         on_down = [{{ exec = [\"/bin/sh\", \"-c\", \"cat > {}\"] }}]\n",
        report.display()
    ));
    let status = daemon.drctl(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "deadman"),
        "drctl status lists the deadman worker: {status:#}"
    );
    assert_eq!(
        switch(&daemon, "export")["state"],
        "new",
        "never pinged, never late"
    );

    let pinged = ping(&daemon, &["export"]);
    assert_eq!(pinged["state"], "up");
    assert_eq!(pinged["last_ping"][1], "success");
    assert!(
        pinged["next_deadline_unix_ms"].as_i64().unwrap()
            > pinged["last_ping"][0].as_i64().unwrap()
    );
    assert_eq!(pinged["expects"], "every 1s, grace 1s");

    // No ping comes: late after the period, down after the grace, on_down runs.
    daemon.wait_until(
        "the on_down action's report",
        Duration::from_secs(10),
        || std::fs::read_to_string(&report).is_ok_and(|t| t.ends_with('}')),
    );
    let condition: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(condition["source"], "deadman/export");
    assert_eq!(condition["state"], "down");
    let evidence = condition["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("overdue since "), "{evidence}");
    assert!(evidence.contains("no success ping since"), "{evidence}");
    let rows = switch_audit(&daemon, "export");
    let seen = actions(&rows);
    let late = seen
        .iter()
        .position(|a| *a == "deadman late")
        .expect("late audited");
    let down = seen
        .iter()
        .position(|a| *a == "deadman down")
        .expect("down audited");
    assert!(late < down, "late before down: {rows:?}");
    assert!(rows[down].3.contains("overdue since"), "{rows:?}");

    let out = daemon.drctl(&["deadman"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a switch is down: {}",
        text(&out)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("export") && listing.contains("down"),
        "{listing}"
    );
    // drd notes the action after it started it, so maybe after its report exists.
    daemon.wait_until("the on_down action noted", Duration::from_secs(10), || {
        switch(&daemon, "export")["actions"][0]["outcome"] == "started"
    });

    let pinged = ping(&daemon, &["export"]);
    assert_eq!(pinged["state"], "up");
    daemon.wait_until("recovered audited", Duration::from_secs(5), || {
        actions(&switch_audit(&daemon, "export")).contains(&"deadman recovered")
    });
}

#[test]
fn a_run_that_never_finishes_and_a_failed_run_are_down() {
    let daemon = Daemon::start(
        "[deadman.nightly]\nperiod = \"1h\"\nmax_runtime = \"2s\"\n\
         [deadman.cleanup]\nperiod = \"1h\"\n",
    );
    ping(&daemon, &["nightly"]);
    let started = ping(&daemon, &["nightly", "--start", "--run-id", "r7"]);
    assert_eq!(started["state"], "up");
    assert_eq!(started["last_ping"][1], "start");
    assert_eq!(started["running"][1], "r7");
    wait_state(&daemon, "nightly", "down", Duration::from_secs(10));
    let rows = audit_once(&daemon, "nightly", "deadman down");
    let down = rows.iter().find(|r| r.1 == "deadman down").unwrap();
    assert!(
        down.3.contains("run r7 started at")
            && down.3.contains("never finished (limit 2s (max_runtime))"),
        "{down:?}"
    );

    // A failing exit code is down at once.
    ping(&daemon, &["cleanup"]);
    let failed = ping(&daemon, &["cleanup", "--exit-code", "3"]);
    assert_eq!(failed["state"], "down");
    assert_eq!(failed["last_ping"][1], "fail");
    assert_eq!(failed["last_exit_code"], 3);
    let rows = audit_once(&daemon, "cleanup", "alert");
    let down = rows.iter().find(|r| r.1 == "deadman down").unwrap();
    assert!(down.3.contains("failed with exit code 3"), "{down:?}");
    // With no on_down, going down alerts at critical.
    assert!(
        rows.iter()
            .any(|r| r.1 == "alert" && r.3.starts_with("critical")),
        "{rows:?}"
    );
    assert_eq!(
        ping(&daemon, &["cleanup", "--exit-code", "0"])["state"],
        "up"
    );
}

#[test]
fn a_paused_switch_acts_on_nothing_until_resumed() {
    let daemon = Daemon::start("[deadman.export]\nperiod = \"1s\"\ngrace = \"1s\"\n");
    ping(&daemon, &["export"]);
    let out = daemon.drctl(&["deadman", "pause", "export", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let paused: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(paused["state"], "paused");
    assert!(paused["next_deadline_unix_ms"].is_null());

    // Three periods and grace pass: still paused, nothing late or down.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(switch(&daemon, "export")["state"], "paused");
    assert_eq!(ping(&daemon, &["export", "--fail"])["state"], "paused");
    assert!(
        switch_audit(&daemon, "export").is_empty(),
        "{:?}",
        switch_audit(&daemon, "export")
    );

    let out = daemon.drctl(&["deadman", "resume", "export"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("export: new"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        switch(&daemon, "export")["state"],
        "new",
        "new until its next ping"
    );
    let rows = audit_rows(&daemon.catalog());
    let by_peer: Vec<&str> = rows
        .iter()
        .filter(|r| r.0.starts_with("uid=0 "))
        .map(|r| r.1.as_str())
        .collect();
    assert!(
        by_peer.contains(&"deadman pause") && by_peer.contains(&"deadman resume"),
        "{rows:?}"
    );
}

#[test]
fn a_restart_keeps_the_switch_and_gives_one_grace_instead_of_a_false_down() {
    let mut daemon = Daemon::start("[deadman.export]\nperiod = \"5m\"\ngrace = \"1m\"\n");
    let pinged = ping(&daemon, &["export", "--run-id", "a"]);
    daemon.restart(&[]);
    let kept = switch(&daemon, "export");
    assert_eq!(kept["state"], "up");
    assert_eq!(
        kept["last_ping"], pinged["last_ping"],
        "a restart loses nothing"
    );

    // drd is down for ten minutes: the deadline and its grace pass meanwhile.
    daemon.restart(&[("DRD_TEST_CLOCK_OFFSET", "10m")]);
    wait_state(&daemon, "export", "late", Duration::from_secs(10));
    let shown = switch(&daemon, "export");
    let down_at = shown["down_at_unix_ms"].as_i64().unwrap();
    let last = pinged["last_ping"][0].as_i64().unwrap();
    assert!(
        down_at >= last + 10 * 60_000 + 60_000 - 5_000,
        "one grace from the restart: {shown:#}"
    );
    let rows = switch_audit(&daemon, "export");
    let grace = rows
        .iter()
        .find(|r| r.1 == "deadman restart grace")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert!(grace.3.contains("while drd was not running"), "{grace:?}");
    assert!(!actions(&rows).contains(&"deadman down"), "{rows:?}");

    assert_eq!(ping(&daemon, &["export"])["state"], "up");
}

#[test]
fn an_unknown_switch_exits_66_and_names_the_known_ones() {
    let daemon = Daemon::start("[deadman.export]\n[deadman.nightly]\n");
    let out = daemon.drctl(&["heartbeat", "exprot"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no deadman switch named \"exprot\"; the config has export, nightly"),
        "{stderr}"
    );
    let out = daemon.drctl(&["deadman", "pause", "exprot"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
}

#[test]
fn a_switch_user_pings_its_own_switch_and_nothing_else() {
    if !running_as_root("connecting as another user needs root") {
        return;
    }
    let daemon = Daemon::start(&format!(
        "socket_group = {OTHER}\n[deadman.mine]\nusers = [{OTHER}]\n[deadman.theirs]\n"
    ));
    let out = daemon.drctl_as(OTHER, OTHER, &["heartbeat", "mine", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let pinged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pinged["state"], "up");

    let out = daemon.drctl_as(OTHER, OTHER, &["heartbeat", "theirs"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("heartbeat needs operator")
            && stderr.contains("only the deadman switch mine"),
        "{stderr}"
    );
    let out = daemon.drctl_as(OTHER, OTHER, &["deadman"]);
    assert_eq!(
        out.status.code(),
        Some(77),
        "no role, no list: {}",
        text(&out)
    );

    let rows = audit_rows(&daemon.catalog());
    let actor = format!("uid={OTHER} gid={OTHER} pid=");
    assert!(
        rows.iter().any(|r| r.0.starts_with(&actor)
            && r.1 == "heartbeat"
            && r.2 == "ok"
            && r.3.starts_with("mine")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0.starts_with(&actor) && r.1 == "request heartbeat" && r.2 == "refused"),
        "the refusal is audited: {rows:?}"
    );
    assert_eq!(switch(&daemon, "theirs")["state"], "new");
}
