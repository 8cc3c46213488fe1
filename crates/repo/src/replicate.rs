//! Copying a repository to another tier (a directory on another disk, or any other
//! [`Storage`]), in the same crash-safe order as a backup writes: config, packs, index
//! files, snapshots. A copy interrupted at any point leaves a destination that verifies
//! (at worst with reclaimable packs) and holds only complete snapshots; the next run
//! copies what is still missing. A damaged snapshot file is not copied (see
//! [`Repository::replicate_to`]).

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::ConfigFile;
use crate::repo::Repository;
use crate::storage::Storage;

/// What a replication copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateSummary {
    /// Files copied (packs, index files, snapshots, config).
    pub files_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Files already at the destination.
    pub files_present: u64,
    /// Stale locks broken at the destination, and similar notes.
    pub warnings: Vec<String>,
}

impl Repository {
    /// Copies every file the destination lacks. The destination must be empty or hold
    /// a copy of this repository (same repository id). Files are immutable once
    /// written, so a file present by name is not copied again. A snapshot file that
    /// does not decrypt or parse is left out, with a warning, so damage here does not
    /// spread to the copy.
    pub fn replicate_to(
        &self,
        dest: &Arc<dyn Storage>,
        progress: &mut dyn FnMut(&ReplicateSummary),
    ) -> Result<ReplicateSummary> {
        let mut summary = ReplicateSummary::default();
        let _source_lock = self.lock_for_read(&mut summary.warnings)?;
        match dest.read("config") {
            Ok(body) => {
                let theirs: ConfigFile = serde_json::from_slice(&body).map_err(|e| {
                    Error::corrupt("config", dest.describe("config"), e.to_string())
                })?;
                if theirs.id != self.config.id {
                    return Err(Error::AlreadyExists {
                        path: dest.location(),
                        reason: format!(
                            "it holds another repository ({}), not a copy of {}",
                            theirs.id, self.config.id
                        ),
                    });
                }
                summary.files_present += 1;
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let body = self.storage.read("config")?;
                dest.write_atomic("config", &body)?;
                summary.files_copied += 1;
                summary.bytes_copied += body.len() as u64;
            }
            Err(e) => return Err(e),
        }
        let _dest_lock =
            crate::lock::acquire(dest, false, self.options.lock_lease, &mut summary.warnings)?;
        for dir in ["data", "index", "snapshots"] {
            let present: HashSet<String> = dest.list(dir)?.into_iter().collect();
            for name in self.storage.list(dir)? {
                if present.contains(&name) {
                    summary.files_present += 1;
                    continue;
                }
                let rel = format!("{dir}/{name}");
                let body = self.storage.read(&rel)?;
                // A damaged snapshot file stays where it is: copied, it would take the
                // place where an intact copy may still turn up (the next run copies it
                // once it is repaired here).
                if dir == "snapshots" {
                    if let Some(reason) = crate::snapshots::damage(&self.keys, &body) {
                        summary.warnings.push(format!(
                            "snapshot file {} is damaged ({reason}): not copied to {}",
                            self.storage.describe(&rel).display(),
                            dest.location().display()
                        ));
                        continue;
                    }
                }
                dest.write_atomic(&rel, &body)?;
                summary.files_copied += 1;
                summary.bytes_copied += body.len() as u64;
                progress(&summary);
            }
        }
        Ok(summary)
    }
}
