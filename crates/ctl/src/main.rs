//! `drctl`: the on-call engineer's client for drd.
//!
//! Parses the command line, sends one request over the control socket, and prints the
//! answer for a person (or as JSON with `--json`). Exit codes are in `exit.rs`.

mod client;
mod exit;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drd_proto::{Event, Reply, Request};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use client::{Client, ClientError};

/// drctl talks to drd, the disaster-recovery supervisor, over its Unix socket.
#[derive(Parser)]
#[command(version, about, after_long_help = exit::HELP, after_help = "Exit codes: see --help.")]
struct Cli {
    /// drd's control socket.
    #[arg(long, global = true, env = "DRD_SOCKET", default_value = drd_proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the daemon: version, uptime, config, workers and the last audit entries.
    Status {
        /// How many recent audit entries to show.
        #[arg(long, default_value_t = 10)]
        audit: u32,
    },
    /// List audit entries, or verify the audit hash chain.
    ///
    /// Every state change, refusal, signal and config reload is in the audit log, and
    /// each entry carries the hash of the one before it.
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// Only entries newer than this, like 30m, 2h or 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many (the newest); 0 for all.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Reload drd's config file; a bad config is refused with its problems and the old
    /// one stays in force.
    Reload,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; name the first entry that does not match (exit 1).
    Verify,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("drctl: cannot start: {err}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("drctl: {err:#}");
            exit::code_for(&err)
        }
    }
}

async fn run(cli: &Cli) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(&cli.socket).await?;
    match &cli.command {
        Command::Status { audit } => {
            let reply = client
                .request(Request::Status { audit_tail: *audit }, |_| {})
                .await?;
            let Reply::Status(report) = reply else {
                return Err(unexpected(&reply));
            };
            print(cli.json, &report, || render::status(&report));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: None,
            since,
            limit,
        } => {
            let since_unix_ms =
                since.map(|d| render::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let reply = client
                .request(
                    Request::AuditList {
                        since_unix_ms,
                        limit: *limit,
                    },
                    |_| {},
                )
                .await?;
            let Reply::AuditEntries(entries) = reply else {
                return Err(unexpected(&reply));
            };
            print(cli.json, &entries, || {
                if entries.is_empty() {
                    "no audit entries in that window\n".to_owned()
                } else {
                    render::audit_table(&entries)
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: Some(AuditCommand::Verify),
            ..
        } => {
            let bar = progress_bar(cli.json);
            let reply = client
                .request(Request::AuditVerify, |event| show(&bar, &event))
                .await;
            bar.finish_and_clear();
            let Reply::AuditVerified(report) = reply? else {
                return Err(ClientError::Protocol("unexpected reply".to_owned()));
            };
            print(cli.json, &report, || render::audit_verify(&report) + "\n");
            Ok(if report.first_mismatch.is_some() {
                ExitCode::from(exit::CHECK_FAILED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Reload => {
            let reply = client.request(Request::Reload, |_| {}).await?;
            let Reply::Reloaded { config_path } = reply else {
                return Err(unexpected(&reply));
            };
            print(
                cli.json,
                &serde_json::json!({ "reloaded": config_path }),
                || format!("reloaded {config_path}\n"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(out) => println!("{out}"),
            Err(err) => eprintln!("drctl: cannot format JSON: {err}"),
        }
    } else {
        print!("{}", text());
    }
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}

/// A bar on stderr; hidden for `--json` and when stderr is not a terminal.
fn progress_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn show(bar: &ProgressBar, event: &Event) {
    match event {
        Event::Progress(progress) => {
            bar.set_message(progress.task.clone());
            if let Some(total) = progress.total {
                bar.set_length(total);
            }
            bar.set_position(progress.done);
        }
    }
}
