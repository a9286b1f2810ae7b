use std::process::ExitCode;

use clap::Parser;

/// One inventory drives PXE menus, DHCP hosts, kickstarts and HA configs.
#[derive(Parser, Debug)]
#[command(name = "kickstart", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("kickstart: this component is not built yet (issue #5); only --help works");
    ExitCode::from(2)
}
