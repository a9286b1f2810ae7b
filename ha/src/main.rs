//! `ha`: parse the command line, set up logging, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use ha::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("HA_LOG", &cli.log_format);
    match ha::app::run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ha: {e:#}");
            ExitCode::FAILURE
        }
    }
}
