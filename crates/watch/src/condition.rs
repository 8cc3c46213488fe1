//! A check that fires once and clears once: separate `fire` and `clear` thresholds
//! (hysteresis), and a confirmation rule so that one odd sample decides nothing.
//!
//! A value between the two thresholds changes nothing: a disk hovering at 95 % used
//! with `fire = 95`, `clear = 90` fires once and stays firing until it really drops
//! below 90. Confirmation is either a time (`for = "2m"`: every sample beyond the
//! threshold for two minutes) or a count (`samples = "3 of 5"`: three of the last five
//! samples beyond it); the same rule confirms the clearing.

use std::collections::VecDeque;

/// Which side of the thresholds is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// High values are bad (used space, load, pressure).
    Above,
    /// Low values are bad (free inodes, memory available).
    Below,
}

/// How a breach (or a return) is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Every sample beyond the threshold for at least this long (milliseconds; 0
    /// decides on the first sample).
    For(i64),
    /// At least `k` of the last `n` samples beyond the threshold.
    Samples {
        /// How many must be beyond.
        k: usize,
        /// Out of how many of the newest samples.
        n: usize,
    },
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Within bounds.
    Ok,
    /// Beyond `fire`, not yet confirmed.
    Pending,
    /// Fired, and not yet back beyond `clear`.
    Firing,
    /// Firing, back beyond `clear`, not yet confirmed.
    Clearing,
}

/// What one sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The check fired: the breach is confirmed.
    Fired,
    /// The check cleared: the return is confirmed.
    Cleared,
}

/// The rule a check applies; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Which side is bad.
    pub direction: Direction,
    /// The threshold a value must pass to fire.
    pub fire: f64,
    /// The threshold a value must pass back to clear; on the good side of `fire`.
    pub clear: f64,
    /// How both are confirmed.
    pub confirm: Confirm,
}

/// Why a [`Rule`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `clear` is not on the good side of `fire`.
    #[error(
        "clear ({clear}) must be {side} fire ({fire}), or the check could never clear; \
         for example fire = \"95%\", clear = \"90%\" for used space"
    )]
    ClearOnTheWrongSide {
        /// The fire threshold, as given.
        fire: String,
        /// The clear threshold, as given.
        clear: String,
        /// "below" or "above".
        side: &'static str,
    },
    /// `samples = "k of n"` with k = 0 or k > n.
    #[error("samples must be \"K of N\" with 1 <= K <= N; got {k} of {n}")]
    Samples {
        /// K.
        k: usize,
        /// N.
        n: usize,
    },
    /// A negative `for`.
    #[error("for must not be negative")]
    NegativeFor,
}

impl Rule {
    /// Checks that the rule can fire and clear.
    pub fn validate(&self) -> Result<(), RuleError> {
        let wrong_side = match self.direction {
            Direction::Above => self.clear >= self.fire,
            Direction::Below => self.clear <= self.fire,
        };
        if wrong_side || self.fire.is_nan() || self.clear.is_nan() {
            return Err(RuleError::ClearOnTheWrongSide {
                fire: self.fire.to_string(),
                clear: self.clear.to_string(),
                side: match self.direction {
                    Direction::Above => "below",
                    Direction::Below => "above",
                },
            });
        }
        match self.confirm {
            Confirm::Samples { k, n } if k == 0 || k > n => Err(RuleError::Samples { k, n }),
            Confirm::For(ms) if ms < 0 => Err(RuleError::NegativeFor),
            _ => Ok(()),
        }
    }

    fn past_fire(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value >= self.fire,
            Direction::Below => value <= self.fire,
        }
    }

    fn past_clear(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value <= self.clear,
            Direction::Below => value >= self.clear,
        }
    }
}

/// One check's state, fed a sample at a time.
#[derive(Debug, Clone)]
pub struct Check {
    rule: Rule,
    state: CheckState,
    /// When the check entered its current state (Unix ms).
    since_ms: Option<i64>,
    /// When the current run of samples beyond the threshold began (for `For`).
    beyond_since_ms: Option<i64>,
    /// The newest samples, true where beyond the threshold (for `Samples`).
    window: VecDeque<bool>,
    last_value: Option<f64>,
}

impl Check {
    /// A check that starts within bounds. The rule must have passed
    /// [`Rule::validate`]; config loading does that.
    pub fn new(rule: Rule) -> Check {
        Check {
            rule,
            state: CheckState::Ok,
            since_ms: None,
            beyond_since_ms: None,
            window: VecDeque::new(),
            last_value: None,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> CheckState {
        self.state
    }

    /// Since when (Unix ms), once it has seen a sample.
    pub fn since_ms(&self) -> Option<i64> {
        self.since_ms
    }

    /// The newest sample.
    pub fn last_value(&self) -> Option<f64> {
        self.last_value
    }

    /// Takes one sample at `now_ms`; says whether the check fired or cleared with it.
    pub fn observe(&mut self, value: f64, now_ms: i64) -> Option<Transition> {
        self.last_value = Some(value);
        self.since_ms.get_or_insert(now_ms);
        let firing = matches!(self.state, CheckState::Firing | CheckState::Clearing);
        // While within bounds the question is "past fire?"; while firing, "past clear?".
        let beyond = if firing {
            self.rule.past_clear(value)
        } else {
            self.rule.past_fire(value)
        };
        let confirmed = self.confirmed(beyond, now_ms);
        let (next, transition) = match (firing, beyond, confirmed) {
            (false, _, true) => (CheckState::Firing, Some(Transition::Fired)),
            (false, true, false) => (CheckState::Pending, None),
            (false, false, false) => (CheckState::Ok, None),
            (true, _, true) => (CheckState::Ok, Some(Transition::Cleared)),
            (true, true, false) => (CheckState::Clearing, None),
            (true, false, false) => (CheckState::Firing, None),
        };
        if transition.is_some() {
            // The other question starts afresh.
            self.window.clear();
            self.beyond_since_ms = None;
        }
        if next != self.state {
            self.state = next;
            self.since_ms = Some(now_ms);
        }
        transition
    }

    /// Records whether this sample is beyond the threshold in question and says
    /// whether the rule now holds.
    fn confirmed(&mut self, beyond: bool, now_ms: i64) -> bool {
        match self.rule.confirm {
            Confirm::For(ms) => {
                if !beyond {
                    self.beyond_since_ms = None;
                    return false;
                }
                let since = *self.beyond_since_ms.get_or_insert(now_ms);
                now_ms.saturating_sub(since) >= ms
            }
            Confirm::Samples { k, n } => {
                self.window.push_back(beyond);
                while self.window.len() > n {
                    self.window.pop_front();
                }
                beyond && self.window.iter().filter(|b| **b).count() >= k
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DISK: Rule = Rule {
        direction: Direction::Above,
        fire: 95.0,
        clear: 90.0,
        confirm: Confirm::For(0),
    };

    /// Feeds `values` one a minute; the transitions, with the sample index.
    fn run(rule: Rule, values: &[f64]) -> Vec<(usize, Transition)> {
        let mut check = Check::new(rule);
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| check.observe(*v, i as i64 * 60_000).map(|t| (i, t)))
            .collect()
    }

    #[test]
    fn a_disk_hovering_at_the_threshold_fires_once_and_clears_once() {
        let values = [80.0, 95.0, 94.0, 96.0, 91.0, 95.5, 90.5, 89.0, 92.0, 94.9];
        assert_eq!(
            run(DISK, &values),
            [(1, Transition::Fired), (7, Transition::Cleared)]
        );
    }

    #[test]
    fn for_needs_every_sample_beyond_for_the_whole_time() {
        let rule = Rule {
            confirm: Confirm::For(120_000),
            ..DISK
        };
        // One minute apart: 96 at 1, 2 and 3 minutes fires at 3 (two minutes on); the
        // dip at 5 restarts the clock, so the breach at 6..8 fires again only at 8.
        let values = [80.0, 96.0, 96.0, 96.0];
        assert_eq!(run(rule, &values), [(3, Transition::Fired)]);
        let values = [96.0, 96.0, 94.0, 96.0, 96.0, 96.0];
        assert_eq!(run(rule, &values), [(5, Transition::Fired)]);
        let mut check = Check::new(rule);
        check.observe(96.0, 0);
        assert_eq!(check.state(), CheckState::Pending);
        check.observe(50.0, 60_000);
        assert_eq!(check.state(), CheckState::Ok);
    }

    #[test]
    fn samples_k_of_n_fire_on_the_kth_bad_sample_in_the_window() {
        let rule = Rule {
            confirm: Confirm::Samples { k: 3, n: 5 },
            ..DISK
        };
        // Bad at 0, 2, 4: three of the last five at 4.
        let values = [96.0, 10.0, 96.0, 10.0, 96.0];
        assert_eq!(run(rule, &values), [(4, Transition::Fired)]);
        // Bad at 0, 3, 6: never three within five.
        let values = [96.0, 10.0, 10.0, 96.0, 10.0, 10.0, 96.0];
        assert_eq!(run(rule, &values), []);
        // Clearing takes three good samples of five too.
        let values = [96.0, 96.0, 96.0, 50.0, 96.0, 50.0, 50.0];
        assert_eq!(
            run(rule, &values),
            [(2, Transition::Fired), (6, Transition::Cleared)]
        );
    }

    #[test]
    fn low_is_bad_for_free_space() {
        let rule = Rule {
            direction: Direction::Below,
            fire: 5.0,
            clear: 10.0,
            confirm: Confirm::For(0),
        };
        let values = [50.0, 4.0, 7.0, 3.0, 11.0];
        assert_eq!(
            run(rule, &values),
            [(1, Transition::Fired), (4, Transition::Cleared)]
        );
    }

    #[test]
    fn a_rule_that_could_never_clear_is_refused_with_an_example() {
        let err = Rule {
            clear: 96.0,
            ..DISK
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("must be below fire (95)"), "{err}");
        let err = Rule {
            confirm: Confirm::Samples { k: 4, n: 3 },
            ..DISK
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "samples must be \"K of N\" with 1 <= K <= N; got 4 of 3"
        );
        assert!(DISK.validate().is_ok());
    }

    proptest! {
        /// Whatever the values and the rule, fired and cleared alternate, starting with
        /// fired; a fire follows a value past `fire` and a clear a value past `clear`.
        #[test]
        fn transitions_alternate_and_follow_real_crossings(
            values in proptest::collection::vec(80.0f64..100.0, 1..200),
            k in 1usize..4,
            extra in 0usize..3,
            use_samples in any::<bool>(),
            for_minutes in 0i64..4,
        ) {
            let confirm = if use_samples {
                Confirm::Samples { k, n: k + extra }
            } else {
                Confirm::For(for_minutes * 60_000)
            };
            let rule = Rule { confirm, ..DISK };
            let transitions = run(rule, &values);
            for (j, (i, t)) in transitions.iter().enumerate() {
                let expected = if j % 2 == 0 { Transition::Fired } else { Transition::Cleared };
                prop_assert_eq!(*t, expected);
                match t {
                    Transition::Fired => prop_assert!(values[*i] >= 95.0),
                    Transition::Cleared => prop_assert!(values[*i] <= 90.0),
                }
            }
        }

        /// A value that hovers around `fire` but never drops to `clear` fires at most
        /// once and never clears.
        #[test]
        fn hovering_above_clear_fires_at_most_once(
            values in proptest::collection::vec(90.01f64..100.0, 1..300),
        ) {
            let transitions = run(DISK, &values);
            prop_assert!(transitions.len() <= 1, "{:?}", transitions);
            let first_breach = values.iter().position(|v| *v >= 95.0);
            prop_assert_eq!(transitions.first().map(|(i, _)| *i), first_breach);
        }
    }
}
