use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ha::control::{self, Listener};
use ha::daemon::Daemon;

/// keepalived-compatible HA daemon: VRRP, virtual IPs, virtual servers, health checks.
#[derive(Parser, Debug)]
#[command(name = "ha", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The keepalived.conf to read.
    #[arg(
        long,
        short = 'f',
        default_value = "/etc/keepalived/keepalived.conf",
        env = "HA_CONFIG"
    )]
    config: PathBuf,
    /// Control API: a unix socket path, or HOST:PORT for TCP (then a token is required).
    #[arg(long, default_value = "/run/ha/ha.sock")]
    control: String,
    /// File holding the bearer token of the TCP control API.
    #[arg(long)]
    control_token_file: Option<PathBuf>,
    /// Config id for `@ID` conditional lines (keepalived's -i); default: the short host name.
    #[arg(long, short = 'i')]
    config_id: Option<String>,
    /// Check the configuration, print problems as FILE:LINE:COL: message, and exit.
    #[arg(long)]
    check: bool,
    /// Print the configuration as ha understood it, and exit.
    #[arg(long)]
    dump_config: bool,
    /// Load-balancer backend for virtual servers (used from issue #7 on).
    #[arg(long, default_value = "auto", value_parser = ["ipvs", "nftables", "auto"])]
    lvs_backend: String,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the state of a running ha.
    Status {
        #[arg(long, default_value = "/run/ha/ha.sock")]
        control: String,
        /// Bearer token for a TCP control API (or the HA_TOKEN variable).
        #[arg(long, env = "HA_TOKEN")]
        token: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn status(control: &str, token: Option<&str>, json: bool) -> anyhow::Result<()> {
    let body = control::get(control, "/v1/status", token)?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let s: serde_json::Value = serde_json::from_str(&body)
        .context("the control API answered something that is not JSON")?;
    println!(
        "{:<12} {:>4} {:<10} {:<7} {:>8} {:>9} {:<16} vips",
        "instance", "vrid", "interface", "state", "priority", "effective", "master"
    );
    for i in s["vrrp"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:>4} {:<10} {:<7} {:>8} {:>9} {:<16} {}",
            i["name"].as_str().unwrap_or(""),
            i["vrid"].as_u64().unwrap_or(0),
            i["interface"].as_str().unwrap_or(""),
            i["state"].as_str().unwrap_or(""),
            i["priority"].as_u64().unwrap_or(0),
            i["effective_priority"].as_u64().unwrap_or(0),
            i["master_address"].as_str().unwrap_or("-"),
            i["vips"]
                .as_array()
                .map(|v| v
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Cmd::Status {
        control,
        token,
        json,
    }) = &cli.cmd
    {
        status(control, token.as_deref(), *json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = cli.config_id.clone().unwrap_or_else(hostname);
    let cfg = match ha::conf::load(&cli.config, &id) {
        Ok(cfg) => cfg,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            let n = diags.iter().filter(|d| !d.warning).count();
            eprintln!("ha: {n} error(s) in {}", cli.config.display());
            return Ok(ExitCode::FAILURE);
        }
    };
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
        return Ok(ExitCode::SUCCESS);
    }
    if cli.dump_config {
        println!("{cfg:#?}");
        return Ok(ExitCode::SUCCESS);
    }
    let token = match &cli.control_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = if cli.control.contains('/') {
            let p = PathBuf::from(&cli.control);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            }
            let _ = std::fs::remove_file(&p);
            Listener::Unix(tokio::net::UnixListener::bind(&p).with_context(|| format!("cannot listen on {}", p.display()))?)
        } else {
            if token.is_none() {
                anyhow::bail!("--control {} is TCP: give --control-token-file, an unauthenticated control API on the network is refused", cli.control);
            }
            Listener::Tcp(tokio::net::TcpListener::bind(&cli.control).await.with_context(|| format!("cannot listen on {}", cli.control))?)
        };
        let daemon = Daemon::new(cfg, cli.config.clone(), id);
        let shared = daemon.shared.clone();
        tokio::spawn(control::serve(listener, shared, token));
        daemon.run().await?;
        if cli.control.contains('/') {
            let _ = std::fs::remove_file(&cli.control);
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("HA_LOG", &cli.log_format);
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ha: {e:#}");
            ExitCode::FAILURE
        }
    }
}
