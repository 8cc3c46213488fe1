//! drd: the disaster-recovery supervisor daemon, as a library.
//!
//! `main.rs` parses flags and calls [`daemon::run`]; everything else lives here so
//! tests and tools can drive the same code. This crate wires the layers below it
//! (`drd-core`, `drd-backup`) to the control socket, the signals and systemd; see the
//! README's architecture table for which module holds which concern.

pub mod control;
pub mod daemon;
pub mod logging;
pub mod offline;
pub mod shutdown;
pub mod signals;
pub mod state;

// The shutdown code still lives in this crate and reaches the lower layers through
// `crate::catalog`, `crate::jobs` and the like; these keep those paths working until it
// moves to a crate of its own (issue 11). New code names `drd_core` / `drd_backup`.
pub use drd_backup::{backup, jobs, tiers};
pub use drd_core::{audit, catalog, command, config, docker, systemd, util, workers};
