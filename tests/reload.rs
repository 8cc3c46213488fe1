//! Reloading the config by SIGHUP and by `drctl reload`: a good config takes effect, a
//! bad one is refused and the old one stays in force.
#![allow(clippy::unwrap_used)]

use drd_integration_tests::{audit_rows, eventually, text, Daemon};
use nix::sys::signal::Signal;

#[test]
fn sighup_with_a_good_config_reloads_it() {
    let daemon = Daemon::start("");
    daemon.rewrite_config("log_level = \"debug\"");
    daemon.signal(Signal::SIGHUP);
    eventually("reload audit entry", || {
        audit_rows(&daemon.catalog())
            .iter()
            .any(|r| r.0 == "signal SIGHUP" && r.1 == "reload config" && r.2 == "ok")
    });
    assert!(daemon.drctl(&["status"]).status.success());
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one() {
    let daemon = Daemon::start("");
    std::fs::write(&daemon.config, "[daemon]\nsocket = 42\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    eventually("refused reload audit entry", || {
        audit_rows(&daemon.catalog())
            .iter()
            .any(|r| r.0 == "signal SIGHUP" && r.1 == "reload config" && r.2 == "refused")
    });
    let rows = audit_rows(&daemon.catalog());
    let refused = rows.iter().find(|r| r.2 == "refused").unwrap();
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
