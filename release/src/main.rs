use std::process::ExitCode;

use clap::Parser;
use release::cli::Cli;
use release::exit::kind_of;

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("RELEASE_LOG", "text");
    match release::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("release: {e:#}");
            ExitCode::from(kind_of(&e).code())
        }
    }
}
