//! Recovery drills of services, the network check and authentication, against the
//! real daemon: `drctl test run --scenario service_recovery` stops and starts real
//! processes and a real container, `network_partition` closes a real loopback port,
//! `auth_outage` connects as a real user without a role and reads the real key files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;

use drd_integration_tests::docker::{require_docker, Container, SLEEP_FOREVER};
use drd_integration_tests::{audit_rows, backup_daemon, text, Daemon, FILES_JOB};
use serde_json::Value;

#[path = "support/services.rs"]
mod services;
use services::{spec, Services};

/// The drill loop off (the tests run drills by hand), and targets far above anything
/// a loaded machine takes, so a pass depends on the drill and never on its speed.
const GENEROUS: &str = "\n[drills]\nenabled = false\n[drills.targets.agents]\nrto = \"2m\"\n\
    [drills.targets.service_mesh]\nrto = \"2m\"\n\
    [drills.targets.network]\nrto = \"2m\"\n\
    [drills.targets.authentication]\nrto = \"2m\"\n";

/// Runs one scenario; drctl's exit code and its JSON report.
fn drill(daemon: &Daemon, scenario: &str) -> (Option<i32>, Value) {
    let out = daemon.drctl(&["test", "run", "--scenario", scenario, "--json"]);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&out)));
    (out.status.code(), report)
}

/// The result for `subject`; panics with the report when there is none.
fn result<'a>(report: &'a Value, subject: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no result for {subject}: {report:#}"))
}

fn pid_of(services: &Services, name: &str) -> i32 {
    std::fs::read_to_string(services.pidfile(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `[services.NAME]` of `services` marked for drills, with `health` as its check.
fn drilled(config: &str, name: &str, health: &str) -> String {
    let table = format!("[services.{name}]\n");
    assert!(config.contains(&table), "{config}");
    config.replace(&table, &format!("{table}drill = true\nhealth = {health}\n"))
}

/// A health check that passes while the pidfile names a live process.
fn alive_check(services: &Services, name: &str) -> String {
    format!(
        "{{ run = [\"/bin/sh\", \"-c\", \"kill -0 \\\"$(cat {})\\\"\"], timeout = \"5s\" }}",
        services.pidfile(name).display()
    )
}

#[test]
fn a_drilled_process_comes_back_healthy_with_a_new_pid_and_the_others_are_untouched() {
    let mut services = Services::start(vec![spec("api", &[], 0.0), spec("worker", &[], 0.0)]);
    let config = drilled(&services.config(), "api", &alive_check(&services, "api"));
    let daemon = Daemon::start(&format!("{config}{GENEROUS}"));
    let (api_before, worker_before) = (pid_of(&services, "api"), pid_of(&services, "worker"));

    let (code, report) = drill(&daemon, "service_recovery");
    assert_eq!(code, Some(0), "{report:#}");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only the drilled service: {report:#}");
    let api = result(&report, "service api");
    assert_eq!(api["outcome"], "pass", "{report:#}");
    assert_eq!(api["category"], "agents");
    assert!(api["rto_ms"].as_u64().unwrap() > 0, "{api:#}");
    assert_eq!(api["rpo_ms"], 0);
    assert_eq!(api["target_rto_ms"], 120_000);
    assert!(
        api["evidence"].as_str().unwrap().contains("healthy"),
        "{api:#}"
    );

    let api_after = pid_of(&services, "api");
    assert_ne!(api_after, api_before, "api was restarted");
    assert!(services.running("api"), "api runs again");
    assert_eq!(
        pid_of(&services, "worker"),
        worker_before,
        "worker untouched"
    );
    assert!(services.running("worker"));
    assert_eq!(
        services.count("worker", "term"),
        0,
        "worker was never told to stop"
    );
    let audit = audit_rows(&daemon.catalog());
    let drilled: Vec<_> = audit
        .iter()
        .filter(|(_, a, _, _)| a == "drill service")
        .collect();
    assert!(
        drilled
            .iter()
            .any(|(_, _, o, d)| o == "ok" && d.starts_with("stopped api")),
        "{audit:#?}"
    );
    assert!(
        drilled
            .iter()
            .any(|(_, _, o, d)| o == "ok" && d.starts_with("started api again")),
        "{audit:#?}"
    );
    assert!(
        !drilled.iter().any(|(_, _, _, d)| d.contains("worker")),
        "{audit:#?}"
    );
}

#[test]
fn a_drilled_service_that_never_gets_healthy_fails_and_says_what_its_check_answered() {
    let mut services = Services::start(vec![spec("api", &[], 0.0)]);
    let health = "{ run = [\"/bin/sh\", \"-c\", \"echo database unreachable >&2; exit 3\"], \
                  timeout = \"1s\" }";
    let config = drilled(&services.config(), "api", health);
    // A short target, so the drill gives up soon; the check never passes anyway.
    let daemon = Daemon::start(&format!(
        "{config}\n[drills]\nenabled = false\n[drills.targets.agents]\nrto = \"1s\"\n"
    ));
    let before = pid_of(&services, "api");

    let (code, report) = drill(&daemon, "service_recovery");
    assert_eq!(code, Some(1), "a failed drill exits 1: {report:#}");
    let api = result(&report, "service api");
    assert_eq!(api["outcome"], "fail", "{report:#}");
    let evidence = api["evidence"].as_str().unwrap();
    assert!(evidence.contains("health check did not pass"), "{evidence}");
    assert!(evidence.contains("database unreachable"), "{evidence}");
    assert!(api["rto_ms"].is_null(), "no recovery, no RTO: {api:#}");
    // Started again all the same: the drill never leaves a service down.
    assert_ne!(pid_of(&services, "api"), before);
    assert!(services.running("api"));
}

#[test]
fn a_drilled_container_comes_back_with_its_restart_policy() {
    if !require_docker() {
        return;
    }
    let web = Container::new("drill-web")
        .restart("always")
        .args(SLEEP_FOREVER)
        .start();
    let started_at = |c: &Container| {
        c.inspect()["State"]["StartedAt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = started_at(&web);
    let daemon = Daemon::start(&format!(
        "\n[services.web]\ndriver = \"docker\"\ncontainer = \"{}\"\nstop_timeout = \"5s\"\n\
         drill = true\nhealth = {{ docker = true, timeout = \"5s\" }}\n{GENEROUS}",
        web.name()
    ));

    let (code, report) = drill(&daemon, "service_recovery");
    assert_eq!(code, Some(0), "{report:#}");
    let result = result(&report, "service web");
    assert_eq!(result["outcome"], "pass", "{report:#}");
    assert_eq!(result["category"], "service_mesh");
    assert!(result["rto_ms"].as_u64().unwrap() > 0, "{result:#}");
    assert_eq!(web.status(), "running");
    assert_ne!(started_at(&web), before, "it was really restarted");
    assert_eq!(
        web.inspect()["HostConfig"]["RestartPolicy"]["Name"],
        "always",
        "the policy the stop set to no is back"
    );
}

#[test]
fn a_partition_is_detected_after_the_hold_and_the_policy_only_says_what_it_would_do() {
    let mut services = Services::start(vec![spec("api", &[], 0.0)]);
    // The real monitor's target answers all along: only the drill sees a partition.
    let answering = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let daemon = Daemon::start(&format!(
        "{}\n[monitors.network]\ntargets = [\"tcp://{}\"]\nhold = \"1s\"\n\
         on_fire = [{{ shutdown = \"network_partition\", only = [\"api\"] }}]\n{GENEROUS}",
        services.config(),
        answering.local_addr().unwrap()
    ));
    let before = pid_of(&services, "api");

    let (code, report) = drill(&daemon, "network_partition");
    assert_eq!(code, Some(0), "{report:#}");
    let found = result(&report, "loopback port");
    assert_eq!(found["outcome"], "pass", "{report:#}");
    assert_eq!(found["category"], "network");
    // The check fires only once the targets failed for the whole hold.
    assert!(found["rto_ms"].as_u64().unwrap() >= 1000, "{found:#}");
    let evidence = found["evidence"].as_str().unwrap();
    assert!(evidence.contains("1 of 1 targets failing"), "{evidence}");
    assert!(evidence.contains("would shut down api"), "{evidence}");
    assert!(evidence.contains("automatic_shutdown is off"), "{evidence}");
    // Dry-run: nothing was shut down.
    assert_eq!(pid_of(&services, "api"), before);
    assert!(services.running("api"));
    assert!(
        !audit_rows(&daemon.catalog())
            .iter()
            .any(|(_, a, _, _)| a == "emergency shutdown" || a.starts_with("shutdown #")),
        "the drill shut nothing down"
    );
}

#[test]
fn auth_outage_refuses_a_peer_without_a_role_and_fails_a_key_others_can_read() {
    let daemon = backup_daemon(&format!("{FILES_JOB}{GENEROUS}"));
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/a.txt"), "a").unwrap();
    daemon.backup_now("files");

    let (code, report) = drill(&daemon, "auth_outage");
    assert_eq!(code, Some(0), "{report:#}");
    let keys = result(&report, "keys");
    assert_eq!(keys["outcome"], "pass", "{report:#}");
    assert!(
        keys["evidence"]
            .as_str()
            .unwrap()
            .contains("tier local: the keys open it"),
        "{keys:#}"
    );
    // The tests run as root, so the role-less client is really run and refused.
    let socket = result(&report, "socket");
    assert_eq!(socket["outcome"], "pass", "{report:#}");
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(actor, a, o, _)| actor.starts_with("uid=65534 ")
                && a == "connect"
                && o == "refused"),
        "{audit:#?}"
    );

    let key = daemon.dir.path().join("main.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = drill(&daemon, "auth_outage");
    assert_eq!(code, Some(1), "{report:#}");
    let keys = result(&report, "keys");
    assert_eq!(keys["outcome"], "fail", "{report:#}");
    let evidence = keys["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!(
            "key {}: mode 0644 lets others read it",
            key.display()
        )),
        "{evidence}"
    );
}

#[test]
fn a_shutdown_cancels_a_running_drill_which_is_recorded_as_cancelled() {
    let services = Services::start(vec![spec("api", &[], 0.0)]);
    // Healthy only once the test says so: the drill restarts api, then waits.
    let ready = services.pidfile("api").with_file_name("ready");
    let health = format!(
        "{{ run = [\"test\", \"-f\", \"{}\"], timeout = \"5s\" }}",
        ready.display()
    );
    let config = drilled(&services.config(), "api", &health);
    let daemon = Daemon::start(&format!("{config}{GENEROUS}"));
    let before = pid_of(&services, "api");
    let socket = daemon.socket();
    let drctl = &drd_integration_tests::bins().drctl;
    let run = std::process::Command::new(drctl)
        .args(["--socket", socket.to_str().unwrap()])
        .args(["test", "run", "--scenario", "service_recovery", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drd_integration_tests::eventually("the drill to restart api", || {
        std::fs::read_to_string(services.pidfile("api"))
            .is_ok_and(|pid| pid.trim().parse::<i32>().is_ok_and(|p| p != before))
    });
    let out = daemon.drctl(&["shutdown", "--yes", "--trigger", "manual"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "cancelled is not failed: {}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "cancelled", "{report:#}");
    let results = report["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["outcome"] == "cancelled"),
        "{report:#}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["evidence"] == "cancelled: shutdown #1 is running"),
        "the run says what it yielded to: {report:#}"
    );

    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let stored: String = conn
        .query_row("SELECT outcome FROM drill_runs ORDER BY id DESC", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "cancelled");
}
