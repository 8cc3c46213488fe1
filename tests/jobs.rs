//! Jobs through the real daemon: `drctl jobs`, a run missed while drd was down caught
//! up once at start, a failing `before` hook skipping the run, and the six-jobs
//! example accepted by `drd check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use drd_integration_tests::{
    backup_daemon, check_config, copy_from_workspace, eventually, generate_key, open_tempdir, text,
    Daemon,
};

/// Runs recorded in the catalog: (job, trigger, outcome), oldest first.
fn runs(daemon: &Daemon) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let mut stmt = conn
        .prepare("SELECT job, trigger, outcome FROM runs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn job<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {list:#}"))
}

/// The scheduler worker's status once its first pass is done (it then names the next
/// run; before, it says "starting").
fn scheduler_detail_after_first_pass(daemon: &Daemon) -> String {
    let mut detail = String::new();
    eventually("the scheduler's first pass", || {
        let status = daemon.drctl_json(&["status"]);
        detail = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "scheduler")
            .and_then(|w| w["detail"].as_str())
            .unwrap_or_default()
            .to_owned();
        detail.contains("next: ")
    });
    detail
}

#[test]
fn a_run_missed_while_drd_was_down_is_caught_up_once_at_start() {
    let started_ms = drd_proto::text::now_ms();
    let mut daemon = backup_daemon(
        "[jobs.db]\ntiers = [\"local\"]\nschedule = \"hourly\"\nrpo = \"2h\"\n\
         sources = [{ kind = \"path\", path = \"{dir}/data\" }]\n",
    );
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/f"), "v1").unwrap();
    let backup = daemon.drctl_json(&["backup", "--job", "db"]);

    let list = daemon.drctl_json(&["jobs"]);
    let db = job(&list, "db");
    assert_eq!(db["schedule"], "hourly");
    assert_eq!(db["last_success"]["trigger"], "manual");
    assert_eq!(db["last_success"]["snapshot"], backup["snapshot"]["id"]);
    assert!(db["last_failure"].is_null());
    assert_eq!(db["behind_rpo"], false);
    assert_eq!(db["rpo_target_ms"], 7_200_000);
    // Next run: the top of the next hour plus a jitter of at most 2% of an hour. drd
    // planned it at some moment between the start and now, so when the test crosses the
    // top of an hour either of the two hours is right.
    let hour_after = |ms: i64| (ms / 3_600_000 + 1) * 3_600_000;
    let next = db["next_run_unix_ms"].as_i64().unwrap();
    let (first, last) = (
        hour_after(started_ms),
        hour_after(drd_proto::text::now_ms()),
    );
    assert!(
        (first..=last + 72_000).contains(&next),
        "next run {next} vs the top of the hour after the start {first} (or after now {last})"
    );
    let status = daemon.drctl_json(&["status"]);
    let scheduler = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "scheduler")
        .unwrap_or_else(|| panic!("no scheduler in {status:#}"));
    assert!(
        scheduler["detail"]
            .as_str()
            .unwrap()
            .starts_with("next: db at "),
        "{scheduler:#}"
    );

    // drd comes back "three hours later": three hourly slots were missed, one
    // catch-up run makes up for them.
    daemon.restart(&[("DRD_TEST_CLOCK_OFFSET", "3h")]);
    eventually("the catch-up run", || {
        runs(&daemon)
            .iter()
            .any(|r| r.1 == "catch-up" && r.2 == "ok")
    });
    // The scheduler's first pass, which plans and runs catch-ups, is over once it
    // names its next run; no pass after the first catches up.
    let detail = scheduler_detail_after_first_pass(&daemon);
    assert!(detail.contains("; next: db at "), "{detail}");
    let catch_ups = runs(&daemon).iter().filter(|r| r.1 == "catch-up").count();
    assert_eq!(catch_ups, 1, "{:?}", runs(&daemon));
    let list = daemon.drctl_json(&["jobs"]);
    assert_eq!(job(&list, "db")["last_success"]["trigger"], "catch-up");

    // Started again with no more time passed: nothing was missed, nothing runs.
    daemon.restart(&[("DRD_TEST_CLOCK_OFFSET", "3h")]);
    let detail = scheduler_detail_after_first_pass(&daemon);
    assert!(detail.starts_with("next: db at "), "ran nothing: {detail}");
    let catch_ups = runs(&daemon).iter().filter(|r| r.1 == "catch-up").count();
    assert_eq!(catch_ups, 1, "{:?}", runs(&daemon));
}

#[test]
fn a_failing_before_hook_skips_the_run_and_drctl_jobs_says_why() {
    let job_toml = |hook: &str| {
        format!(
            "[jobs.app]\ntiers = [\"local\"]\nrpo = \"1h\"\n\
             sources = [{{ kind = \"path\", path = \"{{dir}}/data\" }}]\n\
             before = [{{ run = [\"sh\", \"-c\", \"{hook}\"], timeout = \"10s\" }}]\n\
             after = [{{ run = [\"sh\", \"-c\", \"echo $DRD_OUTCOME $DRD_SNAPSHOT > {{dir}}/after\"] }}]\n"
        )
    };
    let daemon = backup_daemon(&job_toml("echo app will not quiesce >&2; exit 4"));
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/f"), "x").unwrap();

    let out = daemon.drctl(&["backup", "--job", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job app was skipped: before[0] hook sh: exited with status 4")
            && stderr.contains("app will not quiesce"),
        "{stderr}"
    );
    assert!(
        !daemon.dir.path().join("after").exists(),
        "no backup, no after hooks"
    );
    let list = daemon.drctl_json(&["backups"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "no snapshot: {list:#}");

    // `drctl jobs`: the failure and its reason; behind RPO (no good snapshot), exit 1.
    let out = daemon.drctl(&["jobs", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = job(&list, "app");
    assert_eq!(app["last_failure"]["outcome"], "skipped");
    assert_eq!(app["last_failure"]["trigger"], "manual");
    assert!(app["last_failure"]["error"]
        .as_str()
        .unwrap()
        .contains("app will not quiesce"));
    assert!(app["last_success"].is_null());
    assert_eq!(app["behind_rpo"], true);
    assert!(app["rpo_now_ms"].is_null());
    let out = daemon.drctl(&["jobs"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("BEHIND RPO"), "{shown}");
    assert!(
        shown.contains("app: skipped at ") && shown.contains("app will not quiesce"),
        "{shown}"
    );

    // Fixed hook, reload: the run goes through, the after hook sees it, RPO is met.
    daemon.edit_config("echo app will not quiesce >&2; exit 4", "true");
    let backup = daemon.drctl_json(&["backup", "--job", "app"]);
    let id = backup["snapshot"]["id"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(daemon.dir.path().join("after")).unwrap(),
        format!("ok {id}\n")
    );
    let out = daemon.drctl(&["jobs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = job(&list, "app");
    assert_eq!(app["last_success"]["snapshot"], id);
    assert_eq!(app["last_failure"]["outcome"], "skipped", "still shown");
    assert_eq!(app["behind_rpo"], false);
}

#[test]
fn the_six_jobs_example_passes_check_config() {
    // A copy, with the demo key made private as the quickstart's command does (git
    // checks it out 0644, and drd refuses a key file others can read).
    let dir = open_tempdir();
    copy_from_workspace(
        dir.path(),
        &["examples/six-jobs.toml", "examples/quickstart.key"],
    );
    let examples = dir.path().join("examples");
    std::fs::set_permissions(
        examples.join("quickstart.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = check_config(&examples.join("six-jobs.toml"));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn bad_schedules_retention_and_hooks_are_named_by_check_config() {
    let dir = open_tempdir();
    let key = dir.path().join("k");
    generate_key(&key);
    let config = dir.path().join("drd.toml");
    std::fs::write(
        &config,
        format!(
            "[keys]\nfiles = [\"{}\"]\n[tiers.local]\nkind = \"dir\"\npath = \"repo\"\n\
             [jobs.a]\ntiers = [\"local\"]\nsources = [{{ kind = \"path\", path = \"/etc\" }}]\n\
             schedule = \"every tuesday\"\nretention_days = 7\n\
             retention = {{ keep_within = \"3d\" }}\n\
             before = [{{ run = [], timeout = \"1m\" }}]\n",
            key.display()
        ),
    )
    .unwrap();
    let out = check_config(&config);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    for field in [
        "jobs.a.schedule",
        "jobs.a.retention_days",
        "jobs.a.before[0]",
    ] {
        assert!(said.contains(field), "{field} not named in: {said}");
    }
    assert!(said.contains("5-field cron expression"), "{said}");
}
