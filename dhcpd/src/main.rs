use std::process::ExitCode;

use clap::Parser;

/// DHCPv4 server for PXE networks that reads ISC dhcpd.conf.
#[derive(Parser, Debug)]
#[command(name = "dhcpd", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("dhcpd: this component is not built yet (issue #3); only --help works");
    ExitCode::from(2)
}
