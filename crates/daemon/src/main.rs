//! `drd`: parse flags, set up logging, load the config, call the library.

use std::process::ExitCode;

use clap::Parser;
use drd::cli::{Cli, Command, KeyCommand, RepairCommand};
use drd::logging::{self, LogFormat};
use drd::offline;
use drd_core::config::{Config, ConfigError};

const EX_USAGE: u8 = 64;
const EX_NOINPUT: u8 = 66;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;

fn main() -> ExitCode {
    // Before any thread starts: see drd_memory::one_arena.
    drd_memory::one_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EX_USAGE } else { 0 });
        }
    };
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Snapshots { repo, job, json } => {
            offline_exit(offline::snapshots(&repo.into(), job.as_deref(), json))
        }
        Command::Restore {
            repo,
            backup_id,
            job,
            at,
            paths,
            target,
            overwrite,
            json,
            allow_older,
        } => {
            let args = offline::RestoreArgs {
                backup_id,
                job,
                at,
                paths,
                target,
                overwrite,
                allow_older,
            };
            offline_exit(offline::restore(&repo.into(), args, json))
        }
        Command::Verify {
            repo,
            job,
            read_data,
            subset,
            json,
        } => offline_exit(offline::verify(&repo.into(), job, read_data, subset, json)),
        Command::Key {
            command: KeyCommand::Generate { out },
        } => offline_exit(offline::key_generate(&out)),
        Command::Repair {
            command: RepairCommand::Index { repo, json },
        } => offline_exit(offline::repair_index(&repo.into(), json)),
    }
}

fn offline_exit(result: Result<(), offline::OfflineError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drd: {err}");
            ExitCode::from(match &err {
                offline::OfflineError::Usage(_) => EX_USAGE,
                offline::OfflineError::Backup(e) if e.is_not_found() => EX_NOINPUT,
                _ => 1,
            })
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn run(path: &std::path::Path, log_format: LogFormat) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err @ (ConfigError::Invalid { .. } | ConfigError::Read { .. })) => {
            eprintln!("drd: {err}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let log = match logging::init(log_format, &config.config.daemon.log_level) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("drd: cannot set up logging: {err:#}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("drd: cannot start the async runtime: {err}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let result = runtime.block_on(drd::daemon::run(config, Some(log)));
    // Work still running on the blocking pool was given its deadline inside `run`;
    // do not let it hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drd: {err}");
            ExitCode::from(EX_CANTCREAT)
        }
    }
}
