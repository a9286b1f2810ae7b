use super::*;
use crate::conf::parse_str;

const CONF: &str = r#"
authoritative;
default-lease-time 600;
max-lease-time 7200;
option domain-name "lab.test";
option domain-name-servers 10.50.0.1;
subnet 10.50.0.0 netmask 255.255.255.0 {
  range 10.50.0.100 10.50.0.102;
  option routers 10.50.0.1;
  filename "pxelinux.0";
  next-server 10.50.0.1;
}
subnet 10.60.0.0 netmask 255.255.0.0 {
  range 10.60.1.1 10.60.1.50;
}
host reserved {
  hardware ethernet 02:00:00:00:00:33;
  fixed-address 10.50.0.20;
  filename "uefi/shimx64.efi";
}
"#;

fn iface() -> Iface {
    Iface {
        name: "eth0".into(),
        index: 2,
        addr: Ipv4Addr::new(10, 50, 0, 1),
        prefix: 24,
    }
}

fn engine() -> Engine {
    engine_of(CONF)
}

fn engine_of(conf: &str) -> Engine {
    Engine::new(
        parse_str("t.conf", conf).unwrap(),
        HashMap::new(),
        &[iface()],
    )
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn send(e: &mut Engine, raw: &[u8], now: u64) -> Action {
    let m = Msg::parse_request(raw).unwrap();
    e.handle(&m, raw, &iface(), now)
}

fn reply(a: &Action) -> (Msg, Dest) {
    match a {
        Action::Send(r) | Action::Commit { reply: Some(r), .. } => {
            (Msg::parse(&r.bytes).unwrap(), r.dest.clone())
        }
        other => panic!("no reply: {other:?}"),
    }
}

fn dora(e: &mut Engine, m: [u8; 6], now: u64) -> Ipv4Addr {
    let off = reply(&send(
        e,
        &crate::wire::request(MsgType::Discover, m, 1, &[]),
        now,
    ))
    .0;
    assert_eq!(off.msg_type(), Some(MsgType::Offer));
    let req = crate::wire::request(
        MsgType::Request,
        m,
        1,
        &[
            (OPT_SERVER_ID, &[10, 50, 0, 1]),
            (OPT_REQUESTED_IP, &off.yiaddr.octets()),
        ],
    );
    let a = send(e, &req, now);
    assert!(matches!(a, Action::Commit { .. }), "{a:?}");
    let ack = reply(&a).0;
    assert_eq!(ack.msg_type(), Some(MsgType::Ack));
    assert_eq!(ack.yiaddr, off.yiaddr);
    ack.yiaddr
}

#[test]
fn dora_gives_options_lease_times_and_pxe_fields() {
    let mut e = engine();
    let prl: &[u8] = &[6, 3, 15, 67, 1];
    let raw = crate::wire::request(MsgType::Discover, mac(1), 7, &[(OPT_PRL, prl)]);
    let (off, dest) = reply(&send(&mut e, &raw, 1000));
    assert_eq!(off.yiaddr, Ipv4Addr::new(10, 50, 0, 100));
    assert_eq!(
        dest,
        Dest::Link {
            ip: off.yiaddr,
            mac: mac(1)
        }
    );
    assert_eq!(off.siaddr, Ipv4Addr::new(10, 50, 0, 1));
    assert_eq!(&off.file[..10], b"pxelinux.0");
    assert_eq!(off.option(OPT_LEASE_TIME), Some(&600u32.to_be_bytes()[..]));
    assert_eq!(off.option(OPT_T1), Some(&300u32.to_be_bytes()[..]));
    assert_eq!(off.option(OPT_T2), Some(&525u32.to_be_bytes()[..]));
    // the parameter request list decides the order after the fixed header options
    let codes: Vec<u8> = off.options.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![53, 54, 51, 58, 59, 1, 6, 3, 15, 67]);
    assert_eq!(off.option(67), Some(&b"pxelinux.0"[..]));
}

#[test]
fn concurrent_discovers_never_get_the_same_address_and_pool_exhaustion_drops() {
    let mut e = engine();
    let mut seen = HashSet::new();
    for n in 1..=3 {
        let (off, _) = reply(&send(
            &mut e,
            &crate::wire::request(MsgType::Discover, mac(n), 1, &[]),
            1000,
        ));
        assert!(seen.insert(off.yiaddr), "{} offered twice", off.yiaddr);
    }
    assert!(matches!(
        send(
            &mut e,
            &crate::wire::request(MsgType::Discover, mac(9), 1, &[]),
            1000
        ),
        Action::Drop("pool_exhausted")
    ));
    // offers expire
    assert!(matches!(
        send(
            &mut e,
            &crate::wire::request(MsgType::Discover, mac(9), 1, &[]),
            1000 + OFFER_HOLD + 1
        ),
        Action::Send(_)
    ));
}

#[test]
fn reservation_renew_release_and_reuse() {
    let mut e = engine();
    let (off, _) = reply(&send(
        &mut e,
        &crate::wire::request(MsgType::Discover, mac(0x33), 1, &[]),
        1000,
    ));
    assert_eq!(off.yiaddr, Ipv4Addr::new(10, 50, 0, 20));
    assert!(off.file.starts_with(b"uefi/shimx64.efi"));
    let ip = dora(&mut e, mac(1), 1000);
    // the same client gets the same address back on a new DISCOVER
    assert_eq!(dora(&mut e, mac(1), 1100), ip);
    // renew: unicast with ciaddr
    let mut renew = Msg::parse(&crate::wire::request(MsgType::Request, mac(1), 2, &[])).unwrap();
    renew.ciaddr = ip;
    let raw = renew.encode(576);
    let (ack, dest) = reply(&send(&mut e, &raw, 1200));
    assert_eq!(ack.msg_type(), Some(MsgType::Ack));
    assert_eq!(dest, Dest::Unicast(ip));
    assert_eq!(e.leases[&ip].ends, 1200 + 600);
    // another client asking for that address gets something else
    let raw = crate::wire::request(
        MsgType::Discover,
        mac(2),
        1,
        &[(OPT_REQUESTED_IP, &ip.octets())],
    );
    assert_ne!(reply(&send(&mut e, &raw, 1200)).0.yiaddr, ip);
    // release frees it
    let mut rel = Msg::parse(&crate::wire::request(
        MsgType::Release,
        mac(1),
        3,
        &[(OPT_SERVER_ID, &[10, 50, 0, 1])],
    ))
    .unwrap();
    rel.ciaddr = ip;
    assert!(matches!(
        send(&mut e, &rel.encode(576), 1300),
        Action::Commit { reply: None, .. }
    ));
    assert_eq!(e.leases[&ip].state, State::Released);
}

#[test]
fn init_reboot_and_selecting_naks() {
    let mut e = engine();
    let ip = dora(&mut e, mac(1), 1000);
    // INIT-REBOOT for an address on another network: NAK (authoritative), broadcast
    let raw = crate::wire::request(
        MsgType::Request,
        mac(1),
        5,
        &[(OPT_REQUESTED_IP, &[192, 168, 9, 9])],
    );
    let (nak, dest) = reply(&send(&mut e, &raw, 1100));
    assert_eq!(nak.msg_type(), Some(MsgType::Nak));
    assert_eq!(dest, Dest::Broadcast);
    // INIT-REBOOT for its own address: ACK
    let raw = crate::wire::request(
        MsgType::Request,
        mac(1),
        6,
        &[(OPT_REQUESTED_IP, &ip.octets())],
    );
    assert_eq!(
        reply(&send(&mut e, &raw, 1100)).0.msg_type(),
        Some(MsgType::Ack)
    );
    // another client claiming it: NAK
    let raw = crate::wire::request(
        MsgType::Request,
        mac(2),
        7,
        &[(OPT_REQUESTED_IP, &ip.octets())],
    );
    assert_eq!(
        reply(&send(&mut e, &raw, 1100)).0.msg_type(),
        Some(MsgType::Nak)
    );
    // SELECTING another server: silence, offer released
    let raw = crate::wire::request(
        MsgType::Request,
        mac(3),
        8,
        &[
            (OPT_SERVER_ID, &[10, 50, 0, 99]),
            (OPT_REQUESTED_IP, &[10, 50, 0, 101]),
        ],
    );
    assert!(matches!(
        send(&mut e, &raw, 1100),
        Action::Drop("request_for_other_server")
    ));
}

#[test]
fn relayed_requests_use_giaddr_subnet_and_decline_abandons() {
    let mut e = engine();
    let mut d = Msg::parse(&crate::wire::request(
        MsgType::Discover,
        mac(4),
        1,
        &[(OPT_RELAY_AGENT, &[1, 2, 3, 4])],
    ))
    .unwrap();
    d.giaddr = Ipv4Addr::new(10, 60, 0, 9);
    let (off, dest) = reply(&send(&mut e, &d.encode(576), 1000));
    assert_eq!(off.yiaddr, Ipv4Addr::new(10, 60, 1, 1));
    assert_eq!(dest, Dest::Relay(Ipv4Addr::new(10, 60, 0, 9)));
    assert_eq!(
        off.option(OPT_RELAY_AGENT),
        Some(&[1u8, 2, 3, 4][..]),
        "option 82 echoed"
    );
    let raw = crate::wire::request(
        MsgType::Decline,
        mac(4),
        2,
        &[(OPT_REQUESTED_IP, &off.yiaddr.octets())],
    );
    assert!(matches!(
        send(&mut e, &raw, 1000),
        Action::Commit { reply: None, .. }
    ));
    assert_eq!(e.leases[&off.yiaddr].state, State::Abandoned);
    let (again, _) = reply(&send(&mut e, &d.encode(576), 1001));
    assert_ne!(
        again.yiaddr, off.yiaddr,
        "an abandoned address is not offered again"
    );
}

/// A request as the M-security check sends them: relayed, SELECTING, with a long client-id.
fn long_id_request(kind: MsgType, n: u32, ip: Ipv4Addr) -> Vec<u8> {
    let mut cid = vec![0u8];
    cid.extend_from_slice(&n.to_be_bytes());
    cid.extend((0..995u32).map(|i| (i.wrapping_mul(31) ^ n) as u8));
    let m = [
        2,
        0x94,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ];
    let mut opts: Vec<(u8, &[u8])> = Vec::new();
    if kind != MsgType::Discover {
        opts.push((OPT_SERVER_ID, &[10, 50, 0, 1]));
    }
    let ipo = ip.octets();
    if kind == MsgType::Request {
        opts.push((OPT_REQUESTED_IP, &ipo));
    }
    // encoded as several option 61 instances (RFC 3396)
    opts.push((OPT_CLIENT_ID, &cid));
    let mut msg = Msg::parse(&crate::wire::request(kind, m, n, &opts)).unwrap();
    msg.giaddr = Ipv4Addr::new(10, 60, 0, 9);
    if kind == MsgType::Release {
        msg.ciaddr = ip;
    }
    msg.encode(1500)
}

#[test]
fn per_client_state_is_bounded_by_the_leases_over_request_release_cycles() {
    let mut e = engine();
    let ip = Ipv4Addr::new(10, 60, 1, 20);
    for n in 1..=3000u32 {
        let a = send(
            &mut e,
            &long_id_request(MsgType::Request, n, ip),
            1000 + n as u64,
        );
        assert_eq!(reply(&a).0.msg_type(), Some(MsgType::Ack), "cycle {n}");
        let a = send(
            &mut e,
            &long_id_request(MsgType::Release, n, ip),
            1000 + n as u64,
        );
        assert!(matches!(a, Action::Commit { reply: None, .. }), "{a:?}");
        assert!(e.by_client.len() <= e.leases.len(), "cycle {n}");
    }
    assert_eq!(e.leases.len(), 1);
    assert!(
        e.by_client.is_empty(),
        "a released lease keeps no index entry"
    );
}

#[test]
fn a_client_holds_one_offer_and_a_subnet_no_more_than_its_addresses() {
    let mut e = engine();
    // one client asking again and again holds one address, the same one
    let first = reply(&send(
        &mut e,
        &crate::wire::request(MsgType::Discover, mac(1), 1, &[]),
        1000,
    ))
    .0
    .yiaddr;
    for xid in 2..50 {
        let raw = crate::wire::request(
            MsgType::Discover,
            mac(1),
            xid,
            &[(OPT_REQUESTED_IP, &[10, 50, 0, 102])],
        );
        assert_eq!(reply(&send(&mut e, &raw, 1000)).0.yiaddr, first);
    }
    assert_eq!((e.offers.len(), e.offers.clients()), (1, 1));
    // a flood of new clients: holds never exceed the range (3 addresses here)
    for n in 0..2000u32 {
        let m = [2, 1, (n >> 16) as u8, (n >> 8) as u8, n as u8, 7];
        let _ = send(
            &mut e,
            &crate::wire::request(MsgType::Discover, m, n, &[]),
            1000 + (n as u64) / 10,
        );
        assert!(e.offers.len() <= 3 && e.offers.clients() <= e.offers.len());
    }
    // the same with long client-ids on a relayed subnet of 50 addresses, a GiB of keys
    // if anything kept one per client
    for n in 0..3000u32 {
        let raw = long_id_request(MsgType::Discover, n, Ipv4Addr::UNSPECIFIED);
        let _ = send(&mut e, &raw, 2000 + n as u64);
        assert!(e.offers.len() <= 3 + 50);
        assert!(e.by_client.len() <= e.leases.len());
    }
}

#[test]
fn names_resolved_before_the_engine_is_built_are_used_as_given() {
    // a reload resolves first, then locks and swaps: with_names does no lookups itself
    let cfg = parse_str(
        "t.conf",
        "subnet 10.50.0.0 netmask 255.255.255.0 { range 10.50.0.100 10.50.0.102; next-server tftp.invalid; }",
    )
    .unwrap();
    let names = HashMap::from([("tftp.invalid".to_string(), Ipv4Addr::new(10, 50, 0, 7))]);
    let mut e = Engine::with_names(cfg, names, HashMap::new(), &[iface()]);
    let raw = crate::wire::request(MsgType::Discover, mac(1), 1, &[]);
    assert_eq!(
        reply(&send(&mut e, &raw, 1000)).0.siaddr,
        Ipv4Addr::new(10, 50, 0, 7)
    );
}

fn bootp_request(m: [u8; 6]) -> Vec<u8> {
    let mut msg = Msg::parse(&crate::wire::request(MsgType::Discover, m, 9, &[])).unwrap();
    msg.options.clear(); // RFC 951: no DHCP message type
    msg.flags = 0x8000;
    msg.encode(300)
}

#[test]
fn bootp_requests_get_a_bootreply_on_the_fixed_address() {
    let mut e = engine();
    let (r, dest) = reply(&send(&mut e, &bootp_request(mac(0x33)), 1000));
    assert_eq!(r.op, BOOTREPLY);
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 50, 0, 20));
    assert_eq!(r.siaddr, Ipv4Addr::new(10, 50, 0, 1));
    assert!(r.file.starts_with(b"uefi/shimx64.efi\0"));
    assert_eq!(dest, Dest::Broadcast);
    assert_eq!(r.msg_type(), None, "no DHCP message type in a BOOTREPLY");
    for dhcp_only in [OPT_SERVER_ID, OPT_LEASE_TIME, OPT_T1, OPT_T2] {
        assert_eq!(r.option(dhcp_only), None, "option {dhcp_only}");
    }
    assert_eq!(r.option(OPT_SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
    assert!(e.leases.is_empty(), "a fixed address is not a lease");
    // a client without a fixed address gets nothing from a DHCP-only range (ISC), nor
    // anyone under deny bootp
    assert!(matches!(
        send(&mut e, &bootp_request(mac(1)), 1000),
        Action::Drop("bootp_without_address")
    ));
    let denied = CONF.replace("authoritative;", "authoritative;\ndeny bootp;");
    let mut e = engine_of(&denied);
    assert!(matches!(
        send(&mut e, &bootp_request(mac(0x33)), 1000),
        Action::Drop("bootp_denied")
    ));
}

#[test]
fn bootp_clients_without_a_host_get_infinite_leases_from_dynamic_bootp_ranges() {
    let conf = CONF.replace(
        "range 10.50.0.100 10.50.0.102;",
        "range 10.50.0.100 10.50.0.101;\n  range dynamic-bootp 10.50.0.110 10.50.0.111;",
    );
    let mut e = engine_of(&conf);
    let a = send(&mut e, &bootp_request(mac(1)), 1000);
    let Action::Commit { leases, .. } = &a else {
        panic!("a dynamic BOOTP lease is journaled: {a:?}");
    };
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    assert_eq!(
        (l.ip, l.mac, l.ends),
        (
            Ipv4Addr::new(10, 50, 0, 110),
            Some(mac(1)),
            crate::leases::NEVER
        )
    );
    assert!(crate::leases::render(l).contains("  ends never;\n"));
    let (r, _) = reply(&a);
    assert_eq!((r.op, r.yiaddr), (BOOTREPLY, Ipv4Addr::new(10, 50, 0, 110)));
    assert_eq!(r.msg_type(), None);
    assert_eq!(r.option(OPT_LEASE_TIME), None);
    assert_eq!(r.siaddr, Ipv4Addr::new(10, 50, 0, 1));
    assert!(r.file.starts_with(b"pxelinux.0\0"));
    assert_eq!(r.option(3), Some(&[10, 50, 0, 1][..]));
    // the same client again: the same address; another: the next one; then none is left
    assert_eq!(
        reply(&send(&mut e, &bootp_request(mac(1)), 2000)).0.yiaddr,
        l.ip
    );
    assert_eq!(
        reply(&send(&mut e, &bootp_request(mac(2)), 2000)).0.yiaddr,
        Ipv4Addr::new(10, 50, 0, 111)
    );
    assert!(matches!(
        send(&mut e, &bootp_request(mac(3)), 2000),
        Action::Drop("bootp_without_address")
    ));
    // DHCP clients use the dynamic-bootp range too once the others are taken
    let mut seen = HashSet::new();
    for n in 10..12 {
        seen.insert(
            reply(&send(
                &mut e,
                &crate::wire::request(MsgType::Discover, mac(n), 1, &[]),
                3000,
            ))
            .0
            .yiaddr,
        );
    }
    assert_eq!(
        seen,
        HashSet::from([Ipv4Addr::new(10, 50, 0, 100), Ipv4Addr::new(10, 50, 0, 101)])
    );
    e.leases
        .retain(|ip, _| *ip != Ipv4Addr::new(10, 50, 0, 111));
    e.by_client
        .retain(|_, ip| *ip != Ipv4Addr::new(10, 50, 0, 111));
    let (r, _) = reply(&send(
        &mut e,
        &crate::wire::request(MsgType::Discover, mac(20), 1, &[]),
        3000,
    ));
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 50, 0, 111));

    // dynamic-bootp-lease-length bounds the lease; deny bootp refuses dynamic BOOTP too
    let limited = conf.replace(
        "authoritative;",
        "authoritative;\ndynamic-bootp-lease-length 3600;",
    );
    let mut e = engine_of(&limited);
    let Action::Commit { leases, .. } = send(&mut e, &bootp_request(mac(1)), 1000) else {
        panic!("no lease");
    };
    assert_eq!(leases[0].ends, 4600);
    // a pool's `deny dynamic bootp clients` keeps them out of its ranges
    let pooled = conf.replace(
        "range dynamic-bootp 10.50.0.110 10.50.0.111;",
        "pool { deny dynamic bootp clients; range dynamic-bootp 10.50.0.110 10.50.0.111; }",
    );
    let mut e = engine_of(&pooled);
    assert!(matches!(
        send(&mut e, &bootp_request(mac(1)), 1000),
        Action::Drop("bootp_without_address")
    ));
    let denied = conf.replace("authoritative;", "authoritative;\ndeny bootp;");
    let mut e = engine_of(&denied);
    assert!(matches!(
        send(&mut e, &bootp_request(mac(1)), 1000),
        Action::Drop("bootp_denied")
    ));
}

#[test]
fn ping_check_probes_free_addresses_and_abandons_one_that_answers() {
    let conf = CONF.replace(
        "authoritative;",
        "authoritative;\nping-check true;\nping-timeout 2;",
    );
    let mut e = engine_of(&conf);
    let discover = crate::wire::request(MsgType::Discover, mac(1), 1, &[]);
    let first = Ipv4Addr::new(10, 50, 0, 100);
    let a = send(&mut e, &discover, 1000);
    assert!(
        matches!(a, Action::Probe { ip, timeout: 2, .. } if ip == first),
        "{a:?}"
    );
    // while the probe runs, the address is held for this client
    let other = crate::wire::request(
        MsgType::Discover,
        mac(2),
        1,
        &[(OPT_REQUESTED_IP, &first.octets())],
    );
    match send(&mut e, &other, 1000) {
        Action::Probe { ip, .. } => assert_ne!(ip, first),
        a => panic!("{a:?}"),
    }
    // it answered: abandoned, journaled, and the request handled again probes another
    let l = e.probe_answered(first, 600, 1001);
    assert_eq!((l.ip, l.state), (first, State::Abandoned));
    assert_eq!(e.leases[&first].state, State::Abandoned);
    let next = match send(&mut e, &discover, 1001) {
        Action::Probe { ip, .. } => ip,
        a => panic!("{a:?}"),
    };
    assert_ne!(next, first);
    // silence: the same request now gets its offer, without another probe
    e.probe_silent(next, 1003);
    let (off, _) = reply(&send(&mut e, &discover, 1003));
    assert_eq!((off.msg_type(), off.yiaddr), (Some(MsgType::Offer), next));
    // the client's own live lease is not probed again
    let req = crate::wire::request(
        MsgType::Request,
        mac(1),
        1,
        &[
            (OPT_SERVER_ID, &[10, 50, 0, 1]),
            (OPT_REQUESTED_IP, &next.octets()),
        ],
    );
    assert!(matches!(send(&mut e, &req, 1003), Action::Commit { .. }));
    assert!(matches!(
        send(&mut e, &discover, 1000 + OFFER_HOLD * 3),
        Action::Send(_)
    ));
}

#[test]
fn the_lease_tables_start_with_room_for_every_range_address_up_to_a_cap() {
    let e = engine();
    // 3 + 50 addresses in the two ranges
    assert_eq!(pool_room(&e.cfg), 53);
    assert!(e.leases.capacity() >= 53 && e.by_client.capacity() >= 53);
    let big = parse_str(
        "t.conf",
        "subnet 10.0.0.0 netmask 255.0.0.0 { range 10.0.0.1 10.255.255.254; }",
    )
    .unwrap();
    assert_eq!(pool_room(&big), MAX_ROOM);
}

#[test]
fn prefault_keeps_the_leases_and_the_room() {
    let mut e = engine();
    let m = mac(9);
    let ip = dora(&mut e, m, 1000);
    let (cap, len, by_client) = (e.leases.capacity(), e.leases.len(), e.by_client.len());
    e.prefault();
    assert_eq!(
        (e.leases.capacity(), e.leases.len(), e.by_client.len()),
        (cap, len, by_client)
    );
    assert_eq!(e.leases[&ip].mac, Some(m));
    assert_eq!(dora(&mut e, m, 1001), ip, "the client keeps its address");
}
