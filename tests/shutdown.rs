//! Emergency shutdown through the real drd and drctl, with real processes as services
//! (tests/support/fake_service.py: traps SIGTERM, takes a set time to exit, logs when
//! it was told and when it went) and real signals.
//!
//! Nothing here is ordered by a delay: where a test must act while a service is still
//! stopping (an abort, a kill of drd), the service's stop is held on a gate that the
//! test opens once it has acted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use drd_integration_tests::gate::Held;
use drd_integration_tests::{audit_rows, backup_daemon, eventually_within, text, Daemon};
use drd_proto::{Request, ShutdownTrigger};
use nix::sys::signal::Signal;

#[path = "support/services.rs"]
mod services;
use services::{
    gated, json_of, report_service, shutdown, spec, wait_audited, Follow, Services, HANG,
};

#[test]
fn levels_stop_in_dependency_order_and_a_level_in_parallel() {
    let mut services = Services::start(vec![
        spec("lb", &["api", "web"], 0.2),
        gated("api", &["db"]),
        gated("web", &["db"]),
        spec("db", &["disk"], 0.2),
        spec("disk", &[], 0.0),
    ]);
    let daemon = Daemon::start(&services.config());

    let running = daemon.spawn_drctl(&[
        "shutdown",
        "--trigger",
        "data_corruption",
        "--reason",
        "fsck errors",
        "--yes",
        "--json",
    ]);
    // api and web are one level, stopped side by side: both are told to stop while
    // neither has gone. One after the other, web would be told only once api, held
    // in its stop, had gone (killed after its 10 min timeout).
    let api = services.stopping("api");
    let web = services.stopping("web");
    assert!(services.running("api") && services.running("web"));
    assert_eq!(
        services.count("db", "term"),
        0,
        "db told while api and web run"
    );
    api.release(b"");
    web.release(b"");
    let (code, report) = json_of(running);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "Completed");
    for name in ["lb", "api", "web", "db", "disk"] {
        assert_eq!(
            report_service(&report, name)["state"],
            "stopped",
            "{report:#}"
        );
        assert!(!services.running(name), "{name} still runs");
    }
    // Each level is told to stop only once the level above has exited.
    let t = |n: &str, w: &str| services.first(n, w);
    assert!(t("api", "term") >= t("lb", "exit"));
    assert!(t("web", "term") >= t("lb", "exit"));
    assert!(t("db", "term") >= t("api", "exit").max(t("web", "exit")));
    assert!(t("disk", "term") >= t("db", "exit"));

    // The trigger, each phase and each service step are audited.
    let audit = audit_rows(&daemon.catalog());
    let has = |action: &str, detail: &str| {
        audit
            .iter()
            .any(|(_, a, o, d)| a == action && o == "ok" && d.contains(detail))
    };
    assert!(
        has("emergency shutdown", "data_corruption: fsck errors"),
        "{audit:#?}"
    );
    for phase in ["assess", "preserve", "drain", "stop", "verify"] {
        assert!(
            has(&format!("shutdown #1 phase {phase}"), ""),
            "{phase}: {audit:#?}"
        );
    }
    assert!(has("shutdown #1 stop api", "stopped"), "{audit:#?}");
    assert!(has("shutdown #1 done", "completed"), "{audit:#?}");
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_its_timeout() {
    let mut stubborn = spec("stubborn", &["base"], 0.0);
    stubborn.ignore_term = true;
    stubborn.stop_timeout = "1s";
    let mut services = Services::start(vec![stubborn, spec("base", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());

    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_killed_after(&mut services, &report, "stubborn", "1s");
    // drd's own count of its wait: load can only make it longer, never shorter.
    let took = report_service(&report, "stubborn")["took_ms"].as_u64();
    assert!(took.unwrap() >= 1000, "{report:#}");
    assert_eq!(report_service(&report, "base")["state"], "stopped");
    assert!(!services.running("stubborn") && !services.running("base"));
}

/// `name` was told (SIGTERM, logged), did not go, and was killed (SIGKILL ended it),
/// and the report says it did not stop within `timeout`.
fn assert_killed_after(
    services: &mut Services,
    report: &serde_json::Value,
    name: &str,
    timeout: &str,
) {
    let service = report_service(report, name);
    assert_eq!(service["state"], "killed", "{report:#}");
    let said = format!("did not stop within {timeout} of SIGTERM; killed");
    assert!(
        service["detail"].as_str().unwrap().starts_with(&said),
        "{report:#}"
    );
    assert_eq!(services.count(name, "term"), 1);
    assert_eq!(services.count(name, "exit"), 0);
    assert_eq!(services.ended_by(name), Some(Signal::SIGKILL as i32));
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let mut services = Services::start(vec![spec("front", &["back"], 0.0), spec("back", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());

    let out = daemon.drctl(&["shutdown", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("assess -> preserve -> drain -> stop -> verify -> done"),
        "{plan}"
    );
    let front = plan.lines().find(|l| l.contains("front")).unwrap();
    let back = plan.lines().find(|l| l.contains(" back ")).unwrap();
    assert!(
        front.trim_start().starts_with('0') && front.contains("SIGTERM"),
        "{plan}"
    );
    assert!(back.trim_start().starts_with('1'), "{plan}");
    assert!(plan.contains("Worst case: 30s"), "{plan}");

    // Without a terminal and without --yes, nothing happens.
    let out = daemon.drctl(&["shutdown", "--trigger", "manual"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    // An unknown service is "not found".
    let out = daemon.drctl(&["shutdown", "--dry-run", "--only", "nope"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));

    assert!(services.running("front") && services.running("back"));
    assert_eq!(
        services.count("front", "term") + services.count("back", "term"),
        0
    );
    let runs: i64 = rusqlite::Connection::open(daemon.catalog())
        .unwrap()
        .query_row("SELECT count(*) FROM shutdown_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0);
}

#[test]
fn force_skips_preserve_and_drain_and_kills_after_the_short_grace() {
    let dir = drd_integration_tests::open_tempdir();
    let drained = dir.path().join("drained");
    let mut stubborn = spec("stubborn", &[], 0.0);
    stubborn.ignore_term = true;
    // Without --force's grace it would be killed after an hour: the run would hang.
    stubborn.stop_timeout = "1h";
    stubborn.extra = format!(
        "drain = [{{ run = [\"/usr/bin/touch\", \"{}\"] }}]\n",
        drained.display()
    );
    let mut services = Services::start(vec![stubborn]);
    let daemon = Daemon::start(&format!(
        "[shutdown]\nforce_grace = \"500ms\"\n{}",
        services.config()
    ));

    let running = daemon.spawn_drctl(&[
        "shutdown",
        "--trigger",
        "security_breach",
        "--force",
        "--yes",
        "--json",
    ]);
    let (code, report) = json_of(running);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["force"], true);
    // Killed after the grace, not the 1h stop timeout.
    assert_killed_after(&mut services, &report, "stubborn", "500ms");
    assert!(!drained.exists(), "the drain hook ran under --force");
    assert!(!services.running("stubborn"));
    let audit = audit_rows(&daemon.catalog());
    assert!(
        !audit.iter().any(|(_, a, _, _)| a.contains("phase drain")),
        "{audit:#?}"
    );
}

#[test]
fn preserve_job_runs_before_its_service_stops_and_drain_hooks_too() {
    let dir = drd_integration_tests::open_tempdir();
    std::fs::write(dir.path().join("data.txt"), "state worth keeping").unwrap();
    let drained = dir.path().join("drained");
    let mut db = spec("db", &[], 0.0);
    db.extra = format!(
        "preserve = [\"dbjob\"]\ncritical = true\ndrain = [{{ run = [\"/usr/bin/touch\", \"{}\"] }}]\n",
        drained.display()
    );
    let mut services = Services::start(vec![db]);
    let daemon = backup_daemon(&format!(
        "[jobs.dbjob]\ntiers = [\"local\"]\nsources = [{{ kind = \"path\", path = \"{}\" }}]\n{}",
        dir.path().join("data.txt").display(),
        services.config()
    ));

    let (code, report) = shutdown(&daemon, &["--trigger", "system_failure", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(drained.exists(), "drain hook did not run");
    assert!(!services.running("db"));
    let snapshots = daemon.drctl_json(&["backups", "--job", "dbjob"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots:#}");
    // The audit chain shows the order: the job's snapshot, then the stop.
    let audit = audit_rows(&daemon.catalog());
    let at = |action: &str| {
        audit
            .iter()
            .position(|(_, a, o, _)| a == action && o == "ok")
            .unwrap_or_else(|| panic!("no {action} in {audit:#?}"))
    };
    assert!(at("shutdown #1 preserve dbjob") < at("shutdown #1 stop db"));
    assert!(at("shutdown #1 drain db") < at("shutdown #1 stop db"));
}

#[test]
fn a_critical_service_whose_preserve_job_fails_is_kept_running_with_its_dependencies() {
    let mut app = spec("app", &["store"], 0.0);
    app.extra = "preserve = [\"broken\"]\ncritical = true\n".to_owned();
    let mut services = Services::start(vec![app, spec("store", &[], 0.0)]);
    let daemon = backup_daemon(&format!(
        "[jobs.broken]\ntiers = [\"local\"]\nsources = [{{ kind = \"path\", path = \"/nonexistent/drd-test\" }}]\n{}",
        services.config()
    ));
    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "Incomplete");
    assert_eq!(
        report_service(&report, "app")["state"],
        "held",
        "{report:#}"
    );
    assert_eq!(
        report_service(&report, "store")["state"],
        "held",
        "{report:#}"
    );
    assert!(services.running("app") && services.running("store"));
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("preserve job broken failed"),
        "{problems}"
    );
}

#[test]
fn abort_mid_shutdown_rolls_back_in_dependency_order() {
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        gated("mid", &["back"]),
        spec("back", &[], 0.0),
    ]);
    let daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes", "--json"]);
    let (code, abort) = abort_while_stopping(&daemon, &services, "mid");
    assert_eq!(code, Some(0), "{abort:#}");
    assert_eq!(abort["rolled_back"], true);
    let started: Vec<&str> = abort["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // What it depends on comes back first; back was never stopped.
    assert_eq!(started, ["mid", "front"], "{abort:#}");
    assert!(
        abort["stopped_at"]
            .as_str()
            .unwrap()
            .contains("stop level 1"),
        "{abort:#}"
    );
    assert_eq!(services.count("back", "term"), 0);
    for name in ["front", "mid", "back"] {
        assert!(
            services.running(name),
            "{name} is not running after the rollback"
        );
    }
    let mid_back = services.restarted_at("mid");
    let front_back = services.restarted_at("front");
    assert!(mid_back < front_back, "front came back before mid");

    let (code, report) = json_of(running);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "RolledBack");
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit.iter().any(|(_, a, _, _)| a == "abort shutdown"),
        "{audit:#?}"
    );
    assert!(audit
        .iter()
        .any(|(_, a, o, _)| a == "shutdown #1 rollback start mid" && o == "ok"));
}

/// Runs `drctl abort --json` while the gated `service` is held in its stop, lets the
/// stop end once the abort has reached the run, and returns the abort's exit code and
/// report. The abort lands inside the stop for certain, whatever the machine's load.
fn abort_while_stopping(
    daemon: &Daemon,
    services: &Services,
    service: &str,
) -> (Option<i32>, serde_json::Value) {
    let held = services.stopping(service);
    let abort = daemon.spawn_drctl(&["abort", "--json"]);
    wait_audited(daemon, "abort shutdown");
    held.release(b"");
    json_of(abort)
}

#[test]
fn sigusr1_starts_a_manual_shutdown_with_the_signal_as_actor() {
    let mut services = Services::start(vec![spec("only", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());
    daemon.signal(Signal::SIGUSR1);
    eventually_within("the service to stop", HANG, || !services.running("only"));
    wait_audited(&daemon, "shutdown #1 done");
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(actor, a, o, d)| actor == "signal SIGUSR1"
                && a == "emergency shutdown"
                && o == "ok"
                && d.contains("manual")),
        "{audit:#?}"
    );
    assert!(audit
        .iter()
        .any(|(actor, a, _, _)| actor == "signal SIGUSR1" && a == "shutdown #1 stop only"));
}

/// Starts a shutdown, SIGKILLs drd while `slow` is held in its stop and starts drd
/// again. Returns with `slow` still held: the caller lets its stop end.
fn kill_drd_mid_shutdown() -> (Services, Daemon, Held) {
    let services = Services::start(vec![gated("slow", &["base"]), spec("base", &[], 0.0)]);
    let mut daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    let slow = services.stopping("slow");
    daemon.kill();
    let out = running.wait_with_output().unwrap();
    // 69: drd went away mid-request; the message says so and where to look.
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("closed the connection without answering") || said.contains("failed while"),
        "drctl says drd went away: {}",
        text(&out)
    );
    daemon.spawn(&[]);
    daemon.wait_ready();
    let status = daemon.drctl(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("shutdown #1 (manual"), "{status}");
    assert!(status.contains("INTERRUPTED"), "{status}");
    assert!(
        status.contains("stopped at: stop slow: started"),
        "{status}"
    );
    // A new shutdown must not run over the interrupted one.
    let out = daemon.drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    (services, daemon, slow)
}

#[test]
fn drd_killed_mid_shutdown_then_resume_carries_on() {
    let (mut services, daemon, slow) = kill_drd_mid_shutdown();
    let resume = Follow::start(
        &daemon,
        Request::Shutdown {
            trigger: ShutdownTrigger::Manual,
            force: false,
            dry_run: false,
            only: Vec::new(),
            reason: None,
            resume: true,
        },
    );
    // The resumed run takes slow's stop over while slow still stops: drd streams the
    // step once it has (or, wrongly, has not) sent its signal, so a second SIGTERM
    // would be logged before slow is let go.
    let step = [
        "slow",
        "stopping",
        "waiting: SIGTERM was sent before drd was restarted",
    ];
    let report = resume.release_at(step, slow);
    assert_eq!(report["run_id"], 1);
    assert_eq!(report["outcome"], "Completed");
    assert_eq!(report_service(&report, "base")["state"], "stopped");
    assert!(!services.running("slow") && !services.running("base"));
    // slow was told once, by the first drd; the resumed run did not start over.
    assert_eq!(services.count("slow", "term"), 1);
    let status = String::from_utf8_lossy(&daemon.drctl(&["status"]).stdout).into_owned();
    assert!(!status.contains("INTERRUPTED"), "{status}");
}

#[test]
fn drd_killed_mid_shutdown_then_abort_rolls_back() {
    let (mut services, daemon, slow) = kill_drd_mid_shutdown();
    // slow finishes the stop the first drd asked for; the abort brings it back.
    slow.release(b"");
    eventually_within("slow to exit", HANG, || services.count("slow", "exit") == 1);
    let out = daemon.drctl(&["abort", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let abort: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let started: Vec<&str> = abort["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["slow"], "{abort:#}");
    assert!(services.running("slow") && services.running("base"));
    assert_eq!(services.count("base", "term"), 0);
    let out = daemon.drctl(&["abort"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
}

#[test]
fn systemd_is_asked_to_wait_longer_while_a_shutdown_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let services = Services::start(vec![spec("svc", &[], 0.0)]);
    let daemon = Daemon::start_with_env(
        &services.config(),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let (code, _) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0));
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + HANG;
    while Instant::now() < deadline && !seen.contains("EXTEND_TIMEOUT_USEC=30000000") {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("EXTEND_TIMEOUT_USEC=30000000"), "{seen}");
    assert!(seen.contains("emergency shutdown #1"), "{seen}");
}

#[test]
fn a_dependency_cycle_and_an_unknown_service_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drd.toml");
    std::fs::write(
        &config,
        "[services.a]\ndriver = \"process\"\npidfile = \"/run/a.pid\"\ndepends_on = [\"b\"]\n\
         [services.b]\ndriver = \"process\"\npidfile = \"/run/b.pid\"\ndepends_on = [\"a\", \"ghost\"]\n",
    )
    .unwrap();
    let out = drd_integration_tests::check_config(&config);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("drd.toml:4: services.a.depends_on: dependency cycle: a -> b -> a"),
        "{all}"
    );
    assert!(
        all.contains("drd.toml:8: services.b.depends_on[1]: no service named \"ghost\""),
        "{all}"
    );
}

/// There is no systemd PID 1 here, so `systemctl` fails (or is missing): the
/// service must be reported as not stopped, with the unit named, without a hang;
/// what it depends on is kept running (it may still be in use), and a service
/// unrelated to it still stops.
#[test]
fn a_failing_systemctl_is_reported_for_its_unit() {
    let mut services = Services::start(vec![spec("side", &[], 0.0), spec("store", &[], 0.0)]);
    let daemon = Daemon::start(&format!(
        "\n[services.unit]\ndriver = \"systemd\"\nunit = \"drd-test-no-such.service\"\ndepends_on = [\"store\"]\n{}",
        services.config()
    ));
    let plan = daemon.drctl_json(&["shutdown", "--dry-run"]);
    let unit = &plan["levels"][0]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "unit")
        .unwrap()
        .clone();
    assert_eq!(unit["signal"], "unit's KillSignal");
    assert_eq!(unit["timeout_ms"], 90_000);

    let started = Instant::now();
    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "Incomplete");
    assert_eq!(report_service(&report, "unit")["state"], "NOT STOPPED");
    assert!(
        report["problems"]
            .to_string()
            .contains("unit drd-test-no-such.service"),
        "{report:#}"
    );
    assert_eq!(report_service(&report, "side")["state"], "stopped");
    assert!(!services.running("side"));
    let store = report_service(&report, "store");
    assert_eq!(store["state"], "held", "{report:#}");
    assert!(store["detail"]
        .as_str()
        .unwrap()
        .contains("unit, which depends on it"));
    assert!(services.running("store"));
}

/// A rollback waits for a service's health check; one that never gets healthy is
/// reported, and what depends on it is not started on top of it.
#[test]
fn a_rollback_waits_for_health_and_does_not_start_dependants_of_a_failure() {
    let dir = drd_integration_tests::open_tempdir();
    let healthy = dir.path().join("mid-healthy");
    let mut mid = gated("mid", &["back"]);
    mid.extra = format!(
        "health = {{ run = [\"/usr/bin/test\", \"-e\", \"{}\"], timeout = \"1s\" }}\n",
        healthy.display()
    );
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ]);
    let daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes", "--json"]);
    let (code, abort) = abort_while_stopping(&daemon, &services, "mid");
    assert_eq!(code, Some(1), "{abort:#}");
    let problems = abort["problems"].to_string();
    assert!(problems.contains("mid: not healthy within 1s"), "{abort:#}");
    assert!(
        problems.contains("front: not started: mid, which it depends on, did not start"),
        "{abort:#}"
    );
    // mid was started (it runs, unhealthy); front was left down.
    assert!(services.running("mid"));
    assert!(!services.running("front"));
    assert!(services.running("back"));
    assert_interrupted_shutdown_rolled_back(running, "not healthy within 1s");
}

/// A start command that fails is reported at once, not after the 30 s a rollback
/// gives a service to come up (that would say "did not write a live pid to the
/// pidfile within 30s"), and what depends on the service is not started.
#[test]
fn a_rollback_reports_a_failing_start_command_at_once() {
    let mut mid = gated("mid", &["back"]);
    mid.broken_start = true;
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ]);
    let daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes", "--json"]);
    let (code, abort) = abort_while_stopping(&daemon, &services, "mid");
    assert_eq!(code, Some(1), "{abort:#}");
    let problems = abort["problems"].to_string();
    assert!(
        problems.contains("mid: start pidfile") && problems.contains("/bin/false exited with"),
        "{abort:#}"
    );
    assert!(
        problems.contains("front: not started: mid, which it depends on, did not start"),
        "{abort:#}"
    );
    assert!(!services.running("mid") && !services.running("front"));
    assert!(services.running("back"));
    assert_interrupted_shutdown_rolled_back(running, "/bin/false exited with");
}

/// The `drctl shutdown --json` that an abort interrupted exits 1 and reports the
/// rollback, with `mid` not started and why, so its caller learns what state the host
/// is in: front stopped, mid not back, back never stopped.
fn assert_interrupted_shutdown_rolled_back(running: std::process::Child, why: &str) {
    let (code, report) = json_of(running);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "RolledBack", "{report:#}");
    assert_eq!(
        report_service(&report, "front")["state"],
        "stopped",
        "{report:#}"
    );
    let mid = report_service(&report, "mid");
    assert_eq!(mid["state"], "NOT STARTED", "{report:#}");
    assert!(mid["detail"].as_str().unwrap().contains(why), "{report:#}");
    assert_eq!(
        report_service(&report, "back")["state"],
        "running",
        "{report:#}"
    );
}
