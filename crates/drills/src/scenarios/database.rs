//! database_recovery: can each database be brought back usable? Each SQLite source is
//! restored alone from its job's newest snapshot into the sandbox and opened with
//! `PRAGMA integrity_check`; each command source's output (a `pg_dump`, say) is
//! restored and handed to its `drill_check` through the daemon's one command runner
//! (with no `drill_check`, only its restore is checked). The RTO runs to the check
//! passing, the RPO is the snapshot's age. A database that restores byte for byte but
//! was backed up damaged fails here, with what SQLite or the check said.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drd_core::command::Command;
use drd_core::config::{Config, SourceConfig};
use drd_proto::{Category, SnapshotSelector};

use super::restoring::{self, blocking, job_target, restore_checked, Checked};
use super::{Drill, Finding};

/// One database of a job, as drilled.
enum Database<'a> {
    /// A SQLite file, stored under its own path.
    Sqlite { path: &'a Path },
    /// A command's output, stored as `/commands/NAME`, and the check to run on it.
    Command {
        name: &'a str,
        check: &'a [String],
        timeout: Duration,
    },
}

impl Database<'_> {
    /// The databases among `sources`.
    fn of(sources: &[SourceConfig]) -> Vec<Database<'_>> {
        sources
            .iter()
            .filter_map(|source| match source {
                SourceConfig::Sqlite { path } => Some(Database::Sqlite { path }),
                SourceConfig::Command {
                    name,
                    drill_check,
                    timeout,
                    ..
                } => Some(Database::Command {
                    name,
                    check: drill_check,
                    timeout: *timeout,
                }),
                SourceConfig::Path { .. } | SourceConfig::Docker(_) => None,
            })
            .collect()
    }

    /// Where it is in the snapshot.
    fn stored(&self) -> PathBuf {
        match self {
            Database::Sqlite { path } => path.to_path_buf(),
            Database::Command { name, .. } => Path::new("/commands").join(name),
        }
    }

    /// How the drill names it after the job.
    fn shown(&self) -> String {
        match self {
            Database::Sqlite { path } => path.display().to_string(),
            Database::Command { name, .. } => format!("commands/{name}"),
        }
    }
}

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    for (job, job_config) in &drill.config.config.jobs {
        let databases = Database::of(&job_config.sources);
        if databases.is_empty() {
            continue;
        }
        let target = job_target(drill, Category::Database, job_config);
        for database in databases {
            if drill.cancelled() {
                return found;
            }
            let started = Instant::now();
            let subject = format!("job {job} {}", database.shown());
            drill.step("database_recovery", format!("restore {subject}"));
            // Opening the tier is part of every recovery, so of every RTO.
            let checked = match restoring::open_landing(drill, job).await {
                Ok(opened) => {
                    let stored = database.stored();
                    // A database alone needs about its own size, not the snapshot's.
                    let need = match database {
                        Database::Sqlite { path } => std::fs::metadata(path).ok().map(|m| m.len()),
                        Database::Command { .. } => None,
                    };
                    restore_checked(
                        drill,
                        &opened,
                        job,
                        SnapshotSelector::Latest,
                        vec![stored],
                        &subject,
                        need,
                    )
                    .await
                }
                Err(why) => Err(why),
            };
            let outcome = match checked {
                Ok(checked) => check(drill, &database, &checked)
                    .await
                    .map(|said| (restoring::measured(drill, started, &checked.snapshot), said)),
                Err(why) => Err(why),
            };
            found.push(match outcome {
                Ok((measured, said)) => {
                    Finding::measured(Category::Database, subject, started, measured, target, said)
                }
                Err(why) => Finding::failed(Category::Database, subject, started, why),
            });
        }
    }
    found
}

/// Checks the restored database; returns the evidence, or why it is not usable.
async fn check(
    drill: &Drill,
    database: &Database<'_>,
    checked: &Checked,
) -> Result<String, String> {
    let stored = database.stored();
    let restored = checked
        .dir
        .path()
        .join(stored.strip_prefix("/").unwrap_or(&stored));
    let short = checked.snapshot.short_id().to_owned();
    match database {
        Database::Sqlite { path } => {
            let file = restored.clone();
            let problems = blocking(move || drd_backup::backup::integrity_problems(&file))
                .await
                .map_err(|why| format!("restored from snapshot {short}, but {why}"))?;
            if problems.is_empty() {
                return Ok(format!("{}; PRAGMA integrity_check: ok", checked.evidence));
            }
            Err(format!(
                "snapshot {short} (taken {}) holds {} damaged: PRAGMA integrity_check says: \
                 {}; the live database may be damaged too: check it with `sqlite3 {} \
                 \"PRAGMA integrity_check\"`, and back it up again once it is sound",
                drd_proto::text::time(checked.snapshot.time_ms),
                path.display(),
                problems.join("; "),
                path.display()
            ))
        }
        Database::Command { check: [], .. } => Ok(format!(
            "{}; no drill_check is set, so only its restore was checked",
            checked.evidence
        )),
        Database::Command { check, timeout, .. } => {
            let file = restored.display().to_string();
            let argv: Vec<String> = check.iter().map(|a| a.replace("{file}", &file)).collect();
            let mut command = Command::new(&argv, *timeout).cancel_on(drill.token.clone());
            if !check.iter().any(|a| a.contains("{file}")) {
                command = command.stdin_file(&restored);
            }
            let program = command.program().to_owned();
            match command.run().await {
                Ok(finished) if finished.success() => Ok(format!(
                    "{}; drill_check {program} passed",
                    checked.evidence
                )),
                Ok(finished) => Err(format!(
                    "restored from snapshot {short}, but its drill_check {program} {finished}"
                )),
                Err(err) => Err(format!(
                    "restored from snapshot {short}, but its drill_check did not run: {err}"
                )),
            }
        }
    }
}

/// What database_recovery drills under `config`: each job's SQLite and command
/// sources.
pub(super) fn subjects(config: &Config) -> Vec<String> {
    config
        .jobs
        .iter()
        .flat_map(|(job, j)| {
            Database::of(&j.sources)
                .into_iter()
                .map(move |d| format!("job {job} {}", d.shown()))
        })
        .collect()
}
