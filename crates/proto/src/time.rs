//! Points in time as people write them: RFC 3339, or "2 hours ago".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `text` as an RFC 3339 time (`2026-11-23T10:00:00Z`, or without the zone as
/// UTC) or as a span back from `now` (`2 hours ago`, `90m ago`, `1d 2h ago`), and
/// returns Unix milliseconds.
pub fn parse_point_in_time(text: &str, now: SystemTime) -> Result<i64, String> {
    let text = text.trim();
    let at = if let Some(span) = text.strip_suffix("ago") {
        let span = humantime::parse_duration(span.trim()).map_err(|err| {
            format!("{text:?}: {err}; write a span like \"2 hours ago\" or \"30m ago\"")
        })?;
        now.checked_sub(span)
            .ok_or_else(|| format!("{text:?} is before 1970"))?
    } else {
        humantime::parse_rfc3339_weak(text).map_err(|err| {
            format!(
                "{text:?} is not a time ({err}); write RFC 3339 like 2026-11-23T10:00:00Z, \
                 or a span like \"2 hours ago\""
            )
        })?
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc3339_and_spans_back() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_point_in_time("1970-01-01T00:00:10Z", now), Ok(10_000));
        assert_eq!(parse_point_in_time("1970-01-01T00:00:10", now), Ok(10_000));
        assert_eq!(
            parse_point_in_time("2 hours ago", now),
            Ok((1_000_000 - 7200) * 1000)
        );
        assert_eq!(
            parse_point_in_time("30m ago", now),
            Ok((1_000_000 - 1800) * 1000)
        );
        assert!(parse_point_in_time("yesterday-ish", now)
            .unwrap_err()
            .contains("RFC 3339"));
    }
}
