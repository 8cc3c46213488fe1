//! Authorization: peer credentials map to roles; a refusal is explained and audited.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use drd_integration_tests::{audit_rows, bins, text, Daemon};

/// A uid and gid that no one on the test machine uses.
const OTHER: u32 = 47_913;

/// Runs drctl as a non-root user: ourselves if we are not root, else `OTHER`.
fn drctl_as_unprivileged(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(&bins().drctl);
    cmd.arg("--socket").arg(daemon.socket()).args(args);
    if nix::unistd::geteuid().is_root() {
        cmd.uid(OTHER).gid(OTHER);
    }
    cmd.output().unwrap()
}

fn unprivileged_ids() -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        (OTHER, OTHER)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

#[test]
fn a_viewer_may_look_but_not_reload_and_the_refusal_is_audited() {
    let (uid, gid) = unprivileged_ids();
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\nviewer = {{ users = [{uid}] }}\noperator = {{ users = [1] }}"
    ));

    let out = drctl_as_unprivileged(&daemon, &["status"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = drctl_as_unprivileged(&daemon, &["reload"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied: reload needs operator"),
        "{stderr}"
    );

    let rows = audit_rows(&daemon.catalog());
    let refusal = rows
        .iter()
        .find(|r| r.1 == "request reload")
        .unwrap_or_else(|| panic!("no audit entry for the refusal: {rows:?}"));
    assert_eq!(refusal.2, "refused");
    assert!(
        refusal.0.starts_with(&format!("uid={uid} gid={gid} pid=")),
        "{refusal:?}"
    );
    assert!(refusal.3.contains("needs operator"), "{refusal:?}");
}

#[test]
fn a_peer_with_no_role_is_refused_even_status() {
    let (_, gid) = unprivileged_ids();
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\nviewer = {{ users = [1] }}"
    ));
    let out = drctl_as_unprivileged(&daemon, &["status"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("status needs viewer"));
}

#[test]
fn group_membership_grants_a_role() {
    let (_, gid) = unprivileged_ids();
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\noperator = {{ groups = [{gid}] }}"
    ));
    let out = drctl_as_unprivileged(&daemon, &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
}
