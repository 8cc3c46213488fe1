//! The `docker` backup source against the real Docker engine: containers chosen by
//! name or label, their inspect documents and volumes stored and restored, and the
//! container paused or stopped during the backup and always running again after,
//! even when the backup fails or drd is killed while it holds the container.
//!
//! Each test skips with a message when no engine answers (and fails instead under
//! `DRD_REQUIRE_DOCKER=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use drd_integration_tests::docker::{self, Container};
use drd_integration_tests::gate::{finish, gate_source, Gate, Held};
use drd_integration_tests::{audit_rows, backup_daemon, eventually, restore_args, text, Daemon};

/// A job `app` with `sources` (TOML array items, `{dir}` is the daemon's folder).
fn job(sources: &[String]) -> String {
    format!(
        "[jobs.app]\ntiers = [\"local\"]\nsources = [\n{}\n]\n",
        sources.join(",\n")
    )
}

/// A command source named `state` that records the container's status when the
/// backup reads it.
fn state_probe(container: &Container) -> String {
    format!(
        "{{ kind = \"command\", name = \"state\", run = [\"docker\", \"inspect\", \"-f\", \
         \"{{{{.State.Status}}}}\", \"{}\"] }}",
        container.name()
    )
}

/// Restores the latest snapshot into a new folder under the daemon's and returns it.
fn restore_latest(daemon: &Daemon) -> std::path::PathBuf {
    let target = daemon.dir.path().join("restored");
    daemon.drctl_json(&restore_args("latest", &target));
    target
}

fn under(target: &Path, host_path: &Path) -> std::path::PathBuf {
    target.join(host_path.strip_prefix("/").unwrap())
}

/// Waits until the audit log has an `ok` entry `action` whose detail names `container`.
fn audited(daemon: &Daemon, action: &str, container: &Container) {
    let what = format!("audit: {action} {}", container.name());
    daemon.wait_for_audit_where(&what, Duration::from_secs(10), |(_, a, outcome, detail)| {
        a == action && outcome == "ok" && detail.contains(container.name())
    });
}

/// How long a test waits for a backup before it calls it a hang.
const HANG: Duration = Duration::from_secs(120);

fn held_record(daemon: &Daemon) -> std::path::PathBuf {
    daemon.dir.path().join("state/docker-held.json")
}

#[test]
fn the_test_image_runs_with_a_volume_and_a_bind_mount() {
    if !docker::require_docker() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("conf"), "hello\n").unwrap();
    let web = Container::new("img")
        .volume("data", "/data")
        .bind(host.path(), "/conf")
        .start();
    web.exec(&["sh", "-c", "echo stored > /data/file"]);
    assert_eq!(web.exec(&["cat", "/conf/conf"]), "hello");
    let on_host = std::fs::read_to_string(web.volume_path("data").join("file")).unwrap();
    assert_eq!(on_host, "stored\n");
    web.stop();
    web.wait_status("exited", Duration::from_secs(5));
    web.start();
    web.wait_status("running", Duration::from_secs(10));
    let volume = web.volume_name("data");
    drop(web);
    assert!(!docker::docker(&["volume", "inspect", &volume])
        .status
        .success());
}

#[test]
fn inspect_volume_and_bind_mount_round_trip_through_drctl() {
    if !docker::require_docker() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("nested")).unwrap();
    std::fs::write(host.path().join("nested/app.conf"), "port = 8080\n").unwrap();
    let case = docker::unique_name("label");
    let web = Container::new("web")
        .volume("data", "/data")
        .bind(host.path(), "/etc/app")
        .label("drd.test.case", &case)
        .start();
    web.exec(&[
        "sh",
        "-c",
        "echo 'row 1' > /data/table && mkdir /data/sub && echo x > /data/sub/y",
    ]);
    let daemon = backup_daemon(&job(&[format!(
        "{{ kind = \"docker\", labels = [\"drd.test.case={case}\"] }}"
    )]));

    let report = daemon.drctl_json(&["backup", "--job", "app"]);
    assert_eq!(report["snapshot"]["job"], "app", "{report}");
    assert_eq!(web.status(), "running");

    let target = restore_latest(&daemon);
    let inspect: serde_json::Value = serde_json::from_slice(
        &std::fs::read(target.join(format!("docker/{}/inspect.json", web.name()))).unwrap(),
    )
    .unwrap();
    assert_eq!(inspect["Id"], web.id());
    assert_eq!(inspect["Name"], format!("/{}", web.name()));
    assert_eq!(inspect["Config"]["Labels"]["drd.test.case"], case.as_str());
    let mounts = inspect["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2, "{mounts:?}");

    let volume = under(&target, &web.volume_path("data"));
    assert_eq!(
        std::fs::read_to_string(volume.join("table")).unwrap(),
        "row 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("sub/y")).unwrap(),
        "x\n"
    );
    let bind = under(&target, host.path());
    assert_eq!(
        std::fs::read_to_string(bind.join("nested/app.conf")).unwrap(),
        "port = 8080\n"
    );
}

#[test]
fn pause_holds_the_container_while_every_other_source_is_read() {
    if !docker::require_docker() {
        return;
    }
    let web = Container::new("paused").volume("data", "/data").start();
    web.exec(&["sh", "-c", "echo v1 > /data/v"]);
    let started_at = web.inspect()["State"]["StartedAt"].clone();
    // The probe is listed first: docker sources are held before any other is read.
    let daemon = backup_daemon(&job(&[
        state_probe(&web),
        format!(
            "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"pause\" }}",
            web.name()
        ),
    ]));
    daemon.drctl_json(&["backup", "--job", "app"]);
    assert_eq!(
        web.status(),
        "running",
        "the container must run again after"
    );
    assert_eq!(
        web.inspect()["State"]["StartedAt"],
        started_at,
        "pause must not restart it"
    );
    assert!(
        !held_record(&daemon).exists(),
        "the hold record must be gone"
    );
    audited(&daemon, "pause container", &web);
    audited(&daemon, "unpause container", &web);

    let target = restore_latest(&daemon);
    assert_eq!(
        std::fs::read_to_string(target.join("commands/state"))
            .unwrap()
            .trim(),
        "paused",
        "the container was not paused while the backup ran"
    );
    // The stored inspect is the container as it normally runs, not the paused state.
    let inspect: serde_json::Value = serde_json::from_slice(
        &std::fs::read(target.join(format!("docker/{}/inspect.json", web.name()))).unwrap(),
    )
    .unwrap();
    assert_eq!(inspect["State"]["Status"], "running");
    let volume = under(&target, &web.volume_path("data"));
    assert_eq!(std::fs::read_to_string(volume.join("v")).unwrap(), "v1\n");
}

#[test]
fn stop_stops_the_container_during_the_backup_and_starts_it_after() {
    if !docker::require_docker() {
        return;
    }
    let web = Container::new("stopped")
        .volume("data", "/data")
        .restart("unless-stopped")
        .start();
    let started_at = web.inspect()["State"]["StartedAt"].clone();
    let daemon = backup_daemon(&job(&[
        format!(
            "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"stop\", stop_timeout = \"10s\" }}",
            web.name()
        ),
        state_probe(&web),
    ]));
    daemon.drctl_json(&["backup", "--job", "app"]);
    assert_eq!(
        web.status(),
        "running",
        "the container must run again after"
    );
    assert_ne!(
        web.inspect()["State"]["StartedAt"],
        started_at,
        "the container was not restarted"
    );
    audited(&daemon, "stop container", &web);
    audited(&daemon, "start container", &web);
    let target = restore_latest(&daemon);
    assert_eq!(
        std::fs::read_to_string(target.join("commands/state"))
            .unwrap()
            .trim(),
        "exited",
        "the container was not stopped while the backup ran"
    );
}

#[test]
fn a_failed_backup_still_brings_the_container_back() {
    if !docker::require_docker() {
        return;
    }
    let web = Container::new("fails").start();
    let other = Container::new("fails-stop").start();
    let daemon = backup_daemon(&job(&[
        format!(
            "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"pause\" }}",
            web.name()
        ),
        format!(
            "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"stop\", stop_timeout = \"5s\" }}",
            other.name()
        ),
        "{ kind = \"command\", name = \"broken\", run = [\"sh\", \"-c\", \"echo half; exit 3\"] }"
            .to_owned(),
    ]));
    let out = daemon.drctl(&["backup", "--job", "app"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("exited with status 3"),
        "{}",
        text(&out)
    );
    assert_eq!(web.status(), "running");
    assert_eq!(other.status(), "running");
    audited(&daemon, "unpause container", &web);
    audited(&daemon, "start container", &other);
    assert!(!held_record(&daemon).exists());
    let list = daemon.drctl_json(&["backups"]);
    assert!(
        list.as_array().unwrap().is_empty(),
        "a failed backup stored a snapshot"
    );
}

#[test]
fn a_missing_container_or_an_unmatched_label_fails_the_backup_naming_it() {
    if !docker::require_docker() {
        return;
    }
    let web = Container::new("present").start();
    let missing = docker::unique_name("missing");
    let daemon = backup_daemon(&job(&[format!(
        "{{ kind = \"docker\", containers = [\"{}\", \"{missing}\"], consistency = \"pause\" }}",
        web.name()
    )]));
    let out = daemon.drctl(&["backup", "--job", "app"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&missing), "{}", text(&out));
    assert_eq!(web.status(), "running", "nothing may stay paused");

    let label = docker::unique_name("nobody");
    let daemon = backup_daemon(&job(&[format!(
        "{{ kind = \"docker\", labels = [\"drd.test.case={label}\"] }}"
    )]));
    let out = daemon.drctl(&["backup", "--job", "app"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&label), "{}", text(&out));
}

/// A running container `name`, paused by a backup of job `app` that then waits on its
/// gated source (released by the returned `Held`); also the drctl running it.
fn held_by_a_waiting_backup(name: &str) -> (Container, Daemon, std::process::Child, Held) {
    let web = Container::new(name).start();
    let daemon = backup_daemon(&job(&[
        format!(
            "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"pause\" }}",
            web.name()
        ),
        // Keeps the backup busy (and the container held) until the test ends drd.
        gate_source("slow", "slow.fifo"),
    ]));
    let gate = Gate::new(&daemon.dir.path().join("slow.fifo"));
    let backup = daemon.spawn_drctl(&["backup", "--job", "app"]);
    let slow = gate.wait_reader();
    assert_eq!(web.status(), "paused", "the backup did not pause it");
    (web, daemon, backup, slow)
}

#[test]
fn a_drd_killed_while_holding_a_container_resumes_it_at_the_next_start() {
    if !docker::require_docker() {
        return;
    }
    let (web, mut daemon, mut backup, slow) = held_by_a_waiting_backup("killed");
    let record = std::fs::read_to_string(held_record(&daemon)).unwrap();
    assert!(record.contains(web.id()), "{record}");

    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    let code = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(code, None, "drd was not killed by the signal");
    let _ = backup.wait();
    // The source's `cat`, left behind by the dead drd, ends.
    slow.release(b"");
    assert_eq!(
        web.status(),
        "paused",
        "nothing but the next start may resume it"
    );

    daemon.spawn(&[]);
    daemon.wait_ready();
    eventually("the next start to resume the container", || {
        web.status() == "running"
    });
    eventually("the record to be removed", || {
        !held_record(&daemon).exists()
    });
    // drd audits the resume after it has done it (and removed the record).
    audited(&daemon, "resume container", &web);
    let rows = audit_rows(&daemon.catalog());
    let resumed = rows
        .iter()
        .find(|(_, action, _, _)| action == "resume container")
        .unwrap_or_else(|| panic!("no resume in the audit log: {rows:?}"));
    assert_eq!(resumed.2, "ok");
    assert!(
        resumed.3.contains(&format!(
            "resumed container {} left paused by an interrupted backup",
            web.name()
        )),
        "{resumed:?}"
    );
}

#[test]
fn a_drd_stopped_while_holding_a_container_brings_it_back_and_audits_it() {
    if !docker::require_docker() {
        return;
    }
    let (web, mut daemon, mut backup, slow) = held_by_a_waiting_backup("sigterm");

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    slow.release(b"");
    let code = daemon.wait_exit(HANG);
    assert_eq!(code, Some(0), "drd did not stop cleanly");
    let _ = backup.wait();
    assert_eq!(
        web.status(),
        "running",
        "the cancelled backup left it paused"
    );
    assert!(
        !held_record(&daemon).exists(),
        "the hold record must be gone"
    );
    // Both ends of the hold are in the audit log, though the release came while drd
    // was stopping.
    let rows = audit_rows(&daemon.catalog());
    for action in ["pause container", "unpause container"] {
        assert!(
            rows.iter().any(|(_, a, outcome, detail)| a == action
                && outcome == "ok"
                && detail.contains(web.name())),
            "no {action} in the audit log: {rows:?}"
        );
    }
}

#[test]
fn an_engine_that_does_not_answer_fails_the_backup_and_keeps_the_record() {
    // No engine needed: drd is pointed at a socket that nobody serves.
    let mut daemon = backup_daemon(&job(&[
        "{ kind = \"docker\", containers = [\"web\"], consistency = \"pause\" }".to_owned(),
    ]));
    // What a drd killed mid-backup leaves behind.
    std::fs::write(
        held_record(&daemon),
        r#"{"containers":[{"id":"0123abcd","name":"web","action":"paused","since":"2026-01-01T00:00:00Z","pid":1}]}"#,
    )
    .unwrap();
    daemon.kill();
    let nobody = format!("unix://{}", daemon.dir.path().join("nobody.sock").display());
    daemon.spawn(&[("DOCKER_HOST", nobody.as_str())]);
    daemon.wait_ready();

    let out = daemon.drctl(&["backup", "--job", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not answer"),
        "the error must say the engine does not answer: {}",
        text(&out)
    );
    daemon.wait_for_audit_where(
        "the failed resume to be audited",
        Duration::from_secs(10),
        |(_, action, outcome, detail)| {
            action == "resume container"
                && outcome == "failed"
                && detail.contains("container web left paused by an interrupted backup")
        },
    );
    assert!(
        held_record(&daemon).exists(),
        "the record must stay for the next start"
    );
}

#[test]
fn a_backup_resumes_containers_the_start_could_not() {
    if !docker::require_docker() {
        return;
    }
    let left = Container::new("left").start();
    let web = Container::new("next").start();
    let daemon = backup_daemon(&job(&[format!(
        "{{ kind = \"docker\", containers = [\"{}\"] }}",
        web.name()
    )]));
    // As if an earlier drd had paused `left`, and this one's start had found no engine.
    left.pause();
    std::fs::write(
        held_record(&daemon),
        format!(
            r#"{{"containers":[{{"id":"{}","name":"{}","action":"paused","since":"2026-01-01T00:00:00Z","pid":1}}]}}"#,
            left.id(),
            left.name()
        ),
    )
    .unwrap();
    daemon.drctl_json(&["backup", "--job", "app"]);
    assert_eq!(left.status(), "running", "the backup did not resume it");
    assert!(!held_record(&daemon).exists());
    audited(&daemon, "resume container", &left);
}

#[test]
fn two_backups_holding_one_container_bring_it_back_after_the_last() {
    if !docker::require_docker() {
        return;
    }
    let web = Container::new("shared").start();
    let hold = format!(
        "{{ kind = \"docker\", containers = [\"{}\"], consistency = \"pause\" }}",
        web.name()
    );
    // Each slow job holds the container, then waits at its own gate: the container is
    // held before any other source is read, so a gate's reader means "held".
    let job = |name: &str| {
        format!(
            "[jobs.{name}]\ntiers = [\"local\"]\nsources = [{hold}, {}]\n",
            gate_source("wait", &format!("{name}.fifo"))
        )
    };
    let daemon = backup_daemon(&format!(
        "{}{}[jobs.quick]\ntiers = [\"local\"]\nsources = [{hold}]\n",
        job("first"),
        job("second")
    ));
    let gate = |name: &str| Gate::new(&daemon.dir.path().join(format!("{name}.fifo")));
    let (first_gate, second_gate) = (gate("first"), gate("second"));

    let first = daemon.spawn_drctl(&["backup", "--job", "first"]);
    let first_held = first_gate.wait_reader();
    assert_eq!(web.status(), "paused", "the first backup did not pause it");
    // A backup that starts and ends while another holds the container leaves it held.
    daemon.drctl_json(&["backup", "--job", "quick"]);
    assert_eq!(web.status(), "paused", "the quick backup unpaused it early");
    // The first holder to finish leaves it held for the one still reading.
    let second = daemon.spawn_drctl(&["backup", "--job", "second"]);
    let second_held = second_gate.wait_reader();
    let end = |held: Held, backup| {
        held.release(b"");
        let out = finish(backup, HANG);
        assert!(out.status.success(), "{}", text(&out));
    };
    end(first_held, first);
    assert_eq!(web.status(), "paused", "the first backup unpaused it early");
    end(second_held, second);
    assert_eq!(web.status(), "running");
    assert!(!held_record(&daemon).exists());
}
