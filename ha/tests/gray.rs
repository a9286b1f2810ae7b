//! Gray routes on the nftables backend with real traffic: two client namespaces (A and B)
//! routed through the director (ha, VIP on lo), three real servers behind it. A gray route
//! sends A's network to r3 only and keeps B off r3; it survives a restart; when r3 is down A
//! falls back to the pool and returns when r3 is back; removing it gives everyone the pool.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opsflow_control::Status;
use opsflow_tests::{wait_until, Host, Lab, Proc};

mod common;

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP: &str = "10.91.1.100";
const A_NET: &str = "10.91.11.0/24";

const RS_PY: &str = r#"
import http.server, sys
name, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
"#;

struct Env {
    lab: Lab,
    a: Host,
    b: Host,
    director: Host,
    rs: Vec<(Host, Option<Proc>)>,
    ha: Option<Proc>,
    sock: PathBuf,
    conf: PathBuf,
    state: PathBuf,
}

fn setup() -> Option<Env> {
    let lab = Lab::new(&["python3", "nft"])?;
    let (sa, sb, back) = (lab.switch("sa"), lab.switch("sb"), lab.switch("back"));
    let director = lab.host("dir");
    lab.attach(&director, &sa, "eth0", Some("10.91.11.1/24"));
    lab.attach(&director, &sb, "eth2", Some("10.91.12.1/24"));
    lab.attach(&director, &back, "eth1", Some("10.91.2.1/24"));
    director.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    director.run("ip", &["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    let a = lab.host("ca");
    lab.attach(&a, &sa, "eth0", Some("10.91.11.10/24"));
    a.run("ip", &["route", "add", "default", "via", "10.91.11.1"]);
    let b = lab.host("cb");
    lab.attach(&b, &sb, "eth0", Some("10.91.12.10/24"));
    b.run("ip", &["route", "add", "default", "via", "10.91.12.1"]);
    std::fs::write(lab.path("rs.py"), RS_PY).unwrap();
    let mut rs = Vec::new();
    for i in 0..3 {
        let h = lab.host(&format!("r{}", i + 1));
        lab.attach(&h, &back, "eth0", Some(&format!("10.91.2.{}/24", 11 + i)));
        h.run("ip", &["route", "add", "default", "via", "10.91.2.1"]);
        rs.push((h, None));
    }
    let mut rss = String::new();
    for i in 0..3 {
        rss.push_str(&format!(
            "  real_server 10.91.2.{} 80 {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n",
            11 + i
        ));
    }
    let conf = lab.path("ha.conf");
    std::fs::write(
        &conf,
        format!("global_defs {{\n  router_id dir\n}}\nvirtual_server {VIP} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{rss}}}\n"),
    )
    .unwrap();
    let mut env = Env {
        sock: lab.path("ha.sock"),
        state: lab.path("state.json"),
        conf,
        lab,
        a,
        b,
        director,
        rs,
        ha: None,
    };
    for i in 0..3 {
        env.rs_up(i);
    }
    Some(env)
}

impl Env {
    fn rs_up(&mut self, i: usize) {
        let script = self.lab.path("rs.py");
        let name = format!("r{}", i + 1);
        let (h, p) = &mut self.rs[i];
        *p = Some(h.spawn(&name, "python3", &[script.to_str().unwrap(), &name, "80"]));
        assert!(wait_until(Duration::from_secs(10), || h.tcp_listening(80)));
    }

    fn rs_down(&mut self, i: usize) {
        if let Some(mut p) = self.rs[i].1.take() {
            p.kill();
        }
    }

    fn start(&mut self, label: &str) {
        let p = self.director.spawn(
            label,
            HA,
            &[
                "--config",
                self.conf.to_str().unwrap(),
                "--control",
                self.sock.to_str().unwrap(),
                "--state-file",
                self.state.to_str().unwrap(),
                "--lvs-backend",
                "nftables",
            ],
        );
        self.ha = Some(p);
        assert!(
            wait_until(Duration::from_secs(15), || self.healthy() == 3),
            "three healthy real servers not reported:\n{}",
            self.ha.as_ref().unwrap().output()
        );
    }

    fn ha(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(HA)
            .args(args)
            .args(["--control", self.sock.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn status(&self) -> Status {
        common::status(HA, &self.sock)
    }

    fn healthy(&self) -> usize {
        common::serving(&self.status())
    }

    /// `n` requests from `client`, one connection each: answers per real server ("fail").
    fn spread(&self, client: &Host, n: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
        for _ in 0..n {
            let who = common::who(client, addr);
            *m.entry(who.unwrap_or_else(|| "fail".into())).or_default() += 1;
        }
        m
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
    let (ok, out) = env.ha(&[
        "gray",
        "add",
        &vs,
        "--clients",
        A_NET,
        "--real-servers",
        "10.91.2.13:80",
    ]);
    assert!(ok, "{out}");
    let m = env.spread(&env.a, 12);
    assert!(only(&m, "r3"), "A with the route: {m:?}");
    let m = env.spread(&env.b, 12);
    assert!(!m.contains_key("r3") && !m.contains_key("fail"), "B: {m:?}");
    assert_eq!(m.get("r1"), Some(&6), "B round robin over r1 r2: {m:?}");
    let (ok, list) = env.ha(&["gray", "list"]);
    assert!(
        ok && list.contains(A_NET) && list.contains("10.91.2.13:80"),
        "{list}"
    );
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
    env.ha.as_mut().unwrap().stop(Duration::from_secs(5));
    let rules = env.director.run("nft", &["list", "ruleset"]);
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
    let ha = env.ha.as_ref().unwrap();
    ha.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || env
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
    env.rs_down(2);
    assert!(
        wait_until(Duration::from_secs(8), || env
            .status()
            .gray
            .first()
            .is_some_and(|g| g.fallback)),
        "{:?}",
        env.status()
    );
    let m = env.spread(&env.a, 10);
    assert_eq!(
        (m.get("r1"), m.get("r2"), m.get("fail")),
        (Some(&5), Some(&5), None),
        "A with r3 down: {m:?}"
    );
    assert!(env.ha(&["gray", "list"]).1.contains("FALLBACK"));
    env.rs_up(2);
    assert!(wait_until(Duration::from_secs(8), || !env.status().gray[0].fallback));
    let m = env.spread(&env.a, 10);
    assert!(only(&m, "r3"), "A with r3 back: {m:?}");
    let m = env.spread(&env.b, 10);
    assert!(!m.contains_key("r3") && !m.contains_key("fail"), "B: {m:?}");
}
