//! `drctl test report`: per category, over a period, the target, the last measured
//! RTO and RPO, the worst and the median, the pass rate and a trend. Every figure is a
//! measured one from the catalog; a category with no drill in the period says so.

use drd_proto::{Category, CategoryReport, DrillOutcome, DrillReport, DrillResult};

use crate::{store, Drills, Result};

/// Failed drills listed at most.
const FAILURES_SHOWN: usize = 20;

pub(crate) async fn build(drills: &Drills, since_ms: i64) -> Result<DrillReport> {
    let catalog = &drills.core.catalog;
    let results = store::results_since(catalog, since_ms).await?;
    let runs = store::runs_since(catalog, since_ms).await?;
    let config = drills.core.config();
    let categories = Category::ALL
        .iter()
        .map(|&category| {
            let target = config.config.drills.target(category);
            let rows: Vec<&(i64, DrillResult)> = results
                .iter()
                .filter(|(_, r)| r.category == category && r.outcome != DrillOutcome::Cancelled)
                .collect();
            summarize(category, target, &rows)
        })
        .collect();
    let failures = results
        .iter()
        .rev()
        .filter(|(_, r)| r.outcome == DrillOutcome::Fail)
        .take(FAILURES_SHOWN)
        .map(|(_, r)| r.clone())
        .collect();
    Ok(DrillReport {
        host: drd_repo::hostname(),
        since_unix_ms: since_ms,
        until_unix_ms: drills.clock.now_ms(),
        runs,
        categories,
        failures,
    })
}

fn summarize(
    category: Category,
    target: drd_core::config::drills::Target,
    rows: &[&(i64, DrillResult)],
) -> CategoryReport {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let rtos: Vec<u64> = rows.iter().filter_map(|(_, r)| r.rto_ms).collect();
    let rpos: Vec<u64> = rows.iter().filter_map(|(_, r)| r.rpo_ms).collect();
    let last = rows.last();
    CategoryReport {
        category,
        target_rto_ms: ms(target.rto),
        target_rpo_ms: ms(target.rpo),
        drills: rows.len() as u64,
        passed: rows
            .iter()
            .filter(|(_, r)| r.outcome == DrillOutcome::Pass)
            .count() as u64,
        last_rto_ms: rows.iter().rev().find_map(|(_, r)| r.rto_ms),
        last_rpo_ms: rows.iter().rev().find_map(|(_, r)| r.rpo_ms),
        worst_rto_ms: rtos.iter().copied().max(),
        median_rto_ms: median(&rtos),
        worst_rpo_ms: rpos.iter().copied().max(),
        median_rpo_ms: median(&rpos),
        trend: trend(&rtos).to_owned(),
        last_unix_ms: last.map(|(at, _)| *at),
        last_pass_unix_ms: rows
            .iter()
            .rev()
            .find(|(_, r)| r.outcome == DrillOutcome::Pass)
            .map(|(at, _)| *at),
    }
}

fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The newer half's median RTO against the older half's: more than 20 % slower is
/// `worse`, 20 % faster `better`, else `steady`; fewer than four drills, `-`.
fn trend(rtos: &[u64]) -> &'static str {
    if rtos.len() < 4 {
        return "-";
    }
    let (older, newer) = rtos.split_at(rtos.len() / 2);
    let (Some(old), Some(new)) = (median(older), median(newer)) else {
        return "-";
    };
    let (old, new) = (old.max(1) as f64, new as f64);
    if new > old * 1.2 {
        "worse"
    } else if new < old / 1.2 {
        "better"
    } else {
        "steady"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_trend_read_the_measurements_in_order() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(trend(&[100, 100, 100]), "-");
        assert_eq!(trend(&[100, 110, 200, 210]), "worse");
        assert_eq!(trend(&[200, 210, 100, 110]), "better");
        assert_eq!(trend(&[100, 110, 105, 100]), "steady");
    }
}
