//! Prometheus metrics through the real daemon and a real Prometheus: Debian's
//! `prometheus`, started here on loopback, scrapes drd's `/metrics` every second and
//! answers queries for `drd_build_info` and a job's last success; `promtool check
//! metrics` passes on the served metrics and on the textfile; `promtool check rules`
//! passes on the shipped rules; drd stops on SIGTERM while Prometheus keeps a
//! connection open; and check-config refuses a non-loopback listen nobody opted into.
//!
//! Without `/usr/bin/prometheus` and `/usr/bin/promtool` (Debian's `prometheus`) the
//! tests skip, except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use drd_integration_tests::{
    backup_daemon, check_config, eventually_within, open_tempdir, real_part_missing, text,
    workspace_root, Daemon,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// True when Debian's prometheus (with promtool) is installed; else says why the
/// test does not run (and fails it under CI).
fn prometheus_installed() -> bool {
    let ok = Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists();
    if !ok {
        real_part_missing(
            "prometheus and promtool",
            "apt-get install prometheus; .ci/run installs it",
        );
    }
    ok
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = open_tempdir();
        let rules = workspace_root().join("packaging/prometheus/drd.rules.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: drd\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    /// The result vector of the instant query `query`, or `None` while Prometheus
    /// does not answer yet.
    fn query(&self, query: &str) -> Option<Vec<serde_json::Value>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .unwrap();
        let body = reqwest::blocking::get(url).ok()?.bytes().ok()?;
        let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
        assert_eq!(answer["status"], "success", "{answer:#}");
        answer["data"]["result"].as_array().cloned()
    }

    /// Waits up to 60 s until `query` has a series, and returns the first.
    fn first_series(&self, query: &str) -> serde_json::Value {
        let mut found = None;
        let log = &self.log;
        eventually_within(
            &format!("Prometheus to have {query} (its log: {})", log.display()),
            Duration::from_secs(60),
            || {
                found = self.query(query).and_then(|r| r.first().cloned());
                found.is_some()
            },
        );
        found.unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool ARGS` with `stdin` on its standard input.
fn promtool(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `promtool check metrics` on `metrics`: passes with no lint finding.
fn assert_promtool_likes(what: &str, metrics: &str) {
    let out = promtool(&["check", "metrics"], metrics.as_bytes());
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on {what}: {}\n{metrics}",
        text(&out)
    );
}

/// A drd with job `files` (with an RPO) on the `local` tier, serving `/metrics` on a
/// free loopback port and writing the textfile `DIR/prom/drd.prom` every second;
/// returns it with the metrics address.
fn metrics_daemon() -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon = backup_daemon(&format!(
        "[jobs.files]\ntiers = [\"local\"]\nrpo = \"1h\"\n\
         sources = [{{ kind = \"path\", path = \"{{dir}}/data\" }}]\n\
         [metrics]\nlisten = \"{addr}\"\ntextfile = \"{{dir}}/prom/drd.prom\"\n\
         interval = \"1s\"\n"
    ));
    (daemon, addr)
}

#[test]
fn a_real_prometheus_scrapes_drd_and_promtool_passes_its_metrics_and_textfile() {
    if !prometheus_installed() {
        return;
    }
    let (mut daemon, addr) = metrics_daemon();
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "some data").unwrap();
    std::fs::create_dir_all(daemon.dir.path().join("prom")).unwrap();
    daemon.backup_now("files");
    let jobs = daemon.drctl_json(&["jobs"]);
    let ended_ms = jobs[0]["last_success"]["ended_unix_ms"].as_i64().unwrap();

    let prometheus = Prometheus::start(&addr);
    let build = prometheus.first_series("drd_build_info");
    assert_eq!(
        build["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build:#}"
    );
    assert_eq!(build["metric"]["job"], "drd", "the scrape's own job label");
    assert_eq!(build["value"][1], "1");
    let last =
        prometheus.first_series("drd_job_last_success_timestamp_seconds{backup_job=\"files\"}");
    let seconds: f64 = last["value"][1].as_str().unwrap().parse().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let expected = ended_ms as f64 / 1000.0;
    assert!(
        (seconds - expected).abs() < 0.002,
        "Prometheus has {seconds}, drctl jobs says {expected}"
    );
    let rpo = prometheus.first_series("drd_job_rpo_target_seconds{backup_job=\"files\"}");
    assert_eq!(rpo["value"][1], "3600");
    // The jobs request this test made is counted.
    let counted =
        prometheus.first_series("drd_control_requests_total{request=\"jobs\",result=\"ok\"}");
    assert_eq!(counted["value"][1], "1", "{counted:#}");

    // promtool on what drd serves and on the textfile it writes.
    let served = reqwest::blocking::get(format!("http://{addr}/metrics")).unwrap();
    assert_eq!(
        served.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let served = served.text().unwrap();
    assert!(
        served.contains("drd_job_last_added_bytes{backup_job=\"files\"}"),
        "{served}"
    );
    assert_promtool_likes("/metrics", &served);
    let textfile = daemon.dir.path().join("prom/drd.prom");
    eventually_within("the textfile", Duration::from_secs(10), || {
        textfile.exists()
    });
    let written = std::fs::read_to_string(&textfile).unwrap();
    assert!(written.contains("drd_build_info{version="), "{written}");
    assert_promtool_likes("the textfile", &written);
    let not_found = reqwest::blocking::get(format!("http://{addr}/")).unwrap();
    assert_eq!(not_found.status(), 404);

    // A reload cannot move the listener: it says so, and the old address serves on.
    let moved = format!("127.0.0.1:{}", free_port());
    daemon.edit_config(
        &format!("listen = \"{addr}\""),
        &format!("listen = \"{moved}\""),
    );
    let reload = daemon.wait_for_audit_where("the reload", Duration::from_secs(10), |r| {
        r.1 == "reload config" && r.2 == "ok"
    });
    assert!(
        reload
            .3
            .contains("metrics.listen take effect at the next start"),
        "{reload:?}"
    );
    assert!(reqwest::blocking::get(format!("http://{addr}/metrics")).is_ok());

    // SIGTERM stops drd, and its listener, while Prometheus keeps scraping.
    daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(
        reqwest::blocking::get(format!("http://{addr}/metrics")).is_err(),
        "the metrics port still answers after drd stopped"
    );
    eventually_within(
        "Prometheus to see drd down",
        Duration::from_secs(30),
        || {
            prometheus
                .query("up{job=\"drd\"} == 0")
                .is_some_and(|r| !r.is_empty())
        },
    );
}

#[test]
fn promtool_passes_the_shipped_alerting_rules() {
    if !prometheus_installed() {
        return;
    }
    let rules = workspace_root().join("packaging/prometheus/drd.rules.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

#[test]
fn check_config_refuses_a_non_loopback_listen_without_the_opt_in() {
    let dir = open_tempdir();
    let config = dir.path().join("drd.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"0.0.0.0:9477\"\n").unwrap();
    let out = check_config(&config);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drd.toml:2"), "{stderr}");
    assert!(stderr.contains("metrics.listen"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("allow_non_loopback = true"), "{stderr}");

    std::fs::write(
        &config,
        "[metrics]\nlisten = \"0.0.0.0:9477\"\nallow_non_loopback = true\n",
    )
    .unwrap();
    let out = check_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
