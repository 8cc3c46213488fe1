//! `drctl test`: recovery drills. `run` drills now with live progress and prints what
//! each drill measured (exit 1 if any failed); `list` shows the scenarios and what
//! each would drill; `report` shows, per category, what the drills measured over a
//! period against the targets, as a table or (`--markdown`) as a report to attach to
//! a review.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use drd_proto::text::{measured, table, time};
use drd_proto::{
    Category, DrillOutcome, DrillReport, DrillResult, DrillRunReport, Reply, Request, Scenario,
    ScenarioInfo,
};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl test`.
#[derive(clap::Args)]
pub struct TestArgs {
    #[command(subcommand)]
    action: TestAction,
}

#[derive(clap::Subcommand)]
enum TestAction {
    /// Run drills now, with live progress: restores into the sandbox, checks, timed.
    /// Exits 1 if any drill failed. Needs the operator role.
    Run {
        /// Only this category's drills.
        #[arg(long, value_parser = category)]
        category: Option<Category>,
        /// Only this scenario (see `drctl test list`).
        #[arg(long, value_parser = scenario)]
        scenario: Option<Scenario>,
    },
    /// The scenarios, their categories and what each would drill here.
    List,
    /// Per category over a period: target, last, median and worst measured RTO and
    /// RPO, pass rate and trend.
    Report {
        /// How far back (`30d`, `12h`).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Write the report as Markdown, to attach to a review.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
}

fn category(text: &str) -> Result<Category, String> {
    Category::parse(text).ok_or_else(|| {
        format!(
            "unknown category; the categories are {}",
            names(Category::ALL.iter().map(|c| c.as_str()))
        )
    })
}

fn scenario(text: &str) -> Result<Scenario, String> {
    Scenario::parse(text).ok_or_else(|| {
        format!(
            "unknown scenario; the scenarios are {}",
            names(Scenario::ALL.iter().map(|s| s.as_str()))
        )
    })
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

/// Runs `drctl test`.
pub async fn run(global: &Global, args: &TestArgs) -> Result<ExitCode, Failure> {
    match &args.action {
        TestAction::Run { category, scenario } => {
            let request = Request::DrillRun {
                category: *category,
                scenario: *scenario,
            };
            let report = match ask(global, request).await? {
                Reply::DrillRan(report) => report,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &report, || run_text(&report))?;
            Ok(exit::failed_if(report.outcome == DrillOutcome::Fail))
        }
        TestAction::List => {
            let list = match ask(global, Request::DrillList).await? {
                Reply::DrillScenarios(list) => list,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &list, || list_text(&list))?;
            Ok(ExitCode::SUCCESS)
        }
        TestAction::Report { since, markdown } => {
            let since_ms = drd_proto::text::now_ms()
                - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
            let request = Request::DrillReport {
                since_unix_ms: since_ms,
            };
            let report = match ask(global, request).await? {
                Reply::DrillReport(report) => report,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            if *markdown {
                print!("{}", markdown_text(&report));
            } else {
                print(global.json, &report, || report_text(&report))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn opt(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), measured)
}

/// Measured against target, as `1.20 s / 2m 0s`.
fn against(ms: Option<u64>, target: Option<u64>) -> String {
    match (ms, target) {
        (Some(ms), Some(target)) => format!("{} / {}", measured(ms), measured(target)),
        (Some(ms), None) => measured(ms),
        (None, _) => "-".to_owned(),
    }
}

/// Each drill with what it measured, then the evidence of each one that did not pass.
pub fn run_text(report: &DrillRunReport) -> String {
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            vec![
                r.scenario.as_str().to_owned(),
                r.category.as_str().to_owned(),
                r.subject.clone(),
                r.outcome.as_str().to_uppercase(),
                against(r.rto_ms, r.target_rto_ms),
                against(r.rpo_ms, r.target_rpo_ms),
                measured(r.duration_ms),
            ]
        })
        .collect();
    let mut out = format!(
        "drill run #{} ({}), {}: {}\n",
        report.id,
        report.trigger,
        time(report.started_unix_ms),
        report.outcome.as_str().to_uppercase()
    );
    out.push_str(&table(
        &[
            "SCENARIO",
            "CATEGORY",
            "SUBJECT",
            "RESULT",
            "RTO / TARGET",
            "RPO / TARGET",
            "TOOK",
        ],
        &rows,
    ));
    for r in &report.results {
        let _ = writeln!(out, "  {} {}: {}", r.scenario, r.subject, r.evidence);
    }
    out
}

fn list_text(list: &[ScenarioInfo]) -> String {
    let mut out = String::new();
    for s in list {
        let _ = writeln!(
            out,
            "{} ({}{})\n  {}\n  drills: {}",
            s.scenario.as_str(),
            s.category.as_str(),
            if s.enabled { "" } else { ", not in the loop" },
            s.description,
            if s.subjects.is_empty() {
                "nothing configured".to_owned()
            } else {
                s.subjects.join(", ")
            }
        );
    }
    out
}

fn rate(c: &drd_proto::CategoryReport) -> String {
    if c.drills == 0 {
        "-".to_owned()
    } else {
        format!("{}/{}", c.passed, c.drills)
    }
}

fn report_rows(report: &DrillReport) -> Vec<Vec<String>> {
    report
        .categories
        .iter()
        .map(|c| {
            vec![
                c.category.as_str().to_owned(),
                measured(c.target_rto_ms),
                opt(c.last_rto_ms),
                opt(c.median_rto_ms),
                opt(c.worst_rto_ms),
                measured(c.target_rpo_ms),
                opt(c.last_rpo_ms),
                opt(c.median_rpo_ms),
                opt(c.worst_rpo_ms),
                rate(c),
                c.trend.clone(),
            ]
        })
        .collect()
}

const REPORT_HEADER: [&str; 11] = [
    "CATEGORY",
    "RTO TARGET",
    "LAST",
    "MEDIAN",
    "WORST",
    "RPO TARGET",
    "LAST",
    "MEDIAN",
    "WORST",
    "PASSED",
    "TREND",
];

fn report_text(report: &DrillReport) -> String {
    let mut out = format!(
        "drills on {} since {}: {} runs\n",
        report.host,
        time(report.since_unix_ms),
        report.runs
    );
    out.push_str(&table(&REPORT_HEADER, &report_rows(report)));
    if !report.failures.is_empty() {
        out.push_str("failed drills, newest first:\n");
        for f in &report.failures {
            let _ = writeln!(out, "  {}", failure_line(f));
        }
    }
    out
}

fn failure_line(f: &DrillResult) -> String {
    format!(
        "{} {} ({}): {}",
        f.scenario, f.subject, f.category, f.evidence
    )
}

/// The seeds' "disaster recovery report", with measured figures.
pub fn markdown_text(report: &DrillReport) -> String {
    let mut out = format!(
        "# Disaster recovery report: {}\n\nPeriod: {} to {}. Drill runs: {}.\n\
         Every figure below was measured by a drill that restored, restarted or checked \
         for real; `-` means no drill of that category measured it in the period.\n\n",
        report.host,
        time(report.since_unix_ms),
        time(report.until_unix_ms),
        report.runs
    );
    out.push_str("| Category | RTO target | Last RTO | Median RTO | Worst RTO | RPO target | Last RPO | Median RPO | Worst RPO | Passed | Trend |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in report_rows(report) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push_str("\n## Failed drills\n\n");
    if report.failures.is_empty() {
        out.push_str("None in the period.\n");
    }
    for f in &report.failures {
        let _ = writeln!(out, "- {}", failure_line(f).replace('|', "\\|"));
    }
    out
}
