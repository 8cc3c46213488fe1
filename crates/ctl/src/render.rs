//! Output for people: tables, times and ages. Scripts use `--json` instead.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drd_proto::{AuditEntry, AuditVerifyReport, DaemonState, StatusReport, WorkerState};

/// `ms` since the epoch as RFC 3339 UTC, to the second.
pub fn time(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A duration rounded to what a person needs: `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn span(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// How long before `now_ms` the moment `then_ms` was.
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    format!("{} ago", span(now_ms - then_ms))
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::from("  ");
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `drctl status` for a person.
pub fn status(report: &StatusReport) -> String {
    let now = report.now_unix_ms;
    let state = match report.state {
        DaemonState::Running => "running",
        DaemonState::Stopping => "STOPPING",
    };
    let mut out = format!(
        "drd {} on {}, pid {}, {state}\n",
        report.daemon_version, report.host, report.pid
    );
    let _ = writeln!(
        out,
        "  up       {} (since {})",
        span(now - report.started_unix_ms),
        time(report.started_unix_ms)
    );
    let _ = writeln!(
        out,
        "  config   {} (loaded {})",
        report.config_path,
        ago(now, report.config_loaded_unix_ms)
    );
    let _ = writeln!(out, "  socket   {}", report.socket);
    let _ = writeln!(
        out,
        "  state    {} (catalog schema {})",
        report.state_dir, report.catalog_schema
    );

    out.push_str("\nWorkers\n");
    let rows: Vec<Vec<String>> = report
        .workers
        .iter()
        .map(|w| {
            let state = match w.state {
                WorkerState::Busy => "busy",
                WorkerState::Idle => "idle",
                WorkerState::Failing => "FAILING",
                WorkerState::Stopped => "stopped",
            };
            let detail = match (&w.state, &w.last_error) {
                (WorkerState::Failing, Some(err)) => err.clone(),
                _ => w.detail.clone(),
            };
            vec![
                w.name.clone(),
                state.to_owned(),
                w.last_step_unix_ms
                    .map_or("never".to_owned(), |t| ago(now, t)),
                format!("{}/{}", w.steps, w.errors),
                detail,
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&table(
            &["NAME", "STATE", "LAST STEP", "OK/ERR", "DETAIL"],
            &rows,
        ));
    }

    out.push_str("\nRecent audit entries\n");
    if report.recent_audit.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&audit_table(&report.recent_audit));
    }
    out
}

/// Audit entries as a table, oldest first.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                time(e.unix_ms),
                e.actor.clone(),
                e.action.clone(),
                e.outcome.clone(),
                e.detail.replace('\n', " / "),
            ]
        })
        .collect();
    table(
        &["ID", "TIME (UTC)", "ACTOR", "ACTION", "OUTCOME", "DETAIL"],
        &rows,
    )
}

/// The verdict of `drctl audit verify`.
pub fn audit_verify(report: &AuditVerifyReport) -> String {
    match (&report.first_mismatch, &report.head_hash) {
        (Some(bad), _) => format!(
            "audit chain BROKEN at entry {}: {}\n({} entries checked; entries from {} on cannot be trusted)",
            bad.id, bad.reason, report.entries, bad.id
        ),
        (None, Some(head)) => format!(
            "audit chain intact: {} entries\nhead hash {head} (keep a copy elsewhere to detect truncation)",
            report.entries
        ),
        (None, None) => "audit log is empty".to_owned(),
    }
}

/// Now, as Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(12_000), "12s");
        assert_eq!(span(250_000), "4m 10s");
        assert_eq!(span(7_500_000), "2h 5m");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let out = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "  A    BB\n  xyz  1\n");
    }
}
