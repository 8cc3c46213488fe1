//! drd-watch: the decisions behind drd's monitors, as plain code with no I/O.
//!
//! A monitor samples the host and asks these types what the samples mean; they are
//! driven by values and a clock in Unix milliseconds and nothing else, so every rule
//! (hysteresis, confirmation, the breaker's back-off) is tested exhaustively in unit
//! tests, and the samplers and workers that feed them stay thin.
//!
//! | concern | module |
//! | --- | --- |
//! | a check with separate fire and clear thresholds, confirmed `for` a time or `k of n` samples | [`condition`] |
//! | a circuit breaker: closed, open with exponential back-off, half-open trials | [`breaker`] |
//! | a deadman switch: new, up, late, down, paused; runs that never finish; one grace after a restart | [`deadman`] |
//!
//! Not wired into the daemon yet: the monitor workers, their config and `drctl
//! monitors` come with issue 12's remaining parts.

pub mod breaker;
pub mod condition;
pub mod deadman;
