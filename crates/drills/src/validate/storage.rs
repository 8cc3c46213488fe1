//! Where the backups live: the key files (private, and opening every tier), each
//! tier reachable and writable (a small probe object written and removed through the
//! tier's own storage), and free space on the state directory, the drill sandbox and
//! every directory tier.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use drd_backup::tiers::{raw_storage, TierError};
use drd_core::config::{LoadedConfig, TierConfig};
use drd_proto::{CheckStatus, ReadinessCheck};
use drd_repo::KeySet;
use drd_watch::resources::sample::mount_usage;

use super::{check, fail, pass, warn, within};
use crate::Drills;

/// `keys`: the key files on disk load (present, mode 0600 or stricter, well formed:
/// what a restart will read) and open the repository on every tier.
pub(super) async fn keys(drills: &Drills, config: &Arc<LoadedConfig>) -> ReadinessCheck {
    let files = config.config.keys.files.clone();
    if files.is_empty() {
        return pass(
            "keys",
            "no key files configured: no job writes a repository",
        );
    }
    let count = files.len();
    let keys = match within(move || KeySet::load(&files)).await {
        Ok(Ok(keys)) => keys,
        Ok(Err(err)) => {
            return fail(
                "keys",
                format!("{err} (the keys in memory work until the next restart or reload)"),
            )
        }
        Err(why) => return fail("keys", format!("reading the key files: {why}")),
    };
    // Opening every tier at once: each may take up to the probe bound.
    let pending: Vec<_> = config
        .config
        .tiers
        .iter()
        .map(|(name, tier)| {
            let (opener, tier, keys) = (drills.backups.tiers.clone(), tier.clone(), keys.clone());
            let open = tokio::spawn(super::within(move || opener.open(&tier, &keys).map(|_| ())));
            (name.clone(), open)
        })
        .collect();
    let (mut opened, mut empty, mut wrong, mut unread) = (vec![], vec![], vec![], vec![]);
    for (name, open) in pending {
        match open.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(Ok(())) => opened.push(name),
            Ok(Err(TierError::Repo(drd_repo::Error::NotARepository { .. }))) => empty.push(name),
            Ok(Err(err @ TierError::Repo(drd_repo::Error::WrongKey { .. }))) => {
                wrong.push(format!("tier {name}: {err}"));
            }
            Ok(Err(_)) | Err(_) => unread.push(name),
        }
    }
    let mut detail = format!(
        "{count} key file{} private to its owner",
        if count == 1 { "" } else { "s" }
    );
    if !opened.is_empty() {
        detail.push_str(&format!("; open tier {}", opened.join(", ")));
    }
    if !empty.is_empty() {
        detail.push_str(&format!(
            "; tier {} holds no repository yet (the first backup creates it)",
            empty.join(", ")
        ));
    }
    if !wrong.is_empty() {
        return fail("keys", format!("{detail}; {}", wrong.join("; ")));
    }
    if !unread.is_empty() {
        return warn(
            "keys",
            format!(
                "{detail}; could not check tier {}: it cannot be read (see its tier line)",
                unread.join(", ")
            ),
        );
    }
    pass("keys", detail)
}

/// `tier NAME`, for every tier: reachable and writable, proven by writing a small
/// object through the tier's storage and removing it.
pub(super) async fn tiers(config: &Arc<LoadedConfig>) -> Vec<ReadinessCheck> {
    let pending: Vec<_> = config
        .config
        .tiers
        .iter()
        .map(|(name, tier)| {
            let tier = tier.clone();
            (name.clone(), tokio::spawn(within(move || probe(&tier))))
        })
        .collect();
    let mut lines = Vec::new();
    for (name, probe) in pending {
        let line = format!("tier {name}");
        let location = config
            .config
            .tiers
            .get(&name)
            .map(TierConfig::location)
            .unwrap_or_default();
        lines.push(
            match probe.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok((status, detail)) => check(line, status, detail),
                Err(why) => fail(line, format!("{location}: {why}")),
            },
        );
    }
    lines
}

/// Probes one tier (blocking): its status and what it found.
fn probe(tier: &TierConfig) -> (CheckStatus, String) {
    let location = tier.location();
    let unusable = |err: &dyn std::fmt::Display| {
        let hint = match tier {
            TierConfig::S3 { .. } => "check the endpoint, the bucket and the credentials",
            TierConfig::Dir { .. } => "check that the disk is mounted and drd may write there",
        };
        (
            CheckStatus::Fail,
            format!("{location} is not usable: {err}; {hint}"),
        )
    };
    if let TierConfig::Dir { path } = tier {
        if !path.exists() {
            return missing_dir(path);
        }
    }
    let storage = match raw_storage(tier) {
        Ok(storage) => storage,
        Err(err) => return unusable(&err),
    };
    let has_repo = match storage.size("config") {
        Ok(size) => size.is_some(),
        Err(err) => return unusable(&err),
    };
    if let TierConfig::Dir { path } = tier {
        if !has_repo && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()) {
            return (
                CheckStatus::Fail,
                format!(
                    "{location} holds files but no drd repository, so backups will refuse to \
                     write there: point the tier at an empty folder or at the repository"
                ),
            );
        }
    }
    // A name starting with '.' is a temporary to the engine: never listed, so a probe
    // left behind by a crash is invisible to every repository operation.
    let name = format!(
        ".validate-probe-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let started = Instant::now();
    if let Err(err) = storage.write_atomic(&name, b"drd validate probe\n") {
        return unusable(&err);
    }
    if let Err(err) = storage.remove(&name) {
        return unusable(&err);
    }
    let took = started.elapsed().as_millis() as u64;
    let holds = if has_repo {
        "holds a drd repository"
    } else {
        "empty: the first backup creates the repository"
    };
    (
        CheckStatus::Pass,
        format!(
            "{location}: wrote and removed a probe in {}; {holds}",
            drd_proto::text::measured(took)
        ),
    )
}

/// A directory tier whose folder is not there yet: the first backup makes it, if the
/// nearest folder above it lets drd.
fn missing_dir(path: &Path) -> (CheckStatus, String) {
    let above = existing_ancestor(path);
    let writable = nix::unistd::access(
        &above,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok();
    if writable {
        (
            CheckStatus::Warn,
            format!(
                "{} does not exist yet; the first backup creates it (if it should be a \
                 mounted disk, mount it first, or backups fill {} instead)",
                path.display(),
                above.display()
            ),
        )
    } else {
        (
            CheckStatus::Fail,
            format!(
                "{} does not exist, and drd cannot create it: {} is not writable by drd; \
                 create the folder for drd's user, or mount the disk",
                path.display(),
                above.display()
            ),
        )
    }
}

/// `path` itself, or the nearest folder above it that exists.
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"))
        .to_owned()
}

/// Under this share of free space a disk line warns: the room a busy week of backups
/// and a drill's restore of the largest job take on a typical host, so there is time
/// to act before anything is refused.
const WARN_FREE_PERCENT: f64 = 10.0;

/// Under this share a disk line fails: writes are about to fail outright (the next
/// pack, the catalog's write-ahead log), whatever the size of the disk.
const FAIL_FREE_PERCENT: f64 = 2.0;

/// `disk state_dir`, `disk sandbox` (when the drills restore elsewhere) and `disk
/// tier NAME` for each directory tier: free space against the thresholds above and
/// the drills' `headroom_mib`, the least a drill leaves free (a restore that would
/// leave less is refused, so a disk already under it cannot take one).
pub(super) async fn disks(drills: &Drills, config: &Arc<LoadedConfig>) -> Vec<ReadinessCheck> {
    let drill_config = &config.config.drills;
    let mut places = vec![("disk state_dir".to_owned(), drills.core.state_dir.clone())];
    if drill_config.sandbox.is_some() {
        places.push((
            "disk sandbox".to_owned(),
            drill_config.sandbox_dir(&drills.core.state_dir),
        ));
    }
    for (name, tier) in &config.config.tiers {
        if let TierConfig::Dir { path } = tier {
            places.push((format!("disk tier {name}"), path.clone()));
        }
    }
    let headroom = drill_config.headroom_mib.saturating_mul(1024 * 1024);
    let mut lines = Vec::new();
    for (line, path) in places {
        let on = existing_ancestor(&path);
        let usage = {
            let on = on.clone();
            within(move || mount_usage(&on)).await
        };
        lines.push(match usage {
            Ok(Ok(usage)) => {
                let free_percent = 100.0 - usage.used_percent;
                let status = disk_status(free_percent, usage.available_bytes, headroom);
                let evidence = format!(
                    "{} free of {} ({free_percent:.1} %) on the filesystem of {}",
                    drd_proto::text::bytes(usage.available_bytes),
                    drd_proto::text::bytes(usage.size_bytes),
                    on.display()
                );
                let detail = match status {
                    CheckStatus::Pass => evidence,
                    CheckStatus::Warn => format!(
                        "{evidence}: under {WARN_FREE_PERCENT} %; free space (prune with \
                         tighter retention, or move data) before backups and drills are refused"
                    ),
                    CheckStatus::Fail => format!(
                        "{evidence}: under {FAIL_FREE_PERCENT} % or under the drills' headroom \
                         of {}; backups and drills will fail here: free space now",
                        drd_proto::text::bytes(headroom)
                    ),
                };
                check(line, status, detail)
            }
            Ok(Err(why)) | Err(why) => fail(line, why),
        });
    }
    lines
}

/// The verdict on a filesystem with `free_percent` of its space and `available`
/// bytes free, against the drills' `headroom` in bytes.
fn disk_status(free_percent: f64, available: u64, headroom: u64) -> CheckStatus {
    if free_percent < FAIL_FREE_PERCENT || available < headroom {
        CheckStatus::Fail
    } else if free_percent < WARN_FREE_PERCENT {
        CheckStatus::Warn
    } else {
        CheckStatus::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const HEADROOM: u64 = 512 << 20;

    #[test]
    fn free_space_warns_under_a_tenth_and_fails_under_two_percent_or_the_headroom() {
        assert_eq!(disk_status(40.0, 100 * GIB, HEADROOM), CheckStatus::Pass);
        assert_eq!(disk_status(10.0, 10 * GIB, HEADROOM), CheckStatus::Pass);
        assert_eq!(disk_status(9.9, 10 * GIB, HEADROOM), CheckStatus::Warn);
        assert_eq!(disk_status(2.0, 2 * GIB, HEADROOM), CheckStatus::Warn);
        assert_eq!(disk_status(1.9, 2 * GIB, HEADROOM), CheckStatus::Fail);
        // A small disk half empty is still too full for a drill's headroom.
        assert_eq!(disk_status(50.0, 256 << 20, HEADROOM), CheckStatus::Fail);
        assert_eq!(disk_status(50.0, HEADROOM, HEADROOM), CheckStatus::Pass);
    }

    #[test]
    fn a_missing_tier_folder_is_judged_by_the_folder_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/repo");
        assert_eq!(existing_ancestor(&deep), dir.path());
        let (status, detail) = missing_dir(&deep);
        assert_eq!(status, CheckStatus::Warn, "{detail}");
        assert!(detail.contains("the first backup creates it"), "{detail}");
    }

    #[test]
    fn a_directory_tier_is_probed_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let tier = TierConfig::Dir {
            path: dir.path().to_owned(),
        };
        let (status, detail) = probe(&tier);
        assert_eq!(status, CheckStatus::Pass, "{detail}");
        assert!(detail.contains("empty: the first backup"), "{detail}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        std::fs::write(dir.path().join("notes.txt"), "not a repository").unwrap();
        let (status, detail) = probe(&tier);
        assert_eq!(status, CheckStatus::Fail, "{detail}");
        assert!(detail.contains("no drd repository"), "{detail}");
    }
}
