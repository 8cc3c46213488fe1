//! The checkpoint record of one run, read back after drd was restarted: what the drd
//! that died had assessed, which preserve jobs and drain hooks it finished, which
//! services it signalled and which of those it saw stop.
//!
//! `drctl shutdown --resume` and `drctl abort` both read the record here, one way, so
//! a resume and a rollback agree on what happened: a service whose stop step began but
//! never ended was signalled and may still be stopping, and whoever carries on must
//! wait for it (never signal it twice, never start it while it is still going down);
//! likewise a start a rollback began and never saw end may still be coming up.

use std::collections::{BTreeMap, BTreeSet};

use drd_proto::ShutdownPhase;

use super::checkpoints::{StepEnd, StepRow};
use super::drivers::Assessment;
use super::plan::Plan;

/// Where a service's stop stands in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopMark {
    /// Its stop step began (it was, or was about to be, signalled) and never ended:
    /// it may still be stopping.
    InFlight,
    /// Its last stop step ended (stopped, killed, or failed to stop).
    Ended,
}

/// A run's checkpoint record, as the drd that died left it.
#[derive(Debug, Default)]
pub(super) struct Record {
    /// Each service's state before the shutdown touched it.
    before: BTreeMap<String, Assessment>,
    /// Each service a stop was begun on, and where that stop stands.
    stops: BTreeMap<String, StopMark>,
    /// Each service a rollback began to start, and whether that start never ended.
    starts: BTreeMap<String, bool>,
    /// (phase, subject) of every step that ended `done`.
    done: BTreeSet<(&'static str, String)>,
    /// Whether a rollback had begun.
    rolling_back: bool,
    /// The last step that was begun: (phase, subject).
    last: Option<(ShutdownPhase, String)>,
    /// The snapshot each preserve job took, by job.
    snapshots: BTreeMap<String, String>,
}

impl Record {
    /// Reads `steps` (in the order they were recorded).
    pub(super) fn read(steps: &[StepRow]) -> Record {
        let mut record = Record::default();
        for step in steps {
            let phase = step.phase;
            if !step.subject.is_empty() {
                record.last = Some((phase, step.subject.clone()));
            } else if phase != ShutdownPhase::Done {
                record.last = Some((phase, String::new()));
            }
            let done = step.ended == Some(StepEnd::Done);
            if done {
                record.done.insert((phase.as_str(), step.subject.clone()));
            }
            match phase {
                ShutdownPhase::Assess if done => {
                    // The first assessment is the one before anything was touched; a
                    // later drd records the same one again.
                    if let Some(before) = step
                        .record
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok())
                    {
                        record.before.entry(step.subject.clone()).or_insert(before);
                    }
                }
                ShutdownPhase::Stop if !step.subject.is_empty() => {
                    let mark = if step.ended.is_none() {
                        StopMark::InFlight
                    } else {
                        StopMark::Ended
                    };
                    record.stops.insert(step.subject.clone(), mark);
                }
                ShutdownPhase::Preserve if done => {
                    if let (Some(job), Some(id)) = (
                        step.subject.strip_prefix("job "),
                        step.record
                            .as_deref()
                            .and_then(|r| serde_json::from_str::<String>(r).ok()),
                    ) {
                        record.snapshots.insert(job.to_owned(), id);
                    }
                }
                // A recovery's starts are read as a rollback's are.
                ShutdownPhase::Start if !step.subject.is_empty() => {
                    record
                        .starts
                        .insert(step.subject.clone(), step.ended.is_none());
                }
                ShutdownPhase::Rollback => {
                    record.rolling_back = true;
                    if !step.subject.is_empty() {
                        record
                            .starts
                            .insert(step.subject.clone(), step.ended.is_none());
                    }
                    // A rollback step on a service comes after its stop was over.
                    if let Some(mark) = record.stops.get_mut(&step.subject) {
                        *mark = StopMark::Ended;
                    }
                }
                _ => {}
            }
        }
        record
    }

    /// The service's state before the shutdown, if it was assessed.
    pub(super) fn before(&self, service: &str) -> Option<&Assessment> {
        self.before.get(service)
    }

    /// Where the service's stop stands; `None` if no stop was begun on it.
    pub(super) fn stop(&self, service: &str) -> Option<StopMark> {
        self.stops.get(service).copied()
    }

    /// Whether a rollback began to start the service and never saw the start end:
    /// it may still be coming up, and starting it again would make a second copy.
    pub(super) fn start_in_flight(&self, service: &str) -> bool {
        self.starts.get(service).copied().unwrap_or(false)
    }

    /// The snapshot the preserve job `job` took, if it finished.
    pub(super) fn snapshot(&self, job: &str) -> Option<&str> {
        self.snapshots.get(job).map(String::as_str)
    }

    /// Whether a start of the service was begun (by a rollback or a recovery).
    pub(super) fn start_begun(&self, service: &str) -> bool {
        self.starts.contains_key(service)
    }

    /// Whether the step `phase` / `subject` ended `done`.
    pub(super) fn done(&self, phase: ShutdownPhase, subject: &str) -> bool {
        self.done.contains(&(phase.as_str(), subject.to_owned()))
    }

    /// Whether the run was being rolled back when drd died: it must not be resumed.
    pub(super) fn rolling_back(&self) -> bool {
        self.rolling_back
    }

    /// Where the run was when drd died, in the words a live run uses for its safe
    /// points (`stop level 1`, `preserve job db`, `drain hook api #0`).
    pub(super) fn interrupted_at(&self, plan: &Plan) -> String {
        let Some((phase, subject)) = &self.last else {
            return "before its first step".to_owned();
        };
        match phase {
            ShutdownPhase::Stop => match plan.steps.get(subject) {
                Some(step) => format!("stop level {}", step.level),
                None => "stop".to_owned(),
            },
            ShutdownPhase::Preserve | ShutdownPhase::Drain if !subject.is_empty() => {
                format!("{phase} {subject}")
            }
            _ => phase.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(phase: &str, subject: &str, state: &str) -> StepRow {
        StepRow {
            phase: ShutdownPhase::parse(phase).unwrap(),
            subject: subject.to_owned(),
            ended: match state {
                "started" => None,
                "done" => Some(StepEnd::Done),
                _ => Some(StepEnd::Failed),
            },
            detail: String::new(),
            record: None,
        }
    }

    fn assessed(subject: &str, pid: i32) -> StepRow {
        StepRow {
            record: Some(
                serde_json::to_string(&Assessment {
                    running: true,
                    pid: Some(pid),
                    ..Assessment::default()
                })
                .unwrap(),
            ),
            ..step("assess", subject, "done")
        }
    }

    #[test]
    fn a_stop_that_began_and_never_ended_is_in_flight() {
        let record = Record::read(&[
            step("assess", "", "done"),
            assessed("web", 10),
            assessed("app", 11),
            step("stop", "", "done"),
            step("stop", "web", "started"),
            step("stop", "web", "done"),
            step("stop", "app", "started"),
        ]);
        assert_eq!(record.stop("web"), Some(StopMark::Ended));
        assert_eq!(record.stop("app"), Some(StopMark::InFlight));
        assert_eq!(record.stop("db"), None);
        assert_eq!(record.before("app").unwrap().pid, Some(11));
        assert!(record.done(ShutdownPhase::Assess, "web"));
        assert!(!record.done(ShutdownPhase::Stop, "app"));
        assert!(!record.rolling_back());
    }

    #[test]
    fn the_first_assessment_is_kept_and_a_rollback_ends_a_stop() {
        let record = Record::read(&[
            assessed("app", 11),
            step("stop", "app", "started"),
            // A later drd took over: it assessed again (recording the first look)
            // and began the rollback of app.
            assessed("app", 99),
            step("rollback", "", "done"),
            step("rollback", "app", "started"),
        ]);
        assert_eq!(record.before("app").unwrap().pid, Some(11));
        assert_eq!(record.stop("app"), Some(StopMark::Ended));
        assert!(record.rolling_back());
        assert!(record.start_in_flight("app"));
        assert!(!record.start_in_flight("web"));
    }

    #[test]
    fn where_it_was_is_said_as_a_live_run_says_it() {
        let config = drd_core::config::Config::load_str(
            std::path::Path::new("/etc/drd/drd.toml"),
            "[services.web]\ndriver = \"process\"\npidfile = \"/run/web.pid\"\n\
             depends_on = [\"app\"]\n\
             [services.app]\ndriver = \"process\"\npidfile = \"/run/app.pid\"\n",
        )
        .unwrap()
        .config;
        let plan = Plan::build(&config, &[], false).unwrap();
        let at = |steps: &[StepRow]| Record::read(steps).interrupted_at(&plan);
        assert_eq!(at(&[]), "before its first step");
        assert_eq!(
            at(&[step("stop", "", "done"), step("stop", "app", "started")]),
            "stop level 1"
        );
        assert_eq!(
            at(&[step("preserve", "job db", "started")]),
            "preserve job db"
        );
        assert_eq!(at(&[step("assess", "app", "done")]), "assess");
    }

    #[test]
    fn nothing_recorded_is_nothing_done() {
        let record = Record::read(&[]);
        assert!(record.before("app").is_none());
        assert!(!record.rolling_back());
    }
}
