//! drd: the disaster-recovery supervisor daemon, as a library.
//!
//! `main.rs` parses flags and calls [`daemon::run`]; everything else lives here so
//! tests and tools can drive the same code. This crate wires the layers below it
//! (`drd-core`, `drd-backup`, `drd-shutdown`) to the control socket, the signals and systemd; see the
//! README's architecture table for which module holds which concern.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod logging;
pub mod offline;
pub mod signals;
pub mod state;
