//! `dhcpd --router-advertisements` against a real IPv6 stack: a host on the served segment
//! solicits and gets an advertisement (router lifetime 0, no DHCPv6, the server's MAC) at once.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use opsflow_tests::{wait_until, Host, Lab};
use socket2::{Domain, Protocol, Socket, Type};

const BIN: &str = env!("CARGO_BIN_EXE_dhcpd");

const CONF: &str = "authoritative;\nsubnet 10.51.0.0 netmask 255.255.255.0 {\n  range 10.51.0.100 10.51.0.199;\n}\n";

/// eth0's link-local address has passed duplicate address detection.
fn link_local_ready(h: &Host) -> bool {
    let out = h.run(
        "ip",
        &["-6", "addr", "show", "dev", "eth0", "scope", "link"],
    );
    out.contains("fe80::") && !out.contains("tentative")
}

/// The next router advertisement on `s` before `deadline`: (router lifetime, flags, source
/// link-layer address option).
fn next_advert(s: &Socket, deadline: Instant) -> Option<(u16, u8, Option<Vec<u8>>)> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            continue;
        };
        // SAFETY: recv_from initialised the first n bytes.
        let m: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if m.len() >= 16 && m[0] == 134 {
            let sll = m[16..]
                .chunks(8)
                .find(|o| o.len() == 8 && o[0] == 1)
                .map(|o| o[2..8].to_vec());
            return Some((u16::from_be_bytes([m[6], m[7]]), m[5], sll));
        }
    }
    None
}

#[test]
fn a_solicitation_is_answered_at_once_with_lifetime_zero() {
    let Some(lab) = Lab::new(&[]) else { return };
    let lan = lab.switch("lan");
    let srv = lab.host("srv");
    lab.attach(&srv, &lan, "eth0", Some("10.51.0.1/24"));
    let cli = lab.host("cli");
    lab.attach(&cli, &lan, "eth0", None);
    assert!(
        wait_until(Duration::from_secs(10), || link_local_ready(&srv)
            && link_local_ready(&cli)),
        "no link-local addresses: {}",
        srv.run("ip", &["-6", "addr"])
    );
    let conf = lab.path("dhcpd.conf");
    std::fs::write(&conf, CONF).unwrap();
    let leases = lab.path("dhcpd.leases");
    let mut p = srv.spawn(
        "dhcpd-ra",
        BIN,
        &[
            "--config",
            conf.to_str().unwrap(),
            "--leases",
            leases.to_str().unwrap(),
            "--interface",
            "eth0",
            "--router-advertisements",
        ],
    );
    assert!(
        p.wait_for_output("dhcpd ready", Duration::from_secs(10)),
        "{}",
        p.output()
    );
    let srv_mac: Vec<u8> = srv
        .run("cat", &["/sys/class/net/eth0/address"])
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();

    let s = cli.enter(|| {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        s.bind_device(Some(b"eth0")).unwrap();
        s.set_multicast_hops_v6(255).unwrap();
        s
    });
    // the advertisement dhcpd sends when it starts
    let first = next_advert(&s, Instant::now() + Duration::from_secs(10));
    assert!(
        first.is_some(),
        "no unsolicited advertisement: {}",
        p.output()
    );
    // a solicitation, answered long before the next unsolicited one (60 s)
    let idx = cli
        .run("cat", &["/sys/class/net/eth0/ifindex"])
        .trim()
        .parse()
        .unwrap();
    let to = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2), 0, 0, idx);
    let t0 = Instant::now();
    s.send_to(&[133, 0, 0, 0, 0, 0, 0, 0], &to.into()).unwrap();
    let got = next_advert(&s, t0 + Duration::from_secs(5));
    let took = t0.elapsed();
    let (lifetime, flags, sll) =
        got.unwrap_or_else(|| panic!("no answer to a solicitation: {}", p.output()));
    eprintln!("solicitation answered in {took:?}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(lifetime, 0, "router lifetime");
    assert_eq!(flags & 0xc0, 0, "M and O flags: no DHCPv6");
    assert_eq!(
        sll.as_deref(),
        Some(srv_mac.as_slice()),
        "source link-layer address"
    );
}
