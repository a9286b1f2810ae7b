//! The inventory: one TOML file describing the provisioning server, the DHCP network, what to
//! install (distros, profiles), the machines (systems) and the VRRP/LVS clusters.
//!
//! Two layers, as for every config language here: serde reads the raw TOML (unknown keys are
//! errors, positions kept with `toml::Spanned`), then [`Inventory::build`] checks references,
//! uniqueness and addresses and produces the validated model the templates see. Every problem
//! is a [`Diag`] naming `FILE:LINE:COL`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opsflow_common::diag::{self, Diag, Pos};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::kinds;

type S<T> = Spanned<T>;

// ---------------------------------------------------------------------------------------------
// raw layer

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: RawServer,
    network: RawNetwork,
    #[serde(default)]
    ha: RawHa,
    #[serde(default)]
    distros: BTreeMap<String, RawDistro>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    systems: Vec<S<RawSystem>>,
    #[serde(default)]
    clusters: Vec<S<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: S<String>,
    base_url: Option<S<String>>,
    next_server: S<String>,
    #[serde(default = "default_tftp_root")]
    tftp_root: PathBuf,
    #[serde(default = "default_dhcpd_conf")]
    dhcpd_conf: PathBuf,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    templates: Option<PathBuf>,
    files: Option<PathBuf>,
    ha_binary: Option<PathBuf>,
    #[serde(default = "default_bios_boot")]
    bios_boot_file: String,
    #[serde(default = "default_uefi_boot")]
    uefi_boot_file: String,
    #[serde(default = "default_ipxe_boot")]
    ipxe_boot_file: String,
}

fn default_tftp_root() -> PathBuf {
    "/srv/tftp".into()
}
fn default_dhcpd_conf() -> PathBuf {
    "/etc/dhcp/dhcpd.conf".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/opsflow/kickstart".into()
}
fn default_bios_boot() -> String {
    "pxelinux.0".into()
}
fn default_uefi_boot() -> String {
    "grubx64.efi".into()
}
fn default_ipxe_boot() -> String {
    "boot.ipxe".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    subnet: S<String>,
    range: Option<S<Vec<String>>>,
    #[serde(default = "empty_list")]
    routers: S<Vec<String>>,
    #[serde(default = "empty_list")]
    dns: S<Vec<String>>,
    domain: Option<String>,
    #[serde(default = "default_lease")]
    lease_time: u32,
    max_lease_time: Option<u32>,
}

fn empty_list() -> S<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

fn default_lease() -> u32 {
    3600
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHa {
    #[serde(default)]
    notify_email: Vec<S<String>>,
    notify_email_from: Option<S<String>>,
    smtp_server: Option<S<String>>,
    mcast_group: Option<S<String>>,
    /// Where notify.sh is installed on the nodes.
    notify_script: Option<S<String>>,
    /// Where the ha binary is installed on the nodes.
    binary_path: Option<S<String>>,
    /// ha's control API on the nodes: a unix socket path or HOST:PORT.
    control: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistro {
    kernel: S<String>,
    initrd: S<String>,
    repo: Option<S<String>>,
    kernel_args: Option<S<String>>,
    #[serde(default = "default_arch")]
    arch: String,
}

fn default_arch() -> String {
    "x86_64".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    distro: S<String>,
    #[serde(default = "default_ks")]
    kickstart: S<String>,
    kernel_args: Option<S<String>>,
    #[serde(default)]
    vars: Vars,
}

fn default_ks() -> S<String> {
    Spanned::new(0..0, "kickstart.ks".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: S<String>,
    mac: S<String>,
    ip: S<String>,
    profile: S<String>,
    #[serde(default = "yes")]
    netboot: bool,
    hostname: Option<S<String>>,
    interface: Option<S<String>>,
    kernel_args: Option<S<String>>,
    #[serde(default)]
    vars: Vars,
}

fn yes() -> bool {
    true
}

fn default_iface() -> String {
    "eth0".into()
}

/// Template variables (`[profiles.X.vars]`, a system's `vars`), each with its position.
type Vars = BTreeMap<String, S<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: S<String>,
    #[serde(default = "default_iface")]
    interface: String,
    vrid: S<u32>,
    auth_pass: Option<S<String>>,
    #[serde(default = "one")]
    advert_int: u32,
    #[serde(default = "two")]
    vrrp_version: u8,
    virtual_ips: S<Vec<String>>,
    #[serde(default)]
    nopreempt: bool,
    #[serde(default = "yes")]
    notify: bool,
    #[serde(default)]
    track: Vec<RawTrack>,
    members: S<Vec<S<RawMember>>>,
    #[serde(default)]
    virtual_servers: Vec<S<RawVirtualServer>>,
}

fn one() -> u32 {
    1
}
fn two() -> u8 {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    name: String,
    script: String,
    #[serde(default = "one")]
    interval: u32,
    #[serde(default)]
    weight: i32,
    fall: Option<u32>,
    rise: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    system: S<String>,
    priority: S<u32>,
    interface: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtualServer {
    address: S<String>,
    #[serde(default = "tcp")]
    protocol: String,
    #[serde(default = "rr")]
    scheduler: S<String>,
    #[serde(default = "dr")]
    method: S<String>,
    #[serde(default = "six")]
    delay_loop: u32,
    persistence_timeout: Option<u32>,
    sorry_server: Option<S<String>>,
    #[serde(default = "one")]
    weight: u32,
    real_servers: S<Vec<S<String>>>,
    check: Option<S<RawCheck>>,
}

fn tcp() -> String {
    "TCP".into()
}
fn rr() -> S<String> {
    Spanned::new(0..0, "rr".into())
}
fn dr() -> S<String> {
    Spanned::new(0..0, "DR".into())
}
fn six() -> u32 {
    6
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: S<String>,
    path: Option<String>,
    status_code: Option<u16>,
    digest: Option<String>,
    port: Option<u16>,
    #[serde(default = "three")]
    connect_timeout: u32,
    #[serde(default = "three")]
    retry: u32,
    #[serde(default = "three")]
    delay_before_retry: u32,
    helo_name: Option<String>,
    script: Option<String>,
    timeout: Option<u32>,
}

fn three() -> u32 {
    3
}

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
}

impl Network {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask) == u32::from(self.subnet)
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

fn is_url(s: &str) -> bool {
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
    /// MASTER for the highest priority (without nopreempt), else BACKUP.
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RealServer {
    /// The system it names, if it names one.
    pub system: Option<String>,
    pub address: Ipv4Addr,
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
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: String,
    pub scheduler: String,
    pub method: String,
    pub delay_loop: u32,
    pub persistence_timeout: Option<u32>,
    pub sorry_server: Option<(Ipv4Addr, u16)>,
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
    /// `ADDR/LEN` as written (a missing length is the subnet's).
    pub virtual_ips: Vec<String>,
    pub nopreempt: bool,
    pub notify: bool,
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
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diag>),
}

/// Line/column lookup for byte offsets of one file.
struct Lines {
    file: Arc<str>,
    starts: Vec<usize>,
}

impl Lines {
    fn new(file: &str, text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines {
            file: file.into(),
            starts,
        }
    }
    fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        Pos {
            file: self.file.clone(),
            line,
            col: offset - self.starts[line - 1] + 1,
        }
    }
    fn at<T>(&self, s: &S<T>) -> Pos {
        self.pos(s.span().start)
    }
}

fn to_json(vars: Vars) -> serde_json::Map<String, serde_json::Value> {
    vars.into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::to_value(v.into_inner()).ok()?)))
        .collect()
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, Option<u8>)> {
    match s.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l.parse().ok()?;
            (len <= 32).then_some(())?;
            Some((a.parse().ok()?, Some(len)))
        }
        None => Some((s.parse().ok()?, None)),
    }
}

fn mask(len: u8) -> Ipv4Addr {
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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.starts_with('-')
}

/// ha's control address on the nodes: a unix socket path, or HOST:PORT.
fn control_address(s: &str) -> Result<(), String> {
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

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];
const METHODS: &[&str] = &["NAT", "DR", "TUN"];
const CHECKS: &[&str] = &[
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "SMTP_CHECK",
    "MISC_CHECK",
];

impl Inventory {
    /// Reads and validates `path`; relative paths inside are relative to its directory.
    pub fn load(path: &Path) -> Result<Inventory, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, LoadError> {
        let lines = Lines::new(&path.display().to_string(), text);
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let pos = lines.pos(e.span().map(|s| s.start).unwrap_or(0));
            let msg = e.message().trim_end().to_string();
            let hint = if msg.contains("unknown field") {
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

struct Builder {
    lines: Lines,
    dir: PathBuf,
    diags: Vec<Diag>,
}

impl Builder {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(diag::error(&pos, msg));
    }
    fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(diag::warning(&pos, msg));
    }
    fn rel(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.dir.join(p)
        }
    }
    /// `s` checked as a value of its kind ([`kinds`]); an error names `what` and the position.
    fn kind(&mut self, s: S<String>, what: &str, check: kinds::Check) -> String {
        if let Err(e) = check(s.get_ref()) {
            self.err(self.lines.at(&s), format!("{what}: {e}"));
        }
        s.into_inner()
    }

    /// An optional value of its kind, or `default`.
    fn kind_or(
        &mut self,
        s: Option<S<String>>,
        what: &str,
        check: kinds::Check,
        default: &str,
    ) -> String {
        s.map_or_else(|| default.to_string(), |s| self.kind(s, what, check))
    }

    /// Template variables: the well-known ones by kind, every string on one line.
    fn vars(&mut self, vars: &Vars, owner: &str) {
        fn strings<'a>(v: &'a toml::Value, out: &mut Vec<&'a str>) {
            match v {
                toml::Value::String(s) => out.push(s),
                toml::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                toml::Value::Table(t) => t.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        for (name, v) in vars {
            let check = kinds::of_var(name).unwrap_or(kinds::line);
            let mut all = Vec::new();
            strings(v.get_ref(), &mut all);
            if let Some(e) = all.into_iter().find_map(|s| check(s).err()) {
                self.err(self.lines.at(v), format!("{owner}: vars.{name}: {e}"));
            }
        }
    }

    fn ip(&mut self, s: &S<String>, what: &str) -> Option<Ipv4Addr> {
        match s.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    self.lines.at(s),
                    format!("{what} {:?} is not an IPv4 address", s.get_ref()),
                );
                None
            }
        }
    }

    fn build(&mut self, path: &Path, raw: Raw) -> Option<Inventory> {
        let server = self.server(raw.server);
        let network = self.network(raw.network);
        let ha = self.ha(raw.ha);
        let (server, network) = (server?, network?);
        let distros = self.distros(raw.distros, &server);
        let profiles = self.profiles(raw.profiles, &distros);
        let systems = self.systems(raw.systems, &profiles, &network, &server);
        let clusters = self.clusters(raw.clusters, &systems, &network);
        Some(Inventory {
            path: path.to_path_buf(),
            server,
            network,
            ha,
            distros,
            profiles,
            systems,
            clusters,
            warnings: Vec::new(),
        })
    }

    fn server(&mut self, r: RawServer) -> Option<Server> {
        let listen = match r.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    self.lines.at(&r.listen),
                    format!(
                        "server.listen {:?} is not ADDRESS:PORT (e.g. \"10.99.0.1:8080\")",
                        r.listen.get_ref()
                    ),
                );
                None
            }
        };
        let next_server = self.ip(&r.next_server, "server.next_server");
        let listen = listen?;
        let base_url = match r.base_url {
            Some(u) => {
                let u = self.kind(u, "server.base_url", kinds::url);
                u.trim_end_matches('/').to_string()
            }
            None => format!("http://{listen}"),
        };
        Some(Server {
            listen,
            base_url,
            next_server: next_server?,
            tftp_root: r.tftp_root,
            dhcpd_conf: r.dhcpd_conf,
            state_dir: self.rel(r.state_dir),
            templates: r.templates.map(|p| self.rel(p)),
            files: r.files.map(|p| self.rel(p)),
            ha_binary: r.ha_binary.map(|p| self.rel(p)),
            bios_boot_file: r.bios_boot_file,
            uefi_boot_file: r.uefi_boot_file,
            ipxe_boot_file: r.ipxe_boot_file,
        })
    }

    fn network(&mut self, r: RawNetwork) -> Option<Network> {
        let (subnet, prefix) = match parse_cidr(r.subnet.get_ref()) {
            Some((a, Some(l))) => (a, l),
            _ => {
                self.err(
                    self.lines.at(&r.subnet),
                    format!(
                        "network.subnet {:?} is not ADDRESS/LENGTH (e.g. \"10.99.0.0/24\")",
                        r.subnet.get_ref()
                    ),
                );
                return None;
            }
        };
        let netmask = mask(prefix);
        if u32::from(subnet) & !u32::from(netmask) != 0 {
            self.err(
                self.lines.at(&r.subnet),
                format!(
                    "network.subnet {}/{prefix} has host bits set; the network is {}/{prefix}",
                    subnet,
                    Ipv4Addr::from(u32::from(subnet) & u32::from(netmask))
                ),
            );
        }
        let mut net = Network {
            subnet,
            prefix,
            netmask,
            broadcast: Ipv4Addr::from(u32::from(subnet) | !u32::from(netmask)),
            range: None,
            routers: Vec::new(),
            dns: Vec::new(),
            domain: r.domain,
            lease_time: r.lease_time,
            max_lease_time: r.max_lease_time.unwrap_or(r.lease_time.saturating_mul(2)),
        };
        if let Some(range) = &r.range {
            let pos = self.lines.at(range);
            match range.get_ref().as_slice() {
                [a, b] => match (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) {
                    (Ok(a), Ok(b)) if u32::from(a) <= u32::from(b) => {
                        if !net.contains(a) || !net.contains(b) {
                            self.err(pos, format!("network.range {a}-{b} is not inside the subnet {subnet}/{prefix}"));
                        }
                        net.range = Some((a, b));
                    }
                    _ => self.err(
                        pos,
                        "network.range must be [\"FIRST\", \"LAST\"] IPv4 addresses, first <= last",
                    ),
                },
                _ => self.err(pos, "network.range must be [\"FIRST\", \"LAST\"]"),
            }
        }
        for (list, out, what) in [
            (&r.routers, &mut net.routers, "network.routers"),
            (&r.dns, &mut net.dns, "network.dns"),
        ] {
            for s in list.get_ref() {
                match s.parse() {
                    Ok(a) => out.push(a),
                    Err(_) => self.diags.push(diag::error(
                        &self.lines.at(list),
                        format!("{what}: {s:?} is not an IPv4 address"),
                    )),
                }
            }
        }
        for a in net.routers.clone() {
            if !net.contains(a) {
                self.err(
                    self.lines.at(&r.routers),
                    format!("network.routers: {a} is not inside {subnet}/{prefix}"),
                );
            }
        }
        Some(net)
    }

    fn ha(&mut self, r: RawHa) -> Ha {
        let mcast_group = r.mcast_group.as_ref().and_then(|g| {
            let a = self.ip(g, "ha.mcast_group")?;
            if !a.is_multicast() {
                self.err(
                    self.lines.at(g),
                    format!("ha.mcast_group {a} is not a multicast address (224.0.0.0/4)"),
                );
            }
            Some(a)
        });
        let control = self.kind_or(r.control, "ha.control", control_address, "/run/ha/ha.sock");
        Ha {
            notify_email_from: self.kind_or(
                r.notify_email_from,
                "ha.notify_email_from",
                kinds::email,
                "keepalived@localhost",
            ),
            notify_email: r
                .notify_email
                .into_iter()
                .map(|e| self.kind(e, "ha.notify_email", kinds::email))
                .collect(),
            smtp_server: r
                .smtp_server
                .map(|h| self.kind(h, "ha.smtp_server", kinds::host)),
            mcast_group,
            notify_script: self.kind_or(
                r.notify_script,
                "ha.notify_script",
                kinds::path,
                "/etc/keepalived/notify.sh",
            ),
            binary_path: self.kind_or(
                r.binary_path,
                "ha.binary_path",
                kinds::path,
                "/usr/local/sbin/ha",
            ),
            control,
        }
    }

    fn distros(
        &mut self,
        raw: BTreeMap<String, RawDistro>,
        server: &Server,
    ) -> BTreeMap<String, Distro> {
        let mut out = BTreeMap::new();
        for (name, d) in raw {
            if !valid_name(&name) {
                self.err(
                    self.lines.at(&d.kernel),
                    format!("distro name {name:?}: use letters, digits, '-' and '_'"),
                );
            }
            let kernel_args = self.kind_or(
                d.kernel_args,
                &format!("distros.{name}.kernel_args"),
                kinds::kernel_args,
                "",
            );
            let (repo_url, repo_dir) = match &d.repo {
                Some(r) if is_url(r.get_ref()) => (
                    Some(self.kind(r.clone(), &format!("distros.{name}.repo"), kinds::url)),
                    None,
                ),
                Some(r) => {
                    let dir = self.rel(PathBuf::from(r.get_ref()));
                    if !dir.is_dir() {
                        self.warn(
                            self.lines.at(r),
                            format!(
                                "distros.{name}.repo: {} is not a directory (yet); /repo/{name}/ will answer 404 until it is",
                                dir.display()
                            ),
                        );
                    }
                    (Some(format!("{}/repo/{name}", server.base_url)), Some(dir))
                }
                None => (None, None),
            };
            let mut file = |s: &S<String>, what: &str| -> String {
                if is_url(s.get_ref()) {
                    if let Err(e) = kinds::url(s.get_ref()) {
                        self.err(self.lines.at(s), format!("distros.{name}.{what}: {e}"));
                    }
                    return s.get_ref().clone();
                }
                let p = self.rel(PathBuf::from(s.get_ref()));
                if !p.is_file() {
                    self.warn(
                        self.lines.at(s),
                        format!(
                            "distros.{name}.{what}: {} does not exist (yet); sync cannot copy it into the TFTP root",
                            p.display()
                        ),
                    );
                }
                p.display().to_string()
            };
            let kernel = file(&d.kernel, "kernel");
            let initrd = file(&d.initrd, "initrd");
            let url = |s: &str, f: &str| {
                if is_url(s) {
                    s.to_string()
                } else {
                    format!("{}/boot/{name}/{f}", server.base_url)
                }
            };
            out.insert(
                name.clone(),
                Distro {
                    kernel_url: url(&kernel, "vmlinuz"),
                    initrd_url: url(&initrd, "initrd.img"),
                    tftp_kernel: format!("distros/{name}/vmlinuz"),
                    tftp_initrd: format!("distros/{name}/initrd.img"),
                    name,
                    kernel,
                    initrd,
                    repo_url,
                    repo_dir,
                    kernel_args,
                    arch: d.arch,
                },
            );
        }
        out
    }

    fn profiles(
        &mut self,
        raw: BTreeMap<String, RawProfile>,
        distros: &BTreeMap<String, Distro>,
    ) -> BTreeMap<String, Profile> {
        let mut out = BTreeMap::new();
        for (name, p) in raw {
            if !distros.contains_key(p.distro.get_ref()) {
                let known: Vec<&str> = distros.keys().map(String::as_str).collect();
                self.err(
                    self.lines.at(&p.distro),
                    format!(
                        "profile {name}: no distro {:?}{}",
                        p.distro.get_ref(),
                        hint(p.distro.get_ref(), &known)
                    ),
                );
            }
            self.vars(&p.vars, &format!("profile {name}"));
            let kernel_args = self.kind_or(
                p.kernel_args,
                &format!("profiles.{name}.kernel_args"),
                kinds::kernel_args,
                "",
            );
            out.insert(
                name.clone(),
                Profile {
                    name,
                    distro: p.distro.into_inner(),
                    kickstart: p.kickstart.into_inner(),
                    kernel_args,
                    vars: to_json(p.vars),
                },
            );
        }
        out
    }

    fn systems(
        &mut self,
        raw: Vec<S<RawSystem>>,
        profiles: &BTreeMap<String, Profile>,
        net: &Network,
        server: &Server,
    ) -> Vec<System> {
        let mut out: Vec<System> = Vec::new();
        let mut names: HashMap<String, Pos> = HashMap::new();
        let mut macs: HashMap<String, (Pos, String)> = HashMap::new();
        let mut ips: HashMap<Ipv4Addr, (Pos, String)> = HashMap::new();
        for s in raw {
            let pos = self.lines.at(&s);
            let s = s.into_inner();
            let name = s.name.get_ref().clone();
            if !valid_name(&name) {
                self.err(
                    self.lines.at(&s.name),
                    format!("system name {name:?}: use letters, digits, '-' and '_' (it becomes a host name)"),
                );
            }
            if let Some(first) = names.get(&name) {
                self.err(
                    self.lines.at(&s.name),
                    format!("system {name:?} is defined twice (first at {first})"),
                );
            } else {
                names.insert(name.clone(), self.lines.at(&s.name));
            }
            let mac = match normalize_mac(s.mac.get_ref()) {
                Some(m) => {
                    if let Some((first, other)) = macs.get(&m) {
                        self.err(
                            self.lines.at(&s.mac),
                            format!(
                                "system {name}: MAC {m} is already used by system {other} ({first}); every system needs its own MAC"
                            ),
                        );
                    } else {
                        macs.insert(m.clone(), (self.lines.at(&s.mac), name.clone()));
                    }
                    m
                }
                None => {
                    self.err(
                        self.lines.at(&s.mac),
                        format!(
                            "system {name}: MAC {:?} is not six hex pairs (e.g. \"52:54:00:aa:00:01\")",
                            s.mac.get_ref()
                        ),
                    );
                    String::new()
                }
            };
            let ip = self.ip(&s.ip, &format!("system {name}: ip"));
            if let Some(ip) = ip {
                let at = self.lines.at(&s.ip);
                if let Some((first, other)) = ips.get(&ip) {
                    self.err(
                        at.clone(),
                        format!(
                            "system {name}: IP {ip} is already used by system {other} ({first})"
                        ),
                    );
                } else {
                    ips.insert(ip, (at.clone(), name.clone()));
                }
                if !net.contains(ip) {
                    self.err(
                        at.clone(),
                        format!(
                            "system {name}: IP {ip} is outside the subnet {}/{}",
                            net.subnet, net.prefix
                        ),
                    );
                } else if net.in_range(ip) {
                    let (a, b) = net.range.unwrap_or((ip, ip));
                    self.err(
                        at.clone(),
                        format!(
                            "system {name}: IP {ip} is inside the dynamic range {a}-{b}; a fixed address must be outside it"
                        ),
                    );
                }
                if ip == net.subnet || ip == net.broadcast {
                    self.err(
                        at,
                        format!("system {name}: IP {ip} is the network or broadcast address"),
                    );
                }
            }
            if !profiles.contains_key(s.profile.get_ref()) {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                self.err(
                    self.lines.at(&s.profile),
                    format!(
                        "system {name}: no profile {:?}{}",
                        s.profile.get_ref(),
                        hint(s.profile.get_ref(), &known)
                    ),
                );
            }
            let _ = server;
            self.vars(&s.vars, &format!("system {name}"));
            let hostname = self.kind_or(
                s.hostname,
                &format!("system {name}: hostname"),
                kinds::hostname,
                &name,
            );
            let interface = self.kind_or(
                s.interface,
                &format!("system {name}: interface"),
                kinds::word,
                "eth0",
            );
            let kernel_args = self.kind_or(
                s.kernel_args,
                &format!("system {name}: kernel_args"),
                kinds::kernel_args,
                "",
            );
            out.push(System {
                hostname,
                name,
                mac,
                ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                profile: s.profile.into_inner(),
                netboot: s.netboot,
                interface,
                kernel_args,
                vars: to_json(s.vars),
                pos,
            });
        }
        out
    }

    fn clusters(
        &mut self,
        raw: Vec<S<RawCluster>>,
        systems: &[System],
        net: &Network,
    ) -> Vec<Cluster> {
        let mut out: Vec<Cluster> = Vec::new();
        let known: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        for c in raw {
            let cpos = self.lines.at(&c);
            let c = c.into_inner();
            let name = c.name.get_ref().clone();
            if !valid_name(&name) {
                self.err(
                    self.lines.at(&c.name),
                    format!("cluster name {name:?}: use letters, digits, '-' and '_'"),
                );
            }
            if out.iter().any(|o| o.name == name) {
                self.err(
                    self.lines.at(&c.name),
                    format!("cluster {name:?} is defined twice"),
                );
            }
            let vrid = match u8::try_from(*c.vrid.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.err(
                        self.lines.at(&c.vrid),
                        format!("cluster {name}: vrid must be 1-255"),
                    );
                    1
                }
            };
            if let Some(p) = &c.auth_pass {
                if p.get_ref().len() > 8 {
                    self.warn(
                        self.lines.at(p),
                        format!("cluster {name}: auth_pass is longer than 8 characters; VRRP uses only the first 8"),
                    );
                }
            }
            if !(2..=3).contains(&c.vrrp_version) {
                self.err(
                    cpos.clone(),
                    format!("cluster {name}: vrrp_version must be 2 or 3"),
                );
            }
            let mut vips = Vec::new();
            for v in c.virtual_ips.get_ref() {
                match parse_cidr(v) {
                    Some((a, len)) => vips.push(format!("{a}/{}", len.unwrap_or(net.prefix))),
                    None => self.err(
                        self.lines.at(&c.virtual_ips),
                        format!("cluster {name}: virtual IP {v:?} is not ADDRESS[/LENGTH]"),
                    ),
                }
            }
            if vips.is_empty() {
                self.err(
                    self.lines.at(&c.virtual_ips),
                    format!("cluster {name}: at least one virtual IP is needed"),
                );
            }
            let mut members: Vec<Member> = Vec::new();
            for m in c.members.get_ref() {
                let m = m.get_ref();
                if !known.contains(&m.system.get_ref().as_str()) {
                    self.err(
                        self.lines.at(&m.system),
                        format!(
                            "cluster {name}: member {:?} is not a system{}",
                            m.system.get_ref(),
                            hint(m.system.get_ref(), &known)
                        ),
                    );
                }
                if members.iter().any(|o| &o.system == m.system.get_ref()) {
                    self.err(
                        self.lines.at(&m.system),
                        format!("cluster {name}: {} is a member twice", m.system.get_ref()),
                    );
                }
                let p = *m.priority.get_ref();
                if !(1..=254).contains(&p) {
                    self.err(
                        self.lines.at(&m.priority),
                        format!(
                            "cluster {name}: priority must be 1-254 (255 is the address owner's)"
                        ),
                    );
                }
                if !c.nopreempt && members.iter().any(|o| o.priority == p) {
                    self.err(
                        self.lines.at(&m.priority),
                        format!("cluster {name}: two members have priority {p}; give the intended master the highest, or set nopreempt = true"),
                    );
                }
                members.push(Member {
                    system: m.system.get_ref().clone(),
                    priority: p,
                    interface: m.interface.clone().unwrap_or_else(|| c.interface.clone()),
                    state: "BACKUP".into(),
                });
            }
            if members.len() < 2 {
                self.warn(
                    self.lines.at(&c.members),
                    format!("cluster {name}: fewer than two members; nothing can fail over"),
                );
            }
            if !c.nopreempt {
                if let Some(top) = members.iter_mut().max_by_key(|m| m.priority) {
                    top.state = "MASTER".into();
                }
            }
            let mut vss = Vec::new();
            for vs in c.virtual_servers {
                if let Some(v) = self.virtual_server(&name, vs.into_inner(), systems, net) {
                    vss.push(v);
                }
            }
            out.push(Cluster {
                name,
                interface: c.interface,
                vrid,
                auth_pass: c.auth_pass.map(Spanned::into_inner),
                advert_int: c.advert_int,
                vrrp_version: c.vrrp_version,
                virtual_ips: vips,
                nopreempt: c.nopreempt,
                notify: c.notify,
                track: c
                    .track
                    .into_iter()
                    .map(|t| Track {
                        name: t.name,
                        script: t.script,
                        interval: t.interval,
                        weight: t.weight,
                        fall: t.fall,
                        rise: t.rise,
                    })
                    .collect(),
                members,
                virtual_servers: vss,
            });
        }
        // the same VRID twice on one interface of one node is two routers fighting
        let mut seen: HashMap<(String, String, u8), String> = HashMap::new();
        for c in &out {
            for m in &c.members {
                if let Some(other) = seen.insert(
                    (m.system.clone(), m.interface.clone(), c.vrid),
                    c.name.clone(),
                ) {
                    self.diags.push(diag::error(
                        &Pos {
                            file: self.lines.file.clone(),
                            line: 1,
                            col: 1,
                        },
                        format!(
                            "clusters {other} and {} both use VRID {} on {}:{}; each cluster on an interface needs its own vrid",
                            c.name, c.vrid, m.system, m.interface
                        ),
                    ));
                }
            }
        }
        out
    }

    fn virtual_server(
        &mut self,
        cluster: &str,
        r: RawVirtualServer,
        systems: &[System],
        _net: &Network,
    ) -> Option<VirtualServer> {
        let at = self.lines.at(&r.address);
        let (addr, port) = match split_host_port(r.address.get_ref()) {
            Some((h, Some(p))) => match h.parse::<Ipv4Addr>() {
                Ok(a) => (a, p),
                Err(_) => {
                    self.err(
                        at,
                        format!(
                            "cluster {cluster}: virtual server address {:?} is not VIP:PORT",
                            r.address.get_ref()
                        ),
                    );
                    return None;
                }
            },
            _ => {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: virtual server address {:?} is not VIP:PORT (e.g. \"10.99.0.50:80\")",
                        r.address.get_ref()
                    ),
                );
                return None;
            }
        };
        let sched = r.scheduler.get_ref().to_ascii_lowercase();
        if !SCHEDULERS.contains(&sched.as_str()) {
            self.err(
                self.lines.at(&r.scheduler),
                format!(
                    "cluster {cluster}: scheduler {:?} is not one of {}",
                    r.scheduler.get_ref(),
                    SCHEDULERS.join(", ")
                ),
            );
        }
        let method = r.method.get_ref().to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            self.err(
                self.lines.at(&r.method),
                format!(
                    "cluster {cluster}: method {:?} is not NAT, DR or TUN",
                    r.method.get_ref()
                ),
            );
        }
        let protocol = r.protocol.to_ascii_uppercase();
        if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            self.err(
                self.lines.at(&r.address),
                format!("cluster {cluster}: protocol {protocol:?} is not TCP, UDP or SCTP"),
            );
        }
        let sorry_server = r.sorry_server.as_ref().and_then(|s| {
            match split_host_port(s.get_ref()).and_then(|(h, p)| Some((h.parse().ok()?, p))) {
                Some((a, p)) => Some((a, p.unwrap_or(port))),
                None => {
                    self.err(
                        self.lines.at(s),
                        format!(
                            "cluster {cluster}: sorry_server {:?} is not IP[:PORT]",
                            s.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        let mut rss = Vec::new();
        let known: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        for rs in r.real_servers.get_ref() {
            let at = self.lines.at(rs);
            let Some((host, p)) = split_host_port(rs.get_ref()) else {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: real server {:?} is not SYSTEM[:PORT] or IP[:PORT]",
                        rs.get_ref()
                    ),
                );
                continue;
            };
            let (system, address) = if let Ok(a) = host.parse::<Ipv4Addr>() {
                (
                    systems.iter().find(|s| s.ip == a).map(|s| s.name.clone()),
                    a,
                )
            } else if let Some(s) = systems.iter().find(|s| s.name == host) {
                (Some(s.name.clone()), s.ip)
            } else {
                self.err(
                    at,
                    format!(
                        "cluster {cluster}: real server {host:?} is neither an IPv4 address nor a system{}",
                        hint(host, &known)
                    ),
                );
                continue;
            };
            let port = p.unwrap_or(port);
            if rss
                .iter()
                .any(|o: &RealServer| o.address == address && o.port == port)
            {
                self.err(
                    self.lines.at(rs),
                    format!("cluster {cluster}: real server {address}:{port} is listed twice"),
                );
            }
            rss.push(RealServer {
                system,
                address,
                port,
                weight: r.weight,
            });
        }
        if rss.is_empty() {
            self.err(
                self.lines.at(&r.real_servers),
                format!("cluster {cluster}: virtual server {addr}:{port} has no real servers"),
            );
        }
        let check = r.check.map(|c| {
            let at = self.lines.at(&c);
            let c = c.into_inner();
            let kind = c.kind.get_ref().to_ascii_uppercase();
            if !CHECKS.contains(&kind.as_str()) {
                self.err(
                    self.lines.at(&c.kind),
                    format!(
                        "cluster {cluster}: check type {:?} is not one of {}",
                        c.kind.get_ref(),
                        CHECKS.join(", ")
                    ),
                );
            }
            if kind == "MISC_CHECK" && c.script.is_none() {
                self.err(
                    at,
                    format!("cluster {cluster}: a MISC_CHECK needs script = \"...\""),
                );
            }
            Check {
                kind,
                path: c.path.unwrap_or_else(|| "/".into()),
                status_code: c.status_code,
                digest: c.digest,
                port: c.port,
                connect_timeout: c.connect_timeout,
                retry: c.retry,
                delay_before_retry: c.delay_before_retry,
                helo_name: c.helo_name,
                script: c.script,
                timeout: c.timeout,
            }
        });
        Some(VirtualServer {
            address: addr,
            port,
            protocol,
            scheduler: sched,
            method,
            delay_loop: r.delay_loop,
            persistence_timeout: r.persistence_timeout,
            sorry_server,
            real_servers: rss,
            check,
        })
    }
}

fn hint(got: &str, known: &[&str]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = "10.9.0.1:8080"
next_server = "10.9.0.1"
state_dir = "/nonexistent/state"

[network]
subnet = "10.9.0.0/24"
range = ["10.9.0.100", "10.9.0.199"]
routers = ["10.9.0.1"]

[distros.c7]
kernel = "http://mirror.example/vmlinuz"
initrd = "http://mirror.example/initrd.img"
repo = "http://mirror.example/os"

[profiles.web]
distro = "c7"

[[systems]]
name = "a"
mac = "52:54:00:00:00:01"
ip = "10.9.0.11"
profile = "web"

[[systems]]
name = "b"
mac = "52:54:00:00:00:02"
ip = "10.9.0.12"
profile = "web"
"#;

    fn check(text: &str) -> Result<Inventory, String> {
        Inventory::parse(Path::new("inv.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_inventory_loads() {
        let inv = check(BASE).unwrap();
        assert_eq!(inv.systems.len(), 2);
        assert_eq!(inv.server.base_url, "http://10.9.0.1:8080");
        assert_eq!(inv.network.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(inv.systems[0].mac_file(), "01-52-54-00-00-00-01");
        assert_eq!(
            inv.distros["c7"].kernel_url,
            "http://mirror.example/vmlinuz"
        );
    }

    #[test]
    fn duplicate_mac_names_both_lines() {
        let t = BASE.replace("52:54:00:00:00:02", "52:54:00:00:00:01");
        let e = check(&t).unwrap_err();
        assert!(e.contains("inv.toml:28:7"), "{e}");
        assert!(
            e.contains("already used by system a (inv.toml:22:7)"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_ip_and_name() {
        let t = BASE
            .replace("10.9.0.12", "10.9.0.11")
            .replace("\"b\"", "\"a\"");
        let e = check(&t).unwrap_err();
        assert!(
            e.contains("IP 10.9.0.11 is already used by system a"),
            "{e}"
        );
        assert!(e.contains("system \"a\" is defined twice"), "{e}");
    }

    #[test]
    fn addresses_inside_subnet_and_outside_range() {
        let e = check(&BASE.replace("10.9.0.12", "10.9.1.12")).unwrap_err();
        assert!(e.contains("outside the subnet 10.9.0.0/24"), "{e}");
        let e = check(&BASE.replace("10.9.0.12", "10.9.0.150")).unwrap_err();
        assert!(
            e.contains("inside the dynamic range 10.9.0.100-10.9.0.199"),
            "{e}"
        );
    }

    #[test]
    fn unknown_reference_suggests() {
        let t = BASE.replacen("profile = \"web\"", "profile = \"wev\"", 1);
        let e = check(&t).unwrap_err();
        assert!(
            e.contains("inv.toml:24:11: system a: no profile \"wev\"; did you mean \"web\"?"),
            "{e}"
        );
    }

    #[test]
    fn hostile_values_are_refused_by_kind_with_their_position() {
        let t = format!(
            "{BASE}\n[ha]\nnotify_email = [\"ops@x\", \"x'; touch /tmp/pwned; echo '@h\"]\nbinary_path = \"/usr/sbin/ha; reboot\"\n"
        )
        .replace(
            "[profiles.web]\n",
            "[profiles.web]\nvars = { packages = [\"curl\", \"x\\n%post\"], motd = \"a\\nb\" }\n",
        )
        .replace(
            "name = \"a\"\n",
            "name = \"a\"\nhostname = \"a;b\"\nkernel_args = \"quiet; reboot\"\n",
        );
        let e = check(&t).unwrap_err();
        let line_of = |needle: &str| t.lines().position(|l| l.contains(needle)).unwrap() + 1;
        for (needle, col, msg) in [
            (
                "notify_email",
                26,
                "ha.notify_email: \"x'; touch /tmp/pwned; echo '@h\" is not an e-mail address",
            ),
            (
                "binary_path",
                15,
                "ha.binary_path: \"/usr/sbin/ha; reboot\" is not an absolute path",
            ),
            (
                "vars = {",
                21,
                "profile web: vars.packages: \"x\\n%post\" is not a package name",
            ),
            (
                "hostname = ",
                12,
                "system a: hostname: \"a;b\" is not a host name",
            ),
            (
                "kernel_args = ",
                15,
                "system a: kernel_args: kernel arguments \"quiet; reboot\" contain ';'",
            ),
        ] {
            let want = format!("inv.toml:{}:{col}: {msg}", line_of(needle));
            assert!(e.contains(&want), "want {want:?} in\n{e}");
        }
        assert!(
            e.contains("vars.motd") && e.contains("control character"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_has_position() {
        let t = BASE.replace("[profiles.web]\n", "[profiles.web]\nkickstrat = \"x\"\n");
        let e = check(&t).unwrap_err();
        assert!(e.starts_with("inv.toml:18:1:"), "{e}");
        assert!(e.contains("unknown field `kickstrat`"), "{e}");
    }

    #[test]
    fn bad_mac() {
        let e = check(&BASE.replace("52:54:00:00:00:02", "52:54:00:00:02")).unwrap_err();
        assert!(e.contains("is not six hex pairs"), "{e}");
        assert_eq!(
            normalize_mac("52-54-00-AA-00-01").as_deref(),
            Some("52:54:00:aa:00:01")
        );
    }

    #[test]
    fn cluster_roles_and_checks() {
        let t = format!(
            "{BASE}\n{}",
            r#"
[[clusters]]
name = "web"
vrid = 51
virtual_ips = ["10.9.0.50"]
[[clusters.members]]
system = "a"
priority = 100
[[clusters.members]]
system = "b"
priority = 90
[[clusters.virtual_servers]]
address = "10.9.0.50:80"
real_servers = ["a", "10.9.0.77:8080"]
check = { type = "http_get", path = "/health" }
"#
        );
        let inv = check(&t).unwrap();
        let c = &inv.clusters[0];
        assert_eq!(c.members[0].state, "MASTER");
        assert_eq!(c.members[1].state, "BACKUP");
        assert_eq!(c.virtual_ips, ["10.9.0.50/24"]);
        let vs = &c.virtual_servers[0];
        assert_eq!(vs.real_servers[0].address, Ipv4Addr::new(10, 9, 0, 11));
        assert_eq!(vs.real_servers[1].port, 8080);
        assert_eq!(vs.check.as_ref().unwrap().kind, "HTTP_GET");
        let same = t.replace("priority = 90", "priority = 100");
        let e = check(&same).unwrap_err();
        assert!(e.contains("two members have priority 100"), "{e}");
        let np = same.replace("vrid = 51", "vrid = 51\nnopreempt = true");
        let inv = check(&np).unwrap();
        assert!(inv.clusters[0].members.iter().all(|m| m.state == "BACKUP"));
        let bad = t.replace("[\"a\", ", "[\"zz\", ");
        assert!(check(&bad)
            .unwrap_err()
            .contains("real server \"zz\" is neither"));
    }
}
