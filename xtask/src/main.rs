//! `cargo xtask`: drd's build tasks, in Rust rather than in `build.rs` or a Makefile.
//!
//! - `cargo xtask gen`: the man pages (`drd(1)`, `drctl(1)` and one page per
//!   subcommand, from the clap definitions; `drd.toml(5)` from
//!   docs/configuration.md) and the bash, zsh and fish completions, under
//!   `target/dist/`.
//! - `cargo xtask dist`: a release build of drd and drctl, `gen`, then
//!   `cargo deb -p drd --no-build`: the Debian package in `target/debian/`.
//!
//! The generated files are never committed: the package's assets
//! (`[package.metadata.deb]` in crates/daemon/Cargo.toml) point at `target/dist/`.

mod completions;
mod dist;
mod man;
mod markdown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// drd's build tasks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Write the man pages and shell completions (default: under target/dist/).
    Gen {
        /// The folder to write man/ and completions/ into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build drd and drctl, write the man pages and completions, and make the .deb.
    Dist {
        /// The cargo profile of the binaries to package; CI packages the `dev` build
        /// it already has, to stay within its time.
        #[arg(long, default_value = "release")]
        profile: String,
        /// Package the binaries already built with --profile (do not run cargo build).
        #[arg(long)]
        no_build: bool,
    },
}

/// What a task failed at, for the one line `main` prints.
type Result<T, E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.task {
        Task::Gen { out } => gen(&out.unwrap_or_else(|| root.join("target/dist"))),
        Task::Dist { profile, no_build } => dist::run(&root, &profile, no_build),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Writes everything the package ships that is generated: man pages, completions.
fn gen(out: &std::path::Path) -> Result<()> {
    let root = workspace_root();
    man::write_all(&root, &out.join("man"))?;
    completions::write_all(&out.join("completions"))?;
    println!("wrote man pages and completions under {}", out.display());
    Ok(())
}

/// The workspace root: xtask/ sits right below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), PathBuf::from)
}

/// Creates `path`'s folder and writes `bytes` to it, naming the file on failure.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("write {}: {e}", path.display()))
}
