//! The daemon's life: check the settings, bind, drop privileges, serve; SIGHUP reloads the
//! remap rules, SIGTERM stops taking requests and lets running transfers finish.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use opsflow_common::notify;
use opsflow_common::pidfile::{PidFile, PidFileError};

use crate::cli::Cli;
use crate::metrics::Metrics;
use crate::privs;
use crate::server::{bind_listener, Server};

/// Runs the daemon (or only the check, with `--check`) to the end.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let problems = cli.problems();
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
    let user = cli.user.as_deref().map(privs::lookup).transpose()?;
    // one instance per pid file, decided before any socket is bound
    let _pid_file = match PidFile::acquire(&cli.pid_path()) {
        Ok(p) => Some(p),
        // without --pid-file, a place we may not write (not root) is no reason to stop
        Err(PidFileError::Io { path, source, .. })
            if cli.pid_file.is_none() && source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            warn!(path = %path.display(), error = %source, "no pid file: running without the single-instance lock");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let metrics = Arc::new(Metrics::default());
    let server = Server::new(cli.config()?, metrics.clone())?;
    let mut listeners = Vec::new();
    for a in &cli.listen {
        listeners.push(bind_listener(*a).with_context(|| format!("cannot listen on {a}"))?);
    }
    let metrics_listener = cli
        .metrics
        .map(|a| {
            let l = std::net::TcpListener::bind(a)
                .with_context(|| format!("cannot serve metrics on {a}"))?;
            l.set_nonblocking(true)?;
            anyhow::Ok(l)
        })
        .transpose()?;
    // everything privileged is done: sockets bound, the root directory open
    if let Some(u) = &user {
        privs::drop_to(u)?;
        info!(user = %u.name, uid = %u.uid, gid = %u.gid, "running unprivileged");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(serve(cli, server, listeners, metrics_listener, metrics))
}

/// Transfers the open-file limit allows (each holds a socket and a file), after raising the
/// soft limit to the hard one; a margin stays for listeners, metrics and logs.
pub fn transfer_budget() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 256;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    (limit.saturating_sub(64) / 2).clamp(1, 1 << 20) as usize
}

async fn serve(
    cli: Cli,
    server: Server,
    listeners: Vec<std::net::UdpSocket>,
    metrics_listener: Option<std::net::TcpListener>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    if let Some(l) = metrics_listener {
        let l = tokio::net::TcpListener::from_std(l)?;
        tokio::spawn(opsflow_common::serve_metrics(
            l,
            Arc::new(move || metrics.render()),
        ));
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let status = format!(
        "serving {} on {}",
        cli.root.display(),
        cli.listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let reloader = server.clone();
    let ready = status.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            notify::reloading();
            match cli.load_remap() {
                Ok(r) => {
                    info!(
                        rules = r.as_ref().map_or(0, |r| r.len()),
                        "SIGHUP: remap rules reloaded"
                    );
                    reloader.set_remap(r);
                }
                Err(e) => warn!(error = %e, "SIGHUP: remap file has errors; keeping the old rules"),
            }
            notify::ready(&ready);
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        notify::stopping();
    };
    // the listening sockets are bound already: requests queue until the loop reads them
    notify::ready(&status);
    server
        .run(listeners, shutdown, Duration::from_secs(5))
        .await
}
