//! The pure parts of the doctor: the time daemons' words, the report, the DR judgement.

use super::*;

#[test]
fn chronyc_tracking_says_whether_it_is_synchronised() {
    let synced = "Reference ID    : C0A80101 (gw)\nStratum         : 3\nSystem time     : 0.000012 seconds fast of NTP time\nLeap status     : Normal\n";
    let s = parse_chronyc(synced).unwrap();
    assert!(s.synced && s.said.contains("0.000012 seconds"), "{s:?}");
    let not = "Reference ID    : 00000000 ()\nLeap status     : Not synchronised\n";
    assert!(!parse_chronyc(not).unwrap().synced);
    assert_eq!(parse_chronyc("506 Cannot talk to daemon"), None);
}

#[test]
fn timedatectl_and_ntpq_are_read_too() {
    assert!(
        parse_timedatectl("Timezone=UTC\nNTP=yes\nNTPSynchronized=yes\n")
            .unwrap()
            .synced
    );
    let no = parse_timedatectl("NTP=no\nNTPSynchronized=no\n").unwrap();
    assert!(!no.synced && no.said.contains("NTP service no"));
    assert_eq!(parse_timedatectl("Timezone=UTC\n"), None);
    assert!(parse_ntpq("leap=00\n").unwrap().synced);
    assert!(
        !parse_ntpq("associd=0 status=c016 leap_alarm, leap=11, stratum=16\n")
            .unwrap()
            .synced
    );
    assert_eq!(parse_ntpq("ntpq: read: Connection refused"), None);
}

fn finding(check: Check, status: Status) -> Finding {
    Finding::new(check, "VI_1", status, "found").fix("do this")
}

#[test]
fn the_worst_finding_decides_the_exit_status() {
    let mut r = Report {
        node: "n1".into(),
        config: "k.conf".into(),
        status: Status::Ok,
        findings: vec![finding(Check::Clock, Status::Ok)],
    };
    assert_eq!(r.exit_code(), EXIT_OK);
    r.status = Status::Warn;
    assert_eq!(r.exit_code(), EXIT_WARN);
    r.status = Status::Fail;
    assert_eq!(r.exit_code(), EXIT_FAIL);
    const { assert!(EXIT_WARN != EXIT_FAIL && EXIT_WARN != EXIT_CONFIG && EXIT_FAIL != EXIT_CONFIG) };
}

#[test]
fn the_report_reads_as_text_and_as_typed_json() {
    let r = Report {
        node: "n1".into(),
        config: "k.conf".into(),
        status: Status::Fail,
        findings: vec![
            finding(Check::VrrpFirewall, Status::Fail),
            Finding::new(Check::Clock, "", Status::Ok, "synchronised"),
        ],
    };
    let t = r.text();
    assert!(
        t.contains("[FAIL] vrrp-firewall VI_1: found\n       fix: do this\n"),
        "{t}"
    );
    assert!(t.contains("[ok]   clock: synchronised\n"), "{t}");
    assert!(t.ends_with("1 failed, 0 warnings, 1 ok\n"), "{t}");
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["findings"][0]["check"], "vrrp-firewall");
    assert_eq!(j["findings"][0]["status"], "fail");
    assert!(j["findings"][1].get("fix").is_none());
    let back: Report = serde_json::from_value(j).unwrap();
    assert_eq!(back, r);
}

#[test]
fn ipv6_adverts_and_their_accept_rules() {
    let cfg = crate::conf::load_str(
        "k6.conf",
        "vrrp_instance VI6 {\n interface eth0\n virtual_router_id 9\n priority 100\n virtual_ipaddress {\n 2001:db8::100/64\n }\n}\n",
        "n1",
    )
    .unwrap();
    let m = cfg.instances[0].clone();
    assert!(m.ipv6);
    let p = packets(&m, Some((Ipv4Addr::new(10, 0, 0, 5), 24)));
    assert_eq!(p.len(), 1);
    assert!(p[0].is_v6());
    assert_eq!(p[0].src_net, Some(("fe80::".parse().unwrap(), 64)));
    assert_eq!(p[0].daddr, Some("ff02::12".parse().unwrap()));
    assert_eq!(
        accept_expr(&m),
        "iifname \"eth0\" ip6 daddr ff02::12 meta l4proto vrrp accept"
    );
    let mut u = m.clone();
    u.unicast_peers = vec!["2001:db8::2".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    u.unicast_src = Some("2001:db8::1".parse().unwrap());
    let p = packets(&u, None);
    assert_eq!(p.len(), 1, "the IPv4 peer is not this instance's");
    assert_eq!(
        (p[0].saddr, p[0].daddr),
        (
            Some("2001:db8::2".parse().unwrap()),
            Some("2001:db8::1".parse().unwrap())
        )
    );
    assert_eq!(
        accept_expr(&u),
        "iifname \"eth0\" ip6 saddr { 2001:db8::2 } meta l4proto vrrp accept"
    );
    assert_eq!(
        iptables_accept(&m, "filter", "INPUT"),
        "ip6tables-legacy -I INPUT -i eth0 -p vrrp -d ff02::12 -j ACCEPT"
    );
}

fn instance(peers: &[[u8; 4]]) -> Instance {
    let cfg = crate::conf::load_str(
        "k.conf",
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n priority 100\n virtual_ipaddress {\n 10.0.0.100/24\n }\n}\n",
        "n1",
    )
    .unwrap();
    let mut i = cfg.instances[0].clone();
    i.unicast_peers = peers
        .iter()
        .map(|p| IpAddr::V4(Ipv4Addr::from(*p)))
        .collect();
    i
}

#[test]
fn multicast_and_unicast_adverts_and_their_accept_rules() {
    let m = instance(&[]);
    let p = packets(&m, Some((Ipv4Addr::new(10, 0, 0, 5), 24)));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].src_net, Some((Ipv4Addr::new(10, 0, 0, 0).into(), 24)));
    assert_eq!(p[0].daddr, Some(Ipv4Addr::new(224, 0, 0, 18).into()));
    assert_eq!(
        accept_expr(&m),
        "iifname \"eth0\" ip daddr 224.0.0.18 ip protocol vrrp accept"
    );
    let u = instance(&[[10, 0, 0, 2], [10, 0, 0, 3]]);
    let p = packets(&u, Some((Ipv4Addr::new(10, 0, 0, 5), 24)));
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[1].saddr, p[1].daddr),
        (
            Some(Ipv4Addr::new(10, 0, 0, 3).into()),
            Some(Ipv4Addr::new(10, 0, 0, 5).into())
        )
    );
    assert_eq!(
        accept_expr(&u),
        "iifname \"eth0\" ip saddr { 10.0.0.2, 10.0.0.3 } ip protocol vrrp accept"
    );
    assert_eq!(
        iptables_accept(&u, "raw", "PREROUTING"),
        "iptables-legacy -t raw -I PREROUTING -i eth0 -p vrrp -s 10.0.0.2,10.0.0.3 -j ACCEPT"
    );
}

#[test]
fn a_dr_real_server_needs_the_vip_on_lo_and_quiet_arp() {
    use realserver::{judge, parse};
    let vip = Some(Ipv4Addr::new(10, 0, 0, 100));
    let good = parse("lo 127.0.0.1/8 10.0.0.100/32 \nconf all 1 2\nconf default 0 0\nconf eth0 0 0\nconf lo 0 0\n");
    assert_eq!(good.lo.len(), 2);
    assert!(judge(&good, vip).is_empty(), "{:?}", judge(&good, vip));
    // set on the interface instead of all: the kernel takes the larger
    let per_if = parse("lo 127.0.0.1/8 10.0.0.100/32\nconf all 0 0\nconf eth0 1 2\n");
    assert!(judge(&per_if, vip).is_empty());
    let bad = parse("lo 127.0.0.1/8\nconf all 0 2\nconf eth0 0 0\n");
    let b = judge(&bad, vip);
    assert_eq!(
        b,
        vec![
            "the VIP 10.0.0.100 is not on lo".to_string(),
            "arp_ignore is 0 on eth0 (needs 1)".to_string()
        ]
    );
    // a fwmark service has no single VIP: only the sysctls are judged
    assert!(judge(&per_if, None).is_empty());
    assert_eq!(parse("garbage\nconf x y z\n"), realserver::Seen::default());
}

#[test]
fn an_ah_instance_is_checked_as_ip_protocol_51() {
    let mut i = instance(&[]);
    i.auth = crate::conf::Auth::Ah(*b"secret\0\0");
    let ps = packets(&i, None);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].proto, 51);
    assert!(
        accept_expr(&i).contains("ip protocol ah accept"),
        "{}",
        accept_expr(&i)
    );
    i.auth = crate::conf::Auth::None;
    assert_eq!(packets(&i, None)[0].proto, 112);
}
