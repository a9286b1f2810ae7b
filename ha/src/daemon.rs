//! The VRRP daemon: one event loop (tokio, one thread) owns every router; sockets, scripts
//! and the control API talk to it through channels. Notify scripts and e-mail run in tasks
//! of their own, in order per instance, so they never hold up the protocol.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::conf::{self, Config, Instance, Vip};
use crate::net;
use crate::vrrp::{self, Action, Advert, Router, Settings, State};

pub use crate::status::{Counters, Shared, Status};

struct Inst {
    cfg: Instance,
    router: Router,
    chan: crate::channel::Channel,
    ifindex: u32,
    vips_on: bool,
    last_transition: SystemTime,
    notify: mpsc::UnboundedSender<Vec<(String, Vec<String>)>>,
    iface_up: bool,
    track_up: Vec<bool>,
    reader: tokio::task::JoinHandle<()>,
    /// The VMAC interface (name, index) when `use_vmac` is set.
    vmac: Option<(String, u32)>,
    /// Sends whole datagrams out of the VMAC interface (adverts with the virtual MAC).
    vmac_tx: Option<socket2::Socket>,
    /// `use_vmac`: the channel on the VMAC interface (a multicast one hears the link there,
    /// and IPv6 adverts leave from it), and its reader.
    vmac_chan: Option<(crate::channel::Channel, Option<tokio::task::JoinHandle<()>>)>,
    /// Gratuitous ARPs while master (the burst, the repeat after garp_master_delay, and
    /// garp_master_refresh); aborted when leaving MASTER.
    garp: Option<tokio::task::JoinHandle<()>>,
}

enum Event {
    Advert {
        inst: String,
        from: IpAddr,
        advert: Advert,
    },
    Rejected(&'static str),
    Script {
        name: String,
        ok: bool,
    },
}

/// Everything the daemon needs to run.
pub struct Daemon {
    cfg: Config,
    insts: Vec<Inst>,
    scripts: HashMap<String, bool>,
    script_tasks: Vec<tokio::task::JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    pub shared: Shared,
    config_path: PathBuf,
    config_id: String,
    lvs: Option<crate::lvs::Handle>,
    /// The sync groups over `insts` (indices), the pure core that decides for them.
    groups: vrrp::Groups,
    /// The numbers in the tracked files, by track_file name (re-read on every poll).
    files: HashMap<String, i64>,
    /// Whether each track_process has its quorum, after its delays.
    procs: HashMap<String, vrrp::Debounce>,
    /// inotify on the tracked files' directories; `None`: the files are polled.
    files_watch: Option<crate::watch::Watcher>,
    /// The kernel's proc connector; `None`: `/proc` is polled.
    procs_watch: Option<crate::watch::Watcher>,
}

/// The interface a VIP lives on: its `dev`, the VMAC interface when `use_vmac` is set (for
/// VIPs on the instance's own interface), or the instance's interface.
fn vip_dev(i: &Inst, v: &Vip) -> (String, u32) {
    let base = &i.cfg.interface;
    if let Some((name, idx)) = &i.vmac {
        if v.dev.as_deref().is_none_or(|d| d == base) {
            return (name.clone(), *idx);
        }
    }
    let dev = v.dev.clone().unwrap_or_else(|| base.clone());
    let idx = net::ifindex(&dev).unwrap_or(i.ifindex);
    (dev, idx)
}

/// A state's word in notify arguments and alert subjects (keepalived's).
fn state_word(st: State) -> &'static str {
    match st {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Init => "STOP",
    }
}

/// The scripts an instance entering `st` runs, in order: the state's own
/// (`notify_master`, ...), then the generic `notify` with `INSTANCE NAME STATE PRIORITY`.
fn notify_batch(i: &Inst, st: State) -> Vec<(String, Vec<String>)> {
    let n = &i.cfg.notify;
    let specific = match st {
        State::Master => &n.master,
        State::Backup => &n.backup,
        State::Fault => &n.fault,
        State::Init => &n.stop,
    };
    let mut batch: Vec<(String, Vec<String>)> =
        specific.iter().map(|s| (s.clone(), Vec::new())).collect();
    if let Some(g) = &n.generic {
        let args = vec![
            "INSTANCE".into(),
            i.cfg.name.clone(),
            state_word(st).into(),
            i.router.priority.to_string(),
        ];
        batch.push((g.clone(), args));
    }
    batch
}

/// Queues the scripts of `i` entering `st`; the instance's notify task runs them one after
/// another, after those queued before.
fn send_notifies(i: &Inst, st: State) {
    let batch = notify_batch(i, st);
    if !batch.is_empty() {
        let _ = i.notify.send(batch);
    }
}

/// Closes an instance's channel on its VMAC (before the VMAC goes): the base interface's
/// channel hears the link again.
fn close_vmac_chan(i: &mut Inst) {
    if let Some((_, reader)) = i.vmac_chan.take() {
        if let Some(r) = reader {
            r.abort();
        }
        i.chan.mute(false);
    }
}

/// The contract's spelling of a router state.
fn status_state(s: State) -> opsflow_control::VrrpState {
    match s {
        State::Init => opsflow_control::VrrpState::Init,
        State::Backup => opsflow_control::VrrpState::Backup,
        State::Master => opsflow_control::VrrpState::Master,
        State::Fault => opsflow_control::VrrpState::Fault,
    }
}

fn vip_text(v: &Vip) -> String {
    format!("{}/{}", v.addr, v.prefix)
}

fn rfc3339(t: SystemTime) -> String {
    opsflow_common::time::rfc3339_system(t)
}

impl Daemon {
    pub fn new(cfg: Config, config_path: PathBuf, config_id: String) -> Daemon {
        let (tx, rx) = mpsc::unbounded_channel();
        Daemon {
            cfg: Config {
                instances: Vec::new(),
                ..cfg.clone()
            },
            insts: Vec::new(),
            scripts: HashMap::new(),
            script_tasks: Vec::new(),
            tx,
            rx,
            shared: Arc::new(Mutex::new((Status::default(), Counters::default()))),
            config_path,
            config_id,
            lvs: None,
            groups: vrrp::Groups::default(),
            files: HashMap::new(),
            procs: HashMap::new(),
            files_watch: None,
            procs_watch: None,
        }
        .with_config(cfg)
    }

    /// The load-balancer task: told about reloads, stopped at shutdown.
    pub fn set_lvs(&mut self, lvs: Option<crate::lvs::Handle>) {
        self.lvs = lvs;
    }

    fn with_config(mut self, cfg: Config) -> Daemon {
        self.apply_config(cfg, Instant::now());
        self
    }

    fn start_scripts(&mut self) {
        for t in self.script_tasks.drain(..) {
            t.abort();
        }
        let used: Vec<String> = self
            .cfg
            .instances
            .iter()
            .flat_map(|i| i.track_scripts.iter().map(|t| t.name.clone()))
            .collect();
        for s in self
            .cfg
            .scripts
            .iter()
            .filter(|s| used.contains(&s.name))
            .cloned()
        {
            // keepalived disables a script it cannot find or trust; it then does not count
            let run = match self.cfg.script_env.prepare(&s.script, s.user.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    warn!(script = %s.name, "track script disabled: {e}");
                    self.scripts.insert(s.name.clone(), true);
                    continue;
                }
            };
            self.scripts.entry(s.name.clone()).or_insert(!s.init_fail);
            let tx = self.tx.clone();
            self.script_tasks.push(tokio::spawn(async move {
                let (mut ok, mut good, mut bad) = (!s.init_fail, 0u32, 0u32);
                let mut tick = tokio::time::interval(Duration::from_secs_f64(s.interval));
                loop {
                    tick.tick().await;
                    let limit = if s.timeout > 0.0 {
                        s.timeout
                    } else {
                        s.interval.max(1.0)
                    };
                    let result = tokio::time::timeout(
                        Duration::from_secs_f64(limit),
                        run.command(&[]).status(),
                    )
                    .await;
                    let success = matches!(result, Ok(Ok(st)) if st.success());
                    if success {
                        good += 1;
                        bad = 0;
                    } else {
                        bad += 1;
                        good = 0;
                    }
                    let new = if ok { bad < s.fall } else { good >= s.rise };
                    if new != ok {
                        ok = new;
                        let _ = tx.send(Event::Script {
                            name: s.name.clone(),
                            ok,
                        });
                    }
                }
            }));
        }
    }

    fn open(&self, c: &Instance, now: Instant) -> Option<Inst> {
        let Some(ifindex) = net::ifindex(&c.interface) else {
            warn!(instance = %c.name, interface = %c.interface, "interface does not exist: instance stays in FAULT until it appears (reload to retry)");
            return None;
        };
        let chan = match crate::channel::Channel::open(c, ifindex) {
            Ok(ch) => ch,
            Err(e) => {
                warn!(instance = %c.name, interface = %c.interface, "{e}");
                return None;
            }
        };
        let settings = Settings {
            version: c.version,
            advert_cs: c.advert_cs,
            preempt: !c.nopreempt,
            preempt_delay: Duration::from_secs_f64(c.preempt_delay),
            initial_master: c.initial_master,
        };
        let router = Router::new(settings, c.priority, chan.my_ip, now);
        let (ntx, mut nrx) = mpsc::unbounded_channel::<Vec<(String, Vec<String>)>>();
        let name = c.name.clone();
        tokio::spawn(async move {
            while let Some(batch) = nrx.recv().await {
                for (cmd, extra) in batch {
                    crate::script::run(&cmd, &extra, &format!("notify ({name})")).await;
                }
            }
        });
        let reader = self.reader(c, &chan);
        Some(Inst {
            cfg: c.clone(),
            router,
            chan,
            ifindex,
            vips_on: false,
            last_transition: SystemTime::now(),
            notify: ntx,
            iface_up: net::link_up(&c.interface),
            track_up: c
                .track_interfaces
                .iter()
                .map(|(i, _)| net::link_up(i))
                .collect(),
            vmac: None,
            vmac_tx: None,
            vmac_chan: None,
            reader,
            garp: None,
        })
    }

    /// The reader task of one of instance `c`'s channels, feeding the event loop.
    fn reader(&self, c: &Instance, chan: &crate::channel::Channel) -> tokio::task::JoinHandle<()> {
        let tx = self.tx.clone();
        let name = c.name.clone();
        chan.reader(c, move |got| {
            let _ = tx.send(match got {
                Ok((from, advert)) => Event::Advert {
                    inst: name.clone(),
                    from,
                    advert,
                },
                Err(reason) => Event::Rejected(reason),
            });
        })
    }

    /// `use_vmac`: opens the channel on the new VMAC `name` (IPv6 adverts leave from it, as
    /// keepalived's do); a multicast one hears the link there instead of the base interface,
    /// where the peers' adverts from the virtual MAC no longer arrive (a macvlan takes the
    /// multicast frames whose source is its own MAC), as keepalived receives on the VMAC.
    fn open_vmac_chan(&self, i: &mut Inst, name: &str, idx: u32) {
        match crate::channel::Channel::open_vmac(&i.cfg, &i.chan, name, idx) {
            Ok(ch) => {
                let reader = (!ch.is_unicast()).then(|| self.reader(&i.cfg, &ch));
                i.chan.mute(true);
                i.vmac_chan = Some((ch, reader));
            }
            Err(e) => {
                warn!(instance = %i.cfg.name, vmac = %name, error = %e, "adverts go out of the base interface")
            }
        }
    }

    /// Applies a (new) configuration: instances that stay keep their state and VIPs.
    fn apply_config(&mut self, cfg: Config, now: Instant) {
        // removed instances stop
        let (keep, gone): (Vec<Inst>, Vec<Inst>) = std::mem::take(&mut self.insts)
            .into_iter()
            .partition(|i| cfg.instances.iter().any(|c| c.name == i.cfg.name));
        self.insts = keep;
        for mut g in gone {
            let acts = g.router.shutdown();
            self.run_actions(&mut g, acts);
            g.reader.abort();
            close_vmac_chan(&mut g);
            if let Some((name, _)) = &g.vmac {
                let _ = net::delete_link(name);
            }
        }
        // static_ipaddress: always present, whatever the VRRP state
        for v in self
            .cfg
            .static_addresses
            .iter()
            .filter(|v| !cfg.static_addresses.contains(v))
        {
            if let Some(idx) = v.dev.as_deref().and_then(net::ifindex) {
                let _ = net::set_vip(idx, v, false);
            }
        }
        for v in &cfg.static_addresses {
            match v.dev.as_deref().and_then(net::ifindex) {
                Some(idx) => {
                    if let Err(e) = net::set_vip(idx, v, true) {
                        warn!(addr = %vip_text(v), error = %e, "cannot add the static address");
                    }
                }
                None => {
                    warn!(addr = %vip_text(v), dev = ?v.dev, "static address: no such interface")
                }
            }
        }
        replace_net(
            &self.cfg.static_routes,
            &cfg.static_routes,
            "static route",
            net::set_route,
        );
        replace_net(
            &self.cfg.static_rules,
            &cfg.static_rules,
            "static rule",
            net::set_rule,
        );
        crate::script::install(cfg.script_env.clone());
        for f in &cfg.track_files {
            if let Some((value, overwrite)) = f.init {
                if overwrite || !std::path::Path::new(&f.path).exists() {
                    if let Err(e) = std::fs::write(&f.path, format!("{value}\n")) {
                        warn!(track_file = %f.name, file = %f.path, error = %e, "cannot write init_file");
                    }
                }
            }
        }
        self.cfg = cfg.clone();
        self.read_files();
        self.procs
            .retain(|n, _| cfg.track_processes.iter().any(|t| &t.name == n));
        self.scan_processes(now);
        for c in &cfg.instances {
            if let Some(pos) = self.insts.iter().position(|i| i.cfg.name == c.name) {
                let mut i = self.insts.remove(pos);
                // VIPs that left the config go; new ones are added if we are master
                if i.vips_on {
                    for v in i.cfg.vips.iter().filter(|v| !c.vips.contains(v)) {
                        let _ = net::set_vip(vip_dev(&i, v).1, v, false);
                    }
                    for v in c.vips.iter().filter(|v| !i.cfg.vips.contains(v)) {
                        let _ = net::set_vip(vip_dev(&i, v).1, v, true);
                    }
                    replace_net(
                        &i.cfg.virtual_routes,
                        &c.virtual_routes,
                        "virtual route",
                        net::set_route,
                    );
                    replace_net(
                        &i.cfg.virtual_rules,
                        &c.virtual_rules,
                        "virtual rule",
                        net::set_rule,
                    );
                }
                i.router.s.preempt = !c.nopreempt;
                i.router.s.advert_cs = c.advert_cs;
                i.router.s.preempt_delay = Duration::from_secs_f64(c.preempt_delay);
                i.cfg = c.clone();
                i.track_up = c
                    .track_interfaces
                    .iter()
                    .map(|(n, _)| net::link_up(n))
                    .collect();
                self.insts.insert(pos.min(self.insts.len()), i);
            } else if let Some(mut i) = self.open(c, now) {
                let acts = i.router.start(now);
                info!(instance = %c.name, vrid = c.vrid, interface = %c.interface, priority = c.priority, "vrrp instance started");
                self.run_actions(&mut i, acts);
                self.insts.push(i);
            }
        }
        self.start_scripts();
        let index = |m: &String| self.insts.iter().position(|i| &i.cfg.name == m);
        self.groups = vrrp::Groups::new(
            self.cfg
                .sync_groups
                .iter()
                .map(|g| g.members.iter().filter_map(index).collect())
                .collect(),
        );
        let names: Vec<String> = self.insts.iter().map(|i| i.cfg.name.clone()).collect();
        for n in names {
            self.retrack(&n, now);
        }
        self.publish();
    }

    fn publish(&self) {
        if let Ok(mut s) = self.shared.lock() {
            s.0.vrrp = self
                .insts
                .iter()
                .map(|i| opsflow_control::Instance {
                    name: i.cfg.name.clone(),
                    vrid: i.cfg.vrid,
                    interface: i.cfg.interface.clone(),
                    state: status_state(i.router.state),
                    priority: i.cfg.priority,
                    effective_priority: i.router.priority,
                    vips: i.cfg.vips.iter().map(vip_text).collect(),
                    master_address: i.router.master_ip,
                    last_transition: rfc3339(i.last_transition),
                })
                .collect();
        }
    }

    fn send_advert(&self, i: &Inst, priority: u8) {
        let a = Advert {
            version: i.cfg.version,
            vrid: i.cfg.vrid,
            priority,
            interval_cs: i.cfg.advert_cs,
            addrs: i.cfg.vips.iter().map(|v| v.addr).collect(),
        };
        // IPv6 adverts leave from the VMAC's channel; IPv4 ones as whole datagrams through
        // vmac_tx (or the base interface with vmac_xmit_base)
        let chan = match &i.vmac_chan {
            Some((c, _)) if i.cfg.ipv6 => c,
            _ => &i.chan,
        };
        let (sent, err) = chan.send(&a, &i.cfg.auth, i.vmac_tx.as_ref());
        if sent > 0 {
            if let Ok(mut s) = self.shared.lock() {
                s.1.adverts_tx += u64::from(sent);
            }
        }
        if let Some(e) = err {
            debug!(instance = %i.cfg.name, error = %e, "advert not sent");
        }
    }

    fn run_actions(&self, i: &mut Inst, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Advertise(p) => self.send_advert(i, p),
                Action::Became(st) => self.transition(i, st),
            }
        }
    }

    fn transition(&self, i: &mut Inst, st: State) {
        i.last_transition = SystemTime::now();
        self.follow_sync_daemon(&i.cfg.name, Some(st));
        info!(instance = %i.cfg.name, vrid = i.cfg.vrid, state = st.name(), priority = i.router.priority, "state change");
        if let Ok(mut s) = self.shared.lock() {
            s.1.transitions += 1;
        }
        match st {
            State::Master => {
                // the VMAC exists only while MASTER: a backup holding the same MAC would make
                // switches flap it, and macvlan drops frames whose source is one of its own
                // MACs, so the backup would not hear the master's adverts
                if let (Some(name), None) = (i.cfg.use_vmac.clone(), &i.vmac) {
                    match net::create_vmac(&i.cfg.interface, &name, i.cfg.vrid, i.cfg.ipv6) {
                        Ok(idx) => {
                            i.vmac_tx = if i.cfg.vmac_xmit_base || i.cfg.ipv6 {
                                None
                            } else {
                                net::hdrincl_socket(&name)
                                    .map_err(|e| warn!(error = %e, "cannot open the VMAC send socket; adverts go out of the base interface"))
                                    .ok()
                            };
                            // IPv4 adverts leave through vmac_tx; unicast ones reach the
                            // base interface (they are for its address)
                            let multicast = i.cfg.unicast_peers.is_empty();
                            if !i.cfg.vmac_xmit_base && (i.cfg.ipv6 || multicast) {
                                self.open_vmac_chan(i, &name, idx);
                            }
                            i.vmac = Some((name, idx));
                        }
                        Err(e) => {
                            warn!(instance = %i.cfg.name, vmac = %name, error = %e, "cannot create the VMAC interface; VIPs go on the base interface")
                        }
                    }
                }
                for v in i.cfg.vips.iter().chain(&i.cfg.vips_excluded) {
                    let (_, idx) = vip_dev(i, v);
                    if let Err(e) = net::set_vip(idx, v, true) {
                        warn!(instance = %i.cfg.name, vip = %vip_text(v), error = %e, "cannot add the virtual IP");
                    }
                }
                i.vips_on = true;
                set_net(&i.cfg.virtual_routes, true, "virtual route", net::set_route);
                set_net(&i.cfg.virtual_rules, true, "virtual rule", net::set_rule);
                // the notify scripts start once the VIPs are on the interface, as keepalived's,
                // but are queued before the gratuitous ARPs: a client can reach this node only
                // after those, and an operator who sees it serve expects notify_master to have
                // run (queued after them, the script lost that race now and then)
                send_notifies(i, st);
                // announced from the interface each VIP lives on (the VMAC when use_vmac)
                let vips: Vec<(String, IpAddr)> = i
                    .cfg
                    .vips
                    .iter()
                    .map(|v| (vip_dev(i, v).0, v.addr))
                    .collect();
                let (repeat, delay, refresh) = (
                    i.cfg.garp_master_repeat,
                    i.cfg.garp_master_delay,
                    i.cfg.garp_master_refresh,
                );
                if let Some(old) = i.garp.take() {
                    old.abort();
                }
                i.garp = Some(tokio::spawn(async move {
                    // gratuitous ARPs for IPv4, unsolicited neighbour advertisements for IPv6
                    let burst = |vips: &[(String, IpAddr)]| {
                        for (dev, ip) in vips {
                            let _ = match ip {
                                IpAddr::V4(a) => net::garp(dev, *a, repeat),
                                IpAddr::V6(a) => net::unsolicited_na(dev, *a, repeat),
                            };
                        }
                    };
                    burst(&vips);
                    if delay > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                        burst(&vips);
                    }
                    // garp_master_refresh: repeat for as long as we are master (the task is
                    // aborted when we leave MASTER)
                    if refresh > 0.0 {
                        loop {
                            tokio::time::sleep(Duration::from_secs_f64(refresh)).await;
                            burst(&vips);
                        }
                    }
                }));
            }
            State::Backup | State::Fault | State::Init => {
                if let Some(g) = i.garp.take() {
                    g.abort();
                }
                if i.vips_on {
                    set_net(
                        &i.cfg.virtual_routes,
                        false,
                        "virtual route",
                        net::set_route,
                    );
                    set_net(&i.cfg.virtual_rules, false, "virtual rule", net::set_rule);
                }
                for v in i.cfg.vips.iter().chain(&i.cfg.vips_excluded) {
                    let (_, idx) = vip_dev(i, v);
                    let _ = net::set_vip(idx, v, false);
                }
                if let Some((name, _)) = i.vmac.take() {
                    i.vmac_tx = None;
                    close_vmac_chan(i);
                    if let Err(e) = net::delete_link(&name) {
                        warn!(instance = %i.cfg.name, vmac = %name, error = %e, "cannot delete the VMAC interface");
                    }
                }
                i.vips_on = false;
            }
        }
        if st != State::Master {
            // after the VIPs went, as keepalived's
            send_notifies(i, st);
        }
        let n = &i.cfg.notify;
        let word = state_word(st);
        let g = &self.cfg.global;
        if (n.smtp_alert || g.smtp_alert) && st != State::Init && !g.emails.is_empty() {
            if let Some((host, port)) = g.smtp_server.clone() {
                let router_id = g.router_id.clone().unwrap_or_else(|| "ha".into());
                let subject = format!(
                    "[{router_id}] VRRP Instance {} - Entering {word} state",
                    i.cfg.name
                );
                let from = g
                    .email_from
                    .clone()
                    .unwrap_or_else(|| format!("ha@{router_id}"));
                let to = g.emails.clone();
                let timeout = Duration::from_secs(g.smtp_connect_timeout.max(1) as u64);
                let helo = g.smtp_helo.clone().unwrap_or(router_id);
                tokio::spawn(async move {
                    if let Err(e) =
                        crate::smtp::send(&host, port, &helo, &from, &to, &subject, timeout).await
                    {
                        warn!(server = %host, error = %e, "SMTP alert not delivered");
                    }
                });
            }
        }
    }

    /// Starts the event sources for the tracked files and processes (polling stays the
    /// fallback), then looks once: a change before the watch started is not missed.
    fn rewatch(&mut self) {
        self.files_watch = None;
        if !self.cfg.track_files.is_empty() {
            self.files_watch =
                crate::watch::files(self.cfg.track_files.iter().map(|f| f.path.as_str()));
        }
        if self.cfg.track_processes.is_empty() {
            self.procs_watch = None;
        } else if self.procs_watch.is_none() {
            self.procs_watch = crate::watch::processes();
        }
        let now = Instant::now();
        let mut dirty = self.files_dirty();
        dirty.extend(self.procs_dirty(now));
        dirty.sort();
        dirty.dedup();
        for n in dirty {
            self.retrack(&n, now);
        }
    }

    /// Re-reads the tracked files; returns the instances that track one that changed.
    fn files_dirty(&mut self) -> Vec<String> {
        let mut dirty = Vec::new();
        for f in self.read_files() {
            info!(track_file = %f, value = self.files.get(&f).copied().unwrap_or(0), "track file changed");
            dirty.extend(
                self.insts
                    .iter()
                    .filter(|i| i.cfg.track_files.iter().any(|t| t.name == f))
                    .map(|i| i.cfg.name.clone()),
            );
        }
        dirty
    }

    /// Counts the tracked processes; returns the instances that track one that changed.
    fn procs_dirty(&mut self, now: Instant) -> Vec<String> {
        let mut dirty = Vec::new();
        for p in self.scan_processes(now) {
            dirty.extend(
                self.insts
                    .iter()
                    .filter(|i| i.cfg.track_processes.iter().any(|t| t.name == p))
                    .map(|i| i.cfg.name.clone()),
            );
        }
        dirty
    }

    /// Re-reads every tracked file; returns the names whose number changed.
    fn read_files(&mut self) -> Vec<String> {
        let mut changed = Vec::new();
        for f in &self.cfg.track_files {
            let text = std::fs::read_to_string(&f.path).unwrap_or_default();
            let v = vrrp::file_value(&text);
            if self.files.insert(f.name.clone(), v) != Some(v) {
                changed.push(f.name.clone());
            }
        }
        changed
    }

    /// Counts the processes each track_process names; returns the names whose state (after
    /// its delays; none at the first look) changed.
    fn scan_processes(&mut self, now: Instant) -> Vec<String> {
        if self.cfg.track_processes.is_empty() {
            return Vec::new();
        }
        let all = crate::track::processes();
        let mut changed = Vec::new();
        for t in &self.cfg.track_processes {
            let n = all
                .iter()
                .filter(|p| {
                    vrrp::process_matches(
                        p,
                        &t.process,
                        t.params.as_deref(),
                        t.param_match,
                        t.full_command,
                    )
                })
                .count() as u32;
            let seen = (t.quorum..=t.quorum_max).contains(&n);
            let delays = (
                Duration::from_secs_f64(t.delays.0),
                Duration::from_secs_f64(t.delays.1),
            );
            let d = self
                .procs
                .entry(t.name.clone())
                .or_insert_with(|| vrrp::Debounce::new(seen));
            if d.observe(seen, delays, now) {
                info!(track_process = %t.name, processes = n, ok = d.ok, "track process changed");
                changed.push(t.name.clone());
            }
        }
        changed
    }

    /// Recomputes an instance's effective priority and fault state from its tracking.
    fn retrack(&mut self, name: &str, now: Instant) {
        let Some(pos) = self.insts.iter().position(|i| i.cfg.name == name) else {
            return;
        };
        let own = &self.insts[pos];
        let mut items: Vec<(i32, bool)> = vec![(0, own.iface_up || own.cfg.dont_track_primary)];
        {
            let i = &self.insts[pos];
            for (k, (_, w)) in i.cfg.track_interfaces.iter().enumerate() {
                items.push((*w, i.track_up.get(k).copied().unwrap_or(false)));
            }
            for t in &i.cfg.track_scripts {
                let script = self.cfg.scripts.iter().find(|s| s.name == t.name);
                let w = t
                    .weight
                    .or(script.map(|s| if s.reverse { -s.weight } else { s.weight }))
                    .unwrap_or(0);
                items.push((w, self.scripts.get(&t.name).copied().unwrap_or(true)));
            }
            for t in &i.cfg.track_files {
                let Some(f) = self.cfg.track_files.iter().find(|f| f.name == t.name) else {
                    continue;
                };
                let v = self.files.get(&t.name).copied().unwrap_or(0);
                let w = t.weight.unwrap_or(f.weight);
                items.push(match vrrp::file_delta(v, w, t.reverse || f.reverse) {
                    None => (0, false),
                    Some(d) => (d, d >= 0),
                });
            }
            for t in &i.cfg.track_processes {
                let Some(p) = self.cfg.track_processes.iter().find(|p| p.name == t.name) else {
                    continue;
                };
                let w = t.weight.unwrap_or(p.weight);
                let w = if t.reverse || p.reverse { -w } else { w };
                items.push((w, self.procs.get(&t.name).is_none_or(|d| d.ok)));
            }
        }
        let base = self.insts[pos].cfg.priority;
        let eff = vrrp::effective_priority(base, &items);
        let mut rs: Vec<&mut Router> = self.insts.iter_mut().map(|i| &mut i.router).collect();
        let acts = self
            .groups
            .track(&mut rs, pos, eff.is_none(), eff.unwrap_or(base), now);
        self.exec(acts);
    }

    /// Executes the core's decisions, each on the instance it names.
    fn exec(&mut self, acts: vrrp::Acts) {
        let mut insts = std::mem::take(&mut self.insts);
        for (idx, a) in acts {
            if let Some(i) = insts.get_mut(idx) {
                self.run_actions(i, vec![a]);
            }
        }
        self.insts = insts;
    }

    /// `lvs_sync_daemon`: the IPVS sync daemon follows its instance's state, as keepalived's
    /// (MASTER: the master daemon; BACKUP, FAULT: the backup daemon; stopping: none).
    fn follow_sync_daemon(&self, instance: &str, st: Option<State>) {
        if let Some(s) = self.cfg.global.ipvs.lvs_sync_daemon.as_ref() {
            if s.instance == instance {
                let master = match st {
                    Some(State::Master) => Some(true),
                    Some(State::Init) | None => None,
                    Some(_) => Some(false),
                };
                crate::lvs::ipvs::sync_daemon(s, master);
            }
        }
    }

    /// After a reload that changed `lvs_sync_daemon`: the old daemons stop, the new ones
    /// start for their instance's present state.
    fn resync_daemon(&self, old: Option<crate::conf::ipvs::SyncDaemon>) {
        let new = self.cfg.global.ipvs.lvs_sync_daemon.as_ref();
        // where the line is does not matter
        let bare = |s: Option<&crate::conf::ipvs::SyncDaemon>| {
            s.map(|s| crate::conf::ipvs::SyncDaemon {
                pos: None,
                ..s.clone()
            })
        };
        if bare(old.as_ref()) == bare(new) {
            return;
        }
        if let Some(o) = &old {
            crate::lvs::ipvs::sync_daemon(o, None);
        }
        if let Some(n) = new {
            let st = self
                .insts
                .iter()
                .find(|i| i.cfg.name == n.instance)
                .map(|i| i.router.state);
            self.follow_sync_daemon(&n.instance, st.or(Some(State::Backup)));
        }
    }

    /// Runs until SIGTERM. SIGHUP reloads (sd_notify RELOADING, then READY).
    pub async fn run(mut self) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        self.rewatch();
        info!(instances = self.insts.len(), "ha ready");
        loop {
            let deadline = self.insts.iter().filter_map(|i| i.router.deadline()).min();
            // tokio's timer wheel rounds up to whole milliseconds; VRRP takeover is measured
            // against the protocol's exact intervals, so the last millisecond is slept
            // precisely (the loop is blocked for at most about a millisecond)
            let sleep = async {
                match deadline {
                    Some(d) => {
                        let coarse = d.checked_sub(Duration::from_millis(1)).unwrap_or(d);
                        if coarse > Instant::now() {
                            tokio::time::sleep_until(tokio::time::Instant::from_std(coarse)).await;
                        }
                        let now = Instant::now();
                        if d > now {
                            std::thread::sleep(d - now);
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let files_changed = self.files_watch.as_ref().map(|w| w.changed.clone());
            let procs_changed = self.procs_watch.as_ref().map(|w| w.changed.clone());
            tokio::select! {
                ev = self.rx.recv() => {
                    let now = Instant::now();
                    match ev {
                        Some(Event::Advert { inst, from, advert }) => {
                            if let Ok(mut s) = self.shared.lock() { s.1.adverts_rx += 1; }
                            if let Some(pos) = self.insts.iter().position(|i| i.cfg.name == inst) {
                                let mut rs: Vec<&mut Router> = self.insts.iter_mut().map(|i| &mut i.router).collect();
                                let acts = self.groups.on_advert(&mut rs, pos, from, &advert, now);
                                self.exec(acts);
                            }
                        }
                        Some(Event::Rejected(reason)) => {
                            if let Ok(mut s) = self.shared.lock() { *s.1.dropped.entry(reason).or_default() += 1; }
                        }
                        Some(Event::Script { name, ok }) => {
                            info!(script = %name, ok, "track script changed");
                            self.scripts.insert(name.clone(), ok);
                            let users: Vec<String> = self.insts.iter().filter(|i| i.cfg.track_scripts.iter().any(|t| t.name == name)).map(|i| i.cfg.name.clone()).collect();
                            for u in users { self.retrack(&u, now); }
                        }
                        None => break,
                    }
                    self.publish();
                }
                _ = sleep => {
                    let now = Instant::now();
                    let mut rs: Vec<&mut Router> = self.insts.iter_mut().map(|i| &mut i.router).collect();
                    let acts = self.groups.on_timer(&mut rs, now);
                    self.exec(acts);
                    self.publish();
                }
                _ = poll.tick() => {
                    let now = Instant::now();
                    let mut dirty = Vec::new();
                    for i in self.insts.iter_mut() {
                        let up = net::link_up(&i.cfg.interface);
                        let tracks: Vec<bool> = i.cfg.track_interfaces.iter().map(|(n, _)| net::link_up(n)).collect();
                        if up != i.iface_up || tracks != i.track_up {
                            info!(instance = %i.cfg.name, interface_up = up, "link state changed");
                            i.iface_up = up;
                            i.track_up = tracks;
                            dirty.push(i.cfg.name.clone());
                        }
                    }
                    // without an event source, poll; with one, only delays still running need a look
                    if self.files_watch.is_none() {
                        dirty.extend(self.files_dirty());
                    }
                    if self.procs_watch.is_none() || self.procs.values().any(vrrp::Debounce::pending) {
                        dirty.extend(self.procs_dirty(now));
                    }
                    dirty.sort();
                    dirty.dedup();
                    for n in dirty { self.retrack(&n, now); }
                    self.publish();
                }
                _ = crate::watch::changed(files_changed) => {
                    let now = Instant::now();
                    for n in self.files_dirty() { self.retrack(&n, now); }
                    self.publish();
                }
                _ = crate::watch::changed(procs_changed) => {
                    let now = Instant::now();
                    for n in self.procs_dirty(now) { self.retrack(&n, now); }
                    self.publish();
                }
                _ = hup.recv() => {
                    opsflow_common::notify::reloading();
                    match conf::load(&self.config_path, &self.config_id) {
                        Ok(cfg) => {
                            for w in &cfg.warnings { warn!("{w}"); }
                            match &self.lvs {
                                Some(l) => l.reload(cfg.lvs.clone()),
                                None if !cfg.lvs.is_empty() => warn!("virtual servers added by a reload need a restart of ha"),
                                None => {}
                            }
                            let old_syncd = self.cfg.global.ipvs.lvs_sync_daemon.clone();
                            self.apply_config(cfg, Instant::now());
                            self.resync_daemon(old_syncd);
                            self.rewatch();
                            info!("configuration reloaded");
                        }
                        Err(diags) => {
                            for d in diags.iter().filter(|d| !d.warning) { error!("{d}"); }
                            error!("reload refused: the configuration has errors; the old one stays in force");
                        }
                    }
                    opsflow_common::notify::ready("configuration reloaded or kept");
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        opsflow_common::notify::stopping();
        info!("shutting down: masters hand over with priority 0 and remove their VIPs");
        for idx in 0..self.insts.len() {
            let mut i = self.insts.remove(idx);
            let acts = i.router.shutdown();
            self.run_actions(&mut i, acts);
            self.insts.insert(idx, i);
        }
        for i in &mut self.insts {
            close_vmac_chan(i);
            if let Some((name, _)) = &i.vmac {
                let _ = net::delete_link(name);
            }
        }
        for v in &self.cfg.static_addresses {
            if let Some(idx) = v.dev.as_deref().and_then(net::ifindex) {
                let _ = net::set_vip(idx, v, false);
            }
        }
        set_net(
            &self.cfg.static_routes,
            false,
            "static route",
            net::set_route,
        );
        set_net(&self.cfg.static_rules, false, "static rule", net::set_rule);
        if let Some(l) = &self.lvs {
            l.shutdown().await;
        }
        // let queued notify scripts (notify_stop) start
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

/// Adds or removes routes or rules (`what` names them in the log); one the kernel refuses is
/// logged and the others still go.
fn set_net<T: std::fmt::Display>(
    items: &[T],
    add: bool,
    what: &str,
    set: fn(&T, bool) -> std::io::Result<()>,
) {
    for r in items {
        if let Err(e) = set(r, add) {
            let verb = if add { "add" } else { "remove" };
            warn!(item = %r, error = %e, "cannot {verb} the {what}");
        }
    }
}

/// On reload: removes what `old` has and `new` lacks, then adds all of `new`.
fn replace_net<T: std::fmt::Display + PartialEq>(
    old: &[T],
    new: &[T],
    what: &str,
    set: fn(&T, bool) -> std::io::Result<()>,
) {
    for r in old.iter().filter(|r| !new.contains(r)) {
        set_net(std::slice::from_ref(r), false, what, set);
    }
    set_net(new, true, what, set);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
    }
}
