//! `drctl`: parse the command line and run it (the library's [`drctl::Cli::run`]).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match drctl::Cli::try_parse() {
        Ok(cli) => cli.run(),
        Err(err) => {
            let _ = err.print();
            ExitCode::from(if err.use_stderr() {
                drctl::exit::USAGE
            } else {
                0
            })
        }
    }
}
