//! Turning configured sources into what the repository engine reads.

use std::path::{Path, PathBuf};

use drd_repo::Source;
use tempfile::NamedTempFile;

use super::{command::CommandOutput, sqlite, BackupError};
use crate::config::SourceConfig;

/// Sources ready to read, and the scratch files that must live until the backup ends.
pub(super) struct Prepared {
    pub sources: Vec<Source>,
    pub scratch: Vec<NamedTempFile>,
}

/// Prepares every source: paths as they are, SQLite databases copied through the
/// online backup API into `scratch`, commands started with their output piped.
pub(super) fn prepare(configs: &[SourceConfig], scratch: &Path) -> Result<Prepared, BackupError> {
    let mut prepared = Prepared {
        sources: Vec::new(),
        scratch: Vec::new(),
    };
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
            SourceConfig::Command { name, run, timeout } => {
                let output = CommandOutput::start(name, run, *timeout)?;
                prepared.sources.push(Source::Stream {
                    name: format!("commands/{name}"),
                    reader: Box::new(output),
                });
            }
        }
    }
    Ok(prepared)
}

/// A database is stored where it lives, so a restore puts it back in the same place
/// below the target, beside the path sources.
fn stored_name(path: &Path) -> String {
    let relative: PathBuf = path.components().skip(1).collect();
    relative.to_string_lossy().into_owned()
}
