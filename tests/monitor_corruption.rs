//! The corruption monitor in a real drd: a SQLite file with a damaged b-tree page is
//! found by its checks and an unopenable one says why; a changed protected file is
//! named until an `expected_change` hook accepts it; a flipped byte in a pack written
//! by a real backup is found by the rolling verifier and named with its files.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use drd_integration_tests::{
    audit_rows, backup_daemon, flip_middle_byte, open_tempdir, packs, random_bytes, text, Daemon,
};
use drd_proto::{CheckState, MonitorCheck};

/// Every monitor check, as `drctl monitors --json` lists them (it exits 1 while one
/// fires).
fn monitors(daemon: &Daemon) -> Vec<MonitorCheck> {
    let out = daemon.drctl(&["monitors", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits up to `secs` for the corruption check `name` to satisfy `cond`; returns it.
fn wait_check(
    daemon: &Daemon,
    name: &str,
    secs: u64,
    what: &str,
    mut cond: impl FnMut(&MonitorCheck) -> bool,
) -> MonitorCheck {
    let mut found = None;
    daemon.wait_until(
        &format!("{name}: {what}"),
        Duration::from_secs(secs),
        || {
            found = monitors(daemon)
                .into_iter()
                .find(|c| c.monitor == "corruption" && c.check == name && cond(c));
            found.is_some()
        },
    );
    found.unwrap()
}

/// The "monitor fired" audit entries of corruption check `name`, their details.
fn fired(daemon: &Daemon, name: &str) -> Vec<String> {
    audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|r| r.0 == format!("monitor corruption/{name}") && r.1 == "monitor fired")
        .map(|r| r.3)
        .collect()
}

/// A database of a few dozen pages.
fn make_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, note TEXT);
         CREATE INDEX by_customer ON orders (customer);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO orders SELECT i, printf('customer %d', i % 97), hex(randomblob(40)) FROM n;",
    )
    .unwrap();
}

#[test]
fn a_damaged_sqlite_page_is_found_and_an_unopenable_database_says_why() {
    let files = open_tempdir();
    let db = files.path().join("app.db");
    let missing = files.path().join("gone/missing.db");
    make_db(&db);
    let daemon = Daemon::start(&format!(
        "[monitors.corruption]\ninterval = \"1s\"\nquick_check_every = \"1s\"\n\
         sqlite = [{{ path = \"{}\" }}, {{ path = \"{}\" }}]\n\
         on_fire = [{{ alert = \"critical\" }}]\n",
        db.display(),
        missing.display()
    ));
    let app = format!("sqlite {}", db.display());
    let gone = format!("sqlite {}", missing.display());

    let sound = wait_check(&daemon, &app, 20, "checked and sound", |c| {
        c.value == "sound"
    });
    assert_eq!(sound.state, CheckState::Ok, "{sound:?}");
    let unopenable = wait_check(&daemon, &gone, 20, "firing", |c| {
        c.state == CheckState::Firing
    });
    assert!(
        unopenable.evidence.contains("cannot open") && unopenable.evidence.contains("No such file"),
        "{unopenable:?}"
    );

    // Garbage over the cell pointers of a b-tree page in the middle of the file; the
    // file's own header (page 1) is left alone.
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    let pages = file.metadata().unwrap().len() / 4096;
    assert!(pages > 10, "{pages} pages");
    file.write_all_at(&[0xa5; 32], 4096 * (pages / 2) + 8)
        .unwrap();
    drop(file);

    // Its actions run after the check turns firing and the audit entry is written, and
    // are shown once taken: wait for both (a look in between saw none, on CI).
    let damaged = wait_check(&daemon, &app, 20, "firing, its actions taken", |c| {
        c.state == CheckState::Firing && !c.actions.is_empty()
    });
    assert!(damaged.evidence.contains("quick_check"), "{damaged:?}");
    assert!(damaged.evidence.contains(" page "), "{damaged:?}");
    let audited = fired(&daemon, &app);
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].contains("quick_check"), "{audited:?}");

    // What the on-call engineer sees: exit 1, the check firing, SQLite's words.
    let out = daemon.drctl(&["monitors"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&app) && shown.contains("quick_check"),
        "{shown}"
    );
    assert!(shown.contains("No such file"), "{shown}");
}

#[test]
fn a_changed_protected_file_is_named_until_the_hook_accepts_it() {
    let files = open_tempdir();
    let etc = files.path().join("etc");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    std::fs::write(etc.join("app.conf"), "port = 80\n").unwrap();
    std::fs::write(etc.join("conf.d/extra.conf"), "debug = false\n").unwrap();
    let hook = files.path().join("approve.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat > {dir}/asked\ntest -e {dir}/approved\n",
            dir = files.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start(&format!(
        "[monitors.corruption]\ninterval = \"1s\"\nprotected_every = \"1s\"\n\
         protected = [\"{}\"]\nexpected_change = {{ run = [\"{}\"] }}\n",
        etc.display(),
        hook.display()
    ));
    let check = format!("protected {}", etc.display());
    let baseline = wait_check(&daemon, &check, 20, "baseline", |c| {
        c.evidence.contains("baseline recorded (2 files)")
    });
    assert_eq!(baseline.state, CheckState::Ok);

    std::fs::write(etc.join("app.conf"), "port = 8080\n").unwrap();
    std::fs::write(etc.join("conf.d/new.conf"), "x = 1\n").unwrap();
    let changed = wait_check(&daemon, &check, 20, "firing", |c| {
        c.state == CheckState::Firing
    });
    let app_conf = etc.join("app.conf").display().to_string();
    let new_conf = etc.join("conf.d/new.conf").display().to_string();
    assert!(
        changed.evidence.contains(&format!("changed: {app_conf}")),
        "{changed:?}"
    );
    assert!(
        changed.evidence.contains(&format!("new: {new_conf}")),
        "{changed:?}"
    );
    assert!(
        changed.evidence.contains("exited with status 1"),
        "{changed:?}"
    );
    let asked = std::fs::read_to_string(files.path().join("asked")).unwrap();
    assert_eq!(asked, format!("{app_conf}\n{new_conf}\n"));
    assert_eq!(fired(&daemon, &check).len(), 1);

    // The hook says yes: the new content is the baseline and the finding clears.
    std::fs::write(files.path().join("approved"), "").unwrap();
    let cleared = wait_check(&daemon, &check, 20, "cleared", |c| {
        c.state == CheckState::Ok
    });
    assert!(cleared.evidence.contains("accepted"), "{cleared:?}");
    let accepted: Vec<_> = audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|r| r.1 == "protected change accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    // Accepted is accepted: the next cycles, with the hook saying no again, see no
    // change.
    std::fs::remove_file(files.path().join("approved")).unwrap();
    std::fs::remove_file(files.path().join("asked")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let later = wait_check(&daemon, &check, 5, "ok", |c| c.state == CheckState::Ok);
    assert_eq!(later.state, CheckState::Ok);
    assert_eq!(fired(&daemon, &check).len(), 1);
    assert!(
        !files.path().join("asked").exists(),
        "the hook was asked again"
    );
}

#[test]
fn a_flipped_byte_in_a_pack_is_found_by_the_rolling_verifier_and_named_with_its_files() {
    let daemon = backup_daemon(
        "[jobs.files]\ntiers = [\"local\"]\nsources = [{ kind = \"path\", path = \"{dir}/data\" }]\n\
         [monitors.corruption]\ninterval = \"1s\"\nverify = true\nverify_within = \"2s\"\n",
    );
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("victim.bin"), random_bytes(5, 400_000)).unwrap();
    let snapshot = daemon.backup_now("files");

    let sound = wait_check(&daemon, "packs local", 30, "a read of the new pack", |c| {
        c.evidence.contains("1 packs") && c.evidence.contains("1 read within")
    });
    assert_eq!(sound.state, CheckState::Ok, "{sound:?}");

    let all = packs(&daemon.repo());
    assert_eq!(all.len(), 1, "{all:?}");
    flip_middle_byte(&all[0], 0x10);

    let damaged = wait_check(&daemon, "packs local", 30, "firing", |c| {
        c.state == CheckState::Firing
    });
    assert!(damaged.evidence.contains("victim.bin"), "{damaged:?}");
    assert!(damaged.evidence.contains(&snapshot[..8]), "{damaged:?}");
    assert!(
        damaged.evidence.contains(&all[0].display().to_string()),
        "{damaged:?}"
    );
    let audited = fired(&daemon, "packs local");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].contains("victim.bin"), "{audited:?}");

    // Coverage is in the catalog.
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let (checked, problem): (Option<i64>, Option<String>) = conn
        .query_row(
            "SELECT checked_ms, problem FROM verify_coverage WHERE tier = 'local'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(checked.is_some());
    assert!(problem.unwrap().contains("victim.bin"));
}
