//! `drctl deadman`: every deadman switch with its state, newest ping and its kind,
//! next deadline and run in progress; `drctl deadman pause|resume NAME`.
//!
//! It exits 1 when a switch is down, so a monitoring script can alert on the exit
//! code alone.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{ago, span, table, time};
use drd_proto::{Reply, Request, SwitchInfo, SwitchState};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl deadman`.
#[derive(clap::Args)]
pub struct DeadmanArgs {
    #[command(subcommand)]
    action: Option<DeadmanAction>,
}

/// What to do to one switch.
#[derive(clap::Subcommand)]
enum DeadmanAction {
    /// Pause a switch: it acts on nothing, pings are noted, until resumed.
    Pause {
        /// The switch, as in `[deadman.NAME]`.
        name: String,
    },
    /// Resume a paused switch: new (acting on nothing) until its next ping.
    Resume {
        /// The switch, as in `[deadman.NAME]`.
        name: String,
    },
}

/// Runs `drctl deadman`.
pub async fn run(global: &Global, args: &DeadmanArgs) -> Result<ExitCode, Failure> {
    let now = drd_proto::text::now_ms();
    let (name, pause) = match &args.action {
        None => {
            let list = match ask(global, Request::Deadman).await? {
                Reply::Switches(list) => list,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &list, || switches_text(&list, now))?;
            return Ok(exit::failed_if(
                list.iter().any(|s| s.state == SwitchState::Down),
            ));
        }
        Some(DeadmanAction::Pause { name }) => (name, true),
        Some(DeadmanAction::Resume { name }) => (name, false),
    };
    let request = Request::DeadmanPause {
        name: name.clone(),
        pause,
    };
    let info = match ask(global, request).await? {
        Reply::SwitchPaused(info) => info,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &info, || switch_line(&info, now))?;
    Ok(ExitCode::SUCCESS)
}

fn when(now: i64, at: i64) -> String {
    if at >= now {
        format!("in {}", span(at - now))
    } else {
        ago(now, at)
    }
}

/// One switch in a line: `export: up since T; last ping success 3s ago; next
/// deadline in 4m 57s`.
pub fn switch_line(s: &SwitchInfo, now: i64) -> String {
    let mut line = format!("{}: {}", s.name, s.state.as_str());
    if let Some(since) = s.since_unix_ms {
        let _ = write!(line, " since {}", time(since));
    }
    if let Some((at, kind)) = s.last_ping {
        let _ = write!(line, "; last ping {} {}", kind.as_str(), when(now, at));
    }
    if let Some(code) = s.last_exit_code {
        let _ = write!(line, " (exit code {code})");
    }
    if let Some((at, id)) = &s.running {
        let _ = write!(
            line,
            "; run{} started {}",
            id.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
            when(now, *at)
        );
    }
    if let Some(at) = s.next_deadline_unix_ms {
        let _ = write!(line, "; next deadline {}", when(now, at));
    }
    if let Some(at) = s.down_at_unix_ms {
        let _ = write!(line, "; down {} if nothing comes", when(now, at));
    }
    line.push('\n');
    line
}

/// The switches table, then the newest action of each switch that took any.
pub fn switches_text(list: &[SwitchInfo], now: i64) -> String {
    if list.is_empty() {
        return "the config defines no deadman switches ([deadman.NAME])\n".to_owned();
    }
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.as_str().to_owned(),
                s.last_ping.map_or_else(dash, |(at, kind)| {
                    format!("{} {}", kind.as_str(), when(now, at))
                }),
                s.next_deadline_unix_ms
                    .map_or_else(dash, |at| when(now, at)),
                s.running.as_ref().map_or_else(dash, |(at, id)| {
                    format!(
                        "{}since {}",
                        id.as_deref().map(|i| format!("{i} ")).unwrap_or_default(),
                        time(*at)
                    )
                }),
                s.expects.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SWITCH",
            "STATE",
            "LAST PING",
            "NEXT DEADLINE",
            "RUNNING",
            "EXPECTS",
        ],
        &rows,
    );
    for s in list {
        if let Some(action) = s.actions.last() {
            let _ = writeln!(
                out,
                "{}: {} at {}: {}",
                s.name,
                action.action,
                time(action.at_unix_ms),
                action.outcome
            );
        }
    }
    out
}
