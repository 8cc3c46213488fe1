//! Turning configured sources into what the repository engine reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use drd_core::config::SourceConfig;
use drd_repo::Source;
use tempfile::NamedTempFile;

use super::docker::held::HoldRegistry;
use super::{command::CommandOutput, docker, sqlite, BackupError};

/// Sources ready to read, and the scratch files that must live until the backup ends.
pub(super) struct Prepared {
    pub sources: Vec<Source>,
    pub scratch: Vec<NamedTempFile>,
    /// Containers paused or stopped for the backup; dropping this brings them back,
    /// so it must live until the backup has read everything.
    pub docker: Option<docker::Hold>,
}

/// Prepares every source: paths as they are, SQLite databases copied through the
/// online backup API into `scratch`, commands started with their output piped.
/// Docker containers are held first (in `holds`), so every other source sees them
/// paused or stopped.
pub(super) fn prepare(
    configs: &[SourceConfig],
    scratch: &Path,
    holds: &Arc<HoldRegistry>,
) -> Result<Prepared, BackupError> {
    let mut prepared = Prepared {
        sources: Vec::new(),
        scratch: Vec::new(),
        docker: None,
    };
    let dockers: Vec<_> = configs
        .iter()
        .filter_map(|c| match c {
            SourceConfig::Docker(d) => Some(d),
            _ => None,
        })
        .collect();
    let mut docker_mounts = Vec::new();
    if !dockers.is_empty() {
        let held = docker::prepare(&dockers, holds)?;
        prepared.sources.extend(held.documents);
        docker_mounts = held.mounts;
        prepared.docker = Some(held.hold);
    }
    for config in configs {
        match config {
            SourceConfig::Path { path, exclude } => {
                if let Err(err) = std::fs::symlink_metadata(path) {
                    return Err(BackupError::Source {
                        source_name: path.display().to_string(),
                        message: format!("cannot read it: {err}"),
                    });
                }
                prepared.sources.push(Source::Path {
                    root: path.clone(),
                    excludes: exclude.clone(),
                });
            }
            SourceConfig::Sqlite { path } => {
                let copy = sqlite::online_copy(path, scratch)?;
                let file = copy.reopen().map_err(|err| BackupError::Source {
                    source_name: path.display().to_string(),
                    message: format!("cannot reopen the copy: {err}"),
                })?;
                prepared.sources.push(Source::Stream {
                    name: stored_name(path),
                    reader: Box::new(file),
                });
                prepared.scratch.push(copy);
            }
            SourceConfig::Command {
                name, run, timeout, ..
            } => {
                let output = CommandOutput::start(name, run, *timeout)?;
                prepared.sources.push(Source::Stream {
                    name: format!("commands/{name}"),
                    reader: Box::new(output),
                });
            }
            SourceConfig::Docker(_) => {}
        }
    }
    // A mount inside a path source is stored with it already.
    for (root, excludes) in docker_mounts {
        let covered = configs.iter().any(|c| match c {
            SourceConfig::Path { path, .. } => root.starts_with(path),
            _ => false,
        });
        if !covered {
            prepared.sources.push(Source::Path { root, excludes });
        }
    }
    Ok(prepared)
}

/// A database is stored where it lives, so a restore puts it back in the same place
/// below the target, beside the path sources.
pub(super) fn stored_name(path: &Path) -> String {
    let relative: PathBuf = path.components().skip(1).collect();
    relative.to_string_lossy().into_owned()
}
