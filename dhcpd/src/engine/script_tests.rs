//! The statements of the corpus configurations, through the engine: iPXE's option 175,
//! relay agent classes with stashed agent options, subclasses by MAC, `on commit`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::super::*;
use crate::conf::parse_str;

fn iface(addr: Ipv4Addr) -> Iface {
    Iface {
        name: "eth0".into(),
        index: 2,
        addr,
        prefix: 24,
    }
}

fn reply(a: &Action) -> Msg {
    match a {
        Action::Send(r) | Action::Commit { reply: Some(r), .. } => Msg::parse(&r.bytes).unwrap(),
        other => panic!("no reply: {other:?}"),
    }
}

/// Whether `path` exists within 10 s (what an `execute()` in a thread of its own makes).
fn appears(path: &std::path::Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    path.exists()
}

fn file(m: &Msg) -> String {
    String::from_utf8_lossy(&m.file)
        .trim_end_matches('\0')
        .to_string()
}

const IPXE: &str = r#"
option space ipxe;
option ipxe-encap-opts code 175 = encapsulate ipxe;
option ipxe.priority code 1 = signed integer 8;
option ipxe.no-pxedhcp code 176 = unsigned integer 8;
option ipxe.http code 19 = unsigned integer 8;
subnet 10.93.1.0 netmask 255.255.255.0 {
  range 10.93.1.150 10.93.1.169;
  next-server 10.93.1.1;
  option ipxe.no-pxedhcp 1;
  if exists user-class and option user-class = "iPXE" {
    filename "http://10.93.1.1/boot.ipxe";
  } else {
    filename "undionly.kpxe";
  }
}
host lab-kvm1 {
  hardware ethernet 52:54:00:77:00:01;
  fixed-address 10.93.1.21;
  if exists ipxe.http {
    filename "http://10.93.1.1/hosts/lab-kvm1.ipxe";
  } else {
    filename "undionly.kpxe";
  }
}
"#;

#[test]
fn ipxe_gets_its_script_and_option_175_a_pxe_rom_gets_undionly() {
    let ifc = iface(Ipv4Addr::new(10, 93, 1, 1));
    let mut e = Engine::new(
        parse_str("t.conf", IPXE).unwrap(),
        HashMap::new(),
        std::slice::from_ref(&ifc),
    );
    let mut ask = |mac: [u8; 6], opts: &[(u8, &[u8])]| {
        let raw = crate::wire::request(MsgType::Discover, mac, 1, opts);
        let m = Msg::parse_request(&raw).unwrap();
        reply(&e.handle(&m, &raw, &ifc, 1000))
    };
    let ipxe = ask(
        [2, 0, 0, 0, 1, 0x75],
        &[(77, b"iPXE"), (OPT_PRL, &[1, 3, 67, 175])],
    );
    assert_eq!(file(&ipxe), "http://10.93.1.1/boot.ipxe");
    assert_eq!(ipxe.option(175), Some(&[176u8, 1, 1][..]), "no-pxedhcp = 1");
    let pxe = ask([2, 0, 0, 0, 0, 0x5e], &[(OPT_PRL, &[1, 3, 43, 60, 67])]);
    assert_eq!(file(&pxe), "undionly.kpxe");
    assert_eq!(pxe.option(175), None, "not asked for");
    // a sub-option of the client's own option 175 in an expression
    let mac = [0x52, 0x54, 0, 0x77, 0, 1];
    let with_http = ask(mac, &[(175, &[19, 1, 1, 36, 1, 1])]);
    assert_eq!(with_http.yiaddr, Ipv4Addr::new(10, 93, 1, 21));
    assert_eq!(file(&with_http), "http://10.93.1.1/hosts/lab-kvm1.ipxe");
    assert_eq!(file(&ask(mac, &[(175, &[36, 1, 1])])), "undionly.kpxe");
}

const RELAY: &str = r#"
authoritative;
stash-agent-options true;
class "rack-b12-tor" {
  match if option agent.circuit-id = "b12-tor1:ge-0/0/12";
}
class "row-b-switches" {
  match if substring (option agent.remote-id, 0, 5) = "row-b";
}
class "known-racks" {
  match hardware;
}
subclass "known-racks" 1:52:54:00:aa:bb:cc;
subclass "known-racks" 1:52:54:00:aa:bb:cd { option host-name "rack-cd"; }
on commit {
  set clip = binary-to-ascii(10, 8, ".", leased-address);
  execute("/usr/bin/touch", concat("DIR/commit-", clip));
}
subnet 10.250.0.0 netmask 255.255.255.0 {
}
shared-network row-b {
  subnet 10.44.12.0 netmask 255.255.255.0 {
    option routers 10.44.12.1;
    pool {
      allow members of "known-racks";
      range 10.44.12.20 10.44.12.99;
    }
    pool {
      allow members of "rack-b12-tor";
      deny members of "known-racks";
      range 10.44.12.100 10.44.12.149;
    }
  }
  subnet 10.44.13.0 netmask 255.255.255.0 {
    pool {
      allow members of "row-b-switches";
      range 10.44.13.50 10.44.13.90;
    }
  }
}
"#;

fn agent(circuit: &[u8], remote: &[u8]) -> Vec<u8> {
    let mut v = vec![1, circuit.len() as u8];
    v.extend_from_slice(circuit);
    v.extend([2, remote.len() as u8]);
    v.extend_from_slice(remote);
    v
}

#[test]
fn relay_agent_classes_subclasses_stash_and_on_commit() {
    let dir = std::env::temp_dir().join(format!("dhcpd-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = RELAY.replace("DIR", &dir.display().to_string());
    let ifc = iface(Ipv4Addr::new(10, 250, 0, 1));
    let mut e = Engine::new(
        parse_str("t.conf", &conf).unwrap(),
        HashMap::new(),
        std::slice::from_ref(&ifc),
    );
    let relayed = |kind: MsgType, mac: [u8; 6], rai: Option<&[u8]>, extra: &[(u8, &[u8])]| {
        let mut opts: Vec<(u8, &[u8])> = extra.to_vec();
        opts.extend(rai.map(|r| (OPT_RELAY_AGENT, r)));
        let mut m = Msg::parse(&crate::wire::request(kind, mac, 7, &opts)).unwrap();
        m.giaddr = Ipv4Addr::new(10, 44, 12, 1);
        m.encode(576)
    };
    let mut send = |raw: Vec<u8>| {
        let m = Msg::parse_request(&raw).unwrap();
        e.handle(&m, &raw, &ifc, 1000)
    };
    // a MAC listed by subclass: the known-racks pool, and its subclass's own options
    let off = reply(&send(relayed(
        MsgType::Discover,
        [0x52, 0x54, 0, 0xaa, 0xbb, 0xcd],
        None,
        &[(OPT_PRL, &[12])],
    )));
    assert_eq!(off.yiaddr, Ipv4Addr::new(10, 44, 12, 20));
    assert_eq!(off.option(12), Some(&b"rack-cd"[..]));
    // the port b12-tor1:ge-0/0/12: the rack pool
    let port = agent(b"b12-tor1:ge-0/0/12", b"row-a-sw1");
    let mac = [2, 0, 0, 0, 0x12, 1];
    let off = reply(&send(relayed(MsgType::Discover, mac, Some(&port), &[])));
    assert_eq!(off.yiaddr, Ipv4Addr::new(10, 44, 12, 100));
    // a switch of row b on another port: the out-of-band subnet
    let sw = agent(b"other-port", b"row-b-sw7");
    let oob = reply(&send(relayed(
        MsgType::Discover,
        [2, 0, 0, 0, 0x13, 1],
        Some(&sw),
        &[],
    )));
    assert_eq!(oob.yiaddr, Ipv4Addr::new(10, 44, 13, 50));
    // nobody's member: nothing to offer
    assert!(matches!(
        send(relayed(MsgType::Discover, [2, 0, 0, 0, 0x14, 1], None, &[])),
        Action::Drop("pool_exhausted")
    ));
    // the rack client takes its lease through the relay...
    let ip = off.yiaddr.octets();
    let ack = send(relayed(
        MsgType::Request,
        mac,
        Some(&port),
        &[(OPT_SERVER_ID, &[10, 250, 0, 1]), (OPT_REQUESTED_IP, &ip)],
    ));
    assert_eq!(reply(&ack).msg_type(), Some(MsgType::Ack));
    // ...on commit ran execute() with the leased address (argv, no shell)
    assert!(
        appears(&dir.join("commit-10.44.12.100")),
        "on commit did not run execute()"
    );
    // ...and renews unicast, without the relay: the stashed circuit-id still classifies it
    let mut renew = Msg::parse(&crate::wire::request(MsgType::Request, mac, 8, &[])).unwrap();
    renew.ciaddr = off.yiaddr;
    let a = send(renew.encode(576));
    assert_eq!(
        reply(&a).msg_type(),
        Some(MsgType::Ack),
        "renewal without option 82"
    );
    assert_eq!(reply(&a).yiaddr, off.yiaddr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_stash_a_renewal_without_the_relay_is_refused() {
    let conf = RELAY
        .replace("stash-agent-options true;", "")
        .replace("on commit", "on release");
    let ifc = iface(Ipv4Addr::new(10, 250, 0, 1));
    let mut e = Engine::new(
        parse_str("t.conf", &conf).unwrap(),
        HashMap::new(),
        std::slice::from_ref(&ifc),
    );
    let port = agent(b"b12-tor1:ge-0/0/12", b"x");
    let mac = [2, 0, 0, 0, 0x12, 2];
    let mut m = Msg::parse(&crate::wire::request(
        MsgType::Request,
        mac,
        7,
        &[
            (OPT_SERVER_ID, &[10, 250, 0, 1]),
            (OPT_REQUESTED_IP, &[10, 44, 12, 100]),
            (OPT_RELAY_AGENT, &port),
        ],
    ))
    .unwrap();
    m.giaddr = Ipv4Addr::new(10, 44, 12, 1);
    let raw = m.encode(576);
    let a = e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &ifc, 1000);
    assert_eq!(reply(&a).msg_type(), Some(MsgType::Ack));
    let mut renew = Msg::parse(&crate::wire::request(MsgType::Request, mac, 8, &[])).unwrap();
    renew.ciaddr = Ipv4Addr::new(10, 44, 12, 100);
    let raw = renew.encode(576);
    let a = e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &ifc, 1000);
    assert!(
        !matches!(&a, Action::Commit { reply: Some(r), .. } if r.kind == MsgType::Ack),
        "the client is no longer a member of the rack class: {a:?}"
    );
}

#[test]
fn an_expired_lease_runs_on_expiry_and_loses_its_dns_names() {
    let dir = std::env::temp_dir().join(format!("dhcpd-expiry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = r#"
default-lease-time 60;
max-lease-time 60;
ddns-update-style interim;
ddns-domainname "lab.test";
zone lab.test. { primary 10.93.1.2; }
on expiry {
  execute("/usr/bin/touch", concat("DIR/expired-", binary-to-ascii(10, 8, ".", leased-address)));
}
subnet 10.93.1.0 netmask 255.255.255.0 {
  range 10.93.1.150 10.93.1.151;
}
"#
    .replace("DIR", &dir.display().to_string());
    let ifc = iface(Ipv4Addr::new(10, 93, 1, 1));
    let mut e = Engine::new(
        parse_str("t.conf", &conf).unwrap(),
        HashMap::new(),
        std::slice::from_ref(&ifc),
    );
    let mac = [2, 0, 0, 0, 0, 0x51];
    let raw = crate::wire::request(
        MsgType::Request,
        mac,
        1,
        &[
            (OPT_SERVER_ID, &[10, 93, 1, 1]),
            (OPT_REQUESTED_IP, &[10, 93, 1, 150]),
            (OPT_HOST_NAME, b"node5"),
        ],
    );
    let a = e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &ifc, 1000);
    assert_eq!(reply(&a).msg_type(), Some(MsgType::Ack));
    let jobs = e.take_ddns_jobs();
    assert!(
        matches!(&jobs[..], [crate::ddns::Job::Add(n)] if n.fqdn == "node5.lab.test."),
        "{jobs:?}"
    );
    e.expire(1059);
    assert!(e.take_ddns_jobs().is_empty(), "not yet expired");
    e.expire(1060);
    let jobs = e.take_ddns_jobs();
    assert!(
        matches!(&jobs[..], [crate::ddns::Job::Remove(n)] if n.ip == Ipv4Addr::new(10, 93, 1, 150)),
        "{jobs:?}"
    );
    assert!(
        appears(&dir.join("expired-10.93.1.150")),
        "on expiry did not run"
    );
    e.expire(1061);
    assert!(e.take_ddns_jobs().is_empty(), "removed once");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lease_limit_counts_active_leases_per_spawned_subclass() {
    let conf = r#"
class "per-port" {
  spawn with option agent.circuit-id;
  lease limit 1;
}
subnet 10.250.0.0 netmask 255.255.255.0 {
}
subnet 10.44.12.0 netmask 255.255.255.0 {
  range 10.44.12.100 10.44.12.149;
}
"#;
    let ifc = iface(Ipv4Addr::new(10, 250, 0, 1));
    let mut e = Engine::new(
        parse_str("t.conf", conf).unwrap(),
        HashMap::new(),
        std::slice::from_ref(&ifc),
    );
    let mut send = |kind: MsgType, mac: u8, port: &[u8], ip: Option<[u8; 4]>| {
        let rai = agent(port, b"r");
        let mut opts: Vec<(u8, &[u8])> = vec![(OPT_RELAY_AGENT, &rai)];
        let ipb;
        if let Some(i) = ip {
            ipb = i;
            opts.push((OPT_SERVER_ID, &[10, 250, 0, 1]));
            opts.push((OPT_REQUESTED_IP, &ipb));
        }
        let mut m =
            Msg::parse(&crate::wire::request(kind, [2, 0, 0, 0, 0, mac], 9, &opts)).unwrap();
        m.giaddr = Ipv4Addr::new(10, 44, 12, 1);
        let raw = m.encode(576);
        e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &ifc, 1000)
    };
    let off = reply(&send(MsgType::Discover, 1, b"port-1", None));
    let a = send(MsgType::Request, 1, b"port-1", Some(off.yiaddr.octets()));
    assert_eq!(reply(&a).msg_type(), Some(MsgType::Ack));
    // a second machine on the same port: the subclass "port-1" holds its one lease
    assert!(matches!(
        send(MsgType::Discover, 2, b"port-1", None),
        Action::Drop("class_lease_limit")
    ));
    // another port is another subclass; and the first machine may renew
    assert_eq!(
        reply(&send(MsgType::Discover, 3, b"port-2", None)).msg_type(),
        Some(MsgType::Offer)
    );
    let a = send(MsgType::Request, 1, b"port-1", Some(off.yiaddr.octets()));
    assert_eq!(
        reply(&a).msg_type(),
        Some(MsgType::Ack),
        "a renewal is within the limit"
    );
}

/// The `on expiry` block goes into the lease file with the lease (in ISC's syntax) and runs
/// when the lease ends after a restart; the lease then goes back to the journal without it.
#[test]
fn on_expiry_kept_in_the_lease_file_runs_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("dhcpd-kept-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = r#"
default-lease-time 60;
max-lease-time 60;
subnet 10.93.1.0 netmask 255.255.255.0 {
  range 10.93.1.150 10.93.1.151;
  on expiry {
    execute("/usr/bin/touch", concat("DIR/gone-", binary-to-ascii(16, 8, ":", substring(hardware, 1, 6))));
  }
}
"#
    .replace("DIR", &dir.display().to_string());
    let ifc = iface(Ipv4Addr::new(10, 93, 1, 1));
    let engine = |leases| {
        Engine::new(
            parse_str("t.conf", &conf).unwrap(),
            leases,
            std::slice::from_ref(&ifc),
        )
    };
    let mut e = engine(HashMap::new());
    let raw = crate::wire::request(
        MsgType::Request,
        [2, 0, 0, 0, 0, 0x52],
        1,
        &[
            (OPT_SERVER_ID, &[10, 93, 1, 1]),
            (OPT_REQUESTED_IP, &[10, 93, 1, 150]),
        ],
    );
    let Action::Commit { leases, .. } =
        e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &ifc, 1000)
    else {
        panic!("no commit");
    };
    let text = crate::leases::render(&leases[0]);
    assert!(
        text.contains("  on expiry { execute (\"/usr/bin/touch\", concat (\""),
        "{text}"
    );
    // a restart: the lease file is all the new engine knows
    let mut e = engine(crate::leases::parse(&text).0);
    assert!(e.expire(1059).is_empty(), "not yet expired");
    let ended = e.expire(1060);
    assert!(
        matches!(&ended[..], [l] if l.on_expiry.is_none() && l.ip == Ipv4Addr::new(10, 93, 1, 150)),
        "{ended:?}"
    );
    assert!(
        appears(&dir.join("gone-2:0:0:0:0:52")),
        "on expiry did not run after the restart"
    );
    assert!(e.expire(1061).is_empty(), "ran once");
    let _ = std::fs::remove_dir_all(&dir);
}
