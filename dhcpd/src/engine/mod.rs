//! The DHCP protocol core: a request and the time in, a decision out. No IO.
//!
//! Allocation state lives in memory (`leases`, `offers`, per-range cursors); the caller
//! persists the leases an [`Action::Commit`] names before it sends the reply.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, ToSocketAddrs};

use tracing::warn;

use crate::conf::options::Chunk;
use crate::conf::{Access, Addr, Config, Event, Params, ScopeId};
use crate::leases::{Lease, State};
use crate::wire::*;

mod dns;
mod fqdn;
mod offers;
mod reply;
mod script;
use offers::Offers;
pub use script::perform;

/// How long an offered address is held for the client it was offered to.
pub const OFFER_HOLD: u64 = 60;

/// The interface a request arrived on.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// Where a reply goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The relay at giaddr, port 67.
    Relay(Ipv4Addr),
    /// A client that has an address, port 68.
    Unicast(Ipv4Addr),
    /// 255.255.255.255:68 on the interface.
    Broadcast,
    /// The new address at the link layer (the client has no address yet and did not ask for
    /// broadcast): an ARP entry is made for it, then a unicast is sent.
    Link { ip: Ipv4Addr, mac: [u8; 6] },
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub dest: Dest,
    pub kind: MsgType,
    /// A BOOTREPLY to a BOOTP client (no DHCP message type; `kind` is then Ack).
    pub bootp: bool,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Action {
    Send(Reply),
    /// Make these leases durable, then send the reply (if any).
    Commit {
        leases: Vec<Lease>,
        reply: Option<Reply>,
    },
    Drop(&'static str),
    /// `ping-check`: send an ICMP echo to `ip` and wait `timeout` seconds, then report with
    /// [`Engine::probe_silent`] or [`Engine::probe_answered`] and handle the request again.
    /// The address is held for the client meanwhile.
    Probe {
        ip: Ipv4Addr,
        timeout: u32,
        abandon: u32,
    },
}

/// A client's identity: 0xff + client identifier, or hardware type + address.
pub type Key = Vec<u8>;

fn client_key(msg: &Msg) -> Key {
    match msg.option(OPT_CLIENT_ID) {
        Some(id) if !id.is_empty() => {
            let mut k = vec![0xff];
            k.extend_from_slice(id);
            k
        }
        _ => {
            let mut k = vec![msg.htype];
            k.extend_from_slice(msg.hw());
            k
        }
    }
}

pub fn lease_key(l: &Lease) -> Option<Key> {
    if let Some(id) = &l.client_id {
        let mut k = vec![0xff];
        k.extend_from_slice(id);
        return Some(k);
    }
    l.mac.map(|m| {
        let mut k = vec![1];
        k.extend_from_slice(&m);
        k
    })
}

/// FNV-1a: a stable hash (the same in every server process, unlike std's).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Clone)]
struct View<'a> {
    msg: &'a Msg,
    raw: &'a [u8],
    /// The name of the host declaration that matched, if one did.
    host: Option<String>,
    /// Relay agent information kept with the client's lease (`stash-agent-options`).
    stashed: Option<Vec<u8>>,
    /// The address being leased, in `on` blocks.
    leased: Option<Ipv4Addr>,
}

/// Everything known about one client for one request.
struct Client<'a> {
    key: Key,
    host: Option<usize>,
    classes: Vec<usize>,
    /// Scopes of the subclasses matched.
    subclasses: Vec<ScopeId>,
    /// Classes with a `lease limit` the client's leases count against.
    billed: Vec<script::Billing>,
    view: View<'a>,
}

pub struct Engine {
    pub cfg: Config,
    /// Host names in the config (ip-address options, fixed-address, next-server), resolved.
    resolved: HashMap<String, Ipv4Addr>,
    fixed: Vec<Vec<Ipv4Addr>>,
    fixed_set: HashSet<Ipv4Addr>,
    server_ids: HashSet<Ipv4Addr>,
    pub leases: HashMap<Ipv4Addr, Lease>,
    /// The address whose lease record carries a client's key: an index of `leases`, so
    /// never larger than it (an entry goes when its lease is released, declined or given
    /// to another client), as ISC keeps the uid on the lease record.
    by_client: HashMap<Key, Ipv4Addr>,
    offers: Offers,
    /// Addresses whose ICMP probe went unanswered, and until when that holds (bounded by the
    /// pool: only addresses chosen for an offer are probed).
    probed: HashMap<Ipv4Addr, u64>,
    cursors: HashMap<(usize, usize), u32>,
    exhausted_warned: HashMap<usize, u64>,
    last_sweep: u64,
    /// DNS names of leases (`ddns-update-style`), removed on release.
    ddns_names: HashMap<Ipv4Addr, crate::ddns::Names>,
    ddns_jobs: Vec<crate::ddns::Job>,
    /// `on expiry` blocks of active leases (an entry goes when its lease ends).
    on_expiry: HashMap<Ipv4Addr, script::Kept>,
    /// The class each lease of a limited class is billed to (an entry per such lease).
    billing: HashMap<Ipv4Addr, Vec<script::Billing>>,
    /// Leases are in a store shared with other servers (`lease-database`), which is the
    /// arbiter: a REQUEST that selects another server holds the address for its client here.
    pub shared: bool,
}

fn collect_names(cfg: &Config) -> Vec<String> {
    fn stmts(v: &[crate::conf::Stmt], out: &mut Vec<String>) {
        for s in v {
            match s {
                crate::conf::Stmt::Option { value, .. } => {
                    out.extend(value.iter().filter_map(|c| match c {
                        Chunk::Host(h) => Some(h.clone()),
                        _ => None,
                    }))
                }
                crate::conf::Stmt::Param(crate::conf::Param::NextServer(Addr::Name(n))) => {
                    out.push(n.clone())
                }
                crate::conf::Stmt::If {
                    branches,
                    otherwise,
                } => {
                    for (_, b) in branches {
                        stmts(b, out);
                    }
                    stmts(otherwise, out);
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for s in &cfg.scopes {
        stmts(&s.stmts, &mut out);
    }
    for h in &cfg.hosts {
        out.extend(h.fixed.iter().filter_map(|a| match a {
            Addr::Name(n) => Some(n.clone()),
            _ => None,
        }));
    }
    out.sort();
    out.dedup();
    out
}

/// Resolves a host name to its first IPv4 address.
pub fn resolve(name: &str) -> Option<Ipv4Addr> {
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
}

/// How many leases the ranges can hold, at most [`MAX_ROOM`]: the lease tables are made that
/// large at the start (ISC dhcpd allocates a lease per range address). Grown on demand
/// instead, a table doubles under load: at 28,672 leases the rehash and the first touch of
/// the new table's pages held the engine long enough (judging by the 100-150 replies perfdhcp
/// dropped at 10,000 DORA/s, about 10 ms) that the requests gathered meanwhile, answered in
/// one burst, overflowed the client's socket buffer (a relay's, perfdhcp's).
fn pool_room(cfg: &Config) -> usize {
    let n: u64 = cfg
        .subnets
        .iter()
        .flat_map(|s| &s.ranges)
        .map(|r| u64::from(u32::from(r.end).saturating_sub(u32::from(r.start))) + 1)
        .sum();
    n.min(MAX_ROOM as u64) as usize
}

/// 262,144 leases: ~40 MiB of tables (a lease is 152 bytes); larger pools grow from there.
const MAX_ROOM: usize = 1 << 18;

/// Remakes a map with the same room, touched: a new table is filled to its capacity with
/// placeholders (`key(0)`, `key(1)`, ..., which must differ), emptied with `clear` (which
/// leaves no tombstones, unlike `remove`: they would eat the room), and given the map's
/// entries. The table's memory, and the allocator's pages for the placeholders' own
/// allocations, are touched now. See [`Engine::prefault`].
fn prefault<K: Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    key: impl Fn(u32) -> K,
    value: impl Fn(u32) -> V,
) {
    let mut fresh = HashMap::with_capacity(map.capacity());
    let room = u32::try_from(fresh.capacity()).unwrap_or(u32::MAX);
    fresh.extend((0..room).map(|i| (key(i), value(i))));
    fresh.clear();
    fresh.extend(map.drain());
    *map = fresh;
}

/// Resolves the host names a config uses (each failure is a warning and the value that uses
/// it is left out). This may block on DNS: call it before taking the engine's lock.
pub fn resolve_names(cfg: &Config) -> HashMap<String, Ipv4Addr> {
    let mut resolved = HashMap::new();
    for n in collect_names(cfg) {
        match resolve(&n) {
            Some(ip) => {
                resolved.insert(n, ip);
            }
            None => {
                warn!(name = %n, "cannot resolve this host name from dhcpd.conf; the value that uses it is left out")
            }
        }
    }
    resolved
}

impl Engine {
    /// Builds the engine: resolves host names in the config (see [`resolve_names`]), indexes
    /// the leases read from the journal.
    pub fn new(cfg: Config, leases: HashMap<Ipv4Addr, Lease>, ifaces: &[Iface]) -> Engine {
        let resolved = resolve_names(&cfg);
        Engine::with_names(cfg, resolved, leases, ifaces)
    }

    /// Touches the memory of the lease tables, made at start with room for every range
    /// address. Call it once, before serving. Left to the first requests, the page faults
    /// (expensive under virtualisation) slowed the first ~30 ms of a burst of new clients so
    /// much that the requests queued, and their replies then went out in a burst that
    /// overflowed the client's socket buffer (a relay's, perfdhcp's): 20-400 replies lost at
    /// the start of a 6,000 DORA/s run on this project's VM, none once touched.
    pub fn prefault(&mut self) {
        prefault(&mut self.leases, Ipv4Addr::from, |i| {
            Lease::bare(Ipv4Addr::from(i))
        });
        prefault(
            &mut self.by_client,
            |i| i.to_be_bytes().to_vec(),
            Ipv4Addr::from,
        );
    }

    /// Builds the engine from a config whose host names are already resolved: no IO.
    pub fn with_names(
        cfg: Config,
        resolved: HashMap<String, Ipv4Addr>,
        leases: HashMap<Ipv4Addr, Lease>,
        ifaces: &[Iface],
    ) -> Engine {
        let fixed: Vec<Vec<Ipv4Addr>> = cfg
            .hosts
            .iter()
            .map(|h| {
                h.fixed
                    .iter()
                    .filter_map(|a| match a {
                        Addr::Ip(ip) => Some(*ip),
                        Addr::Name(n) => resolved.get(n).copied(),
                    })
                    .collect()
            })
            .collect();
        let fixed_set = fixed.iter().flatten().copied().collect();
        let mut server_ids: HashSet<Ipv4Addr> = ifaces.iter().map(|i| i.addr).collect();
        for s in &cfg.scopes {
            for st in &s.stmts {
                if let crate::conf::Stmt::Param(crate::conf::Param::ServerIdentifier(a)) = st {
                    server_ids.insert(*a);
                }
            }
        }
        let mut leases = leases;
        let room = pool_room(&cfg);
        leases.reserve(room.saturating_sub(leases.len()));
        let mut by_client: HashMap<Key, Ipv4Addr> = HashMap::with_capacity(room);
        by_client.extend(
            leases
                .values()
                .filter(|l| matches!(l.state, State::Active | State::Free))
                .filter_map(|l| lease_key(l).map(|k| (k, l.ip))),
        );
        let mut e = Engine {
            cfg,
            resolved,
            fixed,
            fixed_set,
            server_ids,
            leases,
            by_client,
            offers: Offers::default(),
            probed: HashMap::new(),
            cursors: HashMap::new(),
            exhausted_warned: HashMap::new(),
            last_sweep: 0,
            ddns_names: HashMap::new(),
            ddns_jobs: Vec::new(),
            on_expiry: HashMap::new(),
            billing: HashMap::new(),
            shared: false,
        };
        e.ddns_restore();
        e.expiry_restore();
        e
    }

    fn locate(&self, msg: &Msg, iface: &Iface) -> Option<usize> {
        let find = |a: Ipv4Addr| self.cfg.subnets.iter().position(|s| s.contains(a));
        if let Some(sel) = msg.option_ip(OPT_SUBNET_SELECTION) {
            return find(sel);
        }
        if !msg.giaddr.is_unspecified() {
            return find(msg.giaddr);
        }
        if !msg.ciaddr.is_unspecified() {
            if let Some(s) = find(msg.ciaddr) {
                return Some(s);
            }
        }
        find(iface.addr)
    }

    fn client<'a>(&self, msg: &'a Msg, raw: &'a [u8]) -> Client<'a> {
        let key = client_key(msg);
        let id = msg.option(OPT_CLIENT_ID);
        let mac = msg.mac();
        let host = self.cfg.hosts.iter().position(|h| {
            (id.is_some() && h.client_id.as_deref() == id) || (mac.is_some() && h.hw == mac)
        });
        let stashed = match msg.option(OPT_RELAY_AGENT) {
            Some(_) => None,
            None => self
                .by_client
                .get(&key)
                .and_then(|ip| self.leases.get(ip))
                .and_then(|l| l.agent.clone()),
        };
        let view = View {
            msg,
            raw,
            host: host.map(|h| self.cfg.hosts[h].name.clone()),
            stashed,
            leased: None,
        };
        let (classes, subclasses, billed) = self.classes(&view);
        Client {
            key,
            host,
            classes,
            subclasses,
            billed,
            view,
        }
    }

    fn pool_ok(&self, pool: Option<usize>, c: &Client) -> bool {
        let Some(pl) = pool else { return true };
        let p = &self.cfg.pools[pl];
        let hit = |a: &Access| match a {
            Access::Members(cl) => c.classes.contains(cl),
            Access::Known => c.host.is_some(),
            Access::Unknown => c.host.is_none(),
            Access::DynamicBootp => c.host.is_none() && c.view.msg.msg_type().is_none(),
            Access::All => true,
        };
        if p.deny.iter().any(hit) {
            return false;
        }
        p.allow.is_empty() || p.allow.iter().any(hit)
    }

    /// The dynamic range (subnet, pool) an address belongs to, if the client may use it.
    fn in_range(
        &self,
        ip: Ipv4Addr,
        segment: &[usize],
        c: &Client,
    ) -> Option<(usize, Option<usize>)> {
        let v = u32::from(ip);
        for &s in segment {
            for r in &self.cfg.subnets[s].ranges {
                if u32::from(r.start) <= v && v <= u32::from(r.end) && self.pool_ok(r.pool, c) {
                    return Some((s, r.pool));
                }
            }
        }
        None
    }

    fn fixed_for(&self, c: &Client, segment: &[usize]) -> Option<(Ipv4Addr, usize)> {
        let h = c.host?;
        self.fixed[h].iter().find_map(|ip| {
            segment
                .iter()
                .find(|&&s| self.cfg.subnets[s].contains(*ip))
                .map(|&s| (*ip, s))
        })
    }

    /// Whether `ip` may be given to the client with `key`.
    fn available(&self, ip: Ipv4Addr, key: &Key, now: u64) -> bool {
        if self.server_ids.contains(&ip) || self.fixed_set.contains(&ip) {
            return false;
        }
        if let Some(l) = self.leases.get(&ip) {
            if l.holds(now) && (l.state == State::Abandoned || lease_key(l).as_ref() != Some(key)) {
                return false;
            }
        }
        if let Some((k, until)) = self.offers.get(&ip) {
            if *until > now && k != key {
                return false;
            }
        }
        true
    }

    fn scan(
        &mut self,
        segment: &[usize],
        c: &Client,
        now: u64,
        fresh_only: bool,
    ) -> Option<(Ipv4Addr, usize, Option<usize>)> {
        for &s in segment {
            for ri in 0..self.cfg.subnets[s].ranges.len() {
                let r = &self.cfg.subnets[s].ranges[ri];
                if !self.pool_ok(r.pool, c) {
                    continue;
                }
                let (start, pool) = (u32::from(r.start), r.pool);
                let size = u32::from(r.end) - start + 1;
                // on a shared store every server receives the same DISCOVERs, maybe in another
                // order: each starts the client's search at the same place (its key's hash)
                // and so offers it the same address as the others, whatever came before
                let cur = if self.shared {
                    (fnv1a(&c.key) % u64::from(size)) as u32
                } else {
                    *self.cursors.get(&(s, ri)).unwrap_or(&0)
                };
                for i in 0..size {
                    let off = (cur + i) % size;
                    let ip = Ipv4Addr::from(start + off);
                    if fresh_only && self.leases.contains_key(&ip) {
                        continue;
                    }
                    if self.available(ip, &c.key, now) {
                        self.cursors.insert((s, ri), (off + 1) % size);
                        return Some((ip, s, pool));
                    }
                }
            }
        }
        None
    }

    /// Chooses the address for a DISCOVER: reservation, this client's lease, the requested
    /// address, a never-used address, then the oldest free one.
    fn choose(
        &mut self,
        msg: &Msg,
        c: &Client,
        segment: &[usize],
        now: u64,
    ) -> Option<(Ipv4Addr, usize, Option<usize>)> {
        if let Some((ip, s)) = self.fixed_for(c, segment) {
            return Some((ip, s, None));
        }
        if let Some(&ip) = self.by_client.get(&c.key) {
            if let Some((s, pool)) = self.in_range(ip, segment, c) {
                if self.available(ip, &c.key, now) {
                    return Some((ip, s, pool));
                }
            }
        }
        if let Some(ip) = self.offers.of(&c.key, now) {
            if let Some((s, pool)) = self.in_range(ip, segment, c) {
                if self.available(ip, &c.key, now) {
                    return Some((ip, s, pool));
                }
            }
        }
        if let Some(req) = msg.option_ip(OPT_REQUESTED_IP) {
            if let Some((s, pool)) = self.in_range(req, segment, c) {
                if self.available(req, &c.key, now) {
                    return Some((req, s, pool));
                }
            }
        }
        if let Some(x) = self.scan(segment, c, now, true) {
            return Some(x);
        }
        // reuse released and expired addresses, the longest-free first
        let mut best: Option<(u64, Ipv4Addr, usize, Option<usize>)> = None;
        for &s in segment {
            for r in &self.cfg.subnets[s].ranges {
                if !self.pool_ok(r.pool, c) {
                    continue;
                }
                for v in u32::from(r.start)..=u32::from(r.end) {
                    let ip = Ipv4Addr::from(v);
                    if let Some(l) = self.leases.get(&ip) {
                        if self.available(ip, &c.key, now) && best.is_none_or(|b| l.ends < b.0) {
                            best = Some((l.ends, ip, s, r.pool));
                        }
                    }
                }
            }
        }
        best.map(|(_, ip, s, p)| (ip, s, p))
    }

    /// Takes a lease record from the shared lease store (written by this or another server):
    /// it replaces ours for its address, and an offer of that address to another client,
    /// now that the address is held, goes.
    pub fn adopt(&mut self, l: Lease, now: u64) {
        let ip = l.ip;
        self.unindex(ip);
        let key = lease_key(&l);
        if let Some(k) = &key {
            if matches!(l.state, State::Active | State::Free) {
                self.by_client.insert(k.clone(), ip);
            }
        }
        if l.holds(now)
            && self
                .offers
                .get(&ip)
                .is_some_and(|(k, _)| Some(k) != key.as_ref())
        {
            self.offers.remove(ip);
        }
        self.leases.insert(ip, l);
    }

    /// The lease record at `ip` is about to be replaced: its client's index entry goes.
    fn unindex(&mut self, ip: Ipv4Addr) {
        if let Some(prev) = self.leases.get(&ip).and_then(lease_key) {
            if self.by_client.get(&prev) == Some(&ip) {
                self.by_client.remove(&prev);
            }
        }
    }

    fn grant(&mut self, c: &Client, ip: Ipv4Addr, lt: u32, msg: &Msg, now: u64) -> Lease {
        if let Some(old) = self.by_client.get(&c.key).copied() {
            if old != ip {
                // one lease per client: the old address goes back to the pool
                if let Some(l) = self.leases.get_mut(&old) {
                    if lease_key(l).as_ref() == Some(&c.key) && l.state == State::Active {
                        l.state = State::Free;
                        l.ends = now;
                    }
                }
            }
        }
        self.unindex(ip);
        let lease = Lease {
            ip,
            mac: msg.mac(),
            client_id: msg.option(OPT_CLIENT_ID).map(<[u8]>::to_vec),
            hostname: msg
                .option(OPT_HOST_NAME)
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .or_else(|| self.leases.get(&ip).and_then(|l| l.hostname.clone())),
            agent: None, // set by the caller, which knows stash-agent-options
            vars: Vec::new(),
            on_expiry: None,
            starts: now,
            ends: now + lt as u64,
            state: State::Active,
        };
        self.leases.insert(ip, lease.clone());
        self.by_client.insert(c.key.clone(), ip);
        self.offers.remove(ip);
        lease
    }

    /// Whether `ip` is probed before it is offered to `key`: a dynamic address that is not
    /// this client's live lease and was not probed lately (ISC: never used or expired).
    fn needs_probe(&self, ip: Ipv4Addr, key: &Key, now: u64) -> bool {
        if self.fixed_set.contains(&ip) || self.probed.get(&ip).is_some_and(|t| *t > now) {
            return false;
        }
        !self.leases.get(&ip).is_some_and(|l| {
            l.state == State::Active && l.ends > now && lease_key(l).as_ref() == Some(key)
        })
    }

    /// Nothing answered the probe of `ip`: it may be offered now.
    pub fn probe_silent(&mut self, ip: Ipv4Addr, now: u64) {
        self.probed.insert(ip, now + OFFER_HOLD);
    }

    /// Something answered the probe of `ip`: the address is in use by a machine we did not
    /// give it to. It is abandoned for `abandon` seconds (ISC's abandon-lease-time) and never
    /// offered meanwhile; the returned lease is for the journal.
    pub fn probe_answered(&mut self, ip: Ipv4Addr, abandon: u32, now: u64) -> Lease {
        warn!(%ip, "address answers ICMP echo before an offer (in use by another machine?): abandoned");
        self.abandon(ip, abandon, now)
    }

    /// Marks `ip` abandoned for `secs`: no client's, no offer, not offered meanwhile.
    fn abandon(&mut self, ip: Ipv4Addr, secs: u32, now: u64) -> Lease {
        let lease = Lease {
            starts: now,
            ends: now + secs as u64,
            state: State::Abandoned,
            ..Lease::bare(ip)
        };
        self.unindex(ip);
        self.leases.insert(ip, lease.clone());
        self.offers.remove(ip);
        self.probed.remove(&ip);
        lease
    }

    /// The address for a BOOTP client without a fixed address, from a `range dynamic-bootp`
    /// (ISC: other ranges serve DHCP clients only): its own lease there, else a never-used
    /// address, else the longest-free one.
    fn bootp_choose(
        &self,
        c: &Client,
        segment: &[usize],
        now: u64,
    ) -> Option<(Ipv4Addr, usize, Option<usize>)> {
        let ranges = || {
            segment.iter().flat_map(move |&s| {
                self.cfg.subnets[s]
                    .ranges
                    .iter()
                    .filter(|r| r.dynamic_bootp && self.pool_ok(r.pool, c))
                    .map(move |r| (s, r))
            })
        };
        if let Some(&ip) = self.by_client.get(&c.key) {
            let v = u32::from(ip);
            if let Some((s, r)) =
                ranges().find(|(_, r)| u32::from(r.start) <= v && v <= u32::from(r.end))
            {
                if self.available(ip, &c.key, now) {
                    return Some((ip, s, r.pool));
                }
            }
        }
        let mut best: Option<(u64, Ipv4Addr, usize, Option<usize>)> = None;
        for (s, r) in ranges() {
            for v in u32::from(r.start)..=u32::from(r.end) {
                let ip = Ipv4Addr::from(v);
                if !self.available(ip, &c.key, now) {
                    continue;
                }
                let ends = self.leases.get(&ip).map_or(0, |l| l.ends.saturating_add(1));
                if ends == 0 {
                    return Some((ip, s, r.pool));
                }
                if best.is_none_or(|b| ends < b.0) {
                    best = Some((ends, ip, s, r.pool));
                }
            }
        }
        best.map(|(_, ip, s, p)| (ip, s, p))
    }

    /// A BOOTP request (RFC 951, no DHCP message type), unless `deny bootp` applies: a
    /// BOOTREPLY with the host's fixed address or, for a client without one, an address
    /// from a `range dynamic-bootp` leased until `dynamic-bootp-lease-cutoff`, else until
    /// `dynamic-bootp-lease-length` is over, else forever (ISC's `ends never;`); with the boot file, next-server and the options
    /// (RFC 1497) but none of DHCP's (53, 54, lease times).
    fn bootp(&mut self, msg: &Msg, raw: &[u8], iface: &Iface, now: u64) -> Action {
        let c = self.client(msg, raw);
        let Some(subnet) = self.locate(msg, iface) else {
            return Action::Drop("no_subnet_for_client");
        };
        let segment = self.cfg.segment(subnet);
        let (ip, s, pool, dynamic) = match self.fixed_for(&c, &segment) {
            Some((ip, s)) => (ip, s, None, false),
            None => {
                let base = self.params(subnet, None, &c);
                if !base.bootp {
                    return Action::Drop("bootp_denied");
                }
                if !base.unknown_clients && c.host.is_none() {
                    return Action::Drop("unknown_client");
                }
                match self.bootp_choose(&c, &segment, now) {
                    Some((ip, s, pool)) => (ip, s, pool, true),
                    None => return Action::Drop("bootp_without_address"),
                }
            }
        };
        let p = self.params(s, pool, &c);
        if !p.bootp {
            return Action::Drop("bootp_denied");
        }
        let sid = self.sid(&p, iface);
        let mut m = self.build(msg, MsgType::Ack, ip, s, &p, sid, None);
        m.options
            .retain(|(code, _)| !matches!(*code, OPT_MSG_TYPE | OPT_SERVER_ID));
        let reply = Reply {
            bytes: m.encode(Engine::max_len(msg)),
            dest: Engine::dest(msg, MsgType::Ack, ip, &p),
            kind: MsgType::Ack,
            bootp: true,
        };
        if !dynamic {
            return Action::Send(reply);
        }
        let mut lease = self.grant(&c, ip, 0, msg, now);
        // as ISC: the cutoff, else the length, else never
        lease.ends = match (p.bootp_lease_cutoff, p.bootp_lease_length) {
            (Some(at), _) => at,
            (None, Some(len)) => now + u64::from(len),
            (None, None) => crate::leases::NEVER,
        };
        self.leases.insert(ip, lease.clone());
        Action::Commit {
            leases: vec![lease],
            reply: Some(reply),
        }
    }

    /// Handles one request.
    pub fn handle(&mut self, msg: &Msg, raw: &[u8], iface: &Iface, now: u64) -> Action {
        let Some(kind) = msg.msg_type() else {
            return self.bootp(msg, raw, iface, now);
        };
        let c = self.client(msg, raw);
        let Some(subnet) = self.locate(msg, iface) else {
            return Action::Drop("no_subnet_for_client");
        };
        let segment = self.cfg.segment(subnet);
        let base = self.params(subnet, None, &c);
        if !base.unknown_clients && c.host.is_none() {
            return Action::Drop("unknown_client");
        }
        match kind {
            MsgType::Discover => {
                // expired offers are ignored where they are looked up; sweep them once a
                // second, not on every packet (a sweep is O(offers))
                if now > self.last_sweep {
                    self.offers.sweep(now);
                    self.probed.retain(|_, until| *until > now);
                    self.last_sweep = now;
                }
                let Some((ip, s, pool)) = self.choose(msg, &c, &segment, now) else {
                    if self
                        .exhausted_warned
                        .get(&subnet)
                        .is_none_or(|t| now >= t + 60)
                    {
                        let sn = &self.cfg.subnets[subnet];
                        warn!(subnet = %format!("{}/{}", sn.net, sn.prefix_len()), declared = %sn.pos,
                              "no free address to offer: the pool of this subnet is exhausted");
                        self.exhausted_warned.insert(subnet, now);
                    }
                    return Action::Drop("pool_exhausted");
                };
                if !self.within_limits(&c, ip, now) {
                    return Action::Drop("class_lease_limit");
                }
                let p = self.params(s, pool, &c);
                if p.ping_check && self.needs_probe(ip, &c.key, now) {
                    let timeout = p.ping_timeout.max(1);
                    self.offers
                        .hold(ip, &c.key, now + timeout as u64 + OFFER_HOLD);
                    return Action::Probe {
                        ip,
                        timeout,
                        abandon: p.abandon_time,
                    };
                }
                self.offers.hold(ip, &c.key, now + OFFER_HOLD);
                let lt = Engine::lease_time(&p, msg);
                Action::Send(self.reply(
                    msg,
                    MsgType::Offer,
                    ip,
                    s,
                    &p,
                    self.sid(&p, iface),
                    Some(lt),
                ))
            }
            MsgType::Request => self.request(msg, &c, iface, subnet, &segment, &base, now),
            MsgType::Decline => {
                let Some(ip) = msg.option_ip(OPT_REQUESTED_IP) else {
                    return Action::Drop("decline_without_address");
                };
                let mine = self
                    .leases
                    .get(&ip)
                    .is_some_and(|l| lease_key(l).as_ref() == Some(&c.key))
                    || self.offers.get(&ip).is_some_and(|(k, _)| *k == c.key);
                if !mine {
                    return Action::Drop("decline_not_ours");
                }
                warn!(%ip, client = %hex(msg.hw()), "client declined the address (in use by someone else?): abandoned");
                let lease = self.abandon(ip, base.abandon_time, now);
                Action::Commit {
                    leases: vec![lease],
                    reply: None,
                }
            }
            MsgType::Release => {
                let ip = msg.ciaddr;
                match self.leases.get_mut(&ip) {
                    Some(l)
                        if lease_key(l).as_ref() == Some(&c.key) && l.state == State::Active =>
                    {
                        l.state = State::Released;
                        l.ends = now;
                        let p = self.params(subnet, None, &c);
                        self.event(Event::Release, &p, &c, ip);
                        self.ddns_remove(ip);
                        self.on_expiry.remove(&ip);
                        let Some(l) = self.leases.get_mut(&ip) else {
                            return Action::Drop("release_not_ours");
                        };
                        l.on_expiry = None;
                        let l = l.clone();
                        // nothing per client outlives its lease
                        if self.by_client.get(&c.key) == Some(&ip) {
                            self.by_client.remove(&c.key);
                        }
                        Action::Commit {
                            leases: vec![l],
                            reply: None,
                        }
                    }
                    _ => Action::Drop("release_not_ours"),
                }
            }
            MsgType::Inform => {
                if msg.ciaddr.is_unspecified() {
                    return Action::Drop("inform_without_ciaddr");
                }
                let p = self.params(subnet, None, &c);
                let mut r = self.reply(
                    msg,
                    MsgType::Ack,
                    Ipv4Addr::UNSPECIFIED,
                    subnet,
                    &p,
                    self.sid(&p, iface),
                    None,
                );
                if msg.giaddr.is_unspecified() {
                    r.dest = Dest::Unicast(msg.ciaddr);
                }
                Action::Send(r)
            }
            _ => Action::Drop("not_a_client_message"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        msg: &Msg,
        c: &Client,
        iface: &Iface,
        subnet: usize,
        segment: &[usize],
        base: &Params,
        now: u64,
    ) -> Action {
        let sid_opt = msg.option_ip(OPT_SERVER_ID);
        let requested = msg.option_ip(OPT_REQUESTED_IP);
        let our_sid = self.sid(base, iface);
        // what this client may hold at `ip`: (subnet, pool) if so
        let allowed = |e: &Engine, ip: Ipv4Addr| -> Option<(usize, Option<usize>)> {
            if let Some((fip, s)) = e.fixed_for(c, segment) {
                return (fip == ip).then_some((s, None));
            }
            let r = e.in_range(ip, segment, c)?;
            e.available(ip, &c.key, now).then_some(r)
        };
        let ack = |e: &mut Engine, ip: Ipv4Addr, s: usize, pool: Option<usize>| -> Action {
            if !e.within_limits(c, ip, now) {
                return Action::Drop("class_lease_limit");
            }
            if c.billed.is_empty() {
                e.billing.remove(&ip);
            } else {
                e.billing.insert(ip, c.billed.clone());
            }
            let mut p = e.params(s, pool, c);
            let lt = Engine::lease_time(&p, msg);
            // a renewal straight from the client keeps what was stashed with its lease
            let kept = c.view.stashed.clone();
            let mut lease = e.grant(c, ip, lt, msg, now);
            lease.agent = match msg.option(OPT_RELAY_AGENT) {
                Some(rai) if p.stash_agent => Some(rai.to_vec()),
                Some(_) => None,
                None => kept,
            };
            let mut vars: Vec<_> = p.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            vars.sort();
            lease.vars = vars;
            if let Some(l) = e.leases.get_mut(&ip) {
                l.agent = lease.agent.clone();
                l.vars = lease.vars.clone();
            }
            e.event(Event::Commit, &p, c, ip);
            p.fqdn_reply = e.ddns_commit(&p, c, msg, ip, lt);
            e.ddns_record(&mut lease);
            e.keep_expiry(&p, c, &mut lease);
            let sid = e.sid(&p, iface);
            let reply = e.reply(msg, MsgType::Ack, ip, s, &p, sid, Some(lt));
            Action::Commit {
                leases: vec![lease],
                reply: Some(reply),
            }
        };
        if let Some(sid) = sid_opt {
            // SELECTING
            if !self.server_ids.contains(&sid) {
                // the client chose another server: our offer is free again, except on a
                // shared store, where that server is leasing the address to this client now
                if let Some(ip) = requested {
                    if self.shared {
                        if self.available(ip, &c.key, now) {
                            self.offers.hold(ip, &c.key, now + OFFER_HOLD);
                        }
                    } else if self.offers.get(&ip).is_some_and(|(k, _)| *k == c.key) {
                        self.offers.remove(ip);
                    }
                }
                return Action::Drop("request_for_other_server");
            }
            let Some(ip) = requested else {
                return Action::Drop("selecting_without_address");
            };
            return match allowed(self, ip) {
                Some((s, pool)) => ack(self, ip, s, pool),
                None => self.nak(msg, Some(subnet), sid),
            };
        }
        if let Some(ip) = requested.filter(|_| msg.ciaddr.is_unspecified()) {
            // INIT-REBOOT: the client asks to keep an address it remembers
            let on_segment = segment.iter().any(|&s| self.cfg.subnets[s].contains(ip));
            if !on_segment {
                return if base.authoritative {
                    self.nak(msg, Some(subnet), our_sid)
                } else {
                    Action::Drop("init_reboot_wrong_network")
                };
            }
            let ours = self
                .leases
                .get(&ip)
                .is_some_and(|l| lease_key(l).as_ref() == Some(&c.key))
                || self.fixed_for(c, segment).is_some_and(|(f, _)| f == ip);
            if ours {
                return match allowed(self, ip) {
                    Some((s, pool)) => ack(self, ip, s, pool),
                    None => self.nak(msg, Some(subnet), our_sid),
                };
            }
            let taken = !self.available(ip, &c.key, now);
            if taken
                || self.fixed_for(c, segment).is_some()
                || self.in_range(ip, segment, c).is_none()
            {
                return if base.authoritative {
                    self.nak(msg, Some(subnet), our_sid)
                } else {
                    Action::Drop("init_reboot_not_ours")
                };
            }
            // no record of this client: RFC 2131 says stay silent
            return Action::Drop("init_reboot_unknown_client");
        }
        if !msg.ciaddr.is_unspecified() {
            // RENEWING (unicast) or REBINDING (broadcast)
            let ip = msg.ciaddr;
            let ours =
                self.leases.get(&ip).is_some_and(|l| {
                    lease_key(l).as_ref() == Some(&c.key) && l.state == State::Active
                }) || self.fixed_for(c, segment).is_some_and(|(f, _)| f == ip);
            if ours {
                if let Some((s, pool)) = allowed(self, ip) {
                    return ack(self, ip, s, pool);
                }
            }
            if !self.available(ip, &c.key, now)
                || !segment.iter().any(|&s| self.cfg.subnets[s].contains(ip))
            {
                return if base.authoritative {
                    self.nak(msg, Some(subnet), our_sid)
                } else {
                    Action::Drop("renew_not_ours")
                };
            }
            if base.authoritative {
                // a free address in our range: adopt the client's lease
                if let Some((s, pool)) = allowed(self, ip) {
                    return ack(self, ip, s, pool);
                }
            }
            return Action::Drop("renew_unknown_client");
        }
        Action::Drop("request_without_address")
    }

    /// Counts for metrics: leases by state and free addresses per subnet.
    pub fn stats(&self, now: u64) -> (HashMap<&'static str, u64>, Vec<(String, u64)>) {
        let mut states: HashMap<&'static str, u64> = HashMap::new();
        for l in self.leases.values() {
            *states.entry(l.effective_state(now)).or_default() += 1;
        }
        let mut free = Vec::new();
        for s in &self.cfg.subnets {
            let mut n = 0u64;
            for r in &s.ranges {
                for v in u32::from(r.start)..=u32::from(r.end) {
                    let ip = Ipv4Addr::from(v);
                    let held = self.leases.get(&ip).is_some_and(|l| l.holds(now))
                        || self.offers.get(&ip).is_some_and(|(_, t)| *t > now)
                        || self.fixed_set.contains(&ip);
                    if !held {
                        n += 1;
                    }
                }
            }
            free.push((format!("{}/{}", s.net, s.prefix_len()), n));
        }
        (states, free)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
