use std::process::ExitCode;

use clap::Parser;
use tftpd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("TFTPD_LOG", &cli.log_format);
    match tftpd::daemon::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr is the journal under systemd: one line, not a log event and a copy
            eprintln!("tftpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
