//! An instance's address family, as keepalived decides it, and what follows from it.

use std::net::IpAddr;

use super::syntax::{error, warning, Diag};
use super::{Auth, Instance, Vip};

/// An instance is IPv4 or IPv6 as keepalived decides: `native_ipv6`, else its first
/// virtual address, else its unicast addresses. Addresses of the other family are not
/// advertised (they move to the excluded list, as keepalived does with a warning); IPv6
/// speaks VRRPv3 only, and AH is for IPv4 (and clears an initial state MASTER).
pub(super) fn family(i: &mut Instance, native_ipv6: bool, diags: &mut Vec<Diag>) {
    i.ipv6 = native_ipv6
        || match i.vips.first() {
            Some(v) => v.addr.is_ipv6(),
            None => i
                .unicast_src
                .or(i.unicast_peers.first().copied())
                .is_some_and(|a| a.is_ipv6()),
        };
    let (mine, other): (Vec<Vip>, Vec<Vip>) = std::mem::take(&mut i.vips)
        .into_iter()
        .partition(|v| v.addr.is_ipv6() == i.ipv6);
    for v in &other {
        diags.push(warning(&i.pos, format!("vrrp_instance {}: {} is not of the instance's family ({}): it is handled as virtual_ipaddress_excluded, as keepalived does", i.name, v.addr, if i.ipv6 { "IPv6" } else { "IPv4" })));
    }
    i.vips = mine;
    i.vips_excluded.extend(other);
    let wrong = |a: &IpAddr| a.is_ipv6() != i.ipv6;
    if i.unicast_src
        .iter()
        .chain(&i.unicast_peers)
        .chain(&i.mcast_src)
        .any(wrong)
    {
        diags.push(error(&i.pos, format!("vrrp_instance {}: unicast_src_ip, unicast_peer and mcast_src_ip must be of the instance's family ({})", i.name, if i.ipv6 { "IPv6" } else { "IPv4" })));
    }
    if i.ipv6 && i.version == 2 {
        diags.push(warning(
            &i.pos,
            format!(
                "vrrp_instance {}: VRRPv2 has no IPv6; using version 3 as keepalived does",
                i.name
            ),
        ));
        i.version = 3;
    }
    if matches!(i.auth, Auth::Ah(_)) && i.initial_master {
        diags.push(warning(&i.pos, format!("vrrp_instance {}: initial state MASTER is incompatible with AH authentication: it starts as BACKUP, as keepalived does (its sequence numbers start again)", i.name)));
        i.initial_master = false;
    }
    if i.version == 3 && matches!(i.auth, Auth::Ah(_) | Auth::Pass(_)) {
        diags.push(warning(
            &i.pos,
            format!(
                "vrrp_instance {}: VRRPv3 has no authentication; ignored as keepalived does",
                i.name
            ),
        ));
        i.auth = Auth::None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::errs;
    use super::super::*;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn ipv6_instances_follow_their_addresses_and_ah_keys_with_eight_bytes() {
        let c = load_str(
            "k.conf",
            "global_defs {\n vrrp_mcast_group6 ff02::13\n}\nvrrp_instance V6 {\n interface lo\n virtual_router_id 52\n virtual_ipaddress {\n 2001:db8::100/64 dev lo nodad\n 10.0.0.9/24\n }\n unicast_src_ip fe80::1\n unicast_peer {\n fe80::2\n }\n}\n\
             vrrp_instance A {\n state MASTER\n interface lo\n virtual_router_id 53\n authentication {\n auth_type AH\n auth_pass secret1\n }\n virtual_ipaddress {\n 10.0.0.100/24\n }\n}\n\
             vrrp_instance N {\n interface lo\n virtual_router_id 54\n native_ipv6\n}\n",
            "",
        )
        .expect("valid");
        let v6 = &c.instances[0];
        assert!(v6.ipv6);
        assert_eq!(v6.version, 3, "IPv6 is VRRPv3 only");
        assert_eq!(v6.mcast_group6, "ff02::13".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.vips.len(), 1);
        assert!(v6.vips[0].nodad);
        assert_eq!(
            (v6.vips[0].prefix, v6.vips[0].dev.as_deref()),
            (64, Some("lo"))
        );
        assert_eq!(
            v6.vips_excluded[0].addr,
            "10.0.0.9".parse::<IpAddr>().unwrap(),
            "the other family is not advertised"
        );
        assert_eq!(v6.unicast_peers, vec!["fe80::2".parse::<IpAddr>().unwrap()]);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.to_string().contains("10.0.0.9")));
        assert_eq!(c.instances[1].auth, Auth::Ah(*b"secret1\0"));
        assert!(!c.instances[1].initial_master, "AH clears state MASTER");
        assert!(!c.instances[1].ipv6);
        assert!(c.instances[2].ipv6, "native_ipv6");
        let e = errs("vrrp_instance V {\n interface lo\n virtual_router_id 9\n virtual_ipaddress {\n 2001:db8::1/64\n 2001:db8::2/129\n 10.0.0.1/24 nodad\n }\n unicast_peer {\n 10.0.0.2\n }\n}\n");
        assert!(
            e.iter()
                .any(|e| e.contains(":6:") && e.contains("the prefix length must be 0 to 128")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains(":7:") && e.contains("nodad")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("must be of the instance's family")),
            "{e:?}"
        );
    }
}
