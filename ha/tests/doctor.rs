//! `ha doctor` against the real kernel and tools in lab namespaces: the nftables ruleset of
//! the node (a rule that drops VRRP is named, and the finding passes once it is gone) and an
//! LVS-DR real server reached over ssh (its own sshd) whose ARP settings are wrong.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ha::doctor::{Check, Finding, Report, Status, EXIT_FAIL};
use opsflow_tests::{Host, Lab};

const HA: &str = env!("CARGO_BIN_EXE_ha");

const NODE_CONF: &str = "global_defs {
  router_id n1
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 93
  priority 100
  advert_int 1
  unicast_src_ip 10.93.0.1
  unicast_peer {
    10.93.0.2
  }
  virtual_ipaddress {
    10.93.0.100/24 dev eth0
  }
}
";

/// Runs `ha doctor --json ARGS` in `host`: the exit code and the report.
fn doctor(host: &Host, conf: &Path, args: &[&str]) -> (i32, Report) {
    let out = host
        .command(HA)
        .args(["doctor", "--json", "--config", conf.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "ha doctor --json printed no report ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The node n1 (10.93.0.1 on eth0) with [`NODE_CONF`], and its unicast peer n2 (10.93.0.2).
fn node(lab: &Lab) -> (Host, Host, PathBuf) {
    let n1 = lab.host("n1");
    let n2 = lab.host("n2");
    lab.connect(
        &n1,
        "eth0",
        Some("10.93.0.1/24"),
        &n2,
        "eth0",
        Some("10.93.0.2/24"),
    );
    let conf = lab.path("n1.conf");
    std::fs::write(&conf, NODE_CONF).unwrap();
    (n1, n2, conf)
}

/// Receives IP protocol 112 on a raw socket until a packet or the deadline comes.
const RECV_PY: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,112)\ns.settimeout(float(sys.argv[1]))\nprint('ready',flush=True)\ntry:\n    d,a=s.recvfrom(2048)\n    print('got',a[0],flush=True)\nexcept socket.timeout:\n    print('nothing',flush=True)\n";
/// Sends a few VRRP-shaped packets (protocol 112) to an address.
const SEND_PY: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,112)\nfor _ in range(5): s.sendto(bytes([0x21,93,100,1,0,1,0,0]),(sys.argv[1],0))\n";

/// Whether a protocol-112 packet from `from` reaches a raw socket on `to` (past the input
/// hook): what the kernel does, to hold the doctor's verdict against.
fn delivered(to: &Host, from: &Host, to_addr: &str) -> bool {
    let mut rx = to.spawn("vrrp-rx", "python3", &["-c", RECV_PY, "3"]);
    assert!(
        rx.wait_for_output("ready", Duration::from_secs(10)),
        "{}",
        rx.output()
    );
    from.run("python3", &["-c", SEND_PY, to_addr]);
    assert!(
        rx.wait_exit(Duration::from_secs(15)).is_some(),
        "{}",
        rx.output()
    );
    rx.output().contains("got")
}

fn finding(r: &Report, check: Check) -> &Finding {
    r.findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check:?} finding in {r:#?}"))
}

#[test]
fn a_rule_that_drops_vrrp_fails_by_name_and_passes_once_removed() {
    let Some(lab) = Lab::new(&["nft", "ping", "python3"]) else {
        return;
    };
    let (n1, n2, conf) = node(&lab);
    let (st, out) = n1.sh("nft -f - <<'NFT'
table inet nodefw {
  chain filter_in {
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    tcp dport 22 accept
    ip protocol 112 drop
  }
}
NFT");
    assert!(st.success(), "{out}");

    let (code, r) = doctor(&n1, &conf, &[]);
    assert_eq!(code, i32::from(EXIT_FAIL), "{r:#?}");
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Fail, "{fw:#?}");
    assert!(!delivered(&n1, &n2, "10.93.0.1"), "the kernel lets it in");
    for needle in [
        "table inet nodefw",
        "chain filter_in",
        "rule handle",
        "10.93.0.2",
        "ip protocol vrrp drop",
    ] {
        assert!(fw.found.contains(needle), "{needle:?} missing: {fw:#?}");
    }
    let fix = fw.fix.as_deref().unwrap();
    assert!(
        fix.contains("nft insert rule inet nodefw filter_in")
            && fix.contains("nft delete rule inet nodefw filter_in handle"),
        "{fix}"
    );
    // the peer is on the link and answers
    assert_eq!(finding(&r, Check::VrrpPeers).status, Status::Ok, "{r:#?}");
    // the text report names the rule too
    let text = n1
        .command(HA)
        .args(["doctor", "--config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("[FAIL] vrrp-firewall VI_1:") && l.contains("nodefw")),
        "{text}"
    );

    // the fix the doctor printed, applied as printed, makes the finding pass
    let printed = fix.split(" (or remove the rule").next().unwrap();
    let (st, out) = n1.sh(printed);
    assert!(st.success(), "{printed}: {out}");
    let (_, r) = doctor(&n1, &conf, &[]);
    assert_eq!(
        finding(&r, Check::VrrpFirewall).status,
        Status::Ok,
        "{r:#?}"
    );
    assert!(delivered(&n1, &n2, "10.93.0.1"), "the kernel drops it");

    // a drop policy with no accept for VRRP: the policy is named
    n1.run("nft", &["flush", "ruleset"]);
    let (st, out) = n1.sh("nft -f - <<'NFT'
table ip host {
  chain input {
    type filter hook input priority filter; policy drop;
    tcp dport 22 accept
  }
}
NFT");
    assert!(st.success(), "{out}");
    let (_, r) = doctor(&n1, &conf, &[]);
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Fail, "{fw:#?}");
    assert!(
        fw.found
            .contains("table ip host chain input (input hook) policy drop"),
        "{fw:#?}"
    );
    assert!(!delivered(&n1, &n2, "10.93.0.1"), "the kernel lets it in");

    // no ruleset at all: nothing filters VRRP
    n1.run("nft", &["flush", "ruleset"]);
    let (_, r) = doctor(&n1, &conf, &[]);
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Ok, "{fw:#?}");
    assert!(!fw.found.contains("nodefw"), "{fw:#?}");
}

/// Joins ff02::12 on eth0 and waits for one IPv6 protocol-112 packet.
const RECV6_PY: &str = "import socket,sys,struct\ns=socket.socket(socket.AF_INET6,socket.SOCK_RAW,112)\nidx=socket.if_nametoindex('eth0')\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_JOIN_GROUP,socket.inet_pton(socket.AF_INET6,'ff02::12')+struct.pack('@I',idx))\ns.settimeout(float(sys.argv[1]))\nprint('ready',flush=True)\ntry:\n    d,a=s.recvfrom(2048)\n    print('got',a[0],flush=True)\nexcept socket.timeout:\n    print('nothing',flush=True)\n";
/// Sends a few VRRPv3-shaped packets to ff02::12 out of eth0, hop limit 255.
const SEND6_PY: &str = "import socket,struct\ns=socket.socket(socket.AF_INET6,socket.SOCK_RAW,112)\nidx=socket.if_nametoindex('eth0')\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,struct.pack('@I',idx))\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255)\nfor _ in range(5): s.sendto(bytes([0x31,94,100,1,0,100,0,0]),('ff02::12',0,0,idx))\n";

/// Whether an IPv6 advert to ff02::12 from `from` reaches a raw socket on `to`.
fn delivered6(to: &Host, from: &Host) -> bool {
    let mut rx = to.spawn("vrrp6-rx", "python3", &["-c", RECV6_PY, "3"]);
    assert!(
        rx.wait_for_output("ready", Duration::from_secs(10)),
        "{}",
        rx.output()
    );
    from.run("python3", &["-c", SEND6_PY]);
    assert!(
        rx.wait_exit(Duration::from_secs(15)).is_some(),
        "{}",
        rx.output()
    );
    rx.output().contains("got")
}

#[test]
fn an_ip6_rule_that_drops_ff02_12_fails_by_name_and_passes_with_the_printed_fix() {
    let Some(lab) = Lab::new(&["nft", "python3"]) else {
        return;
    };
    let (n1, n2) = (lab.host("n1"), lab.host("n2"));
    for h in [&n1, &n2] {
        h.run(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
    }
    lab.connect(
        &n1,
        "eth0",
        Some("2001:db8:94::1/64"),
        &n2,
        "eth0",
        Some("2001:db8:94::2/64"),
    );
    let conf = lab.path("n1-6.conf");
    std::fs::write(
        &conf,
        "vrrp_instance VI6 {\n  interface eth0\n  virtual_router_id 94\n  priority 100\n  virtual_ipaddress {\n    2001:db8:94::100/64\n  }\n}\n",
    )
    .unwrap();
    // an IPv4 rule that drops VRRP, which IPv6 adverts never meet, and an ip6 one that does
    let (st, out) = n1.sh("nft -f - <<'NFT'
table inet nodefw {
  chain filter_in {
    type filter hook input priority filter; policy accept;
    ip protocol vrrp drop
  }
}
table ip6 site6 {
  chain input {
    type filter hook input priority filter; policy accept;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    ip6 daddr ff02::12 drop
  }
}
NFT");
    assert!(st.success(), "{out}");
    let (code, r) = doctor(&n1, &conf, &[]);
    assert_eq!(code, i32::from(EXIT_FAIL), "{r:#?}");
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Fail, "{fw:#?}");
    assert!(!delivered6(&n1, &n2), "the kernel lets it in");
    for needle in [
        "VRRPv3 over IPv6",
        "ff02::12",
        "table ip6 site6 chain input (input hook) rule handle",
        "`ip6 daddr ff02::12 drop`",
    ] {
        assert!(fw.found.contains(needle), "{needle:?} missing: {fw:#?}");
    }
    assert!(!fw.found.contains("nodefw"), "{fw:#?}");
    let fix = fw.fix.as_deref().unwrap();
    let printed = fix.split(" (or remove the rule").next().unwrap();
    assert_eq!(
        printed,
        "nft insert rule ip6 site6 input iifname \"eth0\" ip6 daddr ff02::12 meta l4proto vrrp accept"
    );
    let (st, out) = n1.sh(printed);
    assert!(st.success(), "{printed}: {out}");
    let (_, r) = doctor(&n1, &conf, &[]);
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Ok, "{fw:#?}");
    assert!(delivered6(&n1, &n2), "the kernel drops it");
}

#[test]
fn iptables_rules_that_drop_vrrp_are_named_nft_and_legacy() {
    let Some(lab) = Lab::new(&[
        "nft",
        "iptables-nft",
        "iptables-legacy",
        "iptables-legacy-save",
    ]) else {
        return;
    };
    let (n1, _n2, conf) = node(&lab);
    // iptables-nft: its rules live in nft's ruleset (table ip filter)
    n1.run(
        "iptables-nft",
        &[
            "-A",
            "INPUT",
            "-s",
            "10.93.0.0/24",
            "-p",
            "vrrp",
            "-j",
            "DROP",
        ],
    );
    let (_, r) = doctor(&n1, &conf, &[]);
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(fw.status, Status::Fail, "{fw:#?}");
    assert!(
        fw.found
            .contains("table ip filter chain INPUT (input hook) rule handle"),
        "{fw:#?}"
    );
    n1.run("iptables-nft", &["-F", "INPUT"]);
    let (_, r) = doctor(&n1, &conf, &[]);
    assert_eq!(
        finding(&r, Check::VrrpFirewall).status,
        Status::Ok,
        "{r:#?}"
    );
    // iptables-legacy: read from iptables-legacy-save, the rule named by its position
    n1.run(
        "iptables-legacy",
        &["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
    );
    n1.run(
        "iptables-legacy",
        &["-A", "INPUT", "-p", "112", "-j", "DROP"],
    );
    let (code, r) = doctor(&n1, &conf, &[]);
    let fw = finding(&r, Check::VrrpFirewall);
    assert_eq!(code, i32::from(EXIT_FAIL));
    assert!(
        fw.status == Status::Fail
            && fw
                .found
                .contains("iptables-legacy table filter chain INPUT rule 2"),
        "{fw:#?}"
    );
    assert!(
        fw.fix
            .as_deref()
            .unwrap()
            .contains("iptables-legacy -I INPUT -i eth0 -p vrrp -s 10.93.0.2 -j ACCEPT"),
        "{fw:#?}"
    );
    n1.run("iptables-legacy", &["-F", "INPUT"]);
    let (_, r) = doctor(&n1, &conf, &[]);
    assert_eq!(
        finding(&r, Check::VrrpFirewall).status,
        Status::Ok,
        "{r:#?}"
    );
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

#[test]
fn a_dr_real_server_without_arp_ignore_is_reported_over_ssh() {
    let Some(lab) = Lab::new(&["sshd", "ssh", "ssh-keygen"]) else {
        return;
    };
    let d1 = lab.host("d1");
    let rs = lab.host("rs");
    lab.connect(
        &d1,
        "eth0",
        Some("10.93.1.1/24"),
        &rs,
        "eth0",
        Some("10.93.1.11/24"),
    );
    let key = lab.path("id");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        key.display()
    ));
    let mut sshd = rs.sshd(lab.dir(), "10.93.1.11", &lab.path("id.pub"));
    assert!(
        opsflow_tests::wait_until(std::time::Duration::from_secs(10), || rs.tcp_listening(22)),
        "sshd did not listen: {}",
        sshd.output()
    );
    // the VIP on lo and arp_announce, but arp_ignore left at 0
    rs.run("ip", &["addr", "add", "10.93.1.100/32", "dev", "lo"]);
    for (k, v) in [
        ("all.arp_ignore", "0"),
        ("eth0.arp_ignore", "0"),
        ("all.arp_announce", "2"),
    ] {
        rs.run("sysctl", &["-qw", &format!("net.ipv4.conf.{k}={v}")]);
    }
    let conf = lab.path("d1.conf");
    std::fs::write(
        &conf,
        "virtual_server 10.93.1.100 80 {\n  delay_loop 5\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 10.93.1.11 80 {\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n}\n",
    )
    .unwrap();
    let opts = format!(
        "-i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    let args = [
        "--real-servers",
        "--lvs-backend",
        "nftables",
        "--ssh-option",
        &opts,
    ];
    let (code, r) = doctor(&d1, &conf, &args);
    let f = finding(&r, Check::RealServer);
    assert_eq!(f.status, Status::Fail, "{f:#?}");
    assert_eq!(code, i32::from(EXIT_FAIL));
    assert!(f.subject.starts_with("10.93.1.11"), "{f:#?}");
    assert!(f.found.contains("arp_ignore is 0 on eth0"), "{f:#?}");
    assert!(
        !f.found.contains("not on lo") && !f.found.contains("arp_announce"),
        "{f:#?}"
    );

    // fixed on the real server: the finding passes
    rs.run("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
    let (_, r) = doctor(&d1, &conf, &args);
    assert_eq!(finding(&r, Check::RealServer).status, Status::Ok, "{r:#?}");

    // the VIP gone from lo is reported
    rs.run("ip", &["addr", "del", "10.93.1.100/32", "dev", "lo"]);
    let (_, r) = doctor(&d1, &conf, &args);
    let f = finding(&r, Check::RealServer);
    assert!(
        f.status == Status::Fail && f.found.contains("the VIP 10.93.1.100 is not on lo"),
        "{f:#?}"
    );
    sshd.kill();
}

#[test]
fn a_service_bound_to_a_vip_without_nonlocal_bind_is_reported() {
    let Some(lab) = Lab::new(&["python3", "sysctl"]) else {
        return;
    };
    let (n1, _n2, conf) = node(&lab);
    let (_, r) = doctor(&n1, &conf, &[]);
    let f = finding(&r, Check::NonlocalBind);
    assert_eq!(f.status, Status::Ok, "{f:#?}");
    // a service binds the VIP while this node does not hold it: only with ip_nonlocal_bind
    n1.run("sysctl", &["-qw", "net.ipv4.ip_nonlocal_bind=1"]);
    let mut svc = n1.spawn(
        "svc",
        "python3",
        &[
            "-c",
            "import socket,time\ns=socket.socket()\ns.bind(('10.93.0.100',8080))\ns.listen()\nprint('bound',flush=True)\ntime.sleep(60)",
        ],
    );
    assert!(
        svc.wait_for_output("bound", std::time::Duration::from_secs(10)),
        "{}",
        svc.output()
    );
    let (_, r) = doctor(&n1, &conf, &[]);
    assert_eq!(
        finding(&r, Check::NonlocalBind).status,
        Status::Ok,
        "{r:#?}"
    );
    // the sysctl back to 0: that service could not start again on a backup
    n1.run("sysctl", &["-qw", "net.ipv4.ip_nonlocal_bind=0"]);
    let (_, r) = doctor(&n1, &conf, &[]);
    let f = finding(&r, Check::NonlocalBind);
    assert!(
        f.status == Status::Fail && f.found.contains("10.93.0.100:8080/tcp"),
        "{f:#?}"
    );
    assert!(f.fix.as_deref().unwrap().contains("ip_nonlocal_bind = 1"));
    svc.kill();
}
