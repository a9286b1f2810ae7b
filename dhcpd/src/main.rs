use std::process::ExitCode;

use dhcpd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    opsflow_common::init_logging("DHCPD_LOG", &cli.log_format);
    match dhcpd::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
