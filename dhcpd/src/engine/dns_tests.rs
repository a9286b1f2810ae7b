//! DNS names kept with their leases: through our journal across a restart, and read from
//! an ISC 4.4 lease file.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::super::*;
use crate::conf::parse_str;
use crate::ddns::Job;

const CONF: &str = r#"
default-lease-time 60;
ddns-update-style STYLE;
ddns-domainname "lab.test";
zone lab.test. { primary 10.77.0.2; }
zone 0.77.10.in-addr.arpa. { primary 10.77.0.2; }
subnet 10.77.0.0 netmask 255.255.255.0 {
  range 10.77.0.100 10.77.0.101;
}
"#;

fn iface() -> Iface {
    Iface {
        name: "eth0".into(),
        index: 2,
        addr: Ipv4Addr::new(10, 77, 0, 1),
        prefix: 24,
    }
}

fn engine(style: &str, leases: HashMap<Ipv4Addr, Lease>) -> Engine {
    let cfg = parse_str("t.conf", &CONF.replace("STYLE", style)).unwrap();
    Engine::new(cfg, leases, &[iface()])
}

fn send(e: &mut Engine, kind: MsgType, ciaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Action {
    let mut raw = crate::wire::request(kind, [2, 0, 0, 0, 0, 9], 1, opts);
    raw[12..16].copy_from_slice(&ciaddr.octets());
    e.handle(&Msg::parse_request(&raw).unwrap(), &raw, &iface(), 1000)
}

fn committed(a: Action) -> Lease {
    match a {
        Action::Commit { mut leases, .. } if leases.len() == 1 => leases.remove(0),
        other => panic!("not a commit: {other:?}"),
    }
}

#[test]
fn dns_names_go_through_the_journal_and_are_removed_on_release_after_a_restart() {
    let ip = Ipv4Addr::new(10, 77, 0, 100);
    for style in ["interim", "standard"] {
        let mut e = engine(style, HashMap::new());
        let lease = committed(send(
            &mut e,
            MsgType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[
                (OPT_SERVER_ID, &[10, 77, 0, 1]),
                (OPT_REQUESTED_IP, &ip.octets()),
                (OPT_HOST_NAME, b"node9"),
            ],
        ));
        let [Job::Add(added)] = &e.take_ddns_jobs()[..] else {
            panic!("no DNS update");
        };
        let text = crate::leases::render(&lease);
        assert!(
            text.contains("set ddns-fwd-name = \"node9.lab.test.\";")
                && text.contains("set ddns-rev-name = \"100.0.77.10.in-addr.arpa.\";")
                && text.contains(if style == "standard" {
                    "set ddns-dhcid = "
                } else {
                    "set ddns-txt = \""
                }),
            "{text}"
        );
        // a restart: the journal is all the new engine knows
        let (leases, _) = crate::leases::parse(&text);
        let mut e = engine(style, leases);
        let released = committed(send(&mut e, MsgType::Release, ip, &[]));
        assert_eq!(released.state, State::Released);
        assert!(
            !crate::leases::render(&released).contains("ddns-"),
            "the released lease still names its records"
        );
        let jobs = e.take_ddns_jobs();
        assert!(
            matches!(&jobs[..], [Job::Remove(n)] if n.fqdn == added.fqdn
                && n.rev_name == added.rev_name && n.owner == added.owner
                && n.style == added.style && n.fwd == added.fwd && n.rev == added.rev),
            "{style}: {jobs:?}, added {added:?}"
        );
    }
}

/// A lease as ISC dhcpd 4.4.3 wrote it (`ddns-update-style standard`, in the lab).
const ISC_LEASE: &str = r#"
lease 10.77.0.100 {
  starts 1 1970/01/01 00:16:00;
  ends 1 1970/01/01 00:17:00;
  cltt 1 1970/01/01 00:16:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 02:00:00:00:00:09;
  set ddns-rev-name = "100.0.77.10.in-addr.arpa.";
  set ddns-dhcid = "\000\000\001\376z0\000K0z\"\334\357\346\031\250P\000\276\030\371\20241\221M\262\310\035\252\317\224':~";
  set ddns-fwd-name = "node9.lab.test.";
  client-hostname "node9";
}
"#;

#[test]
fn dns_names_in_an_isc_lease_file_are_removed_when_the_lease_expires() {
    let (leases, _) = crate::leases::parse(ISC_LEASE);
    let mut e = engine("standard", leases);
    e.expire(1019);
    assert!(e.take_ddns_jobs().is_empty(), "not yet expired");
    e.expire(1020);
    let jobs = e.take_ddns_jobs();
    let [Job::Remove(n)] = &jobs[..] else {
        panic!("{jobs:?}");
    };
    assert_eq!(n.fqdn, "node9.lab.test.");
    assert_eq!(n.rev_name, "100.0.77.10.in-addr.arpa.");
    assert_eq!(n.style, crate::conf::DdnsStyle::Standard);
    // the DHCID ISC computed is the one we compute for that client and name
    let mut id = vec![1];
    id.extend([2, 0, 0, 0, 0, 9]);
    let ours = crate::ddns::owner(n.style, &id, false, &n.fqdn);
    assert_eq!(n.owner, ours);
    assert!(n.fwd.is_some() && n.rev.is_some());
}

/// Option 81 through the engine: under `allow client-updates` a client without S gets only
/// its PTR, to its own name, kept as ISC's `ddns-client-fqdn`; under `ignore` the server
/// adds the A record under its own name yet echoes the client's (ISC's "white lie"); under
/// `deny` it answers S|O with its name. (The bytes are what ISC 4.4.3 answered dhclient.)
#[test]
fn client_updates_policies_decide_the_records_and_the_answer() {
    let ip = Ipv4Addr::new(10, 77, 0, 100);
    let fqdn81: &[u8] = b"\0\0\0node6.example.org.";
    for policy in ["allow", "ignore", "deny"] {
        let conf = CONF.replace("STYLE", "interim") + &format!("{policy} client-updates;\n");
        let mut e = Engine::new(
            parse_str("t.conf", &conf).unwrap(),
            HashMap::new(),
            &[iface()],
        );
        let a = send(
            &mut e,
            MsgType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[
                (OPT_SERVER_ID, &[10, 77, 0, 1]),
                (OPT_REQUESTED_IP, &ip.octets()),
                (super::fqdn::OPT_FQDN, fqdn81),
            ],
        );
        let Action::Commit {
            reply: Some(r),
            leases,
        } = a
        else {
            panic!("{policy}: no ACK");
        };
        let answer = Msg::parse(&r.bytes).unwrap();
        let answer = answer.option(super::fqdn::OPT_FQDN).unwrap().to_vec();
        let [Job::Add(n)] = &e.take_ddns_jobs()[..] else {
            panic!("{policy}: no DNS update");
        };
        let text = crate::leases::render(&leases[0]);
        match policy {
            "allow" => {
                assert_eq!(answer, b"\0\xff\xffnode6.example.org.");
                assert_eq!(
                    (n.fqdn.as_str(), n.fwd.is_none()),
                    ("node6.example.org.", true)
                );
                assert!(n.rev.is_some());
                assert!(
                    text.contains("set ddns-client-fqdn = \"node6.example.org.\";"),
                    "{text}"
                );
                // and it reads back as the PTR only
                let mut e = engine("interim", crate::leases::parse(&text).0);
                committed(send(&mut e, MsgType::Release, ip, &[]));
                let jobs = e.take_ddns_jobs();
                assert!(
                    matches!(&jobs[..], [Job::Remove(r)] if r.fwd.is_none() && r.rev.is_some()
                        && r.fqdn == "node6.example.org."),
                    "{jobs:?}"
                );
            }
            _ => {
                let want: &[u8] = if policy == "ignore" {
                    b"\0\xff\xffnode6.example.org."
                } else {
                    b"\x03\xff\xffnode6.lab.test."
                };
                assert_eq!(answer, want, "{policy}");
                assert_eq!(n.fqdn, "node6.lab.test.");
                assert!(n.fwd.is_some() && n.rev.is_some());
                assert!(text.contains("set ddns-fwd-name = \"node6.lab.test.\";"));
            }
        }
    }
}
