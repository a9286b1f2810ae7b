//! Each kind of machine a site has boots from our dhcpd, tftpd and kickstart, from power-on to
//! the installer fetching its kickstart: `./demo --firmware F --boot-only` with this build's
//! binaries. BIOS: a plain PXE client (option 93 = 0) runs pxelinux.0 and its per-MAC config;
//! UEFI: OVMF's PXE runs GRUB, which reads its per-MAC config; iPXE: qemu's NIC ROM gets
//! boot.ipxe within 2 s of the DHCP ACK (the router advertisements end its IPv6 wait).
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

mod common;

use std::path::Path;
use std::sync::Mutex;

use opsflow_tests::{in_ci, require};

/// One VM at a time: the machine has few cores and TCG is slow.
static ONE_VM: Mutex<()> = Mutex::new(());

/// Each boot, power-on to kickstart, must take less than this (TCG on a busy machine).
const LIMIT_SECS: f64 = 90.0;

fn boot(firmware: &str, files: &[&str]) -> Option<serde_json::Value> {
    if !require(common::DEMO_TOOLS) {
        return None;
    }
    let missing: Vec<&&str> = files.iter().filter(|f| !Path::new(f).is_file()).collect();
    if !missing.is_empty() {
        let msg = format!("this test needs {missing:?} (apt-get install ipxe ovmf pxelinux syslinux-common grub-efi-amd64-signed)");
        assert!(!in_ci(), "{msg}; under CI=true that is a failure");
        eprintln!("SKIP: {msg}");
        return None;
    }
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    let (s, text) = common::run_demo(
        firmware,
        &["--firmware", firmware, "--boot-only"],
        &["dhcpd", "tftpd", "ha", "kickstart"],
    );
    let at = |k: &str| {
        s["stages"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("stage {k} not reached:\n{text}"))
    };
    let (ack, program, kickstart) = (at("dhcp_ack"), at("tftp_done"), at("kickstart"));
    println!(
        "{firmware}: power-on to kickstart {kickstart:.1} s (limit {LIMIT_SECS} s); DHCP ACK {ack:.1} s, boot program {program:.1} s"
    );
    assert!(
        kickstart < LIMIT_SECS,
        "{firmware}: power-on to kickstart took {kickstart:.1} s:\n{text}"
    );
    assert!(
        ack <= program && program <= kickstart,
        "stages out of order:\n{text}"
    );
    assert_eq!(s["firmware"], firmware);
    let _ = std::fs::remove_dir_all(s["logs"].as_str().unwrap());
    Some(s)
}

#[test]
fn a_bios_machine_boots_through_pxelinux() {
    boot(
        "bios",
        &["/usr/lib/ipxe/ipxe.lkrn", "/usr/lib/PXELINUX/pxelinux.0"],
    );
}

#[test]
fn a_uefi_machine_boots_through_grub() {
    boot("uefi", &["/usr/share/ovmf/OVMF.fd"]);
}

#[test]
fn an_ipxe_machine_gets_its_boot_program_within_2_s_of_the_ack() {
    let Some(s) = boot("ipxe", &[]) else { return };
    let gap =
        s["stages"]["tftp_done"].as_f64().unwrap() - s["stages"]["dhcp_ack"].as_f64().unwrap();
    println!("ipxe: DHCP ACK to boot program {gap:.1} s (limit 2.0 s)");
    assert!(
        gap <= 2.0,
        "iPXE waited {gap:.1} s between the ACK and its boot program"
    );
}
