//! A hook: a command drd runs at a set moment (a job's `before` and `after`, a
//! service's `drain` and `health`), written the same way wherever it appears.
//!
//! Its timeout is optional here because the default depends on where the hook is
//! used: a job hook may take minutes (stopping an application for a dump), a drain or
//! health hook runs inside an emergency shutdown and gets seconds. Each user passes
//! its default ([`JOB_HOOK_TIMEOUT`], [`SERVICE_HOOK_TIMEOUT`]).

use std::time::Duration;

use serde::Deserialize;

use crate::command::Command;

/// A command with a time limit (no shell).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The program and its arguments.
    pub run: Vec<String>,
    /// How long it may run before it is killed (with everything it started) and
    /// counts as failed; unset, the default of where it is used.
    #[serde(default, with = "super::jobs::optional_duration")]
    pub timeout: Option<Duration>,
}

/// The timeout of a job's `before` and `after` hooks that name none.
pub const JOB_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The timeout of a service's `drain` and `health` hooks that name none.
pub const SERVICE_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

impl HookConfig {
    /// Its timeout, or `default` when the config names none.
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
    }

    /// Its program, as messages name it.
    pub fn program(&self) -> &str {
        self.run.first().map(String::as_str).unwrap_or_default()
    }

    /// The command to run it, bounded by its timeout or `default`.
    pub fn command(&self, default: Duration) -> Command {
        Command::new(&self.run, self.timeout_or(default))
    }

    /// Reports what is wrong with the hook at `field`; `example` shows a `run` line
    /// that fits where it is used.
    pub(super) fn check(&self, field: &str, example: &str, problem: &mut dyn FnMut(&str, String)) {
        if self.run.first().is_none_or(String::is_empty) {
            problem(field, format!("run must name a program, like {example}"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            problem(field, "timeout must be longer than zero".to_owned());
        }
    }
}
