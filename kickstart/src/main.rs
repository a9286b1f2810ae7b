use std::process::ExitCode;

use clap::Parser;
use kickstart::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("KICKSTART_LOG", &cli.log_format);
    match kickstart::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kickstart: {e:#}");
            ExitCode::FAILURE
        }
    }
}
