//! `[policy]` and the actions a monitor condition or deadman switch names: what drd
//! does when something fires, each action with a cooldown.
//!
//! An action table is flat (`{ shutdown = "network_partition", only = ["api"] }`)
//! and must name exactly one kind; like the service tables, the checks refuse keys
//! that do not belong to the kind given, naming the field.

use std::time::Duration;

use drd_proto::{Severity, ShutdownTrigger};
use serde::Deserialize;

use super::jobs::optional_duration;
use super::Config;

/// The `[policy]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Lets monitors and deadman switches start an emergency shutdown. Off by
    /// default: a `shutdown` action is then logged and audited as "would shut down"
    /// with its evidence, and alerts, but stops nothing.
    pub automatic_shutdown: bool,
}

/// How long an action waits before it runs again when nothing says otherwise.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5 * 60);
/// How long an `exec` action may run when nothing says otherwise.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// One action as written: exactly one of `alert`, `backup`, `emergency_backup`,
/// `shutdown`, `exec`, with the keys that kind reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Alert with this severity (to the journal and the audit log).
    pub alert: Option<Severity>,
    /// Run these backup jobs.
    pub backup: Option<Vec<String>>,
    /// Run every critical job, in priority order (`emergency_backup = true`).
    pub emergency_backup: Option<bool>,
    /// Start an emergency shutdown with this trigger (only with `[policy]
    /// automatic_shutdown = true`).
    pub shutdown: Option<String>,
    /// shutdown: only these services (and what depends on them).
    #[serde(default)]
    pub only: Vec<String>,
    /// shutdown: skip preserve and drain, kill after the short grace.
    #[serde(default)]
    pub force: bool,
    /// Run this command (no shell); the condition goes to its stdin as JSON.
    pub exec: Option<Vec<String>>,
    /// exec: how long it may run (default 60s).
    #[serde(default, with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// The least time between two runs of this action (default 5m).
    #[serde(default, with = "optional_duration")]
    pub cooldown: Option<Duration>,
}

/// What an action does, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Alert with a severity.
    Alert(Severity),
    /// Run these jobs.
    Backup(Vec<String>),
    /// Run every critical job.
    EmergencyBackup,
    /// Start an emergency shutdown.
    Shutdown {
        /// Why, as the shutdown records it.
        trigger: ShutdownTrigger,
        /// Only these services; all when empty.
        only: Vec<String>,
        /// Forced.
        force: bool,
    },
    /// Run a command with the condition on stdin.
    Exec {
        /// The command and its arguments.
        argv: Vec<String>,
        /// How long it may run.
        timeout: Duration,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Alert(severity) => write!(f, "alert {}", severity.as_str()),
            Action::Backup(jobs) => write!(f, "backup {}", jobs.join(" ")),
            Action::EmergencyBackup => f.write_str("emergency_backup"),
            Action::Shutdown {
                trigger,
                only,
                force,
            } => {
                write!(f, "shutdown {trigger}")?;
                if !only.is_empty() {
                    write!(f, " only {}", only.join(" "))?;
                }
                if *force {
                    f.write_str(" forced")?;
                }
                Ok(())
            }
            Action::Exec { argv, .. } => write!(f, "exec {}", argv.join(" ")),
        }
    }
}

impl ActionConfig {
    /// The action this table names, or what is wrong with it.
    pub fn action(&self) -> Result<Action, String> {
        let kinds = [
            self.alert.is_some(),
            self.backup.is_some(),
            self.emergency_backup.is_some(),
            self.shutdown.is_some(),
            self.exec.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "an action names exactly one of alert, backup, emergency_backup, shutdown, exec; \
                 for example { alert = \"critical\" }"
                    .to_owned(),
            );
        }
        if self.shutdown.is_none() && (!self.only.is_empty() || self.force) {
            return Err("only and force belong to a shutdown action".to_owned());
        }
        if self.exec.is_none() && self.timeout.is_some() {
            return Err("timeout belongs to an exec action".to_owned());
        }
        if let Some(severity) = self.alert {
            return Ok(Action::Alert(severity));
        }
        if let Some(jobs) = &self.backup {
            if jobs.is_empty() {
                return Err("backup names no job; list the jobs to run".to_owned());
            }
            return Ok(Action::Backup(jobs.clone()));
        }
        if let Some(on) = self.emergency_backup {
            return if on {
                Ok(Action::EmergencyBackup)
            } else {
                Err("emergency_backup = false does nothing; leave the action out".to_owned())
            };
        }
        if let Some(trigger) = &self.shutdown {
            return Ok(Action::Shutdown {
                trigger: ShutdownTrigger::parse(trigger)?,
                only: self.only.clone(),
                force: self.force,
            });
        }
        match &self.exec {
            Some(argv) if argv.first().is_some_and(|p| !p.is_empty()) => Ok(Action::Exec {
                argv: argv.clone(),
                timeout: self.timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            }),
            _ => Err("exec names no command; write exec = [\"/path/to/cmd\", \"arg\"]".to_owned()),
        }
    }

    /// The least time between two runs.
    pub fn cooldown(&self) -> Duration {
        self.cooldown.unwrap_or(DEFAULT_COOLDOWN)
    }
}

/// Checks every action in `actions` (found at `field`): one kind each, jobs and
/// services that exist.
pub fn check_actions(
    config: &Config,
    field: &str,
    actions: &[ActionConfig],
    problem: &mut dyn FnMut(&str, String),
) {
    for (i, action) in actions.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match action.action() {
            Err(message) => problem(&at, message),
            Ok(Action::Backup(jobs)) => {
                for job in jobs.iter().filter(|j| !config.jobs.contains_key(*j)) {
                    problem(
                        &format!("{at}.backup"),
                        super::unknown("job", job, config.jobs.keys()),
                    );
                }
            }
            Ok(Action::Shutdown { only, .. }) => {
                for service in only.iter().filter(|s| !config.services.contains_key(*s)) {
                    problem(
                        &format!("{at}.only"),
                        super::unknown("service", service, config.services.keys()),
                    );
                }
            }
            Ok(Action::EmergencyBackup) if !config.jobs.values().any(|j| j.critical) => problem(
                &at,
                "emergency_backup runs the jobs marked critical = true, and none is".to_owned(),
            ),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(text: &str) -> Result<Action, String> {
        toml::from_str::<ActionConfig>(text)
            .map_err(|e| e.to_string())?
            .action()
    }

    #[test]
    fn each_kind_reads_its_own_keys() {
        assert_eq!(
            action("alert = \"critical\""),
            Ok(Action::Alert(Severity::Critical))
        );
        assert_eq!(
            action("shutdown = \"network_partition\"\nonly = [\"api\"]"),
            Ok(Action::Shutdown {
                trigger: ShutdownTrigger::NetworkPartition,
                only: vec!["api".to_owned()],
                force: false
            })
        );
        assert!(action("alert = \"critical\"\nonly = [\"api\"]")
            .unwrap_err()
            .contains("only and force belong to a shutdown"));
        assert!(action("alert = \"critical\"\nbackup = [\"db\"]")
            .unwrap_err()
            .contains("exactly one of"));
        assert!(action("shutdown = \"nope\"")
            .unwrap_err()
            .contains("unknown trigger"));
    }
}
