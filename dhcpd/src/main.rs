use std::process::ExitCode;

use dhcpd::cli::Cli;

/// mimalloc: with glibc's allocator, malloc and free took ~10 % of the CPU per DORA.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
