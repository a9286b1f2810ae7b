//! Gray routes on the nftables backend with real traffic: two client namespaces (A and B)
//! routed through the director (ha, VIP on lo), three real servers behind it. A gray route
//! sends A's network to r3 only and keeps B off r3; it survives a restart; when r3 is down A
//! falls back to the pool and returns when r3 is back; removing it gives everyone the pool.
//! The same lab over IPv6 (an IPv6 virtual server, IPv6 client networks).
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use opsflow_control::Status;
use opsflow_tests::{wait_until, Host, Lab};

mod common;

use common::lvs::{Director, RealServers};

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP: &str = "10.91.1.100";
const A_NET: &str = "10.91.11.0/24";

/// The lab's addresses: `10.91.NET.HOST` (/24), or over IPv6 `2001:db8:91:NET::HOST` (/64).
fn addr(v6: bool, net: u8, host: u8) -> String {
    if v6 {
        format!("2001:db8:91:{net}::{host}")
    } else {
        format!("10.91.{net}.{host}")
    }
}

fn cidr(v6: bool, net: u8, host: u8) -> String {
    format!("{}/{}", addr(v6, net, host), if v6 { 64 } else { 24 })
}

const VIP6: &str = "2001:db8:91:1::100";
const A_NET6: &str = "2001:db8:91:11::/64";

struct Env {
    /// Its namespaces go when the test ends.
    _lab: Lab,
    a: Host,
    b: Host,
    dir: Director,
    /// r1, r2, r3.
    rs: RealServers,
    /// The virtual server's address (`VIP`, or over IPv6 `2001:db8:91:1::100`).
    vip: IpAddr,
}

fn setup() -> Option<Env> {
    setup_family(false)
}

/// The lab in one family; over IPv6 DAD is off in every host, so no address is tentative.
fn setup_family(v6: bool) -> Option<Env> {
    let lab = Lab::new(&["python3", "nft"])?;
    let (sa, sb, back) = (lab.switch("sa"), lab.switch("sb"), lab.switch("back"));
    let host = |name: &str| {
        let h = lab.host(name);
        if v6 {
            h.run(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
        }
        h
    };
    let ip = |h: &Host, args: &[&str]| {
        let mut a = vec![if v6 { "-6" } else { "-4" }];
        a.extend_from_slice(args);
        h.run("ip", &a);
    };
    let director = host("dir");
    lab.attach(&director, &sa, "eth0", Some(&cidr(v6, 11, 1)));
    lab.attach(&director, &sb, "eth2", Some(&cidr(v6, 12, 1)));
    lab.attach(&director, &back, "eth1", Some(&cidr(v6, 2, 1)));
    if v6 {
        director.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    } else {
        director.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    }
    let vip = if v6 {
        VIP6.to_string()
    } else {
        VIP.to_string()
    };
    let vip_len = if v6 { "128" } else { "32" };
    ip(
        &director,
        &["addr", "add", &format!("{vip}/{vip_len}"), "dev", "lo"],
    );
    let a = host("ca");
    lab.attach(&a, &sa, "eth0", Some(&cidr(v6, 11, 10)));
    ip(&a, &["route", "add", "default", "via", &addr(v6, 11, 1)]);
    let b = host("cb");
    lab.attach(&b, &sb, "eth0", Some(&cidr(v6, 12, 10)));
    ip(&b, &["route", "add", "default", "via", &addr(v6, 12, 1)]);
    let mut rs = Vec::new();
    for i in 0..3 {
        let name = format!("r{}", i + 1);
        let h = host(&name);
        lab.attach(&h, &back, "eth0", Some(&cidr(v6, 2, 11 + i)));
        ip(&h, &["route", "add", "default", "via", &addr(v6, 2, 1)]);
        rs.push((h, name));
    }
    let mut rss = String::new();
    for i in 0..3 {
        rss.push_str(&format!(
            "  real_server {} 80 {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n",
            addr(v6, 2, 11 + i)
        ));
    }
    let dir = Director::new(&lab, director, HA);
    std::fs::write(
        &dir.conf,
        format!("global_defs {{\n  router_id dir\n}}\nvirtual_server {vip} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{rss}}}\n"),
    )
    .unwrap();
    let rs = RealServers::start(&lab, rs, if v6 { "::" } else { "0.0.0.0" });
    Some(Env {
        vip: vip.parse().unwrap(),
        _lab: lab,
        a,
        b,
        dir,
        rs,
    })
}

impl Env {
    fn start(&mut self, label: &str) {
        self.dir.start(label, 3);
    }

    fn ha(&self, args: &[&str]) -> (bool, String) {
        self.dir.cli(args)
    }

    fn status(&self) -> Status {
        self.dir.status()
    }

    /// `n` requests from `client`, one connection each: answers per real server ("fail").
    fn spread(&self, client: &Host, n: usize) -> BTreeMap<String, usize> {
        common::lvs::spread(client, SocketAddr::new(self.vip, 80), n)
    }
}

impl Env {
    /// r3 (the gray real server) stops: the route falls back and A gets r1 and r2.
    fn r3_down_a_falls_back(&mut self) {
        self.rs.down(2);
        assert!(
            wait_until(Duration::from_secs(8), || self
                .status()
                .gray
                .first()
                .is_some_and(|g| g.fallback)),
            "{:?}",
            self.status()
        );
        let m = self.spread(&self.a, 10);
        assert_eq!(
            (m.get("r1"), m.get("r2"), m.get("fail")),
            (Some(&5), Some(&5), None),
            "A with r3 down: {m:?}"
        );
    }

    /// `ha gray add VS --clients A_NET --real-servers R3`: A reaches r3 only, B round robin
    /// over r1 and r2, and `ha gray list` shows the route.
    fn route_a_to_r3(&self, vs: &str, a_net: &str, r3: &str) {
        let (ok, out) = self.ha(&["gray", "add", vs, "--clients", a_net, "--real-servers", r3]);
        assert!(ok, "{out}");
        let m = self.spread(&self.a, 12);
        assert!(only(&m, "r3"), "A with the route: {m:?}");
        let m = self.spread(&self.b, 12);
        assert!(!m.contains_key("r3") && !m.contains_key("fail"), "B: {m:?}");
        assert_eq!(m.get("r1"), Some(&6), "B round robin over r1 r2: {m:?}");
        let (ok, list) = self.ha(&["gray", "list"]);
        assert!(ok && list.contains(a_net) && list.contains(r3), "{list}");
    }
}

fn only(m: &BTreeMap<String, usize>, k: &str) -> bool {
    m.len() == 1 && m.contains_key(k)
}

#[test]
fn a_gray_route_splits_clients_survives_restart_and_goes() {
    let Some(mut env) = setup() else { return };
    env.start("ha");
    let vs = format!("{VIP}:80");
    env.route_a_to_r3(&vs, A_NET, "10.91.2.13:80");
    let st = env.status();
    assert_eq!(st.gray.len(), 1, "{st:?}");
    assert!(!st.gray[0].fallback);
    assert!(env.ha(&["status"]).1.contains(A_NET));
    // a route to a server the virtual server does not have is refused, naming the known ones
    let (ok, out) = env.ha(&[
        "gray",
        "add",
        &vs,
        "--clients",
        "10.91.99.0/24",
        "--real-servers",
        "10.91.2.99:80",
    ]);
    assert!(!ok && out.contains("known: 10.91.2.11:80"), "{out}");

    // SIGTERM and a new ha on the same state file: the route is back
    env.dir.stop();
    let rules = env.dir.host.run("nft", &["list", "ruleset"]);
    assert!(
        !rules.contains("ha_gray"),
        "mark table left behind:\n{rules}"
    );
    env.start("ha2");
    assert!(wait_until(Duration::from_secs(5), || only(
        &env.spread(&env.a, 1),
        "r3"
    )));
    let m = env.spread(&env.a, 9);
    assert!(only(&m, "r3"), "A after the restart: {m:?}");
    let m = env.spread(&env.b, 8);
    assert!(!m.contains_key("r3") && !m.contains_key("fail"), "B: {m:?}");

    // a reload (SIGHUP) keeps it too
    let ha = env.dir.ha.as_ref().unwrap();
    ha.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || env
        .dir
        .ha
        .as_ref()
        .unwrap()
        .output()
        .contains("virtual servers reloaded")));
    let m = env.spread(&env.a, 6);
    assert!(only(&m, "r3"), "A after a reload: {m:?}");
    assert_eq!(env.status().gray.len(), 1);

    // removed: A and B get the whole pool again
    let (ok, out) = env.ha(&["gray", "del", &vs, "--clients", A_NET]);
    assert!(ok, "{out}");
    assert!(env.status().gray.is_empty());
    let m = env.spread(&env.a, 9);
    assert_eq!(
        (m.get("r1"), m.get("r2"), m.get("r3")),
        (Some(&3), Some(&3), Some(&3)),
        "A without the route: {m:?}"
    );
    let (ok, out) = env.ha(&["gray", "del", &vs, "--clients", A_NET]);
    assert!(!ok && out.contains("no gray route"), "{out}");
}

#[test]
fn gray_clients_fall_back_to_the_pool_while_every_gray_server_is_down() {
    let Some(mut env) = setup() else { return };
    env.start("ha");
    let (ok, out) = env.ha(&[
        "gray",
        "add",
        &format!("{VIP}:80"),
        "--clients",
        A_NET,
        "--real-servers",
        "10.91.2.13:80",
    ]);
    assert!(ok, "{out}");
    assert!(only(&env.spread(&env.a, 6), "r3"));
    env.r3_down_a_falls_back();
    assert!(env.ha(&["gray", "list"]).1.contains("FALLBACK"));
    env.rs.up(2);
    assert!(wait_until(Duration::from_secs(8), || !env.status().gray[0].fallback));
    let m = env.spread(&env.a, 10);
    assert!(only(&m, "r3"), "A with r3 back: {m:?}");
    let m = env.spread(&env.b, 10);
    assert!(!m.contains_key("r3") && !m.contains_key("fail"), "B: {m:?}");
}

#[test]
fn an_ipv6_gray_route_splits_ipv6_clients_falls_back_and_goes() {
    let Some(mut env) = setup_family(true) else {
        return;
    };
    env.start("ha");
    let vs = SocketAddr::new(env.vip, 80).to_string();
    // the other family's clients are refused, saying what to give
    let (ok, out) = env.ha(&[
        "gray",
        "add",
        &vs,
        "--clients",
        A_NET,
        "--real-servers",
        "[2001:db8:91:2::13]:80",
    ]);
    assert!(!ok && out.contains("IPv6 networks"), "{out}");
    env.route_a_to_r3(&vs, A_NET6, "[2001:db8:91:2::13]:80");
    let marks = env
        .dir
        .host
        .run("nft", &["list", "table", "ip6", "ha_gray"]);
    assert!(
        marks.contains(&format!("ip6 saddr {A_NET6} ip6 daddr {}", env.vip)),
        "{marks}"
    );

    // r3 down: A falls back to the pool, and returns when r3 is back
    env.r3_down_a_falls_back();
    env.rs.up(2);
    assert!(wait_until(Duration::from_secs(8), || !env.status().gray[0].fallback));
    assert!(only(&env.spread(&env.a, 6), "r3"));

    // removed: A gets the whole pool, the ip6 mark table goes
    let (ok, out) = env.ha(&["gray", "del", &vs, "--clients", A_NET6]);
    assert!(ok, "{out}");
    let m = env.spread(&env.a, 9);
    assert_eq!(
        (m.get("r1"), m.get("r2"), m.get("r3")),
        (Some(&3), Some(&3), Some(&3)),
        "A without the route: {m:?}"
    );
    let rules = env.dir.host.run("nft", &["list", "ruleset"]);
    assert!(!rules.contains("ha_gray"), "{rules}");
}
