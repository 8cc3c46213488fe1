//! A check that fires once and clears once: separate `fire` and `clear` thresholds
//! (hysteresis), and a confirmation rule so that one odd sample decides nothing.
//!
//! A value between the two thresholds changes nothing: a disk hovering at 95 % used
//! with `fire = 95`, `clear = 90` fires once and stays firing until it really drops
//! below 90. Confirmation is either a time (`for = "2m"`: every sample beyond the
//! threshold for two minutes) or a count (`samples = "3 of 5"`: three of the last five
//! samples beyond it); the same rule confirms the clearing.

use std::collections::VecDeque;

pub use drd_core::config::threshold::{Confirm, Direction, Rule, RuleError};
pub use drd_proto::CheckState;

/// What one sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The check fired: the breach is confirmed.
    Fired,
    /// The check cleared: the return is confirmed.
    Cleared,
}

/// What a check remembers between samples; kept in the catalog, so a restart of drd
/// carries on where it stood.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckMemory {
    /// Where it stands.
    pub state: CheckState,
    /// When the check entered its current state (Unix ms).
    pub since_ms: Option<i64>,
    /// When the current run of samples beyond the threshold began (for `For`).
    pub beyond_since_ms: Option<i64>,
    /// The newest samples, true where beyond the threshold (for `Samples`).
    pub window: VecDeque<bool>,
    /// The newest sample.
    pub last_value: Option<f64>,
}

impl Default for CheckMemory {
    fn default() -> Self {
        CheckMemory {
            state: CheckState::Ok,
            since_ms: None,
            beyond_since_ms: None,
            window: VecDeque::new(),
            last_value: None,
        }
    }
}

/// One check's state, fed a sample at a time.
#[derive(Debug, Clone)]
pub struct Check {
    rule: Rule,
    memory: CheckMemory,
}

impl Check {
    /// A check that starts within bounds. The rule must have passed
    /// [`Rule::validate`]; config loading does that.
    pub fn new(rule: Rule) -> Check {
        Check::restore(rule, CheckMemory::default())
    }

    /// A check that carries on from `memory` (read back after a restart), under
    /// `rule` (which a reload may have changed).
    pub fn restore(rule: Rule, memory: CheckMemory) -> Check {
        Check { rule, memory }
    }

    /// What it remembers, to keep.
    pub fn memory(&self) -> &CheckMemory {
        &self.memory
    }

    /// Where it stands.
    pub fn state(&self) -> CheckState {
        self.memory.state
    }

    /// Since when (Unix ms), once it has seen a sample.
    pub fn since_ms(&self) -> Option<i64> {
        self.memory.since_ms
    }

    /// The newest sample.
    pub fn last_value(&self) -> Option<f64> {
        self.memory.last_value
    }

    /// Takes one sample at `now_ms`; says whether the check fired or cleared with it.
    pub fn observe(&mut self, value: f64, now_ms: i64) -> Option<Transition> {
        self.memory.last_value = Some(value);
        self.memory.since_ms.get_or_insert(now_ms);
        let firing = matches!(self.memory.state, CheckState::Firing | CheckState::Clearing);
        // While within bounds the question is "past fire?"; while firing, "past clear?".
        let beyond = if firing {
            self.rule.past_clear(value)
        } else {
            self.rule.past_fire(value)
        };
        let confirm = if firing {
            self.rule.clear_confirm.unwrap_or(self.rule.confirm)
        } else {
            self.rule.confirm
        };
        let confirmed = self.confirmed(confirm, beyond, now_ms);
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
            self.memory.window.clear();
            self.memory.beyond_since_ms = None;
        }
        if next != self.memory.state {
            self.memory.state = next;
            self.memory.since_ms = Some(now_ms);
        }
        transition
    }

    /// Records whether this sample is beyond the threshold in question and says
    /// whether the rule now holds.
    fn confirmed(&mut self, confirm: Confirm, beyond: bool, now_ms: i64) -> bool {
        match confirm {
            Confirm::For(ms) => {
                if !beyond {
                    self.memory.beyond_since_ms = None;
                    return false;
                }
                let since = *self.memory.beyond_since_ms.get_or_insert(now_ms);
                now_ms.saturating_sub(since) >= ms
            }
            Confirm::Samples { k, n } => {
                self.memory.window.push_back(beyond);
                while self.memory.window.len() > n {
                    self.memory.window.pop_front();
                }
                beyond && self.memory.window.iter().filter(|b| **b).count() >= k
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
        clear_confirm: None,
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
    fn a_clear_confirmation_of_its_own_holds_the_return_longer() {
        // A partition: fires after one minute of failing, clears after three of
        // answering.
        let rule = Rule {
            confirm: Confirm::For(60_000),
            clear_confirm: Some(Confirm::For(180_000)),
            ..DISK
        };
        let values = [96.0, 96.0, 50.0, 50.0, 50.0, 50.0];
        assert_eq!(
            run(rule, &values),
            [(1, Transition::Fired), (5, Transition::Cleared)]
        );
    }

    #[test]
    fn a_check_restored_from_its_memory_carries_on() {
        let rule = Rule {
            confirm: Confirm::Samples { k: 2, n: 3 },
            ..DISK
        };
        let mut check = Check::new(rule);
        assert_eq!(check.observe(96.0, 0), None);
        let kept = serde_json::to_string(check.memory()).unwrap();
        let mut again = Check::restore(rule, serde_json::from_str(&kept).unwrap());
        assert_eq!(again.state(), CheckState::Pending);
        assert_eq!(again.observe(96.0, 60_000), Some(Transition::Fired));
    }

    #[test]
    fn low_is_bad_for_free_space() {
        let rule = Rule {
            direction: Direction::Below,
            fire: 5.0,
            clear: 10.0,
            confirm: Confirm::For(0),
            clear_confirm: None,
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
