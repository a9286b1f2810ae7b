//! `opsflow-gen --out DIR [--bin-dir target/release]`: writes DIR/man/opsflow-PROG.N (roff),
//! DIR/bash/opsflow-PROG and DIR/zsh/_opsflow-PROG for the five programs, under their installed
//! names. Used by packaging/build-debs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Command, Parser};
use clap_complete::Shell;

mod from_help;

#[derive(Parser, Debug)]
#[command(name = "opsflow-gen", version = opsflow_common::VERSION, about)]
struct Cli {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Where the built programs are, for those whose clap definition is not in their library
    /// yet (their page is rebuilt from `--help`).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// (crate, installed name, man section)
const PROGRAMS: [(&str, &str, u8); 5] = [
    ("dhcpd", "opsflow-dhcpd", 8),
    ("tftpd", "opsflow-tftpd", 8),
    ("ha", "opsflow-ha", 8),
    ("kickstart", "opsflow-kickstart", 1),
    ("release", "opsflow-release", 1),
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    for dir in ["man", "bash", "zsh"] {
        std::fs::create_dir_all(cli.out.join(dir))
            .with_context(|| format!("cannot create {}", cli.out.join(dir).display()))?;
    }
    for (krate, name, section) in PROGRAMS {
        let (cmd, how) = match from_library(krate) {
            Some(c) => (c, "clap definition"),
            None => (
                from_help::command(&cli.bin_dir.join(krate))?,
                "--help output (no cli::Cli in its library yet)",
            ),
        };
        write_all(cmd, name, section, &cli.out)?;
        eprintln!("opsflow-gen: {name}: from its {how}");
    }
    Ok(())
}

/// The crate's own clap `Command`, where its library has `cli::Cli`.
fn from_library(krate: &str) -> Option<Command> {
    #[allow(unused_imports)]
    use clap::CommandFactory;
    match krate {
        #[cfg(cli_dhcpd)]
        "dhcpd" => Some(dhcpd::cli::Cli::command()),
        #[cfg(cli_tftpd)]
        "tftpd" => Some(tftpd::cli::Cli::command()),
        #[cfg(cli_ha)]
        "ha" => Some(ha::cli::Cli::command()),
        #[cfg(cli_kickstart)]
        "kickstart" => Some(kickstart::cli::Cli::command()),
        #[cfg(cli_release)]
        "release" => Some(release::cli::Cli::command()),
        _ => None,
    }
}

fn write_all(cmd: Command, name: &'static str, section: u8, out: &Path) -> Result<()> {
    let mut cmd = cmd
        .name(name)
        .bin_name(name)
        .version(opsflow_common::VERSION);
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, section, &out.join("man"))?;
    for (shell, file) in [
        (Shell::Bash, out.join("bash").join(name)),
        (Shell::Zsh, out.join("zsh").join(format!("_{name}"))),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut buf);
        write(&file, &buf)?;
    }
    Ok(())
}

/// The page of `cmd` and, recursively, of each subcommand (`opsflow-dhcpd-leases.8`: the
/// SUBCOMMANDS section of the parent names them).
fn man_pages(cmd: &Command, section: u8, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, section, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section.to_string())
        .source(format!("opsflow {}", env!("CARGO_PKG_VERSION")))
        .manual("opsflow");
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("cannot render the man page of {}", cmd.get_name()))?;
    write(&dir.join(man.get_filename()), &buf)
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}
