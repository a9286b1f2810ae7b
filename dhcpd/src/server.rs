//! The running server: a receive thread per interface, the engine behind a mutex, and one
//! journal thread that makes leases durable in batches (group commit) before it sends the
//! ACKs that grant them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tracing::{debug, error, info, warn};

use crate::conf::Config;
use crate::engine::{Action, Engine, Iface, Reply};
use crate::isclog;
use crate::leases::{self, Journal, Lease};
use crate::net::Port;
use crate::ping::{self, Probe};
use crate::store::{Outcome, Pg, Store};
use crate::wire::{Msg, MsgType};

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    rx: Mutex<BTreeMap<&'static str, u64>>,
    tx: Mutex<BTreeMap<&'static str, u64>>,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    pub commits: AtomicU64,
    pub batches: AtomicU64,
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, k: &'static str) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

impl Metrics {
    pub fn dropped(&self, reason: &'static str) {
        bump(&self.dropped, reason);
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

enum Job {
    Commit {
        leases: Vec<Lease>,
        reply: Option<Reply>,
        port: usize,
        /// ISC's line for the reply, logged once it is sent (with the count of lines the
        /// rate limiter suppressed before it).
        line: Option<(String, u64)>,
    },
    Flush(mpsc::Sender<()>),
}

/// A handle on the running server.
pub struct Server {
    pub engine: Arc<Mutex<Engine>>,
    pub metrics: Arc<Metrics>,
    journal_tx: Sender<Job>,
    config_path: PathBuf,
    ifaces: Vec<Iface>,
}

impl Server {
    /// Reads the leases, compacts the journal, binds the interfaces and starts the threads.
    pub fn start(
        cfg: Config,
        config_path: &Path,
        leases_path: &Path,
        ifaces: Vec<Iface>,
        port: u16,
    ) -> anyhow::Result<Server> {
        let db = cfg.lease_db.clone();
        let (leases, store): (_, Box<dyn Store>) = match &db {
            None => {
                let (leases, blocks) = leases::read(leases_path).map_err(|e| {
                    anyhow::anyhow!("cannot read the lease file {}: {e}", leases_path.display())
                })?;
                info!(file = %leases_path.display(), leases = leases.len(), blocks, "leases loaded");
                let journal = Journal::compact(leases_path, leases.values()).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot rewrite the lease file {}: {e}",
                        leases_path.display()
                    )
                })?;
                (leases, Box::new(journal))
            }
            Some(db) => {
                let name = server_name(&ifaces);
                let mut pg = Pg::open(db, &name)?;
                let leases = pg.load()?;
                info!(store = %pg.describe(), leases = leases.len(), server = %name, "leases loaded from the shared store");
                (leases, Box::new(pg))
            }
        };
        let mut engine = Engine::new(cfg, leases, &ifaces);
        engine.shared = db.is_some();
        let engine = Arc::new(Mutex::new(engine));
        if let Some(db) = &db {
            // other servers' leases, into our view (the table decides; this avoids offers
            // the table would refuse)
            let mut pg = Pg::open(db, "")?;
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("store-sync".into())
                .spawn(move || store_sync(&mut pg, &engine))?;
        }
        let metrics = Arc::new(Metrics::default());
        let mut ports = Vec::new();
        for i in &ifaces {
            let p = Port::bind(i.clone(), port)
                .map_err(|e| anyhow::anyhow!("cannot listen on {} port {port}: {e}", i.name))?;
            info!(interface = %i.name, addr = %i.addr, "listening");
            ports.push(Arc::new(p));
        }
        let (tx, rx) = mpsc::channel();
        {
            let ports = ports.clone();
            let engine = engine.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || journal_loop(store, rx, ports, engine, metrics))?;
        }
        let (probe_tx, probe_rx) = mpsc::channel();
        let (ddns_tx, ddns_rx) = mpsc::channel::<crate::ddns::Job>();
        std::thread::Builder::new()
            .name("ddns".into())
            .spawn(move || {
                for job in ddns_rx {
                    crate::ddns::run(&job);
                }
            })?;
        {
            // leases that run out: DNS records removed, `on expiry` blocks run
            let engine = engine.clone();
            let ddns = ddns_tx.clone();
            std::thread::Builder::new()
                .name("expiry".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let Ok(mut e) = engine.lock() else { return };
                    e.expire(leases::now());
                    for job in e.take_ddns_jobs() {
                        let _ = ddns.send(job);
                    }
                })?;
        }
        let sh = Arc::new(Shared {
            ddns: ddns_tx,
            ports: ports.clone(),
            engine: engine.clone(),
            metrics: metrics.clone(),
            journal: tx.clone(),
            prober: probe_tx,
        });
        {
            let sh = sh.clone();
            std::thread::Builder::new()
                .name("ping-check".into())
                .spawn(move || ping::run(probe_rx, |p, answered| probed(&sh, p, answered)))?;
        }
        for (idx, p) in ports.iter().enumerate() {
            let sh = sh.clone();
            std::thread::Builder::new()
                .name(format!("rx-{}", p.iface.name))
                .spawn(move || receive_loop(idx, sh))?;
        }
        info!("dhcpd ready");
        Ok(Server {
            engine,
            metrics,
            journal_tx: tx,
            config_path: config_path.to_path_buf(),
            ifaces,
        })
    }

    /// Re-reads the config; on error the old one stays in force (and this returns false).
    pub fn reload(&self) -> bool {
        match crate::conf::load(&self.config_path) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    warn!("{w}");
                }
                // DNS first: the engine is not locked while names resolve
                let names = crate::engine::resolve_names(&cfg);
                if let Ok(mut e) = self.engine.lock() {
                    let leases = std::mem::take(&mut e.leases);
                    let mut new = Engine::with_names(cfg, names, leases, &self.ifaces);
                    new.carry_over(&mut e);
                    *e = new;
                }
                info!("configuration reloaded");
                true
            }
            Err(errs) => {
                for d in errs {
                    error!("{d}");
                }
                warn!("reload refused: the configuration has errors; the old one stays in force");
                false
            }
        }
    }

    /// Waits until every lease handed to the journal so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.journal_tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Prometheus text.
    pub fn render_metrics(&self) -> String {
        let mut s = String::new();
        let map = |s: &mut String,
                   name: &str,
                   label: &str,
                   help: &str,
                   m: &Mutex<BTreeMap<&'static str, u64>>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(m) = m.lock() {
                for (k, v) in m.iter() {
                    let _ = writeln!(s, "{name}{{{label}=\"{k}\"}} {v}");
                }
            }
        };
        map(
            &mut s,
            "dhcpd_packets_received_total",
            "type",
            "Requests received, by message type.",
            &self.metrics.rx,
        );
        map(
            &mut s,
            "dhcpd_packets_sent_total",
            "type",
            "Replies sent, by message type.",
            &self.metrics.tx,
        );
        map(
            &mut s,
            "dhcpd_packets_dropped_total",
            "reason",
            "Packets dropped, by reason.",
            &self.metrics.dropped,
        );
        let _ = writeln!(
            s,
            "# HELP dhcpd_lease_commits_total Leases made durable.\n# TYPE dhcpd_lease_commits_total counter\ndhcpd_lease_commits_total {}",
            self.metrics.commits.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP dhcpd_lease_fsyncs_total Journal fsyncs (one per batch).\n# TYPE dhcpd_lease_fsyncs_total counter\ndhcpd_lease_fsyncs_total {}",
            self.metrics.batches.load(Relaxed)
        );
        if let Ok(e) = self.engine.lock() {
            let (states, free) = e.stats(leases::now());
            let _ = writeln!(
                s,
                "# HELP dhcpd_leases Leases by state.\n# TYPE dhcpd_leases gauge"
            );
            for st in ["active", "expired", "released", "abandoned"] {
                let _ = writeln!(
                    s,
                    "dhcpd_leases{{state=\"{st}\"}} {}",
                    states.get(st).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(s, "# HELP dhcpd_free_addresses Addresses free to offer, per subnet.\n# TYPE dhcpd_free_addresses gauge");
            for (subnet, n) in free {
                let _ = writeln!(s, "dhcpd_free_addresses{{subnet=\"{subnet}\"}} {n}");
            }
        }
        s
    }
}

/// What the receive threads and the prober share.
struct Shared {
    ports: Vec<Arc<Port>>,
    engine: Arc<Mutex<Engine>>,
    metrics: Arc<Metrics>,
    journal: Sender<Job>,
    prober: Sender<Probe>,
    /// DNS updates, sent one after another by the "ddns" thread.
    ddns: Sender<crate::ddns::Job>,
}

fn receive_loop(idx: usize, sh: Arc<Shared>) {
    let port = sh.ports[idx].clone();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match port.sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                warn!(interface = %port.iface.name, error = %e, "receive failed");
                continue;
            }
        };
        let raw = &buf[..n];
        let msg = match Msg::parse_request(raw) {
            Ok(m) => m,
            Err(e) => {
                sh.metrics.dropped(e.reason());
                debug!(peer = %from, reason = e.reason(), "dropped a malformed packet");
                continue;
            }
        };
        let kind = msg.msg_type().map_or("bootrequest", MsgType::name);
        bump(&sh.metrics.rx, kind);
        answer(&sh, idx, &msg, raw, true);
    }
}

/// Hands a request to the engine and carries out its decision. `first` is false when the
/// request is handled again after a ping-check probe (its line is logged once).
fn answer(sh: &Shared, idx: usize, msg: &Msg, raw: &[u8], first: bool) {
    let port = &sh.ports[idx];
    let action = match sh.engine.lock() {
        Ok(mut e) => {
            let a = e.handle(msg, raw, &port.iface, leases::now());
            for job in e.take_ddns_jobs() {
                if sh.ddns.send(job).is_err() {
                    error!("the DNS update thread is gone");
                }
            }
            a
        }
        Err(_) => {
            error!("engine lock poisoned; stopping");
            std::process::exit(70);
        }
    };
    let name = &port.iface.name;
    if first {
        if let Some(suppressed) = isclog::gate() {
            if let Some(mut line) = isclog::request(msg, name) {
                if matches!(action, Action::Drop("pool_exhausted")) {
                    line.push_str(": no free leases");
                }
                isclog::emit(&line, suppressed);
            }
        }
    }
    match action {
        Action::Send(r) => {
            if send(port, &r, &sh.metrics) {
                if let Some(s) = isclog::gate() {
                    if let Some(l) = isclog::reply(msg, &r, name) {
                        isclog::emit(&l, s);
                    }
                }
            }
        }
        Action::Commit { leases, reply } => {
            let line = reply.as_ref().and_then(|r| {
                let s = isclog::gate()?;
                Some((isclog::reply(msg, r, name)?, s))
            });
            journal(
                sh,
                Job::Commit {
                    leases,
                    reply,
                    port: idx,
                    line,
                },
            );
        }
        Action::Probe {
            ip,
            timeout,
            abandon,
        } => {
            let p = Probe {
                ip,
                timeout,
                abandon,
                port: idx,
                raw: raw.to_vec(),
            };
            if sh.prober.send(p).is_err() {
                error!("the ping-check thread is gone; stopping");
                std::process::exit(70);
            }
        }
        Action::Drop(reason) => {
            sh.metrics.dropped(reason);
            let kind = msg.msg_type().map_or("bootrequest", MsgType::name);
            debug!(interface = %name, kind, reason, "no reply");
        }
    }
}

fn journal(sh: &Shared, job: Job) {
    if sh.journal.send(job).is_err() {
        error!("the journal thread is gone; stopping");
        std::process::exit(70);
    }
}

/// A ping-check probe is over: tell the engine, journal an abandoned address, and handle the
/// request again (the engine then offers the address, or chooses, and maybe probes, another).
fn probed(sh: &Shared, p: Probe, answered: bool) {
    let now = leases::now();
    let abandoned = match sh.engine.lock() {
        Ok(mut e) if answered => Some(e.probe_answered(p.ip, p.abandon, now)),
        Ok(mut e) => {
            e.probe_silent(p.ip, now);
            None
        }
        Err(_) => {
            error!("engine lock poisoned; stopping");
            std::process::exit(70);
        }
    };
    if let Some(l) = abandoned {
        sh.metrics.dropped("ping_check_conflict");
        isclog::log(&format!(
            "Abandoning IP address {}: pinged before offer",
            p.ip
        ));
        journal(
            sh,
            Job::Commit {
                leases: vec![l],
                reply: None,
                port: p.port,
                line: None,
            },
        );
    }
    if let Ok(msg) = Msg::parse_request(&p.raw) {
        answer(sh, p.port, &msg, &p.raw, false);
    }
}

fn send(port: &Port, r: &Reply, metrics: &Metrics) -> bool {
    match port.deliver(r) {
        Ok(()) => {
            bump(
                &metrics.tx,
                if r.bootp { "bootreply" } else { r.kind.name() },
            );
            true
        }
        Err(e) => {
            metrics.dropped("send_failed");
            warn!(dest = ?r.dest, error = %e, "cannot send the reply");
            false
        }
    }
}

/// This server in the shared table's `server` column: host name and first address.
fn server_name(ifaces: &[Iface]) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let addr = ifaces
        .first()
        .map(|i| i.addr.to_string())
        .unwrap_or_default();
    format!("{}/{addr}", host.trim())
}

/// Every second: the leases other servers wrote to the shared store go into our engine.
fn store_sync(pg: &mut Pg, engine: &Mutex<Engine>) {
    let mut since = 0.0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        match pg.changed_since(since) {
            Ok((leases, now)) => {
                since = now;
                let Ok(mut e) = engine.lock() else { return };
                let t = leases::now();
                for l in leases {
                    e.adopt(l, t);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the shared lease store; retrying");
                if let Err(e) = pg.reconnect() {
                    debug!(error = %format!("{e:#}"), "lease database still unreachable");
                }
            }
        }
    }
}

fn journal_loop(
    mut store: Box<dyn Store>,
    rx: Receiver<Job>,
    ports: Vec<Arc<Port>>,
    engine: Arc<Mutex<Engine>>,
    metrics: Arc<Metrics>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let all: Vec<&Lease> = jobs
            .iter()
            .flat_map(|j| match j {
                Job::Commit { leases, .. } => leases.iter().collect(),
                Job::Flush(_) => Vec::new(),
            })
            .collect();
        let blocks = all.len();
        let outcome = if blocks == 0 {
            Vec::new()
        } else {
            match store.commit(&all) {
                Ok(v) => v,
                Err(e) if store.fatal() => {
                    // without durable storage no lease may be granted: stop rather than lie
                    error!(store = %store.describe(), error = %format!("{e:#}"), "cannot write the leases; stopping");
                    std::process::exit(74);
                }
                Err(e) => {
                    error!(store = %store.describe(), error = %format!("{e:#}"), "cannot write the leases; their ACKs are not sent");
                    vec![Outcome::Refused(None); blocks]
                }
            }
        };
        drop(all);
        let stored = outcome.iter().filter(|o| **o == Outcome::Stored).count();
        if stored > 0 {
            metrics.commits.fetch_add(stored as u64, Relaxed);
            metrics.batches.fetch_add(1, Relaxed);
        }
        let mut outcome = outcome.into_iter();
        for j in jobs {
            match j {
                Job::Commit {
                    leases,
                    reply,
                    port,
                    line,
                } => {
                    let mut granted = true;
                    for _ in &leases {
                        if let Some(Outcome::Refused(holder)) = outcome.next() {
                            granted = false;
                            if let (Some(h), Ok(mut e)) = (holder, engine.lock()) {
                                e.adopt(h, leases::now());
                            }
                        }
                    }
                    match reply {
                        Some(r) if granted && send(&ports[port], &r, &metrics) => {
                            if let Some((l, suppressed)) = line {
                                isclog::emit(&l, suppressed);
                            }
                        }
                        Some(_) if !granted => metrics.dropped("lease_not_stored"),
                        _ => {}
                    }
                }
                Job::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        store.maintain(&engine);
    }
}
