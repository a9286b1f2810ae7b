//! The raw layer: the inventory's TOML as serde reads it, unknown keys refused and
//! positions kept (`toml::Spanned`). [`super::build`] turns it into the model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) server: RawServer,
    pub(super) network: RawNetwork,
    #[serde(default)]
    pub(super) ha: RawHa,
    #[serde(default)]
    pub(super) distros: BTreeMap<String, RawDistro>,
    #[serde(default)]
    pub(super) profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub(super) systems: Vec<S<RawSystem>>,
    #[serde(default)]
    pub(super) clusters: Vec<S<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: S<String>,
    pub(super) base_url: Option<S<String>>,
    pub(super) next_server: S<String>,
    #[serde(default = "default_tftp_root")]
    pub(super) tftp_root: PathBuf,
    #[serde(default = "default_dhcpd_conf")]
    pub(super) dhcpd_conf: PathBuf,
    #[serde(default = "default_state_dir")]
    pub(super) state_dir: PathBuf,
    pub(super) templates: Option<PathBuf>,
    pub(super) files: Option<PathBuf>,
    pub(super) ha_binary: Option<PathBuf>,
    #[serde(default = "default_bios_boot")]
    pub(super) bios_boot_file: String,
    #[serde(default = "default_uefi_boot")]
    pub(super) uefi_boot_file: String,
    #[serde(default = "default_ipxe_boot")]
    pub(super) ipxe_boot_file: String,
    /// TFTP path → the file to install there instead of the package's.
    #[serde(default)]
    pub(super) boot_programs: BTreeMap<String, PathBuf>,
}

pub(super) fn default_tftp_root() -> PathBuf {
    "/srv/tftp".into()
}
pub(super) fn default_dhcpd_conf() -> PathBuf {
    "/etc/dhcp/dhcpd.conf".into()
}
pub(super) fn default_state_dir() -> PathBuf {
    "/var/lib/opsflow/kickstart".into()
}
pub(super) fn default_bios_boot() -> String {
    "pxelinux.0".into()
}
pub(super) fn default_uefi_boot() -> String {
    "grubx64.efi".into()
}
pub(super) fn default_ipxe_boot() -> String {
    "boot.ipxe".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) subnet: S<String>,
    pub(super) range: Option<S<Vec<String>>>,
    #[serde(default = "empty_list")]
    pub(super) routers: S<Vec<String>>,
    #[serde(default = "empty_list")]
    pub(super) dns: S<Vec<String>>,
    pub(super) domain: Option<String>,
    #[serde(default = "default_lease")]
    pub(super) lease_time: u32,
    pub(super) max_lease_time: Option<u32>,
    /// `kickstart serve` answers IPv6 router solicitations on this network (default true).
    pub(super) router_advertisements: Option<bool>,
    /// Their router lifetime in seconds (default 0: not a default router).
    #[serde(default)]
    pub(super) ra_router_lifetime: u16,
    /// The network's IPv6 prefix (`2001:db8:99::/64`) when it is dual-stack: systems may
    /// have an `ip6` in it, clusters IPv6 virtual IPs and virtual servers.
    pub(super) subnet6: Option<S<String>>,
    /// A ProxyDHCP server (WDS, FOG, dnsmasq --dhcp-range=...,proxy) answers PXE clients on
    /// this network too (default false: iPXE is told not to wait for one).
    #[serde(default)]
    pub(super) proxy_dhcp: bool,
}

pub(super) fn empty_list() -> S<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

pub(super) fn default_lease() -> u32 {
    3600
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    #[serde(default)]
    pub(super) notify_email: Vec<S<String>>,
    pub(super) notify_email_from: Option<S<String>>,
    pub(super) smtp_server: Option<S<String>>,
    pub(super) mcast_group: Option<S<String>>,
    /// Where notify.sh is installed on the nodes.
    pub(super) notify_script: Option<S<String>>,
    /// Where the ha binary is installed on the nodes.
    pub(super) binary_path: Option<S<String>>,
    /// ha's control API on the nodes: a unix socket path or HOST:PORT.
    pub(super) control: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDistro {
    pub(super) kernel: S<String>,
    pub(super) initrd: S<String>,
    pub(super) repo: Option<S<String>>,
    pub(super) kernel_args: Option<S<String>>,
    #[serde(default = "default_arch")]
    pub(super) arch: String,
}

pub(super) fn default_arch() -> String {
    "x86_64".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) distro: S<String>,
    #[serde(default = "default_ks")]
    pub(super) kickstart: S<String>,
    pub(super) kernel_args: Option<S<String>>,
    #[serde(default)]
    pub(super) vars: Vars,
}

pub(super) fn default_ks() -> S<String> {
    Spanned::new(0..0, "kickstart.ks".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSystem {
    pub(super) name: S<String>,
    pub(super) mac: S<String>,
    pub(super) ip: S<String>,
    /// The system's IPv6 address on a dual-stack network (`network.subnet6`).
    pub(super) ip6: Option<S<String>>,
    pub(super) profile: S<String>,
    #[serde(default = "yes")]
    pub(super) netboot: bool,
    pub(super) hostname: Option<S<String>>,
    pub(super) interface: Option<S<String>>,
    pub(super) kernel_args: Option<S<String>>,
    #[serde(default)]
    pub(super) vars: Vars,
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_iface() -> String {
    "eth0".into()
}

/// Template variables (`[profiles.X.vars]`, a system's `vars`), each with its position.
pub(super) type Vars = BTreeMap<String, S<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) name: S<String>,
    #[serde(default = "default_iface")]
    pub(super) interface: String,
    pub(super) vrid: S<u32>,
    pub(super) auth_pass: Option<S<String>>,
    #[serde(default = "one")]
    pub(super) advert_int: u32,
    #[serde(default = "two")]
    pub(super) vrrp_version: u8,
    pub(super) virtual_ips: S<Vec<String>>,
    #[serde(default)]
    pub(super) nopreempt: bool,
    #[serde(default = "yes")]
    pub(super) notify: bool,
    /// Seconds a higher-priority member waits before taking over (keepalived's preempt_delay).
    pub(super) preempt_delay: Option<u32>,
    /// Interfaces whose link state puts the instance into FAULT.
    #[serde(default)]
    pub(super) track_interface: Vec<String>,
    /// Adverts go to the other members' addresses instead of the multicast group.
    #[serde(default)]
    pub(super) unicast: bool,
    /// Clusters with the same sync group change state together (vrrp_sync_group).
    pub(super) sync_group: Option<S<String>>,
    #[serde(default)]
    pub(super) track: Vec<RawTrack>,
    pub(super) members: S<Vec<S<RawMember>>>,
    #[serde(default)]
    pub(super) virtual_servers: Vec<S<RawVirtualServer>>,
}

pub(super) fn one() -> u32 {
    1
}
pub(super) fn two() -> u8 {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    pub(super) name: String,
    pub(super) script: String,
    #[serde(default = "one")]
    pub(super) interval: u32,
    #[serde(default)]
    pub(super) weight: i32,
    pub(super) fall: Option<u32>,
    pub(super) rise: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub(super) system: S<String>,
    pub(super) priority: S<u32>,
    pub(super) interface: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualServer {
    pub(super) address: S<String>,
    #[serde(default = "tcp")]
    pub(super) protocol: String,
    #[serde(default = "rr")]
    pub(super) scheduler: S<String>,
    #[serde(default = "dr")]
    pub(super) method: S<String>,
    #[serde(default = "six")]
    pub(super) delay_loop: u32,
    pub(super) persistence_timeout: Option<u32>,
    pub(super) sorry_server: Option<S<String>>,
    #[serde(default = "one")]
    pub(super) weight: u32,
    /// Per real server (keyed as written in `real_servers`), instead of `weight`.
    #[serde(default)]
    pub(super) weights: BTreeMap<String, S<u32>>,
    /// A firewall-mark service (`virtual_server fwmark N`): the address's port is the real
    /// servers' default port.
    pub(super) fwmark: Option<S<u32>>,
    pub(super) real_servers: S<Vec<S<String>>>,
    pub(super) check: Option<S<RawCheck>>,
}

pub(super) fn tcp() -> String {
    "TCP".into()
}
pub(super) fn rr() -> S<String> {
    Spanned::new(0..0, "rr".into())
}
pub(super) fn dr() -> S<String> {
    Spanned::new(0..0, "DR".into())
}
pub(super) fn six() -> u32 {
    6
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(rename = "type")]
    pub(super) kind: S<String>,
    pub(super) path: Option<String>,
    pub(super) status_code: Option<u16>,
    pub(super) digest: Option<String>,
    pub(super) port: Option<u16>,
    #[serde(default = "three")]
    pub(super) connect_timeout: u32,
    #[serde(default = "three")]
    pub(super) retry: u32,
    #[serde(default = "three")]
    pub(super) delay_before_retry: u32,
    pub(super) helo_name: Option<String>,
    pub(super) script: Option<String>,
    pub(super) timeout: Option<u32>,
}

pub(super) fn three() -> u32 {
    3
}
