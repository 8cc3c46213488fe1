//! One gate for the real parts some tests need (a Docker engine, moto, Python's
//! cryptography, user xattrs on the test filesystem, root): a test that lacks one says
//! so and skips, except where every real part is required, `CI=true` (or the older
//! `DRD_REQUIRE_DOCKER=1`): there a missing part fails the test, so CI cannot pass by
//! skipping.
//!
//! Included with `#[path]` by the root tests' helper and by drd-repo's tests/common,
//! so both crates follow one rule.

/// True when every real part is required: `CI` is set to anything but empty, `0` or
/// `false` (CI services set `CI=true`), or `DRD_REQUIRE_DOCKER=1` (the older switch).
pub fn real_parts_required() -> bool {
    let ci = std::env::var("CI").unwrap_or_default();
    let ci = !matches!(ci.trim().to_ascii_lowercase().as_str(), "" | "0" | "false");
    ci || std::env::var("DRD_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// True when the system's `/usr/bin/python3` runs and imports `modules` (Python
/// code, e.g. `"sqlite3"`); otherwise [`real_part_missing`] says why the test does not
/// run (and fails it under CI).
#[track_caller]
pub fn python3_with(modules: &str, install: &str) -> bool {
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        real_part_missing(&format!("python3 with {modules}"), install);
    }
    ok
}

/// The test cannot run because `what` is missing (`why`): panics where real parts are
/// required, otherwise prints `skipped: ...` and returns, and the caller returns.
#[track_caller]
pub fn real_part_missing(what: &str, why: &str) {
    if real_parts_required() {
        panic!("missing {what} ({why}), and CI=true requires every real part");
    }
    eprintln!("skipped: missing {what} ({why}); CI=true makes this a failure");
}
