use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// keepalived-compatible HA daemon: VRRP, virtual IPs, virtual servers, health checks.
#[derive(Parser, Debug)]
#[command(name = "ha", version, about)]
struct Cli {
    /// The keepalived.conf to read.
    #[arg(
        long,
        short = 'f',
        default_value = "/etc/keepalived/keepalived.conf",
        env = "HA_CONFIG"
    )]
    config: PathBuf,
    /// Config id for `@ID` conditional lines (keepalived's -i); default: the short host name.
    #[arg(long, short = 'i')]
    config_id: Option<String>,
    /// Check the configuration, print problems as FILE:LINE:COL: message, and exit.
    #[arg(long)]
    check: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let id = cli.config_id.clone().unwrap_or_else(hostname);
    match ha::conf::load(&cli.config, &id) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            if cli.check {
                println!(
                    "{}: OK ({} vrrp instances, {} scripts, {} virtual servers)",
                    cli.config.display(),
                    cfg.instances.len(),
                    cfg.scripts.len(),
                    cfg.virtual_servers.len()
                );
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "ha: the VRRP daemon is not built yet (issue #6); only --check works in this build"
            );
            ExitCode::from(2)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            let n = diags.iter().filter(|d| !d.warning).count();
            eprintln!("ha: {n} error(s) in {}", cli.config.display());
            ExitCode::FAILURE
        }
    }
}
