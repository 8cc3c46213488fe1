//! A deadman switch's state machine, with healthchecks.io's meaning: a switch is up
//! while pings arrive on time, late once the expected ping is overdue, down once the
//! grace has passed too (or a run that said `--start` did not finish in time, or a
//! ping said it failed), paused while someone said so, and new until its first ping.
//!
//! When the next ping is due comes from a [`Due`]: a period after the last success, or
//! a cron schedule (implemented where the schedules live).

/// When the next success is due after one at `last_ms`.
pub trait Due {
    /// The time (Unix ms) by which the next success ping is expected.
    fn due_after(&self, last_ms: i64) -> i64;
}

/// `period = "5m"`: the next success is due one period after the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub i64);

impl Due for Period {
    fn due_after(&self, last_ms: i64) -> i64 {
        last_ms.saturating_add(self.0)
    }
}

pub use drd_proto::{PingKind, SwitchState};

/// Cron schedules (`schedule = "0 3 * * *"`) and periods as the config gives them.
impl Due for drd_core::config::deadman::Expect {
    fn due_after(&self, last_ms: i64) -> i64 {
        self.due_after_ms(last_ms)
    }
}

/// Why a switch went down, for the alert and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// No success by the deadline plus the grace.
    Overdue,
    /// A `--start` with no success within `max_runtime` (or the grace).
    RunTooLong,
    /// A ping said the job failed.
    Failed,
}

/// What a ping or the passing of time changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchTransition {
    /// Overdue, within the grace.
    WentLate,
    /// Down, and why.
    WentDown(DownReason),
    /// Up again after being late or down.
    Recovered,
}

/// What a switch remembers between pings; kept in the catalog, so a restart of drd
/// carries on where it stood.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchMemory {
    /// Where it stands.
    pub state: SwitchState,
    /// Since when (Unix ms), once it has changed state.
    pub since_ms: Option<i64>,
    /// The newest success ping.
    pub last_success_ms: Option<i64>,
    /// The newest ping of any kind, and its kind.
    pub last_ping: Option<(i64, PingKind)>,
    /// The exit code the newest ping carried.
    pub last_exit_code: Option<i32>,
    /// A run that said `--start` and has not ended: when it started.
    pub run_started_ms: Option<i64>,
    /// That run's id, if the start gave one.
    pub run_id: Option<String>,
    /// A restarted daemon's one grace: nothing goes down before this.
    pub not_down_before_ms: Option<i64>,
}

impl Default for SwitchMemory {
    fn default() -> Self {
        SwitchMemory {
            state: SwitchState::New,
            since_ms: None,
            last_success_ms: None,
            last_ping: None,
            last_exit_code: None,
            run_started_ms: None,
            run_id: None,
            not_down_before_ms: None,
        }
    }
}

/// One switch.
#[derive(Debug, Clone)]
pub struct Switch<D> {
    due: D,
    grace_ms: i64,
    max_runtime_ms: Option<i64>,
    memory: SwitchMemory,
}

impl<D: Due> Switch<D> {
    /// A new switch.
    pub fn new(due: D, grace_ms: i64, max_runtime_ms: Option<i64>) -> Switch<D> {
        Switch::restore(due, grace_ms, max_runtime_ms, SwitchMemory::default())
    }

    /// A switch that carries on from `memory` (read back after a restart), under the
    /// expectation the config gives now (which a reload may have changed).
    pub fn restore(
        due: D,
        grace_ms: i64,
        max_runtime_ms: Option<i64>,
        memory: SwitchMemory,
    ) -> Switch<D> {
        Switch {
            due,
            grace_ms,
            max_runtime_ms,
            memory,
        }
    }

    /// What it remembers, to keep.
    pub fn memory(&self) -> &SwitchMemory {
        &self.memory
    }

    /// Where it stands (as of the last ping or [`Switch::tick`]).
    pub fn state(&self) -> SwitchState {
        self.memory.state
    }

    /// When the next success is due, once there has been one and unless paused.
    pub fn deadline_ms(&self) -> Option<i64> {
        match self.memory.state {
            SwitchState::Paused | SwitchState::New => None,
            _ => self
                .memory
                .last_success_ms
                .map(|last| self.due.due_after(last)),
        }
    }

    /// When a run in progress goes down if it does not end.
    fn run_limit_ms(&self) -> Option<i64> {
        let limit = self.max_runtime_ms.unwrap_or(self.grace_ms);
        self.memory.run_started_ms.map(|s| s.saturating_add(limit))
    }

    /// When it goes down if nothing comes: the deadline plus the grace or the run's
    /// limit, whichever is first, but not before a restart's grace ends. None while
    /// down, paused, or new with no run in progress.
    pub fn down_at_ms(&self) -> Option<i64> {
        if matches!(self.memory.state, SwitchState::Down | SwitchState::Paused) {
            return None;
        }
        let overdue = self.deadline_ms().map(|d| d.saturating_add(self.grace_ms));
        let at = match (overdue, self.run_limit_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(at.max(self.memory.not_down_before_ms.unwrap_or(i64::MIN)))
    }

    /// Takes a ping at `now_ms`. A paused switch notes it but stays paused.
    pub fn ping(&mut self, kind: PingKind, now_ms: i64) -> Option<SwitchTransition> {
        self.ping_with(kind, None, None, now_ms)
    }

    /// Takes a ping that may carry the job's exit code and its run id. A success or
    /// failure ends the run in progress unless both name different run ids.
    pub fn ping_with(
        &mut self,
        kind: PingKind,
        exit_code: Option<i32>,
        run_id: Option<&str>,
        now_ms: i64,
    ) -> Option<SwitchTransition> {
        let m = &mut self.memory;
        m.last_ping = Some((now_ms, kind));
        m.last_exit_code = exit_code;
        let ends_run = match (run_id, m.run_id.as_deref()) {
            (Some(ping), Some(running)) => ping == running,
            _ => true,
        };
        match kind {
            PingKind::Start => {
                m.run_started_ms = Some(now_ms);
                m.run_id = run_id.map(str::to_owned);
                None
            }
            PingKind::Success => {
                m.last_success_ms = Some(now_ms);
                m.not_down_before_ms = None;
                if ends_run {
                    m.run_started_ms = None;
                    m.run_id = None;
                }
                self.set(SwitchState::Up, None, now_ms)
            }
            PingKind::Fail => {
                if ends_run {
                    m.run_started_ms = None;
                    m.run_id = None;
                }
                self.set(SwitchState::Down, Some(DownReason::Failed), now_ms)
            }
        }
    }

    /// Looks at the clock: late, down, or still fine.
    pub fn tick(&mut self, now_ms: i64) -> Option<SwitchTransition> {
        if matches!(self.memory.state, SwitchState::Paused | SwitchState::Down) {
            return None;
        }
        let may_go_down = self.memory.not_down_before_ms.is_none_or(|t| now_ms >= t);
        if may_go_down && self.run_limit_ms().is_some_and(|limit| now_ms >= limit) {
            return self.set(SwitchState::Down, Some(DownReason::RunTooLong), now_ms);
        }
        let deadline = self.deadline_ms()?;
        if now_ms < deadline {
            None
        } else if now_ms < deadline.saturating_add(self.grace_ms) || !may_go_down {
            self.set(SwitchState::Late, None, now_ms)
        } else {
            self.set(SwitchState::Down, Some(DownReason::Overdue), now_ms)
        }
    }

    /// After a restart of drd at `now_ms`: a switch whose deadline (or run limit)
    /// passed while drd was down gets one grace from now instead of a false "down".
    /// Says whether it did, for the audit log.
    pub fn resumed_at(&mut self, now_ms: i64) -> bool {
        let overdue = self
            .deadline_ms()
            .is_some_and(|d| now_ms >= d.saturating_add(self.grace_ms))
            || self.run_limit_ms().is_some_and(|limit| now_ms >= limit);
        let graced =
            overdue && !matches!(self.memory.state, SwitchState::Down | SwitchState::Paused);
        if graced {
            self.memory.not_down_before_ms = Some(now_ms.saturating_add(self.grace_ms));
        }
        graced
    }

    /// Stops alerting until [`Switch::resume`]. Says whether it was not paused yet.
    pub fn pause(&mut self, now_ms: i64) -> bool {
        let changed = self.memory.state != SwitchState::Paused;
        if changed {
            self.memory.state = SwitchState::Paused;
            self.memory.since_ms = Some(now_ms);
        }
        self.memory.run_started_ms = None;
        self.memory.run_id = None;
        self.memory.not_down_before_ms = None;
        changed
    }

    /// Alerts again from the next ping on: new until then. Says whether it was paused.
    pub fn resume(&mut self, now_ms: i64) -> bool {
        let paused = self.memory.state == SwitchState::Paused;
        if paused {
            self.memory.state = SwitchState::New;
            self.memory.since_ms = Some(now_ms);
            self.memory.last_success_ms = None;
        }
        paused
    }

    fn set(
        &mut self,
        next: SwitchState,
        reason: Option<DownReason>,
        now_ms: i64,
    ) -> Option<SwitchTransition> {
        if self.memory.state == SwitchState::Paused || self.memory.state == next {
            return None;
        }
        let was = std::mem::replace(&mut self.memory.state, next);
        self.memory.since_ms = Some(now_ms);
        match next {
            SwitchState::Late => Some(SwitchTransition::WentLate),
            SwitchState::Down => reason.map(SwitchTransition::WentDown),
            SwitchState::Up if matches!(was, SwitchState::Late | SwitchState::Down) => {
                Some(SwitchTransition::Recovered)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Every five minutes, one minute of grace.
    fn switch() -> Switch<Period> {
        Switch::new(Period(5 * MIN), MIN, None)
    }

    #[test]
    fn new_until_the_first_ping_then_late_then_down() {
        let mut s = switch();
        assert_eq!(s.tick(100 * MIN), None);
        assert_eq!(
            s.state(),
            SwitchState::New,
            "a switch never pinged never alerts"
        );
        assert_eq!(s.ping(PingKind::Success, 0), None);
        assert_eq!(s.state(), SwitchState::Up);
        assert_eq!(s.deadline_ms(), Some(5 * MIN));
        assert_eq!(s.tick(5 * MIN - 1), None);
        assert_eq!(s.tick(5 * MIN), Some(SwitchTransition::WentLate));
        assert_eq!(s.tick(6 * MIN - 1), None);
        assert_eq!(
            s.tick(6 * MIN),
            Some(SwitchTransition::WentDown(DownReason::Overdue))
        );
        assert_eq!(s.tick(60 * MIN), None, "down once, not at every tick");
        assert_eq!(
            s.ping(PingKind::Success, 61 * MIN),
            Some(SwitchTransition::Recovered)
        );
    }

    #[test]
    fn a_start_without_success_within_max_runtime_is_down() {
        let mut s = Switch::new(Period(60 * MIN), MIN, Some(10 * MIN));
        s.ping(PingKind::Success, 0);
        s.ping(PingKind::Start, MIN);
        assert_eq!(s.tick(11 * MIN - 1), None);
        assert_eq!(
            s.tick(11 * MIN),
            Some(SwitchTransition::WentDown(DownReason::RunTooLong))
        );
        // Without max_runtime the grace bounds the run.
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        s.ping(PingKind::Start, MIN);
        assert_eq!(
            s.tick(2 * MIN),
            Some(SwitchTransition::WentDown(DownReason::RunTooLong))
        );
    }

    #[test]
    fn a_failure_ping_is_down_at_once_and_a_success_brings_it_back() {
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        assert_eq!(
            s.ping(PingKind::Fail, MIN),
            Some(SwitchTransition::WentDown(DownReason::Failed))
        );
        assert_eq!(
            s.ping(PingKind::Success, 2 * MIN),
            Some(SwitchTransition::Recovered)
        );
    }

    #[test]
    fn paused_alerts_on_nothing_and_resumed_waits_for_a_ping() {
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        s.pause(100 * MIN);
        assert_eq!(s.tick(100 * MIN), None);
        assert_eq!(s.ping(PingKind::Fail, 100 * MIN), None);
        assert_eq!(s.state(), SwitchState::Paused);
        s.resume(150 * MIN);
        assert_eq!(s.state(), SwitchState::New);
        assert_eq!(s.tick(200 * MIN), None);
    }

    #[test]
    fn a_deadline_passed_while_drd_was_down_gets_one_grace_from_the_restart() {
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        // drd was down from minute 1 to minute 30.
        assert!(s.resumed_at(30 * MIN));
        assert_eq!(s.tick(30 * MIN), Some(SwitchTransition::WentLate));
        assert_eq!(s.tick(31 * MIN - 1), None);
        assert_eq!(
            s.tick(31 * MIN),
            Some(SwitchTransition::WentDown(DownReason::Overdue))
        );
        // A ping within that grace keeps it up.
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        s.resumed_at(30 * MIN);
        s.tick(30 * MIN);
        assert_eq!(
            s.ping(PingKind::Success, 30 * MIN + 1),
            Some(SwitchTransition::Recovered)
        );
        // A restart before the deadline changes nothing.
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        assert!(!s.resumed_at(2 * MIN));
    }

    #[test]
    fn a_switch_restored_from_its_memory_carries_on() {
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        s.ping_with(PingKind::Start, None, Some("r1"), 4 * MIN);
        let kept = serde_json::to_string(s.memory()).unwrap();
        let memory: SwitchMemory = serde_json::from_str(&kept).unwrap();
        assert_eq!(memory.run_id.as_deref(), Some("r1"));
        assert_eq!(memory.last_ping, Some((4 * MIN, PingKind::Start)));
        let mut again = Switch::restore(Period(5 * MIN), MIN, None, memory);
        assert_eq!(again.state(), SwitchState::Up);
        assert_eq!(
            again.down_at_ms(),
            Some(5 * MIN),
            "the run's limit comes first"
        );
        assert_eq!(
            again.tick(5 * MIN),
            Some(SwitchTransition::WentDown(DownReason::RunTooLong))
        );
        assert_eq!(again.memory().since_ms, Some(5 * MIN));
    }

    #[test]
    fn an_end_with_another_run_id_leaves_the_run_going() {
        let mut s = Switch::new(Period(60 * MIN), MIN, Some(10 * MIN));
        s.ping(PingKind::Success, 0);
        s.ping_with(PingKind::Start, None, Some("a"), MIN);
        s.ping_with(PingKind::Success, Some(0), Some("b"), 2 * MIN);
        assert_eq!(s.memory().run_started_ms, Some(MIN), "run a still going");
        assert_eq!(s.memory().last_exit_code, Some(0));
        s.ping_with(PingKind::Success, None, Some("a"), 3 * MIN);
        assert_eq!(s.memory().run_started_ms, None);
        // A failure with an exit code ends the run too, and is down.
        s.ping_with(PingKind::Start, None, None, 4 * MIN);
        assert_eq!(
            s.ping_with(PingKind::Fail, Some(3), None, 5 * MIN),
            Some(SwitchTransition::WentDown(DownReason::Failed))
        );
        assert_eq!(s.memory().run_started_ms, None);
        assert_eq!(s.down_at_ms(), None, "already down");
    }

    #[test]
    fn down_at_waits_for_the_restart_grace() {
        let mut s = switch();
        s.ping(PingKind::Success, 0);
        assert_eq!(s.down_at_ms(), Some(6 * MIN));
        assert!(s.resumed_at(30 * MIN));
        assert_eq!(s.down_at_ms(), Some(31 * MIN));
        s.pause(32 * MIN);
        assert_eq!(s.down_at_ms(), None);
        assert!(!s.pause(33 * MIN), "pausing twice changes nothing");
        assert!(s.resume(34 * MIN));
        assert!(!s.resume(35 * MIN));
        assert_eq!(s.memory().since_ms, Some(34 * MIN));
    }

    #[test]
    fn cron_schedules_are_due_at_their_next_slot() {
        use drd_core::config::deadman::Expect;
        use drd_core::config::schedule::Schedule;
        // Quarter hours fall alike in every zone with a whole-quarter offset.
        let quarter = 1_800_000_000_000;
        let mut s = Switch::new(
            Expect::Cron(Box::new(Schedule::parse("*/15 * * * *").unwrap())),
            MIN,
            None,
        );
        s.ping(PingKind::Success, quarter + MIN);
        assert_eq!(s.deadline_ms(), Some(quarter + 15 * MIN));
        assert_eq!(s.tick(quarter + 15 * MIN), Some(SwitchTransition::WentLate));
        assert_eq!(
            s.tick(quarter + 16 * MIN),
            Some(SwitchTransition::WentDown(DownReason::Overdue))
        );
    }
}
