//! Job schedules: when a job is next due.
//!
//! `hourly`, `daily`, `weekly` and `monthly` mean what they mean to systemd's
//! `OnCalendar` (the top of the hour; midnight; Monday midnight; the first of the month
//! at midnight), anything else is a 5-field cron expression parsed by `croner`. Times
//! are the host's local time, like systemd timers and cron, so `0 2 * * *` is 02:00
//! where the machine is. Each job's start is shifted by a jitter fixed per job name, so
//! many `daily` jobs do not all start at midnight, yet tests can predict the shift.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// The longest default jitter.
const MAX_DEFAULT_JITTER_MS: i64 = 5 * 60 * 1000;

/// A parsed `schedule`.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a `schedule` value; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let pattern = match text.trim() {
            "hourly" => "0 * * * *",
            "daily" => "0 0 * * *",
            "weekly" => "0 0 * * MON",
            "monthly" => "0 0 1 * *",
            other => other,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|err| {
                format!(
                    "{text:?} is not a schedule ({err}); write hourly, daily, weekly, monthly \
                     or a 5-field cron expression like \"30 2 * * *\" (02:30 local time)"
                )
            })?;
        let schedule = Schedule {
            text: text.trim().to_owned(),
            cron,
        };
        // A pattern that matches no date (February 30th) would never run.
        let start = Utc.timestamp_millis_opt(0).single();
        if start.and_then(|t| schedule.next_after(&t)).is_none() {
            return Err(format!("{text:?} never comes due; check the day and month"));
        }
        Ok(schedule)
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(t, false).ok()
    }

    /// The gap between the two scheduled times that follow `after_ms`: the period of
    /// a regular schedule.
    pub fn period_ms<Tz: TimeZone>(&self, tz: &Tz, after_ms: i64) -> Option<i64> {
        let first = self.next_after(&at(tz, after_ms)?)?;
        let second = self.next_after(&first)?;
        Some(second.timestamp_millis() - first.timestamp_millis())
    }

    /// When the job is next due after `after_ms`: the first scheduled time that,
    /// shifted by `jitter_ms`, lies strictly after `after_ms`.
    pub fn next_run_ms<Tz: TimeZone>(&self, tz: &Tz, jitter_ms: i64, after_ms: i64) -> Option<i64> {
        let slot = self.next_after(&at(tz, after_ms.saturating_sub(jitter_ms))?)?;
        Some(slot.timestamp_millis().saturating_add(jitter_ms))
    }
}

/// `ms` as a time in `tz`, to the whole second (croner keeps a start's fraction of a
/// second in the times it finds; schedule slots are whole minutes, so dropping it
/// changes no answer).
fn at<Tz: TimeZone>(tz: &Tz, ms: i64) -> Option<DateTime<Tz>> {
    let whole = DateTime::from_timestamp(ms.div_euclid(1000), 0)?;
    Some(tz.from_utc_datetime(&whole.naive_utc()))
}

/// The jitter of `job`: a shift in `[0, max_ms]` fixed by the job's name (FNV-1a), so
/// it is the same at every start and on every host that names the job alike. `max_ms`
/// is the job's `jitter`, or by default 2% of the period capped at 5 minutes.
pub fn jitter_ms(job: &str, configured: Option<std::time::Duration>, period_ms: i64) -> i64 {
    let max_ms = match configured {
        Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        None => (period_ms / 50).clamp(0, MAX_DEFAULT_JITTER_MS),
    };
    if max_ms <= 0 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in job.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let span = u64::try_from(max_ms).unwrap_or(0).saturating_add(1);
    i64::try_from(hash % span).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Unix ms of a UTC time written like `2026-11-25T16:50:00Z`.
    fn t(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn next(schedule: &str, after: &str) -> i64 {
        Schedule::parse(schedule)
            .unwrap()
            .next_run_ms(&Utc, 0, t(after))
            .unwrap()
    }

    #[test]
    fn next_run_for_every_kind() {
        // 2026-11-25 is a Wednesday.
        let now = "2026-11-25T16:50:00Z";
        assert_eq!(next("hourly", now), t("2026-11-25T17:00:00Z"));
        assert_eq!(next("daily", now), t("2026-11-26T00:00:00Z"));
        assert_eq!(next("weekly", now), t("2026-11-30T00:00:00Z"));
        assert_eq!(next("monthly", now), t("2026-12-01T00:00:00Z"));
        assert_eq!(next("30 2 * * *", now), t("2026-11-26T02:30:00Z"));
        assert_eq!(next("*/15 * * * *", now), t("2026-11-25T17:00:00Z"));
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-11-27T10:00:00Z"),
            t("2026-11-30T09:00:00Z")
        );
        // Strictly after: a run at the scheduled instant is not due again.
        assert_eq!(
            next("hourly", "2026-11-25T17:00:00Z"),
            t("2026-11-25T18:00:00Z")
        );
        // Across the year.
        assert_eq!(
            next("monthly", "2026-12-15T00:00:00Z"),
            t("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn local_time_follows_the_zone() {
        let plus2 = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let daily = Schedule::parse("daily").unwrap();
        // Midnight at UTC+2 is 22:00 UTC the day before.
        assert_eq!(
            daily.next_run_ms(&plus2, 0, t("2026-11-25T16:50:00Z")),
            Some(t("2026-11-25T22:00:00Z"))
        );
    }

    #[test]
    fn jitter_shifts_the_slot_and_is_fixed_per_job() {
        let hourly = Schedule::parse("hourly").unwrap();
        let period = hourly.period_ms(&Utc, t("2026-11-25T16:50:00Z")).unwrap();
        assert_eq!(period, 3_600_000);
        let a = jitter_ms("databases", None, period);
        assert_eq!(
            a,
            jitter_ms("databases", None, period),
            "same name, same jitter"
        );
        assert!((0..=72_000).contains(&a), "2% of an hour at most: {a}");
        assert_ne!(a, jitter_ms("logs", None, period), "names spread out");
        // Daily: 2% would be 28.8 minutes; capped at 5.
        assert!(jitter_ms("databases", None, 86_400_000) <= 300_000);
        assert_eq!(jitter_ms("databases", Some(Duration::ZERO), period), 0);

        // With a jitter of 40 s, the 17:00 slot runs at 17:00:40, and a time between
        // 17:00 and 17:00:40 still has that run ahead of it.
        assert_eq!(
            hourly.next_run_ms(&Utc, 40_000, t("2026-11-25T17:00:10Z")),
            Some(t("2026-11-25T17:00:40Z"))
        );
        assert_eq!(
            hourly.next_run_ms(&Utc, 40_000, t("2026-11-25T17:00:40Z")),
            Some(t("2026-11-25T18:00:40Z"))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_accepted() {
        let err = Schedule::parse("every tuesday").unwrap_err();
        assert!(err.contains("5-field cron"), "{err}");
        assert!(
            Schedule::parse("0 0 * * * *").is_err(),
            "6 fields (seconds) refused"
        );
        let err = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(err.contains("never comes due"), "{err}");
    }
}
