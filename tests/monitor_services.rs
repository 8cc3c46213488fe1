//! Service health behind circuit breakers through the real drd: a real HTTP server on
//! loopback that fails and recovers (the breaker opens, stops probing, goes half-open
//! and closes), a cascade of critical services whose health ports close, and an open
//! breaker that stays open across a restart of drd.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use drd_integration_tests::{audit_rows, Daemon};
use drd_proto::{BreakerState, CheckState};

#[path = "support/monitors.rs"]
mod monitors;
use monitors::{check, HttpServer};

/// An action that appends the condition (JSON on stdin) to `file`.
fn exec_into(file: &Path) -> String {
    format!(
        "[{{ exec = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"] }}]",
        file.display(),
        file.display()
    )
}

/// A process-driver service (never stopped here) with `health` and `critical`.
fn service(dir: &Path, name: &str, critical: bool, health: &str) -> String {
    format!(
        "[services.{name}]\ndriver = \"process\"\npidfile = \"{}/{name}.pid\"\ncritical = {critical}\nhealth = {health}\n",
        dir.display()
    )
}

fn breaker(daemon: &Daemon, service: &str) -> Option<BreakerState> {
    check(daemon, "services", &format!("service {service}")).and_then(|c| c.breaker)
}

/// The actions of the audit entries by `actor` whose action starts with `prefix`.
fn audited(daemon: &Daemon, actor: &str, prefix: &str) -> Vec<String> {
    audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|r| r.0 == actor && r.1.starts_with(prefix))
        .map(|r| r.1)
        .collect()
}

#[test]
fn a_failing_service_opens_its_breaker_which_half_opens_and_closes_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fired = dir.path().join("fired");
    let server = HttpServer::start(200);
    let health = format!(
        "{{ http = \"{}\", timeout = \"1s\", interval = \"1s\", breaker = {{ failures = 2, open_for = \"3s\", max_open_for = \"10s\", trial_calls = 2 }} }}",
        server.url()
    );
    let daemon = Daemon::start(&format!(
        "{}[monitors.services]\ninterval = \"1s\"\non_fire = {}\n",
        service(dir.path(), "api", false, &health),
        exec_into(&fired)
    ));
    daemon.wait_until(
        "the breaker closed and probing",
        Duration::from_secs(10),
        || breaker(&daemon, "api") == Some(BreakerState::Closed) && server.requests() > 0,
    );

    server.answer(500);
    daemon.wait_until("the breaker open", Duration::from_secs(10), || {
        breaker(&daemon, "api") == Some(BreakerState::Open)
    });
    let view = check(&daemon, "services", "service api").unwrap();
    assert_eq!(view.state, CheckState::Firing, "{view:?}");
    assert!(view.evidence.contains("HTTP 500"), "{view:?}");
    daemon.wait_until("the on_fire action ran", Duration::from_secs(10), || {
        std::fs::read_to_string(&fired).is_ok_and(|t| t.contains("services/service api"))
    });
    // Open: nobody hammers the service.
    let asked = server.requests();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.requests(),
        asked,
        "probes went out while the breaker was open"
    );

    // It recovers: after open_for, trials go out (half-open) and, both good, close it.
    server.answer(200);
    daemon.wait_until("the breaker half-open", Duration::from_secs(10), || {
        breaker(&daemon, "api") == Some(BreakerState::HalfOpen)
    });
    daemon.wait_until("the breaker closed again", Duration::from_secs(10), || {
        breaker(&daemon, "api") == Some(BreakerState::Closed)
    });
    let view = check(&daemon, "services", "service api").unwrap();
    assert_eq!(view.state, CheckState::Ok, "{view:?}");

    let actor = "monitor services/service api";
    assert_eq!(
        audited(&daemon, actor, "breaker "),
        ["breaker opened", "breaker half-open", "breaker closed"]
    );
    assert_eq!(
        audited(&daemon, actor, "monitor "),
        ["monitor fired", "monitor cleared"]
    );
}

#[test]
fn two_critical_services_down_at_once_fire_the_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let cascade = dir.path().join("cascade");
    let db = TcpListener::bind("127.0.0.1:0").unwrap();
    let db_port = db.local_addr().unwrap().port();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let tcp = |port: u16| {
        format!(
            "{{ tcp = \"127.0.0.1:{port}\", timeout = \"1s\", breaker = {{ failures = 1, open_for = \"1m\" }} }}"
        )
    };
    let daemon = Daemon::start(&format!(
        "{}{}{}[monitors.services]\ninterval = \"1s\"\ncascade = {{ critical_open = 2, on_fire = {} }}\n",
        service(dir.path(), "db", true, &tcp(db_port)),
        service(dir.path(), "api", true, &tcp(dead_port)),
        service(dir.path(), "cache", false, &tcp(dead_port)),
        exec_into(&cascade)
    ));
    daemon.wait_until(
        "api's and cache's breakers open",
        Duration::from_secs(10),
        || {
            breaker(&daemon, "api") == Some(BreakerState::Open)
                && breaker(&daemon, "cache") == Some(BreakerState::Open)
        },
    );
    // One critical service down (and one that is not critical) is not a cascade.
    std::thread::sleep(Duration::from_secs(2));
    let view = check(&daemon, "services", "cascade").unwrap();
    assert_eq!(view.state, CheckState::Ok, "{view:?}");
    assert_eq!(view.value, "1 critical open");
    assert!(!cascade.exists());

    drop(db);
    daemon.wait_until("the cascade firing", Duration::from_secs(10), || {
        check(&daemon, "services", "cascade").is_some_and(|c| c.state == CheckState::Firing)
    });
    daemon.wait_until("the cascade's action ran", Duration::from_secs(10), || {
        std::fs::read_to_string(&cascade).is_ok_and(|t| t.contains("services/cascade"))
    });
    let condition = std::fs::read_to_string(&cascade).unwrap();
    assert!(
        condition.contains("2 critical services' breakers open: api, db"),
        "{condition}"
    );
}

#[test]
fn an_open_breaker_stays_open_across_a_restart_of_drd() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(503);
    let health = format!(
        "{{ http = \"{}\", timeout = \"1s\", interval = \"1s\", breaker = {{ failures = 1, open_for = \"1m\" }} }}",
        server.url()
    );
    let mut daemon = Daemon::start(&service(dir.path(), "api", false, &health));
    daemon.wait_until("the breaker open", Duration::from_secs(10), || {
        breaker(&daemon, "api") == Some(BreakerState::Open)
    });
    let asked = server.requests();
    server.answer(200);
    daemon.restart(&[]);
    daemon.wait_until("the monitor's first cycle", Duration::from_secs(10), || {
        breaker(&daemon, "api").is_some()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(breaker(&daemon, "api"), Some(BreakerState::Open));
    assert_eq!(
        server.requests(),
        asked,
        "a restarted drd probed a service whose breaker is open"
    );
}

#[test]
fn check_config_refuses_a_cascade_that_could_never_fire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drd.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}[monitors.services]\ncascade = {{ critical_open = 2 }}\n",
            service(dir.path(), "db", true, "{ tcp = \"127.0.0.1:5432\" }"),
            service(
                dir.path(),
                "api",
                false,
                "{ http = \"http://127.0.0.1:8000/health\" }"
            ),
        ),
    )
    .unwrap();
    let out = drd_integration_tests::check_config(&config);
    let said = drd_integration_tests::text(&out);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains("monitors.services.cascade.critical_open")
            && said.contains("only 1 has critical = true and a health check (db)"),
        "{said}"
    );
}
