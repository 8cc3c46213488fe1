//! `drctl validate` against the real daemon: a host set up right reads pass line by
//! line (what the user is told for each), and each broken precondition (a key file
//! others can read, an S3 tier nobody answers for, a job past its RPO, an edited audit
//! entry, a config file edited since it was loaded) fails its own line, with exit 1,
//! and the line passes again once the cause is put right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use drd_integration_tests::alerting::free_port;
use drd_integration_tests::{backup_daemon, text, Daemon, FILES_JOB};

/// The files job of most tests, held to a one-hour RPO.
fn job_with_rpo() -> String {
    FILES_JOB.replace("tiers = [", "rpo = \"1h\"\ntiers = [")
}

/// `drctl validate --json`: its exit code and the report.
fn validate(daemon: &Daemon) -> (Option<i32>, serde_json::Value) {
    let out = daemon.drctl(&["validate", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

/// The line `name` of a report: (status, detail).
fn line(report: &serde_json::Value, name: &str) -> (String, String) {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no line {name:?} in {report:#}"));
    (
        check["status"].as_str().unwrap().to_owned(),
        check["detail"].as_str().unwrap().to_owned(),
    )
}

/// Asserts that line `name` has `status` and its detail contains each of `words`.
fn assert_line(report: &serde_json::Value, name: &str, status: &str, words: &[&str]) {
    let (got, detail) = line(report, name);
    assert_eq!(got, status, "{name}: {detail}");
    for word in words {
        assert!(detail.contains(word), "{name}: no {word:?} in {detail:?}");
    }
}

/// Asserts `drctl validate` exits 1 with line `name` failing, saying each of `words`.
fn assert_fails(daemon: &Daemon, name: &str, words: &[&str]) {
    let (code, report) = validate(daemon);
    assert_eq!(code, Some(1), "{report:#}");
    assert_line(&report, name, "fail", words);
}

/// The human line of check `name` in `drctl validate`'s text output.
fn text_line<'a>(out: &'a Output, status: &str, name: &str) -> &'a str {
    let stdout = std::str::from_utf8(&out.stdout).unwrap();
    let head = format!("{status:<4}  {name} ");
    stdout
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no line {head:?} in:\n{stdout}"))
}

#[test]
fn a_host_set_up_right_reads_ready_line_by_line() {
    let jobs = format!(
        "{}\n[deadman.nightly]\nperiod = \"1h\"\ngrace = \"10m\"\n",
        job_with_rpo()
    );
    let daemon = backup_daemon(&jobs);
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/a"), b"recoverable").unwrap();
    daemon.backup_now("files");
    let ping = daemon.drctl(&["heartbeat", "nightly"]);
    assert!(ping.status.success(), "{}", text(&ping));

    let (_, report) = validate(&daemon);
    let config = daemon.config.display().to_string();
    let repo = daemon.repo().display().to_string();
    assert_line(&report, "config", "pass", &[&config, "loads the same"]);
    assert_line(&report, "keys", "pass", &["1 key file", "open tier local"]);
    assert_line(
        &report,
        "tier local",
        "pass",
        &[&repo, "wrote and removed a probe", "holds a drd repository"],
    );
    assert_line(
        &report,
        "job files rpo",
        "pass",
        &["last good backup", "within its rpo of 1h"],
    );
    assert_line(&report, "docker", "pass", &["not used"]);
    assert_line(&report, "socket", "pass", &["mode 0660"]);
    assert_line(&report, "audit", "pass", &["chain intact"]);
    assert_line(&report, "deadman", "pass", &["all 1 switches up"]);
    assert_line(&report, "watchdog", "pass", &["not under systemd"]);
    // Free space depends on the machine: the lines are there, with their evidence.
    for name in ["disk state_dir", "disk tier local"] {
        let (_, detail) = line(&report, name);
        assert!(detail.contains("on the filesystem of"), "{name}: {detail}");
    }
    // Nothing here for these drills to work on: said, not failed.
    assert_line(
        &report,
        "drills service_mesh",
        "warn",
        &["nothing to drill", "drill = true"],
    );
    assert_line(&report, "drills agents", "warn", &["nothing to drill"]);

    // The storage drills' verdict is the one `drctl test report` shows: passed lately,
    // or never, with what to run.
    let _ = daemon.drctl(&["test", "run", "--category", "storage"]);
    let drilled = daemon.drctl_json(&["test", "report"]);
    let storage = drilled["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "storage")
        .unwrap()
        .clone();
    let (_, report) = validate(&daemon);
    if storage["last_pass_unix_ms"].is_null() {
        assert_line(
            &report,
            "drills storage",
            "fail",
            &["never passed", "drctl test run --category storage"],
        );
    } else {
        assert_line(
            &report,
            "drills storage",
            "pass",
            &["within two drill intervals (12h 0m)"],
        );
    }

    // The same verdicts for a person: one aligned line each, then the sum.
    let out = daemon.drctl(&["validate"]);
    assert!(
        text_line(&out, "PASS", "tier local").contains("wrote and removed a probe"),
        "{}",
        text(&out)
    );
    assert!(text_line(&out, "WARN", "drills agents").contains("nothing to drill"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = stdout.lines().last().unwrap();
    let failing = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(out.status.code(), Some(if failing { 1 } else { 0 }));
    assert!(
        verdict.starts_with(if failing { "NOT READY: " } else { "READY: " }),
        "{stdout}"
    );
}

#[test]
fn each_broken_precondition_fails_its_own_line() {
    let mut daemon = backup_daemon(&job_with_rpo());
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    daemon.backup_now("files");
    let (_, report) = validate(&daemon);
    for name in ["config", "keys", "tier local", "job files rpo", "audit"] {
        assert_line(&report, name, "pass", &[]);
    }

    // A key file the group and others can read.
    let key = daemon.key();
    let chmod = |mode| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode));
    chmod(0o644).unwrap();
    assert_fails(&daemon, "keys", &["mode 0644", "chmod 600"]);
    chmod(0o600).unwrap();
    assert_line(&validate(&daemon).1, "keys", "pass", &[]);

    // An S3 tier whose endpoint nobody listens on: the probe fails with the error, in
    // bounded time, and the keys cannot be checked against it.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let vault = format!(
        "[tiers.vault]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"drd\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\n[tiers.local]\n"
    );
    daemon.edit_config("[tiers.local]\n", &vault);
    assert_fails(
        &daemon,
        "tier vault",
        &["s3://drd/", "not usable", "127.0.0.1"],
    );
    assert_line(
        &validate(&daemon).1,
        "keys",
        "warn",
        &["could not check tier vault"],
    );
    daemon.edit_config(&vault, "[tiers.local]\n");

    // The config file edited since it was loaded: valid but not in force warns; one that
    // no longer loads fails, since a restart would refuse it.
    let original = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        original.replace("rpo = \"1h\"", "rpo = \"2h\""),
    )
    .unwrap();
    assert_line(&validate(&daemon).1, "config", "warn", &["drctl reload"]);
    std::fs::write(
        &daemon.config,
        original.replace("rpo = \"1h\"", "rpo = \"soon\""),
    )
    .unwrap();
    assert_fails(
        &daemon,
        "config",
        &["no longer loads", "soon", "drd check-config"],
    );
    std::fs::write(&daemon.config, &original).unwrap();
    assert_line(&validate(&daemon).1, "config", "pass", &[]);

    // Two hours later on the daemon's clock, the one-hour RPO is missed.
    daemon.restart(&[("DRD_TEST_CLOCK_OFFSET", "2h")]);
    assert_fails(
        &daemon,
        "job files rpo",
        &["over its rpo of 1h", "drctl backup --job files"],
    );
    daemon.backup_now("files");
    assert_line(&validate(&daemon).1, "job files rpo", "pass", &[]);

    // Someone with write access to the catalog rewrites an audit entry.
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET detail = 'nothing happened' WHERE id = 2;",
    )
    .unwrap();
    drop(conn);
    assert_fails(&daemon, "audit", &["chain broken at entry 2", "edited"]);
}

#[test]
fn a_docker_source_needs_the_engine_and_the_line_names_who() {
    let mut daemon = backup_daemon(
        "[jobs.containers]\ntiers = [\"local\"]\n\
         sources = [{ kind = \"docker\", containers = [\"db\"] }]\n",
    );
    // An engine address where nothing answers: a stopped or missing dockerd.
    let nowhere = format!(
        "unix://{}",
        daemon.dir.path().join("no-docker.sock").display()
    );
    daemon.restart(&[("DOCKER_HOST", &nowhere)]);
    assert_fails(
        &daemon,
        "docker",
        &[
            "does not answer",
            "no-docker.sock",
            "needed by job containers",
        ],
    );
}
