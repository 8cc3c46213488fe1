//! Which snapshot a restore reads: one by id, the newest (`latest`), or the newest at
//! or before a time (`--at`), for `drctl restore` and the offline `drd restore` alike.
//!
//! A damaged snapshot file is never passed over without a word. The file no longer
//! says its job or time, so unless the daemon's catalog read them while it was intact
//! (and they put it out of the way), it might be the snapshot asked for: `latest` and
//! `--at` then refuse to fall back to an older snapshot, naming the damaged file and
//! the command that restores the older one (its id, or `--allow-older`). Asked for by id, a
//! damaged snapshot is "damaged", not "no such snapshot". Where the repository has
//! replicas (a landing tier's offsite copies), an intact copy of a damaged file counts
//! as the snapshot, and the restore says that it used it.

use std::collections::{BTreeMap, HashMap};

use drd_proto::{SnapshotInfo, SnapshotSelector};
use drd_repo::{at_or_before_of, latest_of, DamagedSnapshot, Repository, Snapshot};

use super::BackupError;

/// The snapshot to restore, and what the person should know about the choice.
#[derive(Debug)]
pub struct Selected {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Damaged files passed over (with `--allow-older`), or the copy that stood in for
    /// a damaged file.
    pub warnings: Vec<String>,
}

/// Picks the snapshot `selector` names from `repo` (of `job`, if given). With
/// `allow_older`, `latest` and `--at` may pass over damaged snapshot files (saying so
/// in the warnings) instead of refusing. `known` holds what the daemon's catalog read
/// from snapshot files while they were intact (by id; empty offline): a damaged file
/// known to be another job's, or taken outside the window asked for, is not in the way.
pub fn select(
    repo: &Repository,
    selector: &SnapshotSelector,
    job: Option<&str>,
    allow_older: bool,
    known: &HashMap<String, SnapshotInfo>,
) -> Result<Selected, BackupError> {
    let mut list = repo.snapshot_list()?;
    // Notes for the snapshots read from a replica's copy, shown if one is picked.
    let mut copies: BTreeMap<String, String> = BTreeMap::new();
    let mut damaged = Vec::new();
    for d in std::mem::take(&mut list.damaged) {
        match repo.intact_copy(&d.id) {
            Some((snapshot, copy)) => {
                copies.insert(
                    d.id.clone(),
                    format!(
                        "snapshot file {} is damaged ({}); restored from the intact copy {}",
                        d.path.display(),
                        d.reason,
                        copy.display()
                    ),
                );
                list.snapshots.push(snapshot);
            }
            None => damaged.push(d),
        }
    }
    let place = Place {
        repo: repo.path().display().to_string(),
        job,
        known,
    };
    let (snapshot, mut warnings) = pick(&list.snapshots, &damaged, selector, &place, allow_older)?;
    if let Some(note) = copies.remove(&snapshot.id) {
        warnings.insert(0, note);
    }
    Ok(Selected { snapshot, warnings })
}

/// Where the choice is made, for messages.
struct Place<'a> {
    repo: String,
    job: Option<&'a str>,
    known: &'a HashMap<String, SnapshotInfo>,
}

impl Place<'_> {
    fn of_job(&self) -> String {
        self.job.map(|j| format!(" of job {j}")).unwrap_or_default()
    }
}

/// The choice itself, over the readable snapshots and the damaged files.
fn pick(
    sound: &[Snapshot],
    damaged: &[DamagedSnapshot],
    selector: &SnapshotSelector,
    place: &Place<'_>,
    allow_older: bool,
) -> Result<(Snapshot, Vec<String>), BackupError> {
    let of_job = place.of_job();
    let (candidate, when, at) = match selector {
        SnapshotSelector::Id(id) => return by_id(sound, damaged, id).map(|s| (s, Vec::new())),
        SnapshotSelector::Latest => (latest_of(sound, place.job), String::new(), None),
        SnapshotSelector::At(at) => (
            at_or_before_of(sound, *at, place.job),
            format!(" at or before {}", drd_core::util::rfc3339(*at)),
            Some(*at),
        ),
    };
    // A damaged file is in the way unless the catalog knows it is another job's, after
    // the time asked for, or older than what would be picked anyway.
    let damaged: Vec<DamagedSnapshot> = damaged
        .iter()
        .filter(|d| {
            place.known.get(&d.id).is_none_or(|k| {
                place.job.is_none_or(|j| k.job == j)
                    && at.is_none_or(|at| k.unix_ms <= at)
                    && candidate.is_none_or(|c| k.unix_ms >= c.time_ms)
            })
        })
        .cloned()
        .collect();
    let damaged = damaged.as_slice();
    if damaged.is_empty() {
        return candidate.cloned().map(|s| (s, Vec::new())).ok_or_else(|| {
            BackupError::NotFound(format!(
                "there is no snapshot{of_job}{when} in {}",
                place.repo
            ))
        });
    }
    let files = describe(damaged);
    let Some(older) = candidate else {
        return Err(BackupError::Damaged(format!(
            "there is no readable snapshot{of_job}{when} in {}: {files}. Put an intact \
             copy of the file back (an offsite tier may hold one), or restore from \
             another tier with --tier",
            place.repo
        )));
    };
    let older_desc = format!(
        "{} (job {}, taken {})",
        older.id,
        older.job,
        drd_core::util::rfc3339(older.time_ms)
    );
    if allow_older {
        return Ok((
            older.clone(),
            vec![format!(
                "passed over a damaged snapshot that may be newer: {files}; restored the \
                 newest readable snapshot{of_job}{when}, {older_desc}, as --allow-older asked"
            )],
        ));
    }
    Err(BackupError::Damaged(format!(
        "refusing to restore an older snapshot in its place: {files} and may be the newest \
         snapshot{of_job}{when} (a damaged file does not say its job or time). The newest \
         readable one is {older_desc}: to restore it, run the restore again with \
         --backup-id {} (or add --allow-older). To restore the damaged one, put an intact \
         copy of its file back (an offsite tier may hold one; --tier reads it)",
        older.id
    )))
}

/// A snapshot by id or unique prefix, readable or damaged.
fn by_id(
    sound: &[Snapshot],
    damaged: &[DamagedSnapshot],
    id: &str,
) -> Result<Snapshot, BackupError> {
    let good: Vec<&Snapshot> = sound.iter().filter(|s| s.id.starts_with(id)).collect();
    let bad: Vec<&DamagedSnapshot> = damaged.iter().filter(|d| d.id.starts_with(id)).collect();
    match (good.as_slice(), bad.as_slice()) {
        ([one], []) => Ok((*one).clone()),
        ([], [one]) => Err(BackupError::Damaged(format!(
            "snapshot {} cannot be restored: {}, and no intact copy was found. Put an \
             intact copy of the file back (an offsite tier may hold one; --tier reads it), \
             or pick another snapshot from the listing",
            one.id,
            describe(std::slice::from_ref(*one))
        ))),
        ([], []) => Err(drd_repo::Error::NoSnapshot(id.to_owned()).into()),
        _ => Err(drd_repo::Error::AmbiguousSnapshot(id.to_owned()).into()),
    }
}

/// "snapshot file F (why, written about T) is damaged", or the same for several.
fn describe(damaged: &[DamagedSnapshot]) -> String {
    let one = |d: &DamagedSnapshot| {
        let written = d
            .written_ms
            .map(|ms| format!(", written about {}", drd_core::util::rfc3339(ms)))
            .unwrap_or_default();
        format!("{} ({}{written})", d.path.display(), d.reason)
    };
    match damaged {
        [d] => format!("snapshot file {} is damaged", one(d)),
        many => format!(
            "snapshot files {} are damaged",
            many.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, job: &str, time_ms: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            job: job.into(),
            host: "h".into(),
            time_ms,
            parent: None,
            sources: vec![],
            tree: drd_repo::Id::default(),
            stats: drd_repo::BackupStats::default(),
        }
    }

    fn bad(id: &str) -> DamagedSnapshot {
        DamagedSnapshot {
            id: id.into(),
            path: format!("/repo/snapshots/{id}").into(),
            reason: "does not decrypt".into(),
            written_ms: None,
        }
    }

    /// A place where nothing is known of any damaged file.
    fn nowhere(known: &HashMap<String, SnapshotInfo>) -> Place<'_> {
        Place {
            repo: String::new(),
            job: None,
            known,
        }
    }

    #[test]
    fn without_damage_the_newest_is_picked() {
        let known = HashMap::new();
        let place = nowhere(&known);
        let sound = [snap("aa", "db", 1_000), snap("bb", "db", 2_000)];
        let (s, w) = pick(&sound, &[], &SnapshotSelector::Latest, &place, false).unwrap();
        assert_eq!((s.id.as_str(), w.len()), ("bb", 0));
        let (s, _) = pick(&sound, &[], &SnapshotSelector::At(1_500), &place, false).unwrap();
        assert_eq!(s.id, "aa");
        let err = pick(&sound, &[], &SnapshotSelector::At(500), &place, false).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn latest_and_at_refuse_to_pass_over_a_damaged_file_unless_allowed() {
        let known = HashMap::new();
        let place = nowhere(&known);
        let sound = [snap("aa", "db", 1_000)];
        let damaged = [bad("cc")];
        for selector in [SnapshotSelector::Latest, SnapshotSelector::At(5_000)] {
            let err = pick(&sound, &damaged, &selector, &place, false).unwrap_err();
            let text = err.to_string();
            assert!(!err.is_not_found());
            assert!(
                text.contains("/repo/snapshots/cc")
                    && text.contains("--backup-id aa")
                    && text.contains("--allow-older"),
                "{text}"
            );
            let (s, w) = pick(&sound, &damaged, &selector, &place, true).unwrap();
            assert_eq!(s.id, "aa");
            assert!(w[0].contains("/repo/snapshots/cc"), "{w:?}");
        }
        // Nothing readable at all: damaged, even when older ones are allowed.
        let err = pick(&[], &damaged, &SnapshotSelector::Latest, &place, true).unwrap_err();
        assert!(matches!(err, BackupError::Damaged(_)), "{err}");
    }

    #[test]
    fn a_damaged_file_known_to_be_out_of_the_way_does_not_block() {
        let sound = [snap("aa", "db", 1_000)];
        let damaged = [bad("cc")];
        let known: HashMap<String, SnapshotInfo> = [(
            "cc".to_owned(),
            SnapshotInfo {
                id: "cc".into(),
                job: "web".into(),
                host: "h".into(),
                unix_ms: 2_000,
                parent: None,
                size: 0,
                files: 0,
                tier: "local".into(),
                damaged: None,
                file: None,
            },
        )]
        .into();
        let place = |job| Place {
            repo: String::new(),
            job,
            known: &known,
        };
        // Another job's: no matter.
        let (s, w) = pick(
            &sound,
            &damaged,
            &SnapshotSelector::Latest,
            &place(Some("db")),
            false,
        )
        .unwrap();
        assert_eq!((s.id.as_str(), w.len()), ("aa", 0));
        // Taken after the time asked for: no matter.
        let (s, _) = pick(
            &sound,
            &damaged,
            &SnapshotSelector::At(1_500),
            &place(None),
            false,
        )
        .unwrap();
        assert_eq!(s.id, "aa");
        // Newer than what latest of all jobs would pick: in the way.
        assert!(pick(
            &sound,
            &damaged,
            &SnapshotSelector::Latest,
            &place(None),
            false
        )
        .is_err());
    }

    #[test]
    fn a_damaged_snapshot_by_id_is_damaged_not_missing() {
        let known = HashMap::new();
        let place = nowhere(&known);
        let sound = [snap("aa11", "db", 1_000)];
        let damaged = [bad("cc22")];
        let id = |sel: &str| SnapshotSelector::Id(sel.into());
        let err = pick(&sound, &damaged, &id("cc"), &place, false).unwrap_err();
        assert!(
            matches!(&err, BackupError::Damaged(m) if m.contains("cc22") && m.contains("does not decrypt")),
            "{err}"
        );
        assert!(pick(&sound, &damaged, &id("dd"), &place, false)
            .unwrap_err()
            .is_not_found());
        let (s, _) = pick(&sound, &damaged, &id("aa"), &place, false).unwrap();
        assert_eq!(s.id, "aa11");
    }
}
