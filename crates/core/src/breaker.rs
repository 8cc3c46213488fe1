//! A circuit breaker in front of something that fails (a service's health probe, an
//! alert receiver): closed while it answers, open after `failures` failures in a row,
//! or when `failure_rate` of the calls within `window` failed, so nobody hammers it,
//! half-open after `open_for` to let `trial_calls` through, and open again for twice
//! as long (up to `max_open_for`) if a trial fails.
//!
//! [`BreakerMemory`] is what is kept in the catalog, so a restart of drd neither
//! closes an open breaker nor forgets how long it has been backing off.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that open it.
    pub failures: u32,
    /// How long it stays open the first time (ms); doubled at each reopening.
    pub open_for_ms: i64,
    /// The longest it stays open (ms).
    pub max_open_for_ms: i64,
    /// Calls let through while half-open; all must succeed to close it.
    pub trial_calls: u32,
    /// Opens it too when at least this share (0 to 1) of the calls within
    /// `window_ms` failed, once the window holds at least `failures` calls.
    pub failure_rate: Option<f64>,
    /// The span `failure_rate` looks back over (ms).
    pub window_ms: i64,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `until_ms`.
    Open {
        /// When it lets trials through (Unix ms).
        until_ms: i64,
    },
    /// Trial calls go through.
    HalfOpen,
}

/// What a call's result (or the passing of time) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerTransition {
    /// It opened (again), until the given time.
    Opened {
        /// When it lets trials through (Unix ms).
        until_ms: i64,
    },
    /// Its open time passed: trials go through.
    HalfOpened,
    /// The trials succeeded.
    Closed,
}

/// What a breaker remembers between calls, and across a restart of drd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerMemory {
    /// Where it stands.
    pub state: BreakerState,
    /// Failures in a row while closed.
    pub failures: u32,
    /// How many times it opened since it was last closed, for the back-off.
    pub opened: u32,
    /// Trials let through while half-open.
    pub trials: u32,
    /// Trials that succeeded while half-open.
    pub successes: u32,
    /// The calls within the window while closed: (Unix ms, succeeded), oldest first.
    pub recent: VecDeque<(i64, bool)>,
}

impl Default for BreakerMemory {
    fn default() -> Self {
        BreakerMemory {
            state: BreakerState::Closed,
            failures: 0,
            opened: 0,
            trials: 0,
            successes: 0,
            recent: VecDeque::new(),
        }
    }
}

/// One breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    memory: BreakerMemory,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker::restore(config, BreakerMemory::default())
    }

    /// A breaker that carries on from `memory` under (maybe new) `config`. Trials
    /// that were out when the memory was taken never report back: they are
    /// forgotten, so the breaker lets new ones through.
    pub fn restore(config: BreakerConfig, mut memory: BreakerMemory) -> Breaker {
        memory.trials = memory.successes;
        Breaker { config, memory }
    }

    /// What to keep of it.
    pub fn memory(&self) -> &BreakerMemory {
        &self.memory
    }

    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        self.memory.state
    }

    /// Whether a call may go out at `now_ms`; a call let through must be followed by
    /// [`Breaker::record`]. Moves an open breaker whose time is up to half-open.
    pub fn allow(&mut self, now_ms: i64) -> (bool, Option<BreakerTransition>) {
        match self.memory.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open { until_ms } if now_ms < until_ms => (false, None),
            BreakerState::Open { .. } => {
                self.memory.state = BreakerState::HalfOpen;
                self.memory.trials = 1;
                self.memory.successes = 0;
                (true, Some(BreakerTransition::HalfOpened))
            }
            BreakerState::HalfOpen if self.memory.trials < self.config.trial_calls => {
                self.memory.trials += 1;
                (true, None)
            }
            BreakerState::HalfOpen => (false, None),
        }
    }

    /// Records how a call that [`Breaker::allow`] let through ended.
    pub fn record(&mut self, ok: bool, now_ms: i64) -> Option<BreakerTransition> {
        match (self.memory.state, ok) {
            (BreakerState::Closed, true) => {
                self.memory.failures = 0;
                self.remember(true, now_ms);
                None
            }
            (BreakerState::Closed, false) => {
                self.memory.failures += 1;
                self.remember(false, now_ms);
                (self.memory.failures >= self.config.failures || self.rate_exceeded())
                    .then(|| self.open(now_ms))
            }
            (BreakerState::HalfOpen, true) => {
                self.memory.successes += 1;
                (self.memory.successes >= self.config.trial_calls).then(|| {
                    self.memory.state = BreakerState::Closed;
                    self.memory.failures = 0;
                    self.memory.opened = 0;
                    BreakerTransition::Closed
                })
            }
            (BreakerState::HalfOpen, false) => Some(self.open(now_ms)),
            // A call that went out before the breaker opened: it changes nothing.
            (BreakerState::Open { .. }, _) => None,
        }
    }

    /// Keeps a closed breaker's call for the failure rate, dropping those older than
    /// the window.
    fn remember(&mut self, ok: bool, now_ms: i64) {
        if self.config.failure_rate.is_none() {
            return;
        }
        let recent = &mut self.memory.recent;
        recent.push_back((now_ms, ok));
        let since = now_ms.saturating_sub(self.config.window_ms);
        while recent.front().is_some_and(|(at, _)| *at <= since) {
            recent.pop_front();
        }
    }

    /// Whether the calls in the window failed at the configured rate or more.
    fn rate_exceeded(&self) -> bool {
        let Some(rate) = self.config.failure_rate else {
            return false;
        };
        let recent = &self.memory.recent;
        if recent.is_empty() || recent.len() < self.config.failures as usize {
            return false;
        }
        let failed = recent.iter().filter(|(_, ok)| !ok).count();
        failed as f64 >= rate * recent.len() as f64
    }

    fn open(&mut self, now_ms: i64) -> BreakerTransition {
        self.memory.recent.clear();
        let doubled = self
            .config
            .open_for_ms
            .saturating_mul(1i64 << self.memory.opened.min(32));
        let until_ms = now_ms.saturating_add(doubled.min(self.config.max_open_for_ms));
        self.memory.opened += 1;
        self.memory.state = BreakerState::Open { until_ms };
        BreakerTransition::Opened { until_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig {
        failures: 3,
        open_for_ms: 10_000,
        max_open_for_ms: 35_000,
        trial_calls: 2,
        failure_rate: None,
        window_ms: 60_000,
    };

    /// Lets a call through at `now` and records `ok`.
    fn call(b: &mut Breaker, now: i64, ok: bool) -> (bool, Vec<BreakerTransition>) {
        let (allowed, first) = b.allow(now);
        let mut seen: Vec<_> = first.into_iter().collect();
        if allowed {
            seen.extend(b.record(ok, now));
        }
        (allowed, seen)
    }

    #[test]
    fn opens_after_failures_in_a_row_and_refuses_until_its_time_is_up() {
        let mut b = Breaker::new(CONFIG);
        assert_eq!(call(&mut b, 0, false), (true, vec![]));
        assert_eq!(
            call(&mut b, 1, true),
            (true, vec![]),
            "a success resets the count"
        );
        call(&mut b, 2, false);
        call(&mut b, 3, false);
        assert_eq!(
            call(&mut b, 4, false),
            (true, vec![BreakerTransition::Opened { until_ms: 10_004 }])
        );
        assert_eq!(call(&mut b, 10_003, true), (false, vec![]));
        assert_eq!(b.state(), BreakerState::Open { until_ms: 10_004 });
    }

    #[test]
    fn half_open_lets_trials_through_and_closes_when_all_succeed() {
        let mut b = Breaker::new(CONFIG);
        for t in 0..3 {
            call(&mut b, t, false);
        }
        assert_eq!(b.allow(10_002), (true, Some(BreakerTransition::HalfOpened)));
        assert_eq!(b.allow(10_002), (true, None), "the second trial");
        assert_eq!(b.allow(10_002), (false, None), "only two trials");
        assert_eq!(b.record(true, 10_003), None);
        assert_eq!(b.record(true, 10_003), Some(BreakerTransition::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
        // Closed again: the back-off starts over.
        for t in 0..3 {
            call(&mut b, 20_000 + t, false);
        }
        assert_eq!(b.state(), BreakerState::Open { until_ms: 30_002 });
    }

    #[test]
    fn a_failed_trial_reopens_for_twice_as_long_up_to_the_cap() {
        let mut b = Breaker::new(CONFIG);
        for t in 0..3 {
            call(&mut b, t, false);
        }
        let mut now = 2;
        let mut open_for = Vec::new();
        for _ in 0..4 {
            let BreakerState::Open { until_ms } = b.state() else {
                panic!("not open: {:?}", b.state());
            };
            open_for.push(until_ms - now);
            now = until_ms;
            let (allowed, seen) = call(&mut b, now, false);
            assert!(allowed);
            assert_eq!(seen[0], BreakerTransition::HalfOpened);
        }
        assert_eq!(open_for, [10_000, 20_000, 35_000, 35_000]);
    }

    const RATE: BreakerConfig = BreakerConfig {
        failures: 4,
        failure_rate: Some(0.5),
        window_ms: 10_000,
        ..CONFIG
    };

    #[test]
    fn a_failure_rate_over_the_window_opens_it_without_failures_in_a_row() {
        let mut b = Breaker::new(RATE);
        // Fail, succeed, fail, succeed: never two in a row, but half of four failed.
        let mut seen = Vec::new();
        for (t, ok) in [(0, false), (1_000, true), (2_000, false)] {
            seen.extend(call(&mut b, t, ok).1);
        }
        assert!(seen.is_empty(), "too few calls in the window yet: {seen:?}");
        assert_eq!(
            call(&mut b, 3_000, true).1,
            vec![],
            "a success never opens it"
        );
        assert_eq!(
            call(&mut b, 4_000, false).1,
            vec![BreakerTransition::Opened { until_ms: 14_000 }]
        );
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut b = Breaker::new(RATE);
        call(&mut b, 0, false);
        call(&mut b, 1_000, false);
        // Ten seconds on, those two have left the window: 1 failure of 4.
        for t in [11_000, 12_000, 13_000] {
            assert_eq!(call(&mut b, t, true).1, vec![]);
        }
        assert_eq!(call(&mut b, 14_000, false).1, vec![]);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn its_memory_survives_a_round_trip_and_lost_trials_are_let_through_again() {
        let mut b = Breaker::new(CONFIG);
        for t in 0..3 {
            call(&mut b, t, false);
        }
        assert_eq!(b.allow(10_002).1, Some(BreakerTransition::HalfOpened));
        assert!(b.allow(10_002).0);
        // drd stops with both trials out; they never report back.
        let text = serde_json::to_string(b.memory()).unwrap();
        let memory: BreakerMemory = serde_json::from_str(&text).unwrap();
        let mut again = Breaker::restore(CONFIG, memory);
        assert_eq!(again.state(), BreakerState::HalfOpen);
        assert_eq!(again.allow(10_500), (true, None), "a new trial goes out");
        again.record(false, 10_500);
        // The back-off carried over: the second opening is twice as long.
        assert_eq!(again.state(), BreakerState::Open { until_ms: 30_500 });
    }

    proptest::proptest! {
        /// Whatever the calls' results: no call goes out while open before its
        /// time, an opening never lasts longer than the cap, and the state only moves
        /// closed -> open -> half-open -> (closed | open).
        #[test]
        fn open_means_no_calls_and_the_back_off_is_capped(
            results in proptest::collection::vec(proptest::bool::ANY, 1..200),
            rate in proptest::option::of(0.1f64..1.0),
        ) {
            let config = BreakerConfig { failure_rate: rate, ..CONFIG };
            let mut b = Breaker::new(config);
            let mut now = 0i64;
            for ok in results {
                now += 1_000;
                let before = b.state();
                let (allowed, transition) = b.allow(now);
                if let BreakerState::Open { until_ms } = before {
                    proptest::prop_assert_eq!(allowed, now >= until_ms);
                }
                if allowed {
                    if let Some(BreakerTransition::Opened { until_ms }) = b.record(ok, now) {
                        proptest::prop_assert!(until_ms - now <= config.max_open_for_ms);
                        proptest::prop_assert!(until_ms - now >= config.open_for_ms.min(config.max_open_for_ms));
                        proptest::prop_assert!(!ok);
                    }
                }
                if transition == Some(BreakerTransition::HalfOpened) {
                    let was_open = matches!(before, BreakerState::Open { .. });
                    proptest::prop_assert!(was_open);
                }
            }
        }
    }
}
