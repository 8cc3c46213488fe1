//! `[deadman.NAME]`: deadman switches, each expecting a ping (`drctl heartbeat NAME`)
//! every `period` or on a cron `schedule`, with a `grace` before it is down, an
//! optional `max_runtime` for runs that say `--start`, the actions it takes when it
//! goes down, and the users and groups who may ping it (and only it) without a role.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::jobs::optional_duration;
use super::policy::{check_actions, ActionConfig};
use super::schedule::Schedule;
use super::validate::{resolve_group, resolve_user};
use super::{Config, GroupRef, LoadedConfig, Problem, UserRef};

/// The period of a switch that names neither `period` nor `schedule`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5 * 60);
/// The grace of a switch that names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// One `[deadman.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadmanConfig {
    /// A success ping is due this long after the last one (default 5m, at least 1s).
    #[serde(default, with = "optional_duration")]
    pub period: Option<Duration>,
    /// Or: a success ping is due at each time of this cron expression (local time),
    /// like a job's `schedule`.
    pub schedule: Option<String>,
    /// How long past the deadline the switch is late before it is down (default 1m);
    /// also how long a run that said `--start` may take when `max_runtime` is unset.
    #[serde(default, with = "optional_duration")]
    pub grace: Option<Duration>,
    /// How long a run that said `--start` may take before the switch is down.
    #[serde(default, with = "optional_duration")]
    pub max_runtime: Option<Duration>,
    /// What going down does.
    #[serde(default)]
    pub on_down: Vec<ActionConfig>,
    /// Users (names or uids) who may ping this switch, and only it, with no role.
    #[serde(default)]
    pub users: Vec<UserRef>,
    /// Groups (names or gids) whose members may ping this switch, and only it.
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    /// `users` and `groups` as numbers, filled in when the config is loaded.
    #[serde(skip)]
    pub pingers: (Vec<u32>, Vec<u32>),
}

/// When a switch's next success is due.
#[derive(Debug, Clone)]
pub enum Expect {
    /// One period after the last success.
    Every(Duration),
    /// At the first time of the schedule after the last success (local time).
    Cron(Box<Schedule>),
}

impl Expect {
    /// The time (Unix ms) the next success is due after one at `last_ms`.
    pub fn due_after_ms(&self, last_ms: i64) -> i64 {
        match self {
            Expect::Every(period) => {
                last_ms.saturating_add(i64::try_from(period.as_millis()).unwrap_or(i64::MAX))
            }
            Expect::Cron(schedule) => schedule
                .next_run_ms(&chrono::Local, 0, last_ms)
                .unwrap_or(i64::MAX),
        }
    }
}

impl DeadmanConfig {
    /// When pings are due. A loaded config's schedule parses; one that does not is
    /// taken as the default period.
    pub fn expect(&self) -> Expect {
        match &self.schedule {
            Some(text) => Schedule::parse(text)
                .map_or(Expect::Every(DEFAULT_PERIOD), |s| Expect::Cron(Box::new(s))),
            None => Expect::Every(self.period.unwrap_or(DEFAULT_PERIOD)),
        }
    }

    /// The grace, or its default.
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(DEFAULT_GRACE)
    }

    /// Its expectation in words: `every 5m, grace 1m`, `cron 0 3 * * *, grace 1h, max
    /// runtime 2h`.
    pub fn expects(&self) -> String {
        let words = |d: Duration| humantime::format_duration(d).to_string();
        let mut text = match self.expect() {
            Expect::Every(period) => format!("every {}", words(period)),
            Expect::Cron(schedule) => format!("cron {}", schedule.text()),
        };
        text.push_str(&format!(", grace {}", words(self.grace())));
        if let Some(max) = self.max_runtime {
            text.push_str(&format!(", max runtime {}", words(max)));
        }
        text
    }

    /// How long a run that said `--start` may take, in words: `2h (max_runtime)` or
    /// `1m (the grace)`.
    pub fn run_limit_in_words(&self) -> String {
        match self.max_runtime {
            Some(max) => format!("{} (max_runtime)", humantime::format_duration(max)),
            None => format!("{} (the grace)", humantime::format_duration(self.grace())),
        }
    }

    /// Whether the peer `uid` with `groups` is among the switch's own pingers.
    pub fn admits(&self, uid: u32, groups: &[u32]) -> bool {
        let (uids, gids) = &self.pingers;
        uids.contains(&uid) || groups.iter().any(|g| gids.contains(g))
    }
}

impl LoadedConfig {
    /// Switch `name`, or "no deadman switch named X; the config has a, b".
    pub fn switch(&self, name: &str) -> Result<&DeadmanConfig, String> {
        self.config
            .deadman
            .get(name)
            .ok_or_else(|| super::unknown("deadman switch", name, self.config.deadman.keys()))
    }
}

/// Every switch the peer `uid` with `groups` may ping as one of its own pingers.
pub fn switches_of<'a>(
    deadman: &'a BTreeMap<String, DeadmanConfig>,
    uid: u32,
    groups: &[u32],
) -> Vec<&'a str> {
    deadman
        .iter()
        .filter(|(_, s)| s.admits(uid, groups))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Checks every switch, naming each mistake with its field, and resolves each
/// switch's `users` and `groups` to numbers.
pub(super) fn problems(config: &mut Config, text: &str) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut problem = |field: &str, message: String| {
        found.push(Problem {
            field: field.to_owned(),
            line: super::locate::line_of(text, field),
            message,
        });
    };
    let mut resolved = Vec::new();
    for (name, switch) in &config.deadman {
        let at = format!("deadman.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problem(
                &at,
                format!(
                    "{name:?} is not a usable switch name: use letters, digits, '-', '_' and '.', \
                     like [deadman.nightly-export]"
                ),
            );
        }
        match (&switch.period, &switch.schedule) {
            (Some(_), Some(_)) => problem(
                &format!("{at}.schedule"),
                "give period or schedule, not both".to_owned(),
            ),
            (Some(period), None) if *period < Duration::from_secs(1) => problem(
                &format!("{at}.period"),
                format!(
                    "{} is too short; a period is at least \"1s\" (\"5m\" is the default)",
                    humantime::format_duration(*period)
                ),
            ),
            (None, Some(schedule)) => {
                if let Err(message) = Schedule::parse(schedule) {
                    problem(&format!("{at}.schedule"), message);
                }
            }
            _ => {}
        }
        for (field, value) in [("grace", switch.grace), ("max_runtime", switch.max_runtime)] {
            if value.is_some_and(|d| d.is_zero()) {
                problem(
                    &format!("{at}.{field}"),
                    "must be longer than zero".to_owned(),
                );
            }
        }
        check_actions(
            config,
            &format!("{at}.on_down"),
            &switch.on_down,
            &mut problem,
        );
        let mut uids = Vec::new();
        let mut gids = Vec::new();
        for (i, user) in switch.users.iter().enumerate() {
            match resolve_user(user) {
                Ok(uid) => uids.push(uid),
                Err(message) => problem(&format!("{at}.users[{i}]"), message),
            }
        }
        for (i, group) in switch.groups.iter().enumerate() {
            match resolve_group(group) {
                Ok(gid) => gids.push(gid),
                Err(message) => problem(&format!("{at}.groups[{i}]"), message),
            }
        }
        resolved.push((name.clone(), (uids, gids)));
    }
    for (name, pingers) in resolved {
        if let Some(switch) = config.deadman.get_mut(&name) {
            switch.pingers = pingers;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::ConfigError;
    use super::*;

    fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
        Config::load_str(Path::new("/etc/drd/drd.toml"), text)
    }

    fn problems_of(text: &str) -> Vec<Problem> {
        match load(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_words() {
        let loaded = load("[deadman.export]\n").unwrap();
        let switch = loaded.switch("export").unwrap();
        assert_eq!(switch.expects(), "every 5m, grace 1m");
        assert!(matches!(switch.expect(), Expect::Every(d) if d == DEFAULT_PERIOD));
        let loaded = load(
            "[deadman.nightly]\nschedule = \"0 3 * * *\"\ngrace = \"1h\"\nmax_runtime = \"2h\"\n\
             users = [0]\ngroups = [\"root\"]\non_down = [{ alert = \"critical\" }]\n",
        )
        .unwrap();
        let switch = loaded.switch("nightly").unwrap();
        assert_eq!(switch.expects(), "cron 0 3 * * *, grace 1h, max runtime 2h");
        assert_eq!(switch.pingers, (vec![0], vec![0]));
        assert!(switch.admits(0, &[]));
        assert!(switch.admits(1234, &[0]));
        assert!(!switch.admits(1234, &[5]));
        let err = loaded.switch("nope").unwrap_err();
        assert_eq!(
            err,
            "no deadman switch named \"nope\"; the config has nightly"
        );
    }

    #[test]
    fn a_period_is_one_second_or_more() {
        assert!(load("[deadman.a]\nperiod = \"1s\"\n").is_ok());
        let problems = problems_of("[deadman.a]\nperiod = \"500ms\"\n");
        assert_eq!(problems[0].field, "deadman.a.period");
        assert_eq!(problems[0].line, Some(2));
        assert!(
            problems[0].message.contains("at least \"1s\""),
            "{problems:?}"
        );
    }

    #[test]
    fn every_mistake_is_named_with_its_field() {
        let problems = problems_of(
            "[deadman.a]\nperiod = \"5m\"\nschedule = \"hourly\"\n\
             [deadman.b]\nschedule = \"every tuesday\"\ngrace = \"0s\"\n\
             users = [\"no-such-user-drd\"]\ngroups = [\"no-such-group-drd\"]\n\
             on_down = [{ backup = [\"nope\"] }]\n\
             [deadman.\"bad name\"]\n",
        );
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "deadman.a.schedule",
                "deadman.b.schedule",
                "deadman.b.grace",
                "deadman.b.on_down[0].backup",
                "deadman.b.users[0]",
                "deadman.b.groups[0]",
                "deadman.bad name",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn cron_deadlines_are_the_next_slot_after_the_last_success() {
        let expect = Expect::Cron(Box::new(Schedule::parse("*/15 * * * *").unwrap()));
        // 15-minute slots are the same in every zone with whole-quarter offsets.
        let last = 1_800_000_000_000 + 60_000; // a minute past a quarter hour
        let due = expect.due_after_ms(last);
        assert_eq!(due - last, 14 * 60_000);
        assert_eq!(
            Expect::Every(Duration::from_secs(2)).due_after_ms(1000),
            3000
        );
    }
}
