use std::process::ExitCode;

use clap::Parser;
use tftpd::cli::Cli;
use tracing::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("TFTPD_LOG", &cli.log_format);
    match tftpd::daemon::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tftpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
