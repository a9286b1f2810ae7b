//! Gray routes (gray release by user): traffic from chosen client networks to a virtual server
//! goes only to chosen real servers; all other clients keep the normal pool, from which those
//! real servers are removed.
//!
//! A route becomes two things, installed and removed together by [`super::Lvs::reconcile`]:
//! a virtual service of its own, keyed by a firewall mark (`fwmark` [`Service`], in whichever
//! backend runs: IPVS looks up fwmark services first, and the nftables backend renders them
//! before the address rules), and an nftables rule in ha's table `ip ha_gray` (`ip6 ha_gray`
//! for an IPv6 virtual server and its IPv6 client networks) that sets that mark on packets
//! from the client networks to the virtual server ([`Marks`]). When every gray
//! real server is out of service (checkers, drain), the gray service gets the normal pool
//! instead: gray clients fall back, and return when one is back. Routes are kept in the state
//! file with the drains.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use opsflow_control::gray::{GrayKey, GrayRoute, GrayState};
use serde::{Deserialize, Serialize};

use super::dataplane::{Counts, Dest, Service};
use crate::conf::lvs::{VirtualServer, VsKey};

/// The table holding the mark rules; nothing else is ever touched.
pub const TABLE: &str = "ha_gray";
/// Marks of gray services are `MARK_BASE + n` ("GR" in the high half), away from the small
/// marks configured fwmark virtual servers use.
pub const MARK_BASE: u32 = 0x4752_0000;

/// A route and the mark of its service, as kept in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub route: GrayRoute,
    pub fwmark: u32,
}

/// The routes in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Routes(pub Vec<Entry>);

/// A real server as routes name it: `RIP:PORT`, `[RIP6]:PORT`.
fn rs_id(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

fn same_clients(a: &[IpNet], b: &[IpNet]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

impl Routes {
    /// Adds `route` (replacing the one with the same virtual server and clients) after checking
    /// it against the configured virtual servers; Err: (HTTP status, what to do).
    pub fn add(
        &mut self,
        vss: &[&VirtualServer],
        mut route: GrayRoute,
    ) -> Result<Entry, (u16, String)> {
        let Some(vs) = vss.iter().find(|v| v.key.id() == route.virtual_server) else {
            let known: Vec<String> = vss.iter().map(|v| v.key.id()).collect();
            return Err((
                404,
                format!(
                    "no virtual server {} (known: {})",
                    route.virtual_server,
                    known.join(", ")
                ),
            ));
        };
        if matches!(vs.key, VsKey::Fwmark(..)) {
            return Err((
                400,
                format!(
                    "{}: gray routes take a VIP:PORT virtual server, not a fwmark one",
                    route.virtual_server
                ),
            ));
        }
        if route.clients.is_empty() || route.real_servers.is_empty() {
            return Err((
                400,
                "a gray route needs client networks and real servers".into(),
            ));
        }
        // clients reach a VIP of their own family
        let v6 = vs.key.is_ipv6();
        if let Some(net) = route
            .clients
            .iter()
            .find(|n| matches!(n, IpNet::V6(_)) != v6)
        {
            return Err((
                400,
                format!(
                    "{net}: virtual server {} is {}; its gray clients must be {} networks",
                    route.virtual_server,
                    if v6 { "IPv6" } else { "IPv4" },
                    if v6 { "IPv6" } else { "IPv4" }
                ),
            ));
        }
        // any spelling of an IPv6 real server names it
        for rs in &mut route.real_servers {
            *rs = opsflow_control::status::canonical_id(rs);
        }
        for rs in &route.real_servers {
            if !vs.real_servers.iter().any(|r| rs_id(r.addr, r.port) == *rs) {
                let known: Vec<String> = vs
                    .real_servers
                    .iter()
                    .map(|r| rs_id(r.addr, r.port))
                    .collect();
                return Err((
                    404,
                    format!(
                        "virtual server {} has no real server {rs} (known: {})",
                        route.virtual_server,
                        known.join(", ")
                    ),
                ));
            }
        }
        for net in &route.clients {
            if let Some(other) = self.0.iter().find(|e| {
                e.route.virtual_server == route.virtual_server
                    && !same_clients(&e.route.clients, &route.clients)
                    && e.route
                        .clients
                        .iter()
                        .any(|o| o.contains(net) || net.contains(o))
            }) {
                return Err((
                    409,
                    format!(
                        "{net} overlaps the gray route {}; remove it first (ha gray del)",
                        other.route
                    ),
                ));
            }
        }
        route.clients.sort();
        route.clients.dedup();
        route.real_servers.dedup();
        let same = self.0.iter().position(|e| {
            e.route.virtual_server == route.virtual_server
                && same_clients(&e.route.clients, &route.clients)
        });
        let entry = match same {
            Some(i) => Entry {
                route,
                fwmark: self.0[i].fwmark,
            },
            None => Entry {
                route,
                fwmark: (MARK_BASE..)
                    .find(|m| !self.0.iter().any(|e| e.fwmark == *m))
                    .unwrap_or(MARK_BASE),
            },
        };
        match same {
            Some(i) => self.0[i] = entry.clone(),
            None => self.0.push(entry.clone()),
        }
        Ok(entry)
    }

    /// Removes the routes `key` names (every route of the virtual server when it names no
    /// clients); returns them.
    pub fn remove(&mut self, key: &GrayKey) -> Vec<GrayRoute> {
        let (gone, kept): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.0).into_iter().partition(|e| {
                e.route.virtual_server == key.virtual_server
                    && (key.clients.is_empty() || same_clients(&e.route.clients, &key.clients))
            });
        self.0 = kept;
        gone.into_iter().map(|e| e.route).collect()
    }

    /// Splits the destinations of virtual server `key` (its normal pool): the gray services
    /// of its routes, to be installed before it, and what is left for everyone else. A gray
    /// service whose real servers are all out of service gets the pool (fallback).
    pub fn split(
        &self,
        vs: &VirtualServer,
        pool: Vec<Dest>,
    ) -> (Vec<Service>, Vec<Dest>, Vec<GrayState>) {
        let id = vs.key.id();
        let port = match &vs.key {
            VsKey::Addr(_, p, _) => *p,
            VsKey::Fwmark(..) => 0,
        };
        let mine: Vec<&Entry> = self
            .0
            .iter()
            .filter(|e| e.route.virtual_server == id)
            .collect();
        if mine.is_empty() {
            return (Vec::new(), pool, Vec::new());
        }
        let is_gray = |d: &Dest| {
            mine.iter()
                .any(|e| e.route.real_servers.contains(&rs_id(d.addr, d.port)))
        };
        let (gray, rest): (Vec<Dest>, Vec<Dest>) = pool.into_iter().partition(is_gray);
        let mut services = Vec::new();
        let mut states = Vec::new();
        for e in mine {
            let live: Vec<Dest> = gray
                .iter()
                .filter(|d| d.weight > 0 && e.route.real_servers.contains(&rs_id(d.addr, d.port)))
                .cloned()
                .collect();
            let fallback = live.is_empty();
            let dests = if fallback { rest.clone() } else { live.clone() };
            services.push(Service {
                key: VsKey::Fwmark(e.fwmark, vs.key.is_ipv6()),
                scheduler: vs.scheduler.clone(),
                method: vs.method.clone(),
                persistence_timeout: vs.persistence_timeout,
                persistence_granularity: vs.persistence_granularity,
                // a fwmark service keeps the packet's port when the destination's is 0 (as
                // IPVS reports it); another port is translated
                dests: dests
                    .into_iter()
                    .map(|d| Dest {
                        port: if d.port == port { 0 } else { d.port },
                        ..d
                    })
                    .collect(),
            });
            states.push(GrayState {
                route: e.route.clone(),
                fwmark: e.fwmark,
                in_service: live.iter().map(|d| rs_id(d.addr, d.port)).collect(),
                fallback,
            });
        }
        (services, rest, states)
    }

    /// The mark rules of the routes whose virtual server is configured: (mark, rule text).
    pub fn mark_rules(&self, vss: &[VirtualServer]) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for e in &self.0 {
            let Some(VsKey::Addr(vip, port, proto)) = vss
                .iter()
                .map(|v| &v.key)
                .find(|k| k.id() == e.route.virtual_server)
            else {
                continue;
            };
            out.push((
                e.fwmark,
                mark_rule(&e.route.clients, *vip, *port, proto, e.fwmark),
            ));
        }
        out
    }
}

/// `ip saddr { NETS } ip daddr VIP tcp dport PORT meta mark set MARK ct mark set MARK`
/// (`ip6 ...` for an IPv6 VIP, with the clients of its family): the connection carries the
/// mark too, so conntrack counts its connections per gray service.
pub fn mark_rule(clients: &[IpNet], vip: IpAddr, port: u16, proto: &str, mark: u32) -> String {
    let nets: Vec<String> = clients
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)) == vip.is_ipv6())
        .map(IpNet::to_string)
        .collect();
    let ip = if vip.is_ipv6() { "ip6" } else { "ip" };
    format!(
        "{ip} saddr {{ {} }} {ip} daddr {vip} {} dport {port} meta mark set {mark:#x} ct mark set {mark:#x}",
        nets.join(", "),
        proto.to_ascii_lowercase()
    )
}

/// The nftables families of the mark tables: `ip ha_gray` and `ip6 ha_gray`.
const FAMILIES: [&str; 2] = ["ip", "ip6"];

/// The nft family of a mark rule (by its first word).
fn family_of(rule: &str) -> &'static str {
    if rule.starts_with("ip6 ") {
        "ip6"
    } else {
        "ip"
    }
}

/// Removes both mark tables, whether they exist or not (create-then-delete makes the delete
/// valid).
fn delete_tables() -> String {
    FAMILIES
        .iter()
        .map(|f| format!("table {f} {TABLE} {{}}\ndelete table {f} {TABLE}\n"))
        .collect()
}

/// Connections of real server `addr:port` of virtual server `key`: through the virtual server
/// and through its gray services (whose destinations may carry port 0).
pub fn count(
    counts: &Counts,
    key: &VsKey,
    states: &[GrayState],
    addr: IpAddr,
    port: u16,
) -> (u64, u64) {
    let id = key.id();
    let mut keys = vec![(key.clone(), addr, port)];
    for s in states.iter().filter(|s| s.route.virtual_server == id) {
        keys.push((VsKey::Fwmark(s.fwmark, key.is_ipv6()), addr, port));
        keys.push((VsKey::Fwmark(s.fwmark, key.is_ipv6()), addr, 0));
    }
    keys.iter()
        .filter_map(|k| counts.get(k))
        .fold((0, 0), |(a, i), (x, y)| (a + x, i + y))
}

/// The tables `ip ha_gray` and `ip6 ha_gray` for `rules` (each only when it has rules): the
/// mark is set in prerouting (forwarded clients) and output (local ones), before NAT and IPVS
/// look at the packet.
pub fn render_marks(rules: &[String]) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let body: String = rules
            .iter()
            .filter(|r| family_of(r) == family)
            .map(|r| format!("\t\t{r}\n"))
            .collect();
        if body.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "table {family} {TABLE} {{\n\tchain prerouting {{\n\t\ttype filter hook prerouting priority mangle; policy accept;\n{body}\t}}\n\tchain output {{\n\t\ttype route hook output priority mangle; policy accept;\n{body}\t}}\n}}\n"
        ));
    }
    out
}

/// The mark rules as installed: replaced in one nft transaction when they change, the table
/// removed when there are none.
#[derive(Default)]
pub struct Marks {
    installed: Option<Vec<String>>,
}

impl Marks {
    /// Installs exactly `rules` (none: no table).
    pub fn apply(&mut self, rules: &[String]) -> anyhow::Result<bool> {
        if self.installed.as_deref() == Some(rules) {
            return Ok(false);
        }
        if rules.is_empty() && self.installed.is_none() {
            // at start: remove what a killed ha may have left; no nft is no table
            let _ = super::dataplane::nft(&delete_tables());
            self.installed = Some(Vec::new());
            return Ok(false);
        }
        let mut script = delete_tables();
        if !rules.is_empty() {
            script.push_str(&render_marks(rules));
        }
        super::dataplane::nft(&script)?;
        self.installed = Some(rules.to_vec());
        Ok(true)
    }

    /// Whether the rule of `mark` is installed.
    pub fn has(&self, mark: u32) -> bool {
        let tag = format!("meta mark set {mark:#x} ");
        self.installed
            .as_ref()
            .is_some_and(|r| r.iter().any(|x| x.contains(&tag)))
    }

    /// Installs `rules` if they are fewer than what is installed (a removal before the
    /// services go); otherwise leaves the table for [`Marks::apply`] after them.
    pub fn apply_subset(&mut self, rules: &[String]) -> anyhow::Result<()> {
        match &self.installed {
            Some(now) if rules.len() < now.len() => self.apply(rules).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Removes the table if we installed one.
    pub fn clear(&mut self) -> anyhow::Result<()> {
        if self.installed.as_ref().is_some_and(|r| !r.is_empty()) {
            super::dataplane::nft(&delete_tables())?;
        }
        self.installed = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsflow_control::gray::parse_networks;
    use std::net::Ipv4Addr;

    fn vs() -> VirtualServer {
        let cfg = crate::conf::load_str(
            "g.conf",
            "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.2 80 {\n }\n real_server 10.0.1.3 8080 {\n }\n}\n",
            "",
        )
        .expect("config");
        cfg.lvs[0].clone()
    }

    fn route(clients: &str, rss: &[&str]) -> GrayRoute {
        GrayRoute {
            virtual_server: "10.0.0.1:80".into(),
            clients: parse_networks(clients).unwrap(),
            real_servers: rss.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn dest(h: u8, port: u16, weight: u32) -> Dest {
        Dest {
            addr: Ipv4Addr::new(10, 0, 1, h).into(),
            port,
            weight,
        }
    }

    #[test]
    fn routes_are_checked_replaced_by_key_and_removed() {
        let v = vs();
        let vss = [&v];
        let mut r = Routes::default();
        let e = r
            .add(&vss, route("10.9.0.0/24", &["10.0.1.3:8080"]))
            .unwrap();
        assert_eq!(e.fwmark, MARK_BASE);
        // same key: replaced, same mark
        let e2 = r.add(&vss, route("10.9.0.0/24", &["10.0.1.2:80"])).unwrap();
        assert_eq!((e2.fwmark, r.0.len()), (MARK_BASE, 1));
        let e3 = r
            .add(&vss, route("10.8.0.0/24", &["10.0.1.3:8080"]))
            .unwrap();
        assert_eq!(e3.fwmark, MARK_BASE + 1);
        assert_eq!(
            r.add(&vss, route("10.9.0.5/32", &["10.0.1.1:80"]))
                .unwrap_err()
                .0,
            409
        );
        assert_eq!(
            r.add(&vss, route("10.7.0.0/24", &["10.0.1.9:80"]))
                .unwrap_err()
                .0,
            404
        );
        let mut other = route("10.7.0.0/24", &["10.0.1.1:80"]);
        other.virtual_server = "10.0.0.2:80".into();
        assert!(r
            .add(&vss, other)
            .unwrap_err()
            .1
            .contains("known: 10.0.0.1:80"));
        let gone = r.remove(&GrayKey {
            virtual_server: "10.0.0.1:80".into(),
            clients: parse_networks("10.9.0.0/24").unwrap(),
        });
        assert_eq!(gone.len(), 1);
        assert_eq!(r.0.len(), 1);
        assert_eq!(
            r.remove(&GrayKey {
                virtual_server: "10.0.0.1:80".into(),
                clients: vec![],
            })
            .len(),
            1
        );
        assert!(r.0.is_empty());
    }

    #[test]
    fn the_pool_loses_the_gray_servers_and_gray_clients_fall_back_when_they_are_down() {
        let v = vs();
        let mut r = Routes::default();
        r.add(&[&v], route("10.9.0.0/24", &["10.0.1.3:8080"]))
            .unwrap();
        let pool = vec![dest(1, 80, 1), dest(2, 80, 0), dest(3, 8080, 2)];
        let (svcs, rest, states) = r.split(&v, pool.clone());
        assert_eq!(rest, vec![dest(1, 80, 1), dest(2, 80, 0)]);
        assert_eq!(svcs.len(), 1);
        assert_eq!(svcs[0].key, VsKey::Fwmark(MARK_BASE, false));
        assert_eq!(svcs[0].dests, vec![dest(3, 8080, 2)]);
        assert!(!states[0].fallback);
        assert_eq!(states[0].in_service, vec!["10.0.1.3:8080".to_string()]);
        // the gray server is out (down with inhibit, or drained): the pool, same port kept as 0
        let pool = vec![dest(1, 80, 1), dest(3, 8080, 0)];
        let (svcs, rest, states) = r.split(&v, pool);
        assert_eq!(rest, vec![dest(1, 80, 1)]);
        assert_eq!(svcs[0].dests, vec![dest(1, 0, 1)]);
        assert!(states[0].fallback);
        // another virtual server is untouched
        let mut other = v.clone();
        other.key = VsKey::Addr(Ipv4Addr::new(10, 0, 0, 2).into(), 80, "TCP".into());
        let (svcs, rest, _) = r.split(&other, pool_of(&[1]));
        assert!(svcs.is_empty());
        assert_eq!(rest, pool_of(&[1]));
    }

    fn pool_of(hosts: &[u8]) -> Vec<Dest> {
        hosts.iter().map(|h| dest(*h, 80, 1)).collect()
    }

    #[test]
    fn the_mark_table_marks_client_networks_to_the_virtual_server() {
        let v = vs();
        let mut r = Routes::default();
        r.add(&[&v], route("10.9.0.0/24,10.8.1.1", &["10.0.1.1:80"]))
            .unwrap();
        let rules = r.mark_rules(std::slice::from_ref(&v));
        assert_eq!(
            rules,
            vec![(
                MARK_BASE,
                "ip saddr { 10.8.1.1/32, 10.9.0.0/24 } ip daddr 10.0.0.1 tcp dport 80 meta mark set 0x47520000 ct mark set 0x47520000".to_string()
            )]
        );
        let t = render_marks(&[rules[0].1.clone()]);
        assert!(t.contains("hook prerouting priority mangle"), "{t}");
        assert!(t.contains("hook output priority mangle"), "{t}");
        assert_eq!(t.matches("meta mark set").count(), 2);
    }

    fn vs6() -> VirtualServer {
        let cfg = crate::conf::load_str(
            "g6.conf",
            "virtual_server 2001:db8::10 80 {\n lb_algo rr\n lb_kind NAT\n real_server 2001:db8:1::11 80 {\n }\n real_server 2001:db8:1::12 80 {\n }\n}\n",
            "",
        )
        .expect("config");
        cfg.lvs[0].clone()
    }

    fn route6(clients: &str, rss: &[&str]) -> GrayRoute {
        GrayRoute {
            virtual_server: "[2001:db8::10]:80".into(),
            clients: parse_networks(clients).unwrap(),
            real_servers: rss.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_ipv6_virtual_server_takes_ipv6_clients_and_bracketed_real_servers() {
        let v = vs6();
        let vss = [&v];
        let mut r = Routes::default();
        // any spelling of the real server names it
        let e = r
            .add(&vss, route6("2001:db8:5::/48", &["[2001:db8:1:0::12]:80"]))
            .unwrap();
        assert_eq!(
            e.route.real_servers,
            vec!["[2001:db8:1::12]:80".to_string()]
        );
        // the other family's clients, and an unknown real server, are refused
        let err = r
            .add(&vss, route6("10.9.0.0/24", &["[2001:db8:1::12]:80"]))
            .unwrap_err();
        assert_eq!(err.0, 400, "{err:?}");
        assert!(err.1.contains("IPv6 networks"), "{err:?}");
        let err = r
            .add(&vss, route6("2001:db8:6::/48", &["2001:db8:1::12:80"]))
            .unwrap_err();
        assert_eq!(err.0, 404, "{err:?}");
        assert!(err.1.contains("[2001:db8:1::11]:80"), "{err:?}");
        // an IPv4 virtual server refuses IPv6 clients
        let v4 = vs();
        let err = Routes::default()
            .add(&[&v4], route("2001:db8:5::/48", &["10.0.1.1:80"]))
            .unwrap_err();
        assert!(err.1.contains("IPv4 networks"), "{err:?}");

        // the split: an inet6 fwmark service of the gray server, the rest keeps the other
        let d = |h: &str, w: u32| Dest {
            addr: h.parse().unwrap(),
            port: 80,
            weight: w,
        };
        let (svcs, rest, states) =
            r.split(&v, vec![d("2001:db8:1::11", 1), d("2001:db8:1::12", 1)]);
        assert_eq!(svcs[0].key, VsKey::Fwmark(MARK_BASE, true));
        assert_eq!(
            svcs[0].dests,
            vec![Dest {
                port: 0,
                ..d("2001:db8:1::12", 1)
            }]
        );
        assert_eq!(rest, vec![d("2001:db8:1::11", 1)]);
        assert_eq!(
            states[0].in_service,
            vec!["[2001:db8:1::12]:80".to_string()]
        );

        // its mark rule is an ip6 one, in the ip6 table
        let rules = r.mark_rules(std::slice::from_ref(&v));
        assert_eq!(
            rules,
            vec![(
                MARK_BASE,
                "ip6 saddr { 2001:db8:5::/48 } ip6 daddr 2001:db8::10 tcp dport 80 meta mark set 0x47520000 ct mark set 0x47520000".to_string()
            )]
        );
        let four = mark_rule(
            &parse_networks("10.9.0.0/24").unwrap(),
            Ipv4Addr::new(10, 0, 0, 1).into(),
            80,
            "TCP",
            MARK_BASE + 1,
        );
        let t = render_marks(&[four, rules[0].1.clone()]);
        let (v4, v6) = t.split_once("table ip6 ha_gray {").unwrap();
        assert!(
            v4.starts_with("table ip ha_gray {") && v4.contains("ip saddr { 10.9.0.0/24 }"),
            "{t}"
        );
        assert!(
            !v4.contains("ip6 saddr") && v6.contains("ip6 saddr { 2001:db8:5::/48 }"),
            "{t}"
        );
        assert!(!render_marks(&[rules[0].1.clone()]).contains("table ip ha_gray"));
    }
}
