//! Thresholds with hysteresis: the rule a monitor check applies (separate `fire` and
//! `clear` levels, confirmed `for` a time or `k of n` samples), and its TOML shape.
//!
//! The rule lives with the config so that `check-config` refuses a rule that could
//! never clear; the state machine that applies it is `drd_watch::condition`.

use std::time::Duration;

use serde::Deserialize;

use super::policy::ActionConfig;

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

/// The rule a check applies; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Which side is bad.
    pub direction: Direction,
    /// The threshold a value must pass to fire.
    pub fire: f64,
    /// The threshold a value must pass back to clear; on the good side of `fire`.
    pub clear: f64,
    /// How a breach is confirmed (and the return too, unless `clear_confirm`).
    pub confirm: Confirm,
    /// How the return is confirmed, when it differs (a partition's `clear_hold`).
    pub clear_confirm: Option<Confirm>,
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
        for confirm in [Some(self.confirm), self.clear_confirm]
            .into_iter()
            .flatten()
        {
            match confirm {
                Confirm::Samples { k, n } if k == 0 || k > n => {
                    return Err(RuleError::Samples { k, n })
                }
                Confirm::For(ms) if ms < 0 => return Err(RuleError::NegativeFor),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `value` is past the fire threshold.
    pub fn past_fire(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value >= self.fire,
            Direction::Below => value <= self.fire,
        }
    }

    /// Whether `value` is back past the clear threshold.
    pub fn past_clear(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value <= self.clear,
            Direction::Below => value >= self.clear,
        }
    }
}

/// A threshold as written in the config: `"95%"` or a plain number (`4.0` for load).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level(pub f64);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Level, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Number(n) => Ok(Level(n)),
            Raw::Text(text) => {
                let trimmed = text.trim();
                let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim();
                number.parse::<f64>().map(Level).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not a level; write it like \"95%\" or 4.0"
                    ))
                })
            }
        }
    }
}

/// `samples = "3 of 5"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplesSpec {
    /// K: how many must be beyond.
    pub k: usize,
    /// N: of how many of the newest samples.
    pub n: usize,
}

impl<'de> Deserialize<'de> for SamplesSpec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<SamplesSpec, D::Error> {
        let text = String::deserialize(de)?;
        let parsed = text
            .split_once(" of ")
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        parsed.map(|(k, n)| SamplesSpec { k, n }).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a sample rule; write it like \"3 of 5\""
            ))
        })
    }
}

/// One check's thresholds as configured: `{ fire = "95%", clear = "90%", for = "2m" }`.
/// A check confirms with `for` or `samples` (not both); with neither, the first
/// sample past a threshold decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// The mount point, for checks that are per mount (`disk`, `inodes`).
    pub mount: Option<std::path::PathBuf>,
    /// The level that fires the check.
    pub fire: Level,
    /// The level that clears it; on the good side of `fire`.
    pub clear: Level,
    /// Every sample past the threshold for this long.
    #[serde(default, rename = "for", with = "super::jobs::optional_duration")]
    pub for_: Option<Duration>,
    /// K of the newest N samples past the threshold.
    pub samples: Option<SamplesSpec>,
    /// What to do when it fires; by default its monitor's `on_fire`.
    pub on_fire: Option<Vec<ActionConfig>>,
}

impl ThresholdConfig {
    /// The rule this check applies, bad on the `direction` side; an error says what
    /// to change.
    pub fn rule(&self, direction: Direction) -> Result<Rule, String> {
        let confirm = match (self.for_, self.samples) {
            (Some(_), Some(_)) => {
                return Err("give either for or samples, not both".to_owned());
            }
            (Some(span), None) => Confirm::For(i64::try_from(span.as_millis()).unwrap_or(i64::MAX)),
            (None, Some(SamplesSpec { k, n })) => Confirm::Samples { k, n },
            (None, None) => Confirm::For(0),
        };
        let rule = Rule {
            direction,
            fire: self.fire.0,
            clear: self.clear.0,
            confirm,
            clear_confirm: None,
        };
        rule.validate().map_err(|err| err.to_string())?;
        Ok(rule)
    }
}
