//! What the kernel should forward, the difference to what it does, and the nftables backend.
//!
//! The daemon computes the desired [`Service`] list from the config, the checkers and the
//! drains; [`diff`] turns desired vs actual into the smallest change set; a backend applies it.
//! The nftables backend keeps everything in a table of its own per address family (`ip
//! ha_lvs` for IPv4 services, `ip6 ha_lvs` for IPv6 ones), both replaced in one atomic
//! transaction when (and only when) the change set is not empty; conntrack keeps established
//! connections on their real server whatever the rules say next.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use crate::conf::lvs::VsKey;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    /// 0: in the table, but no new connections (drain, inhibit_on_failure).
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: VsKey,
    pub scheduler: String,
    pub method: String,
    pub persistence_timeout: Option<u32>,
    /// Netmask grouping clients for persistence (IPVS; nftables hashes single addresses).
    pub persistence_granularity: Option<Ipv4Addr>,
    pub dests: Vec<Dest>,
}

/// One step of reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddService(Service),
    /// Scheduler, method or persistence changed.
    EditService(Service),
    DelService(VsKey),
    AddDest(VsKey, Dest),
    EditDest(VsKey, Dest),
    DelDest(VsKey, IpAddr, u16),
}

/// The smallest change set that turns `actual` into `desired`: services and destinations that
/// stay are not touched, a weight change is an edit (never a delete and add).
pub fn diff(actual: &[Service], desired: &[Service]) -> Vec<Change> {
    let mut out = Vec::new();
    for a in actual {
        if !desired.iter().any(|d| d.key == a.key) {
            out.push(Change::DelService(a.key.clone()));
        }
    }
    for d in desired {
        let Some(a) = actual.iter().find(|a| a.key == d.key) else {
            out.push(Change::AddService(Service {
                dests: Vec::new(),
                ..d.clone()
            }));
            for dst in &d.dests {
                out.push(Change::AddDest(d.key.clone(), dst.clone()));
            }
            continue;
        };
        if (
            &a.scheduler,
            &a.method,
            a.persistence_timeout,
            a.persistence_granularity,
        ) != (
            &d.scheduler,
            &d.method,
            d.persistence_timeout,
            d.persistence_granularity,
        ) {
            out.push(Change::EditService(Service {
                dests: Vec::new(),
                ..d.clone()
            }));
        }
        for ad in &a.dests {
            if !d
                .dests
                .iter()
                .any(|x| x.addr == ad.addr && x.port == ad.port)
            {
                out.push(Change::DelDest(d.key.clone(), ad.addr, ad.port));
            }
        }
        for dd in &d.dests {
            match a
                .dests
                .iter()
                .find(|x| x.addr == dd.addr && x.port == dd.port)
            {
                None => out.push(Change::AddDest(d.key.clone(), dd.clone())),
                Some(x) if x.weight != dd.weight => {
                    out.push(Change::EditDest(d.key.clone(), dd.clone()))
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Connection counts per (service, destination): (active, inactive).
pub type Counts = HashMap<(VsKey, IpAddr, u16), (u64, u64)>;

/// A load-balancer data plane.
pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// Makes the kernel forward as `desired` says; returns the changes made.
    fn apply(&mut self, desired: &[Service]) -> anyhow::Result<Vec<Change>>;
    fn counts(&mut self) -> Counts;
    /// IPVS-only settings of the desired services (flags, persistence engine, destination
    /// thresholds), for the next `apply`; a backend without them ignores them.
    fn set_extras(&mut self, _extras: super::ipvs::Extras) {}
    /// Once at start: `lvs_flush`, `lvs_timeouts`, and what `clear` removes
    /// (`lvs_flush_onstop`); a backend without them ignores them.
    fn prepare(&mut self, _global: &crate::conf::ipvs::IpvsGlobal) -> anyhow::Result<()> {
        Ok(())
    }
    /// Removes everything this backend installed.
    fn clear(&mut self) -> anyhow::Result<()>;
}

/// The table we own; nothing else is ever touched.
pub const TABLE: &str = "ha_lvs";

/// Schedulers nftables can express; others fall back with a warning.
pub fn nft_scheduler(s: &str) -> &'static str {
    match s {
        "rr" => "rr",
        "sh" => "sh",
        "dh" => "dh",
        "mh" => "sh",
        _ => "wrr",
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Slots of a weighted ring: each destination appears weight/gcd times, interleaved by smooth
/// weighted round robin (nginx's), at most 256 slots.
pub fn slots(dests: &[&Dest], weighted: bool) -> Vec<usize> {
    let w: Vec<u32> = dests
        .iter()
        .map(|d| if weighted { d.weight } else { 1 })
        .collect();
    let g = w.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<i64> = w.iter().map(|x| i64::from(x / g)).collect();
    // at most 256 slots, or one per destination when there are more
    let limit = 256.max(w.len() as i64);
    let mut total: i64 = w.iter().sum();
    while total > limit && w.iter().any(|x| *x > 1) {
        for x in w.iter_mut() {
            *x = (*x / 2).max(1);
        }
        total = w.iter().sum();
    }
    let mut cur = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, x) in cur.iter_mut().zip(&w) {
            *c += x;
        }
        let Some((best, _)) = cur
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        cur[best] -= total;
        out.push(best);
    }
    out
}

/// Whether a service forwards IPv6: by its VIP, or for a fwmark service by its real servers.
pub fn is_v6(s: &Service) -> bool {
    match &s.key {
        VsKey::Addr(a, _, _) => a.is_ipv6(),
        VsKey::Fwmark(_, v6) => *v6,
    }
}

/// The nftables families the backend programs: (family, IPv6).
const FAMILIES: [(&str, bool); 2] = [("ip", false), ("ip6", true)];

/// The nftables ruleset for `services` (NAT forwarding): table `ip ha_lvs` for the IPv4
/// services, and `ip6 ha_lvs` when there are IPv6 ones.
pub fn render_nft(services: &[Service]) -> String {
    let mut out = String::new();
    for (family, v6) in FAMILIES {
        let mine: Vec<&Service> = services.iter().filter(|s| is_v6(s) == v6).collect();
        if v6 && mine.is_empty() {
            continue;
        }
        out.push_str(&render_family(family, &mine));
    }
    out
}

fn render_family(family: &str, services: &[&Service]) -> String {
    let mut rules = String::new();
    for s in services {
        let live: Vec<&Dest> = s.dests.iter().filter(|d| d.weight > 0).collect();
        if live.is_empty() {
            continue;
        }
        let sched = if s.persistence_timeout.is_some() {
            "sh"
        } else {
            nft_scheduler(&s.scheduler)
        };
        let ring = slots(&live, sched != "rr");
        let gen = match sched {
            "sh" => format!("jhash {family} saddr mod {}", ring.len()),
            "dh" => format!("jhash {family} daddr mod {}", ring.len()),
            _ => format!("numgen inc mod {}", ring.len()),
        };
        let (matcher, with_port) = match &s.key {
            VsKey::Addr(a, p, proto) => (
                format!(
                    "{family} daddr {a} {} dport {p}",
                    proto.to_ascii_lowercase()
                ),
                true,
            ),
            VsKey::Fwmark(m, _) => (format!("meta mark {m}"), false),
        };
        let map: Vec<String> = ring
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let d = live[d];
                if with_port && d.port != 0 {
                    format!("{i} : {} . {}", d.addr, d.port)
                } else {
                    format!("{i} : {}", d.addr)
                }
            })
            .collect();
        let target = if with_port && live.iter().all(|d| d.port != 0) {
            format!("{family} addr . port to")
        } else {
            format!("{family} to")
        };
        rules.push_str(&format!(
            "\t\t{matcher} dnat {target} {gen} map {{ {} }}\n",
            map.join(", ")
        ));
    }
    format!(
        "table {family} {TABLE} {{\n\tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{rules}\t}}\n\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{rules}\t}}\n}}\n"
    )
}

pub(crate) fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft: {e} (apt-get install nftables)"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "nft rejected the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The nftables backend.
#[derive(Default)]
pub struct Nft {
    actual: Vec<Service>,
    installed: bool,
}

impl Backend for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn apply(&mut self, desired: &[Service]) -> anyhow::Result<Vec<Change>> {
        let changes = diff(&self.actual, desired);
        if changes.is_empty() && self.installed {
            return Ok(changes);
        }
        // create-then-delete makes the delete valid when the table does not exist; the new
        // tables replace the old ones in the same transaction
        let script = format!("{}{}", delete_tables(), render_nft(desired));
        nft(&script)?;
        self.actual = desired.to_vec();
        self.installed = true;
        Ok(changes)
    }

    fn counts(&mut self) -> Counts {
        conntrack_counts(&self.actual)
    }

    fn clear(&mut self) -> anyhow::Result<()> {
        if self.installed {
            nft(&delete_tables())?;
            self.installed = false;
            self.actual.clear();
        }
        Ok(())
    }
}

/// Deletes our tables (of both families), whether they exist or not.
fn delete_tables() -> String {
    FAMILIES
        .iter()
        .map(|(f, _)| format!("table {f} {TABLE} {{}}\ndelete table {f} {TABLE}\n"))
        .collect()
}

/// Active (TCP established) and inactive connections per destination, from conntrack.
pub fn conntrack_counts(services: &[Service]) -> Counts {
    let mut out = Counts::new();
    let Ok(text) = std::fs::read_to_string("/proc/net/nf_conntrack") else {
        return out;
    };
    parse_conntrack(&text, services, &mut out);
    out
}

fn parse_conntrack(text: &str, services: &[Service], out: &mut Counts) {
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !matches!(f[0], "ipv4" | "ipv6") {
            continue;
        }
        let proto = f[2].to_ascii_uppercase();
        let state = if proto == "TCP" { f[5] } else { "" };
        let kv: Vec<(&str, &str)> = f.iter().filter_map(|x| x.split_once('=')).collect();
        let get = |k: &str, nth: usize| -> Option<&str> {
            kv.iter().filter(|(a, _)| *a == k).nth(nth).map(|(_, v)| *v)
        };
        let (Some(odst), Some(odport), Some(rsrc), Some(rsport)) = (
            get("dst", 0),
            get("dport", 0),
            get("src", 1),
            get("sport", 1),
        ) else {
            continue;
        };
        let mark: u32 = get("mark", 0).and_then(|m| m.parse().ok()).unwrap_or(0);
        let (Ok(odst), Ok(odport), Ok(rsrc), Ok(rsport)) = (
            odst.parse::<IpAddr>(),
            odport.parse::<u16>(),
            rsrc.parse::<IpAddr>(),
            rsport.parse::<u16>(),
        ) else {
            continue;
        };
        for s in services {
            let hit = match &s.key {
                VsKey::Addr(a, p, pr) => *a == odst && *p == odport && *pr == proto,
                VsKey::Fwmark(m, _) => *m == mark,
            };
            if !hit {
                continue;
            }
            if let Some(d) = s
                .dests
                .iter()
                .find(|d| d.addr == rsrc && (d.port == rsport || d.port == 0))
            {
                let e = out.entry((s.key.clone(), d.addr, d.port)).or_default();
                if state == "ESTABLISHED" || (proto != "TCP" && !state.is_empty()) {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn svc(port: u16, dests: &[(u8, u32)]) -> Service {
        Service {
            key: VsKey::Addr(IpAddr::from(Ipv4Addr::new(10, 0, 0, 1)), port, "TCP".into()),
            scheduler: "rr".into(),
            method: "NAT".into(),
            persistence_timeout: None,
            persistence_granularity: None,
            dests: dests
                .iter()
                .map(|(h, w)| Dest {
                    addr: IpAddr::from(Ipv4Addr::new(10, 0, 1, *h)),
                    port: 80,
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn nothing_to_do_is_no_change() {
        let a = vec![svc(80, &[(1, 1), (2, 1)])];
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn a_weight_change_is_one_edit() {
        let a = vec![svc(80, &[(1, 1), (2, 1)]), svc(443, &[(1, 1)])];
        let d = vec![svc(80, &[(1, 0), (2, 1)]), svc(443, &[(1, 1)])];
        let c = diff(&a, &d);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            matches!(&c[0], Change::EditDest(_, x) if x.weight == 0 && x.addr == IpAddr::from(Ipv4Addr::new(10, 0, 1, 1)))
        );
    }

    #[test]
    fn adds_and_removals_touch_only_what_changed() {
        let a = vec![svc(80, &[(1, 1), (2, 1)]), svc(443, &[(1, 1)])];
        let mut d = vec![svc(80, &[(2, 1), (3, 1)]), svc(8080, &[(9, 2)])];
        d[0].scheduler = "wrr".into();
        let c = diff(&a, &d);
        assert!(c.contains(&Change::DelService(a[1].key.clone())));
        assert!(c.contains(&Change::DelDest(
            a[0].key.clone(),
            IpAddr::from(Ipv4Addr::new(10, 0, 1, 1)),
            80
        )));
        assert!(c
            .iter()
            .any(|x| matches!(x, Change::AddDest(_, d) if d.addr == IpAddr::from(Ipv4Addr::new(10, 0, 1, 3)))));
        assert!(c
            .iter()
            .any(|x| matches!(x, Change::EditService(s) if s.scheduler == "wrr")));
        assert!(c
            .iter()
            .any(|x| matches!(x, Change::AddService(s) if s.key == d[1].key)));
        // 10.0.1.2 stays as it was: not mentioned
        assert!(!c.iter().any(|x| matches!(x, Change::AddDest(_, d) | Change::EditDest(_, d) if d.addr == IpAddr::from(Ipv4Addr::new(10, 0, 1, 2)))));
        assert_eq!(c.len(), 6, "{c:?}");
    }

    #[test]
    fn weighted_slots_interleave() {
        let a = Dest {
            addr: IpAddr::from(Ipv4Addr::new(1, 1, 1, 1)),
            port: 1,
            weight: 3,
        };
        let b = Dest {
            addr: IpAddr::from(Ipv4Addr::new(2, 2, 2, 2)),
            port: 1,
            weight: 1,
        };
        let s = slots(&[&a, &b], true);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&x| x == 0).count(), 3);
        assert_eq!(slots(&[&a, &b], false), vec![0, 1]);
        let c = Dest {
            weight: 6,
            ..a.clone()
        };
        let d = Dest {
            weight: 4,
            ..b.clone()
        };
        assert_eq!(slots(&[&c, &d], true).len(), 5); // 3:2 after the gcd
                                                     // many destinations: one slot each, and it terminates
        let many: Vec<Dest> = (0..1000u32)
            .map(|i| Dest {
                addr: IpAddr::from(Ipv4Addr::from(i)),
                port: 1,
                weight: 1 + i % 3,
            })
            .collect();
        let refs: Vec<&Dest> = many.iter().collect();
        assert_eq!(slots(&refs, false).len(), 1000);
        assert!(slots(&refs, true).len() <= 2000);
    }

    #[test]
    fn ruleset_maps_live_destinations_only() {
        let s = svc(80, &[(1, 1), (2, 0), (3, 1)]);
        let r = render_nft(&[s]);
        assert!(r.contains("ip daddr 10.0.0.1 tcp dport 80 dnat ip addr . port to numgen inc mod 2 map { 0 : 10.0.1.1 . 80, 1 : 10.0.1.3 . 80 }"), "{r}");
        assert!(!r.contains("10.0.1.2"));
        let none = render_nft(&[svc(80, &[(1, 0)])]);
        assert!(!none.contains("dnat"), "{none}");
    }

    #[test]
    fn ipv6_services_go_to_an_ip6_table() {
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut s6 = svc(80, &[(1, 1)]);
        s6.key = VsKey::Addr(v6("2001:db8::10"), 80, "TCP".into());
        s6.dests = vec![
            Dest {
                addr: v6("2001:db8:1::11"),
                port: 80,
                weight: 1,
            },
            Dest {
                addr: v6("2001:db8:1::12"),
                port: 8080,
                weight: 0,
            },
        ];
        let r = render_nft(&[svc(80, &[(1, 1)]), s6.clone()]);
        assert!(r.contains("table ip ha_lvs {"), "{r}");
        assert!(r.contains("table ip6 ha_lvs {"), "{r}");
        let (v4_part, v6_part) = r.split_once("table ip6").unwrap();
        assert!(v6_part.contains("ip6 daddr 2001:db8::10 tcp dport 80 dnat ip6 addr . port to numgen inc mod 1 map { 0 : 2001:db8:1::11 . 80 }"), "{r}");
        assert!(
            !v6_part.contains("10.0.") && !v4_part.contains("2001:"),
            "{r}"
        );
        // the drained destination is not in the map
        assert!(!r.contains("2001:db8:1::12"), "{r}");
        s6.persistence_timeout = Some(60);
        assert!(render_nft(&[s6]).contains("jhash ip6 saddr mod 1"));
        // no IPv6 service, no ip6 table
        assert!(!render_nft(&[svc(80, &[(1, 1)])]).contains("ip6"));
    }

    #[test]
    fn an_ipv6_fwmark_service_goes_to_the_ip6_table() {
        let mut s6 = svc(0, &[]);
        s6.key = VsKey::Fwmark(7, true);
        s6.dests = vec![Dest {
            addr: "2001:db8:1::11".parse().unwrap(),
            port: 0,
            weight: 1,
        }];
        let r = render_nft(&[svc(80, &[(1, 1)]), s6.clone()]);
        let (_, v6_part) = r.split_once("table ip6 ha_lvs").unwrap();
        assert!(
            v6_part.contains("meta mark 7 dnat ip6 to numgen inc mod 1 map { 0 : 2001:db8:1::11 }"),
            "{r}"
        );
        // with every real server out it still has its table (the marks go nowhere else)
        s6.dests[0].weight = 0;
        assert!(is_v6(&s6));
        assert!(!render_nft(&[s6]).contains("meta mark 7"));
    }

    #[test]
    fn conntrack_ipv6_lines_count_too() {
        let mut s = svc(80, &[]);
        s.key = VsKey::Addr("2001:db8::10".parse().unwrap(), 80, "TCP".into());
        s.dests = vec![Dest {
            addr: "2001:db8:1::11".parse().unwrap(),
            port: 80,
            weight: 1,
        }];
        let text = "ipv6     10 tcp      6 431999 ESTABLISHED src=2001:db8::29 dst=2001:db8::10 sport=5000 dport=80 src=2001:db8:1::11 dst=2001:db8::29 sport=80 dport=5000 [ASSURED] mark=0 zone=0 use=2\n";
        let mut out = Counts::new();
        parse_conntrack(text, &[s.clone()], &mut out);
        assert_eq!(out[&(s.key, "2001:db8:1::11".parse().unwrap(), 80)], (1, 0));
    }

    #[test]
    fn conntrack_lines_count_per_destination() {
        let s = vec![svc(80, &[(1, 1), (2, 1)])];
        let text = "ipv4     2 tcp      6 431999 ESTABLISHED src=10.9.0.5 dst=10.0.0.1 sport=5000 dport=80 src=10.0.1.1 dst=10.9.0.5 sport=80 dport=5000 [ASSURED] mark=0 zone=0 use=2\n\
ipv4     2 tcp      6 117 TIME_WAIT src=10.9.0.5 dst=10.0.0.1 sport=5001 dport=80 src=10.0.1.1 dst=10.9.0.5 sport=80 dport=5001 [ASSURED] mark=0 zone=0 use=2\n\
ipv4     2 tcp      6 117 ESTABLISHED src=10.9.0.5 dst=10.7.7.7 sport=5001 dport=80 src=10.7.7.7 dst=10.9.0.5 sport=80 dport=5001 [ASSURED] mark=0 zone=0 use=2\n";
        let mut out = Counts::new();
        parse_conntrack(text, &s, &mut out);
        assert_eq!(
            out[&(
                s[0].key.clone(),
                IpAddr::from(Ipv4Addr::new(10, 0, 1, 1)),
                80
            )],
            (1, 1)
        );
        assert_eq!(out.len(), 1);
    }
}
