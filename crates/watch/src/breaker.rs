//! A circuit breaker in front of something that fails (a service's health probe, an
//! alert receiver): closed while it answers, open after `failures` failures in a row,
//! so nobody hammers it, half-open after `open_for` to let `trial_calls` through, and
//! open again for twice as long (up to `max_open_for`) if a trial fails.

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that open it.
    pub failures: u32,
    /// How long it stays open the first time (ms); doubled at each reopening.
    pub open_for_ms: i64,
    /// The longest it stays open (ms).
    pub max_open_for_ms: i64,
    /// Calls let through while half-open; all must succeed to close it.
    pub trial_calls: u32,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Failures in a row while closed.
    failures: u32,
    /// How many times it opened since it was last closed, for the back-off.
    opened: u32,
    /// Trials let through and trials that succeeded, while half-open.
    trials: u32,
    successes: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed,
            failures: 0,
            opened: 0,
            trials: 0,
            successes: 0,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now_ms`; a call let through must be followed by
    /// [`Breaker::record`]. Moves an open breaker whose time is up to half-open.
    pub fn allow(&mut self, now_ms: i64) -> (bool, Option<BreakerTransition>) {
        match self.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open { until_ms } if now_ms < until_ms => (false, None),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                self.trials = 1;
                self.successes = 0;
                (true, Some(BreakerTransition::HalfOpened))
            }
            BreakerState::HalfOpen if self.trials < self.config.trial_calls => {
                self.trials += 1;
                (true, None)
            }
            BreakerState::HalfOpen => (false, None),
        }
    }

    /// Records how a call that [`Breaker::allow`] let through ended.
    pub fn record(&mut self, ok: bool, now_ms: i64) -> Option<BreakerTransition> {
        match (self.state, ok) {
            (BreakerState::Closed, true) => {
                self.failures = 0;
                None
            }
            (BreakerState::Closed, false) => {
                self.failures += 1;
                (self.failures >= self.config.failures).then(|| self.open(now_ms))
            }
            (BreakerState::HalfOpen, true) => {
                self.successes += 1;
                (self.successes >= self.config.trial_calls).then(|| {
                    self.state = BreakerState::Closed;
                    self.failures = 0;
                    self.opened = 0;
                    BreakerTransition::Closed
                })
            }
            (BreakerState::HalfOpen, false) => Some(self.open(now_ms)),
            // A call that went out before the breaker opened: it changes nothing.
            (BreakerState::Open { .. }, _) => None,
        }
    }

    fn open(&mut self, now_ms: i64) -> BreakerTransition {
        let doubled = self
            .config
            .open_for_ms
            .saturating_mul(1i64 << self.opened.min(32));
        let until_ms = now_ms.saturating_add(doubled.min(self.config.max_open_for_ms));
        self.opened += 1;
        self.state = BreakerState::Open { until_ms };
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
}
