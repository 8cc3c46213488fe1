//! Docker sources: containers chosen by name or label, stored as their `inspect`
//! document plus the contents of their volumes and bind mounts, optionally paused or
//! stopped while that data is read.
//!
//! Layout in a snapshot: `docker/NAME/inspect.json` for each container; each volume and
//! bind mount under its host path (`var/lib/docker/volumes/VOLUME/_data/...`,
//! `srv/app/conf/...`), exactly where a path source would put it, so a restore with
//! `--target /` puts the data back and `inspect.json`'s `Mounts` says which container
//! path each one was.
//!
//! The containers are held (paused or stopped) before any other source of the job is
//! read, and the `Hold` guard brings them back when it is dropped: after the backup,
//! after a failure, after a panic. A drd killed in between leaves a record behind that
//! the next start acts on ([`HoldWorker`]).

pub mod held;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use drd_core::config::{DockerConsistency, DockerSource};
use drd_core::docker::{Blocking, Connect};
use drd_repo::Source;

use self::held::{Action, HoldRegistry};
pub use self::worker::HoldWorker;
use super::BackupError;

/// A container a job's docker sources chose, with what to do to it.
struct Chosen {
    id: String,
    name: String,
    inspect: ContainerInspectResponse,
    consistency: DockerConsistency,
    stop_timeout: Duration,
    exclude: Vec<String>,
}

/// Containers held for one backup; dropping it brings them back.
pub(super) struct Hold {
    engine: Blocking,
    holds: Arc<HoldRegistry>,
    ids: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Last held, first released: the reverse of the order they were stopped in.
        for id in self.ids.iter().rev() {
            self.holds.release(&self.engine, id);
        }
    }
}

/// What the docker sources of one job add to the backup.
pub(super) struct Prepared {
    /// `docker/NAME/inspect.json` streams.
    pub documents: Vec<Source>,
    /// Host paths of volumes and bind mounts, none inside another, with the exclude
    /// patterns that apply to them.
    pub mounts: Vec<(PathBuf, Vec<String>)>,
    /// The held containers.
    pub hold: Hold,
}

/// Chooses the containers, holds them in `holds`, and lists what to store.
pub(super) fn prepare(
    sources: &[&DockerSource],
    holds: &Arc<HoldRegistry>,
) -> Result<Prepared, BackupError> {
    let engine = Blocking::connect(&Connect::default()).map_err(fail)?;
    // Containers an earlier drd left held, that its next start could not resume.
    holds.resume_leftovers(&engine).map_err(fail)?;
    let chosen = choose(&engine, sources)?;

    let mut hold = Hold {
        engine,
        holds: holds.clone(),
        ids: Vec::new(),
    };
    for container in &chosen {
        let action = match container.consistency {
            DockerConsistency::Pause => Action::Paused,
            DockerConsistency::Stop => Action::Stopped,
            DockerConsistency::None => continue,
        };
        // On an error the guard releases the containers already held.
        let holding = hold
            .holds
            .hold(
                &hold.engine,
                &container.id,
                &container.name,
                action,
                container.stop_timeout,
            )
            .map_err(|e| BackupError::Source {
                source_name: format!("docker {}", container.name),
                message: e.to_string(),
            })?;
        if holding {
            hold.ids.push(container.id.clone());
        }
    }

    let mut documents = Vec::new();
    let mut roots: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for container in &chosen {
        let json = serde_json::to_vec_pretty(&container.inspect).map_err(|e| {
            fail(format!(
                "cannot encode the inspect of {}: {e}",
                container.name
            ))
        })?;
        documents.push(Source::Stream {
            name: format!("docker/{}/inspect.json", container.name),
            reader: Box::new(Cursor::new(json)),
        });
        for root in mount_sources(container)? {
            roots
                .entry(root)
                .or_default()
                .extend(container.exclude.iter().cloned());
        }
    }
    Ok(Prepared {
        documents,
        mounts: outermost(roots),
        hold,
    })
}

/// A failure of the docker sources as a whole, for the backup's error.
fn fail(err: impl std::fmt::Display) -> BackupError {
    BackupError::Source {
        source_name: "docker".to_owned(),
        message: err.to_string(),
    }
}

/// Resolves names and labels to containers, each once, with the strongest
/// consistency and the longest stop timeout asked for it.
fn choose(engine: &Blocking, sources: &[&DockerSource]) -> Result<Vec<Chosen>, BackupError> {
    let inspect = |name: &str| engine.run(|docker| docker.inspect(name)).map_err(fail);
    let mut chosen: Vec<Chosen> = Vec::new();
    for source in sources {
        let mut ids = Vec::new();
        for name in &source.containers {
            ids.push((inspect(name)?, name.clone()));
        }
        if !source.labels.is_empty() {
            let found = engine
                .run(|docker| docker.with_labels(&source.labels))
                .map_err(fail)?;
            if found.is_empty() && source.containers.is_empty() {
                return Err(fail(format!(
                    "no container carries the label{} {}",
                    if source.labels.len() > 1 { "s" } else { "" },
                    source.labels.join(" and ")
                )));
            }
            for id in found.into_iter().filter_map(|c| c.id) {
                ids.push((inspect(&id)?, id));
            }
        }
        for (inspect, asked) in ids {
            let id = inspect.id.clone().unwrap_or_else(|| asked.clone());
            if let Some(known) = chosen.iter_mut().find(|c| c.id == id) {
                known.consistency = known.consistency.max(source.consistency);
                known.stop_timeout = known.stop_timeout.max(source.stop_timeout());
                known.exclude.extend(source.exclude.iter().cloned());
                continue;
            }
            let name = inspect
                .name
                .as_deref()
                .map(|n| n.trim_start_matches('/').to_owned())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .unwrap_or(asked);
            chosen.push(Chosen {
                id,
                name,
                inspect,
                consistency: source.consistency,
                stop_timeout: source.stop_timeout(),
                exclude: source.exclude.clone(),
            });
        }
    }
    Ok(chosen)
}

/// Host paths of the container's volumes and bind mounts that are not excluded.
fn mount_sources(container: &Chosen) -> Result<Vec<PathBuf>, BackupError> {
    let excludes = globset_of(&container.exclude);
    let mut roots = Vec::new();
    for mount in container.inspect.mounts.iter().flatten() {
        let kind = mount.typ.as_deref().unwrap_or_default();
        if kind != "volume" && kind != "bind" {
            continue; // tmpfs, npipe, cluster: nothing on the host to read
        }
        let Some(source) = mount.source.as_deref().filter(|s| !s.is_empty()) else {
            return Err(BackupError::Source {
                source_name: format!("docker {}", container.name),
                message: format!(
                    "the {kind} at {} has no host path (a volume driver drd cannot read); \
                     leave it out with exclude or back it up another way",
                    mount.destination.as_deref().unwrap_or("?")
                ),
            });
        };
        let path = PathBuf::from(source);
        if excludes.is_match(&path) {
            continue;
        }
        if let Err(err) = std::fs::symlink_metadata(&path) {
            return Err(BackupError::Source {
                source_name: format!("docker {}", container.name),
                message: format!(
                    "cannot read the {kind} for {} at {}: {err}",
                    mount.destination.as_deref().unwrap_or("?"),
                    path.display()
                ),
            });
        }
        roots.push(path);
    }
    Ok(roots)
}

fn globset_of(patterns: &[String]) -> globset::GlobSet {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in patterns {
        // Config validation already refused bad patterns.
        if let Ok(glob) = globset::Glob::new(pattern) {
            builder.add(glob);
        }
    }
    builder
        .build()
        .unwrap_or_else(|_| globset::GlobSet::empty())
}

/// Drops every root inside another (the engine refuses overlapping sources); the
/// outer root takes the inner one's excludes too.
fn outermost(roots: BTreeMap<PathBuf, BTreeSet<String>>) -> Vec<(PathBuf, Vec<String>)> {
    let mut kept: Vec<(PathBuf, BTreeSet<String>)> = Vec::new();
    // Sorted order puts a parent right before its children.
    for (root, excludes) in roots {
        match kept.last_mut() {
            Some((outer, outer_excludes)) if root.starts_with(&*outer) => {
                outer_excludes.extend(excludes);
            }
            _ => kept.push((root, excludes)),
        }
    }
    kept.into_iter()
        .map(|(root, excludes)| (root, excludes.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_mounts_collapse_into_the_outer_one() {
        let roots = BTreeMap::from([
            (
                PathBuf::from("/srv/app"),
                BTreeSet::from(["*.tmp".to_owned()]),
            ),
            (
                PathBuf::from("/srv/app/conf"),
                BTreeSet::from(["*.log".to_owned()]),
            ),
            (PathBuf::from("/srv/application"), BTreeSet::new()),
            (
                PathBuf::from("/var/lib/docker/volumes/a/_data"),
                BTreeSet::new(),
            ),
        ]);
        let kept = outermost(roots);
        let paths: Vec<_> = kept.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/srv/app",
                "/srv/application",
                "/var/lib/docker/volumes/a/_data"
            ]
        );
        assert_eq!(kept[0].1, ["*.log", "*.tmp"]);
    }

    #[test]
    fn the_record_lives_in_the_state_directory_beside_scratch() {
        let state = std::path::Path::new("/var/lib/drd");
        assert_eq!(
            HoldRegistry::new(crate::backup::scratch_dir(state).parent().unwrap()).record_file(),
            held::record_path(state)
        );
    }
}
