//! drd: the disaster-recovery supervisor daemon, as a library.
//!
//! `main.rs` parses flags and calls [`daemon::run`]; everything else lives here so
//! tests and tools can drive the same code. See the README's architecture table for
//! which module holds which concern.

pub mod audit;
pub mod backup;
pub mod catalog;
pub mod command;
pub mod config;
pub mod control;
pub mod daemon;
pub mod docker;
pub mod jobs;
pub mod logging;
pub mod offline;
pub mod shutdown;
pub mod signals;
pub mod state;
pub mod systemd;
pub mod tiers;
pub mod util;
pub mod workers;
