//! Reading, listing and picking snapshots, with damaged snapshot files kept in view.
//!
//! A snapshot file that does not decrypt or does not parse is never dropped from a
//! listing: it comes back as a [`DamagedSnapshot`] that names its file and why, so a
//! listing can show it, a restore of `latest` can refuse to fall back to an older
//! snapshot without a word, and retention can leave it alone. Its job, time and tree
//! are unknown (the damage may be anywhere in it). When the repository has replicas
//! (see [`Repository::with_fallback`]), [`Repository::intact_copy`] finds an intact copy
//! of the same file there.

use std::path::PathBuf;

use crate::crypto::KeySet;
use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::repo::Repository;
use crate::storage::Storage;

/// A snapshot file that cannot be read: it does not decrypt with any configured key,
/// or it decrypts but does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSnapshot {
    /// The snapshot id (the file name).
    pub id: String,
    /// The file (a path, or a URL on remote storage).
    pub path: PathBuf,
    /// Why it cannot be read ("does not decrypt ...", "does not parse: ...").
    pub reason: String,
    /// When the file was written (unix ms), from the timestamp that leads its Fernet
    /// token. Nothing vouches for it (the damage may be there too): a hint for people,
    /// never a reason to skip the snapshot.
    pub written_ms: Option<i64>,
}

/// Every snapshot file of a repository: the readable ones, oldest first, and the
/// damaged ones, by id.
#[derive(Debug, Clone, Default)]
pub struct SnapshotList {
    /// Snapshots that decrypt and parse, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Snapshot files that do not, sorted by id.
    pub damaged: Vec<DamagedSnapshot>,
}

/// What reading one snapshot file gave.
pub(crate) enum ReadSnapshot {
    /// It is sound.
    Sound(Snapshot),
    /// It is damaged.
    Damaged(DamagedSnapshot),
    /// It went between listing and reading (a concurrent forget).
    Gone,
}

/// Reads snapshot file `name` from `storage`. Only storage failures are errors; damage
/// is a [`ReadSnapshot::Damaged`].
pub(crate) fn read_one(storage: &dyn Storage, keys: &KeySet, name: &str) -> Result<ReadSnapshot> {
    let rel = format!("snapshots/{name}");
    let token = match storage.read(&rel) {
        Ok(token) => token,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ReadSnapshot::Gone)
        }
        Err(e) => return Err(e),
    };
    Ok(match open(keys, &token) {
        Ok(mut snap) => {
            snap.id = name.to_owned();
            ReadSnapshot::Sound(snap)
        }
        Err(reason) => ReadSnapshot::Damaged(DamagedSnapshot {
            id: name.to_owned(),
            path: storage.describe(&rel),
            reason,
            written_ms: token_time(&token),
        }),
    })
}

/// Decrypts and parses a snapshot file's content, or says why it cannot.
fn open(keys: &KeySet, token: &[u8]) -> std::result::Result<Snapshot, String> {
    let plain = keys.decrypt(token).ok_or_else(|| {
        "does not decrypt with any configured key: damaged, or written with a key that is \
         not configured"
            .to_owned()
    })?;
    serde_json::from_slice::<Snapshot>(&plain).map_err(|e| format!("does not parse: {e}"))
}

/// Why a snapshot file's content is damaged, or `None` when it is sound.
pub(crate) fn damage(keys: &KeySet, token: &[u8]) -> Option<String> {
    open(keys, token).err()
}

/// The time in a Fernet token's header (version byte 0x80, then big-endian seconds),
/// when it is plausible.
fn token_time(token: &[u8]) -> Option<i64> {
    let secs: [u8; 8] = token.get(1..9)?.try_into().ok()?;
    let secs = i64::try_from(u64::from_be_bytes(secs)).ok()?;
    let now_secs = crate::lock::now_ms() / 1000;
    (token.first() == Some(&0x80) && secs > 0 && secs <= now_secs + 86_400).then(|| secs * 1000)
}

/// Reads every snapshot file on `storage` without loading the repository's index (what
/// a listing needs). Files are read by a few threads at once, since on remote storage
/// each is a round trip.
pub fn read_snapshots(storage: &dyn Storage, keys: &KeySet) -> Result<SnapshotList> {
    let names = storage.list("snapshots")?;
    let workers = names.len().clamp(1, 8);
    let per_worker = names.len().div_ceil(workers).max(1);
    let results: Vec<Result<Vec<ReadSnapshot>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(per_worker)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|name| read_one(storage, keys, name))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Internal("a snapshot reading thread panicked".into()))
                })
            })
            .collect()
    });
    let mut list = SnapshotList::default();
    for read in results {
        for one in read? {
            match one {
                ReadSnapshot::Sound(s) => list.snapshots.push(s),
                ReadSnapshot::Damaged(d) => list.damaged.push(d),
                ReadSnapshot::Gone => {}
            }
        }
    }
    list.snapshots
        .sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then(a.id.cmp(&b.id)));
    list.damaged.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(list)
}

impl Repository {
    /// Every snapshot file: the readable snapshots and the damaged files (see
    /// [`SnapshotList`]).
    pub fn snapshot_list(&self) -> Result<SnapshotList> {
        read_snapshots(&*self.storage, &self.keys)
    }

    /// Every readable snapshot, oldest first. Damaged snapshot files are left out:
    /// anything that chooses for a person, or removes data, must use
    /// [`Repository::snapshot_list`] and say what it passed over.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        Ok(self.snapshot_list()?.snapshots)
    }

    /// An intact copy of snapshot `id` on one of the replicas (see
    /// [`Repository::with_fallback`]), with the copy's path, for a snapshot file that is
    /// damaged here. Replicas that cannot be read are passed over.
    pub fn intact_copy(&self, id: &str) -> Option<(Snapshot, PathBuf)> {
        self.fallbacks
            .iter()
            .find_map(|replica| match read_one(&**replica, &self.keys, id) {
                Ok(ReadSnapshot::Sound(snap)) => {
                    Some((snap, replica.describe(&format!("snapshots/{id}"))))
                }
                _ => None,
            })
    }

    /// Reads one snapshot file; damage is an [`Error::Corrupt`].
    pub(crate) fn read_snapshot(&self, name: &str) -> Result<Snapshot> {
        match read_one(&*self.storage, &self.keys, name)? {
            ReadSnapshot::Sound(snap) => Ok(snap),
            ReadSnapshot::Damaged(d) => Err(Error::corrupt("snapshot", d.path, d.reason)),
            ReadSnapshot::Gone => Err(Error::NoSnapshot(name.to_owned())),
        }
    }

    pub(crate) fn write_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let on_disk = Snapshot {
            id: String::new(),
            ..snap.clone()
        };
        let plain = serde_json::to_vec(&on_disk)
            .map_err(|e| Error::Internal(format!("encode snapshot: {e}")))?;
        self.storage.write_atomic(
            &format!("snapshots/{}", snap.id),
            &self.keys.encrypt(&plain),
        )
    }

    /// Finds a snapshot by "latest" (the newest readable one), a full id, or a unique id
    /// prefix. An id that names only a damaged file is an [`Error::Corrupt`] that says
    /// why, not "no snapshot matches".
    pub fn find_snapshot(&self, selector: &str) -> Result<Snapshot> {
        let list = self.snapshot_list()?;
        match select_snapshot(&list.snapshots, selector) {
            Err(Error::NoSnapshot(_)) if selector != "latest" => {
                let damaged: Vec<&DamagedSnapshot> = list
                    .damaged
                    .iter()
                    .filter(|d| d.id.starts_with(selector))
                    .collect();
                match damaged.as_slice() {
                    [one] => Err(Error::corrupt("snapshot", &one.path, &one.reason)),
                    [] => Err(Error::NoSnapshot(selector.into())),
                    _ => Err(Error::AmbiguousSnapshot(selector.into())),
                }
            }
            other => other.cloned(),
        }
    }

    /// The newest readable snapshot (of `job`, if given). For a parent to back up
    /// against, not for choosing what to restore (see [`Repository::snapshot_list`]).
    pub fn latest(&self, job: Option<&str>) -> Result<Option<Snapshot>> {
        Ok(latest_of(&self.snapshots()?, job).cloned())
    }

    /// The newest readable snapshot (of `job`, if given) taken at or before `time_ms`
    /// (unix ms).
    pub fn at_or_before(&self, time_ms: i64, job: Option<&str>) -> Result<Option<Snapshot>> {
        Ok(at_or_before_of(&self.snapshots()?, time_ms, job).cloned())
    }
}

/// Picks a snapshot from a list by "latest", a full id or a unique id prefix.
pub fn select_snapshot<'a>(all: &'a [Snapshot], selector: &str) -> Result<&'a Snapshot> {
    if selector == "latest" {
        return latest_of(all, None).ok_or_else(|| Error::NoSnapshot("latest".into()));
    }
    let matches: Vec<&Snapshot> = all.iter().filter(|s| s.id.starts_with(selector)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NoSnapshot(selector.into())),
        _ => Err(Error::AmbiguousSnapshot(selector.into())),
    }
}

/// The newest snapshot in a list (of `job`, if given).
pub fn latest_of<'a>(all: &'a [Snapshot], job: Option<&str>) -> Option<&'a Snapshot> {
    all.iter()
        .filter(|s| job.is_none_or(|j| s.job == j))
        .max_by_key(|s| s.time_ms)
}

/// The newest snapshot in a list (of `job`, if given) at or before `time_ms`.
pub fn at_or_before_of<'a>(
    all: &'a [Snapshot],
    time_ms: i64,
    job: Option<&str>,
) -> Option<&'a Snapshot> {
    all.iter()
        .filter(|s| job.is_none_or(|j| s.job == j) && s.time_ms <= time_ms)
        .max_by_key(|s| s.time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_time_reads_a_plausible_fernet_header_only() {
        let mut token = vec![0x80];
        token.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        token.extend_from_slice(&[0; 40]);
        assert_eq!(token_time(&token), Some(1_700_000_000_000));
        token[0] = 0x81;
        assert_eq!(token_time(&token), None, "not a Fernet token");
        token[0] = 0x80;
        token[1] = 0x7f;
        assert_eq!(token_time(&token), None, "far in the future");
        assert_eq!(token_time(&[0x80, 1, 2]), None, "too short");
    }
}
