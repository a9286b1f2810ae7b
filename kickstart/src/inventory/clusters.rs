//! The builder's cluster part: VRRP instances, members, tracking, virtual and real servers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::build::Builder;
use super::raw::*;
use super::*;

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];
const METHODS: &[&str] = &["NAT", "DR", "TUN"];
const CHECKS: &[&str] = &[
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "SMTP_CHECK",
    "MISC_CHECK",
];

impl Builder {
    pub(super) fn clusters(
        &mut self,
        raw: Vec<S<RawCluster>>,
        systems: &[System],
        net: &Network,
    ) -> Vec<Cluster> {
        let mut out: Vec<Cluster> = Vec::new();
        let known: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        for c in raw {
            let cpos = self.lines.at(&c);
            let c = c.into_inner();
            let name = c.name.get_ref().clone();
            if !valid_name(&name) {
                self.err(
                    self.lines.at(&c.name),
                    format!("cluster name {name:?}: use letters, digits, '-' and '_'"),
                );
            }
            if out.iter().any(|o| o.name == name) {
                self.err(
                    self.lines.at(&c.name),
                    format!("cluster {name:?} is defined twice"),
                );
            }
            let vrid = match u8::try_from(*c.vrid.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.err(
                        self.lines.at(&c.vrid),
                        format!("cluster {name}: vrid must be 1-255"),
                    );
                    1
                }
            };
            if let Some(p) = &c.auth_pass {
                if p.get_ref().len() > 8 {
                    self.warn(
                        self.lines.at(p),
                        format!("cluster {name}: auth_pass is longer than 8 characters; VRRP uses only the first 8"),
                    );
                }
            }
            if !(2..=3).contains(&c.vrrp_version) {
                self.err(
                    cpos.clone(),
                    format!("cluster {name}: vrrp_version must be 2 or 3"),
                );
            }
            // IPv4 and IPv6 virtual IPs; an IPv6 one without a length takes network.subnet6's
            let (mut vips, mut vips6) = (Vec::new(), Vec::new());
            for v in c.virtual_ips.get_ref() {
                let (a, len) = v
                    .split_once('/')
                    .map_or((v.as_str(), None), |(a, l)| (a, Some(l)));
                match (a.parse::<IpAddr>(), len.map(str::parse::<u8>)) {
                    (Ok(IpAddr::V4(_)), None) => vips.push(format!("{a}/{}", net.prefix)),
                    (Ok(IpAddr::V4(_)), Some(Ok(l))) if l <= 32 => vips.push(format!("{a}/{l}")),
                    (Ok(IpAddr::V6(_)), Some(Ok(l))) if l <= 128 => vips6.push(format!("{a}/{l}")),
                    (Ok(IpAddr::V6(_)), None) if net.subnet6.is_some() => {
                        vips6.push(format!("{a}/{}", net.subnet6.map_or(64, |(_, l)| l)))
                    }
                    (Ok(IpAddr::V6(_)), None) => self.err(
                        self.lines.at(&c.virtual_ips),
                        format!("cluster {name}: IPv6 virtual IP {v:?} needs a /LENGTH, or network.subnet6"),
                    ),
                    _ => self.err(
                        self.lines.at(&c.virtual_ips),
                        format!("cluster {name}: virtual IP {v:?} is not ADDRESS[/LENGTH] (IPv4 or IPv6)"),
                    ),
                }
            }
            // keepalived: an instance is IPv4 or IPv6 by its addresses; a dual-stack cluster is
            // an IPv4 instance holding its IPv6 addresses as virtual_ipaddress_excluded
            let ipv6 = vips.is_empty() && !vips6.is_empty();
            let (vips, vips_excluded) = if ipv6 {
                (vips6, Vec::new())
            } else {
                (vips, vips6)
            };
            if ipv6 && c.vrrp_version == 2 {
                self.err(
                    self.lines.at(&c.virtual_ips),
                    format!("cluster {name}: IPv6 virtual IPs need vrrp_version = 3 (VRRPv2 is IPv4 only)"),
                );
            }
            if vips.is_empty() {
                self.err(
                    self.lines.at(&c.virtual_ips),
                    format!("cluster {name}: at least one virtual IP is needed"),
                );
            }
            let mut members: Vec<Member> = Vec::new();
            for m in c.members.get_ref() {
                let m = m.get_ref();
                if !known.contains(&m.system.get_ref().as_str()) {
                    self.err(
                        self.lines.at(&m.system),
                        format!(
                            "cluster {name}: member {:?} is not a system{}",
                            m.system.get_ref(),
                            hint(m.system.get_ref(), &known)
                        ),
                    );
                }
                if members.iter().any(|o| &o.system == m.system.get_ref()) {
                    self.err(
                        self.lines.at(&m.system),
                        format!("cluster {name}: {} is a member twice", m.system.get_ref()),
                    );
                }
                let p = *m.priority.get_ref();
                if !(1..=254).contains(&p) {
                    self.err(
                        self.lines.at(&m.priority),
                        format!(
                            "cluster {name}: priority must be 1-254 (255 is the address owner's)"
                        ),
                    );
                }
                if !c.nopreempt && members.iter().any(|o| o.priority == p) {
                    self.err(
                        self.lines.at(&m.priority),
                        format!("cluster {name}: two members have priority {p}; give the intended master the highest, or set nopreempt = true"),
                    );
                }
                let sys = systems.iter().find(|s| &s.name == m.system.get_ref());
                if ipv6 && c.unicast && sys.is_some_and(|s| s.ip6.is_none()) {
                    self.err(
                        self.lines.at(&m.system),
                        format!(
                            "cluster {name}: unicast over IPv6 needs an ip6 for member {}",
                            m.system.get_ref()
                        ),
                    );
                }
                members.push(Member {
                    ip: sys.map(|s| s.ip),
                    ip6: sys.and_then(|s| s.ip6),
                    system: m.system.get_ref().clone(),
                    priority: p,
                    interface: m.interface.clone().unwrap_or_else(|| c.interface.clone()),
                    state: "BACKUP".into(),
                });
            }
            if members.len() < 2 {
                self.warn(
                    self.lines.at(&c.members),
                    format!("cluster {name}: fewer than two members; nothing can fail over"),
                );
            }
            // keepalived clears preempt_delay on an instance that starts as MASTER
            if !c.nopreempt && c.preempt_delay.is_none() {
                if let Some(top) = members.iter_mut().max_by_key(|m| m.priority) {
                    top.state = "MASTER".into();
                }
            }
            let mut vss = Vec::new();
            for vs in c.virtual_servers {
                if let Some(v) = self.virtual_server(&name, vs.into_inner(), systems, net) {
                    vss.push(v);
                }
            }
            if c.track_interface.contains(&c.interface) {
                self.warn(
                    cpos.clone(),
                    format!("cluster {name}: track_interface {} is the cluster's own interface, which is always tracked (keepalived ignores it)", c.interface),
                );
            }
            if c.sync_group.is_some() && c.track.iter().any(|t| t.weight != 0) {
                self.warn(
                    cpos.clone(),
                    format!("cluster {name}: keepalived ignores track scripts with a weight in a sync group; use weight = 0 (the group goes to FAULT)"),
                );
            }
            let sync_group = c.sync_group.map(|g| {
                if !valid_name(g.get_ref()) {
                    self.err(
                        self.lines.at(&g),
                        format!(
                            "cluster {name}: sync_group {:?}: use letters, digits, '-' and '_'",
                            g.get_ref()
                        ),
                    );
                }
                g.into_inner()
            });
            out.push(Cluster {
                name,
                interface: c.interface,
                vrid,
                auth_pass: c.auth_pass.map(S::into_inner),
                advert_int: c.advert_int,
                vrrp_version: c.vrrp_version,
                virtual_ips: vips,
                virtual_ips_excluded: vips_excluded,
                ipv6,
                nopreempt: c.nopreempt,
                notify: c.notify,
                preempt_delay: c.preempt_delay,
                track_interface: c.track_interface,
                unicast: c.unicast,
                sync_group,
                track: c
                    .track
                    .into_iter()
                    .map(|t| Track {
                        name: t.name,
                        script: t.script,
                        interval: t.interval,
                        weight: t.weight,
                        fall: t.fall,
                        rise: t.rise,
                    })
                    .collect(),
                members,
                virtual_servers: vss,
            });
        }
        // the same VRID twice on one interface of one node is two routers fighting
        let mut seen: HashMap<(String, String, u8), String> = HashMap::new();
        for c in &out {
            for m in &c.members {
                if let Some(other) = seen.insert(
                    (m.system.clone(), m.interface.clone(), c.vrid),
                    c.name.clone(),
                ) {
                    self.diags.push(diag::error(
                        &Pos {
                            file: self.lines.file().clone(),
                            line: 1,
                            col: 1,
                        },
                        format!(
                            "clusters {other} and {} both use VRID {} on {}:{}; each cluster on an interface needs its own vrid",
                            c.name, c.vrid, m.system, m.interface
                        ),
                    ));
                }
            }
        }
        out
    }

    pub(super) fn virtual_server(
        &mut self,
        cluster: &str,
        r: RawVirtualServer,
        systems: &[System],
        _net: &Network,
    ) -> Option<VirtualServer> {
        let at = self.lines.at(&r.address);
        let (addr, port) = match split_host_port(r.address.get_ref()) {
            Some((h, Some(p))) => match h.parse::<IpAddr>() {
                Ok(a) => (a, p),
                Err(_) => {
                    self.err(
                        at,
                        format!(
                            "cluster {cluster}: virtual server address {:?} is not VIP:PORT",
                            r.address.get_ref()
                        ),
                    );
                    return None;
                }
            },
            _ => {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: virtual server address {:?} is not VIP:PORT (e.g. \"10.99.0.50:80\", \"[2001:db8:99::50]:80\")",
                        r.address.get_ref()
                    ),
                );
                return None;
            }
        };
        let sched = r.scheduler.get_ref().to_ascii_lowercase();
        if !SCHEDULERS.contains(&sched.as_str()) {
            self.err(
                self.lines.at(&r.scheduler),
                format!(
                    "cluster {cluster}: scheduler {:?} is not one of {}",
                    r.scheduler.get_ref(),
                    SCHEDULERS.join(", ")
                ),
            );
        }
        let method = r.method.get_ref().to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            self.err(
                self.lines.at(&r.method),
                format!(
                    "cluster {cluster}: method {:?} is not NAT, DR or TUN",
                    r.method.get_ref()
                ),
            );
        }
        let protocol = r.protocol.to_ascii_uppercase();
        if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            self.err(
                self.lines.at(&r.address),
                format!("cluster {cluster}: protocol {protocol:?} is not TCP, UDP or SCTP"),
            );
        }
        let sorry_server = r.sorry_server.as_ref().and_then(|s| {
            match split_host_port(s.get_ref()).and_then(|(h, p)| Some((h.parse().ok()?, p))) {
                Some((a, p)) => Some((a, p.unwrap_or(port))),
                None => {
                    self.err(
                        self.lines.at(s),
                        format!(
                            "cluster {cluster}: sorry_server {:?} is not IP[:PORT]",
                            s.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        let mut rss = Vec::new();
        let known: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        for rs in r.real_servers.get_ref() {
            let at = self.lines.at(rs);
            let Some((host, p)) = split_host_port(rs.get_ref()) else {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: real server {:?} is not SYSTEM[:PORT] or IP[:PORT]",
                        rs.get_ref()
                    ),
                );
                continue;
            };
            // a system stands for its address of the virtual server's family
            let (system, address) = if let Ok(a) = host.parse::<IpAddr>() {
                (
                    systems
                        .iter()
                        .find(|s| IpAddr::V4(s.ip) == a || s.ip6.map(IpAddr::V6) == Some(a))
                        .map(|s| s.name.clone()),
                    a,
                )
            } else if let Some(s) = systems.iter().find(|s| s.name == host) {
                match (addr.is_ipv6(), s.ip6) {
                    (false, _) => (Some(s.name.clone()), IpAddr::V4(s.ip)),
                    (true, Some(v6)) => (Some(s.name.clone()), IpAddr::V6(v6)),
                    (true, None) => {
                        self.err(
                            at,
                            format!("cluster {cluster}: real server {host} has no ip6 for the IPv6 virtual server {}", SocketAddr::new(addr, port)),
                        );
                        continue;
                    }
                }
            } else {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: real server {host:?} is neither an IP address nor a system{}",
                        hint(host, &known)
                    ),
                );
                continue;
            };
            if address.is_ipv6() != addr.is_ipv6() && method != "TUN" {
                self.err(
                    at,
                    format!("cluster {cluster}: real server {address} is not of the virtual server's address family ({addr}); only method TUN may mix"),
                );
                continue;
            }
            let port = p.unwrap_or(port);
            if rss
                .iter()
                .any(|o: &RealServer| o.address == address && o.port == port)
            {
                self.err(
                    self.lines.at(rs),
                    format!(
                        "cluster {cluster}: real server {} is listed twice",
                        SocketAddr::new(address, port)
                    ),
                );
            }
            rss.push(RealServer {
                system,
                address,
                port,
                weight: r
                    .weights
                    .get(rs.get_ref())
                    .map_or(r.weight, |w| *w.get_ref()),
            });
        }
        for (k, w) in &r.weights {
            if !r.real_servers.get_ref().iter().any(|rs| rs.get_ref() == k) {
                self.err(
                    self.lines.at(w),
                    format!("cluster {cluster}: weights names {k:?}, which is not in real_servers (write it as it is written there)"),
                );
            }
        }
        let fwmark = r.fwmark.as_ref().map(|m| {
            if *m.get_ref() == 0 {
                self.err(
                    self.lines.at(m),
                    format!("cluster {cluster}: fwmark must be 1 or more"),
                );
            }
            *m.get_ref()
        });
        if rss.is_empty() {
            self.err(
                self.lines.at(&r.real_servers),
                format!(
                    "cluster {cluster}: virtual server {} has no real servers",
                    SocketAddr::new(addr, port)
                ),
            );
        }
        let check = r.check.map(|c| {
            let at = self.lines.at(&c);
            let c = c.into_inner();
            let kind = c.kind.get_ref().to_ascii_uppercase();
            if !CHECKS.contains(&kind.as_str()) {
                self.err(
                    self.lines.at(&c.kind),
                    format!(
                        "cluster {cluster}: check type {:?} is not one of {}",
                        c.kind.get_ref(),
                        CHECKS.join(", ")
                    ),
                );
            }
            if kind == "MISC_CHECK" && c.script.is_none() {
                self.err(
                    at,
                    format!("cluster {cluster}: a MISC_CHECK needs script = \"...\""),
                );
            }
            Check {
                kind,
                path: c.path.unwrap_or_else(|| "/".into()),
                status_code: c.status_code,
                digest: c.digest,
                port: c.port,
                connect_timeout: c.connect_timeout,
                retry: c.retry,
                delay_before_retry: c.delay_before_retry,
                helo_name: c.helo_name,
                script: c.script,
                timeout: c.timeout,
            }
        });
        Some(VirtualServer {
            address: addr,
            port,
            protocol,
            scheduler: sched,
            method,
            delay_loop: r.delay_loop,
            persistence_timeout: r.persistence_timeout,
            sorry_server,
            fwmark,
            real_servers: rss,
            check,
        })
    }
}
