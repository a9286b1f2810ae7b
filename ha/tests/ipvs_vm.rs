//! Real IPVS in a real kernel: tests/vm/ipvs.sh boots Debian's kernel under qemu (TCG) with
//! the ip_vs modules and runs this build's `ha` inside; ipvsadm -Ln and /proc/net/ip_vs check
//! NAT, DR, TUN, fwmark, persistence, drain/enable, a weight change by reload, removal by a
//! failing check, a gray route (fwmark service plus nftables mark rule, added and removed
//! together), a foreign service left alone and cleanup at shutdown; keepalived's IPVS extras:
//! lvs_flush, lvs_flush_onstop, lvs_timeouts, ops, persistence_engine sip, thresholds, own
//! forwarding methods of real and sorry servers, and the sync daemon following a VRRP instance
//! through MASTER, FAULT, MASTER; then inet6 services (NAT with a client's traffic through to
//! real servers in namespaces, DR, TUN, an inet6 fwmark service), drained by bracketed name
//! and taken out by TCP_CHECK.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::process::Command;

use opsflow_tests::require;

#[test]
fn ipvs_in_a_debian_kernel_under_qemu() {
    if !require(&["qemu-system-x86_64", "cpio", "apt-get", "dpkg"]) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vm/ipvs.sh");
    let work = std::env::temp_dir().join(format!("ipvs-vm-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_ha"))
        .arg(&work)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{report}");
    assert!(
        out.status.success() && report.contains("RESULT fails=0"),
        "the IPVS checks in the VM failed (serial log: {}):\n{report}\n{err}",
        work.join("serial.log").display()
    );
    assert!(report.matches("CHECK ok").count() >= 48, "{report}");
    let _ = std::fs::remove_dir_all(&work);
}
