use std::process::ExitCode;

use clap::Parser;

/// TFTP boot server.
#[derive(Parser, Debug)]
#[command(name = "tftpd", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("tftpd: this component is not built yet (issue #4); only --help works");
    ExitCode::from(2)
}
