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

fn status(control: &str, token: Option<&str>, json: bool) -> anyhow::Result<()> {
    // a reader that stops early (`ha status | head`) ends us quietly, as for any CLI tool
    // SAFETY: restoring the default disposition of SIGPIPE in this short-lived command.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    let vss = s["virtual_servers"].as_array().cloned().unwrap_or_default();
    if !vss.is_empty() {
        println!();
        println!(
            "{:<22} {:<6} {:<5} {:<22} {:>6} {:>6} {:<8} {:<11} {:>6} {:>8}",
            "virtual server",
            "sched",
            "meth",
            "real server",
            "weight",
            "conf",
            "healthy",
            "maintenance",
            "active",
            "inactive"
        );
        for v in &vss {
            let id = v["id"].as_str().unwrap_or("");
            let mut first = true;
            for r in v["real_servers"].as_array().into_iter().flatten() {
                println!(
                    "{:<22} {:<6} {:<5} {:<22} {:>6} {:>6} {:<8} {:<11} {:>6} {:>8}",
                    if first { id } else { "" },
                    if first {
                        v["scheduler"].as_str().unwrap_or("")
                    } else {
                        ""
                    },
                    if first {
                        v["method"].as_str().unwrap_or("")
                    } else {
                        ""
                    },
                    format!("{}:{}", r["address"].as_str().unwrap_or(""), r["port"]),
                    r["weight"].as_u64().unwrap_or(0),
                    r["configured_weight"].as_u64().unwrap_or(0),
                    if r["healthy"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "NO"
                    },
                    if r["maintenance"].as_bool() == Some(true) {
                        "drained"
                    } else {
                        "-"
                    },
                    r["active_connections"].as_u64().unwrap_or(0),
                    r["inactive_connections"].as_u64().unwrap_or(0),
                );
                first = false;
            }
            if v["sorry_server_active"].as_bool() == Some(true) {
                println!(
                    "{:<22} sorry server {} in use (quorum lost)",
                    "",
                    v["sorry_server"].as_str().unwrap_or("")
                );
            }
        }
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
            let verb = if matches!(cli.cmd, Some(Cmd::Drain(_))) {
                "drain"
            } else {
                "enable"
            };
            let path =
                format!("/v1/virtual-servers/{virtual_server}/real-servers/{real_server}/{verb}");
            println!(
                "{}",
                control::request(control, "POST", &path, token.as_deref())?
            );
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
