//! The man pages, gzipped as Debian ships them:
//!
//! - `drd.1`, `drctl.1` and a page per subcommand (`drctl-restore.1`,
//!   `drd-key-generate.1`, ...), rendered by clap_mangen from the clap definitions, so
//!   they say what `--help` says;
//! - `drd.toml.5`, docs/configuration.md turned into roff by [`crate::markdown`].
//!
//! Each page ends with a SEE ALSO (and `drd.1` with FILES) that clap cannot know.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use flate2::{Compression, GzBuilder};

use crate::{markdown, write_file, Result};

/// Where the package puts what drd reads and writes; the FILES section of drd(1).
const FILES: &[(&str, &str)] = &[
    ("/etc/drd/drd.toml", "the config (see drd.toml(5))"),
    (
        "/etc/drd/keys/",
        "key files, mode 0600, in a folder only root may enter",
    ),
    (
        "/var/lib/drd/",
        "the catalog (catalog.db: job history, checkpoints, the audit log) and scratch space",
    ),
    ("/var/backups/drd/", "the local tier of the packaged config"),
    ("/run/drd/drd.sock", "the control socket drctl talks to"),
    (
        "/usr/share/doc/drd/",
        "the README, the runbook, the configuration and repository-format docs, and Prometheus rules",
    ),
];

/// Writes every man page, gzipped, into `out/man1/` and `out/man5/`.
pub fn write_all(root: &Path, out: &Path) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let mut pages = Vec::new();
    collect(
        drd::cli::Cli::command(),
        &["drctl(1)", "drd.toml(5)"],
        &mut pages,
    )?;
    collect(
        drctl::Cli::command(),
        &["drd(1)", "drd.toml(5)"],
        &mut pages,
    )?;
    for (file, page) in pages {
        write_gz(&out.join("man1").join(format!("{file}.gz")), &page)?;
    }
    let doc = root.join("docs/configuration.md");
    let source =
        std::fs::read_to_string(&doc).map_err(|e| format!("read {}: {e}", doc.display()))?;
    let page = markdown::to_man_page(
        &source,
        &markdown::Title {
            name: "drd.toml",
            section: 5,
            summary: "the configuration file of drd, the disaster-recovery supervisor",
            source: &format!("drd {version}"),
            manual: "File Formats",
            see_also: &["drd(1)", "drctl(1)"],
        },
    );
    write_gz(&out.join("man5/drd.toml.5.gz"), &page)
}

/// Renders `command`'s page and, below it, one for each of its subcommands (named
/// `PARENT-SUB`, as git's are), into `pages` as `(file name, roff)`.
fn collect(
    command: clap::Command,
    see_also: &[&str],
    pages: &mut Vec<(String, String)>,
) -> Result<()> {
    // `help` subcommands would be listed as pages that do not exist.
    let mut command = without_help_subcommands(command);
    command.build();
    walk(&command, see_also, pages)
}

fn without_help_subcommands(command: clap::Command) -> clap::Command {
    command
        .disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommands)
}

fn walk(
    command: &clap::Command,
    see_also: &[&str],
    pages: &mut Vec<(String, String)>,
) -> Result<()> {
    let page_name = display_name(command);
    // Subcommands have no version of their own: every page says the package's.
    let man = clap_mangen::Man::new(command.clone())
        .title(page_name.to_uppercase())
        .source(format!("drd {}", env!("CARGO_PKG_VERSION")))
        .manual("drd manual");
    let mut roff = Vec::new();
    render(&man, command, &mut roff)
        .map_err(|e| format!("render the man page of {}: {e}", command.get_name()))?;
    let mut page = String::from_utf8(roff)
        .map_err(|e| format!("the man page of {} is not UTF-8: {e}", command.get_name()))?;
    if page_name == "drd" {
        page.push_str(&files_section());
    }
    page.push_str(&see_also_section(see_also));
    pages.push((format!("{page_name}.1"), page));
    let this_page = format!("{page_name}(1)");
    for sub in command.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        walk(sub, &[this_page.as_str()], pages)?;
    }
    Ok(())
}

/// clap_mangen's page, but an "Exit codes:" table after the help (drctl's) becomes an
/// EXIT STATUS section kept as laid out, where clap_mangen would refill it as prose.
fn render(
    man: &clap_mangen::Man,
    command: &clap::Command,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if command.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    let after = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(ToString::to_string);
    match after
        .as_deref()
        .and_then(|text| text.strip_prefix("Exit codes:\n"))
    {
        Some(table) => {
            let table = table.replace('\\', "\\e").replace('-', "\\-");
            write!(out, ".SH \"EXIT STATUS\"\n.nf\n{table}\n.fi\n")?;
        }
        None if after.is_some() => man.render_extra_section(out)?,
        None => {}
    }
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// `drctl`, `drctl-restore`, `drd-key-generate`: what clap's build sets for each
/// subcommand, or the bare name for the top command.
fn display_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_string()
}

fn see_also_section(pages: &[&str]) -> String {
    let refs: Vec<String> = pages
        .iter()
        .map(|page| match page.split_once('(') {
            Some((name, section)) => format!("\\fB{}\\fR({section}", name.replace('-', "\\-")),
            None => (*page).to_string(),
        })
        .collect();
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(",\n"))
}

fn files_section() -> String {
    let mut out = String::from(".SH FILES\n");
    for (path, what) in FILES {
        out.push_str(&format!(
            ".TP\n\\fI{}\\fR\n{}\n",
            path.replace('-', "\\-"),
            what
        ));
    }
    out
}

/// Gzips `page` the way lintian wants man pages: best compression, no name, no time.
fn write_gz(path: &Path, page: &str) -> Result<()> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gz.write_all(page.as_bytes())
        .and_then(|()| gz.finish())
        .map_err(|e| format!("gzip {}: {e}", path.display()))
        .and_then(|bytes| write_file(path, &bytes))
}
