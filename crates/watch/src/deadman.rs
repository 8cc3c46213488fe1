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

/// What a ping said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The job succeeded.
    Success,
    /// The job started; a success is due within `max_runtime` (or the grace).
    Start,
    /// The job failed.
    Fail,
}

/// Where a switch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchState {
    /// No ping yet (or none since it was resumed).
    New,
    /// Pinged on time.
    Up,
    /// The expected ping is overdue, within the grace.
    Late,
    /// Overdue past the grace, a run that never finished, or a failure.
    Down,
    /// Paused by someone: it alerts on nothing.
    Paused,
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

/// One switch.
#[derive(Debug, Clone)]
pub struct Switch<D> {
    due: D,
    grace_ms: i64,
    max_runtime_ms: Option<i64>,
    state: SwitchState,
    last_success_ms: Option<i64>,
    run_started_ms: Option<i64>,
    /// A restarted daemon's one grace: nothing goes down before this.
    not_down_before_ms: Option<i64>,
}

impl<D: Due> Switch<D> {
    /// A new switch.
    pub fn new(due: D, grace_ms: i64, max_runtime_ms: Option<i64>) -> Switch<D> {
        Switch {
            due,
            grace_ms,
            max_runtime_ms,
            state: SwitchState::New,
            last_success_ms: None,
            run_started_ms: None,
            not_down_before_ms: None,
        }
    }

    /// Where it stands (as of the last ping or [`Switch::tick`]).
    pub fn state(&self) -> SwitchState {
        self.state
    }

    /// When the next success is due, once there has been one and unless paused.
    pub fn deadline_ms(&self) -> Option<i64> {
        match self.state {
            SwitchState::Paused | SwitchState::New => None,
            _ => self.last_success_ms.map(|last| self.due.due_after(last)),
        }
    }

    /// Takes a ping at `now_ms`. A paused switch notes it but stays paused.
    pub fn ping(&mut self, ping: Ping, now_ms: i64) -> Option<SwitchTransition> {
        match ping {
            Ping::Start => {
                self.run_started_ms = Some(now_ms);
                None
            }
            Ping::Success => {
                self.last_success_ms = Some(now_ms);
                self.run_started_ms = None;
                self.not_down_before_ms = None;
                self.set(SwitchState::Up, None)
            }
            Ping::Fail => {
                self.run_started_ms = None;
                self.set(SwitchState::Down, Some(DownReason::Failed))
            }
        }
    }

    /// Looks at the clock: late, down, or still fine.
    pub fn tick(&mut self, now_ms: i64) -> Option<SwitchTransition> {
        if matches!(self.state, SwitchState::Paused | SwitchState::Down) {
            return None;
        }
        let may_go_down = self.not_down_before_ms.is_none_or(|t| now_ms >= t);
        if let Some(started) = self.run_started_ms {
            let limit = self.max_runtime_ms.unwrap_or(self.grace_ms);
            if may_go_down && now_ms >= started.saturating_add(limit) {
                return self.set(SwitchState::Down, Some(DownReason::RunTooLong));
            }
        }
        let deadline = self.deadline_ms()?;
        if now_ms < deadline {
            None
        } else if now_ms < deadline.saturating_add(self.grace_ms) || !may_go_down {
            self.set(SwitchState::Late, None)
        } else {
            self.set(SwitchState::Down, Some(DownReason::Overdue))
        }
    }

    /// After a restart of drd at `now_ms`: a switch whose deadline (or run limit)
    /// passed while drd was down gets one grace from now instead of a false "down".
    /// Says whether it did, for the audit log.
    pub fn resumed_at(&mut self, now_ms: i64) -> bool {
        let overdue = self
            .deadline_ms()
            .is_some_and(|d| now_ms >= d.saturating_add(self.grace_ms))
            || self.run_started_ms.is_some_and(|s| {
                now_ms >= s.saturating_add(self.max_runtime_ms.unwrap_or(self.grace_ms))
            });
        if overdue && self.state != SwitchState::Down {
            self.not_down_before_ms = Some(now_ms.saturating_add(self.grace_ms));
        }
        overdue && self.state != SwitchState::Down
    }

    /// Stops alerting until [`Switch::resume`].
    pub fn pause(&mut self) {
        self.state = SwitchState::Paused;
        self.run_started_ms = None;
    }

    /// Alerts again from the next ping on: new until then.
    pub fn resume(&mut self) {
        if self.state == SwitchState::Paused {
            self.state = SwitchState::New;
            self.last_success_ms = None;
        }
    }

    fn set(&mut self, next: SwitchState, reason: Option<DownReason>) -> Option<SwitchTransition> {
        if self.state == SwitchState::Paused || self.state == next {
            return None;
        }
        let was = std::mem::replace(&mut self.state, next);
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
        assert_eq!(s.ping(Ping::Success, 0), None);
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
            s.ping(Ping::Success, 61 * MIN),
            Some(SwitchTransition::Recovered)
        );
    }

    #[test]
    fn a_start_without_success_within_max_runtime_is_down() {
        let mut s = Switch::new(Period(60 * MIN), MIN, Some(10 * MIN));
        s.ping(Ping::Success, 0);
        s.ping(Ping::Start, MIN);
        assert_eq!(s.tick(11 * MIN - 1), None);
        assert_eq!(
            s.tick(11 * MIN),
            Some(SwitchTransition::WentDown(DownReason::RunTooLong))
        );
        // Without max_runtime the grace bounds the run.
        let mut s = switch();
        s.ping(Ping::Success, 0);
        s.ping(Ping::Start, MIN);
        assert_eq!(
            s.tick(2 * MIN),
            Some(SwitchTransition::WentDown(DownReason::RunTooLong))
        );
    }

    #[test]
    fn a_failure_ping_is_down_at_once_and_a_success_brings_it_back() {
        let mut s = switch();
        s.ping(Ping::Success, 0);
        assert_eq!(
            s.ping(Ping::Fail, MIN),
            Some(SwitchTransition::WentDown(DownReason::Failed))
        );
        assert_eq!(
            s.ping(Ping::Success, 2 * MIN),
            Some(SwitchTransition::Recovered)
        );
    }

    #[test]
    fn paused_alerts_on_nothing_and_resumed_waits_for_a_ping() {
        let mut s = switch();
        s.ping(Ping::Success, 0);
        s.pause();
        assert_eq!(s.tick(100 * MIN), None);
        assert_eq!(s.ping(Ping::Fail, 100 * MIN), None);
        assert_eq!(s.state(), SwitchState::Paused);
        s.resume();
        assert_eq!(s.state(), SwitchState::New);
        assert_eq!(s.tick(200 * MIN), None);
    }

    #[test]
    fn a_deadline_passed_while_drd_was_down_gets_one_grace_from_the_restart() {
        let mut s = switch();
        s.ping(Ping::Success, 0);
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
        s.ping(Ping::Success, 0);
        s.resumed_at(30 * MIN);
        s.tick(30 * MIN);
        assert_eq!(
            s.ping(Ping::Success, 30 * MIN + 1),
            Some(SwitchTransition::Recovered)
        );
        // A restart before the deadline changes nothing.
        let mut s = switch();
        s.ping(Ping::Success, 0);
        assert!(!s.resumed_at(2 * MIN));
    }
}
