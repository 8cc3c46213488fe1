//! `drctl shutdown`: the emergency shutdown from the terminal.
//!
//! A shutdown asks for confirmation on a terminal (showing the plan first) unless
//! `--yes`, and refuses without a terminal unless `--yes`, so a script never stops
//! services by accident. While it runs, each step is printed as a line as it
//! happens; the end is a table of every service and the problems found.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use drd_proto::text::table;
use drd_proto::{
    Event, Reply, Request, ServiceResult, ShutdownEvent, ShutdownOutcome, ShutdownPlan,
    ShutdownReport, ShutdownTrigger,
};

use super::{print, Global};
use crate::client::{Client, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl shutdown`.
#[derive(clap::Args)]
pub struct ShutdownArgs {
    /// Why: manual, system_failure, resource_exhaustion, data_corruption,
    /// network_partition or security_breach.
    #[arg(long, value_parser = ShutdownTrigger::parse,
          required_unless_present_any = ["resume", "dry_run"])]
    trigger: Option<ShutdownTrigger>,
    /// Skip preserve and drain, and kill each service after the short grace
    /// ([shutdown] force_grace).
    #[arg(long)]
    force: bool,
    /// Print the plan (levels, signals, timeouts, preserve jobs, worst case) and
    /// touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only these services, and every service that depends on them.
    #[arg(long, num_args = 1..)]
    only: Vec<String>,
    /// Words for the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Carry on with the shutdown drd was killed in the middle of.
    #[arg(long, conflicts_with_all = ["dry_run", "force", "only", "trigger"])]
    resume: bool,
}

/// Runs `drctl shutdown`.
pub async fn run(global: &Global, args: &ShutdownArgs) -> Result<ExitCode, Failure> {
    let request = |dry_run: bool| Request::Shutdown {
        trigger: args.trigger.unwrap_or(ShutdownTrigger::Manual),
        force: args.force,
        dry_run,
        only: args.only.clone(),
        reason: args.reason.clone(),
        resume: args.resume,
    };
    let confirm = !args.dry_run && !args.yes;
    if confirm {
        need_terminal("shut services down")?;
    }
    let mut client = Client::connect(&global.socket).await?;
    if args.dry_run || (confirm && !args.resume) {
        let Reply::ShutdownPlanned(plan) = client.request(request(true), |_| {}).await? else {
            return Err(ClientError::Protocol("expected a plan".to_owned()).into());
        };
        if args.dry_run {
            print(global.json, &plan, || render_plan(&plan))?;
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", render_plan(&plan));
    }
    if confirm {
        let what = if args.resume {
            "carry on with the interrupted shutdown"
        } else {
            "stop these services"
        };
        if !confirmed(what, "stopped") {
            return Ok(ExitCode::from(exit::FAILED));
        }
    }
    let json = global.json;
    let report = match client
        .request(request(false), |event| show_event(json, &event))
        .await?
    {
        Reply::ShutdownFinished(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(json, &report, || render_report(&report))?;
    Ok(exit::failed_if(
        report.outcome != ShutdownOutcome::Completed,
    ))
}

/// Refuses to `act` (`shut services down`) without a terminal to confirm on: a
/// script must say `--yes`.
pub fn need_terminal(act: &str) -> Result<(), Failure> {
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "refusing to {act} without confirmation: stdin is not a terminal; \
         pass --yes to confirm on the command line"
    )))
}

/// Asks the person to type yes to `what`; says nothing was `done` (`stopped`) when
/// they do not.
pub fn confirmed(what: &str, done: &str) -> bool {
    print!("\nType yes to {what}: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        return true;
    }
    eprintln!("drctl: not confirmed; nothing was {done}");
    false
}

/// Prints a shutdown step as a line as it happens (nothing for `--json`).
pub fn show_event(json: bool, event: &Event) {
    if json {
        return;
    }
    match event {
        Event::Shutdown(event) => println!("{}", event_line(event)),
        Event::Progress(p) => {
            // Preserve backups: one line now and then would flood; show the task only
            // when it finishes a known total.
            if p.total.is_some_and(|t| t == p.done) {
                println!("           {}: {} {}", p.task, p.done, p.detail);
            }
        }
    }
}

/// One step as a line: `  +1.204s stop     api        stopped   after SIGTERM in 80 ms`.
pub fn event_line(event: &ShutdownEvent) -> String {
    let mut line = format!(
        "{:>9} {:<9}",
        format!("+{:.3}s", event.elapsed_ms as f64 / 1000.0),
        event.phase.as_str()
    );
    match &event.subject {
        Some(subject) => {
            let _ = write!(line, " {subject:<14} {:<12}", event.state);
        }
        None => {
            let _ = write!(line, " {:<12}", event.state);
        }
    }
    if !event.detail.is_empty() {
        line.push(' ');
        line.push_str(&event.detail);
    }
    line.trim_end().to_owned()
}

fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The plan for a person.
pub fn render_plan(plan: &ShutdownPlan) -> String {
    let mut out = String::new();
    let phases: Vec<&str> = plan.phases.iter().map(|p| p.as_str()).collect();
    let _ = writeln!(
        out,
        "Shutdown plan{}: {}",
        if plan.force { " (forced)" } else { "" },
        phases.join(" -> ")
    );
    if !plan.preserve.is_empty() {
        let _ = writeln!(
            out,
            "\nPreserve (backup jobs, {} deadline in all)",
            secs(plan.preserve_deadline_ms)
        );
        for p in &plan.preserve {
            let _ = writeln!(out, "  {:<20} before {}", p.job, p.services.join(", "));
        }
    }
    if !plan.drain.is_empty() {
        out.push_str("\nDrain hooks, in order\n");
        for h in &plan.drain {
            let _ = writeln!(
                out,
                "  {:<14} {} (timeout {})",
                h.service,
                h.run.join(" "),
                secs(h.timeout_ms)
            );
        }
    }
    out.push_str("\nStop levels (a level stops in parallel, after the one above it)\n");
    let mut rows = Vec::new();
    for (i, level) in plan.levels.iter().enumerate() {
        for s in level {
            let mut notes = Vec::new();
            if s.critical {
                notes.push("critical".to_owned());
            }
            if !s.preserve.is_empty() {
                notes.push(format!("preserve {}", s.preserve.join(",")));
            }
            if !s.can_start {
                notes.push("no start command: rollback cannot start it".to_owned());
            }
            rows.push(vec![
                i.to_string(),
                s.name.clone(),
                s.driver.clone(),
                s.target.clone(),
                s.signal.clone(),
                secs(s.timeout_ms),
                if s.depends_on.is_empty() {
                    "-".to_owned()
                } else {
                    s.depends_on.join(",")
                },
                notes.join("; "),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "LEVEL", "SERVICE", "DRIVER", "TARGET", "SIGNAL", "TIMEOUT", "NEEDS", "NOTES",
        ],
        &rows,
    ));
    if !plan.left_out.is_empty() {
        let _ = writeln!(out, "\nLeft out by --only: {}", plan.left_out.join(", "));
    }
    let _ = writeln!(
        out,
        "\nWorst case: {} (every step using its full timeout, plus the wait after each kill)",
        secs(plan.worst_case_ms)
    );
    out
}

/// Every service with its level, state, time taken and detail, as a table.
pub fn services_table(services: &[ServiceResult]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.level.to_string(),
                s.name.clone(),
                s.state.to_string(),
                s.took_ms.map_or("-".to_owned(), |ms| format!("{ms} ms")),
                s.detail.clone(),
            ]
        })
        .collect();
    table(&["LEVEL", "SERVICE", "STATE", "TOOK", "DETAIL"], &rows)
}

/// The problems of a shutdown or abort, under a heading; nothing when there are none.
pub fn problems_text(problems: &[String]) -> String {
    let mut out = String::new();
    if !problems.is_empty() {
        out.push_str("\nProblems\n");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

/// The end of a shutdown for a person.
pub fn render_report(report: &ShutdownReport) -> String {
    let mut out = format!(
        "\nShutdown #{} ({}{}) {} in {}\n",
        report.run_id,
        report.trigger,
        if report.force { ", forced" } else { "" },
        report.outcome.as_str(),
        secs(report.elapsed_ms)
    );
    out.push_str(&services_table(&report.services));
    out.push_str(&problems_text(&report.problems));
    out
}
