//! The daemon's one wall clock, in Unix milliseconds: the scheduler, the run records
//! and the monitors all read "now" here, so one test offset moves them together.

use std::sync::OnceLock;

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
    crate::util::unix_ms_now().saturating_add(offset)
}

/// A clock that stands still until told to move: for tests of decisions made on time
/// (cooldowns, escalation) without sleeping.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    /// A clock at `now_ms`.
    pub fn at(now_ms: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(now_ms))
    }

    /// Moves it on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
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
