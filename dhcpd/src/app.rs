//! What the binary does with its command line: check, list leases, or serve until SIGTERM.

use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use opsflow_common::notify;
use opsflow_common::pidfile::{self, PidFile};

use crate::cli::{Cli, Cmd, DbOp, HostsOp};
use crate::leases;
use crate::server::Server;

/// The `lease-database` of a config file (for `dhcpd db` and `dhcpd leases --config`).
fn lease_db(config: &std::path::Path) -> anyhow::Result<crate::conf::leasedb::LeaseDb> {
    let cfg = crate::conf::load(config).map_err(|errs| {
        for d in &errs {
            eprintln!("{d}");
        }
        anyhow::anyhow!("{} error(s) in {}", errs.len(), config.display())
    })?;
    cfg.lease_db.with_context(|| {
        format!(
            "{} has no lease-database statement (the leases are in the journal file: `dhcpd leases --leases FILE`)",
            config.display()
        )
    })
}

fn db_cmd(op: &DbOp) -> anyhow::Result<()> {
    let (config, upgrade) = match op {
        DbOp::Init { config } => (config, false),
        DbOp::Upgrade { config } => (config, true),
    };
    let db = lease_db(config)?;
    let done = crate::store::migrate(&db, upgrade)?;
    println!("{}@{}:{}/{}: {done}", db.user, db.host, db.port, db.name);
    Ok(())
}

fn show_leases(
    path: &std::path::Path,
    config: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let map = match config {
        Some(c) => crate::store::Pg::open(&lease_db(c)?, "")?.load()?,
        None => {
            // the server starts on a missing journal; a listing of one is a mistake in the path
            std::fs::metadata(path)
                .with_context(|| format!("cannot read the lease file {}", path.display()))?;
            leases::read(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .0
        }
    };
    let mut all: Vec<_> = map.into_values().collect();
    all.sort_by_key(|l| u32::from(l.ip));
    let now = leases::now();
    let mac = |l: &leases::Lease| {
        l.mac
            .map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default()
    };
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|l| {
                let mut o = serde_json::json!({
                    "ip": l.ip.to_string(),
                    "mac": mac(l),
                    "state": l.effective_state(now),
                    "starts": leases::rfc3339(l.starts),
                    "ends": leases::rfc3339(l.ends),
                });
                if let Some(h) = &l.hostname {
                    o["hostname"] = serde_json::Value::String(h.clone());
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<16} {:<18} {:<10} {:<21} {:<21} hostname",
            "ip", "mac", "state", "starts", "ends"
        );
        for l in &all {
            println!(
                "{:<16} {:<18} {:<10} {:<21} {:<21} {}",
                l.ip,
                mac(l),
                l.effective_state(now),
                leases::rfc3339(l.starts),
                leases::rfc3339(l.ends),
                l.hostname.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn hosts_path(cli: &Cli) -> std::path::PathBuf {
    cli.hosts_file.clone().unwrap_or_else(|| {
        cli.config
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("dhcpd-hosts.conf")
    })
}

fn hosts_cmd(socket: &std::path::Path, op: &HostsOp) -> anyhow::Result<()> {
    let req = match op {
        HostsOp::Add {
            name,
            mac,
            ip,
            filename,
        } => serde_json::json!({"command": "reservation-add",
            "arguments": {"reservation": {"hostname": name, "hw-address": mac, "ip-address": ip, "boot-file-name": filename}}}),
        HostsOp::Del { name } => {
            serde_json::json!({"command": "reservation-del", "arguments": {"hostname": name}})
        }
        HostsOp::List { .. } => serde_json::json!({"command": "reservation-get-all"}),
    };
    let answer = crate::hosts::request(socket, &req)?;
    match op {
        HostsOp::List { json: true } => println!(
            "{}",
            serde_json::to_string_pretty(&answer["arguments"]["hosts"])?
        ),
        HostsOp::List { json: false } => {
            for h in answer["arguments"]["hosts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let f = |k: &str| h[k].as_str().unwrap_or("").to_string();
                println!(
                    "{:<20} {:<18} {:<16} {}",
                    f("hostname"),
                    f("hw-address"),
                    f("ip-address"),
                    f("boot-file-name")
                );
            }
        }
        _ => println!("{}", answer["text"].as_str().unwrap_or("")),
    }
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Some(Cmd::Leases {
            leases,
            config,
            json,
        }) => return show_leases(leases, config.as_deref(), *json),
        Some(Cmd::Db { op }) => return db_cmd(op),
        Some(Cmd::Hosts { socket, op }) => return hosts_cmd(socket, op),
        None => {}
    }
    if cli.control_socket.is_some() {
        // an empty reservations file, so that the config's include of it works at first
        let hosts = hosts_path(&cli);
        if !hosts.exists() {
            crate::hosts::write(&hosts, &[])
                .with_context(|| format!("cannot create {}", hosts.display()))?;
        }
    }
    let cfg = match crate::conf::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(errs) => {
            for d in &errs {
                eprintln!("{d}");
            }
            bail!("{} error(s) in {}", errs.len(), cli.config.display());
        }
    };
    for w in &cfg.warnings {
        eprintln!("{w}");
    }
    if cli.check {
        println!(
            "{}: OK ({} subnets, {} hosts, {} classes)",
            cli.config.display(),
            cfg.subnets.len(),
            cfg.hosts.len(),
            cfg.classes.len()
        );
        return Ok(());
    }
    let names = cli.all_interfaces();
    // one instance per pid file, taken before any socket is bound
    let pid_path = cli.pid_file.clone().unwrap_or_else(|| {
        let mut instance = names.join(",");
        if cli.port != 67 {
            instance.push_str(&format!(":{}", cli.port));
        }
        pidfile::default_path("dhcpd", &instance)
    });
    let _pid_file = PidFile::acquire(&pid_path)?;
    let all = crate::net::interfaces().context("cannot list the network interfaces")?;
    let ifaces: Vec<_> = if names.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for name in &names {
            match all.iter().find(|i| &i.name == name) {
                Some(i) => v.push(i.clone()),
                None => bail!(
                    "interface {name} does not exist or has no IPv4 address (see `ip -4 addr`)"
                ),
            }
        }
        v
    };
    if ifaces.is_empty() {
        bail!("no interface with an IPv4 address to serve");
    }
    for i in &ifaces {
        if !cfg.subnets.iter().any(|s| s.contains(i.addr)) {
            warn!(interface = %i.name, addr = %i.addr, "no subnet declaration covers this interface; only relayed requests are answered on it");
        }
    }
    let n_ifaces = ifaces.len();
    let served: Vec<String> = ifaces.iter().map(|i| i.name.clone()).collect();
    let server = Arc::new(Server::start(
        cfg,
        &cli.config,
        &cli.leases,
        ifaces,
        cli.port,
    )?);
    if cli.router_advertisements {
        crate::ra::spawn(&served, cli.ra_router_lifetime)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ready = format!("serving {n_ifaces} interface(s)");
    rt.block_on(async {
        if let Some(addr) = cli.metrics {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            let s = server.clone();
            tokio::spawn(opsflow_common::serve_metrics(
                l,
                Arc::new(move || s.render_metrics()),
            ));
        }
        if let Some(sock) = cli.control_socket.clone() {
            let hosts = hosts_path(&cli);
            info!(socket = %sock.display(), hosts = %hosts.display(), "control socket for host reservations");
            let (s, config) = (server.clone(), cli.config.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::hosts::serve(sock, hosts, config, s).await {
                    tracing::error!("control socket: {e:#}");
                }
            });
        }
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        notify::ready(&ready);
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    notify::reloading();
                    if server.reload() {
                        notify::ready(&ready);
                    } else {
                        notify::ready(&format!("{ready}; the last reload was refused (see the log)"));
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        notify::stopping();
        info!("shutting down: flushing the lease journal");
        server.flush();
        anyhow::Ok(())
    })
}
