//! Containers paused or stopped by a backup, and the promise to bring them back.
//!
//! Before drd pauses or stops a container it writes the container into a record file
//! in the state directory (atomically: temp file, fsync, rename, fsync the folder), and
//! removes it once the container runs again. A drd killed in between leaves the record
//! behind; the next start reads it and resumes what is listed ([`HoldRegistry::resume_all`]).
//!
//! Two backups running at once may hold the same container: the daemon's one
//! [`HoldRegistry`] (owned by [`crate::Backups`], handed to every backup) counts
//! holders, and only the last release brings the container back. The registry lock is
//! held across the Docker calls on purpose, so that a second backup waits for a
//! container to be fully stopped before it reads that container's data.
//!
//! The registry reads the record file on first use and keeps what an earlier drd left
//! (with no holders) until it is brought back, so a new hold never writes those
//! records away; every backup retries them before it holds anything. One daemon serves
//! one state directory, so it keeps one registry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use drd_core::docker::{self, Blocking, Connect, RunState};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What went wrong holding, releasing or resuming a container.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HoldError {
    /// The engine failed.
    #[error(transparent)]
    Docker(#[from] docker::Error),
    /// The record of held containers could not be written, so nothing was touched.
    #[error("cannot write {path} (the record of held containers), so nothing was paused or stopped: {source}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The record of held containers could not be read, so holds cannot be tracked.
    #[error(
        "cannot read {path} (the record of containers held by backups): {source}; check \
         that the containers it lists run, then fix or remove it"
    )]
    RecordUnreadable {
        /// The record file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What drd did to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// `docker pause`; undone with `docker unpause`.
    Paused,
    /// `docker stop`; undone with `docker start`.
    Stopped,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Paused => "paused",
            Action::Stopped => "stopped",
        }
    }
}

/// One held container, as recorded in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The container's full id.
    pub id: String,
    /// Its name, for messages.
    pub name: String,
    /// What was done to it.
    pub action: Action,
    /// When (RFC 3339).
    pub since: String,
    /// The drd process that did it.
    pub pid: u32,
    /// How many backups of that process hold it (not written: a new process has none).
    #[serde(skip)]
    holders: usize,
    /// When the pause or stop took effect in this process, for the hold's length.
    #[serde(skip)]
    held_at: Option<std::time::Instant>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    containers: Vec<Record>,
}

/// The record file's name in the state directory.
pub const RECORD_FILE: &str = "docker-held.json";

/// Held containers by id: those this process holds, and those an earlier drd left
/// behind (with no holders) until they are brought back.
struct Registry {
    /// Whether the record file has been read into `held` yet.
    loaded: bool,
    held: BTreeMap<String, Record>,
}

/// A container paused, stopped or brought back, for the daemon's audit log.
#[derive(Debug)]
pub struct HoldEvent {
    /// "pause container", "stop container", "unpause container" or "start container".
    pub action: &'static str,
    /// Whether it was done.
    pub ok: bool,
    /// What and why, for a person reading the log.
    pub detail: String,
}

/// Attempts at bringing a container back before leaving it to the next start.
const RELEASE_ATTEMPTS: u32 = 3;

/// The containers backups hold, and the record file that outlives the process.
pub struct HoldRegistry {
    file: PathBuf,
    registry: Mutex<Registry>,
    /// Where hold events go once the daemon listens ([`HoldRegistry::subscribe`]);
    /// until then, nowhere.
    events: Mutex<Option<UnboundedSender<HoldEvent>>>,
}

impl HoldRegistry {
    /// The registry of a daemon whose state directory is `state_dir`; nothing is read
    /// until it is first used.
    pub fn new(state_dir: &Path) -> HoldRegistry {
        HoldRegistry {
            file: record_path(state_dir),
            registry: Mutex::new(Registry {
                loaded: false,
                held: BTreeMap::new(),
            }),
            events: Mutex::new(None),
        }
    }

    /// The record file.
    pub fn record_file(&self) -> &Path {
        &self.file
    }

    /// Sends every later hold and release to the returned receiver.
    pub fn subscribe(&self) -> UnboundedReceiver<HoldEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Whether a backup of this process holds a container, or is holding or releasing
    /// one right now. Never waits: a busy registry counts as holding.
    pub fn held_by_backups(&self) -> bool {
        let registry = match self.registry.try_lock() {
            Ok(registry) => registry,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return true,
        };
        registry.held.values().any(|r| r.holders > 0)
    }

    pub(super) fn report(&self, action: &'static str, ok: bool, detail: String) {
        if let Some(tx) = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(HoldEvent { action, ok, detail });
        }
    }

    /// The registry, with what the record file lists merged in on first use, so that
    /// every later write keeps the records of an earlier drd until they are dealt with.
    fn lock(&self) -> Result<MutexGuard<'_, Registry>, HoldError> {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if !registry.loaded {
            let left = read(&self.file).map_err(|source| HoldError::RecordUnreadable {
                path: self.file.clone(),
                source,
            })?;
            for record in left {
                registry.held.entry(record.id.clone()).or_insert(record);
            }
            registry.loaded = true;
        }
        Ok(registry)
    }

    /// Holds `id` (named `name`) for one backup: joins the hold if it is held already,
    /// else pauses or stops it if it runs. Returns whether the caller holds it and must
    /// [`release`](Self::release) it once; a container that does not run (or that
    /// someone else paused) is left as it is.
    pub(crate) fn hold(
        &self,
        engine: &Blocking,
        id: &str,
        name: &str,
        action: Action,
        stop_timeout: Duration,
    ) -> Result<bool, HoldError> {
        let file = &self.file;
        let mut registry = self.lock()?;
        let held = &mut registry.held;
        if let Some(record) = held.get_mut(id) {
            record.holders += 1;
            return Ok(true);
        }
        // Its state now, under the lock: not what it was when the job chose it.
        let state = RunState::of(&engine.run(|docker| docker.inspect(id))?);
        if state != RunState::Running {
            tracing::info!(container = name, ?state, "not running: read as it is");
            return Ok(false);
        }
        // Written before acting: a kill between the two leaves a record of a container
        // that was never touched, which the next start finds running and just forgets.
        held.insert(
            id.to_owned(),
            Record {
                id: id.to_owned(),
                name: name.to_owned(),
                action,
                since: drd_core::util::rfc3339(drd_core::util::unix_ms_now()),
                pid: std::process::id(),
                holders: 1,
                held_at: None,
            },
        );
        if let Err(err) = write(file, held) {
            held.remove(id);
            return Err(HoldError::Record {
                path: file.to_owned(),
                source: err,
            });
        }
        let (done, verb) = match action {
            Action::Paused => (engine.run(|docker| docker.pause(id)), "pause container"),
            Action::Stopped => (
                engine.run(|docker| docker.stop(id, stop_timeout)),
                "stop container",
            ),
        };
        if let Err(err) = done {
            self.report(verb, false, format!("{name} for a backup: {err}"));
            // A stop that timed out on the client side may still take effect: undo
            // whatever did, and keep the record (for the next backup or start) if that
            // cannot be done now.
            let undone = held.get(id).map(|record| bring_back(engine, record));
            match undone {
                Some(Err(undo_err)) => {
                    tracing::error!(container = name, cause = %undo_err, "cannot undo a failed {verb}; the record stays");
                    if let Some(record) = held.get_mut(id) {
                        record.holders = 0;
                    }
                }
                _ => {
                    held.remove(id);
                }
            }
            if let Err(write_err) = write(file, held) {
                tracing::warn!(cause = %write_err, file = %file.display(), "cannot update the held-container record");
            }
            return Err(err.into());
        }
        if let Some(record) = held.get_mut(id) {
            record.held_at = Some(std::time::Instant::now());
        }
        tracing::info!(
            container = name,
            action = action.as_str(),
            "container held for a backup"
        );
        self.report(
            verb,
            true,
            format!("{} {name} for a backup", action.as_str()),
        );
        Ok(true)
    }

    /// Releases one hold on `id`; the last holder brings the container back. Failures
    /// are logged, and the record stays so that the next start tries again.
    pub(crate) fn release(&self, engine: &Blocking, id: &str) {
        let file = &self.file;
        let mut registry = match self.lock() {
            Ok(registry) => registry,
            Err(err) => {
                tracing::error!(cause = %err, "cannot release a held container");
                return;
            }
        };
        let held = &mut registry.held;
        let Some(record) = held.get_mut(id) else {
            return;
        };
        record.holders = record.holders.saturating_sub(1);
        if record.holders > 0 {
            return;
        }
        let record = record.clone();
        let mut last_error = None;
        for attempt in 1..=RELEASE_ATTEMPTS {
            match bring_back(engine, &record) {
                Ok(how) => {
                    let held_for = record
                        .held_at
                        .map(|at| {
                            format!(
                                ", {} for {:.1}s",
                                record.action.as_str(),
                                at.elapsed().as_secs_f64()
                            )
                        })
                        .unwrap_or_default();
                    tracing::info!(container = %record.name, "{how} after the backup{held_for}");
                    self.report(
                        undo_verb(record.action),
                        true,
                        format!("{how} {} after the backup{held_for}", record.name),
                    );
                    last_error = None;
                    break;
                }
                Err(err) => {
                    tracing::warn!(container = %record.name, attempt, cause = %err, "cannot bring the container back yet");
                    last_error = Some(err);
                    if attempt < RELEASE_ATTEMPTS {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        if let Some(err) = last_error {
            self.report(
                undo_verb(record.action),
                false,
                format!(
                    "{} stays {} after the backup ({err}); drd resumes it at its next start",
                    record.name,
                    record.action.as_str()
                ),
            );
            tracing::error!(
                container = %record.name,
                cause = %err,
                record = %file.display(),
                "container left {} by the backup; drd resumes it at its next start, or run `docker {} {}`",
                record.action.as_str(),
                if record.action == Action::Paused { "unpause" } else { "start" },
                record.name
            );
            return;
        }
        held.remove(id);
        if let Err(err) = write(file, held) {
            tracing::warn!(cause = %err, file = %file.display(), "cannot update the held-container record");
        }
    }

    /// Brings back every container listed in the record by a drd that did not finish
    /// its backup. Records that cannot be resumed now stay for the next try, except
    /// those of containers that no longer exist. Blocking; call it off the async
    /// runtime.
    pub fn resume_all(&self) -> Vec<Resumed> {
        let mut registry = match self.lock() {
            Ok(registry) => registry,
            Err(err) => {
                return vec![Resumed {
                    name: self.file.display().to_string(),
                    action: "held",
                    outcome: Err(err.to_string()),
                }]
            }
        };
        if !registry.held.values().any(|r| r.holders == 0) {
            return Vec::new();
        }
        match Blocking::connect(&Connect::default()) {
            Ok(engine) => self.resume_locked(&engine, &mut registry),
            Err(err) => registry
                .held
                .values()
                .filter(|r| r.holders == 0)
                .map(|r| Resumed {
                    name: r.name.clone(),
                    action: r.action.as_str(),
                    outcome: Err(err.to_string()),
                })
                .collect(),
        }
    }

    /// [`resume_all`](Self::resume_all) with a connected engine, logged and reported:
    /// what a backup does first, so that records the daemon could not resume at its
    /// start are retried once the engine answers.
    pub(crate) fn resume_leftovers(&self, engine: &Blocking) -> Result<(), HoldError> {
        let mut registry = self.lock()?;
        for resumed in self.resume_locked(engine, &mut registry) {
            match &resumed.outcome {
                Ok(_) => tracing::warn!(container = %resumed.name, "{}", resumed.detail()),
                Err(_) => tracing::error!(container = %resumed.name, "{}", resumed.detail()),
            }
            self.report(
                "resume container",
                resumed.outcome.is_ok(),
                resumed.detail(),
            );
        }
        Ok(())
    }

    fn resume_locked(&self, engine: &Blocking, registry: &mut Registry) -> Vec<Resumed> {
        let leftovers: Vec<Record> = registry
            .held
            .values()
            .filter(|r| r.holders == 0)
            .cloned()
            .collect();
        if leftovers.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::new();
        for record in leftovers {
            let outcome = match bring_back(engine, &record) {
                Ok(how) => Ok(how),
                Err(err) if err.is_no_such_container() => {
                    Ok("gone: the container no longer exists".to_owned())
                }
                Err(err) => Err(err.to_string()),
            };
            if outcome.is_ok() {
                registry.held.remove(&record.id);
            }
            done.push(Resumed {
                name: record.name,
                action: record.action.as_str(),
                outcome,
            });
        }
        if let Err(err) = write(&self.file, &registry.held) {
            tracing::warn!(cause = %err, file = %self.file.display(), "cannot update the held-container record");
        }
        done
    }
}

fn undo_verb(action: Action) -> &'static str {
    match action {
        Action::Paused => "unpause container",
        Action::Stopped => "start container",
    }
}

/// Undoes `record.action` if the container still shows it; says what was done.
fn bring_back(engine: &Blocking, record: &Record) -> Result<String, docker::Error> {
    let id = record.id.as_str();
    let state = RunState::of(&engine.run(|docker| docker.inspect(id))?);
    match (record.action, state) {
        (Action::Paused, RunState::Paused) => {
            engine.run(|docker| docker.unpause(id))?;
            Ok("unpaused".to_owned())
        }
        (Action::Stopped, RunState::NotRunning) => {
            engine.run(|docker| docker.start(id))?;
            Ok("started".to_owned())
        }
        (_, state) => Ok(format!("left alone ({state:?} already)")),
    }
}

/// What [`HoldRegistry::resume_all`] did with one record left by an earlier drd.
#[derive(Debug)]
pub struct Resumed {
    /// The container's name.
    pub name: String,
    /// What the earlier drd had done ("paused" or "stopped").
    pub action: &'static str,
    /// What was done now, or why it could not be.
    pub outcome: Result<String, String>,
}

impl Resumed {
    /// The audit log's wording.
    pub fn detail(&self) -> String {
        match &self.outcome {
            Ok(how) => format!(
                "resumed container {} left {} by an interrupted backup: {how}",
                self.name, self.action
            ),
            Err(err) => format!(
                "container {} left {} by an interrupted backup could not be resumed: {err}",
                self.name, self.action
            ),
        }
    }
}

fn read(file: &Path) -> std::io::Result<Vec<Record>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice::<RecordFile>(&bytes)
            .map(|f| f.containers)
            .map_err(std::io::Error::other),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Writes the registry to `file` atomically, or removes the file when nothing is held.
fn write(file: &Path, held: &BTreeMap<String, Record>) -> std::io::Result<()> {
    if held.is_empty() {
        return match std::fs::remove_file(file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let body = RecordFile {
        containers: held.values().cloned().collect(),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &body).map_err(std::io::Error::other)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The record file for a daemon whose state directory is `state_dir`.
pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORD_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_disappears_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state").join(RECORD_FILE);
        let mut held = BTreeMap::new();
        held.insert(
            "abc".to_owned(),
            Record {
                id: "abc".to_owned(),
                name: "web".to_owned(),
                action: Action::Stopped,
                since: "2026-01-01T00:00:00Z".to_owned(),
                pid: 7,
                holders: 2,
                held_at: None,
            },
        );
        write(&file, &held).unwrap();
        let back = read(&file).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "web");
        assert_eq!(back[0].action, Action::Stopped);
        // A new process holds nothing yet.
        assert_eq!(back[0].holders, 0);
        write(&file, &BTreeMap::new()).unwrap();
        assert!(!file.exists());
        assert!(read(&file).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_record_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(RECORD_FILE);
        std::fs::write(&file, "{ not json").unwrap();
        let resumed = HoldRegistry::new(dir.path()).resume_all();
        assert_eq!(resumed.len(), 1);
        let detail = resumed[0].detail();
        assert!(resumed[0].outcome.is_err(), "{detail}");
        assert!(detail.contains("cannot read"), "{detail}");
        assert!(
            file.exists(),
            "the damaged record must stay for a person to read"
        );
    }
}
