use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tftpd::metrics::Metrics;
use tftpd::options::MAX_BLKSIZE;
use tftpd::remap::Remap;
use tftpd::server::{bind_listener, Config, Server};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// TFTP boot server: RFC 1350 with blksize, tsize, timeout and windowsize; tftp-hpa remap rules.
#[derive(Parser, Debug)]
#[command(name = "tftpd", version, about)]
struct Cli {
    /// Directory served; nothing outside it is ever read or written.
    #[arg(long, env = "TFTPD_ROOT")]
    root: PathBuf,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "0.0.0.0:69")]
    listen: Vec<SocketAddr>,
    /// Accept write requests (files are created or replaced under the root).
    #[arg(long)]
    allow_write: bool,
    /// File of remap rules in the tftp-hpa `-m` format.
    #[arg(long)]
    remap: Option<PathBuf>,
    /// Largest block size granted (also clamped to the path MTU).
    #[arg(long, default_value_t = MAX_BLKSIZE)]
    max_blksize: u16,
    /// Largest windowsize granted.
    #[arg(long, default_value_t = 64)]
    max_window: u16,
    /// Local ports for transfers, LOW:HIGH (for firewalls).
    #[arg(long, value_parser = parse_range)]
    port_range: Option<(u16, u16)>,
    /// Retransmission timeout in seconds when the client negotiates none.
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Retransmissions of one packet before a transfer is abandoned.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Check the settings and the remap file, print problems, and exit.
    #[arg(long)]
    check: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or("expected LOW:HIGH, e.g. 49152:49407")?;
    let lo: u16 = a.parse().map_err(|_| format!("'{a}' is not a port"))?;
    let hi: u16 = b.parse().map_err(|_| format!("'{b}' is not a port"))?;
    if lo == 0 || lo > hi {
        return Err(format!(
            "bad range {lo}:{hi}: LOW must be at least 1 and not above HIGH"
        ));
    }
    Ok((lo, hi))
}

fn load_remap(path: &Option<PathBuf>) -> anyhow::Result<Option<Remap>> {
    path.as_ref()
        .map(|p| Remap::load(p).map_err(anyhow::Error::from))
        .transpose()
}

fn check(cli: &Cli) -> Vec<String> {
    let mut problems = Vec::new();
    match std::fs::metadata(&cli.root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => problems.push(format!("--root {}: not a directory", cli.root.display())),
        Err(e) => problems.push(format!("--root {}: {e}", cli.root.display())),
    }
    if let Err(e) = load_remap(&cli.remap) {
        problems.push(e.to_string());
    }
    if !(8..=MAX_BLKSIZE).contains(&cli.max_blksize) {
        problems.push(format!(
            "--max-blksize {}: must be 8 to {MAX_BLKSIZE}",
            cli.max_blksize
        ));
    }
    if cli.max_window == 0 {
        problems.push("--max-window 0: must be at least 1".into());
    }
    if !(cli.timeout > 0.0 && cli.timeout <= 255.0) {
        problems.push(format!(
            "--timeout {}: must be above 0 and at most 255 seconds",
            cli.timeout
        ));
    }
    problems
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let problems = check(&cli);
    if cli.check || !problems.is_empty() {
        for p in &problems {
            eprintln!("tftpd: {p}");
        }
        if problems.is_empty() {
            println!("tftpd: configuration OK");
            return Ok(());
        }
        bail!("{} problem(s) in the settings", problems.len());
    }
    let cfg = Config {
        root: cli.root.clone(),
        allow_write: cli.allow_write,
        remap: load_remap(&cli.remap)?,
        max_blksize: cli.max_blksize,
        max_window: cli.max_window,
        port_range: cli.port_range,
        timeout: Duration::from_secs_f64(cli.timeout),
        retries: cli.retries,
    };
    let metrics = Arc::new(Metrics::default());
    let server = Server::new(cfg, metrics.clone())?;
    let mut listeners = Vec::new();
    for a in &cli.listen {
        listeners.push(bind_listener(*a).with_context(|| format!("cannot listen on {a}"))?);
    }
    if let Some(addr) = cli.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        let m = metrics.clone();
        tokio::spawn(opsflow_common::serve_metrics(
            l,
            Arc::new(move || m.render()),
        ));
    }
    let mut hup = signal(SignalKind::hangup())?;
    let reloader = server.clone();
    let remap_path = cli.remap.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match load_remap(&remap_path) {
                Ok(r) => {
                    info!(
                        rules = r.as_ref().map_or(0, |r| r.len()),
                        "SIGHUP: remap rules reloaded"
                    );
                    reloader.set_remap(r);
                }
                Err(e) => warn!(error = %e, "SIGHUP: remap file has errors; keeping the old rules"),
            }
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    server
        .run(listeners, shutdown, Duration::from_secs(5))
        .await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("TFTPD_LOG", &cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tftpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tftpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
