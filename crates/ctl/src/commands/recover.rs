//! `drctl recover`: bring services back after a shutdown, from the terminal.
//!
//! Like a shutdown, it shows the plan and asks for confirmation on a terminal unless
//! `--yes` (and refuses without a terminal unless `--yes`). The plan includes the
//! go / no-go checks as of now; a no-go is shown before anything is asked. While it
//! runs, each step is a line; the end is the checks, a table of every service, the
//! problems, and the measured RTO.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::table;
use drd_proto::{
    RecoveryOutcome, RecoveryPlan, RecoveryReport, Reply, Request, ValidationCheck, RTO_SPAN,
};

use super::shutdown::{confirmed, need_terminal, problems_text, services_table, show_event};
use super::{print, Global};
use crate::client::{Client, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl recover`.
#[derive(clap::Args)]
pub struct RecoverArgs {
    /// Print the plan (start order, health checks) and the go / no-go checks as of
    /// now; start nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only these services, and every service that depends on them (by default
    /// what the shutdown stopped).
    #[arg(long, num_args = 1..)]
    only: Vec<String>,
    /// The shutdown to recover from (`drctl shutdowns` lists them); by default the
    /// newest one that ended.
    #[arg(long, value_name = "ID")]
    from_shutdown: Option<i64>,
    /// Before starting, restore each service's preserve jobs' snapshot (the one the
    /// shutdown took) to where its data came from.
    #[arg(long)]
    restore_data: bool,
    /// With --restore-data: the newest snapshot at or before this time instead
    /// (RFC 3339, or "YYYY-MM-DD HH:MM:SS" in UTC).
    #[arg(long, requires = "restore_data")]
    at: Option<String>,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Carry on with the recovery drd was killed in the middle of.
    #[arg(long, conflicts_with_all = ["dry_run", "only", "from_shutdown", "restore_data"])]
    resume: bool,
}

/// Runs `drctl recover`.
pub async fn run(global: &Global, args: &RecoverArgs) -> Result<ExitCode, Failure> {
    let request = |dry_run: bool| Request::Recover {
        dry_run,
        only: args.only.clone(),
        from_shutdown: args.from_shutdown,
        resume: args.resume,
        restore_data: args.restore_data,
        at: args.at.clone(),
    };
    let confirm = !args.dry_run && !args.yes;
    if confirm {
        need_terminal("start services")?;
    }
    let mut client = Client::connect(&global.socket).await?;
    if args.dry_run || (confirm && !args.resume) {
        let Reply::RecoveryPlanned(plan) = client.request(request(true), |_| {}).await? else {
            return Err(ClientError::Protocol("expected a plan".to_owned()).into());
        };
        let go = plan.checks.iter().all(|c| c.ok);
        if args.dry_run {
            print(global.json, &plan, || render_plan(&plan))?;
            return Ok(exit::failed_if(!go));
        }
        print!("{}", render_plan(&plan));
        if !go {
            eprintln!("drctl: no-go: a check failed (above); nothing was started");
            return Ok(ExitCode::from(exit::FAILED));
        }
    }
    if confirm {
        let what = if args.resume {
            "carry on with the interrupted recovery"
        } else {
            "start these services"
        };
        if !confirmed(what, "started") {
            return Ok(ExitCode::from(exit::FAILED));
        }
    }
    let json = global.json;
    let report = match client
        .request(request(false), |event| show_event(json, &event))
        .await?
    {
        Reply::Recovered(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(json, &report, || render_report(&report))?;
    Ok(exit::failed_if(
        report.outcome != RecoveryOutcome::Recovered,
    ))
}

fn checks_text(checks: &[ValidationCheck]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                if c.ok { "go" } else { "NO-GO" }.to_owned(),
                c.subject.clone(),
                c.detail.clone(),
            ]
        })
        .collect();
    table(&["", "CHECK", "EVIDENCE"], &rows)
}

/// The plan and the checks for a person.
fn render_plan(plan: &RecoveryPlan) -> String {
    let mut out = match (plan.recovers, plan.trigger) {
        (Some(id), Some(trigger)) => format!("Recovery plan: from shutdown #{id} ({trigger})\n"),
        _ => "Recovery plan\n".to_owned(),
    };
    out.push_str("initiate -> validate -> restore data (with --restore-data) -> start -> verify\n");
    out.push_str("\nStart order (a step starts in parallel, after the one above is healthy)\n");
    let mut rows = Vec::new();
    for (i, level) in plan.levels.iter().enumerate() {
        for s in level {
            rows.push(vec![
                (i + 1).to_string(),
                s.name.clone(),
                s.driver.clone(),
                s.target.clone(),
                if s.depends_on.is_empty() {
                    "-".to_owned()
                } else {
                    s.depends_on.join(",")
                },
                if s.health.is_empty() {
                    "-".to_owned()
                } else {
                    s.health.clone()
                },
                s.why.clone(),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "STEP", "SERVICE", "DRIVER", "TARGET", "NEEDS", "HEALTH", "PLAN",
        ],
        &rows,
    ));
    if !plan.restore.is_empty() {
        out.push_str("\nRestore before the start\n");
        for line in &plan.restore {
            let _ = writeln!(out, "  {line}");
        }
    }
    let go = plan.checks.iter().all(|c| c.ok);
    let _ = writeln!(
        out,
        "\nGo / no-go as of now: {}",
        if go { "GO" } else { "NO-GO" }
    );
    out.push_str(&checks_text(&plan.checks));
    out
}

/// The end of a recovery for a person.
pub fn render_report(report: &RecoveryReport) -> String {
    let mut out = format!(
        "\nRecovery #{}{} {} in {:.1}s",
        report.run_id,
        report
            .recovers
            .map(|id| format!(" of shutdown #{id}"))
            .unwrap_or_default(),
        report.outcome,
        report.elapsed_ms as f64 / 1000.0
    );
    match report.rto_ms {
        Some(ms) => {
            let _ = writeln!(out, "; RTO {:.1}s ({RTO_SPAN})", ms as f64 / 1000.0);
        }
        None => out.push('\n'),
    }
    if !report.checks.is_empty() {
        out.push_str(&checks_text(&report.checks));
    }
    if !report.restored.is_empty() {
        out.push_str("\nRestored\n");
        for line in &report.restored {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !report.services.is_empty() {
        out.push('\n');
        out.push_str(&services_table(&report.services));
    }
    out.push_str(&problems_text(&report.problems));
    out
}
