use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kickstart::render::{Global, What};
use kickstart::serve::{serve, Served};
use kickstart::{load_site, sync};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

/// One inventory drives PXE menus, DHCP hosts, kickstarts and HA configs.
#[derive(Parser, Debug)]
#[command(name = "kickstart", version, about)]
struct Cli {
    /// The inventory (TOML).
    #[arg(
        long,
        short = 'f',
        default_value = "/etc/opsflow/inventory.toml",
        env = "KICKSTART_INVENTORY",
        global = true
    )]
    inventory: PathBuf,
    /// State directory (netboot overrides); default: server.state_dir of the inventory.
    #[arg(long, env = "KICKSTART_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate the inventory and render every template for every system.
    Check,
    /// The systems: name, MAC, IP, profile, netboot.
    List {
        /// A JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Write the TFTP tree and dhcpd.conf; only what changed is rewritten.
    Sync {
        /// Prefix every output path with DIR.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Serve kickstarts, iPXE scripts, HA configs and files over HTTP.
    Serve {
        /// Listen address; default: server.listen of the inventory.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The prefix `sync --root` used, for the boot configs the installed callback rewrites.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print one rendered file: `render SYSTEM WHAT` (kickstart, pxelinux, grub, ipxe,
    /// keepalived.conf, notify.sh, ha.service) or `render GLOBAL` (dhcpd.conf, pxe-menu,
    /// grub-menu, ipxe-menu).
    Render {
        target: String,
        what: Option<String>,
    },
    /// Turn a system's netboot off, or back to what the inventory says (on).
    Netboot {
        system: String,
        #[arg(value_parser = ["on", "off"])]
        value: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("KICKSTART_LOG", &cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kickstart: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let site = load_site(&cli.inventory, cli.state_dir.as_deref())?;
    for w in &site.inv.warnings {
        eprintln!("{w}");
    }
    match cli.cmd {
        Cmd::Check => {
            let problems = site.check_all();
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                eprintln!("{}: {} problem(s)", cli.inventory.display(), problems.len());
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: OK ({} distros, {} profiles, {} systems, {} clusters; every template renders for every system)",
                cli.inventory.display(),
                site.inv.distros.len(),
                site.inv.profiles.len(),
                site.inv.systems.len(),
                site.inv.clusters.len()
            );
        }
        Cmd::List { json } => {
            let rows: Vec<serde_json::Value> = site
                .inv
                .systems
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name, "mac": s.mac, "ip": s.ip, "profile": s.profile,
                        "netboot": site.netboot(s), "netboot_configured": s.netboot,
                        "clusters": site.inv.clusters_of(&s.name).map(|c| c.name.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:<17} {:<15} {:<12} NETBOOT",
                    "NAME", "MAC", "IP", "PROFILE"
                );
                for s in &site.inv.systems {
                    let nb = match (s.netboot, site.netboot(s)) {
                        (true, true) => "on",
                        (true, false) => "off (installed)",
                        _ => "off",
                    };
                    println!(
                        "{:<16} {:<17} {:<15} {:<12} {nb}",
                        s.name, s.mac, s.ip, s.profile
                    );
                }
            }
        }
        Cmd::Sync { root } => {
            let report = sync::sync(&site, root.as_deref())?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for c in &report.changes {
                println!("{c}");
            }
            println!(
                "{} changed, {} unchanged",
                report.changes.len(),
                report.unchanged
            );
        }
        Cmd::Render { target, what } => {
            let out = match what {
                None => {
                    let g = Global::ALL
                        .into_iter()
                        .find(|g| g.name() == target)
                        .with_context(|| {
                            format!("{target:?} is not dhcpd.conf, pxe-menu, grub-menu or ipxe-menu; for a system's files use `render SYSTEM WHAT`")
                        })?;
                    site.render_global(g)?
                }
                Some(w) => {
                    let what = What::parse(&w).with_context(|| {
                        format!("{w:?} is not one of kickstart, pxelinux, grub, ipxe, keepalived.conf, notify.sh, ha.service")
                    })?;
                    let s = site.inv.system(&target).with_context(|| {
                        format!("no system {target:?} in {}", cli.inventory.display())
                    })?;
                    if !site.has(s, what) {
                        anyhow::bail!(
                            "system {target} is not a member of any cluster, so it has no {}",
                            what.name()
                        );
                    }
                    site.render(s, what)?
                }
            };
            print!("{out}");
        }
        Cmd::Netboot { system, value } => {
            let mut site = site;
            let s =
                site.inv.system(&system).cloned().with_context(|| {
                    format!("no system {system:?} in {}", cli.inventory.display())
                })?;
            if value == "off" {
                site.state.set(&system, false, "kickstart netboot off")?;
            } else {
                site.state.clear(&system)?;
                if !s.netboot {
                    eprintln!("note: the inventory has netboot = false for {system}; edit it to netboot this system");
                }
            }
            println!(
                "{system}: netboot {}",
                if site.netboot(&s) { "on" } else { "off" }
            );
            println!("run `kickstart sync` (or the installed callback's server does it) to rewrite its boot config");
        }
        Cmd::Serve { listen, root } => {
            let addr = listen.unwrap_or(site.inv.server.listen);
            if site.callback.path().is_none() {
                anyhow::bail!(
                    "cannot keep the callback secret in {}: serve needs a state directory it can write",
                    site.inv.server.state_dir.display()
                );
            }
            let inventory = cli.inventory.clone();
            let state_dir = cli.state_dir.clone();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let served = Arc::new(Served::new(site, root));
                let mut hup = signal(SignalKind::hangup())?;
                let mut term = signal(SignalKind::terminate())?;
                let s2 = served.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        match load_site(&inventory, state_dir.as_deref()) {
                            Ok(site) => {
                                info!(inventory = %inventory.display(), "reloaded");
                                s2.replace(site);
                            }
                            Err(e) => error!(error = %format!("{e:#}"), "reload failed; keeping the old inventory"),
                        }
                    }
                });
                serve(listener, served, async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    info!("shutting down");
                })
                .await;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
