//! ha pairs in lab namespaces: two nodes and a client on a bridge, real keepalived as a peer.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsflow_tests::{wait_until, Host, Lab, Link, Proc};

mod common;

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP: &str = "10.80.0.100";

struct Node {
    host: Host,
    link: Link,
    proc: Option<Proc>,
    starts: usize,
}

struct Env {
    lab: Lab,
    nodes: Vec<Node>,
    client: Host,
}

fn setup(n: usize, tools: &[&str]) -> Option<Env> {
    let mut all = vec!["python3", "curl"];
    all.extend_from_slice(tools);
    let lab = Lab::new(&all)?;
    let lan = lab.switch("lan");
    let mut nodes = Vec::new();
    for k in 1..=n {
        let host = lab.host(&format!("n{k}"));
        let link = lab.attach(&host, &lan, "eth0", Some(&format!("10.80.0.{k}/24")));
        let www = lab.path(&format!("www-n{k}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("who"), format!("n{k}\n")).unwrap();
        let web = host.spawn(
            &format!("web-n{k}"),
            "python3",
            &[
                "-m",
                "http.server",
                "8000",
                "--bind",
                "0.0.0.0",
                "--directory",
                &www.to_string_lossy(),
            ],
        );
        assert!(wait_until(Duration::from_secs(10), || host.tcp_listening(8000)));
        std::mem::forget(web); // killed with the namespace
        nodes.push(Node {
            host,
            link,
            proc: None,
            starts: 0,
        });
    }
    let client = lab.host("cl");
    lab.attach(&client, &lan, "eth0", Some("10.80.0.9/24"));
    Some(Env { lab, nodes, client })
}

/// A keepalived.conf for node `k` (the acceptance scripts' shape: one instance, VRID 51).
#[allow(clippy::too_many_arguments)]
fn conf(
    k: usize,
    prio: u8,
    state: &str,
    version: u8,
    advert: &str,
    extra: &str,
    global: &str,
    pre: &str,
) -> String {
    let auth = if version == 2 {
        "  authentication {\n    auth_type PASS\n    auth_pass s3cr3t\n  }\n"
    } else {
        ""
    };
    format!(
        "global_defs {{\n  router_id n{k}\n  vrrp_version {version}\n{global}\n}}\n{pre}\nvrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int {advert}\n{auth}  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n{extra}\n}}\n"
    )
}

impl Env {
    fn node(&self, k: usize) -> &Node {
        &self.nodes[k - 1]
    }

    fn write(&self, k: usize, text: &str) -> PathBuf {
        let p = self.lab.path(&format!("n{k}.conf"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn sock(&self, k: usize) -> String {
        self.lab
            .path(&format!("n{k}.sock"))
            .to_string_lossy()
            .into_owned()
    }

    fn start(&mut self, k: usize, text: &str) {
        let conf = self.write(k, text);
        let sock = self.sock(k);
        let n = &mut self.nodes[k - 1];
        n.starts += 1;
        let p = n.host.spawn(
            &format!("ha-n{k}-{}", n.starts),
            HA,
            &["--config", &conf.to_string_lossy(), "--control", &sock],
        );
        n.proc = Some(p);
        let p = n.proc.as_mut().unwrap();
        assert!(
            p.wait_for_output("ha ready", Duration::from_secs(10)),
            "{}",
            p.output()
        );
    }

    fn start_keepalived(&mut self, k: usize, text: &str) {
        let conf = self.write(k, text);
        let base = self.lab.path(&format!("ka-n{k}"));
        let n = &mut self.nodes[k - 1];
        n.starts += 1;
        let label = format!("ka-n{k}-{}", n.starts);
        n.proc = Some(common::keepalived(&n.host, &label, &conf, &base));
    }

    fn kill(&mut self, k: usize) -> Instant {
        let t = Instant::now();
        if let Some(mut p) = self.nodes[k - 1].proc.take() {
            p.kill();
        }
        t
    }

    fn term(&mut self, k: usize) -> Instant {
        let t = Instant::now();
        if let Some(mut p) = self.nodes[k - 1].proc.take() {
            assert!(
                p.stop(Duration::from_secs(5)).is_some(),
                "ha did not stop on SIGTERM"
            );
        }
        t
    }

    fn vip_on(&self, k: usize) -> bool {
        self.node(k).host.has_addr(VIP)
    }

    fn who(&self) -> String {
        let out = self.client.output(
            "curl",
            &["-s", "--max-time", "0.3", &format!("http://{VIP}:8000/who")],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn served_by(&self, k: usize, within: Duration) -> bool {
        let want = format!("n{k}");
        wait_until(within, || self.who() == want)
    }

    /// (state, effective priority) from `ha status --json`.
    fn status(&self, k: usize) -> (String, u64) {
        let out = std::process::Command::new(HA)
            .args(["status", "--control", &self.sock(k), "--json"])
            .output()
            .unwrap();
        let v: opsflow_control::Status = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.vrrp.first().map_or((String::new(), 0), |i| {
            (i.state.to_string(), u64::from(i.effective_priority))
        })
    }
}

#[test]
fn v2_pair_fails_over_preempts_and_hands_over_on_sigterm() {
    let Some(mut env) = setup(2, &[]) else { return };
    env.start(1, &conf(1, 150, "MASTER", 2, "1", "", "", ""));
    env.start(2, &conf(2, 100, "BACKUP", 2, "1", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    assert!(!env.vip_on(2));
    assert_eq!(env.status(1), ("MASTER".into(), 150));
    assert!(wait_until(Duration::from_secs(3), || env.status(2).0 == "BACKUP"));
    // kill -9: the backup takes over after the master down interval (3.61 s at most)
    let t0 = env.kill(1);
    assert!(env.served_by(2, Duration::from_secs(6)));
    assert!(
        t0.elapsed() < Duration::from_millis(4600),
        "failover took {:?}",
        t0.elapsed()
    );
    // the higher priority returns and preempts
    env.start(1, &conf(1, 150, "MASTER", 2, "1", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    assert!(wait_until(Duration::from_secs(3), || !env.vip_on(2)));
    // SIGTERM: priority 0, the backup takes over after its skew time (0.61 s)
    let t0 = env.term(1);
    assert!(env.served_by(2, Duration::from_secs(3)));
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "graceful handover took {:?}",
        t0.elapsed()
    );
    assert!(!env.vip_on(1), "SIGTERM left the VIP behind");
}

#[test]
fn nopreempt_and_a_cut_link_means_fault() {
    let Some(mut env) = setup(2, &[]) else { return };
    env.start(2, &conf(2, 100, "BACKUP", 3, "0.2", "", "", ""));
    assert!(env.served_by(2, Duration::from_secs(4)));
    env.start(1, &conf(1, 200, "BACKUP", 3, "0.2", "  nopreempt", "", ""));
    assert!(wait_until(Duration::from_secs(3), || env.status(1).0 == "BACKUP"));
    std::thread::sleep(Duration::from_millis(1500)); // several advert intervals: nothing may change
    assert_eq!(env.who(), "n2", "nopreempt: the higher priority took over");
    // cut n2's cable: n2 goes to FAULT and drops the VIP, n1 takes over
    env.node(2).link.cut();
    assert!(wait_until(Duration::from_secs(3), || env.status(2).0 == "FAULT"));
    assert!(!env.vip_on(2));
    assert!(env.served_by(1, Duration::from_secs(3)));
    env.node(2).link.restore();
    assert!(wait_until(Duration::from_secs(3), || env.status(2).0 == "BACKUP"));
}

fn smtp_sink(host: &Host) -> Arc<Mutex<String>> {
    let mail = Arc::new(Mutex::new(String::new()));
    let l = host.enter(|| TcpListener::bind("127.0.0.1:2525").unwrap());
    let m = mail.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut w = s.try_clone().unwrap();
            let mut data = false;
            let _ = w.write_all(b"220 sink\r\n");
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if data {
                    if line == "." {
                        data = false;
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        m.lock().unwrap().push_str(&format!("{line}\n"));
                    }
                    continue;
                }
                let cmd = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match cmd.as_str() {
                    "DATA" => {
                        data = true;
                        b"354 go on\r\n"
                    }
                    "QUIT" => b"221 bye\r\n",
                    _ => {
                        m.lock().unwrap().push_str(&format!("{line}\n"));
                        b"250 ok\r\n"
                    }
                };
                let _ = w.write_all(reply);
            }
        }
    });
    mail
}

#[test]
fn track_script_notify_smtp_and_reload_without_flap() {
    let Some(mut env) = setup(2, &[]) else { return };
    let flag = env.lab.path("flag");
    let log = env.lab.path("notify.log");
    let notify = env.lab.path("notify.sh");
    std::fs::write(
        &notify,
        format!("#!/bin/sh\necho \"$*\" >>{}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mail = smtp_sink(&env.node(1).host);
    let script = format!("vrrp_script chk_flag {{\n  script \"/bin/sh -c 'test ! -e {}'\"\n  interval 0.2\n  weight -60\n  fall 2\n  rise 1\n}}\n", flag.display());
    let extra = format!(
        "  track_script {{\n    chk_flag\n  }}\n  notify_master \"{n} master\"\n  notify_backup \"{n} backup\"\n  notify \"{n} generic\"\n  smtp_alert",
        n = notify.display()
    );
    let global = "  notification_email {\n    ops@lab.test\n  }\n  notification_email_from ha@lab.test\n  smtp_server 127.0.0.1 2525\n  smtp_connect_timeout 5";
    let c1 = conf(1, 150, "MASTER", 3, "0.2", &extra, global, &script);
    env.start(1, &c1);
    env.start(2, &conf(2, 100, "BACKUP", 3, "0.2", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(4)));
    std::fs::write(&flag, "").unwrap();
    assert!(
        env.served_by(2, Duration::from_secs(4)),
        "weight -60 did not move the VIP"
    );
    assert!(
        wait_until(Duration::from_secs(2), || env.status(1)
            == ("BACKUP".into(), 90)),
        "{:?}",
        env.status(1)
    );
    std::fs::remove_file(&flag).unwrap();
    assert!(env.served_by(1, Duration::from_secs(4)));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(3), || text()
            .contains("generic INSTANCE VI_1 MASTER 150")),
        "{}",
        text()
    );
    // notify scripts run in order, after the transitions: wait for the third one
    let seq = || -> String {
        text()
            .lines()
            .filter(|l| *l == "master" || *l == "backup")
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        wait_until(Duration::from_secs(3), || seq()
            .contains("master backup master")),
        "{}",
        seq()
    );
    assert!(
        wait_until(Duration::from_secs(5), || mail.lock().unwrap().contains(
            "Subject: [n1] VRRP Instance VI_1 - Entering MASTER state"
        )),
        "{}",
        mail.lock().unwrap()
    );
    // a config nested 50,000 deep (past the parser's limit) is refused on reload: ha runs on,
    // still master at 150
    env.write(
        1,
        &("global_defs {\n".repeat(50_000) + &"}\n".repeat(50_000) + &c1),
    );
    env.node(1).proc.as_ref().unwrap().signal(libc::SIGHUP);
    let p = env.nodes[0].proc.as_mut().unwrap();
    assert!(
        p.wait_for_output("reload refused", Duration::from_secs(10)),
        "no refusal of the nested config: {}",
        p.output()
    );
    assert!(
        p.is_running(),
        "ha died on reloading a deeply nested config"
    );
    assert_eq!(env.status(1), ("MASTER".into(), 150));
    // reload with a new priority: the VIP never leaves n1
    env.write(1, &c1.replace("priority 150", "priority 160"));
    let watch = {
        let host = env.node(1).host.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(2);
            let mut gone = 0;
            while Instant::now() < end {
                if !host.has_addr(VIP) {
                    gone += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            gone
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    env.node(1).proc.as_ref().unwrap().signal(libc::SIGHUP);
    assert_eq!(
        watch.join().unwrap(),
        0,
        "the VIP left n1 during the reload"
    );
    assert!(
        wait_until(Duration::from_secs(3), || env.status(1)
            == ("MASTER".into(), 160)),
        "{:?}",
        env.status(1)
    );
}

#[test]
fn mixed_pairs_with_keepalived_v2_multicast_and_v3_unicast() {
    let Some(mut env) = setup(2, &["keepalived"]) else {
        return;
    };
    // ha master, keepalived backup (v2 multicast)
    env.start(1, &conf(1, 150, "MASTER", 2, "1", "", "", ""));
    env.start_keepalived(2, &conf(2, 100, "BACKUP", 2, "1", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!env.vip_on(2), "split brain: keepalived holds the VIP too");
    env.kill(1);
    assert!(
        env.served_by(2, Duration::from_secs(6)),
        "keepalived did not take over from ha"
    );
    env.start(1, &conf(1, 150, "MASTER", 2, "1", "", "", ""));
    assert!(
        env.served_by(1, Duration::from_secs(6)),
        "ha did not preempt keepalived"
    );
    env.term(1);
    env.term(2);
    // v3 unicast at 0.1 s, keepalived master, ha backup
    let uni = |me: usize, peer: usize| {
        format!("  unicast_src_ip 10.80.0.{me}\n  unicast_peer {{\n    10.80.0.{peer}\n  }}")
    };
    env.start_keepalived(1, &conf(1, 150, "MASTER", 3, "0.1", &uni(1, 2), "", ""));
    env.start(2, &conf(2, 100, "BACKUP", 3, "0.1", &uni(2, 1), "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    assert!(wait_until(Duration::from_secs(3), || env.status(2).0 == "BACKUP"));
    let t0 = env.kill(1);
    assert!(wait_until(Duration::from_secs(3), || env.vip_on(2)));
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "ha took {:?} to take over at 0.1 s adverts",
        t0.elapsed()
    );
}

#[test]
fn adverts_with_the_wrong_password_are_ignored() {
    let Some(mut env) = setup(2, &[]) else { return };
    env.start(1, &conf(1, 150, "MASTER", 2, "1", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    env.start(
        2,
        &conf(2, 200, "MASTER", 2, "1", "", "", "").replace("s3cr3t", "wrong"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.status(1).0, "MASTER");
    let m = String::from_utf8_lossy(
        &env.node(1)
            .host
            .output(
                "curl",
                &["-s", "--unix-socket", &env.sock(1), "http://ha/metrics"],
            )
            .stdout,
    )
    .into_owned();
    assert!(
        m.contains("ha_vrrp_adverts_dropped_total{reason=\"auth_mismatch\"}"),
        "{m}"
    );
}

#[test]
fn use_vmac_keeps_the_virtual_mac_across_a_handover() {
    let Some(mut env) = setup(2, &[]) else { return };
    env.start(1, &conf(1, 150, "MASTER", 3, "0.2", "  use_vmac", "", ""));
    env.start(2, &conf(2, 100, "BACKUP", 3, "0.2", "  use_vmac", "", ""));
    assert!(env.served_by(1, Duration::from_secs(4)));
    assert!(
        wait_until(Duration::from_secs(2), || env.status(2).0 == "BACKUP"),
        "the backup did not hear the master's adverts from the VMAC"
    );
    let n1 = &env.node(1).host;
    assert_eq!(
        n1.run("cat", &["/sys/class/net/vrrp.51/address"]).trim(),
        "00:00:5e:00:01:33"
    );
    assert!(
        n1.run("ip", &["-4", "addr", "show", "dev", "vrrp.51"])
            .contains(VIP),
        "the VIP is not on the VMAC interface"
    );
    // only the master holds the virtual MAC (a backup with it would make the switch flap)
    assert!(!env
        .node(2)
        .host
        .run("ip", &["-o", "link"])
        .contains("vrrp.51"));
    let neigh = env.client.run("ip", &["neigh", "show", VIP]);
    assert!(
        neigh.contains("00:00:5e:00:01:33"),
        "the client does not reach the VIP at the virtual MAC: {neigh}"
    );
    env.term(1);
    assert!(env.served_by(2, Duration::from_secs(3)));
    assert!(
        !env.node(1)
            .host
            .run("ip", &["-o", "link"])
            .contains("vrrp.51"),
        "SIGTERM left the VMAC interface behind"
    );
    assert!(env
        .node(2)
        .host
        .run("ip", &["-4", "addr", "show", "dev", "vrrp.51"])
        .contains(VIP));
    // the new master announces the VIP from the virtual MAC: the client keeps the same MAC
    for _ in 0..3 {
        env.who();
    }
    let neigh = env.client.run("ip", &["neigh", "show", VIP]);
    assert!(
        neigh.contains("00:00:5e:00:01:33"),
        "after the handover the client has {neigh}"
    );
}

#[test]
fn a_sync_group_moves_together_and_does_not_flap() {
    let Some(mut env) = setup(2, &[]) else { return };
    let two = |k: usize, p1: u8, p2: u8, state: &str| {
        format!(
            "global_defs {{\n  router_id n{k}\n  vrrp_version 3\n}}\nvrrp_sync_group G {{\n  group {{\n    VI_1\n    VI_2\n  }}\n}}\n\
             vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  priority {p1}\n  advert_int 0.2\n  virtual_ipaddress {{\n    10.80.0.100/24\n  }}\n}}\n\
             vrrp_instance VI_2 {{\n  state {state}\n  interface eth0\n  virtual_router_id 52\n  priority {p2}\n  advert_int 0.2\n  virtual_ipaddress {{\n    10.80.0.101/24\n  }}\n}}\n"
        )
    };
    env.start(1, &two(1, 150, 150, "MASTER"));
    assert!(wait_until(Duration::from_secs(3), || env.vip_on(1)
        && env.node(1).host.has_addr("10.80.0.101")));
    // n2 outranks n1 for VI_2 only. Without the group the VIPs would split between the
    // nodes; with it, n2's VI_2 may not go master while its VI_1 still hears a master (as
    // keepalived's vrrp_sync_can_goto_master), so the group stays whole on n1, and stays put
    env.start(2, &two(2, 100, 200, "BACKUP"));
    let hosts = [env.node(1).host.clone(), env.node(2).host.clone()];
    let on = move |k: usize| {
        (
            hosts[k - 1].has_addr("10.80.0.100"),
            hosts[k - 1].has_addr("10.80.0.101"),
        )
    };
    assert!(wait_until(Duration::from_secs(3), || env.status(2).0 == "BACKUP"));
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        assert_eq!(
            (on(1), on(2)),
            ((true, true), (false, false)),
            "the group split or flapped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the whole group fails over together when n1 stops
    env.term(1);
    assert!(
        wait_until(Duration::from_secs(3), || on(2) == (true, true)),
        "n2: {:?}",
        env.node(2).host.addrs()
    );
}

/// Issue 13: a sync group member whose tracked interface goes down takes the whole group to
/// FAULT, so a keepalived backup of the same group takes both VIPs (and gives them back).
#[test]
fn a_sync_group_member_fault_hands_the_whole_group_to_a_keepalived_backup() {
    let Some(mut env) = setup(2, &["keepalived"]) else {
        return;
    };
    let two = |k: usize, prio: u8| {
        format!(
            "global_defs {{\n  router_id n{k}\n}}\nvrrp_sync_group G {{\n  group {{\n    VI_1\n    VI_2\n  }}\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    10.80.0.100/24 dev eth0\n  }}\n}}\n\
             vrrp_instance VI_2 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 52\n  priority {prio}\n  advert_int 1\n  track_interface {{\n    eth1\n  }}\n  virtual_ipaddress {{\n    10.80.0.101/24 dev eth0\n  }}\n}}\n"
        )
    };
    for k in [1, 2] {
        let h = &env.node(k).host;
        h.run(
            "ip",
            &[
                "link", "add", "eth1", "type", "veth", "peer", "name", "eth2",
            ],
        );
        h.run("ip", &["link", "set", "eth2", "up"]);
        h.run("ip", &["link", "set", "eth1", "up"]);
    }
    env.start(1, &two(1, 150));
    env.start_keepalived(2, &two(2, 100));
    let hosts = [env.node(1).host.clone(), env.node(2).host.clone()];
    let on = move |k: usize| {
        (
            hosts[k - 1].has_addr("10.80.0.100"),
            hosts[k - 1].has_addr("10.80.0.101"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || on(1) == (true, true)
            && on(2) == (false, false)),
        "start: n1 {:?}, n2 {:?}",
        on(1),
        on(2)
    );
    env.node(1).host.run("ip", &["link", "set", "eth1", "down"]);
    assert!(
        wait_until(Duration::from_secs(6), || on(1) == (false, false)
            && on(2) == (true, true)),
        "eth1 down on ha: n1 {:?}, keepalived n2 {:?}",
        on(1),
        on(2)
    );
    assert_eq!(env.status(1).0, "FAULT");
    env.node(1).host.run("ip", &["link", "set", "eth1", "up"]);
    assert!(
        wait_until(Duration::from_secs(8), || on(1) == (true, true)
            && on(2) == (false, false)),
        "eth1 up on ha: n1 {:?}, keepalived n2 {:?}",
        on(1),
        on(2)
    );
}

/// Issue 13: scripts run as keepalived runs them: as `script_user`, as an argv with
/// keepalived's quoting (no shell), and a world-writable script under
/// `enable_script_security` never runs while the instance goes on.
#[test]
fn scripts_run_as_the_script_user_without_a_shell_and_insecure_ones_never() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut env) = setup(1, &[]) else { return };
    let out = env.lab.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let exe = |name: &str, body: &str, mode: u32| {
        let p = env.lab.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let o = out.display();
    let uid = exe("uid.sh", &format!("id -u >{o}/uid"), 0o755);
    let ww = exe("ww.sh", &format!("touch {o}/ww"), 0o777);
    let ok = exe("ok.sh", &format!("touch {o}/ok"), 0o755);
    let pre = format!(
        "vrrp_script chk_ww {{\n  script \"{ww}\"\n  interval 0.2\n  weight -60\n  user root\n}}\n\
         vrrp_script chk_redir {{\n  script \"/bin/echo x > {o}/redirected\"\n  interval 0.2\n}}\n\
         vrrp_script chk_quote {{\n  script \"/usr/bin/touch '{o}/two words'\"\n  interval 0.2\n}}\n\
         vrrp_script chk_ok {{\n  script \"{ok}\"\n  interval 0.2\n  user root\n}}\n"
    );
    let extra = format!(
        "  track_script {{\n    chk_ww\n    chk_redir\n    chk_quote\n    chk_ok\n  }}\n  notify_master \"{uid}\""
    );
    let global = "  script_user nobody\n  enable_script_security";
    env.start(1, &conf(1, 150, "MASTER", 2, "1", &extra, global, &pre));
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody = String::from_utf8_lossy(&nobody.stdout).trim().to_string();
    assert!(wait_until(Duration::from_secs(6), || {
        std::fs::read_to_string(out.join("uid")).is_ok_and(|u| u.trim() == nobody)
    }));
    assert!(wait_until(Duration::from_secs(4), || out
        .join("ok")
        .exists()
        && out.join("two words").exists()));
    // chk_ok and chk_quote ran several times: a redirection or the insecure script would have
    assert!(!out.join("redirected").exists(), "'>' went through a shell");
    assert!(!out.join("ww").exists(), "the world-writable script ran");
    assert_eq!(
        env.status(1),
        ("MASTER".into(), 150),
        "a disabled script counted"
    );
    // --check names the disabled script
    let check = std::process::Command::new(HA)
        .args([
            "--check",
            "--config",
            &env.lab.path("n1.conf").to_string_lossy(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stderr).to_string()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("chk_ww") && text.contains("insecure"),
        "{text}"
    );
}

/// Issue 13: vrrp_track_file as keepalived reads it: with weight 0 a non-zero number is a
/// FAULT (the VIP moves to the backup), a weight adds value × weight to the priority; the
/// file is re-read when it changes, and init_file creates it.
#[test]
fn a_track_file_faults_or_reweights_the_instance_when_it_changes() {
    let Some(mut env) = setup(2, &[]) else { return };
    let fault = env.lab.path("fault.flag");
    let weight = env.lab.path("weight.flag");
    let pre = format!(
        "vrrp_track_file tf_fault {{\n  file {}\n  weight 0\n  init_file 0\n}}\ntrack_file tf_weight {{\n  file {}\n  weight 10\n  init_file 0 overwrite\n}}\n",
        fault.display(),
        weight.display()
    );
    let extra = "  track_file {\n    tf_fault\n    tf_weight\n  }";
    env.start(1, &conf(1, 150, "MASTER", 2, "1", extra, "", &pre));
    env.start(2, &conf(2, 100, "BACKUP", 2, "1", "", "", ""));
    assert!(env.served_by(1, Duration::from_secs(6)));
    assert_eq!(
        std::fs::read_to_string(&fault).unwrap().trim(),
        "0",
        "init_file"
    );
    std::fs::write(&weight, "3\n").unwrap();
    assert!(wait_until(Duration::from_secs(3), || env.status(1)
        == ("MASTER".into(), 180)));
    std::fs::write(&fault, "1\n").unwrap();
    assert!(wait_until(Duration::from_secs(3), || env.status(1).0 == "FAULT"));
    assert!(
        env.served_by(2, Duration::from_secs(6)),
        "the VIP did not move to the backup"
    );
    std::fs::write(&fault, "0\n").unwrap();
    assert!(
        env.served_by(1, Duration::from_secs(8)),
        "the VIP did not come back"
    );
}

/// Issue 13: vrrp_track_process: the instance goes to FAULT when fewer processes than its
/// quorum run (after terminate_delay) and comes back when they run again.
#[test]
fn a_tracked_process_that_dies_takes_the_instance_to_fault() {
    let Some(mut env) = setup(1, &["sleep"]) else {
        return;
    };
    let tag = format!("{}", 7_000_000 + std::process::id());
    /// Kills the tracked process however the test ends.
    struct Sleeper(std::process::Child);
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let spawn = || {
        Sleeper(
            std::process::Command::new("sleep")
                .arg(&tag)
                .spawn()
                .unwrap(),
        )
    };
    let sleeper = spawn();
    let pre = format!(
        "vrrp_track_process tp {{\n  process sleep {tag}\n  quorum 1\n  terminate_delay 0.5\n  weight 0\n}}\n"
    );
    let extra = "  track_process {\n    tp\n  }";
    env.start(1, &conf(1, 150, "MASTER", 2, "1", extra, "", &pre));
    assert!(wait_until(Duration::from_secs(5), || env.status(1).0 == "MASTER"));
    assert!(env.vip_on(1));
    let t0 = Instant::now();
    drop(sleeper);
    assert!(wait_until(Duration::from_secs(5), || env.status(1).0 == "FAULT"));
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "terminate_delay not honoured"
    );
    assert!(!env.vip_on(1));
    let _sleeper = spawn();
    assert!(wait_until(Duration::from_secs(8), || env.status(1).0 == "MASTER"));
}

/// Issue 13: `static_routes` and `static_rules` stay whatever the state; `virtual_routes`
/// (with `src` on the VIP, a table, a blackhole, a metric) and `virtual_rules` follow MASTER
/// and go with BACKUP and at shutdown.
#[test]
fn virtual_routes_and_rules_follow_master_and_static_ones_stay() {
    let Some(mut env) = setup(2, &["ip"]) else {
        return;
    };
    let routes = "static_routes {\n  192.168.50.0/24 via 10.80.0.254 dev eth0\n}\nstatic_rules {\n  from 10.80.0.0/24 table 50 priority 500\n}\n";
    let vroutes = "  virtual_routes {\n    src 10.80.0.100 192.168.60.0/24 via 10.80.0.254 dev eth0 table 100\n    blackhole 192.168.61.0/24\n    192.168.62.0/24 dev eth0 metric 7\n  }\n  virtual_rules {\n    from 10.80.0.100 to 192.168.70.0/24 table 100 priority 600\n  }";
    let hosts = [env.node(1).host.clone(), env.node(2).host.clone()];
    let show = move |k: usize| {
        let h = &hosts[k - 1];
        h.run("ip", &["-4", "route", "show", "table", "all"])
            + &h.run("ip", &["-4", "rule", "show"])
    };
    let virt = |r: &str| {
        r.contains("192.168.60.0/24 via 10.80.0.254 dev eth0 table 100")
            && r.contains("src 10.80.0.100")
            && r.contains("blackhole 192.168.61.0/24")
            && r.contains("192.168.62.0/24 dev eth0 proto keepalived metric 7")
            && r.contains("600:\tfrom 10.80.0.100 to 192.168.70.0/24 lookup 100 proto keepalived")
    };
    let stat = |r: &str| {
        r.contains("192.168.50.0/24 via 10.80.0.254 dev eth0")
            && r.contains("500:\tfrom 10.80.0.0/24 lookup 50 proto keepalived")
    };
    let none = |r: &str| !r.contains("192.168.6") && !r.contains("192.168.70");
    env.start(1, &conf(1, 150, "BACKUP", 3, "0.2", vroutes, "", routes));
    assert!(
        wait_until(Duration::from_secs(5), || virt(&show(1)) && stat(&show(1))),
        "master n1:\n{}",
        show(1)
    );
    env.start(2, &conf(2, 200, "BACKUP", 3, "0.2", vroutes, "", ""));
    assert!(
        wait_until(Duration::from_secs(5), || virt(&show(2))),
        "master n2:\n{}",
        show(2)
    );
    assert!(
        wait_until(Duration::from_secs(5), || none(&show(1))),
        "backup n1 kept virtual routes:\n{}",
        show(1)
    );
    assert!(
        stat(&show(1)),
        "backup n1 lost its static route:\n{}",
        show(1)
    );
    env.term(2);
    assert!(none(&show(2)), "SIGTERM left virtual routes:\n{}", show(2));
    assert!(
        wait_until(Duration::from_secs(5), || virt(&show(1))),
        "n1 master again:\n{}",
        show(1)
    );
    env.term(1);
    let r = show(1);
    assert!(none(&r) && !stat(&r), "SIGTERM left routes on n1:\n{r}");
}
