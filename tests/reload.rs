//! Reloading the config by SIGHUP and by `drctl reload`: a good config takes effect, a
//! bad one is refused and the old one stays in force.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use drd_integration_tests::gate::{finish, slow_job, Gate};
use drd_integration_tests::{backup_daemon, text, Daemon};
use nix::sys::signal::Signal;

#[test]
fn sighup_with_a_good_config_reloads_it() {
    // The change must be one the test can see: a job that was not there is then
    // there. (A log level cannot be seen: the helper forces RUST_LOG=debug.)
    let daemon = backup_daemon("");
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "one\n").unwrap();
    let out = daemon.drctl(&["backup", "--job", "added"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
    std::fs::write(
        &daemon.config,
        format!(
            "{}\n[jobs.added]\ntiers = [\"local\"]\nsources = [{{ kind = \"path\", path = \"{}\" }}]\n",
            std::fs::read_to_string(&daemon.config).unwrap(),
            data.display()
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_audit("signal SIGHUP", "reload config", "ok");
    let report = daemon.drctl_json(&["backup", "--job", "added"]);
    assert_eq!(report["files_new"], 1, "{report}");
}

#[test]
fn sighup_with_a_bad_config_during_a_backup_is_refused_and_the_backup_finishes() {
    let daemon = backup_daemon(&slow_job("slow", "dump.fifo"));
    let gate = Gate::new(&daemon.dir.path().join("dump.fifo"));
    let good = std::fs::read_to_string(&daemon.config).unwrap();
    let backup = daemon.spawn_drctl(&["backup", "--job", "slow", "--json"]);
    let held = gate.wait_reader();

    // The bad config would drop the job and move the tier: neither may happen.
    let elsewhere = daemon.dir.path().join("elsewhere");
    std::fs::write(
        &daemon.config,
        good.replace(
            &daemon.repo().display().to_string(),
            &elsewhere.display().to_string(),
        )
        .replace("[jobs.slow]", "[jobs.slow]\nbogus = 1"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let refused = daemon.wait_for_audit("signal SIGHUP", "reload config", "refused");
    assert!(refused.3.contains("bogus"), "{refused:?}");

    held.release(b"dump contents\n");
    let out = finish(backup, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["snapshot"]["tier"], "local", "{first}");

    // Still the old config: the job runs again, into the old tier, after the refusal.
    let held = {
        let backup = daemon.spawn_drctl(&["backup", "--job", "slow", "--json"]);
        (gate.wait_reader(), backup)
    };
    held.0.release(b"dump contents, later\n");
    let out = finish(held.1, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!elsewhere.exists(), "the refused config's tier was used");
    let list = daemon.drctl_json(&["backups", "--job", "slow"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one() {
    let daemon = Daemon::start("");
    std::fs::write(&daemon.config, "[daemon]\nsocket = 42\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let refused = daemon.wait_for_audit("signal SIGHUP", "reload config", "refused");
    assert!(refused.3.contains("daemon.socket"), "{refused:?}");
    // Still serving on the old socket, with the old config.
    let out = daemon.drctl(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(daemon.log().contains("config reload refused"));
}

#[test]
fn drctl_reload_sends_back_every_problem() {
    let daemon = Daemon::start("");
    std::fs::write(
        &daemon.config,
        "[daemon]\nmax_connections = 0\nlog_level = \"chatty\"\n",
    )
    .unwrap();
    let out = daemon.drctl(&["reload"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("drd.toml:2: daemon.max_connections"),
        "{stderr}"
    );
    assert!(stderr.contains("drd.toml:3: daemon.log_level"), "{stderr}");
    assert!(stderr.contains("unchanged"), "{stderr}");

    daemon.rewrite_config("");
    let out = daemon.drctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
}
