//! Issue 18's VRRP half against the real thing: ha and keepalived 2.2 as peers on one
//! segment, each way round. VRRPv3 over IPv6 (election, a client's ping6 to the VIP, SIGTERM
//! handover, preemption, kill -9 takeover); VRRPv2 with `auth_type AH` (one cluster, no AH
//! error in keepalived's log, handover and preemption with a restarted node's fresh sequence
//! counter); and a wrong AH password (both nodes MASTER, each counting the other's adverts
//! as invalid). DAD is off in the lab, so no address is ever tentative.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::path::Path;
use std::time::{Duration, Instant};

use opsflow_tests::{wait_until, Host, Lab, Proc};

mod common;

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP6: &str = "2001:db8:98::100";
const VIP4: &str = "10.81.0.100";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Keepalived,
    Ha,
}

struct Pair {
    lab: Lab,
    /// n1, n2 and a client.
    hosts: [Host; 3],
    procs: [Option<Proc>; 2],
    kinds: [Kind; 2],
    starts: usize,
}

impl Pair {
    fn new() -> Option<Pair> {
        let lab = Lab::new(&["keepalived", "ip", "ping", "curl", "tcpdump", "timeout"])?;
        let lan = lab.switch("lan");
        let mk = |k: usize, name: &str| {
            let h = lab.host(name);
            h.run(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
            lab.attach(&h, &lan, "eth0", Some(&format!("2001:db8:98::{k}/64")));
            h.run(
                "ip",
                &["addr", "add", &format!("10.81.0.{k}/24"), "dev", "eth0"],
            );
            h
        };
        let hosts = [mk(1, "n1"), mk(2, "n2"), mk(9, "cl")];
        Some(Pair {
            lab,
            hosts,
            procs: [None, None],
            kinds: [Kind::Ha, Kind::Keepalived],
            starts: 0,
        })
    }

    fn sock(&self, k: usize) -> String {
        self.lab
            .path(&format!("n{k}.sock"))
            .to_string_lossy()
            .into_owned()
    }

    fn start(&mut self, k: usize, conf: &str) {
        let path = self.lab.path(&format!("n{k}.conf"));
        std::fs::write(&path, conf).unwrap();
        let conf = path.to_string_lossy().into_owned();
        self.starts += 1;
        let label = format!("{:?}-n{k}-{}", self.kinds[k - 1], self.starts);
        let host = &self.hosts[k - 1];
        let proc = match self.kinds[k - 1] {
            Kind::Ha => common::ha(host, &label, HA, &conf, &self.sock(k)),
            Kind::Keepalived => {
                let base = self.lab.path(&format!("ka-n{k}"));
                common::keepalived(host, &label, Path::new(&conf), &base)
            }
        };
        self.procs[k - 1] = Some(proc);
    }

    fn stop(&mut self, k: usize) {
        common::term(self.procs[k - 1].take());
    }

    fn stop_all(&mut self) {
        self.stop(1);
        self.stop(2);
    }

    fn has6(&self, k: usize) -> bool {
        let out = self.hosts[k - 1].output("ip", &["-6", "-o", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP6}/"))
    }

    fn has4(&self, k: usize) -> bool {
        self.hosts[k - 1].has_addr(VIP4)
    }

    fn log(&self, k: usize) -> String {
        self.procs[k - 1]
            .as_ref()
            .map(|p| p.output())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        (1..=2)
            .map(|k| {
                format!(
                    "--- n{k} ({:?})\n{}",
                    self.kinds[k - 1],
                    tail(&self.log(k), 20)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `cond` stays true for `d`.
    fn holds(&self, d: Duration, cond: impl Fn(&Pair) -> bool) -> bool {
        !wait_until(d, || !cond(self))
    }

    fn ping6(&self) -> bool {
        self.hosts[2]
            .output("ping", &["-6", "-n", "-q", "-c", "1", "-W", "1", VIP6])
            .status
            .success()
    }

    /// Host `k`'s link-local address on `dev`.
    fn link_local(&self, k: usize, dev: &str) -> std::net::IpAddr {
        let out = self.hosts[k - 1].run(
            "ip",
            &["-6", "-o", "addr", "show", "dev", dev, "scope", "link"],
        );
        let addr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("n{k} has no link-local address on {dev}: {out}"));
        addr.parse().unwrap()
    }

    /// The master address ha on host `k` reports for its one instance.
    fn master_address(&self, k: usize) -> Option<std::net::IpAddr> {
        let st = common::status(HA, Path::new(&self.sock(k)));
        st.vrrp.first()?.master_address
    }

    /// ha (whichever node it is) reports n1, the master, by the source address of its
    /// adverts on `dev`: its own as master, the peer's as backup.
    fn ha_reports_n1_as_master(&self, dev: &str) {
        let want = self.link_local(1, dev);
        for k in (1..=2).filter(|&k| self.kinds[k - 1] == Kind::Ha) {
            assert!(
                wait_until(STEP, || self.master_address(k) == Some(want)),
                "{:?}: ha on n{k} reports master {:?}, want n1's {want} on {dev}",
                self.kinds,
                self.master_address(k)
            );
        }
    }

    /// The source address of an advert host `k` sends out of `dev` within a few seconds
    /// (tcpdump on that interface, outgoing only).
    fn advert_source(&self, k: usize, dev: &str) -> Option<std::net::IpAddr> {
        let out = self.hosts[k - 1].output(
            "timeout",
            &[
                "5",
                "tcpdump",
                "-i",
                dev,
                "-Q",
                "out",
                "-n",
                "-l",
                "-c",
                "1",
                "ip6 proto 112",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace().skip_while(|w| *w != "IP6");
        words.nth(1)?.parse().ok()
    }

    /// n1 (150) alone holds the VIP (`has`: which family's), and keeps it for `hold`.
    fn n1_alone(&self, has: fn(&Pair, usize) -> bool, hold: Duration, what: &str) {
        let only1 = |p: &Pair| has(p, 1) && !has(p, 2);
        assert!(
            wait_until(STEP, || only1(self)),
            "{:?}, {what}: n1 (150) is not the only master:\n{}",
            self.kinds,
            self.logs()
        );
        assert!(
            self.holds(hold, only1),
            "{:?}, {what}: not one master for {hold:?}:\n{}",
            self.kinds,
            self.logs()
        );
    }

    /// SIGTERM to n1: n2 alone holds the VIP soon after (priority 0: its skew time).
    fn sigterm_handover(&mut self, has: fn(&Pair, usize) -> bool) {
        let t0 = Instant::now();
        self.stop(1);
        assert!(
            wait_until(STEP, || has(self, 2) && !has(self, 1)),
            "{:?}: no handover after SIGTERM:\n{}",
            self.kinds,
            self.logs()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{:?}: the handover took {:?}",
            self.kinds,
            t0.elapsed()
        );
    }

    /// ha's dropped adverts for `reason`, from its /metrics.
    fn dropped(&self, k: usize, reason: &str) -> u64 {
        let out = self.hosts[k - 1].output(
            "curl",
            &[
                "-s",
                "--max-time",
                "2",
                "--unix-socket",
                &self.sock(k),
                "http://ha/metrics",
            ],
        );
        let want = format!("ha_vrrp_adverts_dropped_total{{reason=\"{reason}\"}}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(&want))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn conf6(k: usize, prio: u8) -> String {
    format!(
        "global_defs {{\n  router_id n{k}\n  vrrp_version 3\n}}\nvrrp_instance VI6 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 62\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP6}/64 dev eth0\n  }}\n}}\n"
    )
}

/// IPv6 with unicast peers (global addresses, no multicast) and extra instance lines.
fn conf6_with(k: usize, prio: u8, extra: &str) -> String {
    conf6(k, prio).replace("  advert_int 1\n", &format!("  advert_int 1\n{extra}"))
}

fn unicast6(k: usize) -> String {
    format!(
        "  unicast_src_ip 2001:db8:98::{k}\n  unicast_peer {{\n    2001:db8:98::{}\n  }}\n",
        3 - k
    )
}

fn conf_ah(k: usize, prio: u8, pass: &str) -> String {
    format!(
        "global_defs {{\n  router_id n{k}\n  vrrp_version 2\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 63\n  priority {prio}\n  advert_int 1\n  authentication {{\n    auth_type AH\n    auth_pass {pass}\n  }}\n  virtual_ipaddress {{\n    {VIP4}/24 dev eth0\n  }}\n}}\n"
    )
}

/// VRRPv2 over IPv4 with `use_vmac` (VRID 64) and extra instance lines.
fn conf4_vmac(k: usize, prio: u8, extra: &str) -> String {
    let c = format!(
        "global_defs {{\n  router_id n{k}\n  vrrp_version 2\n}}\nvrrp_instance VI_4 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 64\n  priority {prio}\n  advert_int 1\n  use_vmac\n  virtual_ipaddress {{\n    {VIP4}/24 dev eth0\n  }}\n}}\n"
    );
    c.replace("  use_vmac\n", &format!("  use_vmac\n{extra}"))
}

fn unicast4(k: usize) -> String {
    format!(
        "  unicast_src_ip 10.81.0.{k}\n  unicast_peer {{\n    10.81.0.{}\n  }}\n",
        3 - k
    )
}

const STEP: Duration = Duration::from_secs(10);

#[test]
fn ipv6_vrrp_between_ha_and_keepalived_elects_hands_over_and_survives_a_crash() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    for kinds in [[Ha, Keepalived], [Keepalived, Ha]] {
        p.kinds = kinds;
        p.start(1, &conf6(1, 150));
        p.start(2, &conf6(2, 100));
        p.n1_alone(Pair::has6, Duration::from_secs(2), "election");
        p.ha_reports_n1_as_master("eth0");
        assert!(
            wait_until(STEP, || p.ping6()),
            "{kinds:?}: no ping6 answer from {VIP6} on n1"
        );
        p.sigterm_handover(Pair::has6);
        assert!(
            wait_until(STEP, || p.ping6()),
            "{kinds:?}: no ping6 answer from {VIP6} on n2"
        );
        // the higher priority comes back and preempts
        p.start(1, &conf6(1, 150));
        p.n1_alone(Pair::has6, Duration::ZERO, "preemption");
        // kill -9: the backup waits out its master-down interval, then takes over; the
        // crashed host no longer answers for the VIP
        let t0 = Instant::now();
        p.procs[0].take().unwrap().kill();
        p.hosts[0].run(
            "ip",
            &["-6", "addr", "del", &format!("{VIP6}/64"), "dev", "eth0"],
        );
        assert!(
            wait_until(STEP, || p.has6(2)),
            "{kinds:?}: no takeover after kill -9:\n{}",
            p.logs()
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
            "{kinds:?}: takeover after {took:?}, want the master-down interval (3.6 s)"
        );
        // the client follows (unsolicited neighbour advertisements)
        assert!(
            wait_until(STEP, || p.ping6()),
            "{kinds:?}: no ping6 answer from {VIP6} after the crash"
        );
        p.stop_all();
    }
}

#[test]
fn ah_between_ha_and_keepalived_forms_one_cluster_both_ways() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    for kinds in [[Ha, Keepalived], [Keepalived, Ha]] {
        p.kinds = kinds;
        p.start(1, &conf_ah(1, 150, "secret1"));
        p.start(2, &conf_ah(2, 100, "secret1"));
        p.n1_alone(Pair::has4, Duration::from_secs(5), "election");
        p.sigterm_handover(Pair::has4);
        // a restarted node starts its sequence numbers again; the cluster still takes it
        p.start(1, &conf_ah(1, 150, "secret1"));
        p.n1_alone(Pair::has4, Duration::ZERO, "preemption");
        let ka = if kinds[0] == Keepalived { 1 } else { 2 };
        assert!(
            !p.log(ka).contains("IPSEC-AH"),
            "{kinds:?}: keepalived refused ha's AH:\n{}",
            p.logs()
        );
        let ha = 3 - ka;
        assert_eq!(
            p.dropped(ha, "auth_mismatch"),
            0,
            "{kinds:?}: ha refused keepalived's AH"
        );
        p.stop_all();
    }
}

#[test]
fn a_wrong_ah_password_leaves_both_masters_each_refusing_the_other() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    for kinds in [[Ha, Keepalived], [Keepalived, Ha]] {
        p.kinds = kinds;
        p.start(1, &conf_ah(1, 150, "secret1"));
        p.start(2, &conf_ah(2, 100, "secret2"));
        let both = |p: &Pair| p.has4(1) && p.has4(2);
        assert!(
            wait_until(STEP, || both(&p)),
            "{kinds:?}: not both master:\n{}",
            p.logs()
        );
        assert!(
            p.holds(Duration::from_secs(2), both),
            "{kinds:?}: the masters did not last:\n{}",
            p.logs()
        );
        let ka = if kinds[0] == Keepalived { 1 } else { 2 };
        let ha = 3 - ka;
        assert!(
            wait_until(STEP, || p.log(ka).contains("invalid IPSEC HMAC-MD5")),
            "{kinds:?}: keepalived logged no HMAC failure:\n{}",
            p.logs()
        );
        assert!(
            wait_until(STEP, || p.dropped(ha, "auth_mismatch") > 0),
            "{kinds:?}: ha counted no invalid advert:\n{}",
            p.logs()
        );
        p.stop_all();
    }
}

#[test]
fn ipv6_unicast_peers_between_ha_and_keepalived_elect_and_hand_over() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    for kinds in [[Ha, Keepalived], [Keepalived, Ha]] {
        p.kinds = kinds;
        p.start(1, &conf6_with(1, 150, &unicast6(1)));
        p.start(2, &conf6_with(2, 100, &unicast6(2)));
        p.n1_alone(Pair::has6, Duration::from_secs(5), "election");
        p.sigterm_handover(Pair::has6);
        assert!(
            wait_until(STEP, || p.ping6()),
            "{kinds:?}: no ping6 answer from {VIP6} on n2"
        );
        p.stop_all();
    }
}

#[test]
fn ipv6_use_vmac_answers_for_the_vip_from_the_ipv6_virtual_mac() {
    let Some(mut p) = Pair::new() else { return };
    p.kinds = [Kind::Ha, Kind::Ha];
    let vmac = "00:00:5e:00:02:3e"; // IPv6 VMAC of VRID 62 (RFC 5798 §7.3)
    p.start(1, &conf6_with(1, 150, "  use_vmac\n"));
    p.start(2, &conf6_with(2, 100, "  use_vmac\n"));
    let on_vmac = |p: &Pair, k: usize| {
        let out = p.hosts[k - 1].output("ip", &["-6", "-o", "addr", "show", "dev", "vrrp.62"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP6}/"))
    };
    assert!(
        wait_until(STEP, || on_vmac(&p, 1)),
        "the VIP is not on n1's VMAC:\n{}",
        p.logs()
    );
    let mac = p.hosts[0].run("cat", &["/sys/class/net/vrrp.62/address"]);
    assert_eq!(mac.trim(), vmac);
    assert!(
        p.holds(Duration::from_secs(2), |p| !p.has6(2)),
        "two masters:\n{}",
        p.logs()
    );
    assert!(
        wait_until(STEP, || p.ping6()),
        "no ping6 answer from {VIP6} on n1's VMAC"
    );
    let neigh = p.hosts[2].run("ip", &["-6", "neigh", "show", VIP6]);
    assert!(
        neigh.contains(vmac),
        "the client reaches the VIP at {neigh}"
    );
    p.stop(1);
    assert!(
        wait_until(STEP, || on_vmac(&p, 2)),
        "n2 did not take the VIP on its VMAC:\n{}",
        p.logs()
    );
    assert!(
        wait_until(STEP, || p.ping6()),
        "no ping6 answer from {VIP6} on n2's VMAC"
    );
    let neigh = p.hosts[2].run("ip", &["-6", "neigh", "show", VIP6]);
    assert!(
        neigh.contains(vmac),
        "after the handover the client has {neigh}"
    );
    p.stop_all();
}

#[test]
fn ipv6_use_vmac_between_ha_and_keepalived_sends_from_the_vmac_and_elects_both_ways() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    let conf = |k: usize, prio: u8| conf6_with(k, prio, "  use_vmac\n");
    // ha, when it is the master `k`, sends its adverts out of the VMAC with the link-local
    // address of its base interface, as keepalived does
    let from_vmac = |p: &Pair, k: usize, what: &str| {
        if p.kinds[k - 1] == Ha {
            let want = p.link_local(k, "eth0");
            assert_eq!(
                p.advert_source(k, "vrrp.62"),
                Some(want),
                "{:?}, {what}: ha on n{k} sends no advert from vrrp.62 with {want}:\n{}",
                p.kinds,
                p.logs()
            );
        }
    };
    for kinds in [[Ha, Keepalived], [Keepalived, Ha]] {
        p.kinds = kinds;
        p.start(1, &conf(1, 150));
        p.start(2, &conf(2, 100));
        p.n1_alone(Pair::has6, Duration::from_secs(3), "election");
        p.ha_reports_n1_as_master("eth0");
        from_vmac(&p, 1, "election");
        p.sigterm_handover(Pair::has6);
        from_vmac(&p, 2, "handover");
        // n1 comes back and preempts: the master on n2 hears it on (ha) or from (keepalived)
        // its VMAC and steps down
        p.start(1, &conf(1, 150));
        p.n1_alone(Pair::has6, Duration::from_secs(3), "preemption");
        p.ha_reports_n1_as_master("eth0");
        from_vmac(&p, 1, "preemption");
        assert!(
            wait_until(STEP, || p.ping6()),
            "{kinds:?}: no ping6 answer from {VIP6} after preemption"
        );
        p.stop_all();
    }
}

#[test]
fn ipv4_use_vmac_master_hears_a_preempting_peer_from_the_virtual_mac() {
    use Kind::{Ha, Keepalived};
    let Some(mut p) = Pair::new() else { return };
    // a master's VMAC (00:00:5e:00:01:40) takes the peers' adverts sent from the same virtual
    // MAC away from the base interface: the master must hear them there, or both stay master;
    // adverts from the base interface (vmac_xmit_base) and unicast ones still reach it
    for extra in [String::new(), "  vmac_xmit_base\n".into(), "unicast".into()] {
        let conf = |k: usize, prio: u8| match extra.as_str() {
            "unicast" => conf4_vmac(k, prio, &unicast4(k)),
            x => conf4_vmac(k, prio, x),
        };
        // every order for the multicast case; with vmac_xmit_base or unicast peers the case
        // that matters is ha as the master that must hear keepalived preempt
        let orders: &[[Kind; 2]] = if extra.is_empty() {
            &[[Keepalived, Ha], [Ha, Keepalived], [Ha, Ha]]
        } else {
            &[[Keepalived, Ha]]
        };
        for &kinds in orders {
            p.kinds = kinds;
            let what = format!("{kinds:?} {}", extra.trim());
            // the lower priority is master first, with its VMAC up
            p.start(2, &conf(2, 100));
            assert!(
                wait_until(STEP, || p.has4(2)),
                "{what}: n2 alone is not master:\n{}",
                p.logs()
            );
            let mac = p.hosts[1].run("cat", &["/sys/class/net/vrrp.64/address"]);
            assert_eq!(mac.trim(), "00:00:5e:00:01:40", "{what}: n2's VMAC");
            // the higher priority starts and preempts from its own VMAC
            p.start(1, &conf(1, 150));
            p.n1_alone(
                Pair::has4,
                Duration::from_secs(3),
                &format!("{what}: preemption"),
            );
            p.sigterm_handover(Pair::has4);
            p.start(1, &conf(1, 150));
            p.n1_alone(
                Pair::has4,
                Duration::from_secs(3),
                &format!("{what}: again"),
            );
            p.stop_all();
        }
    }
}
