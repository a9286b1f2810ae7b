//! What the `ha` command does with its arguments: the control commands (through the one
//! client of `opsflow-control`), `genhash`, `--check`, and the daemon's start-up order: config,
//! token, pid file (before any socket is bound), control socket, routers, then READY.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use opsflow_control::client::Blocking;
use opsflow_control::gray::parse_networks;
use opsflow_control::{Address, Client, Endpoint, GrayKey, GrayRoute, RsAction};

use crate::cli::{Cli, Cmd, Control, Genhash, GrayCmd, DEFAULT_CONTROL};
use crate::conf::Config;
use crate::control::{self, Listener};
use crate::daemon::Daemon;
use crate::dump::Dumps;

/// Runs the command line; errors are printed by the caller.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.cmd {
        Some(Cmd::Doctor(a)) => crate::doctor::run(a),
        Some(Cmd::Status { control, json }) => status(control, *json),
        Some(Cmd::Drain(t)) | Some(Cmd::Enable(t)) => {
            let action = match cli.cmd {
                Some(Cmd::Drain(_)) => RsAction::Drain,
                _ => RsAction::Enable,
            };
            let r =
                client(&t.control)?.set_real_server(&t.virtual_server, &t.real_server, action)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Genhash(g)) => genhash(g),
        Some(Cmd::Gray(g)) => gray(&g.cmd),
        None => {
            let id = cli.config_id.clone().unwrap_or_else(hostname);
            let Some(cfg) = load(&cli.config, &id) else {
                return Ok(ExitCode::FAILURE);
            };
            if cli.check {
                if cli.lvs_backend == "nftables" {
                    for d in crate::conf::ipvs::nft_notes(&cfg) {
                        eprintln!("{d}");
                    }
                }
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
            daemon(&cli, cfg, id)
        }
    }
}

/// Loads the config, printing every problem sorted by position (warnings included); `None`
/// when it has errors.
fn load(path: &Path, id: &str) -> Option<Config> {
    match crate::conf::load(path, id) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            Some(cfg)
        }
        Err(mut diags) => {
            diags.sort_by(|a, b| {
                (&a.pos.file, a.pos.line, a.pos.col).cmp(&(&b.pos.file, b.pos.line, b.pos.col))
            });
            for d in &diags {
                eprintln!("{d}");
            }
            let n = diags.iter().filter(|d| !d.warning).count();
            eprintln!("ha: {n} error(s) in {}", path.display());
            None
        }
    }
}

fn client(c: &Control) -> anyhow::Result<Blocking> {
    let ep = Endpoint::parse(&c.control, c.token.as_deref())?;
    let total = Duration::try_from_secs_f64(c.timeout)
        .with_context(|| format!("--timeout {}: not a number of seconds", c.timeout))?;
    let client = Client::new(ep).with_timeouts(total.min(Duration::from_secs(2)), total);
    Ok(Blocking::new(client)?)
}

fn status(c: &Control, json: bool) -> anyhow::Result<ExitCode> {
    // a reader that stops early (`ha status | head`) ends us quietly, as for any CLI tool
    // SAFETY: restoring the default disposition of SIGPIPE in this short-lived command.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let s = client(c)?.status()?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", control::table(&s));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ha gray add|list|del` through the control client.
fn gray(cmd: &GrayCmd) -> anyhow::Result<ExitCode> {
    let usage = |what: &str, e: String| anyhow::anyhow!("{what}: {e}");
    match cmd {
        GrayCmd::Add {
            virtual_server,
            clients,
            real_servers,
            control,
        } => {
            let route = GrayRoute {
                virtual_server: virtual_server.clone(),
                clients: parse_networks(clients).map_err(|e| usage("--clients", e))?,
                real_servers: real_servers.clone(),
            };
            let s = client(control)?.gray_add(&route)?;
            println!(
                "gray route added: {}{}",
                s.route,
                if s.fallback {
                    " (no gray real server in service yet: these clients get the pool until one is)"
                } else {
                    ""
                }
            );
        }
        GrayCmd::List { control, json } => {
            let list = client(control)?.gray_list()?;
            if *json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print!("{}", control::gray_table(&list));
            }
        }
        GrayCmd::Del {
            virtual_server,
            clients,
            control,
        } => {
            let key = GrayKey {
                virtual_server: virtual_server.clone(),
                clients: match clients {
                    Some(c) => parse_networks(c).map_err(|e| usage("--clients", e))?,
                    None => Vec::new(),
                },
            };
            let r = client(control)?.gray_del(&key)?;
            if r.removed.is_empty() {
                anyhow::bail!(
                    "no gray route of {virtual_server}{} (see `ha gray list`)",
                    clients
                        .as_deref()
                        .map(|c| format!(" from {c}"))
                        .unwrap_or_default()
                );
            }
            for g in &r.removed {
                println!("gray route removed: {g}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn genhash(g: &Genhash) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let port = g.port.unwrap_or(if g.ssl { 443 } else { 80 });
    let page = rt
        .block_on(crate::lvs::check::fetch(
            g.server,
            port,
            &g.url,
            g.virtualhost.as_deref(),
            g.ssl,
            None,
            Duration::from_secs_f64(g.timeout),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if g.verbose {
        println!("-----------------------[    HTTP Header Buffer    ]-----------------------");
        println!("{}", page.head);
        println!("-----------------------[ HTML MD5 final resulting ]-----------------------");
    }
    println!("MD5SUM = {}", crate::lvs::check::md5_hex(&page.body));
    if !(200..300).contains(&page.status) {
        eprintln!("note: the server answered status {}", page.status);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// The instance name of a control address: empty for the default socket, else the address
/// (the pid file and the dumps are named after it).
pub fn instance_name(control: &str) -> &str {
    if control == DEFAULT_CONTROL {
        ""
    } else {
        control
    }
}

/// The daemon: pid file first, then the control socket, the routers and the LVS task.
fn daemon(cli: &Cli, cfg: Config, id: String) -> anyhow::Result<ExitCode> {
    let token = cli
        .control_token_file
        .as_deref()
        .map(control::read_token_file)
        .transpose()?;
    let address: Address = cli.control.parse()?;
    if address.is_tcp() && token.is_none() {
        anyhow::bail!("--control {address} is TCP: give --control-token-file, an unauthenticated control API on the network is refused");
    }
    let default_pid = opsflow_common::pidfile::default_path("ha", instance_name(&cli.control));
    let pid_path = cli.pid_file.clone().unwrap_or_else(|| default_pid.clone());
    let _pid = opsflow_common::pidfile::PidFile::acquire(&pid_path)?;
    let dumps = Dumps {
        dir: PathBuf::from("/run/ha"),
        stem: default_pid
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ha".into()),
        config_file: cli.config.clone(),
        router_id: cfg.global.router_id.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // the handlers of HUP, TERM and INT are installed now and stay (tokio keeps them):
        // one that arrives before the event loop listens is not fatal
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [
            SignalKind::hangup(),
            SignalKind::terminate(),
            SignalKind::interrupt(),
        ] {
            drop(signal(kind)?);
        }
        let listener = match &address {
            Address::Unix(p) => {
                Listener::Unix(control::bind_unix(p, cli.control_group.as_deref())?)
            }
            Address::Tcp { .. } => {
                let a = address.host_header();
                Listener::Tcp(
                    tokio::net::TcpListener::bind(&a)
                        .await
                        .with_context(|| format!("cannot listen on {a}"))?,
                )
            }
        };
        let mut daemon = Daemon::new(cfg.clone(), cli.config.clone(), id);
        let shared = daemon.shared.clone();
        let lvs = if cfg.lvs.is_empty() {
            None
        } else {
            let mut backend = crate::lvs::select_backend(&cli.lvs_backend)?;
            crate::lvs::prepare(&mut *backend, &cfg);
            Some(crate::lvs::Lvs::start(
                cfg.lvs.clone(),
                backend,
                cli.state_file.clone(),
                shared.clone(),
            ))
        };
        daemon.set_lvs(lvs.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(control::serve(
            listener,
            shared.clone(),
            token,
            lvs,
            async {
                let _ = stopped.await;
            },
        ));
        tokio::spawn(crate::dump::on_signals(dumps, shared)?);
        opsflow_common::notify::ready(&format!(
            "{} vrrp instances, {} virtual servers; control on {address}",
            cfg.instances.len(),
            cfg.lvs.len()
        ));
        let result = daemon.run().await;
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        if let Some(p) = address.unix_path() {
            let _ = std::fs::remove_file(p);
        }
        result
    })?;
    Ok(ExitCode::SUCCESS)
}
