//! `drd check-config`: every problem with its field and line, exit 64; 0 when valid.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use drd_integration_tests::{bins, open_tempdir, text};

fn check(config: &str) -> (Option<i32>, String, String) {
    let dir = open_tempdir();
    let path = dir.path().join("drd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(&bins().drd)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_config_passes() {
    let (code, stdout, _) = check("[daemon]\nstate_dir = \"state\"\nlog_level = \"debug\"\n");
    assert_eq!(code, Some(0));
    assert!(stdout.contains(": ok"), "{stdout}");
}

#[test]
fn the_quickstart_config_passes() {
    // packaging/drd.toml names the drd group, which only exists where the sysusers
    // snippet ran: .ci/run creates it and checks that config there.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new(&bins().drd)
        .args(["check-config", "--config"])
        .arg(root.join("examples/quickstart.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_syntax_error_names_its_line() {
    let (code, _, stderr) = check("[daemon]\nstate_dir = \"/x\"\nsocket = \n");
    assert_eq!(code, Some(64));
    assert!(stderr.contains("drd.toml:3"), "{stderr}");
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let (code, _, stderr) = check("[daemon]\n\nstate_dri = \"/x\"\n");
    assert_eq!(code, Some(64));
    assert!(stderr.contains("drd.toml:3"), "{stderr}");
    assert!(stderr.contains("state_dri"), "{stderr}");
}

#[test]
fn a_wrong_type_is_named() {
    let (code, _, stderr) = check("[daemon]\nmax_connections = \"many\"\n");
    assert_eq!(code, Some(64));
    assert!(stderr.contains("drd.toml:2"), "{stderr}");
    assert!(stderr.contains("max_connections"), "{stderr}");
}

#[test]
fn every_semantic_problem_is_listed_with_field_and_line() {
    let long = "x".repeat(120);
    let (code, _, stderr) = check(&format!(
        "[daemon]\nsocket = \"/{long}.sock\"\nidle_timeout = \"0s\"\n\n[roles]\n\
         operator = {{ users = [\"nobody-drd-test\"], groups = [\"no-group-drd-test\"] }}\n"
    ));
    assert_eq!(code, Some(64));
    assert!(stderr.contains("4 problems"), "{stderr}");
    assert!(stderr.contains(":2: daemon.socket"), "{stderr}");
    assert!(stderr.contains(":3: daemon.idle_timeout"), "{stderr}");
    assert!(
        stderr.contains(":6: roles.operator.users[0]: no user named"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":6: roles.operator.groups[0]: no group named"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(&bins().drd)
        .args(["check-config", "--config", "/nonexistent/drd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent/drd.toml")
    );
}
