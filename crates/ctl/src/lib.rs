//! drctl, the on-call engineer's client for drd, as a library.
//!
//! [`Cli`] is the command line (`cli.rs`); [`Cli::run`] hands it to the one command
//! module that runs it (`commands/<command>.rs`: send one request over the control
//! socket, print the answer for a person or as JSON with `--json`). Exit codes are in
//! [`exit`]. `main.rs` only parses and calls [`Cli::run`].

mod cli;
mod client;
mod commands;
pub mod exit;
mod progress;

pub use cli::Cli;
