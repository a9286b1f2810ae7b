//! The load-balancer part: virtual servers programmed into a data plane, real servers checked,
//! drains for maintenance.
//!
//! One task owns the state ([`Lvs::run`]); checkers run as tasks of their own (one per
//! checker, so a hung server delays nobody else) and report to it through a channel; the
//! control API and the VRRP daemon talk to it through a [`Handle`]. After every change the
//! desired services are recomputed and the backend applies only the difference.

pub mod check;
pub mod dataplane;
pub mod gray;
pub mod ipvs;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use opsflow_control::gray::{GrayKey, GrayRemoved, GrayRoute, GrayState};
use opsflow_control::status as st;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::conf::lvs::{RealServer, VirtualServer, VsKey};
use crate::status::Shared;
use dataplane::{Backend, Dest, Service};

/// What the control API and the daemon ask of the LVS task.
pub enum Cmd {
    /// Drain (`on`) or enable a real server: `vs` as `VIP:PORT` (`[VIP6]:PORT`) or
    /// `fwmark-N`, `rs` as `RIP:PORT` (`[RIP6]:PORT`). The reply is the real server's status, or (HTTP status, message).
    Drain {
        vs: String,
        rs: String,
        on: bool,
        reply: oneshot::Sender<Result<st::RsChange, (u16, String)>>,
    },
    /// Add (or replace) a gray route; the reply comes once the data plane has it.
    GrayAdd {
        route: GrayRoute,
        reply: oneshot::Sender<Result<GrayState, (u16, String)>>,
    },
    /// Remove gray routes; the reply comes once the data plane no longer has them.
    GrayDel {
        key: GrayKey,
        reply: oneshot::Sender<GrayRemoved>,
    },
    Reload(Vec<VirtualServer>),
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable way to talk to the LVS task.
#[derive(Clone)]
pub struct Handle(mpsc::UnboundedSender<Cmd>);

impl Handle {
    pub async fn drain(&self, vs: &str, rs: &str, on: bool) -> Result<st::RsChange, (u16, String)> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Cmd::Drain {
                vs: vs.to_string(),
                rs: rs.to_string(),
                on,
                reply: tx,
            })
            .map_err(|_| (503, "the load-balancer task is not running".to_string()))?;
        rx.await
            .map_err(|_| (503, "the load-balancer task stopped".to_string()))?
    }

    pub async fn gray_add(&self, route: GrayRoute) -> Result<GrayState, (u16, String)> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Cmd::GrayAdd { route, reply: tx })
            .map_err(|_| (503, "the load-balancer task is not running".to_string()))?;
        rx.await
            .map_err(|_| (503, "the load-balancer task stopped".to_string()))?
    }

    pub async fn gray_del(&self, key: GrayKey) -> Result<GrayRemoved, (u16, String)> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Cmd::GrayDel { key, reply: tx })
            .map_err(|_| (503, "the load-balancer task is not running".to_string()))?;
        rx.await
            .map_err(|_| (503, "the load-balancer task stopped".to_string()))
    }

    pub fn reload(&self, vss: Vec<VirtualServer>) {
        let _ = self.0.send(Cmd::Reload(vss));
    }

    /// Removes what we installed; returns when done.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct CheckEvent {
    /// Where the real server was when its checkers started; `generation` tells whether it
    /// still is (a reload may have moved or replaced it).
    vs: usize,
    rs: usize,
    generation: u64,
    checker: usize,
    result: check::Outcome,
}

struct RsRun {
    cfg: RealServer,
    ok: Vec<bool>,
    dyn_weight: Option<u32>,
    healthy: bool,
    last_error: Option<String>,
    generation: u64,
    tasks: Vec<JoinHandle<()>>,
    /// (virtual server, real server) index its checkers report.
    at: (usize, usize),
}

impl Drop for RsRun {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct VsRun {
    cfg: VirtualServer,
    rss: Vec<RsRun>,
    quorum_up: bool,
}

/// The drains and the gray routes, kept in a state file so they survive reloads and restarts.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Drains {
    drained: BTreeSet<(String, String)>,
    #[serde(default)]
    gray: gray::Routes,
}

/// The LVS task.
pub struct Lvs {
    backend: Box<dyn Backend>,
    vss: Vec<VsRun>,
    drains: Drains,
    state_file: PathBuf,
    tx: mpsc::UnboundedSender<CheckEvent>,
    rx: mpsc::UnboundedReceiver<CheckEvent>,
    shared: Shared,
    generation: u64,
    marks: gray::Marks,
    gray_states: Vec<GrayState>,
}

/// A pseudo-random pause in `[0, warmup)` (warmup defaults to none; `warmup 0` is none),
/// different per checker and start. Hand-written: a spread, not a secret, needs no RNG crate.
fn warmup_delay(warmup: Option<f64>, who: (IpAddr, u16, usize)) -> Duration {
    use std::hash::BuildHasher;
    let Some(w) = warmup.filter(|w| *w > 0.0) else {
        return Duration::ZERO;
    };
    let h = std::collections::hash_map::RandomState::new().hash_one(who);
    let frac = (h % 1_000_000) as f64 / 1_000_000.0;
    Duration::try_from_secs_f64(w * frac).unwrap_or(Duration::ZERO)
}

/// `10.0.1.1:80`, `[2001:db8::11]:80`.
fn rs_id(r: &RealServer) -> String {
    SocketAddr::new(r.addr, r.port).to_string()
}

fn run_notify(cmd: &Option<String>, what: &str) {
    if let Some(c) = cmd.clone() {
        let what = what.to_string();
        tokio::spawn(async move { crate::script::run(&c, &[], &what).await });
    }
}

/// The backend `--lvs-backend` names: `ipvs`, `nftables`, or `auto` (IPVS when the kernel
/// has it, else nftables with a warning).
pub fn select_backend(which: &str) -> anyhow::Result<Box<dyn Backend>> {
    match which {
        "ipvs" => Ok(Box::new(ipvs::Ipvs::open()?)),
        "nftables" => Ok(Box::new(dataplane::Nft::default())),
        _ => match ipvs::Ipvs::open() {
            Ok(i) => {
                info!("virtual servers are programmed into IPVS");
                Ok(Box::new(i))
            }
            Err(e) => {
                warn!(reason = %e, "no IPVS in this kernel: virtual servers are programmed with nftables (NAT only; DR and TUN are forwarded as NAT)");
                Ok(Box::new(dataplane::Nft::default()))
            }
        },
    }
}

/// Before the first programming: `lvs_flush` and `lvs_timeouts` on IPVS; on nftables, a
/// warning for each IPVS-only setting, which means nothing there.
pub fn prepare(backend: &mut dyn Backend, cfg: &crate::conf::Config) {
    if backend.name() != "ipvs" {
        for d in crate::conf::ipvs::nft_notes(cfg) {
            warn!("{d}");
        }
    }
    if let Err(e) = backend.prepare(&cfg.global.ipvs) {
        warn!(error = %format!("{e:#}"), "IPVS settings not applied");
    }
}

/// Whether `a` is an address of this host (for `ha_suspend`). IPv6: whether a socket can
/// bind it (the kernel refuses an address no interface holds).
fn is_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => opsflow_common::ipv4_interfaces()
            .iter()
            .any(|(_, x, _)| *x == a),
        IpAddr::V6(_) => std::net::UdpSocket::bind(SocketAddr::new(a, 0)).is_ok(),
    }
}

impl Lvs {
    /// Starts the task for `vss`; `None` when there is nothing to balance.
    pub fn start(
        vss: Vec<VirtualServer>,
        backend: Box<dyn Backend>,
        state_file: PathBuf,
        shared: Shared,
    ) -> Handle {
        let (ctx, crx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let drains = match std::fs::read(&state_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(file = %state_file.display(), error = %e, "state file unreadable; starting with no drains");
                Drains::default()
            }),
            Err(_) => Drains::default(),
        };
        if !drains.drained.is_empty() {
            info!(count = drains.drained.len(), file = %state_file.display(), "drains restored");
        }
        for e in &drains.gray.0 {
            info!(route = %e.route, file = %state_file.display(), "gray route restored");
        }
        let mut lvs = Lvs {
            backend,
            vss: Vec::new(),
            drains,
            state_file,
            tx,
            rx,
            shared,
            generation: 0,
            marks: gray::Marks::default(),
            gray_states: Vec::new(),
        };
        lvs.load(vss);
        tokio::spawn(lvs.run(crx));
        Handle(ctx)
    }

    fn spawn_checks(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
        at: (usize, usize),
    ) -> (u64, Vec<JoinHandle<()>>) {
        self.generation += 1;
        let generation = self.generation;
        let mut tasks = Vec::new();
        for (i, c) in rs.checkers.iter().enumerate() {
            let c = c.clone();
            let tx = self.tx.clone();
            let (addr, port) = (rs.addr, rs.port);
            let every = Duration::try_from_secs_f64(c.delay_loop.unwrap_or(vs.delay_loop).max(0.1))
                .unwrap_or(Duration::from_secs(60));
            let delay_loop = vs.delay_loop;
            let suspend = match (&vs.key, vs.ha_suspend) {
                (VsKey::Addr(a, _, _), true) => Some(*a),
                _ => None,
            };
            // keepalived's warmup: a random pause before the first check spreads them out
            let warmup = warmup_delay(c.warmup, (addr, port, i));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(warmup).await;
                loop {
                    if suspend.is_none_or(is_local) {
                        let result = check::check_guarded(&c, addr, port, delay_loop).await;
                        if tx
                            .send(CheckEvent {
                                vs: at.0,
                                rs: at.1,
                                generation,
                                checker: i,
                                result,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
        (generation, tasks)
    }

    /// Takes a (new) configuration: real servers whose settings did not change keep their
    /// health and their checkers; the rest start over.
    fn load(&mut self, vss: Vec<VirtualServer>) {
        let mut old = std::mem::take(&mut self.vss);
        for (vi, vs) in vss.into_iter().enumerate() {
            let prev = old
                .iter()
                .position(|o| o.cfg.key == vs.key)
                .map(|i| old.remove(i));
            let mut rss = Vec::new();
            let (mut prev_rss, quorum_up, timing) = match prev {
                Some(mut p) => (
                    std::mem::take(&mut p.rss),
                    p.quorum_up,
                    Some((p.cfg.delay_loop, p.cfg.ha_suspend)),
                ),
                None => (Vec::new(), true, None),
            };
            // checkers keep running only if nothing about them changed
            let same_timing = timing == Some((vs.delay_loop, vs.ha_suspend));
            for (ri, r) in vs.real_servers.iter().enumerate() {
                let same = prev_rss.iter().position(|p| same_timing && p.cfg == *r);
                if let Some(i) = same {
                    let mut kept = prev_rss.remove(i);
                    if kept.at != (vi, ri) {
                        // same server, new place: its checkers report to the new place
                        for t in kept.tasks.drain(..) {
                            t.abort();
                        }
                        let (generation, tasks) = self.spawn_checks(&vs, r, (vi, ri));
                        kept.generation = generation;
                        kept.tasks = tasks;
                        kept.at = (vi, ri);
                    }
                    rss.push(kept);
                    continue;
                }
                let (generation, tasks) = self.spawn_checks(&vs, r, (vi, ri));
                let start_healthy = !r.alpha || r.checkers.is_empty();
                rss.push(RsRun {
                    cfg: r.clone(),
                    ok: vec![start_healthy; r.checkers.len()],
                    dyn_weight: None,
                    healthy: start_healthy,
                    last_error: None,
                    generation,
                    tasks,
                    at: (vi, ri),
                });
            }
            self.vss.push(VsRun {
                cfg: vs,
                rss,
                quorum_up,
            });
        }
        self.reconcile();
    }

    fn drained(&self, vs: &VsKey, rs: &RealServer) -> bool {
        self.drains.drained.contains(&(vs.id(), rs_id(rs)))
    }

    /// The weight a real server should have in the kernel; `None`: not in the table.
    fn weight(&self, vs: &VirtualServer, r: &RsRun) -> Option<u32> {
        if !r.healthy {
            return r.cfg.inhibit_on_failure.then_some(0);
        }
        if self.drained(&vs.key, &r.cfg) {
            return Some(0);
        }
        Some(r.dyn_weight.unwrap_or(r.cfg.weight))
    }

    fn reconcile(&mut self) {
        let mut desired = Vec::new();
        let mut quorum_changes = Vec::new();
        let mut gray_states = Vec::new();
        for (vi, v) in self.vss.iter().enumerate() {
            let dests: Vec<Dest> = v
                .rss
                .iter()
                .filter_map(|r| {
                    self.weight(&v.cfg, r).map(|w| Dest {
                        addr: r.cfg.addr,
                        port: r.cfg.port,
                        weight: w,
                    })
                })
                .collect();
            let alive: u32 = dests.iter().map(|d| d.weight).sum();
            let q = &v.cfg;
            let up = if v.quorum_up {
                alive >= q.quorum.saturating_sub(q.hysteresis).max(1) || (q.quorum == 0)
            } else {
                alive >= q.quorum + q.hysteresis
            };
            if up != v.quorum_up {
                quorum_changes.push((vi, up));
            }
            // gray routes: their services go first, the rest is everyone else's pool
            let (gray_services, mut dests, states) = self.drains.gray.split(q, dests);
            desired.extend(gray_services);
            gray_states.extend(states);
            if let Some((a, p)) = q.sorry_server {
                if !up {
                    dests.push(Dest {
                        addr: a,
                        port: p,
                        weight: 1,
                    });
                } else if q.sorry_server_inhibit {
                    dests.push(Dest {
                        addr: a,
                        port: p,
                        weight: 0,
                    });
                }
            }
            desired.push(Service {
                key: q.key.clone(),
                scheduler: q.scheduler.clone(),
                method: q.method.clone(),
                persistence_timeout: q.persistence_timeout,
                persistence_granularity: q.persistence_granularity,
                dests,
            });
        }
        for (vi, up) in quorum_changes {
            let v = &mut self.vss[vi];
            v.quorum_up = up;
            if up {
                info!(virtual_server = %v.cfg.key.id(), "quorum gained");
                run_notify(&v.cfg.quorum_up, "quorum_up");
            } else {
                warn!(virtual_server = %v.cfg.key.id(), sorry_server = ?v.cfg.sorry_server, "quorum lost");
                run_notify(&v.cfg.quorum_down, "quorum_down");
            }
        }
        self.gray_states = gray_states;
        // a gray route's mark rule exists only while its service does: stale marks go first,
        // new marks after the services
        let vss: Vec<VirtualServer> = self.vss.iter().map(|v| v.cfg.clone()).collect();
        let marks = self.drains.gray.mark_rules(&vss);
        let keep: Vec<String> = marks
            .iter()
            .filter(|(m, _)| self.marks.has(*m))
            .map(|(_, r)| r.clone())
            .collect();
        if let Err(e) = self.marks.apply_subset(&keep) {
            warn!(error = %format!("{e:#}"), "cannot remove gray mark rules");
        }
        self.backend.set_extras(ipvs::extras_of(&self.vss));
        let t0 = std::time::Instant::now();
        match self.backend.apply(&desired) {
            Ok(changes) if changes.len() <= 20 => {
                for c in changes {
                    info!(backend = self.backend.name(), change = ?c, "data plane");
                }
            }
            Ok(changes) => {
                info!(
                    backend = self.backend.name(),
                    changes = changes.len(),
                    ms = t0.elapsed().as_millis() as u64,
                    "data plane programmed"
                );
            }
            Err(e) => {
                warn!(backend = self.backend.name(), error = %format!("{e:#}"), "cannot program the data plane")
            }
        }
        let rules: Vec<String> = marks.iter().map(|(_, r)| r.clone()).collect();
        match self.marks.apply(&rules) {
            Ok(true) => info!(routes = rules.len(), "gray mark rules installed"),
            Ok(false) => {}
            Err(e) => warn!(error = %format!("{e:#}"), "cannot install the gray mark rules"),
        }
        self.publish();
    }

    fn publish(&mut self) {
        let counts = self.backend.counts();
        let vss: Vec<st::VirtualServer> = self
            .vss
            .iter()
            .map(|v| {
                let (address, port, protocol, fwmark) = match &v.cfg.key {
                    VsKey::Addr(a, p, pr) => (Some(*a), *p, pr.clone(), None),
                    VsKey::Fwmark(m, _) => (None, 0, "TCP".to_string(), Some(*m)),
                };
                let real_servers = v
                    .rss
                    .iter()
                    .map(|r| {
                        let (act, inact) = gray::count(
                            &counts,
                            &v.cfg.key,
                            &self.gray_states,
                            r.cfg.addr,
                            r.cfg.port,
                        );
                        st::RealServer {
                            address: r.cfg.addr,
                            port: r.cfg.port,
                            weight: self.weight(&v.cfg, r).unwrap_or(0),
                            configured_weight: r.cfg.weight,
                            healthy: r.healthy,
                            maintenance: self.drained(&v.cfg.key, &r.cfg),
                            in_service: self.weight(&v.cfg, r).is_some(),
                            active_connections: act,
                            inactive_connections: inact,
                            last_error: r.last_error.clone(),
                        }
                    })
                    .collect();
                st::VirtualServer {
                    id: v.cfg.key.id(),
                    address,
                    port,
                    protocol,
                    fwmark,
                    scheduler: v.cfg.scheduler.clone(),
                    method: v.cfg.method.clone(),
                    persistence_timeout: v.cfg.persistence_timeout,
                    quorum_up: v.quorum_up,
                    sorry_server: v
                        .cfg
                        .sorry_server
                        .map(|(a, p)| SocketAddr::new(a, p).to_string()),
                    sorry_server_active: v.cfg.sorry_server.is_some() && !v.quorum_up,
                    backend: self.backend.name().to_string(),
                    real_servers,
                }
            })
            .collect();
        if let Ok(mut s) = self.shared.lock() {
            s.0.virtual_servers = vss;
            s.0.gray = self.gray_states.clone();
        }
    }

    /// Takes one checker result; true when the data plane must be reconciled.
    fn on_check(&mut self, ev: CheckEvent) -> bool {
        let Some(v) = self.vss.get_mut(ev.vs) else {
            return false;
        };
        let Some(r) = v
            .rss
            .get_mut(ev.rs)
            .filter(|r| r.generation == ev.generation)
        else {
            return false; // a checker of a replaced real server
        };
        let ok = ev.result.is_ok();
        if let Some(slot) = r.ok.get_mut(ev.checker) {
            *slot = ok;
        }
        match &ev.result {
            Ok(w) => {
                if w.is_some() {
                    r.dyn_weight = *w;
                }
            }
            Err(e) => r.last_error = Some(e.clone()),
        }
        let healthy = r.ok.iter().all(|x| *x);
        let weight_changed = matches!(ev.result, Ok(Some(_)));
        if healthy != r.healthy {
            r.healthy = healthy;
            let id = rs_id(&r.cfg);
            if healthy {
                r.last_error = None;
                info!(virtual_server = %v.cfg.key.id(), real_server = %id, "real server up");
                run_notify(&r.cfg.notify_up, "notify_up");
            } else {
                warn!(virtual_server = %v.cfg.key.id(), real_server = %id, reason = %r.last_error.clone().unwrap_or_default(), "real server down");
                run_notify(&r.cfg.notify_down, "notify_down");
            }
            true
        } else {
            weight_changed
        }
    }

    fn save_drains(&self) -> anyhow::Result<()> {
        opsflow_common::write_atomic(&self.state_file, &serde_json::to_vec_pretty(&self.drains)?)?;
        Ok(())
    }

    fn drain(&mut self, vs: &str, rs: &str, on: bool) -> Result<st::RsChange, (u16, String)> {
        // `[2001:0db8::0010]:80`, percent-encoded brackets: the id as we print it
        let (vs, rs) = (st::canonical_id(vs), st::canonical_id(rs));
        let (vs, rs) = (vs.as_str(), rs.as_str());
        let Some(v) = self.vss.iter().find(|v| v.cfg.key.id() == vs) else {
            let known: Vec<String> = self.vss.iter().map(|v| v.cfg.key.id()).collect();
            return Err((
                404,
                format!("no virtual server {vs} (known: {})", known.join(", ")),
            ));
        };
        let Some(r) = v.rss.iter().find(|r| rs_id(&r.cfg) == rs) else {
            let known: Vec<String> = v.rss.iter().map(|r| rs_id(&r.cfg)).collect();
            return Err((
                404,
                format!(
                    "virtual server {vs} has no real server {rs} (known: {})",
                    known.join(", ")
                ),
            ));
        };
        let healthy = r.healthy;
        let key = (vs.to_string(), rs.to_string());
        let changed = if on {
            self.drains.drained.insert(key)
        } else {
            self.drains.drained.remove(&key)
        };
        if changed {
            if let Err(e) = self.save_drains() {
                warn!(file = %self.state_file.display(), error = %e, "cannot save the drains; they hold until ha stops");
            }
            info!(
                virtual_server = vs,
                real_server = rs,
                "{}",
                if on { "drained" } else { "enabled" }
            );
            self.reconcile();
        }
        Ok(st::RsChange {
            virtual_server: vs.to_string(),
            real_server: rs.to_string(),
            maintenance: on,
            healthy,
            note: if !on && !healthy {
                "enabled; back in rotation once its checks pass".to_string()
            } else {
                String::new()
            },
        })
    }

    fn gray_add(&mut self, route: GrayRoute) -> Result<GrayState, (u16, String)> {
        let vss: Vec<&VirtualServer> = self.vss.iter().map(|v| &v.cfg).collect();
        let entry = self.drains.gray.add(&vss, route)?;
        if let Err(e) = self.save_drains() {
            warn!(file = %self.state_file.display(), error = %e, "cannot save the gray routes; they hold until ha stops");
        }
        info!(route = %entry.route, fwmark = entry.fwmark, "gray route added");
        self.reconcile();
        Ok(self
            .gray_states
            .iter()
            .find(|s| s.fwmark == entry.fwmark)
            .cloned()
            .unwrap_or(GrayState {
                route: entry.route,
                fwmark: entry.fwmark,
                in_service: Vec::new(),
                fallback: true,
            }))
    }

    fn gray_del(&mut self, key: &GrayKey) -> GrayRemoved {
        let removed = self.drains.gray.remove(key);
        if !removed.is_empty() {
            if let Err(e) = self.save_drains() {
                warn!(file = %self.state_file.display(), error = %e, "cannot save the gray routes");
            }
            for r in &removed {
                info!(route = %r, "gray route removed");
            }
            self.reconcile();
        }
        GrayRemoved { removed }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(ev) = self.rx.recv() => {
                    // take every result already queued, then program the data plane once
                    let mut dirty = self.on_check(ev);
                    let mut n = 1;
                    while let Ok(ev) = self.rx.try_recv() {
                        dirty |= self.on_check(ev);
                        n += 1;
                        if n % 1024 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    if dirty {
                        self.reconcile();
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Drain { vs, rs, on, reply }) => {
                        let _ = reply.send(self.drain(&vs, &rs, on));
                    }
                    Some(Cmd::GrayAdd { route, reply }) => {
                        let _ = reply.send(self.gray_add(route));
                    }
                    Some(Cmd::GrayDel { key, reply }) => {
                        let _ = reply.send(self.gray_del(&key));
                    }
                    Some(Cmd::Reload(vss)) => {
                        info!(virtual_servers = vss.len(), "virtual servers reloaded");
                        self.load(vss);
                    }
                    Some(Cmd::Shutdown(done)) => {
                        self.stop();
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop();
                        return;
                    }
                },
                _ = tick.tick() => self.publish(),
            }
        }
    }

    fn stop(&mut self) {
        for v in &self.vss {
            if v.cfg.omega {
                for r in v.rss.iter().filter(|r| r.healthy) {
                    run_notify(&r.cfg.notify_down, "notify_down");
                }
                if v.quorum_up {
                    run_notify(&v.cfg.quorum_down, "quorum_down");
                }
            }
        }
        self.vss.clear();
        if let Err(e) = self.marks.clear() {
            warn!(error = %format!("{e:#}"), "cannot remove the gray mark rules");
        }
        match self.backend.clear() {
            Ok(()) => info!(backend = self.backend.name(), "virtual services removed"),
            Err(e) => {
                warn!(backend = self.backend.name(), error = %format!("{e:#}"), "cannot remove the virtual services")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_spreads_first_checks_within_its_bound() {
        let who = |i| (IpAddr::from([10, 0, 0, 1]), 80, i);
        assert_eq!(warmup_delay(None, who(0)), Duration::ZERO);
        assert_eq!(warmup_delay(Some(0.0), who(0)), Duration::ZERO);
        let d: Vec<Duration> = (0..20).map(|i| warmup_delay(Some(2.0), who(i))).collect();
        assert!(d.iter().all(|d| *d < Duration::from_secs(2)), "{d:?}");
        assert!(d.iter().any(|x| *x != d[0]), "no spread: {d:?}");
    }
}
