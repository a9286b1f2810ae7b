//! The whole flow, as README's first command runs it: `./demo --summary FILE` with this
//! build's binaries. A VM PXE-boots from our dhcpd, tftpd and kickstart, installs itself, joins
//! the VRRP cluster with ha, takes the VIP when lb1 stops, and release rolls the real servers
//! while a client sends requests. On failure the demo names the stage that broke; its output
//! and the logs directory are printed.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

mod common;

use opsflow_tests::require;

#[test]
fn a_vm_pxe_boots_from_our_servers_and_joins_the_cluster() {
    if !(require(common::DEMO_TOOLS) && require(&["ssh"])) {
        return;
    }
    let (s, text) = common::run_demo(
        "flow",
        &[],
        &["dhcpd", "tftpd", "ha", "kickstart", "release"],
    );
    let order = [
        "dhcp_ack",
        "tftp_done",
        "kernel",
        "kickstart",
        "ha_joined",
        "failover",
        "release",
    ];
    let t: Vec<f64> = order
        .iter()
        .map(|k| {
            s["stages"][k]
                .as_f64()
                .unwrap_or_else(|| panic!("stage {k} not reached:\n{text}"))
        })
        .collect();
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "stages out of order: {t:?}"
    );
    assert_eq!(s["vip_owner_after_failover"], "vm", "{text}");
    assert_eq!(s["requests"]["failed"], 0, "{text}");
    assert!(s["requests"]["ok"].as_u64().unwrap_or(0) > 0, "{text}");
    let leases = std::fs::read_to_string(s["dhcp_leases"].as_str().unwrap()).unwrap();
    assert!(
        leases.to_lowercase().contains("52:54:00:99:00:12"),
        "{leases}"
    );
    println!("{text}");
    let _ = std::fs::remove_dir_all(s["logs"].as_str().unwrap());
}
