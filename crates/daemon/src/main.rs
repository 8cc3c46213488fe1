//! `drd`: parse flags, set up logging, load the config, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drd::config::{Config, ConfigError};
use drd::logging::{self, LogFormat};

/// drd, the disaster-recovery supervisor.
///
/// Runs under systemd (`drd run`), protects the host's services and data, and is
/// driven by `drctl` over a Unix socket.
///
/// Exit codes: 0 success; 64 the config is invalid or the command line is wrong;
/// 70 an internal error; 73 the socket, state directory or catalog cannot be set up
/// (for example another drd is running).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what systemd's ExecStart calls).
    Run {
        /// The config file.
        #[arg(long, short, default_value = "/etc/drd/drd.toml")]
        config: PathBuf,
        /// Where logs go: auto picks the journal when its socket exists, else stderr.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
    },
    /// Check a config file and print every problem with its field and line.
    CheckConfig {
        /// The config file.
        #[arg(long, short, default_value = "/etc/drd/drd.toml")]
        config: PathBuf,
    },
}

const EX_USAGE: u8 = 64;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;

fn main() -> ExitCode {
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
    match runtime.block_on(drd::daemon::run(config, Some(log))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drd: {err}");
            ExitCode::from(EX_CANTCREAT)
        }
    }
}
