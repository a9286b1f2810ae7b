use std::process::ExitCode;

use clap::Parser;

/// Gray rollouts behind the HA load balancer with no failed request.
#[derive(Parser, Debug)]
#[command(name = "release", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("release: this component is not built yet (issue #8); only --help works");
    ExitCode::from(2)
}
