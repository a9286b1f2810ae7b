//! One fuzz target per decoder and parser that reads what a user or the network sends. Each
//! runs for `OPSFLOW_FUZZ_SECS` (default 3 s) from its corpus in `fuzz/corpus/TARGET/`; see
//! the crate documentation for replaying a failure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use opsflow_fuzz::{check, Target};

fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d).into_owned()
}

#[test]
fn dhcp_wire() {
    check(
        Target {
            name: "dhcp_wire",
            dictionary: &[
                b"\x63\x82\x53\x63",
                b"\x35\x01\x01",
                b"\x35\x01\x03",
                b"\x3d\xff",
                b"\x52\x04\x01\x02ab",
                b"\x34\x01\x03",
                b"\xff",
                b"\x00",
            ],
            max_len: 1500,
        },
        |d| {
            let _ = dhcpd::wire::Msg::parse(d);
            let _ = dhcpd::wire::Msg::parse_request(d);
        },
    );
}

#[test]
fn tftp_packet() {
    check(
        Target {
            name: "tftp_packet",
            dictionary: &[
                b"\0",
                b"octet\0",
                b"netascii\0",
                b"blksize\0",
                b"tsize\0",
                b"timeout\0",
                b"windowsize\0",
                b"65464\0",
                b"0\0",
                b"../",
            ],
            max_len: 1500,
        },
        |d| {
            let _ = tftpd::packet::parse(d);
        },
    );
}

#[test]
fn vrrp_advert() {
    check(
        Target {
            name: "vrrp",
            dictionary: &[
                b"\x45",
                b"\x21",
                b"\x31",
                b"\xff",
                b"\x70",
                b"\xe0\x00\x00\x12",
            ],
            max_len: 1500,
        },
        |d| {
            for version in [2, 3] {
                let _ = ha::vrrp::decode(d, version, &ha::conf::Auth::None);
                let _ = ha::vrrp::decode(d, version, &ha::conf::Auth::Pass(*b"secret\0\0"));
            }
        },
    );
}

#[test]
fn dhcpd_conf() {
    check(
        Target {
            name: "dhcpd_conf",
            dictionary: &[
                b"subnet ",
                b"netmask ",
                b"range ",
                b"host ",
                b"{",
                b"}",
                b";",
                b"option ",
                b"\"",
                b"if ",
                b"else ",
                b"match ",
                b"class ",
                b"pool ",
                b"group ",
                b"fixed-address ",
                b"hardware ethernet ",
                b"substring(",
                b"option vendor-class-identifier",
                b"=",
                b"#",
                b"\n",
                b"255.255.255.255",
                b"01:02:03:04:05:06",
            ],
            max_len: 16 * 1024,
        },
        |d| {
            let _ = dhcpd::conf::parse_str("fuzz.conf", &text(d));
        },
    );
}

#[test]
fn keepalived_conf() {
    check(
        Target {
            name: "keepalived_conf",
            dictionary: &[
                b"vrrp_instance ",
                b"virtual_server ",
                b"real_server ",
                b"{",
                b"}",
                b"\n",
                b"\"",
                b"!",
                b"#",
                b"$VAR",
                b"@id ",
                b"~SEQ(1,3,1)",
                b"priority ",
                b"advert_int ",
                b"virtual_ipaddress ",
                b"track_script ",
                b"HTTP_GET ",
                b"1e300",
                b"inf",
                b"-1",
                b"4294967296",
                b"status_code 200-299",
            ],
            max_len: 16 * 1024,
        },
        |d| {
            let _ = ha::conf::load_str("fuzz.conf", &text(d), "");
        },
    );
}

#[test]
fn tftp_remap() {
    check(
        Target {
            name: "tftp_remap",
            dictionary: &[
                b"r ",
                b"rg ",
                b"ri ",
                b"e ",
                b"s ",
                b"a ",
                b"G",
                b"P",
                b"~",
                b"\\",
                b"\\1",
                b"\\i",
                b"\\x",
                b"(",
                b")",
                b"[[:alpha:]]",
                b"*",
                b"{1000}",
                b"\n",
            ],
            max_len: 4096,
        },
        |d| {
            if let Ok(r) = tftpd::remap::Remap::parse("fuzz.remap", &text(d)) {
                let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
                for name in [
                    "pxelinux.0",
                    "/tftpboot/grub/grub.cfg",
                    "..\\..\\etc\\passwd",
                    "",
                ] {
                    let _ = r.apply(name, false, client);
                    let _ = r.apply(name, true, client);
                }
            }
        },
    );
}

#[test]
fn inventory() {
    check(
        Target {
            name: "inventory",
            dictionary: &[
                b"[[systems]]\n",
                b"[server]\n",
                b"name = ",
                b"mac = ",
                b"ip = ",
                b"\"",
                b"'",
                b"=",
                b"\n",
                b"[",
                b"]",
                b"{",
                b"}",
                b"\"52:54:00:00:00:01\"",
                b"\"10.0.0.1\"",
                b"\"../../etc\"",
                b"1e308",
            ],
            max_len: 16 * 1024,
        },
        |d| {
            let _ = kickstart::inventory::Inventory::parse(Path::new("fuzz.toml"), &text(d));
        },
    );
}
