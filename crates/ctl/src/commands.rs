//! One module per command, each with its flags and a `run` that builds the request,
//! asks drd through [`crate::client::ask`], prints the reply and picks the exit code.
//! `cli.rs` is the only place that matches on the command line.
//!
//! What every command shares is here: the global flags ([`Global`]) and the one way
//! to print ([`print`]).

pub mod abort;
pub mod alerts;
pub mod audit;
pub mod backup;
pub mod backups;
pub mod deadman;
pub mod heartbeat;
pub mod jobs;
pub mod monitors;
pub mod prune;
pub mod recover;
pub mod reload;
pub mod repair;
pub mod restore;
pub mod shutdown;
pub mod shutdowns;
pub mod status;
pub mod test;
pub mod validate;
pub mod verify;

use std::path::PathBuf;

use serde::Serialize;

use crate::exit::Failure;

/// The flags every command takes.
#[derive(clap::Args)]
pub struct Global {
    /// drd's control socket.
    #[arg(long, global = true, env = "DRD_SOCKET", default_value = drd_proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Prints `value` as JSON for scripts, or `text()` for people. Every command prints
/// its reply through this.
pub fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        let out = serde_json::to_string_pretty(value).map_err(Failure::Json)?;
        println!("{out}");
    } else {
        print!("{}", text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::process::ExitCode;

    use super::*;

    #[test]
    fn json_that_cannot_be_formatted_is_an_internal_error_exit_70() {
        // JSON maps need string keys; this one cannot be written.
        let value = BTreeMap::from([((1, 2), 3)]);
        let failure = print(true, &value, String::new).expect_err("not JSON");
        assert_eq!(failure.report(), ExitCode::from(70));
        assert!(print(false, &value, String::new).is_ok());
    }
}
