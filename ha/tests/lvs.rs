//! Virtual servers on the nftables backend with real traffic, LVS-NAT topology in lab
//! namespaces: a client on the front segment, the director (ha) with the VIP, three real
//! servers and a sorry server behind it; and the same over IPv6 with two real servers.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use opsflow_control::client::Blocking;
use opsflow_control::{Client, Endpoint, Error, RealServer, RsAction, RsChange, Status};
use opsflow_tests::{wait_until, Host, Lab};

mod common;

use common::lvs::{Director, RealServers};

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP: &str = "10.91.1.100";

struct Env {
    lab: Lab,
    client: Host,
    dir: Director,
    rs: RealServers,
    /// The virtual server as clients reach it: `10.91.1.100:80`, `[2001:db8:91:1::100]:80`.
    vs: SocketAddr,
}

fn setup() -> Option<Env> {
    let lab = Lab::new(&["python3", "nft"])?;
    let front = lab.switch("front");
    let back = lab.switch("back");
    let client = lab.host("cl");
    lab.attach(&client, &front, "eth0", Some("10.91.1.10/24"));
    let director = lab.host("dir");
    lab.attach(&director, &front, "eth0", Some("10.91.1.2/24"));
    lab.attach(&director, &back, "eth1", Some("10.91.2.1/24"));
    director.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    let mut rs = Vec::new();
    for (i, name) in ["r1", "r2", "r3", "sorry"].iter().enumerate() {
        let h = lab.host(name);
        let last = if *name == "sorry" { 99 } else { 11 + i };
        lab.attach(&h, &back, "eth0", Some(&format!("10.91.2.{last}/24")));
        h.run("ip", &["route", "add", "default", "via", "10.91.2.1"]);
        rs.push((h, name.to_string()));
    }
    let env = Env::new(lab, (client, director), rs, format!("{VIP}:80"), "0.0.0.0");
    std::fs::write(&env.dir.conf, conf(&env.lab.path("notify.log"))).unwrap();
    Some(env)
}

/// The IPv6 lab: front 2001:db8:91:1::/64 (client ::10, director ::2, VIP ::100), back
/// 2001:db8:91:2::/64 (director ::1, r1 ::11 with HTTP_GET, r2 ::12 with TCP_CHECK). DAD is
/// off in every host, so no address is ever tentative.
const VIP6: &str = "2001:db8:91:1::100";

fn setup6() -> Option<Env> {
    let lab = Lab::new(&["python3", "nft"])?;
    let front = lab.switch("front6");
    let back = lab.switch("back6");
    let host = |name: &str| {
        let h = lab.host(name);
        h.run(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
        h
    };
    let client = host("cl6");
    lab.attach(&client, &front, "eth0", Some("2001:db8:91:1::10/64"));
    let director = host("dir6");
    lab.attach(&director, &front, "eth0", Some("2001:db8:91:1::2/64"));
    lab.attach(&director, &back, "eth1", Some("2001:db8:91:2::1/64"));
    director.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    director.run("ip", &["addr", "add", &format!("{VIP6}/64"), "dev", "eth0"]);
    let mut rs = Vec::new();
    for (i, name) in ["r1", "r2"].iter().enumerate() {
        let h = host(name);
        lab.attach(
            &h,
            &back,
            "eth0",
            Some(&format!("2001:db8:91:2::{}/64", 11 + i)),
        );
        h.run(
            "ip",
            &["-6", "route", "add", "default", "via", "2001:db8:91:2::1"],
        );
        rs.push((h, name.to_string()));
    }
    let env = Env::new(lab, (client, director), rs, format!("[{VIP6}]:80"), "::");
    let check = "connect_timeout 1\n      retry 1\n      delay_before_retry 1";
    let conf = format!(
        "global_defs {{\n  router_id dir6\n}}\nvirtual_server {VIP6} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n  real_server 2001:db8:91:2::11 80 {{\n    HTTP_GET {{\n      url {{\n        path /health\n        status_code 200\n      }}\n      {check}\n    }}\n  }}\n  real_server 2001:db8:91:2::12 80 {{\n    TCP_CHECK {{\n      {check}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&env.dir.conf, conf).unwrap();
    Some(env)
}

fn conf(notify_log: &std::path::Path) -> String {
    let n = notify_log.display();
    format!(
        r#"global_defs {{
  router_id dir
}}
vrrp_instance VI_1 {{
  state MASTER
  interface eth0
  virtual_router_id 71
  priority 150
  advert_int 1
  virtual_ipaddress {{
    {VIP}/24 dev eth0
  }}
}}
virtual_server {VIP} 80 {{
  delay_loop 1
  lb_algo rr
  lb_kind NAT
  protocol TCP
  sorry_server 10.91.2.99 80
  real_server 10.91.2.11 80 {{
    weight 1
    notify_down "/bin/sh -c 'echo down r1 >> {n}'"
    HTTP_GET {{
      url {{
        path /health
        status_code 200
      }}
      connect_timeout 1
      retry 1
      delay_before_retry 1
    }}
  }}
  real_server 10.91.2.12 80 {{
    weight 1
    notify_down "/bin/sh -c 'echo down r2 >> {n}'"
    notify_up "/bin/sh -c 'echo up r2 >> {n}'"
    TCP_CHECK {{
      connect_timeout 1
      retry 1
      delay_before_retry 1
    }}
  }}
  real_server 10.91.2.13 80 {{
    weight 1
    TCP_CHECK {{
      connect_timeout 1
      retry 1
      delay_before_retry 1
    }}
  }}
}}
"#
    )
}

impl Env {
    /// The lab with its real servers (hosts with their names, listening on `bind`) started.
    fn new(
        lab: Lab,
        (client, director): (Host, Host),
        rs: Vec<(Host, String)>,
        vs: String,
        bind: &'static str,
    ) -> Env {
        Env {
            dir: Director::new(&lab, director, HA),
            rs: RealServers::start(&lab, rs, bind),
            vs: vs.parse().unwrap(),
            lab,
            client,
        }
    }

    /// Starts ha; every real server but the sorry server healthy, the virtual server answers.
    fn start(&mut self) {
        let want = self.rs.names.iter().filter(|n| *n != "sorry").count();
        self.dir.start("ha", want);
        assert!(wait_until(Duration::from_secs(5), || self.who().is_some()));
    }

    fn status(&self) -> Status {
        self.dir.status()
    }

    fn status_text(&self) -> String {
        self.dir.status_text()
    }

    /// The real server `rip` (any port) as `ha status --json` reports it.
    fn rs(&self, rip: &str) -> Option<RealServer> {
        let rip: std::net::IpAddr = rip.parse().unwrap();
        self.status()
            .virtual_servers
            .into_iter()
            .flat_map(|v| v.real_servers)
            .find(|r| r.address == rip)
    }

    /// Waits until the status reports real server `rip` healthy (or not).
    fn wait_health(&self, rip: &str, healthy: bool) {
        assert!(
            wait_until(Duration::from_secs(8), || self
                .rs(rip)
                .is_some_and(|r| r.healthy == healthy)),
            "{rip} not reported healthy={healthy}: {}",
            self.status_text()
        );
    }

    fn control(&self, vs: &str, rs: &str, action: RsAction) -> Result<RsChange, Error> {
        Blocking::new(Client::new(
            Endpoint::parse(self.dir.sock.to_str().unwrap(), None).unwrap(),
        ))
        .unwrap()
        .set_real_server(vs, rs, action)
    }

    /// One request on a new connection from the client: the real server's name.
    fn who(&self) -> Option<String> {
        common::who(&self.client, self.vs)
    }

    /// Counts of answers per real server over `n` new connections; failures under "fail".
    fn spread(&self, n: usize) -> BTreeMap<String, usize> {
        common::lvs::spread(&self.client, self.vs, n)
    }
}

fn count(m: &BTreeMap<String, usize>, k: &str) -> usize {
    m.get(k).copied().unwrap_or(0)
}

#[test]
fn round_robin_failover_and_recovery() {
    let Some(mut env) = setup() else { return };
    env.start();
    let m = env.spread(30);
    assert_eq!(
        (count(&m, "r1"), count(&m, "r2"), count(&m, "r3")),
        (10, 10, 10),
        "{m:?}"
    );

    // r2 dies: out of rotation within delay_loop x (retry + 1) plus the check itself
    env.rs.down(1);
    let t0 = Instant::now();
    assert!(wait_until(Duration::from_secs(8), || env
        .rs("10.91.2.12")
        .is_some_and(|r| !r.healthy)));
    let out = t0.elapsed();
    assert!(out < Duration::from_millis(3500), "r2 out after {out:?}");
    let m = env.spread(20);
    assert_eq!(count(&m, "r2") + count(&m, "fail"), 0, "{m:?}");
    assert!(env
        .rs("10.91.2.12")
        .and_then(|r| r.last_error)
        .unwrap_or_default()
        .contains("connect"));
    let log = env.lab.path("notify.log");
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("down r2")
    }));

    // r2 comes back: in rotation again after one good check
    env.rs.up(1);
    assert!(wait_until(Duration::from_secs(4), || env
        .rs("10.91.2.12")
        .is_some_and(|r| r.healthy)));
    let m = env.spread(15);
    assert_eq!(count(&m, "r2"), 5, "{m:?}");
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("up r2")
    }));

    // all down: the sorry server answers
    for i in 0..3 {
        env.rs.down(i);
    }
    assert!(
        wait_until(Duration::from_secs(10), || env.who().as_deref()
            == Some("sorry")),
        "{}",
        env.status_text()
    );
    assert!(env.status().virtual_servers[0].sorry_server_active);
    assert!(env
        .status_text()
        .contains("sorry server 10.91.2.99:80 in use"));
}

#[test]
fn drain_spares_open_connections_and_survives_restart() {
    let Some(mut env) = setup() else { return };
    env.start();
    // an open keep-alive connection: which real server holds it?
    let mut conn = env.client.enter(|| {
        let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap()
    });
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let ask = |c: &mut TcpStream| -> String {
        c.write_all(b"GET /who HTTP/1.1\r\nHost: vip\r\n\r\n")
            .unwrap();
        // headers and body may come in separate segments: read until the body is complete
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return body.trim().to_string();
                }
            }
        }
    };
    let held = ask(&mut conn);
    let rip = match held.as_str() {
        "r1" => "10.91.2.11",
        "r2" => "10.91.2.12",
        "r3" => "10.91.2.13",
        other => panic!("the open connection landed on {other:?}"),
    };
    let reply = env
        .control(&format!("{VIP}:80"), &format!("{rip}:80"), RsAction::Drain)
        .unwrap();
    assert!(reply.maintenance, "{reply:?}");
    let r = env.rs(rip).unwrap();
    assert!(r.maintenance);
    assert_eq!(r.weight, 0);
    assert_eq!(r.configured_weight, 1);
    assert!(wait_until(Duration::from_secs(3), || env
        .rs(rip)
        .is_some_and(|r| r.active_connections == 1)));
    let m = env.spread(20);
    assert_eq!(count(&m, &held) + count(&m, "fail"), 0, "{m:?}");
    // the open connection still reaches the drained server
    assert_eq!(ask(&mut conn), held);
    let table = env.status_text();
    assert!(table.contains("drained"), "{table}");

    // unknown names are 404s that say what exists
    let err = env
        .control(&format!("{VIP}:81"), &format!("{rip}:80"), RsAction::Drain)
        .unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert!(err.to_string().contains("known: 10.91.1.100:80"), "{err}");

    // a restart keeps the drain (state file); shutdown removes our table in between
    env.dir.stop();
    let rules = env.dir.host.run("nft", &["list", "ruleset"]);
    assert!(!rules.contains("10.91.2.1"), "rules left behind:\n{rules}");
    env.dir.spawn("ha2");
    assert!(wait_until(Duration::from_secs(10), || env.dir.healthy() == 2));
    assert!(env.rs(rip).unwrap().maintenance);
    let m = env.spread(12);
    assert_eq!(count(&m, &held), 0, "{m:?}");

    // enable: back at its configured weight
    env.control(&format!("{VIP}:80"), &format!("{rip}:80"), RsAction::Enable)
        .unwrap();
    assert_eq!(env.rs(rip).unwrap().weight, 1);
    let m = env.spread(12);
    assert_eq!(count(&m, &held), 4, "{m:?}");
}

#[test]
fn ipv6_virtual_server_checks_drains_and_names_in_brackets() {
    let Some(mut env) = setup6() else { return };
    env.start();
    let m = env.spread(10);
    assert_eq!((count(&m, "r1"), count(&m, "r2")), (5, 5), "{m:?}");
    let vs = format!("[{VIP6}]:80");
    let table = env.status_text();
    assert!(table.contains(&vs), "{table}");
    assert!(table.contains("[2001:db8:91:2::12]:80"), "{table}");
    let st = env.status();
    assert_eq!(st.virtual_servers[0].id, vs);
    assert_eq!(st.virtual_servers[0].address, Some(VIP6.parse().unwrap()));
    assert_eq!(st.virtual_servers[0].backend, "nftables");

    // r2 stops: its TCP_CHECK takes it out, every request goes to r1
    env.rs.down(1);
    env.wait_health("2001:db8:91:2::12", false);
    let m = env.spread(8);
    assert_eq!(count(&m, "r1"), 8, "{m:?}");
    let err = env.rs("2001:db8:91:2::12").unwrap().last_error.unwrap();
    assert!(err.contains("[2001:db8:91:2::12]:80"), "{err}");

    // and back after a good check
    env.rs.up(1);
    assert!(wait_until(Duration::from_secs(6), || env
        .rs("2001:db8:91:2::12")
        .is_some_and(|r| r.healthy)));
    let m = env.spread(8);
    assert_eq!((count(&m, "r1"), count(&m, "r2")), (4, 4), "{m:?}");

    // drain and enable with bracketed names (any spelling of the address)
    let reply = env
        .control(
            "[2001:0db8:91:1:0::100]:80",
            "[2001:db8:91:2::11]:80",
            RsAction::Drain,
        )
        .unwrap();
    assert_eq!(
        (reply.virtual_server.as_str(), reply.real_server.as_str()),
        (vs.as_str(), "[2001:db8:91:2::11]:80")
    );
    assert_eq!(env.rs("2001:db8:91:2::11").unwrap().weight, 0);
    let m = env.spread(6);
    assert_eq!(count(&m, "r2"), 6, "{m:?}");
    env.control(&vs, "[2001:db8:91:2::11]:80", RsAction::Enable)
        .unwrap();
    let m = env.spread(6);
    assert_eq!((count(&m, "r1"), count(&m, "r2")), (3, 3), "{m:?}");

    // shutdown removes the ip6 table
    env.dir.stop();
    let rules = env.dir.host.run("nft", &["list", "ruleset"]);
    assert!(
        !rules.contains("2001:db8:91:2::"),
        "rules left behind:\n{rules}"
    );
}

#[test]
fn ipv6_fwmark_virtual_server_serves_marked_traffic_from_ipv6_real_servers() {
    let Some(mut env) = setup6() else { return };
    // the site marks the VIP's traffic; ha forwards mark 6 (an inet6 service: ip_family and
    // real servers agree)
    let check = "connect_timeout 1\n      retry 1\n      delay_before_retry 1";
    let conf = format!(
        "global_defs {{\n  router_id dir6\n}}\nvirtual_server fwmark 6 {{\n  ip_family inet6\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  real_server 2001:db8:91:2::11 80 {{\n    TCP_CHECK {{\n      {check}\n    }}\n  }}\n  real_server 2001:db8:91:2::12 80 {{\n    TCP_CHECK {{\n      {check}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&env.dir.conf, conf).unwrap();
    let marks = format!(
        "table ip6 site_marks {{\n\tchain pre {{\n\t\ttype filter hook prerouting priority mangle; policy accept;\n\t\tip6 daddr {VIP6} tcp dport 80 meta mark set 6\n\t}}\n}}\n"
    );
    let path = env.lab.path("marks.nft");
    std::fs::write(&path, marks).unwrap();
    env.dir.host.run("nft", &["-f", path.to_str().unwrap()]);
    env.start();
    let st = env.status();
    assert_eq!(
        st.virtual_servers[0].id,
        "fwmark6-6",
        "{}",
        env.status_text()
    );
    let m = env.spread(10);
    assert_eq!((count(&m, "r1"), count(&m, "r2")), (5, 5), "{m:?}");
    let rules = env.dir.host.run("nft", &["list", "table", "ip6", "ha_lvs"]);
    assert!(rules.contains("meta mark 0x00000006"), "{rules}");

    // r2 stops: its checker takes it out of the mark's service
    env.rs.down(1);
    env.wait_health("2001:db8:91:2::12", false);
    let m = env.spread(6);
    assert_eq!(count(&m, "r1"), 6, "{m:?}");
    // a drain names the service as the status does
    env.control("fwmark6-6", "[2001:db8:91:2::11]:80", RsAction::Drain)
        .unwrap();
    assert_eq!(env.rs("2001:db8:91:2::11").unwrap().weight, 0);

    // shutdown removes ha's ip6 table and leaves the site's
    env.dir.stop();
    let rules = env.dir.host.run("nft", &["list", "ruleset"]);
    assert!(!rules.contains("ha_lvs"), "rules left behind:\n{rules}");
    assert!(rules.contains("site_marks"), "{rules}");
}
