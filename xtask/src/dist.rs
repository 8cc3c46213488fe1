//! `cargo xtask dist`: the Debian package, in the one order that works.
//!
//! cargo-deb packages files that must exist first: the binaries (`cargo build`) and
//! the man pages and completions ([`crate::gen`]). So: build, generate, then
//! `cargo deb --no-build`, which strips the binaries and packs what
//! `[package.metadata.deb]` in crates/daemon/Cargo.toml lists.

use std::path::Path;
use std::process::Command;

use crate::Result;

/// Builds drd and drctl with `profile` (unless `no_build`), writes the generated
/// files, and makes the .deb under target/debian/.
pub fn run(root: &Path, profile: &str, no_build: bool) -> Result<()> {
    let cargo_deb = Command::new(cargo_bin())
        .args(["deb", "--version"])
        .output();
    if !cargo_deb.is_ok_and(|out| out.status.success()) {
        return Err(
            "cargo-deb is missing: install it with `cargo install --locked cargo-deb`".into(),
        );
    }
    if !no_build {
        cargo(
            root,
            &[
                "build",
                "--locked",
                "--profile",
                profile,
                "-p",
                "drd",
                "-p",
                "drctl",
            ],
        )?;
    }
    crate::gen(&root.join("target/dist"))?;
    // --strip: the release profile keeps line tables for backtraces, and cargo-deb
    // would ship them (a 165 MB drd, unstripped-binary-or-object for lintian).
    let mut deb = vec!["deb", "-p", "drd", "--no-build", "--strip"];
    if profile != "release" {
        deb.extend(["--profile", profile]);
    }
    cargo(root, &deb)
}

/// Runs `cargo ARGS` in the workspace root; fails unless it exits 0.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = cargo_bin();
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("run {cargo} {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The cargo that runs this task, or the one on PATH.
fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
