//! The ruleset analysis on rulesets nft and iptables printed (`ha/tests/data/doctor/`).

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/doctor")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn nft(name: &str) -> Ruleset {
    Ruleset::from_nft_json(&fixture(name)).unwrap()
}

fn multicast() -> Packet {
    Packet {
        proto: 112,
        saddr: None,
        src_net: Some((IpAddr::from(Ipv4Addr::new(10, 0, 0, 0)), 24)),
        daddr: Some(IpAddr::from(Ipv4Addr::new(224, 0, 0, 18))),
        iif: "eth0".into(),
    }
}

fn unicast(from: [u8; 4]) -> Packet {
    Packet {
        proto: 112,
        saddr: Some(from.into()),
        src_net: None,
        daddr: Some(IpAddr::from(Ipv4Addr::new(10, 0, 0, 1))),
        iif: "eth0".into(),
    }
}

/// A VRRPv3 advert to ff02::12 from a link-local address.
fn multicast6() -> Packet {
    Packet {
        proto: 112,
        saddr: None,
        src_net: Some((IpAddr::from(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 64)),
        daddr: Some(IpAddr::from(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12))),
        iif: "eth0".into(),
    }
}

fn unicast6(from: &str) -> Packet {
    Packet {
        proto: 112,
        saddr: Some(from.parse().unwrap()),
        src_net: None,
        daddr: Some("2001:db8::1".parse().unwrap()),
        iif: "eth0".into(),
    }
}

/// `(table chain handle certain)` of each drop, for short assertions.
fn check(rs: &Ruleset, p: &Packet) -> Vec<(String, String, Option<u64>, bool)> {
    rs.drops(p)
        .into_iter()
        .map(|d| (d.table, d.in_chain, d.handle, d.certain))
        .collect()
}

fn drop(
    table: &str,
    chain: &str,
    handle: Option<u64>,
    certain: bool,
) -> Vec<(String, String, Option<u64>, bool)> {
    vec![(table.into(), chain.into(), handle, certain)]
}

#[test]
fn a_rule_that_drops_112_is_named_by_its_handle() {
    let rs = nft("drop-by-rule.json");
    assert_eq!(
        check(&rs, &multicast()),
        drop("nodefw", "filter_in", Some(4), true)
    );
    assert_eq!(
        check(&rs, &unicast([10, 0, 0, 2])),
        drop("nodefw", "filter_in", Some(4), true)
    );
    // AH is not what that rule drops
    let ah = Packet {
        proto: 51,
        ..multicast()
    };
    assert!(check(&rs, &ah).is_empty());
    let d = &rs.drops(&multicast())[0];
    assert_eq!(
        d.place(),
        "table inet nodefw chain filter_in (input hook) rule handle 4"
    );
}

#[test]
fn a_drop_policy_without_an_accept_for_112_drops_it() {
    let rs = nft("drop-by-policy.json");
    assert_eq!(check(&rs, &multicast()), drop("host", "input", None, true));
    assert_eq!(
        rs.drops(&multicast())[0].place(),
        "table inet host chain input (input hook) policy drop"
    );
}

#[test]
fn an_accept_before_the_drop_lets_it_in() {
    let rs = nft("accept-before-drop.json");
    // a peer of the named set: accepted in input, and the raw chain's drop is for other sources
    assert!(check(&rs, &unicast([10, 0, 0, 2])).is_empty());
    // the multicast group is accepted whoever sends, and the link is inside 10/8
    assert!(check(&rs, &multicast()).is_empty());
    // a link outside 10/8: the raw chain drops every advert of it
    let m = Packet {
        src_net: Some((IpAddr::from(Ipv4Addr::new(192, 168, 5, 0)), 24)),
        ..multicast()
    };
    assert_eq!(check(&rs, &m), drop("raw", "checks", Some(4), true));
    // a link that straddles 10/8: ha cannot tell
    let m = Packet {
        src_net: Some((IpAddr::from(Ipv4Addr::new(0, 0, 0, 0)), 1)),
        ..multicast()
    };
    assert!(!rs.drops(&m)[0].certain);
    // a unicast advert from an address outside the set ends in the policy
    assert_eq!(
        check(&rs, &unicast([10, 0, 0, 9])),
        drop("host", "input", None, true)
    );
    // from outside 10/8 the jumped-to chain of the prerouting hook drops it first
    let far = unicast([192, 168, 1, 2]);
    assert_eq!(
        check(&rs, &far),
        vec![
            ("raw".to_string(), "checks".to_string(), Some(4), true),
            ("host".to_string(), "input".to_string(), None, true)
        ]
    );
    // on another interface the set accept does not apply
    let other_if = Packet {
        iif: "eth1".into(),
        ..unicast([10, 0, 0, 2])
    };
    assert_eq!(check(&rs, &other_if), drop("host", "input", None, true));
}

#[test]
fn an_xt_match_ha_cannot_read_makes_the_drop_uncertain() {
    let rs = nft("iptables-nft-xt.json");
    let d = rs.drops(&multicast());
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(!d[0].certain);
    assert_eq!(
        (d[0].table.as_str(), d[0].chain.as_str(), d[0].handle),
        ("filter", "INPUT", Some(2))
    );
    assert!(
        d[0].unknown.iter().any(|u| u.contains("conntrack")),
        "{:?}",
        d[0].unknown
    );
}

#[test]
fn verdict_maps_are_read_entry_by_entry() {
    // ct state vmap { invalid : drop, established : accept, related : accept }, then
    // meta l4proto vmap { tcp : jump tcpin, vrrp : drop }
    let rs = nft("vmap.json");
    assert_eq!(
        check(&rs, &multicast()),
        drop("filter", "input", Some(7), true)
    );
    // AH: no entry of either map, so the policy
    let ah = Packet {
        proto: 51,
        ..multicast()
    };
    assert_eq!(check(&rs, &ah), drop("filter", "input", None, true));
}

#[test]
fn iptables_legacy_rules_are_read_with_their_jumps() {
    let rs = Ruleset::from_iptables_save(&fixture("iptables-legacy.save"));
    assert!(!rs.is_empty());
    assert!(check(&rs, &unicast([10, 0, 0, 2])).is_empty());
    assert!(check(&rs, &unicast([10, 0, 0, 3])).is_empty());
    let d = rs.drops(&unicast([10, 0, 0, 7]));
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].place(),
        "iptables-legacy table filter chain INPUT policy drop"
    );
    // multicast: the source is any router of the link, so the peers chain may or may not
    // accept it
    let m = rs.drops(&multicast());
    assert_eq!(m.len(), 1);
    assert!(!m[0].certain, "{m:?}");
}

#[test]
fn iptables_drop_rules_count_from_one_per_chain() {
    let rs = Ruleset::from_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -i eth+ -p 112 -j DROP\nCOMMIT\n",
    );
    assert_eq!(
        check(&rs, &unicast([10, 0, 0, 2])),
        drop("filter", "INPUT", Some(2), true)
    );
    assert!(check(&rs, &unicast([172, 16, 0, 2])).is_empty());
    let lo = Packet {
        iif: "lo".into(),
        ..unicast([10, 0, 0, 2])
    };
    assert!(check(&rs, &lo).is_empty());
    // an empty legacy table set says nothing
    assert!(Ruleset::from_iptables_save("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n").is_empty());
}

#[test]
fn a_rate_limited_drop_is_only_a_warning() {
    let rs = Ruleset::from_nft_json(
        r#"{"nftables":[
        {"chain":{"family":"inet","table":"t","name":"in","hook":"input","policy":"accept"}},
        {"rule":{"family":"inet","table":"t","chain":"in","handle":2,"expr":[
            {"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"vrrp"}},
            {"limit":{"rate":10,"per":"second","inv":true}},{"drop":null}]}}]}"#,
    )
    .unwrap();
    assert_eq!(check(&rs, &multicast()), drop("t", "in", Some(2), false));
}

#[test]
fn bad_json_is_an_error_not_a_panic() {
    assert!(Ruleset::from_nft_json("{").is_err());
    assert!(Ruleset::from_nft_json("{}").is_err());
    let rs = Ruleset::from_nft_json(
        r#"{"nftables":[{"rule":{"expr":[{"match":{}}]}},{"chain":{"hook":7}}]}"#,
    )
    .unwrap();
    assert!(rs.drops(&multicast()).is_empty());
}

#[test]
fn rule_texts_come_from_the_listing() {
    let t = rule_texts(
        "table inet nodefw { # handle 1\n\tchain filter_in { # handle 1\n\t\ttype filter hook input priority filter; policy accept;\n\t\tip protocol vrrp drop # handle 4\n\t}\n}\n",
    );
    assert_eq!(
        t.get(&("inet".into(), "nodefw".into(), "filter_in".into(), 4))
            .map(String::as_str),
        Some("ip protocol vrrp drop")
    );
}

#[test]
fn ipv6_adverts_walk_the_ip6_and_inet_chains_and_never_the_ip_ones() {
    // inet nodefw: `ip protocol vrrp drop` (2) and `ip saddr != 10.0.0.0/8 drop` (3) are
    // IPv4 header matches; ip6 site6: `ip6 daddr ff02::12 drop` (4)
    let rs = nft("ip6-blocks-ff02-12.json");
    assert!(multicast6().is_v6() && !multicast().is_v6());
    assert_eq!(
        check(&rs, &multicast6()),
        drop("site6", "input", Some(4), true)
    );
    assert_eq!(
        rs.drops(&multicast6())[0].place(),
        "table ip6 site6 chain input (input hook) rule handle 4"
    );
    // a unicast IPv6 advert is not to ff02::12: nothing drops it
    assert!(check(&rs, &unicast6("2001:db8::2")).is_empty());
    // IPv4 adverts meet the inet rule, never the ip6 table
    assert_eq!(
        check(&rs, &multicast()),
        drop("nodefw", "filter_in", Some(2), true)
    );
}

#[test]
fn ipv6_accepts_by_group_set_and_nexthdr_before_a_drop_policy() {
    let rs = nft("ip6-accept.json");
    // `ip6 daddr ff02::12 meta l4proto vrrp accept` (6)
    assert!(check(&rs, &multicast6()).is_empty());
    // `ip6 saddr @peers6 ip6 nexthdr vrrp accept` (7)
    assert!(check(&rs, &unicast6("2001:db8::2")).is_empty());
    // another global peer: `ip6 saddr != fe80::/10 meta l4proto vrrp drop` (8)
    assert_eq!(
        check(&rs, &unicast6("2001:db8::9")),
        drop("host", "input", Some(8), true)
    );
    // a link-local peer passes that rule and ends in the policy
    assert_eq!(
        check(&rs, &unicast6("fe80::9")),
        drop("host", "input", None, true)
    );
    // IPv4 multicast is accepted by its own rule (5), AH of IPv4 is not
    assert!(check(&rs, &multicast()).is_empty());
    let ah = Packet {
        proto: 51,
        ..multicast()
    };
    assert_eq!(check(&rs, &ah), drop("host", "input", None, true));
}

#[test]
fn family_matches_and_ip6tables_legacy_rules() {
    let rs = Ruleset::from_nft_json(
        r#"{"nftables":[
        {"chain":{"family":"inet","table":"t","name":"in","hook":"input","policy":"accept"}},
        {"rule":{"family":"inet","table":"t","chain":"in","handle":2,"expr":[
            {"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"ipv6"}},
            {"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":112}},{"drop":null}]}}]}"#,
    )
    .unwrap();
    assert_eq!(check(&rs, &multicast6()), drop("t", "in", Some(2), true));
    assert!(check(&rs, &multicast()).is_empty());
    let rs = Ruleset::from_ip6tables_save(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -s fe80::/10 -d ff02::12/128 -p vrrp -j ACCEPT\n-A INPUT -s 2001:db8::/64 -p 112 -j DROP\nCOMMIT\n",
    );
    assert!(check(&rs, &multicast6()).is_empty());
    assert_eq!(
        check(&rs, &unicast6("2001:db8::2")),
        drop("filter", "INPUT", Some(2), true)
    );
    assert_eq!(
        rs.drops(&unicast6("2001:db8::2"))[0].place(),
        "iptables-legacy table filter chain INPUT rule 2"
    );
    // the ip6tables chains never see IPv4 adverts
    assert!(check(&rs, &multicast()).is_empty());
    let v6net = parse_net("2001:db8::/32").unwrap();
    assert!(v6net.contains("2001:db8:1::1".parse().unwrap()));
    assert!(!v6net.contains("2001:db9::1".parse().unwrap()));
    assert!(!v6net.contains("10.0.0.1".parse().unwrap()));
    assert!(parse_net("2001:db8::/129").is_none() && parse_net("10.0.0.0/33").is_none());
}
