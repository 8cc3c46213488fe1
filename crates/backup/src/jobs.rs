//! Backup jobs as the coordinator runs them: one run of a job (`run`), the record of
//! every run in the catalog (`runs`), `before` / `after` hooks (`hooks`), retention and
//! garbage collection (`retention`), the scheduler worker (`scheduler`; schedules
//! themselves are parsed with the config, in `drd_core::config::schedule`), the
//! emergency backup of every critical job (`emergency`), and what `drctl jobs` shows of
//! each job, its RPO among it (`overview`).
//!
//! Everything that starts a backup (a `drctl backup` request, the scheduler, an
//! emergency backup, the emergency shutdown's preserve phase) goes through
//! [`run::run_job`], so the no-overlap rule, the hooks, the catalog record, retention
//! and the audit entry are the same whoever asked.

pub mod emergency;
pub mod hooks;
pub mod overview;
pub mod retention;
pub mod run;
pub mod runs;
pub mod scheduler;

use std::sync::OnceLock;

pub use run::{run_job, RunError, RunProgress};

/// What started a run; stored with the run and shown by `drctl jobs`. The wire's type,
/// so the catalog, the logic and drctl share one list of names.
pub use drd_proto::RunTrigger as Trigger;

/// The wall clock the scheduler and the run records use. Tests swap it to control
/// "now"; [`SystemClock`] is the real one.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds now.
    fn now_ms(&self) -> i64;
}

/// The host's clock, shifted by `DRD_TEST_CLOCK_OFFSET` when that is set (a span like
/// `2h` or `-30m`, read once). The offset exists so integration tests can start a
/// daemon "later" than its last run; nothing else should set it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// Unix milliseconds now, on the [`SystemClock`].
pub fn now_ms() -> i64 {
    // Not daemon state: a constant of the process, read once from the environment it
    // was started with (tests start the binary with it set), the same for every daemon,
    // offline command and test the process runs, and never changed afterwards.
    static OFFSET_MS: OnceLock<i64> = OnceLock::new();
    let offset = *OFFSET_MS.get_or_init(|| {
        std::env::var("DRD_TEST_CLOCK_OFFSET")
            .ok()
            .and_then(|text| parse_offset_ms(&text))
            .unwrap_or(0)
    });
    drd_core::util::unix_ms_now().saturating_add(offset)
}

/// `2h`, `-30m`, `90s` as signed milliseconds.
fn parse_offset_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (sign, span) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let span = humantime::parse_duration(span.trim()).ok()?;
    Some(sign * i64::try_from(span.as_millis()).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offsets_read_both_ways() {
        assert_eq!(parse_offset_ms("2h"), Some(7_200_000));
        assert_eq!(parse_offset_ms(" -30m "), Some(-1_800_000));
        assert_eq!(parse_offset_ms("soon"), None);
    }
}
