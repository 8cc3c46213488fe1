//! `drd check-config`: every problem with its field and line, exit 64; 0 when valid.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use drd_integration_tests::{
    check_config, copy_from_workspace, drd, generate_key, open_tempdir, os, text,
};

/// `drd check-config` on a file `drd.toml` holding `config`: exit code, stdout, stderr.
fn check(config: &str) -> (Option<i32>, String, String) {
    let dir = open_tempdir();
    let path = dir.path().join("drd.toml");
    std::fs::write(&path, config).unwrap();
    let out = check_config(&path);
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

/// A copy of `examples/` (config and key, as a fresh clone has them: mode 0644) and
/// a `docs` folder beside it, as in the repository.
fn examples_copy() -> tempfile::TempDir {
    let dir = open_tempdir();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let files = [
        "examples/quickstart.toml",
        "examples/quickstart.key",
        "examples/six-jobs.toml",
    ];
    copy_from_workspace(dir.path(), &files);
    for file in files {
        let mode = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(dir.path().join(file), mode).unwrap();
    }
    dir
}

#[test]
fn the_example_configs_pass_once_the_key_is_private() {
    // packaging/drd.toml names the drd group, which only exists where the sysusers
    // snippet ran: .ci/run creates it and checks that config there.
    let dir = examples_copy();
    let examples = dir.path().join("examples");
    let key = examples.join("quickstart.key");
    // git checks the key out 0644; the quickstart's command runs chmod 600 first.
    let out = check_config(&examples.join("quickstart.toml"));
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "keys.files[0]: key file {} has mode 0644",
            key.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    for config in ["quickstart.toml", "six-jobs.toml"] {
        let out = check_config(&examples.join(config));
        assert!(out.status.success(), "{config}: {}", text(&out));
    }
}

#[test]
fn an_offline_command_refuses_a_key_file_others_can_read() {
    let dir = open_tempdir();
    let key = dir.path().join("main.key");
    generate_key(&key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let repo = dir.path().join("repo");
    for command in ["snapshots", "verify"] {
        let out = drd(&[
            os(command),
            os("--repo"),
            repo.as_os_str(),
            os("--key"),
            key.as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("has mode 0640"), "{stderr}");
        assert!(
            stderr.contains(&format!("chmod 600 {}", key.display())),
            "{stderr}"
        );
    }
}

#[test]
fn an_unknown_top_level_table_is_named_as_such() {
    let (code, _, stderr) = check(
        "[daemon]\nstate_dir = \"state\"\n\n[tiers.local]\nkind = \"dir\"\npath = \"repo\"\n\n\
         [jobs.files]\ntiers = [\"local\"]\nsources = []\n\n[bogus]\nx = 1\n",
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("drd.toml:12: top level: unknown field `bogus`"),
        "{stderr}"
    );
    assert!(!stderr.contains("jobs.files"), "{stderr}");
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
    let out = check_config(Path::new("/nonexistent/drd.toml"));
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent/drd.toml")
    );
}

#[test]
fn a_key_file_made_readable_is_refused_by_reload_and_at_start() {
    let mut daemon = drd_integration_tests::backup_daemon(
        "[jobs.files]\ntiers = [\"local\"]\nsources = [{ kind = \"path\", path = \"{dir}\" }]\n",
    );
    let key = daemon.key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let chmod = format!("chmod 600 {}", key.display());

    let out = daemon.drctl(&["reload"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&chmod),
        "{}",
        text(&out)
    );
    // The config in force stays, and so does the daemon.
    assert!(daemon.drctl(&["status"]).status.success());

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit(std::time::Duration::from_secs(10));
    let out = drd(&[os("run"), os("--config"), daemon.config.as_os_str()]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&chmod),
        "{}",
        text(&out)
    );
}
