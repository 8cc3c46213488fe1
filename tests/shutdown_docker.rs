//! Emergency shutdown of real Docker containers (the busybox test image of
//! tests/support/docker.rs): stop order, restart policies held at `no` while stopped
//! and restored by a rollback. Skipped with a message when no engine answers; failed
//! instead when DRD_REQUIRE_DOCKER=1.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use drd_integration_tests::docker::{require_docker, Container, SLEEP_FOREVER};
use drd_integration_tests::gate::Gate;
use drd_integration_tests::{audit_rows, Daemon};

#[path = "support/services.rs"]
mod services;
use services::{json_of, shutdown, wait_audited};

fn policy(container: &Container) -> String {
    container.inspect()["HostConfig"]["RestartPolicy"]["Name"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn finished_at(container: &Container) -> String {
    container.inspect()["State"]["FinishedAt"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn service(name: &str, container: &Container, depends_on: &[&str], timeout: &str) -> String {
    let deps: Vec<String> = depends_on.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "\n[services.{name}]\ndriver = \"docker\"\ncontainer = \"{}\"\ndepends_on = [{}]\nstop_timeout = \"{timeout}\"\n",
        container.name(),
        deps.join(", ")
    )
}

#[test]
fn containers_stop_in_dependency_order_with_restart_policy_held_at_no() {
    if !require_docker() {
        return;
    }
    let web = Container::new("shut-web")
        .restart("always")
        .args(SLEEP_FOREVER)
        .start();
    let db = Container::new("shut-db")
        .restart("unless-stopped")
        .args(SLEEP_FOREVER)
        .start();
    let daemon = Daemon::start(&format!(
        "{}{}",
        service("web", &web, &["db"], "5s"),
        service("db", &db, &[], "5s")
    ));

    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(web.status(), "exited");
    assert_eq!(db.status(), "exited");
    // FinishedAt is RFC 3339 in UTC with nanoseconds: comparable as text.
    assert!(
        finished_at(&web) <= finished_at(&db),
        "db stopped before web"
    );
    // Neither comes back if dockerd restarts: their policies are "no" now.
    assert_eq!(policy(&web), "no");
    assert_eq!(policy(&db), "no");
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(_, a, o, d)| a == "shutdown #1 stop web" && o == "ok" && d.contains("stopped")),
        "{audit:#?}"
    );
}

#[test]
fn a_rollback_restores_the_restart_policy_and_starts_the_container() {
    if !require_docker() {
        return;
    }
    // On SIGTERM, web's stop waits at a gate (a fifo bind-mounted from the test's
    // folder) until the test has aborted: the abort lands before db's level for
    // certain. Its stop timeout is long, so docker never kills it meanwhile.
    let dir = drd_integration_tests::open_tempdir();
    let gate = Gate::new(&dir.path().join("stop"));
    let web = Container::new("shut-slow")
        .restart("always")
        .bind(dir.path(), "/gate")
        .args(&[
            "/bin/sh",
            "-c",
            "trap 'cat /gate/stop; exit 0' TERM; sleep 1000000 & wait",
        ])
        .start();
    let db = Container::new("shut-db2")
        .restart("unless-stopped")
        .args(SLEEP_FOREVER)
        .start();
    let daemon = Daemon::start(&format!(
        "{}{}",
        service("web", &web, &["db"], "10m"),
        service("db", &db, &[], "5s")
    ));

    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes", "--json"]);
    let stopping = gate.wait_reader_for("web was never told to stop");
    assert_eq!(
        policy(&web),
        "no",
        "web's policy is held at no while it stops"
    );
    let abort = daemon.spawn_drctl(&["abort", "--json"]);
    wait_audited(&daemon, "abort shutdown");
    stopping.release(b"");
    let (code, abort) = json_of(abort);
    assert_eq!(code, Some(0), "{abort:#}");
    assert_eq!(abort["started"][0]["name"], "web", "{abort:#}");
    assert_eq!(web.status(), "running");
    assert_eq!(policy(&web), "always");
    // db's level was never reached.
    assert_eq!(db.status(), "running");
    assert_eq!(policy(&db), "unless-stopped");

    let (code, report) = json_of(running);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "RolledBack", "{report:#}");
    let web_result = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web_result["level"], 0);
}

#[test]
fn an_engine_that_does_not_answer_is_an_error_for_that_service() {
    // A socket that accepts and never replies stands in for a wedged dockerd.
    let dir = drd_integration_tests::open_tempdir();
    let socket = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let daemon = Daemon::start_with_env(
        "\n[services.web]\ndriver = \"docker\"\ncontainer = \"web\"\n",
        &[("DOCKER_HOST", &format!("unix://{}", socket.display()))],
    );
    let started = Instant::now();
    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "Incomplete");
    let problems = report["problems"].to_string();
    assert!(problems.contains("does not answer"), "{problems}");
    assert!(problems.contains("container web"), "{problems}");
}

#[test]
fn compose_containers_are_found_by_their_labels_and_stopped_in_order() {
    if !require_docker() {
        return;
    }
    let project = drd_integration_tests::docker::unique_name("shop");
    let db = Container::new("compose-db")
        .label("com.docker.compose.project", &project)
        .label("com.docker.compose.service", "db")
        .args(SLEEP_FOREVER)
        .start();
    let web = Container::new("compose-web")
        .label("com.docker.compose.project", &project)
        .label("com.docker.compose.service", "web")
        .label("com.docker.compose.depends_on", "db:service_started:false")
        .args(SLEEP_FOREVER)
        .start();
    let daemon = Daemon::start(&format!(
        "\n[services.shop]\ndriver = \"compose\"\nproject = \"{project}\"\nstop_timeout = \"5s\"\n"
    ));

    let plan = daemon.drctl_json(&["shutdown", "--dry-run"]);
    let levels: Vec<Vec<&str>> = plan["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(levels, [["shop.web"], ["shop.db"]], "{plan:#}");
    assert_eq!(
        plan["levels"][0][0]["target"],
        format!("container {}", web.name())
    );
    assert_eq!(web.status(), "running");

    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(web.status(), "exited");
    assert_eq!(db.status(), "exited");
    assert!(
        finished_at(&web) <= finished_at(&db),
        "db stopped before web"
    );
}

/// After a shutdown, `drctl recover` starts the containers again, what they depend
/// on first, with the restart policies the shutdown held at `no` put back.
#[test]
fn a_recovery_brings_stopped_containers_back_with_their_restart_policies() {
    if !require_docker() {
        return;
    }
    let web = Container::new("rec-web")
        .restart("always")
        .args(SLEEP_FOREVER)
        .start();
    let db = Container::new("rec-db")
        .restart("unless-stopped")
        .args(SLEEP_FOREVER)
        .start();
    let daemon = Daemon::start(&format!(
        "{}{}",
        service("web", &web, &["db"], "2s"),
        service("db", &db, &[], "2s")
    ));
    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        (web.status().as_str(), policy(&web).as_str()),
        ("exited", "no")
    );
    assert_eq!(
        (db.status().as_str(), policy(&db).as_str()),
        ("exited", "no")
    );

    let out = daemon.drctl(&["recover", "--yes", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcome"], "recovered", "{report:#}");
    assert_eq!(web.status(), "running");
    assert_eq!(policy(&web), "always");
    assert_eq!(db.status(), "running");
    assert_eq!(policy(&db), "unless-stopped");
    // db (what web needs) was started first.
    let started = |c: &Container| {
        c.inspect()["State"]["StartedAt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        started(&db) < started(&web),
        "{} {}",
        started(&db),
        started(&web)
    );
}
