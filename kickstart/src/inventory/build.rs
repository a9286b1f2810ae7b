//! The builder: the raw layer checked (references, uniqueness, addresses, values by kind)
//! into the model, every problem a [`Diag`] with its position. Clusters are in
//! [`super::clusters`].

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use opsflow_common::diag::{self, Diag, Pos};

use super::raw::*;
use super::*;

pub(super) fn to_json(vars: Vars) -> serde_json::Map<String, serde_json::Value> {
    vars.into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::to_value(v.into_inner()).ok()?)))
        .collect()
}

pub(super) struct Builder {
    pub(super) lines: Lines,
    pub(super) dir: PathBuf,
    pub(super) diags: Vec<Diag>,
}

impl Builder {
    pub(super) fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(diag::error(&pos, msg));
    }
    pub(super) fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(diag::warning(&pos, msg));
    }
    pub(super) fn rel(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.dir.join(p)
        }
    }
    /// `s` checked as a value of its kind ([`kinds`]); an error names `what` and the position.
    pub(super) fn kind(&mut self, s: S<String>, what: &str, check: kinds::Check) -> String {
        if let Err(e) = check(s.get_ref()) {
            self.err(self.lines.at(&s), format!("{what}: {e}"));
        }
        s.into_inner()
    }

    /// An optional value of its kind, or `default`.
    pub(super) fn kind_or(
        &mut self,
        s: Option<S<String>>,
        what: &str,
        check: kinds::Check,
        default: &str,
    ) -> String {
        s.map_or_else(|| default.to_string(), |s| self.kind(s, what, check))
    }

    /// Template variables: the well-known ones by kind, every string on one line.
    pub(super) fn vars(&mut self, vars: &Vars, owner: &str) {
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

    pub(super) fn ip(&mut self, s: &S<String>, what: &str) -> Option<Ipv4Addr> {
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

    pub(super) fn build(&mut self, path: &Path, raw: Raw) -> Option<Inventory> {
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

    pub(super) fn server(&mut self, r: RawServer) -> Option<Server> {
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
            boot_programs: r
                .boot_programs
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches('/').to_string(), self.rel(v)))
                .collect(),
        })
    }

    pub(super) fn network(&mut self, r: RawNetwork) -> Option<Network> {
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
            router_advertisements: r.router_advertisements.unwrap_or(true),
            ra_router_lifetime: r.ra_router_lifetime,
            subnet6: None,
            proxy_dhcp: r.proxy_dhcp,
        };
        if let Some(s6) = &r.subnet6 {
            let parsed = s6
                .get_ref()
                .split_once('/')
                .and_then(|(a, l)| Some((a.parse::<Ipv6Addr>().ok()?, l.parse::<u8>().ok()?)));
            match parsed {
                Some((a, l)) if l <= 128 => {
                    let m = u128::MAX.checked_shl(128 - u32::from(l)).unwrap_or(0);
                    if u128::from(a) & !m != 0 {
                        self.err(
                            self.lines.at(s6),
                            format!("network.subnet6 {a}/{l} has host bits set; the network is {}/{l}", Ipv6Addr::from(u128::from(a) & m)),
                        );
                    }
                    net.subnet6 = Some((a, l));
                }
                _ => self.err(
                    self.lines.at(s6),
                    format!(
                        "network.subnet6 {:?} is not IPV6-ADDRESS/LENGTH (e.g. \"2001:db8:99::/64\")",
                        s6.get_ref()
                    ),
                ),
            }
        }
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

    pub(super) fn ha(&mut self, r: RawHa) -> Ha {
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

    pub(super) fn distros(
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

    pub(super) fn profiles(
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

    pub(super) fn systems(
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
            let ip6 = s.ip6.as_ref().and_then(|a| {
                let at = self.lines.at(a);
                match a.get_ref().parse::<Ipv6Addr>() {
                    Ok(v) if net.contains6(v) => Some(v),
                    Ok(v) => {
                        let net6 = net
                            .subnet6
                            .map_or("none; set network.subnet6".to_string(), |(n, l)| {
                                format!("{n}/{l}")
                            });
                        self.err(
                            at,
                            format!("system {name}: ip6 {v} is outside network.subnet6 ({net6})"),
                        );
                        None
                    }
                    Err(_) => {
                        self.err(
                            at,
                            format!(
                                "system {name}: ip6 {:?} is not an IPv6 address",
                                a.get_ref()
                            ),
                        );
                        None
                    }
                }
            });
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
                ip6,
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
}
