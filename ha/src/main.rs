use std::process::ExitCode;

use clap::Parser;

/// keepalived-compatible HA daemon: VRRP, virtual IPs, IPVS/nftables virtual servers, health checks.
#[derive(Parser, Debug)]
#[command(name = "ha", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("ha: this component is not built yet (issue #6); only --help works");
    ExitCode::from(2)
}
