//! The inventory: one TOML file describing the provisioning server, the DHCP network, what to
//! install (distros, profiles), the machines (systems) and the VRRP/LVS clusters.
//!
//! Two layers, as for every config language here: serde reads the raw TOML ([`raw`]: unknown
//! keys are errors, positions kept with `toml::Spanned`), then the builder ([`build`], with
//! [`clusters`]) checks references, uniqueness, addresses and values by kind and produces the
//! validated model in this file, which the templates see. Every problem is a [`Diag`] naming
//! `FILE:LINE:COL`.

mod build;
mod clusters;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use opsflow_common::diag::{self, Diag, Pos};
use serde::Serialize;

use crate::kinds;
use build::Builder;
use raw::{Raw, S};

// ---------------------------------------------------------------------------------------------
// validated model (what templates see)

#[derive(Clone, Debug, Serialize)]
pub struct Server {
    pub listen: SocketAddr,
    pub base_url: String,
    pub next_server: Ipv4Addr,
    pub tftp_root: PathBuf,
    pub dhcpd_conf: PathBuf,
    pub state_dir: PathBuf,
    pub templates: Option<PathBuf>,
    pub files: Option<PathBuf>,
    pub ha_binary: Option<PathBuf>,
    pub bios_boot_file: String,
    pub uefi_boot_file: String,
    /// What iPXE clients get by TFTP (written by sync): it chains to `/ipxe/MAC`.
    pub ipxe_boot_file: String,
    /// `[server.boot_programs]`: TFTP path → the file `sync` installs there (instead of the
    /// distribution package's, see [`crate::bootprog`]).
    pub boot_programs: std::collections::BTreeMap<String, PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Network {
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: u32,
    pub max_lease_time: u32,
    /// `kickstart serve` answers IPv6 router solicitations on the interfaces in this network,
    /// so that PXE stacks waiting for IPv6 autoconfiguration (iPXE) boot at once.
    pub router_advertisements: bool,
    /// The advertisements' router lifetime; 0: not a default router.
    pub ra_router_lifetime: u16,
    /// Dual-stack: the IPv6 prefix and its length.
    pub subnet6: Option<(Ipv6Addr, u8)>,
    /// Whether a ProxyDHCP server answers PXE clients here. When not, the generated dhcpd.conf
    /// sends iPXE `no-pxedhcp` (option 175.176), which saves its 2-second wait for ProxyDHCP
    /// offers at every DHCP exchange.
    pub proxy_dhcp: bool,
}

impl Network {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask) == u32::from(self.subnet)
    }
    /// Whether `ip` is inside `subnet6` (false on an IPv4-only network).
    pub fn contains6(&self, ip: Ipv6Addr) -> bool {
        self.subnet6.is_some_and(|(net, len)| {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & m == u128::from(net)
        })
    }
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.range
            .is_some_and(|(a, b)| (u32::from(a)..=u32::from(b)).contains(&u32::from(ip)))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Ha {
    pub notify_email: Vec<String>,
    pub notify_email_from: String,
    pub smtp_server: Option<String>,
    pub mcast_group: Option<Ipv4Addr>,
    pub notify_script: String,
    pub binary_path: String,
    pub control: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Distro {
    pub name: String,
    /// A file on this machine, or an http(s) URL.
    pub kernel: String,
    pub initrd: String,
    /// The install repository as the installer sees it (a URL).
    pub repo_url: Option<String>,
    /// A local directory served under `/repo/NAME/`.
    #[serde(skip)]
    pub repo_dir: Option<PathBuf>,
    pub kernel_args: String,
    pub arch: String,
    /// Paths inside the TFTP root (`distros/NAME/vmlinuz`).
    pub tftp_kernel: String,
    pub tftp_initrd: String,
    /// URLs iPXE and GRUB load from.
    pub kernel_url: String,
    pub initrd_url: String,
}

impl Distro {
    pub fn kernel_is_url(&self) -> bool {
        is_url(&self.kernel)
    }
}

pub(super) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub name: String,
    pub distro: String,
    pub kickstart: String,
    pub kernel_args: String,
    pub vars: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct System {
    pub name: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
    pub profile: String,
    /// As the inventory says; the state directory may turn it off (see `state`).
    pub netboot: bool,
    pub hostname: String,
    pub interface: String,
    pub kernel_args: String,
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    pub pos: Pos,
}

impl System {
    /// `01-aa-bb-cc-dd-ee-ff`, the pxelinux/GRUB per-MAC file name.
    pub fn mac_file(&self) -> String {
        format!("01-{}", self.mac.replace(':', "-"))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Track {
    pub name: String,
    pub script: String,
    pub interval: u32,
    pub weight: i32,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub system: String,
    pub priority: u32,
    pub interface: String,
    /// The system's address (unicast adverts go to it).
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address (an IPv6 cluster's unicast adverts go to it).
    pub ip6: Option<Ipv6Addr>,
    /// MASTER for the highest priority (without nopreempt), else BACKUP.
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RealServer {
    /// The system it names, if it names one.
    pub system: Option<String>,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub kind: String,
    pub path: String,
    pub status_code: Option<u16>,
    pub digest: Option<String>,
    pub port: Option<u16>,
    pub connect_timeout: u32,
    pub retry: u32,
    pub delay_before_retry: u32,
    pub helo_name: Option<String>,
    pub script: Option<String>,
    pub timeout: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VirtualServer {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub scheduler: String,
    pub method: String,
    pub delay_loop: u32,
    pub persistence_timeout: Option<u32>,
    pub sorry_server: Option<(IpAddr, u16)>,
    /// A firewall-mark service: `virtual_server fwmark N`.
    pub fwmark: Option<u32>,
    pub real_servers: Vec<RealServer>,
    pub check: Option<Check>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cluster {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub auth_pass: Option<String>,
    pub advert_int: u32,
    pub vrrp_version: u8,
    /// `ADDR/LEN` as written (a missing length is the subnet's), of the instance's family.
    pub virtual_ips: Vec<String>,
    /// The other family's virtual IPs (`virtual_ipaddress_excluded`: held with the others,
    /// not in the adverts), for a dual-stack cluster.
    pub virtual_ips_excluded: Vec<String>,
    /// The instance speaks IPv6 (VRRPv3): every virtual IP is IPv6.
    pub ipv6: bool,
    pub nopreempt: bool,
    pub notify: bool,
    pub preempt_delay: Option<u32>,
    pub track_interface: Vec<String>,
    /// Unicast adverts: each member sends to the others' addresses ([`Member::ip`]).
    pub unicast: bool,
    pub sync_group: Option<String>,
    pub track: Vec<Track>,
    pub members: Vec<Member>,
    pub virtual_servers: Vec<VirtualServer>,
}

impl Cluster {
    pub fn member(&self, system: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.system == system)
    }
}

/// A validated inventory.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub path: PathBuf,
    pub server: Server,
    pub network: Network,
    pub ha: Ha,
    pub distros: BTreeMap<String, Distro>,
    pub profiles: BTreeMap<String, Profile>,
    pub systems: Vec<System>,
    pub clusters: Vec<Cluster>,
    /// Warnings found while building (errors make `load` fail).
    pub warnings: Vec<Diag>,
}

/// The inventory could not be read or is invalid; every problem is listed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diag>),
}

pub(super) use opsflow_common::diag::Lines;

/// The position of a spanned TOML value.
pub(super) trait At {
    fn at<T>(&self, s: &S<T>) -> Pos;
}

impl At for Lines {
    fn at<T>(&self, s: &S<T>) -> Pos {
        self.pos(s.span().start)
    }
}

pub(super) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, Option<u8>)> {
    match s.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l.parse().ok()?;
            (len <= 32).then_some(())?;
            Some((a.parse().ok()?, Some(len)))
        }
        None => Some((s.parse().ok()?, None)),
    }
}

pub(super) fn mask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

/// `52:54:00:AA:00:01` or `52-54-00-aa-00-01` → `52:54:00:aa:00:01`.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.starts_with('-')
}

/// ha's control address on the nodes: a unix socket path, or HOST:PORT.
pub(super) fn control_address(s: &str) -> Result<(), String> {
    if s.starts_with('/') {
        return kinds::path(s);
    }
    match split_host_port(s) {
        Some((h, Some(_))) if kinds::host(h).is_ok() => Ok(()),
        _ => Err(format!(
            "{s:?} is neither an absolute socket path nor HOST:PORT"
        )),
    }
}

/// `HOST:PORT`, `HOST`, `[IPV6]:PORT`, `[IPV6]` or a bare IPv6 address (no port).
pub(super) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after {
            "" => Some((h, None)),
            p => Some((h, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if s.matches(':').count() > 1 {
        return Some((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

impl Inventory {
    /// Reads and validates `path`; relative paths inside are relative to its directory.
    pub fn load(path: &Path) -> Result<Inventory, LoadError> {
        let text = opsflow_common::diag::read_text(path).map_err(|u| {
            LoadError::Invalid(vec![u.diag(
                &path.display().to_string(),
                None,
                "give the inventory with -f or --inventory",
            )])
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, LoadError> {
        let lines = Lines::new(&path.display().to_string(), text);
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let pos = lines.pos(e.span().map(|s| s.start).unwrap_or(0));
            let msg = diag::toml_message(e.message());
            let hint = if msg.contains("unknown key") || msg.contains("missing key") {
                "; see examples/inventory.toml for every key"
            } else {
                ""
            };
            LoadError::Invalid(vec![diag::error(&pos, format!("{msg}{hint}"))])
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut b = Builder {
            lines,
            dir,
            diags: Vec::new(),
        };
        let inv = b.build(path, raw);
        let (errors, warnings): (Vec<Diag>, Vec<Diag>) =
            b.diags.into_iter().partition(|d| !d.warning);
        match inv {
            Some(mut inv) if errors.is_empty() => {
                inv.warnings = warnings;
                Ok(inv)
            }
            _ => Err(LoadError::Invalid(
                errors.into_iter().chain(warnings).collect(),
            )),
        }
    }

    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }

    pub fn system_by_mac(&self, mac: &str) -> Option<&System> {
        let mac = normalize_mac(mac)?;
        self.systems.iter().find(|s| s.mac == mac)
    }

    /// The clusters `system` is a member of.
    pub fn clusters_of<'a>(&'a self, system: &'a str) -> impl Iterator<Item = &'a Cluster> + 'a {
        self.clusters
            .iter()
            .filter(move |c| c.member(system).is_some())
    }
}

pub(super) fn hint(got: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (diag::distance(got, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 2 => format!("; did you mean {k:?}?"),
        _ if known.is_empty() => "; none is defined".into(),
        _ => format!(" (known: {})", known.join(", ")),
    }
}
