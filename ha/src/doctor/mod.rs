//! `ha doctor`: are the prerequisites of VRRP and LVS in place on this node? Each check
//! gives findings (ok, warn, fail) that say what was found and how to fix it:
//!
//! - `clock`: time synchronised (chronyc, timedatectl, ntpq, else the kernel's adjtimex
//!   state): VRRP and the logs of a cluster are read side by side.
//! - `vrrp-firewall`: the local nftables ruleset (and iptables-legacy) lets each instance's
//!   adverts in ([`firewall`]); the dropping rule is named by table, chain and handle.
//! - `vrrp-peers`: the interface is up and multicast-capable, the unicast peers routable
//!   (and answering ping, a warning only).
//! - `ipvs`: the ip_vs module is loaded or loadable when virtual servers use IPVS.
//! - `nonlocal-bind`: `net.ipv4.ip_nonlocal_bind` where a local service binds a VIP.
//! - `real-server` (`--real-servers`): each real server of an LVS-DR service, over ssh
//!   ([`realserver`]): the VIP on `lo`, `arp_ignore` 1 or 2, `arp_announce` 2.
//!
//! An instance with `auth_type AH` sends its adverts as IP protocol 51 (AH), and that is the
//! protocol checked for it.

pub mod firewall;
pub mod realserver;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde::{Deserialize, Serialize};

use crate::conf::{Config, Instance};
use firewall::{Packet, Ruleset, Source};

/// Exit status when every finding is ok.
pub const EXIT_OK: u8 = 0;
/// Exit status when the config cannot be read (as `ha --check`).
pub const EXIT_CONFIG: u8 = 1;
/// Exit status when some finding warns and none fails.
pub const EXIT_WARN: u8 = 3;
/// Exit status when a finding fails.
pub const EXIT_FAIL: u8 = 4;

/// `ha doctor`'s arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit status: 0 every finding ok; 3 warnings only; 4 at least one \
finding failed; 1 the config cannot be read; 2 usage error."
)]
pub struct Args {
    /// The keepalived.conf of this node.
    #[arg(
        long,
        short = 'f',
        default_value = "/etc/keepalived/keepalived.conf",
        env = "HA_CONFIG"
    )]
    pub config: PathBuf,
    /// Config id for `@ID` conditional lines; default: the short host name.
    #[arg(long, short = 'i')]
    pub config_id: Option<String>,
    /// The report as JSON: node, config, status and the findings (check, subject, status,
    /// found, fix).
    #[arg(long)]
    pub json: bool,
    /// Also check each real server of the LVS-DR services over ssh.
    #[arg(long)]
    pub real_servers: bool,
    /// The backend the daemon runs with (as `ha --lvs-backend`): decides the IPVS check.
    #[arg(long, default_value = "auto", value_parser = ["ipvs", "nftables", "auto"])]
    pub lvs_backend: String,
    /// The ssh user on the real servers.
    #[arg(long, default_value = "root")]
    pub ssh_user: String,
    /// Extra ssh arguments (shell words, repeatable), e.g. `--ssh-option "-i KEY"`.
    #[arg(long, allow_hyphen_values = true)]
    pub ssh_option: Vec<String>,
}

/// How a finding came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "[ok]  ",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
        }
    }
}

/// What was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Clock,
    VrrpFirewall,
    VrrpPeers,
    Ipvs,
    NonlocalBind,
    RealServer,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Clock => "clock",
            Check::VrrpFirewall => "vrrp-firewall",
            Check::VrrpPeers => "vrrp-peers",
            Check::Ipvs => "ipvs",
            Check::NonlocalBind => "nonlocal-bind",
            Check::RealServer => "real-server",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: Check,
    /// What it is about: an instance name, a real server, empty for the node.
    pub subject: String,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// How to fix it (warn and fail only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: Check, subject: &str, status: Status, found: impl Into<String>) -> Finding {
        Finding {
            check,
            subject: subject.to_string(),
            status,
            found: found.into(),
            fix: None,
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// What `ha doctor --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The host name.
    pub node: String,
    pub config: String,
    /// The worst status of the findings.
    pub status: Status,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The exit status for this report ([`EXIT_OK`], [`EXIT_WARN`], [`EXIT_FAIL`]).
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Ok => EXIT_OK,
            Status::Warn => EXIT_WARN,
            Status::Fail => EXIT_FAIL,
        }
    }

    /// The text report: one line per finding, its fix below, a summary.
    pub fn text(&self) -> String {
        let mut s = format!("ha doctor: {} ({})\n", self.node, self.config);
        for f in &self.findings {
            let subject = if f.subject.is_empty() {
                String::new()
            } else {
                format!(" {}", f.subject)
            };
            s.push_str(&format!(
                "{} {}{subject}: {}\n",
                f.status.label(),
                f.check.name(),
                f.found
            ));
            if let Some(fix) = &f.fix {
                s.push_str(&format!("       fix: {fix}\n"));
            }
        }
        let n = |st| self.findings.iter().filter(|f| f.status == st).count();
        s.push_str(&format!(
            "{} failed, {} warnings, {} ok\n",
            n(Status::Fail),
            n(Status::Warn),
            n(Status::Ok)
        ));
        s
    }
}

/// Runs `ha doctor`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let node = crate::app::hostname();
    let id = args.config_id.clone().unwrap_or_else(|| node.clone());
    let cfg = match crate::conf::load(&args.config, &id) {
        Ok(c) => c,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "ha doctor: {} cannot be read; fix it first (ha --check --config {})",
                args.config.display(),
                args.config.display()
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let report = diagnose(&cfg, args, node);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Every check for `cfg` on this node.
pub fn diagnose(cfg: &Config, args: &Args, node: String) -> Report {
    let mut findings = vec![clock()];
    findings.extend(vrrp_firewall(&cfg.instances));
    findings.extend(cfg.instances.iter().flat_map(vrrp_peers));
    findings.extend(ipvs(cfg, &args.lvs_backend));
    findings.extend(nonlocal_bind(cfg));
    if args.real_servers {
        let t = realserver::Transport::Ssh {
            user: args.ssh_user.clone(),
            options: args
                .ssh_option
                .iter()
                .flat_map(|o| shlex::split(o).unwrap_or_else(|| vec![o.clone()]))
                .collect(),
        };
        findings.extend(realserver::check_all(cfg, &t));
    }
    let status = findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok);
    Report {
        node,
        config: args.config.display().to_string(),
        status,
        findings,
    }
}

/// Runs a tool; `None` when it is not installed or fails to start, else (success, stdout +
/// stderr).
fn tool(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new(program).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), s))
}

const TIME_SYNC_FIX: &str = "install and enable a time daemon: apt-get install chrony (or dnf \
install chrony); systemctl enable --now chrony (chronyd on RHEL), or systemctl enable --now \
systemd-timesyncd";

// ---------------------------------------------------------------- clock

/// What a time daemon says: synchronised or not, and its words.
#[derive(Debug, PartialEq)]
pub struct Sync {
    pub synced: bool,
    pub said: String,
}

/// `chronyc -n tracking`: "Leap status : Normal" once synchronised.
pub fn parse_chronyc(out: &str) -> Option<Sync> {
    let leap = out.lines().find_map(|l| {
        l.strip_prefix("Leap status")
            .map(|r| r.trim_start_matches([' ', ':']))
    })?;
    let offset = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("System time")
                .map(|r| r.trim_start_matches([' ', ':']))
        })
        .unwrap_or("");
    Some(Sync {
        synced: leap.trim() != "Not synchronised",
        said: format!("chronyd: leap status {}; {offset}", leap.trim()),
    })
}

/// `timedatectl show`: NTPSynchronized=yes.
pub fn parse_timedatectl(out: &str) -> Option<Sync> {
    let val = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let synced = val("NTPSynchronized")?;
    let ntp = val("NTP").unwrap_or("?");
    Some(Sync {
        synced: synced == "yes",
        said: format!("timedatectl: NTPSynchronized={synced}, NTP service {ntp}"),
    })
}

/// `ntpq -c "rv 0 leap"`: leap=00 when synchronised (11: not).
pub fn parse_ntpq(out: &str) -> Option<Sync> {
    let leap = out
        .split([',', '\n', ' '])
        .find_map(|w| w.trim().strip_prefix("leap="))?;
    Some(Sync {
        synced: leap != "11" && leap != "alarm",
        said: format!("ntpd: leap={leap}"),
    })
}

/// A time daemon's status command and its reader.
type Daemon = (
    &'static str,
    &'static [&'static str],
    fn(&str) -> Option<Sync>,
);

fn clock() -> Finding {
    let daemons: [Daemon; 3] = [
        ("chronyc", &["-n", "tracking"], parse_chronyc),
        ("timedatectl", &["show"], parse_timedatectl),
        ("ntpq", &["-c", "rv 0 leap"], parse_ntpq),
    ];
    for (program, args, parse) in daemons {
        let Some((true, out)) = tool(program, args) else {
            continue;
        };
        let Some(s) = parse(&out) else { continue };
        // timesyncd installed but off says NTP=no: that is no time sync at all
        if s.synced {
            return Finding::new(Check::Clock, "", Status::Ok, s.said);
        }
        if program == "timedatectl" && out.contains("NTP=no") {
            continue;
        }
        return Finding::new(
            Check::Clock,
            "",
            Status::Warn,
            format!("{}: the time daemon runs but is not synchronised", s.said),
        )
        .fix("wait for the first synchronisation, or check that the NTP servers answer (chronyc sources -v; timedatectl timesync-status)");
    }
    kernel_clock()
}

/// The kernel's view (adjtimex(2)): STA_UNSYNC and the maximum error.
fn kernel_clock() -> Finding {
    // SAFETY: adjtimex with modes 0 only reads; `tx` is a zeroed, properly sized struct.
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut tx);
        (state, tx)
    };
    if state < 0 {
        return Finding::new(
            Check::Clock,
            "",
            Status::Warn,
            format!(
                "no time daemon answered and adjtimex(2) failed: {}",
                std::io::Error::last_os_error()
            ),
        )
        .fix(TIME_SYNC_FIX);
    }
    let unsync = state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
    let maxerror_ms = tx.maxerror / 1000;
    if unsync {
        Finding::new(
            Check::Clock,
            "",
            Status::Fail,
            format!("no time daemon (chronyc, timedatectl, ntpq) reports synchronisation and the kernel clock is unsynchronised (adjtimex: STA_UNSYNC, maxerror {maxerror_ms} ms)"),
        )
        .fix(TIME_SYNC_FIX)
    } else if maxerror_ms > 500 {
        Finding::new(
            Check::Clock,
            "",
            Status::Warn,
            format!(
                "the kernel clock is marked synchronised but its maximum error is {maxerror_ms} ms"
            ),
        )
        .fix(TIME_SYNC_FIX)
    } else {
        Finding::new(
            Check::Clock,
            "",
            Status::Ok,
            format!("the kernel clock is synchronised (adjtimex: maxerror {maxerror_ms} ms)"),
        )
    }
}

// ---------------------------------------------------------------- VRRP firewall

/// The IPv4 address and prefix of an interface.
fn iface_addr(name: &str) -> Option<(Ipv4Addr, u8)> {
    opsflow_common::ipv4_interfaces()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, a, p)| (a, p))
}

fn network((a, p): (Ipv4Addr, u8)) -> (Ipv4Addr, u8) {
    let mask = if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p.min(32)))
    };
    (Ipv4Addr::from(u32::from(a) & mask), p)
}

/// The IP protocol of an instance's adverts: 51 with AH, else 112.
fn proto_of(i: &Instance) -> u8 {
    if matches!(i.auth, crate::conf::Auth::Ah(_)) {
        51
    } else {
        112
    }
}

/// The nft name of that protocol.
fn proto_name(i: &Instance) -> &'static str {
    if proto_of(i) == 51 {
        "ah"
    } else {
        "vrrp"
    }
}

/// The adverts an instance receives: IPv4 from the interface's subnet (`local`) or the
/// unicast peers; IPv6 (VRRPv3) from the link-local addresses of the link to the IPv6 group,
/// or from the IPv6 unicast peers.
pub fn packets(i: &Instance, local: Option<(Ipv4Addr, u8)>) -> Vec<Packet> {
    if i.unicast_peers.is_empty() {
        let (src_net, daddr) = if i.ipv6 {
            let link = IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0));
            (Some((link, 64)), IpAddr::V6(i.mcast_group6))
        } else {
            let net = local.map(network).map(|(a, l)| (IpAddr::V4(a), l));
            (net, IpAddr::V4(i.mcast_group))
        };
        vec![Packet {
            proto: proto_of(i),
            saddr: None,
            src_net,
            daddr: Some(daddr),
            iif: i.interface.clone(),
        }]
    } else {
        let src = match i.unicast_src {
            Some(a) if a.is_ipv6() == i.ipv6 => Some(a),
            _ if i.ipv6 => None,
            _ => local.map(|l| IpAddr::V4(l.0)),
        };
        i.unicast_peers
            .iter()
            .copied()
            .filter(|p| p.is_ipv6() == i.ipv6)
            .map(|p| Packet {
                proto: proto_of(i),
                saddr: Some(p),
                src_net: None,
                daddr: src,
                iif: i.interface.clone(),
            })
            .collect()
    }
}

/// The nft expression that accepts the adverts of `i` (IPv6: by `meta l4proto`, which
/// looks past extension headers).
fn accept_expr(i: &Instance) -> String {
    let (ip, proto) = if i.ipv6 {
        ("ip6", format!("meta l4proto {}", proto_name(i)))
    } else {
        ("ip", format!("ip protocol {}", proto_name(i)))
    };
    if i.unicast_peers.is_empty() {
        let group = if i.ipv6 {
            i.mcast_group6.to_string()
        } else {
            i.mcast_group.to_string()
        };
        format!(
            "iifname \"{}\" {ip} daddr {group} {proto} accept",
            i.interface
        )
    } else {
        format!(
            "iifname \"{}\" {ip} saddr {{ {} }} {proto} accept",
            i.interface,
            peers(i).join(", ")
        )
    }
}

/// The unicast peers of the instance's family.
fn peers(i: &Instance) -> Vec<String> {
    i.unicast_peers
        .iter()
        .filter(|p| p.is_ipv6() == i.ipv6)
        .map(|p| p.to_string())
        .collect()
}

fn iptables_accept(i: &Instance, table: &str, chain: &str) -> String {
    let t = if table == "filter" {
        String::new()
    } else {
        format!("-t {table} ")
    };
    let from = match (i.unicast_peers.is_empty(), i.ipv6) {
        (true, false) => format!("-d {}", i.mcast_group),
        (true, true) => format!("-d {}", i.mcast_group6),
        (false, _) => format!("-s {}", peers(i).join(",")),
    };
    let tool = if i.ipv6 {
        "ip6tables-legacy"
    } else {
        "iptables-legacy"
    };
    format!(
        "{tool} {t}-I {chain} -i {} -p {} {from} -j ACCEPT",
        i.interface,
        proto_name(i)
    )
}

/// The rulesets of this node: nft's (which includes iptables-nft's tables) and
/// iptables-legacy's when it holds anything; with the rule texts of `nft -a list ruleset`.
struct Rulesets {
    sets: Vec<Ruleset>,
    texts: std::collections::HashMap<(String, String, String, u64), String>,
    read: Vec<String>,
    problems: Vec<String>,
}

fn rulesets() -> Rulesets {
    let mut r = Rulesets {
        sets: Vec::new(),
        texts: Default::default(),
        read: Vec::new(),
        problems: Vec::new(),
    };
    match tool("nft", &["-j", "list", "ruleset"]) {
        None => {}
        Some((false, out)) => r.problems.push(format!(
            "nft -j list ruleset failed: {} (run ha doctor as root)",
            out.trim()
        )),
        Some((true, out)) => match Ruleset::from_nft_json(&out) {
            Ok(rs) => {
                r.sets.push(rs);
                r.read.push("nftables".into());
                if let Some((true, listing)) = tool("nft", &["-a", "list", "ruleset"]) {
                    r.texts = firewall::rule_texts(&listing);
                }
            }
            Err(e) => r.problems.push(e.to_string()),
        },
    }
    if let Some((true, out)) = tool("iptables-legacy-save", &[]) {
        let rs = Ruleset::from_iptables_save(&out);
        if !rs.is_empty() {
            r.sets.push(rs);
            r.read.push("iptables-legacy".into());
        }
    }
    if let Some((true, out)) = tool("ip6tables-legacy-save", &[]) {
        let rs = Ruleset::from_ip6tables_save(&out);
        if !rs.is_empty() {
            r.sets.push(rs);
            r.read.push("ip6tables-legacy".into());
        }
    }
    r
}

fn vrrp_firewall(instances: &[Instance]) -> Vec<Finding> {
    if instances.is_empty() {
        return Vec::new();
    }
    let rs = rulesets();
    instances.iter().map(|i| vrrp_firewall_of(i, &rs)).collect()
}

fn vrrp_firewall_of(i: &Instance, rs: &Rulesets) -> Finding {
    let f = |st, msg: String| Finding::new(Check::VrrpFirewall, &i.name, st, msg);
    let vrrp = if i.ipv6 { "VRRPv3 over IPv6" } else { "VRRP" };
    let who = if i.unicast_peers.is_empty() {
        let group = if i.ipv6 {
            i.mcast_group6.to_string()
        } else {
            i.mcast_group.to_string()
        };
        format!(
            "{vrrp} (IP protocol {}) to {group} on {}",
            proto_of(i),
            i.interface
        )
    } else {
        format!(
            "{vrrp} (IP protocol {}) from the unicast peers {} on {}",
            proto_of(i),
            peers(i).join(", "),
            i.interface
        )
    };
    if rs.sets.is_empty() {
        if let Some(p) = rs.problems.first() {
            return f(Status::Warn, format!("cannot read the packet filter: {p}"))
                .fix("run ha doctor as root, where nft can read the ruleset");
        }
        return f(
            Status::Ok,
            format!("{who}: no nft or iptables-legacy ruleset here, nothing filters it"),
        );
    }
    let packets = packets(i, iface_addr(&i.interface));
    let mut drops: Vec<firewall::Dropped> = Vec::new();
    for p in &packets {
        for set in &rs.sets {
            for d in set.drops(p) {
                if !drops.iter().any(|x| x.place() == d.place()) {
                    drops.push(d);
                }
            }
        }
    }
    if drops.is_empty() {
        return f(
            Status::Ok,
            format!(
                "{who}: accepted by every input and prerouting chain ({})",
                rs.read.join(", ")
            ),
        );
    }
    let certain = drops.iter().any(|d| d.certain);
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    for d in &drops {
        let text = d
            .handle
            .and_then(|h| {
                rs.texts
                    .get(&(d.family.clone(), d.table.clone(), d.in_chain.clone(), h))
            })
            .map(|t| format!(": `{t}`"))
            .unwrap_or_default();
        let how = if d.certain {
            "dropped"
        } else {
            "may be dropped"
        };
        let mut s = format!("{who} is {how} by {}{text}", d.place());
        if d.chain != d.in_chain {
            s.push_str(&format!(" (reached from base chain {})", d.chain));
        }
        if !d.certain && !d.unknown.is_empty() {
            let mut u = d.unknown.clone();
            u.dedup();
            s.push_str(&format!(" (ha cannot decide: {})", u.join("; ")));
        }
        found.push(s);
        fixes.push(match d.source {
            Source::Nft => {
                let mut fix = format!(
                    "nft insert rule {} {} {} {}",
                    d.family,
                    d.table,
                    d.chain,
                    accept_expr(i)
                );
                if let Some(h) = d.handle {
                    fix.push_str(&format!(
                        " (or remove the rule: nft delete rule {} {} {} handle {h})",
                        d.family, d.table, d.in_chain
                    ));
                }
                fix
            }
            Source::IptablesLegacy => iptables_accept(i, &d.table, &d.chain),
        });
    }
    let st = if certain { Status::Fail } else { Status::Warn };
    f(st, found.join("; ")).fix(format!(
        "{}; then keep it in the saved ruleset (/etc/nftables.conf)",
        fixes.join("; ")
    ))
}

// ---------------------------------------------------------------- peers

/// The flags of an interface (SIOCGIFFLAGS in this network namespace): UP, MULTICAST.
fn link_flags(name: &str) -> Result<(bool, bool), String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("{name:?} is not an interface name"));
    }
    // SAFETY: a plain datagram socket, closed by OwnedFd; SIOCGIFFLAGS reads into a zeroed
    // ifreq whose name is NUL-terminated (checked length above).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let _fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) => format!("no interface {name} in this network namespace"),
                _ => format!("interface {name}: {e}"),
            });
        }
        let flags = i32::from(req.ifr_ifru.ifru_flags);
        Ok((flags & libc::IFF_UP != 0, flags & libc::IFF_MULTICAST != 0))
    }
}

fn vrrp_peers(i: &Instance) -> Vec<Finding> {
    let f = |st, msg: String| Finding::new(Check::VrrpPeers, &i.name, st, msg);
    let (up, multicast) = match link_flags(&i.interface) {
        Ok(fl) => fl,
        Err(e) => {
            return vec![f(Status::Fail, e)
                .fix(format!("create the interface or set `interface` of vrrp_instance {} to one that exists (ip link)", i.name))]
        }
    };
    if !up {
        return vec![
            f(Status::Fail, format!("interface {} is down", i.interface)).fix(format!(
                "ip link set {} up, and bring it up at boot",
                i.interface
            )),
        ];
    }
    let Some(local) = iface_addr(&i.interface) else {
        return vec![f(
            Status::Fail,
            format!(
                "interface {} has no IPv4 address to send adverts from",
                i.interface
            ),
        )
        .fix(format!(
            "give {} an address (the VIPs do not count)",
            i.interface
        ))];
    };
    if i.unicast_peers.is_empty() {
        if !multicast {
            return vec![f(
                Status::Fail,
                format!(
                    "interface {} has no MULTICAST flag: adverts to {} cannot be sent",
                    i.interface, i.mcast_group
                ),
            )
            .fix(format!(
                "ip link set {} multicast on, or configure unicast_peer",
                i.interface
            ))];
        }
        return vec![f(
            Status::Ok,
            format!(
                "multicast to {} on {} (up, multicast, source {})",
                i.mcast_group, i.interface, local.0
            ),
        )];
    }
    i.unicast_peers
        .iter()
        .map(|p| {
            let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                .and_then(|s| s.connect((*p, 9)).map(|()| s));
            match sock {
                Err(e) => f(Status::Fail, format!("unicast peer {p}: no route ({e})"))
                    .fix(format!("add a route to {p} through {}, or fix unicast_peer", i.interface)),
                Ok(_) => match tool("ping", &["-c", "1", "-W", "1", "-I", &i.interface, &p.to_string()]) {
                    Some((true, _)) => f(Status::Ok, format!("unicast peer {p}: routed and answers ping")),
                    Some((false, _)) => f(Status::Warn, format!("unicast peer {p}: routed but no answer to ping within 1 s"))
                        .fix(format!("check that {p} is up and on the link of {}; a peer that drops ICMP may be fine", i.interface)),
                    None => f(Status::Ok, format!("unicast peer {p}: routed (no ping here to try it)")),
                },
            }
        })
        .collect()
}

// ---------------------------------------------------------------- IPVS, nonlocal bind

fn ipvs(cfg: &Config, backend: &str) -> Vec<Finding> {
    if cfg.lvs.is_empty() || backend == "nftables" {
        return Vec::new();
    }
    let f = |st, msg: String| Finding::new(Check::Ipvs, "", st, msg);
    if Path::new("/proc/net/ip_vs").exists() {
        return vec![f(Status::Ok, "the ip_vs module is loaded".into())];
    }
    match tool("modprobe", &["-n", "-q", "ip_vs"]) {
        Some((true, _)) => vec![f(
            Status::Ok,
            "the ip_vs module is not loaded but loadable".into(),
        )
        .fix("modprobe ip_vs, and list it in /etc/modules-load.d/ip_vs.conf")],
        _ => {
            let dr = cfg
                .lvs
                .iter()
                .any(|v| v.method == "DR" || v.method == "TUN");
            let (st, what) = if backend == "ipvs" {
                (
                    Status::Fail,
                    "ha --lvs-backend ipvs cannot start its virtual servers",
                )
            } else if dr {
                (Status::Fail, "the nftables fallback forwards the DR/TUN services as NAT, which their real servers do not expect")
            } else {
                (Status::Warn, "ha falls back to nftables NAT")
            };
            vec![f(st, format!("{} virtual servers are configured but the ip_vs module is neither loaded nor loadable (modprobe -n ip_vs): {what}", cfg.lvs.len()))
                .fix("install the kernel modules package of the running kernel (linux-modules-extra / kernel-modules-extra), then modprobe ip_vs")]
        }
    }
}

/// Local addresses listening sockets are bound to (tcp and udp, from /proc/net).
fn bound_addrs() -> Vec<(Ipv4Addr, u16, &'static str)> {
    let mut out = Vec::new();
    for (file, proto, listen_state) in [
        ("/proc/net/tcp", "tcp", "0A"),
        ("/proc/net/udp", "udp", "07"),
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() < 4 || w[3] != listen_state {
                continue;
            }
            let Some((a, p)) = w[1].split_once(':') else {
                continue;
            };
            if let (Ok(a), Ok(p)) = (u32::from_str_radix(a, 16), u16::from_str_radix(p, 16)) {
                out.push((Ipv4Addr::from(u32::from_be(a)), p, proto));
            }
        }
    }
    out
}

fn nonlocal_bind(cfg: &Config) -> Vec<Finding> {
    let vips: Vec<Ipv4Addr> = cfg
        .instances
        .iter()
        .flat_map(|i| i.vips.iter())
        .filter_map(|v| match v.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    if vips.is_empty() {
        return Vec::new();
    }
    let f = |st, msg: String| Finding::new(Check::NonlocalBind, "", st, msg);
    let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let users: Vec<String> = bound_addrs()
        .into_iter()
        .filter(|(a, _, _)| vips.contains(a))
        .map(|(a, p, proto)| format!("{a}:{p}/{proto}"))
        .collect();
    match (users.is_empty(), sysctl) {
        (_, true) => vec![f(Status::Ok, "net.ipv4.ip_nonlocal_bind = 1: services may bind the VIPs on a backup too".into())],
        (true, false) => vec![f(Status::Ok, "no local service binds a VIP (net.ipv4.ip_nonlocal_bind = 0)".into())],
        (false, false) => vec![f(
            Status::Fail,
            format!("local services bind VIPs ({}) but net.ipv4.ip_nonlocal_bind = 0: they cannot (re)start while this node is BACKUP", users.join(", ")),
        )
        .fix("echo net.ipv4.ip_nonlocal_bind = 1 > /etc/sysctl.d/90-ha.conf; sysctl -p /etc/sysctl.d/90-ha.conf")],
    }
}

#[cfg(test)]
mod tests;
