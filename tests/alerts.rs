//! Alerts through the real daemon to real receivers: a real Alertmanager that shows
//! drd's alert and drops it when drd resolves it; a loopback webhook that fails for a
//! while (bounded tries, one delivery, then the resolution, credentials never shown);
//! an alert waiting in the outbox when drd is killed with SIGKILL, delivered after the
//! restart; escalation that climbs until acknowledged, with the ack audited; `drctl
//! alerts test`; a paused switch's alert resolved; and healthchecks-style pings for a
//! job and for drd itself.
//!
//! Alerts are raised by a deadman switch: `drctl heartbeat sw --fail` puts it down at
//! once (a critical alert), and a success ping brings it up (the resolution).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use drd_integration_tests::alerting::{Alertmanager, Receiver};
use drd_integration_tests::{audit_rows, backup_daemon_with, text, Daemon, FILES_JOB};

const SWITCH: &str = "[deadman.sw]\nperiod = \"1h\"\n";

/// Puts the switch down (a critical alert) after a first success ping.
fn raise(daemon: &Daemon) {
    for args in [&["heartbeat", "sw"][..], &["heartbeat", "sw", "--fail"]] {
        let out = daemon.drctl(args);
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// Brings the switch up: its alert resolves.
fn clear(daemon: &Daemon) {
    let out = daemon.drctl(&["heartbeat", "sw"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `drctl alerts --all --json` (exit 1 while one is open and unacked).
fn alerts(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.drctl(&["alerts", "--all", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Polls `drctl alerts --all --json` until `done` holds of it; returns that listing.
fn alerts_when(
    daemon: &Daemon,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut shown = Vec::new();
    wait(what, timeout, || {
        shown = alerts(daemon);
        done(&shown)
    });
    shown
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The webhook requests that carried `status` and got `code`.
fn answered(requests: &[serde_json::Value], status: &str, code: u64) -> usize {
    requests
        .iter()
        .filter(|r| r["body"]["status"] == status && r["code"] == code)
        .count()
}

#[test]
fn an_alert_reaches_alertmanager_and_is_resolved_there() {
    let Some(am) = Alertmanager::try_start() else {
        return;
    };
    let daemon = Daemon::start(&format!(
        "{SWITCH}[alerts.receivers.am]\nkind = \"alertmanager\"\nurl = \"{}\"\n",
        am.url
    ));
    raise(&daemon);
    wait(
        "Alertmanager to hold drd's alert",
        Duration::from_secs(20),
        || {
            am.query()
                .unwrap()
                .iter()
                .any(|a| a["labels"]["deadman"] == "sw")
        },
    );
    let held = am.query().unwrap();
    let alert = held
        .iter()
        .find(|a| a["labels"]["deadman"] == "sw")
        .unwrap();
    assert_eq!(alert["labels"]["alertname"], "drd_deadman", "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");
    assert!(alert["labels"]["host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("deadman/sw down"),
        "{alert:#}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");

    clear(&daemon);
    wait(
        "Alertmanager to drop the resolved alert",
        Duration::from_secs(20),
        || {
            !am.query()
                .unwrap()
                .iter()
                .any(|a| a["labels"]["deadman"] == "sw")
        },
    );
    // drd records a delivery once Alertmanager has answered, which may be after
    // Alertmanager dropped the alert.
    let shown = alerts_when(
        &daemon,
        "drd to record both deliveries",
        Duration::from_secs(20),
        |shown| {
            shown[0]["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| d["delivered_unix_ms"].is_i64()))
        },
    );
    assert!(shown[0]["resolved_unix_ms"].is_i64(), "{shown:#?}");
    let deliveries = shown[0]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{deliveries:#?}");

    let out = daemon.drctl(&["alerts", "test", "am"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reached"), "{}", text(&out));
}

#[test]
fn a_failing_webhook_gets_bounded_tries_then_one_delivery_and_the_resolution() {
    let hook = Receiver::start(true);
    let url = hook.url("/hook").replace("http://", "http://bot:s3cret@");
    let daemon = Daemon::start_with_env(
        &format!(
            "{SWITCH}[alerts]\nretry_first = \"1s\"\n\
             [alerts.receivers.hook]\nkind = \"webhook\"\nurl = \"{url}\"\n\
             breaker_failures = 2\nbreaker_open_for = \"2s\"\n\
             headers_from_env = {{ X-Token = \"DRD_TEST_HOOK_TOKEN\" }}\n"
        ),
        &[("DRD_TEST_HOOK_TOKEN", "t0ken")],
    );
    raise(&daemon);
    wait("a first try", Duration::from_secs(10), || {
        !hook.requests().is_empty()
    });
    // Failing for 6 s: the back-off and the breaker allow a handful of tries, where
    // retrying at every worker step would make dozens.
    std::thread::sleep(Duration::from_secs(6));
    let failed = hook.requests().len();
    assert!(
        (2..=6).contains(&failed),
        "{failed} tries in 6 s against a failing receiver"
    );
    let shown = alerts(&daemon);
    let delivery = &shown[0]["deliveries"][0];
    assert!(delivery["delivered_unix_ms"].is_null(), "{delivery:#}");
    assert!(
        delivery["result"].as_str().unwrap().starts_with("HTTP 500"),
        "{delivery:#}"
    );

    hook.set_failing(false);
    wait("the firing delivered", Duration::from_secs(30), || {
        answered(&hook.requests(), "firing", 200) == 1
    });
    clear(&daemon);
    wait("the resolution delivered", Duration::from_secs(30), || {
        answered(&hook.requests(), "resolved", 200) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let requests = hook.requests();
    assert_eq!(answered(&requests, "firing", 200), 1, "{requests:#?}");
    assert_eq!(answered(&requests, "resolved", 200), 1, "{requests:#?}");
    let last = requests.last().unwrap();
    assert_eq!(last["body"]["status"], "resolved", "resolution comes last");
    assert_eq!(last["body"]["source"], "deadman/sw");
    assert_eq!(last["body"]["severity"], "critical");
    assert!(last["body"]["dedup_key"]
        .as_str()
        .unwrap()
        .ends_with("/deadman/sw"));
    // The credentials in the URL go as basic auth, the header from the environment.
    assert_eq!(last["auth"], "Basic Ym90OnMzY3JldA==");
    assert_eq!(last["token"], "t0ken");

    // ...and never show: not in drctl's output, the audit log or drd's log.
    let out = daemon.drctl(&["alerts", "test", "hook"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("bot:***@127.0.0.1"), "{}", text(&out));
    let listing = daemon.drctl(&["alerts", "--all", "--json"]);
    let audit = format!("{:?}", audit_rows(&daemon.catalog()));
    for shown in [text(&out), text(&listing), audit, daemon.log()] {
        assert!(!shown.contains("s3cret"), "a secret shown: {shown}");
    }
}

#[test]
fn an_alert_waiting_in_the_outbox_survives_sigkill() {
    let hook = Receiver::start(true);
    let mut daemon = Daemon::start(&format!(
        "{SWITCH}[alerts]\nretry_first = \"1s\"\n\
         [alerts.receivers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    ));
    raise(&daemon);
    // The receiver logs a request before drd has its answer: wait for drd to have
    // recorded the failed try, so the alert is waiting in the outbox.
    let attempts = |shown: &[serde_json::Value]| {
        shown
            .first()
            .map_or(0, |a| a["deliveries"][0]["attempts"].as_u64().unwrap_or(0))
    };
    alerts_when(
        &daemon,
        "a failed try, recorded",
        Duration::from_secs(10),
        |shown| attempts(shown) >= 1,
    );
    daemon.kill();
    hook.set_failing(false);
    daemon.spawn(&[]);
    daemon.wait_ready();
    let shown = alerts_when(
        &daemon,
        "the firing delivered after the restart",
        Duration::from_secs(30),
        |shown| shown[0]["deliveries"][0]["delivered_unix_ms"].is_i64(),
    );
    assert_eq!(answered(&hook.requests(), "firing", 200), 1);
    assert_eq!(shown.len(), 1, "one alert, not one per start: {shown:#?}");
    assert!(attempts(&shown) >= 2, "{shown:#?}");
}

#[test]
fn pausing_a_down_switch_resolves_its_alert() {
    let hook = Receiver::start(false);
    let daemon = Daemon::start(&format!(
        "{SWITCH}[alerts.receivers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    ));
    raise(&daemon);
    wait("the firing", Duration::from_secs(10), || {
        answered(&hook.requests(), "firing", 200) == 1
    });
    let out = daemon.drctl(&["deadman", "pause", "sw"]);
    assert!(out.status.success(), "{}", text(&out));
    wait("the resolution", Duration::from_secs(10), || {
        answered(&hook.requests(), "resolved", 200) == 1
    });
    let out = daemon.drctl(&["alerts"]);
    assert_eq!(out.status.code(), Some(0), "nothing open: {}", text(&out));
}

#[test]
fn escalation_climbs_until_acknowledged_and_the_ack_is_audited() {
    let hook = Receiver::start(false);
    let daemon = Daemon::start(&format!(
        "{SWITCH}\
         [alerts.receivers.l1]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [alerts.receivers.l2]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [alerts.receivers.l3]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [alerts.routes.critical]\nescalation = [\n\
           {{ receivers = [\"l1\"] }},\n\
           {{ after = \"2s\", receivers = [\"l2\"] }},\n\
           {{ after = \"8s\", receivers = [\"l3\"] }},\n]\n",
        hook.url("/l1"),
        hook.url("/l2"),
        hook.url("/l3")
    ));
    let raised = Instant::now();
    raise(&daemon);
    wait("level 1", Duration::from_secs(10), || {
        !hook.requests_to("/l1").is_empty()
    });
    assert!(hook.requests_to("/l2").is_empty(), "level 2 waits its 2 s");
    wait("level 2", Duration::from_secs(10), || {
        !hook.requests_to("/l2").is_empty()
    });
    assert!(raised.elapsed() >= Duration::from_secs(2));
    let shown = alerts(&daemon);
    assert_eq!(shown[0]["level"], 2, "{shown:#?}");
    assert_eq!(shown[0]["levels"], 3, "{shown:#?}");
    let out = daemon.drctl(&["alerts"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "open and unacked: {}",
        text(&out)
    );

    let id = shown[0]["id"].as_i64().unwrap().to_string();
    let acked = daemon.drctl_json(&["alerts", "ack", &id, "--comment", "on it"]);
    let uid = nix::unistd::getuid().as_raw();
    assert!(
        acked["ack"]["by"]
            .as_str()
            .unwrap()
            .starts_with(&format!("uid={uid} ")),
        "{acked:#}"
    );
    assert_eq!(acked["ack"]["comment"], "on it");
    // Past level 3's time: nothing more goes out.
    let past = Duration::from_secs(10).saturating_sub(raised.elapsed());
    std::thread::sleep(past);
    assert!(
        hook.requests_to("/l3").is_empty(),
        "an acked alert stops climbing"
    );
    let out = daemon.drctl(&["alerts"]);
    assert_eq!(out.status.code(), Some(0), "acked: {}", text(&out));

    let rows = audit_rows(&daemon.catalog());
    let ack = rows
        .iter()
        .find(|r| r.1 == "alert ack")
        .expect("ack audited");
    assert!(ack.0.starts_with(&format!("uid={uid} ")), "{ack:?}");
    assert!(ack.3.contains("on it"), "{ack:?}");
    assert!(
        rows.iter()
            .any(|r| r.1 == "alert escalated" && r.3.contains("level 2")),
        "{rows:?}"
    );
    // A second ack says who was first; an unknown alert is not found.
    let out = daemon.drctl(&["alerts", "ack", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("was acknowledged by uid="),
        "{}",
        text(&out)
    );
    let out = daemon.drctl(&["alerts", "ack", "999"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
}

#[test]
fn alerts_test_reports_what_a_command_receiver_answered() {
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.json");
    let daemon = Daemon::start(&format!(
        "[alerts.receivers.page]\nkind = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat >> {}; echo paged\"]\n\
         [alerts.receivers.broken]\nkind = \"exec\"\ncommand = [\"/bin/false\"]\n",
        got.display()
    ));
    let report = daemon.drctl_json(&["alerts", "test", "page"]);
    assert_eq!(report["ok"], true, "{report:#}");
    let sent = std::fs::read_to_string(&got).unwrap();
    assert!(sent.contains("\"status\":\"firing\"") && sent.contains("\"status\":\"resolved\""));
    assert!(sent.contains("\"test\":true"), "{sent}");

    let out = daemon.drctl(&["alerts", "test", "broken"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("NOT reached"), "{}", text(&out));
    let out = daemon.drctl(&["alerts", "test", "nobody"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
    assert!(text(&out).contains("broken, page"), "{}", text(&out));
}

#[test]
fn pings_go_out_for_a_job_run_and_for_drd_itself() {
    let hc = Receiver::start(false);
    let daemon = backup_daemon_with(
        &format!(
            "ping_url = \"{}\"\nping_every = \"1s\"",
            hc.url("/ping/drd")
        ),
        &format!("{FILES_JOB}ping_url = \"{}\"\n", hc.url("/ping/files")),
    );
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/a.txt"), "hello").unwrap();
    daemon.backup_now("files");
    wait("the job's success ping", Duration::from_secs(10), || {
        !hc.requests_to("/ping/files").is_empty()
    });
    assert_eq!(hc.requests_to("/ping/files/start").len(), 1);
    wait("drd's own pings", Duration::from_secs(10), || {
        hc.requests_to("/ping/drd").len() >= 2
    });

    // A run that fails pings /fail with why.
    std::fs::remove_dir_all(daemon.dir.path().join("data")).unwrap();
    let out = daemon.drctl(&["backup", "--job", "files"]);
    assert!(!out.status.success(), "{}", text(&out));
    wait("the job's fail ping", Duration::from_secs(10), || {
        !hc.requests_to("/ping/files/fail").is_empty()
    });
    assert!(hc.requests_to("/ping/files/fail")[0]["body"]
        .as_str()
        .is_some_and(|b| !b.is_empty()));
}

#[test]
fn a_runs_success_ping_waits_until_its_start_ping_was_answered() {
    // healthchecks.io reads a /start that arrives after the run's success as a run
    // that began and never ended, and marks the check down after its grace time.
    let hc = Receiver::start_slow("/ping/files/start", 1.0);
    let daemon = backup_daemon_with(
        "",
        &format!("{FILES_JOB}ping_url = \"{}\"\n", hc.url("/ping/files")),
    );
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/a.txt"), "hello").unwrap();
    daemon.backup_now("files");
    // The receiver logs a request as it answers it.
    wait(
        "the job's start and success pings",
        Duration::from_secs(10),
        || {
            !hc.requests_to("/ping/files/start").is_empty()
                && !hc.requests_to("/ping/files").is_empty()
        },
    );
    let (start, success) = (
        &hc.requests_to("/ping/files/start")[0],
        &hc.requests_to("/ping/files")[0],
    );
    assert!(
        success["at_ms"].as_f64().unwrap() >= start["answered_ms"].as_f64().unwrap(),
        "the success ping came before the start ping was answered: {start} {success}"
    );
}
