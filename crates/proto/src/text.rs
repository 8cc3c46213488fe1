//! Text for people: tables, times, sizes and the reports `drctl` and the offline `drd`
//! commands print. Scripts use `--json` instead.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    AuditEntry, AuditVerifyReport, BackupReport, DaemonState, RepairReport, RestoreReport,
    RunState, SnapshotInfo, StatusReport, VerifyReport, WorkerState,
};

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

/// A measured time, precise where it is short: `0.84 s`, `12.3 s`, then as [`span`].
pub fn measured(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.2} s", ms as f64 / 1000.0),
        10_000..=99_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => span(i64::try_from(ms).unwrap_or(i64::MAX)),
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
    if let Some(shutdown) = &report.shutdown {
        let what = match (shutdown.state, shutdown.kind) {
            (RunState::Interrupted, crate::RunKind::Shutdown) => {
                "INTERRUPTED (drd died or was stopped mid-shutdown; `drctl shutdown --resume` carries on, `drctl abort` rolls back)"
            }
            (RunState::Interrupted, crate::RunKind::Recovery) => {
                "INTERRUPTED (drd died or was stopped mid-recovery; `drctl recover --resume` carries on, `drctl abort` ends it)"
            }
            (RunState::Running, _) => "RUNNING (`drctl abort` stops it)",
        };
        let _ = writeln!(
            out,
            "  {:<8} #{} ({}, started {}) {what}\n           stopped at: {}",
            shutdown.kind.as_str(),
            shutdown.run_id,
            shutdown.trigger,
            ago(now, shutdown.started_unix_ms),
            shutdown.last_step
        );
    }

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

/// Bytes in binary units: `512 B`, `1.5 KiB`, `20.3 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The first 8 digits of a snapshot id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Snapshots as a table, oldest first.
pub fn snapshots(list: &[SnapshotInfo]) -> String {
    if list.is_empty() {
        return "no snapshots\n".to_owned();
    }
    let unknown = |text: &str| {
        if text.is_empty() {
            "?".to_owned()
        } else {
            text.to_owned()
        }
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                match s.damaged {
                    Some(_) => format!("{} DAMAGED", short(&s.id)),
                    None => short(&s.id).to_owned(),
                },
                unknown(&s.job),
                // A damaged file's time is when it was written, as far as it says.
                match (s.unix_ms > 0, s.damaged.is_some()) {
                    (false, _) => "?".to_owned(),
                    (true, true) => format!("~{}", time(s.unix_ms)),
                    (true, false) => time(s.unix_ms),
                },
                s.parent
                    .as_deref()
                    .map_or("-".to_owned(), |p| short(p).to_owned()),
                bytes(s.size),
                s.files.to_string(),
                unknown(&s.host),
                s.tier.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "JOB",
            "TIME (UTC)",
            "PARENT",
            "SIZE",
            "FILES",
            "HOST",
            "TIER",
        ],
        &rows,
    );
    let damaged: Vec<&SnapshotInfo> = list.iter().filter(|s| s.damaged.is_some()).collect();
    if !damaged.is_empty() {
        let _ = writeln!(
            out,
            "{} snapshot file{} DAMAGED and cannot be restored from this tier (an intact \
             copy on another tier can be; verify says more):",
            damaged.len(),
            if damaged.len() == 1 { " is" } else { "s are" },
        );
        for s in damaged {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                short(&s.id),
                s.file.as_deref().unwrap_or("?"),
                s.damaged.as_deref().unwrap_or_default()
            );
        }
    }
    out
}

fn warnings(out: &mut String, list: &[String]) {
    if !list.is_empty() {
        let _ = writeln!(
            out,
            "{} warning{}:",
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        );
        for w in list {
            let _ = writeln!(out, "  {w}");
        }
    }
}

/// A finished backup.
pub fn backup_report(r: &BackupReport) -> String {
    let s = &r.snapshot;
    let mut out = format!(
        "snapshot {} of job {} in tier {} ({})\n",
        s.id,
        s.job,
        s.tier,
        time(s.unix_ms)
    );
    let _ = writeln!(
        out,
        "  files     {} new, {} changed, {} unchanged ({} in all, {})",
        r.files_new,
        r.files_changed,
        r.files_unchanged,
        s.files,
        bytes(s.size)
    );
    let _ = writeln!(
        out,
        "  data      {} read, {} added after dedup and compression",
        bytes(r.bytes_read),
        bytes(r.bytes_added)
    );
    let _ = writeln!(
        out,
        "  parent    {}",
        s.parent
            .as_deref()
            .map_or("none (first snapshot of the job)", short)
    );
    let _ = writeln!(out, "  took      {}", span_ms(r.elapsed_ms));
    warnings(&mut out, &r.warnings);
    out
}

/// A finished restore.
pub fn restore_report(r: &RestoreReport) -> String {
    let mut out = format!(
        "restored snapshot {} of job {} ({}) to {}\n",
        short(&r.snapshot.id),
        r.snapshot.job,
        time(r.snapshot.unix_ms),
        r.target
    );
    let fifos = if r.fifos > 0 {
        format!(", {} fifos", r.fifos)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {} files, {} directories, {} symlinks{fifos}, {} in {}",
        r.files,
        r.dirs,
        r.symlinks,
        bytes(r.bytes),
        span_ms(r.elapsed_ms)
    );
    warnings(&mut out, &r.warnings);
    if r.damaged_total > 0 {
        let _ = writeln!(
            out,
            "INCOMPLETE: {} file{} could not be restored whole (a blob is missing or damaged \
             on every tier); everything else was restored:",
            r.damaged_total,
            if r.damaged_total == 1 { "" } else { "s" }
        );
        for d in &r.damaged {
            let _ = writeln!(out, "  {}: {}", d.path, d.reason);
            if let Some(kept) = &d.kept_as {
                let _ = writeln!(out, "    readable parts kept in {kept}");
            }
        }
        let unlisted = r.damaged_total.saturating_sub(r.damaged.len() as u64);
        if unlisted > 0 {
            let _ = writeln!(
                out,
                "  ... and {unlisted} more (the drd log names them all)"
            );
        }
    }
    out
}

/// Verify results, one block per repository.
pub fn verify_reports(reports: &[VerifyReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let verdict = if r.problems.is_empty() {
            "OK"
        } else {
            "DAMAGED"
        };
        let _ = writeln!(out, "tier {} ({}): {verdict}", r.tier, r.location);
        let _ = writeln!(
            out,
            "  {} snapshots, {} packs checked, {} packs and {} blobs read, in {}",
            r.snapshots,
            r.packs,
            r.packs_read,
            r.blobs_read,
            span_ms(r.elapsed_ms)
        );
        if r.reclaimable_bytes > 0 {
            let _ = writeln!(
                out,
                "  {} in packs no index lists (left by an interrupted backup; harmless)",
                bytes(r.reclaimable_bytes)
            );
        }
        for p in &r.problems {
            let _ = writeln!(out, "  problem: {}", p.message.replace('\n', "\n  "));
        }
        warnings(&mut out, &r.warnings);
    }
    if reports.is_empty() {
        out.push_str("no repositories to verify: no job writes to a tier\n");
    }
    out
}

/// Index repairs, one repository each.
pub fn repair_reports(reports: &[RepairReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let verdict = if !r.unreadable_packs.is_empty() {
            "NOT FULLY REPAIRED"
        } else if r.index_files_removed.is_empty() && r.index_file_written.is_none() {
            "nothing to repair"
        } else {
            "repaired"
        };
        let _ = writeln!(
            out,
            "tier {} ({}): {verdict}, in {}",
            r.tier,
            r.location,
            span_ms(r.elapsed_ms)
        );
        if let Some(file) = &r.index_file_written {
            let _ = writeln!(
                out,
                "  wrote index file {file}: {} packs, {} blobs, read by their headers",
                r.packs_indexed, r.blobs_indexed
            );
        }
        for file in &r.index_files_removed {
            let _ = writeln!(out, "  removed damaged index file {file}");
        }
        for pack in &r.unreadable_packs {
            let _ = writeln!(
                out,
                "  not indexed: {pack}; `verify` lists the files it breaks"
            );
        }
        warnings(&mut out, &r.warnings);
    }
    if reports.is_empty() {
        out.push_str("no repositories to repair: no job writes to a tier\n");
    }
    out
}

fn span_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        span(i64::try_from(ms).unwrap_or(i64::MAX))
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

    #[test]
    fn a_damaged_snapshot_is_marked_with_its_file_and_why() {
        let info = |id: &str, damaged: Option<&str>| SnapshotInfo {
            id: id.into(),
            job: if damaged.is_some() { "" } else { "db" }.into(),
            host: "h".into(),
            unix_ms: 0,
            parent: None,
            size: 0,
            files: 0,
            tier: "local".into(),
            damaged: damaged.map(Into::into),
            file: damaged.map(|_| format!("/repo/snapshots/{id}")),
        };
        let out = snapshots(&[
            info("aaaaaaaa11", None),
            info("bbbbbbbb22", Some("does not decrypt")),
        ]);
        assert!(out.contains("bbbbbbbb DAMAGED  ?"), "{out}");
        assert!(
            out.contains("1 snapshot file is DAMAGED")
                && out.contains("  bbbbbbbb /repo/snapshots/bbbbbbbb22: does not decrypt"),
            "{out}"
        );
        assert!(!snapshots(&[info("aaaaaaaa11", None)]).contains("DAMAGED"));
    }
}
