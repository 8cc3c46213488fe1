//! The audit log through drctl: listing, filtering, and catching a forged entry.
#![allow(clippy::unwrap_used)]

use drd_integration_tests::{text, wait_clock_past, Daemon};

#[test]
fn audit_lists_entries_and_filters_by_time() {
    let daemon = Daemon::start("");
    assert!(daemon.drctl(&["reload"]).status.success());
    let out = daemon.drctl(&["audit", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start daemon", "reload config"]);

    let out = daemon.drctl(&["audit", "--since", "1h"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reload config"));

    // Once the clock is more than a second past the last entry, "1s" finds none.
    let last = entries.last().unwrap()["unix_ms"].as_i64().unwrap();
    wait_clock_past(last + 1000);
    let out = daemon.drctl(&["audit", "--since", "1s", "--json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn audit_verify_passes_and_then_names_an_edited_entry() {
    let daemon = Daemon::start("");
    for _ in 0..3 {
        assert!(daemon.drctl(&["reload"]).status.success());
    }
    let out = daemon.drctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chain intact: 4 entries"));

    // Someone with write access to the catalog rewrites history.
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET actor = 'uid=0 gid=0 pid=1' WHERE id = 3;",
    )
    .unwrap();
    drop(conn);

    let out = daemon.drctl(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BROKEN at entry 3"), "{stdout}");

    let out = daemon.drctl(&["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_mismatch"]["id"], 3);
}
