use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ha::control::{self, Listener};
use ha::daemon::Daemon;
use opsflow_control::client::Blocking;
use opsflow_control::RsAction;

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
    /// Load-balancer backend for virtual servers: nftables (NAT in a table of our own), ipvs,
    /// or auto (IPVS when the kernel has it and this build can program it, else nftables).
    #[arg(long, default_value = "auto", value_parser = ["ipvs", "nftables", "auto"])]
    lvs_backend: String,
    /// Where drains are kept across reloads and restarts.
    #[arg(long, default_value = "/var/lib/ha/state.json", env = "HA_STATE_FILE")]
    state_file: PathBuf,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// A real server of a running ha.
#[derive(clap::Args, Debug)]
struct Target {
    /// `VIP:PORT` or `fwmark-N`.
    virtual_server: String,
    /// `RIP:PORT`.
    real_server: String,
    #[arg(long, default_value = "/run/ha/ha.sock")]
    control: String,
    /// Bearer token for a TCP control API (or the HA_TOKEN variable).
    #[arg(long, env = "HA_TOKEN")]
    token: Option<String>,
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
    /// Take a real server out of rotation without removing it (weight 0; open connections
    /// finish). Kept across reloads and restarts until `enable`.
    Drain(Target),
    /// Put a drained real server back (at its configured weight once it is healthy).
    Enable(Target),
    /// Print the MD5 digest of a page, for HTTP_GET/SSL_GET `digest` (keepalived's genhash).
    Genhash {
        /// Server address.
        #[arg(short = 's', long)]
        server: std::net::Ipv4Addr,
        /// Port (default 80, or 443 with --ssl).
        #[arg(short = 'p', long)]
        port: Option<u16>,
        /// URL path.
        #[arg(short = 'u', long, default_value = "/")]
        url: String,
        /// Use TLS.
        #[arg(short = 'S', long)]
        ssl: bool,
        /// Host header (virtualhost).
        #[arg(short = 'V', long)]
        virtualhost: Option<String>,
        /// Print the response header too.
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Timeout in seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
}

fn genhash(
    server: std::net::Ipv4Addr,
    port: Option<u16>,
    url: &str,
    ssl: bool,
    vhost: Option<&str>,
    verbose: bool,
    timeout: f64,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let port = port.unwrap_or(if ssl { 443 } else { 80 });
    let page = rt
        .block_on(ha::lvs::check::fetch(
            server,
            port,
            url,
            vhost,
            ssl,
            None,
            std::time::Duration::from_secs_f64(timeout),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if verbose {
        println!("-----------------------[    HTTP Header Buffer    ]-----------------------");
        println!("{}", page.head);
        println!("-----------------------[ HTML MD5 final resulting ]-----------------------");
    }
    println!("MD5SUM = {}", ha::lvs::check::md5_hex(&page.body));
    if !(200..300).contains(&page.status) {
        eprintln!("note: the server answered status {}", page.status);
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn client(control: &str, token: Option<&str>) -> anyhow::Result<Blocking> {
    let ep = opsflow_control::Endpoint::parse(control, token)?;
    Ok(Blocking::new(opsflow_control::Client::new(ep))?)
}

fn status(control: &str, token: Option<&str>, json: bool) -> anyhow::Result<()> {
    // a reader that stops early (`ha status | head`) ends us quietly, as for any CLI tool
    // SAFETY: restoring the default disposition of SIGPIPE in this short-lived command.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let s = client(control, token)?.status()?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", control::table(&s));
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.cmd {
        Some(Cmd::Status {
            control,
            token,
            json,
        }) => {
            status(control, token.as_deref(), *json)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Cmd::Drain(t)) | Some(Cmd::Enable(t)) => {
            let (virtual_server, real_server, control, token) =
                (&t.virtual_server, &t.real_server, &t.control, &t.token);
            let action = if matches!(cli.cmd, Some(Cmd::Drain(_))) {
                RsAction::Drain
            } else {
                RsAction::Enable
            };
            let r = client(control, token.as_deref())?.set_real_server(
                virtual_server,
                real_server,
                action,
            )?;
            println!("{}", serde_json::to_string(&r)?);
            return Ok(ExitCode::SUCCESS);
        }
        Some(Cmd::Genhash {
            server,
            port,
            url,
            ssl,
            virtualhost,
            verbose,
            timeout,
        }) => {
            genhash(
                *server,
                *port,
                url,
                *ssl,
                virtualhost.as_deref(),
                *verbose,
                *timeout,
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
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
        let address: opsflow_control::Address = cli.control.parse()?;
        let listener = match &address {
            opsflow_control::Address::Unix(p) => {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
                }
                let _ = std::fs::remove_file(p);
                Listener::Unix(tokio::net::UnixListener::bind(p).with_context(|| format!("cannot listen on {}", p.display()))?)
            }
            opsflow_control::Address::Tcp { .. } => {
                if token.is_none() {
                    anyhow::bail!("--control {address} is TCP: give --control-token-file, an unauthenticated control API on the network is refused");
                }
                let a = address.host_header();
                Listener::Tcp(tokio::net::TcpListener::bind(&a).await.with_context(|| format!("cannot listen on {a}"))?)
            }
        };
        let mut daemon = Daemon::new(cfg.clone(), cli.config.clone(), id);
        let shared = daemon.shared.clone();
        let lvs = if cfg.lvs.is_empty() {
            None
        } else {
            let backend = ha::lvs::select_backend(&cli.lvs_backend)?;
            Some(ha::lvs::Lvs::start(cfg.lvs.clone(), backend, cli.state_file.clone(), shared.clone()))
        };
        daemon.set_lvs(lvs.clone());
        tokio::spawn(control::serve(listener, shared, token, lvs));
        daemon.run().await?;
        if let Some(p) = address.unix_path() {
            let _ = std::fs::remove_file(p);
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
