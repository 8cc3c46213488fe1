//! `drctl verify` against a running daemon reads what the tier holds now: a pack that
//! a sync or repair tool renames into place between two verifies is read anew, and no
//! handle on a repository file outlives the request that opened it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use drd_integration_tests::{
    backup_daemon, packs, random_bytes, rename_damaged_copy_over, text, Daemon, FILES_JOB,
};

/// The daemon's open files that are gone from the disk (`/proc/PID/fd` links that end
/// in " (deleted)") and were under `dir`.
fn deleted_files_held(daemon: &Daemon, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).unwrap() {
        let Ok(target) = std::fs::read_link(fd.unwrap().path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with(&dir.display().to_string()) && target.ends_with(" (deleted)") {
            out.push(target);
        }
    }
    out
}

#[test]
fn a_pack_renamed_into_place_under_a_running_daemon_is_verified_as_it_is_now() {
    let daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file.bin"), random_bytes(3, 300_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    // Several verifies, so that more than one of the daemon's blocking threads has
    // read the pack.
    for _ in 0..3 {
        let out = daemon.drctl(&["verify"]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // What a sync tool does: write a copy (one byte flipped in the header, one in the
    // body) next to the pack and rename it over the original.
    let all = packs(&daemon.repo());
    assert_eq!(all.len(), 1, "{all:?}");
    let pack = &all[0];
    rename_damaged_copy_over(pack);

    for attempt in 0..5 {
        let out = daemon.drctl(&["verify"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify {attempt} after the pack was replaced: {}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("DAMAGED"), "{stdout}");
        assert!(stdout.contains("header"), "{stdout}");
    }
    let held = deleted_files_held(&daemon, &daemon.repo());
    assert!(
        held.is_empty(),
        "drd still holds replaced repository files open after the requests ended: {held:?}"
    );
}
