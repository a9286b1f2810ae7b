//! The running server: a receive thread per interface, the engine behind a mutex, and one
//! journal thread that makes leases durable in batches (group commit) before the ACKs that
//! grant them go, spread over the next batch's interval by the ack-sender thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::conf::Config;
use crate::engine::{Action, Engine, Iface, Reply};
use crate::isclog;
use crate::leases::{self, Journal, Lease};
use crate::net::{Port, Received};
use crate::ping::{self, Probe};
use crate::store::{Outcome, Pg, Store};
use crate::wire::{Msg, MsgType};

/// The message kinds counted received or sent, in the order `/metrics` lists them.
const KINDS: [&str; 10] = [
    "ack",
    "bootreply",
    "bootrequest",
    "decline",
    "discover",
    "inform",
    "nak",
    "offer",
    "release",
    "request",
];

/// A counter per message kind (atomics: bumped for every packet, without a lock).
#[derive(Default)]
struct Kinds([AtomicU64; KINDS.len()]);

impl Kinds {
    fn bump(&self, kind: &str) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.0[i].fetch_add(1, Relaxed);
        }
    }
    /// The kinds counted at least once, with their counts.
    fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS
            .iter()
            .zip(&self.0)
            .map(|(k, v)| (*k, v.load(Relaxed)))
            .filter(|(_, v)| *v > 0)
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    rx: Kinds,
    tx: Kinds,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    pub commits: AtomicU64,
    pub batches: AtomicU64,
}

impl Metrics {
    pub fn dropped(&self, reason: &'static str) {
        if let Ok(mut m) = self.dropped.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

/// A lease change to make durable, and the reply that may go once it is.
struct Commit {
    leases: Vec<Lease>,
    reply: Option<Reply>,
    port: usize,
    /// ISC's line for the reply, logged once it is sent (with the count of lines the rate
    /// limiter suppressed before it).
    line: Option<(String, u64)>,
}

enum Job {
    /// The commits of one batch of requests.
    Commit(Vec<Commit>),
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
        let t = std::time::Instant::now();
        engine.prefault();
        debug!(took = ?t.elapsed(), room = engine.leases.capacity(), "lease tables touched");
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
            // leases that run out: DNS records removed, `on expiry` blocks run, the leases
            // journaled without them
            let engine = engine.clone();
            let ddns = ddns_tx.clone();
            let journal = tx.clone();
            std::thread::Builder::new()
                .name("expiry".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let Ok(mut e) = engine.lock() else { return };
                    let ended = e.expire(leases::now());
                    for job in e.take_ddns_jobs() {
                        let _ = ddns.send(job);
                    }
                    // (a shared store keeps what each server wrote; it is not rewritten here)
                    if !ended.is_empty() && !e.shared {
                        let c = Commit {
                            leases: ended,
                            reply: None,
                            port: 0,
                            line: None,
                        };
                        let _ = journal.send(Job::Commit(vec![c]));
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
        let head = |s: &mut String, name: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        head(
            &mut s,
            "dhcpd_packets_received_total",
            "Requests received, by message type.",
        );
        for (k, v) in self.metrics.rx.nonzero() {
            let _ = writeln!(s, "dhcpd_packets_received_total{{type=\"{k}\"}} {v}");
        }
        head(
            &mut s,
            "dhcpd_packets_sent_total",
            "Replies sent, by message type.",
        );
        for (k, v) in self.metrics.tx.nonzero() {
            let _ = writeln!(s, "dhcpd_packets_sent_total{{type=\"{k}\"}} {v}");
        }
        head(
            &mut s,
            "dhcpd_packets_dropped_total",
            "Packets dropped, by reason.",
        );
        if let Ok(m) = self.metrics.dropped.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(s, "dhcpd_packets_dropped_total{{reason=\"{k}\"}} {v}");
            }
        }
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

/// A reply to send, with ISC's line to log once it is sent (and the count of lines the rate
/// limiter suppressed before it).
type Outgoing = (Reply, Option<(String, u64)>);

/// What handling requests leaves to do once the engine is unlocked: replies to send now,
/// leases to make durable (their replies follow), probes, DNS updates and log lines.
#[derive(Default)]
struct Out {
    lines: Vec<(String, u64)>,
    replies: Vec<Outgoing>,
    commits: Vec<Commit>,
    probes: Vec<Probe>,
    ddns: Vec<crate::ddns::Job>,
}

/// One thread per interface: takes the requests queued on its socket with one system call,
/// decides them all under one lock of the engine, sends the replies that need no lease
/// change with one system call, and hands the batch's lease changes to the journal in one
/// message (their ACKs leave after the write is durable). Under load it then waits until
/// [`COALESCE`] has passed since it woke, so that one wake-up takes many requests.
fn receive_loop(idx: usize, sh: Arc<Shared>) {
    let port = sh.ports[idx].clone();
    short_slice();
    tight_timers();
    let mut rx = Received::default();
    let mut out = Out::default();
    let mut last_wake = Instant::now();
    loop {
        if let Err(e) = port.receive(&mut rx) {
            warn!(interface = %port.iface.name, error = %e, "receive failed");
            continue;
        }
        let woke = Instant::now();
        let busy = rx.len() > 1 || woke.duration_since(last_wake) < COALESCE;
        last_wake = woke;
        let now = leases::now();
        {
            let mut e = lock(&sh.engine);
            for (raw, from) in rx.iter() {
                let msg = match Msg::parse_request(raw) {
                    Ok(m) => m,
                    Err(err) => {
                        sh.metrics.dropped(err.reason());
                        debug!(peer = %from, reason = err.reason(), "dropped a malformed packet");
                        continue;
                    }
                };
                sh.metrics
                    .rx
                    .bump(msg.msg_type().map_or("bootrequest", MsgType::name));
                decide(&mut e, &sh, idx, &msg, raw, true, now, &mut out);
            }
            out.ddns.extend(e.take_ddns_jobs());
        }
        carry_out(&sh, idx, &mut out);
        if busy {
            // requests come faster than one per interval: let the next ones gather
            if let Some(rest) = (woke + COALESCE).checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
    }
}

/// Under load, the least time from one wake-up of a receive thread to the next. Each wake-up
/// is a context switch (about 5 us of CPU on this VM, a third of the CPU per DORA at 14,000
/// DORA/s when every datagram woke the thread); waiting this long lets the datagrams of the
/// interval be taken with one `recvmmsg`. A request waits at most this much longer; when
/// requests come further apart than this the thread sleeps in `recvmmsg` and wakes at once.
const COALESCE: Duration = Duration::from_micros(200);

/// Asks the scheduler for a short time slice (100 us, Linux 6.12's EEVDF custom slice): the
/// thread keeps its share of the CPU, but when a request wakes it on a core busy with other
/// work it runs at once instead of after the running task's slice (milliseconds: what a
/// DISCOVER waited for its OFFER on a loaded machine). Older kernels ignore it.
fn short_slice() {
    // SAFETY: getpriority and sched_setattr on the calling thread (0), with a sched_attr of
    // the size given in it.
    let done = unsafe {
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: 100_000,
            sched_deadline: 0,
            sched_period: 0,
        };
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if done != 0 {
        debug!(error = %std::io::Error::last_os_error(), "no short scheduler slice for the receive thread");
    }
}

/// Short sleeps of the calling thread (coalescing, pacing) end within 10 us of their time,
/// not the default 50 us.
fn tight_timers() {
    // SAFETY: prctl on the calling thread with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 10_000 as libc::c_ulong) };
}

fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    match engine.lock() {
        Ok(e) => e,
        Err(_) => {
            error!("engine lock poisoned; stopping");
            std::process::exit(70);
        }
    }
}

/// Hands one request to the engine and puts its decision in `out`. `first` is false when the
/// request is handled again after a ping-check probe (its line is logged once).
#[allow(clippy::too_many_arguments)]
fn decide(
    e: &mut Engine,
    sh: &Shared,
    idx: usize,
    msg: &Msg,
    raw: &[u8],
    first: bool,
    now: u64,
    out: &mut Out,
) {
    let port = &sh.ports[idx];
    let action = e.handle(msg, raw, &port.iface, now);
    let name = &port.iface.name;
    if first {
        if let Some(suppressed) = isclog::gate() {
            if let Some(mut line) = isclog::request(msg, name) {
                if matches!(action, Action::Drop("pool_exhausted")) {
                    line.push_str(": no free leases");
                }
                out.lines.push((line, suppressed));
            }
        }
    }
    let line = |r: &Reply| {
        let s = isclog::gate()?;
        Some((isclog::reply(msg, r, name)?, s))
    };
    match action {
        Action::Send(r) => {
            let l = line(&r);
            out.replies.push((r, l));
        }
        Action::Commit { leases, reply } => {
            let line = reply.as_ref().and_then(line);
            out.commits.push(Commit {
                leases,
                reply,
                port: idx,
                line,
            });
        }
        Action::Probe {
            ip,
            timeout,
            abandon,
        } => out.probes.push(Probe {
            ip,
            timeout,
            abandon,
            port: idx,
            raw: raw.to_vec(),
        }),
        Action::Drop(reason) => {
            sh.metrics.dropped(reason);
            let kind = msg.msg_type().map_or("bootrequest", MsgType::name);
            debug!(interface = %name, kind, reason, "no reply");
        }
    }
}

/// Carries out what [`decide`] left in `out` (and empties it).
fn carry_out(sh: &Shared, idx: usize, out: &mut Out) {
    for (line, suppressed) in out.lines.drain(..) {
        isclog::emit(&line, suppressed);
    }
    for job in out.ddns.drain(..) {
        if sh.ddns.send(job).is_err() {
            error!("the DNS update thread is gone");
        }
    }
    send_all(&sh.ports[idx], &mut out.replies, &sh.metrics);
    if !out.commits.is_empty() {
        journal(sh, Job::Commit(std::mem::take(&mut out.commits)));
    }
    for p in out.probes.drain(..) {
        if sh.prober.send(p).is_err() {
            error!("the ping-check thread is gone; stopping");
            std::process::exit(70);
        }
    }
}

/// Handles one request (again, after a ping-check probe) and carries out the decision.
fn answer(sh: &Shared, idx: usize, msg: &Msg, raw: &[u8], first: bool) {
    let mut out = Out::default();
    {
        let mut e = lock(&sh.engine);
        decide(&mut e, sh, idx, msg, raw, first, leases::now(), &mut out);
        out.ddns.extend(e.take_ddns_jobs());
    }
    carry_out(sh, idx, &mut out);
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
    let abandoned = {
        let mut e = lock(&sh.engine);
        if answered {
            Some(e.probe_answered(p.ip, p.abandon, now))
        } else {
            e.probe_silent(p.ip, now);
            None
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
            Job::Commit(vec![Commit {
                leases: vec![l],
                reply: None,
                port: p.port,
                line: None,
            }]),
        );
    }
    if let Ok(msg) = Msg::parse_request(&p.raw) {
        answer(sh, p.port, &msg, &p.raw, false);
    }
}

/// Sends the replies (and empties the list), counts them, and logs the line of each one sent.
fn send_all(port: &Port, replies: &mut Vec<Outgoing>, metrics: &Metrics) {
    if replies.is_empty() {
        return;
    }
    port.deliver_all(replies.iter().map(|(r, _)| r), |i, res| {
        let (r, line) = &replies[i];
        match res {
            Ok(()) => {
                metrics
                    .tx
                    .bump(if r.bootp { "bootreply" } else { r.kind.name() });
                if let Some((l, suppressed)) = line {
                    isclog::emit(l, *suppressed);
                }
            }
            Err(e) => {
                metrics.dropped("send_failed");
                warn!(dest = ?r.dest, error = %e, "cannot send the reply");
            }
        }
    });
    replies.clear();
}

/// The longest time one batch's ACKs are spread over.
const MAX_PACE: Duration = Duration::from_millis(50);

/// ACKs sent back to back, at most.
const PACE_CHUNK: usize = 16;

/// Sends the ACKs in chunks of [`PACE_CHUNK`] spread evenly until `until` (the next batch's
/// write, which then brings the next ACKs). A batch's ACKs all go to one relay (or client
/// LAN): at 22,000 DORA/s a 10 ms batch is 220 ACKs, more than a receiver's default socket
/// buffer holds (208 KiB: ~140 such datagrams). Sent at once, 7 % of them were dropped at
/// perfdhcp's socket, while Kea, which sends one ACK per request, makes no bursts. Spread, they
/// arrive about as fast as the requests came; an ACK waits at most one batch interval more
/// (or as long as the batch's write took). The "ack-sender" thread does this, so that the
/// journal goes on with the next batch meanwhile.
fn send_paced(port: &Port, replies: &mut Vec<Outgoing>, metrics: &Metrics, until: Instant) {
    let mut rest = std::mem::take(replies);
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(PACE_CHUNK));
        send_all(port, &mut rest, metrics);
        rest = tail;
        if rest.is_empty() {
            break;
        }
        let chunks = rest.len().div_ceil(PACE_CHUNK) as u32 + 1;
        if let Some(left) = until.checked_duration_since(Instant::now()) {
            std::thread::sleep(left / chunks);
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

/// Leases taken into one write and one fdatasync, at most (more wait for the next).
const MAX_BATCH: usize = 4096;
/// The least time from one batch's write to the next: a batch gathers what arrives until
/// then. This bounds the fdatasyncs to 100 a second: each costs ~170 us of CPU on a virtual
/// disk, which at 30 leases a batch was 6 us per DORA, and at a few thousand DORA/s most of
/// the CPU per DORA. An ACK then waits up to this much longer; a lease that comes after a
/// quiet spell is written at once.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

fn journal_loop(
    mut store: Box<dyn Store>,
    rx: Receiver<Job>,
    ports: Vec<Arc<Port>>,
    engine: Arc<Mutex<Engine>>,
    metrics: Arc<Metrics>,
) {
    let pacer = {
        let (tx, rx) = mpsc::channel::<(Vec<Vec<Outgoing>>, Instant)>();
        let (ports, metrics) = (ports.clone(), metrics.clone());
        let spawned = std::thread::Builder::new()
            .name("ack-sender".into())
            .spawn(move || {
                tight_timers();
                for (lists, until) in rx {
                    for (port, mut list) in ports.iter().zip(lists) {
                        send_paced(port, &mut list, &metrics, until);
                    }
                }
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the ACK sender thread; stopping");
            std::process::exit(71);
        }
        tx
    };
    let mut acks: Vec<Vec<Outgoing>> = ports.iter().map(|_| Vec::new()).collect();
    let mut last: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // sleep rather than wait on the channel: a waiting receiver is woken (a context switch
        // on a busy core) by every message
        let wait = last.and_then(|t| (t + BATCH_INTERVAL).checked_duration_since(Instant::now()));
        if let (Some(w), Job::Commit(_)) = (wait, &first) {
            std::thread::sleep(w);
        }
        let mut jobs = vec![first];
        let mut n = 0;
        while n < MAX_BATCH {
            let Ok(j) = rx.try_recv() else { break };
            if let Job::Commit(c) = &j {
                n += c.len();
            }
            jobs.push(j);
        }
        last = Some(Instant::now());
        let all: Vec<&Lease> = jobs
            .iter()
            .flat_map(|j| match j {
                Job::Commit(c) => c.iter().flat_map(|c| &c.leases).collect(),
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
        let mut flushed = Vec::new();
        for j in jobs {
            let commits = match j {
                Job::Commit(c) => c,
                Job::Flush(done) => {
                    flushed.push(done);
                    continue;
                }
            };
            for c in commits {
                let mut granted = true;
                for _ in &c.leases {
                    if let Some(Outcome::Refused(holder)) = outcome.next() {
                        granted = false;
                        if let Some(h) = holder {
                            lock(&engine).adopt(h, leases::now());
                        }
                    }
                }
                match c.reply {
                    Some(r) if granted => acks[c.port].push((r, c.line)),
                    Some(_) => metrics.dropped("lease_not_stored"),
                    None => {}
                }
            }
        }
        // spread over most of the time until the next batch's ACKs: the batch interval, or
        // as long as this batch took when its write was slower (a remote database)
        let now = Instant::now();
        let began = last.unwrap_or(now);
        let until = (began + BATCH_INTERVAL * 4 / 5)
            .max(now + now.duration_since(began).min(MAX_PACE) * 4 / 5);
        let lists: Vec<Vec<Outgoing>> = acks.iter_mut().map(std::mem::take).collect();
        if lists.iter().any(|l| !l.is_empty()) && pacer.send((lists, until)).is_err() {
            error!("the ACK sender thread is gone; stopping");
            std::process::exit(70);
        }
        for done in flushed {
            let _ = done.send(());
        }
        store.maintain(&engine);
    }
}
