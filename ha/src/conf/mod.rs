//! keepalived.conf: syntax (positions, includes, variables, conditional lines), a keyword
//! schema per block, and the validated model ha runs from.

mod family;
pub mod ipvs;
pub mod lvs;
pub mod route;
pub mod schema;
pub mod syntax;
mod track;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use family::family;
use schema::{Ctx, Status};
use syntax::{error, warning, Diag, Node, Pos, ReadOptions};
use track::{
    resolve_file_checks, sync_group_tracking, track_file, track_interfaces, track_refs,
    track_scripts, vet_scripts,
};

/// Authentication of VRRPv2 adverts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Simple password; only the first 8 bytes count.
    Pass([u8; 8]),
    /// IPsec AH (HMAC-MD5-96) keyed with the password's first 8 bytes, zero-padded, as
    /// keepalived does (VRRPv2 over IPv4 only).
    Ah([u8; 8]),
}

/// A virtual IP and its keepalived options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
    /// IPv6: add the address without duplicate address detection (IFA_F_NODAD).
    pub nodad: bool,
    pub brd: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    /// Overrides the script's own weight.
    pub weight: Option<i32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    pub name: String,
    pub script: String,
    pub interval: f64,
    pub timeout: f64,
    pub weight: i32,
    pub reverse: bool,
    pub fall: u32,
    pub rise: u32,
    pub user: Option<String>,
    pub init_fail: bool,
    /// Why keepalived would disable this script (not found, insecure): it never runs and
    /// does not count.
    pub disabled: Option<String>,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Notify {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
    pub generic: Option<String>,
    pub smtp_alert: bool,
}

/// `track_file NAME` / `vrrp_track_file NAME`: a file whose number is a weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    pub name: String,
    pub path: String,
    pub weight: i32,
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]`: write VALUE at start (if absent, or always).
    pub init: Option<(i64, bool)>,
    pub pos: Pos,
}

/// `vrrp_track_process NAME`: how many processes match, against a quorum.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackProcess {
    pub name: String,
    /// `process NAME [PARAM...]`: the command name (or path with `full_command`) and,
    /// when given, its parameters.
    pub process: String,
    pub params: Option<Vec<String>>,
    /// `param_match initial|partial` (default: all parameters exactly).
    pub param_match: crate::vrrp::ParamMatch,
    pub full_command: bool,
    pub weight: i32,
    pub reverse: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    /// Seconds a change must last before it counts (`delay`, `fork_delay`,
    /// `terminate_delay`): (becoming healthy, becoming unhealthy).
    pub delays: (f64, f64),
    pub pos: Pos,
}

/// An instance's (or group's) `track_file { NAME [weight W [reverse]] }` or
/// `track_process { ... }` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackRef {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub name: String,
    pub initial_master: bool,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds.
    pub advert_cs: u32,
    pub version: u8,
    pub auth: Auth,
    pub vips: Vec<Vip>,
    pub vips_excluded: Vec<Vip>,
    /// `virtual_routes`: added with MASTER, removed with BACKUP/FAULT and at shutdown.
    pub virtual_routes: Vec<route::Route>,
    /// `virtual_rules`: as `virtual_routes`.
    pub virtual_rules: Vec<route::Rule>,
    pub track_interfaces: Vec<(String, i32)>,
    pub track_scripts: Vec<TrackScript>,
    pub track_files: Vec<TrackRef>,
    pub track_processes: Vec<TrackRef>,
    pub nopreempt: bool,
    /// Seconds.
    pub preempt_delay: f64,
    pub notify: Notify,
    pub unicast_src: Option<IpAddr>,
    pub unicast_peers: Vec<IpAddr>,
    pub mcast_src: Option<IpAddr>,
    pub mcast_group: Ipv4Addr,
    /// `vrrp_mcast_group6` (ff02::12 by default).
    pub mcast_group6: Ipv6Addr,
    /// The instance speaks IPv6 (its first address is IPv6, or `native_ipv6`).
    pub ipv6: bool,
    pub garp_master_delay: f64,
    pub garp_master_repeat: u32,
    pub garp_master_refresh: f64,
    /// `use_vmac [NAME]`: a macvlan (default `vrrp.VRID`) with 00:00:5e:00:01:VRID.
    pub use_vmac: Option<String>,
    /// Send adverts from the base interface instead of the VMAC interface.
    pub vmac_xmit_base: bool,
    pub accept: bool,
    /// Do not go to FAULT when the instance's own interface loses carrier.
    pub dont_track_primary: bool,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub notify: Notify,
    /// `sync_group_tracking_weight` (or the older `global_tracking`): members' tracking
    /// weights count; without it they are 0, so any tracked failure is a FAULT.
    pub tracking_weight: bool,
    /// The group's own `track_interface`, given to every member.
    pub track_interfaces: Vec<(String, i32)>,
    /// The group's own `track_script`, given to every member.
    pub track_scripts: Vec<TrackScript>,
    /// The group's own `track_file`, given to every member.
    pub track_files: Vec<TrackRef>,
    /// The group's own `track_process`, given to every member.
    pub track_processes: Vec<TrackRef>,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Global {
    pub router_id: Option<String>,
    pub emails: Vec<String>,
    pub email_from: Option<String>,
    pub smtp_server: Option<(String, u16)>,
    pub smtp_connect_timeout: u32,
    pub smtp_helo: Option<String>,
    pub script_user: Option<String>,
    pub enable_script_security: bool,
    /// `smtp_alert` in global_defs: alerts for every instance.
    pub smtp_alert: bool,
    /// IPVS: sync daemon, timeouts, flushes.
    pub ipvs: ipvs::IpvsGlobal,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub global: Global,
    pub scripts: Vec<VrrpScript>,
    pub track_files: Vec<TrackFile>,
    pub track_processes: Vec<TrackProcess>,
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<SyncGroup>,
    pub static_addresses: Vec<Vip>,
    /// `static_routes`: installed at start, kept whatever the VRRP state.
    pub static_routes: Vec<route::Route>,
    /// `static_rules`: installed at start, kept whatever the VRRP state.
    pub static_rules: Vec<route::Rule>,
    /// `virtual_server` blocks, checked against the schema; acted on by the LVS part.
    pub virtual_servers: Vec<Node>,
    /// The same, typed: what the LVS part programs and checks.
    pub lvs: Vec<lvs::VirtualServer>,
    /// Who scripts run as, and `enable_script_security`.
    pub script_env: crate::script::Env,
    pub warnings: Vec<Diag>,
}

/// Reads and validates a file; `config_id` selects `@ID` lines (keepalived's `-i`).
pub fn load(path: &Path, config_id: &str) -> Result<Config, Vec<Diag>> {
    let (nodes, diags) = syntax::read(
        path,
        &ReadOptions {
            config_id: config_id.to_string(),
        },
    );
    finish(nodes, diags)
}

/// Reads and validates text (tests).
pub fn load_str(name: &str, text: &str, config_id: &str) -> Result<Config, Vec<Diag>> {
    let (nodes, diags) = syntax::read_str(
        name,
        text,
        &ReadOptions {
            config_id: config_id.to_string(),
        },
    );
    finish(nodes, diags)
}

fn finish(nodes: Vec<Node>, mut diags: Vec<Diag>) -> Result<Config, Vec<Diag>> {
    check_keywords(&nodes, Ctx::Top, &mut diags);
    let cfg = build(&nodes, &mut diags);
    let (warnings, errors): (Vec<Diag>, Vec<Diag>) = diags.into_iter().partition(|d| d.warning);
    if errors.is_empty() {
        Ok(Config { warnings, ..cfg })
    } else {
        let mut all = errors;
        all.extend(warnings);
        Err(all)
    }
}

fn check_keywords(nodes: &[Node], ctx: Ctx, diags: &mut Vec<Diag>) {
    for n in nodes {
        let key = n.key.text.as_str();
        match schema::lookup(ctx, key) {
            Some(kw) => {
                if kw.status == Status::No {
                    diags.push(warning(&n.key.pos, format!("'{key}' is a keepalived keyword that ha does not implement; it has no effect")));
                }
                if kw.status == Status::Removed {
                    diags.push(warning(&n.key.pos, format!("'{key}' is not a keepalived 2.2 keyword (older releases had it): keepalived ignores it as unknown and -t fails; ha ignores it too. Remove it")));
                }
                if let Some(b) = &n.block {
                    check_keywords(b, kw.block.unwrap_or(Ctx::OtherCheck), diags);
                } else if ctx == Ctx::Top && kw.block.is_some() {
                    // its lines would follow as top-level keywords: say what went wrong first
                    let head = std::iter::once(key)
                        .chain(n.args.iter().map(|a| a.text.as_str()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    diags.push(error(
                        &n.key.pos,
                        format!("'{head}' opens no block: a '{{' is missing after it"),
                    ));
                }
            }
            // keepalived before 1.2 listed sync group members directly; 2.2 ignores such a
            // line (unknown keyword), ha keeps the member in the group (safer) and says so
            None if ctx == Ctx::SyncGroup && n.args.is_empty() && n.block.is_none() => {
                diags.push(warning(
                    &n.key.pos,
                    format!("'{key}' as a bare member is the old form: keepalived 2.2 ignores it (the instance is then not in the group), ha keeps it in the group; write group {{ {key} }}"),
                ));
            }
            None if schema::open(ctx) => {
                if let Some(b) = &n.block {
                    check_keywords(b, Ctx::OtherCheck, diags);
                }
            }
            None => {
                let hint = schema::nearest(ctx, key)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                diags.push(error(&n.key.pos, format!("unknown keyword '{key}'{hint}")));
            }
        }
    }
}

fn num<T: std::str::FromStr>(n: &Node, what: &str, diags: &mut Vec<Diag>) -> Option<T> {
    let Some(w) = n.args.first() else {
        diags.push(error(&n.key.pos, format!("{} needs {what}", n.key.text)));
        return None;
    };
    // keepalived reads plain decimals only: no exponent, inf or nan
    let plain = w.text.chars().any(|c| c.is_ascii_digit())
        && w.text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'));
    match w.text.parse() {
        Ok(v) if plain => Some(v),
        _ => {
            diags.push(error(
                &w.pos,
                format!("{}: '{}' is not {what}", n.key.text, w.text),
            ));
            None
        }
    }
}

fn ranged(n: &Node, lo: f64, hi: f64, what: &str, diags: &mut Vec<Diag>) -> Option<f64> {
    let v: f64 = num(n, what, diags)?;
    if !(lo..=hi).contains(&v) {
        diags.push(error(
            &n.args[0].pos,
            format!("{} {v} is out of range ({lo} to {hi})", n.key.text),
        ));
        return None;
    }
    Some(v)
}

fn string(n: &Node) -> Option<String> {
    (!n.args.is_empty()).then(|| {
        n.args
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Parses a `virtual_ipaddress` line: `ADDR[/LEN] [brd X] [dev X] [scope X] [label X]`.
pub fn parse_vip(n: &Node, diags: &mut Vec<Diag>) -> Option<Vip> {
    let (addr, prefix) = match n.key.text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (n.key.text.as_str(), None),
    };
    let addr = addr.parse::<IpAddr>().ok();
    let max = if matches!(addr, Some(IpAddr::V6(_))) {
        128
    } else {
        32
    };
    let prefix = match prefix {
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => Some(p),
            _ if addr.is_some() => {
                diags.push(error(
                    &n.key.pos,
                    format!("'{}': the prefix length must be 0 to {max}", n.key.text),
                ));
                return None;
            }
            _ => None,
        },
        None => Some(max),
    };
    let (Some(addr), Some(prefix)) = (addr, prefix) else {
        diags.push(error(
            &n.key.pos,
            format!(
                "'{}' is not an IP address (ADDR or ADDR/LEN, IPv4 or IPv6)",
                n.key.text
            ),
        ));
        return None;
    };
    let mut vip = Vip {
        addr,
        prefix,
        nodad: false,
        brd: None,
        dev: None,
        scope: None,
        label: None,
    };
    let mut it = n.args.iter();
    while let Some(w) = it.next() {
        match w.text.as_str() {
            // flags without a value (keepalived 2.2)
            "no_track" | "home" | "noprefixroute" | "autojoin" => continue,
            "nodad" if vip.addr.is_ipv6() => {
                vip.nodad = true;
                continue;
            }
            "nodad" => {
                diags.push(error(
                    &w.pos,
                    format!("'nodad' is for IPv6 addresses only; {} is IPv4 (keepalived refuses it too)", vip.addr),
                ));
                continue;
            }
            _ => {}
        }
        let Some(v) = it.next() else {
            diags.push(error(&w.pos, format!("'{}' needs a value", w.text)));
            return None;
        };
        match w.text.as_str() {
            // `brd +`: the broadcast address computed from the prefix
            "brd" | "broadcast" if vip.addr.is_ipv6() => diags.push(error(
                &w.pos,
                format!("'{}' is for IPv4 addresses; {} is IPv6", w.text, vip.addr),
            )),
            "brd" | "broadcast" if v.text == "+" => {
                if let IpAddr::V4(a) = vip.addr {
                    vip.brd = Some(Ipv4Addr::from(
                        u32::from(a) | (u32::MAX.checked_shr(u32::from(vip.prefix)).unwrap_or(0)),
                    ))
                }
            }
            "brd" | "broadcast" if v.text == "-" => {}
            "brd" | "broadcast" => match v.text.parse() {
                Ok(b) => vip.brd = Some(b),
                Err(_) => diags.push(error(
                    &v.pos,
                    format!("'{}' is not an IPv4 address", v.text),
                )),
            },
            "dev" => vip.dev = Some(v.text.clone()),
            "scope" => vip.scope = Some(v.text.clone()),
            "label" => vip.label = Some(v.text.clone()),
            "preferred_lft" => {}
            other => diags.push(error(
                &w.pos,
                format!("unknown virtual address option '{other}' (brd, dev, scope, label)"),
            )),
        }
    }
    Some(vip)
}

fn notify_field(n: &Node, notify: &mut Notify) -> bool {
    let v = string(n);
    match n.key.text.as_str() {
        "notify_master" => notify.master = v,
        "notify_backup" => notify.backup = v,
        "notify_fault" => notify.fault = v,
        "notify_stop" => notify.stop = v,
        "notify" => notify.generic = v,
        "smtp_alert" => notify.smtp_alert = !matches!(n.arg(0), Some("false" | "off" | "no")),
        _ => return false,
    }
    true
}

fn a_pos(n: &Node) -> Pos {
    n.key.pos.clone()
}

fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn build(nodes: &[Node], diags: &mut Vec<Diag>) -> Config {
    let mut global = Global {
        smtp_connect_timeout: 30,
        ..Default::default()
    };
    let mut version = 2u8;
    let mut mcast = Ipv4Addr::new(224, 0, 0, 18);
    let mut mcast6 = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
    let mut garp_delay = 5.0;
    let mut garp_repeat = 5;
    let mut garp_refresh = 0.0;
    // virtual_server_group blocks, wherever they appear, for `virtual_server group NAME`
    let groups = lvs::groups(nodes, diags);
    // global_defs first: instances inherit from it wherever it appears
    for n in nodes.iter().filter(|n| n.key.text == "global_defs") {
        for g in n.block.iter().flatten() {
            match g.key.text.as_str() {
                "router_id" => global.router_id = string(g),
                "notification_email" => global
                    .emails
                    .extend(g.block.iter().flatten().map(|e| e.key.text.clone())),
                "notification_email_from" => global.email_from = string(g),
                "smtp_server" => {
                    let host = g.arg(0).unwrap_or("127.0.0.1").to_string();
                    let port = g.arg(1).and_then(|p| p.parse().ok()).unwrap_or(25);
                    global.smtp_server = Some((host, port));
                }
                "smtp_connect_timeout" => {
                    global.smtp_connect_timeout = num(g, "a number of seconds", diags).unwrap_or(30)
                }
                "smtp_helo_name" => global.smtp_helo = string(g),
                "script_user" => global.script_user = string(g),
                "enable_script_security" => global.enable_script_security = true,
                "smtp_alert" | "smtp_alert_vrrp" => {
                    global.smtp_alert = !matches!(g.arg(0), Some("false" | "off" | "no"))
                }
                "vrrp_version" => {
                    if let Some(v) = ranged(g, 2.0, 3.0, "2 or 3", diags) {
                        version = v as u8;
                    }
                }
                "vrrp_mcast_group4" => match g.arg(0).and_then(|a| a.parse::<Ipv4Addr>().ok()) {
                    Some(a) if a.is_multicast() => mcast = a,
                    _ => diags.push(error(
                        &g.key.pos,
                        "vrrp_mcast_group4 needs an IPv4 multicast address",
                    )),
                },
                "vrrp_mcast_group6" => match g.arg(0).and_then(|a| a.parse::<Ipv6Addr>().ok()) {
                    Some(a) if a.is_multicast() => mcast6 = a,
                    _ => diags.push(error(
                        &g.key.pos,
                        "vrrp_mcast_group6 needs an IPv6 multicast address (ff02::12 by default)",
                    )),
                },
                "vrrp_garp_master_delay" => {
                    garp_delay = ranged(g, 0.0, 3600.0, "seconds", diags).unwrap_or(5.0)
                }
                "vrrp_garp_master_repeat" => garp_repeat = num(g, "a count", diags).unwrap_or(5),
                "vrrp_garp_master_refresh" => {
                    garp_refresh = ranged(g, 0.0, 86400.0, "seconds", diags).unwrap_or(0.0)
                }
                _ => {}
            }
        }
    }
    global.ipvs = ipvs::global(nodes, diags);
    let mut cfg = Config {
        global,
        scripts: Vec::new(),
        track_files: Vec::new(),
        track_processes: Vec::new(),
        instances: Vec::new(),
        sync_groups: Vec::new(),
        static_addresses: Vec::new(),
        static_routes: Vec::new(),
        static_rules: Vec::new(),
        virtual_servers: Vec::new(),
        lvs: Vec::new(),
        script_env: crate::script::Env::default(),
        warnings: Vec::new(),
    };
    for n in nodes {
        match n.key.text.as_str() {
            "vrrp_track_process" | "track_process" => {
                if let Some(t) = track::track_process(n, diags) {
                    if cfg.track_processes.iter().any(|o| o.name == t.name) {
                        diags.push(error(
                            &n.key.pos,
                            format!("track_process {} is declared twice", t.name),
                        ));
                    }
                    cfg.track_processes.push(t);
                }
            }
            "vrrp_track_file" | "track_file" => {
                if let Some(t) = track_file(n, diags) {
                    if cfg.track_files.iter().any(|o| o.name == t.name) {
                        diags.push(error(
                            &n.key.pos,
                            format!("track_file {} is declared twice", t.name),
                        ));
                    }
                    cfg.track_files.push(t);
                }
            }
            "vrrp_script" => {
                let Some(name) = n.arg(0) else {
                    diags.push(error(&n.key.pos, "vrrp_script needs a name"));
                    continue;
                };
                let mut s = VrrpScript {
                    name: name.to_string(),
                    script: String::new(),
                    interval: 1.0,
                    timeout: 0.0,
                    weight: 0,
                    reverse: false,
                    fall: 1,
                    rise: 1,
                    user: None,
                    init_fail: false,
                    disabled: None,
                    pos: n.key.pos.clone(),
                };
                for c in n.block.iter().flatten() {
                    match c.key.text.as_str() {
                        "script" => s.script = string(c).unwrap_or_default(),
                        "interval" => {
                            s.interval = ranged(c, 0.01, 86400.0, "seconds", diags).unwrap_or(1.0)
                        }
                        "timeout" => {
                            s.timeout = ranged(c, 0.01, 86400.0, "seconds", diags).unwrap_or(0.0)
                        }
                        "weight" => {
                            s.weight =
                                ranged(c, -253.0, 253.0, "a weight", diags).unwrap_or(0.0) as i32;
                            s.reverse = c.arg(1) == Some("reverse");
                        }
                        "fall" => s.fall = num(c, "a count", diags).unwrap_or(1).max(1),
                        "rise" => s.rise = num(c, "a count", diags).unwrap_or(1).max(1),
                        "user" => s.user = string(c),
                        "init_fail" => s.init_fail = true,
                        _ => {}
                    }
                }
                if s.script.is_empty() {
                    diags.push(error(
                        &n.key.pos,
                        format!("vrrp_script {name} has no 'script'"),
                    ));
                }
                cfg.scripts.push(s);
            }
            "vrrp_instance" => {
                if let Some(i) = instance(
                    n,
                    version,
                    (mcast, mcast6),
                    (garp_delay, garp_repeat, garp_refresh),
                    diags,
                ) {
                    if cfg.instances.iter().any(|o| o.name == i.name) {
                        diags.push(error(
                            &n.key.pos,
                            format!("vrrp_instance {} is declared twice", i.name),
                        ));
                    }
                    cfg.instances.push(i);
                }
            }
            "vrrp_sync_group" => {
                let mut g = SyncGroup {
                    name: n.arg(0).unwrap_or("").to_string(),
                    members: Vec::new(),
                    notify: Notify::default(),
                    tracking_weight: false,
                    track_interfaces: Vec::new(),
                    track_scripts: Vec::new(),
                    track_files: Vec::new(),
                    track_processes: Vec::new(),
                    pos: n.key.pos.clone(),
                };
                for c in n.block.iter().flatten() {
                    if c.key.text == "group" {
                        g.members
                            .extend(c.block.iter().flatten().map(|m| m.key.text.clone()));
                    } else if matches!(
                        c.key.text.as_str(),
                        "sync_group_tracking_weight" | "global_tracking"
                    ) {
                        g.tracking_weight = true;
                    } else if c.key.text == "track_interface" {
                        g.track_interfaces.extend(track_interfaces(c));
                    } else if c.key.text == "track_script" {
                        g.track_scripts.extend(track_scripts(c));
                    } else if c.key.text == "track_file" {
                        g.track_files.extend(track_refs(c));
                    } else if c.key.text == "track_process" {
                        g.track_processes.extend(track_refs(c));
                    } else if !notify_field(c, &mut g.notify)
                        && c.args.is_empty()
                        && c.block.is_none()
                        && schema::lookup(Ctx::SyncGroup, &c.key.text).is_none()
                    {
                        g.members.push(c.key.text.clone());
                    }
                }
                cfg.sync_groups.push(g);
            }
            "static_ipaddress" | "static_address" => {
                for c in n.block.iter().flatten() {
                    if let Some(v) = parse_vip(c, diags) {
                        if v.dev.is_none() {
                            diags.push(error(
                                &c.key.pos,
                                format!("static address {}/{} needs 'dev IFACE'", v.addr, v.prefix),
                            ));
                        }
                        cfg.static_addresses.push(v);
                    }
                }
            }
            "static_routes" => cfg.static_routes.extend(
                n.block
                    .iter()
                    .flatten()
                    .filter_map(|c| route::parse_route(c, diags)),
            ),
            "static_rules" => cfg.static_rules.extend(
                n.block
                    .iter()
                    .flatten()
                    .filter_map(|c| route::parse_rule(c, diags)),
            ),
            "virtual_server" => {
                cfg.virtual_servers.push(n.clone());
                for vs in lvs::virtual_servers(n, &groups, diags) {
                    if cfg.lvs.iter().any(|o| o.key == vs.key) {
                        diags.push(error(
                            &n.key.pos,
                            format!("virtual_server {} is defined twice", vs.key.id()),
                        ));
                    } else {
                        cfg.lvs.push(vs);
                    }
                }
            }
            "real_server_group" => cfg.virtual_servers.push(n.clone()),
            _ => {}
        }
    }
    sync_group_tracking(&mut cfg, diags);
    ipvs::resolve(&mut cfg, diags);
    resolve_file_checks(&mut cfg, diags);
    vet_scripts(&mut cfg, nodes, diags);
    // references
    for i in &cfg.instances {
        let owner = format!("vrrp_instance {}", i.name);
        let at = |section: &str, name: &str| {
            track::reference_pos(nodes, &owner, section, name).unwrap_or_else(|| i.pos.clone())
        };
        for t in &i.track_processes {
            if !cfg.track_processes.iter().any(|f| f.name == t.name) {
                diags.push(error(
                    &at("track_process", &t.name),
                    format!("vrrp_instance {}: track_process '{}' is not defined by any vrrp_track_process block", i.name, t.name),
                ));
            }
        }
        for t in &i.track_files {
            if !cfg.track_files.iter().any(|f| f.name == t.name) {
                diags.push(error(
                    &at("track_file", &t.name),
                    format!(
                        "vrrp_instance {}: track_file '{}' is not defined by any track_file block",
                        i.name, t.name
                    ),
                ));
            }
        }
        for t in &i.track_scripts {
            if !cfg.scripts.iter().any(|s| s.name == t.name) {
                diags.push(error(
                    &at("track_script", &t.name),
                    format!(
                        "vrrp_instance {}: track_script '{}' is not defined by any vrrp_script",
                        i.name, t.name
                    ),
                ));
            }
        }
    }
    for g in &cfg.sync_groups {
        for m in &g.members {
            if !cfg.instances.iter().any(|i| &i.name == m) {
                diags.push(error(
                    &nodes
                        .iter()
                        .find(|n| n.arg(0) == Some(&g.name))
                        .map(|n| n.key.pos.clone())
                        .unwrap_or(Pos {
                            file: "".into(),
                            line: 0,
                            col: 0,
                        }),
                    format!("vrrp_sync_group {}: no vrrp_instance named {m}", g.name),
                ));
            }
        }
    }
    cfg
}

fn instance(
    n: &Node,
    version: u8,
    mcast: (Ipv4Addr, Ipv6Addr),
    garp: (f64, u32, f64),
    diags: &mut Vec<Diag>,
) -> Option<Instance> {
    let name = match n.arg(0) {
        Some(x) => x.to_string(),
        None => {
            diags.push(error(&n.key.pos, "vrrp_instance needs a name"));
            return None;
        }
    };
    // no block: reported by check_keywords ('{' missing)
    n.block.as_ref()?;
    let mut i = Instance {
        name,
        initial_master: false,
        interface: String::new(),
        vrid: 0,
        priority: 100,
        advert_cs: 100,
        version,
        auth: Auth::None,
        vips: Vec::new(),
        vips_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        track_interfaces: Vec::new(),
        track_scripts: Vec::new(),
        track_files: Vec::new(),
        track_processes: Vec::new(),
        nopreempt: false,
        preempt_delay: 0.0,
        notify: Notify::default(),
        unicast_src: None,
        unicast_peers: Vec::new(),
        mcast_src: None,
        mcast_group: mcast.0,
        mcast_group6: mcast.1,
        ipv6: false,
        garp_master_delay: garp.0,
        garp_master_repeat: garp.1,
        garp_master_refresh: garp.2,
        use_vmac: None,
        vmac_xmit_base: false,
        accept: true,
        dont_track_primary: false,
        pos: n.key.pos.clone(),
    };
    let mut advert: Option<(f64, Pos)> = None;
    let mut saw_vrid = false;
    let mut native_ipv6 = false;
    let ip = |c: &Node, diags: &mut Vec<Diag>| -> Option<IpAddr> {
        match c.arg(0).and_then(|a| a.parse().ok()) {
            Some(a) => Some(a),
            None => {
                diags.push(error(
                    &c.key.pos,
                    format!("{} needs an IPv4 or IPv6 address", c.key.text),
                ));
                None
            }
        }
    };
    for c in n.block.iter().flatten() {
        match c.key.text.as_str() {
            "state" => match c.arg(0) {
                Some("MASTER") => i.initial_master = true,
                Some("BACKUP") => {}
                other => diags.push(error(
                    &c.key.pos,
                    format!(
                        "state must be MASTER or BACKUP, not {}",
                        other.unwrap_or("nothing")
                    ),
                )),
            },
            "interface" => {
                i.interface = c.arg(0).unwrap_or("").to_string();
                if !interface_exists(&i.interface) {
                    diags.push(warning(
                        &c.args
                            .first()
                            .map(|w| w.pos.clone())
                            .unwrap_or(c.key.pos.clone()),
                        format!("interface {} does not exist on this host", i.interface),
                    ));
                }
            }
            "virtual_router_id" => {
                saw_vrid = true;
                i.vrid = ranged(c, 1.0, 255.0, "a router id", diags).unwrap_or(1.0) as u8;
            }
            "priority" => {
                i.priority = ranged(c, 1.0, 255.0, "a priority", diags).unwrap_or(100.0) as u8
            }
            "advert_int" => {
                if let Some(v) = num::<f64>(c, "seconds", diags) {
                    advert = Some((v, c.args[0].pos.clone()));
                }
            }
            "version" => {
                i.version = ranged(c, 2.0, 3.0, "2 or 3", diags).unwrap_or(version as f64) as u8
            }
            "authentication" => {
                let mut ty = None;
                let mut pass = None;
                for a in c.block.iter().flatten() {
                    match a.key.text.as_str() {
                        "auth_type" => ty = a.arg(0).map(str::to_string),
                        "auth_pass" => pass = string(a).map(|p| (p, a.key.pos.clone())),
                        _ => {}
                    }
                }
                match ty.as_deref() {
                    Some("PASS") => {
                        let (p, ppos) = pass.unwrap_or_else(|| (String::new(), a_pos(c)));
                        if p.len() > 8 {
                            diags.push(warning(&ppos, "auth_pass is longer than 8 characters: only the first 8 count"));
                        }
                        let mut b = [0u8; 8];
                        for (k, ch) in p.bytes().take(8).enumerate() {
                            b[k] = ch;
                        }
                        i.auth = Auth::Pass(b);
                    }
                    Some("AH") => {
                        let (p, _) = pass.unwrap_or_else(|| (String::new(), a_pos(c)));
                        let mut b = [0u8; 8];
                        for (k, ch) in p.bytes().take(8).enumerate() {
                            b[k] = ch;
                        }
                        i.auth = Auth::Ah(b);
                    }
                    Some(other) => diags.push(error(&c.key.pos, format!("unknown auth_type '{other}' (PASS or AH)"))),
                    None => diags.push(error(&c.key.pos, "authentication needs auth_type")),
                }
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                let list: Vec<Vip> = c
                    .block
                    .iter()
                    .flatten()
                    .filter_map(|v| parse_vip(v, diags))
                    .collect();
                if c.key.text == "virtual_ipaddress" {
                    i.vips.extend(list);
                } else {
                    i.vips_excluded.extend(list);
                }
            }
            "virtual_routes" => i.virtual_routes.extend(
                c.block
                    .iter()
                    .flatten()
                    .filter_map(|r| {
                        let route = route::parse_route(r, diags)?;
                        if route.dev.is_none() && !route.blackhole {
                            diags.push(warning(
                                &r.key.pos,
                                format!("virtual route {route} has no 'dev IFACE': keepalived cannot track it and says so; ha installs it on the interface the kernel routes its gateway through"),
                            ));
                        }
                        Some(route)
                    }),
            ),
            "virtual_rules" => i.virtual_rules.extend(
                c.block
                    .iter()
                    .flatten()
                    .filter_map(|r| route::parse_rule(r, diags)),
            ),
            "track_interface" => i.track_interfaces.extend(track_interfaces(c)),
            "track_script" => i.track_scripts.extend(track_scripts(c)),
            "track_file" => i.track_files.extend(track_refs(c)),
            "track_process" => i.track_processes.extend(track_refs(c)),
            "nopreempt" => i.nopreempt = true,
            "preempt" => i.nopreempt = false,
            "preempt_delay" => {
                i.preempt_delay = ranged(c, 0.0, 1000.0, "seconds", diags).unwrap_or(0.0)
            }
            "unicast_src_ip" => i.unicast_src = ip(c, diags),
            "mcast_src_ip" => i.mcast_src = ip(c, diags),
            "unicast_peer" => {
                for p in c.block.iter().flatten() {
                    match p.key.text.parse() {
                        Ok(a) => i.unicast_peers.push(a),
                        Err(_) => diags.push(error(
                            &p.key.pos,
                            format!("unicast_peer: '{}' is not an IPv4 or IPv6 address", p.key.text),
                        )),
                    }
                }
            }
            "garp_master_delay" => {
                i.garp_master_delay = ranged(c, 0.0, 3600.0, "seconds", diags).unwrap_or(5.0)
            }
            "garp_master_repeat" => i.garp_master_repeat = num(c, "a count", diags).unwrap_or(5),
            "garp_master_refresh" => {
                i.garp_master_refresh = ranged(c, 0.0, 86400.0, "seconds", diags).unwrap_or(0.0)
            }
            "use_vmac" => {
                let name = c
                    .arg(0)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("vrrp.{}", i.vrid));
                if name.len() > 15 {
                    diags.push(error(
                        &c.key.pos,
                        format!("use_vmac: interface name '{name}' is longer than 15 characters"),
                    ));
                }
                i.use_vmac = Some(name);
            }
            "vmac_xmit_base" => i.vmac_xmit_base = true,
            "accept" => i.accept = true,
            "dont_track_primary" => i.dont_track_primary = true,
            "no_accept" => i.accept = false,
            "native_ipv6" => native_ipv6 = true,
            _ => {
                notify_field(c, &mut i.notify);
            }
        }
    }
    family(&mut i, native_ipv6, diags);
    if !saw_vrid {
        diags.push(error(
            &n.key.pos,
            format!("vrrp_instance {} has no virtual_router_id", i.name),
        ));
    }
    if i.interface.is_empty() {
        diags.push(error(
            &n.key.pos,
            format!("vrrp_instance {} has no interface", i.name),
        ));
    }
    if let Some((secs, pos)) = advert {
        let (lo, hi) = if i.version == 3 {
            (0.01, 40.95)
        } else {
            (1.0, 255.0)
        };
        if !(lo..=hi).contains(&secs) {
            diags.push(error(
                &pos,
                format!(
                    "advert_int {secs} is out of range for VRRPv{} ({lo} to {hi} seconds)",
                    i.version
                ),
            ));
        } else if i.version == 2 && secs.fract() != 0.0 {
            diags.push(error(&pos, format!("advert_int {secs}: VRRPv2 counts whole seconds (use vrrp_version 3 for sub-second adverts)")));
        } else {
            i.advert_cs = (secs * 100.0).round() as u32;
        }
    }
    if i.nopreempt && i.initial_master {
        diags.push(warning(&i.pos, format!("vrrp_instance {}: nopreempt needs 'state BACKUP'; with MASTER it is ignored as keepalived does", i.name)));
        i.nopreempt = false;
    }
    // (an address that did not parse has its own error already)
    let written = n.block.iter().flatten().any(|c| {
        c.key.text == "virtual_ipaddress" && c.block.as_ref().is_some_and(|b| !b.is_empty())
    });
    if i.vips.is_empty() && !written {
        diags.push(warning(
            &i.pos,
            format!("vrrp_instance {} has no virtual_ipaddress", i.name),
        ));
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_warnings_are_at_their_own_lines() {
        let c = load_str("k.conf", "vrrp_instance VI_1 {\n interface lo\n virtual_router_id 5\n virtual_ipaddress {\n 10.0.0.1/24\n }\n notify_master \"/nonexistent/x.sh\"\n notify_backup \"/nonexistent/x.sh\"\n}\n", "").unwrap();
        let at: Vec<String> = c
            .warnings
            .iter()
            .map(|w| w.to_string())
            .filter(|w| w.contains("notify script"))
            .map(|w| w.split(": ").next().unwrap().to_string())
            .collect();
        assert_eq!(at, ["k.conf:7:2", "k.conf:8:2"]);
    }

    pub(super) fn errs(text: &str) -> Vec<String> {
        match load_str("k.conf", text, "") {
            Ok(_) => vec![],
            Err(e) => e
                .iter()
                .filter(|d| !d.warning)
                .map(|d| d.to_string())
                .collect(),
        }
    }

    #[test]
    fn seeds_and_samples() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
        let Ok(seeds) = std::fs::read_dir(base.join("seeds")) else {
            assert!(std::env::var("CI").is_err(), "corpus missing");
            return;
        };
        for e in seeds {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "conf") {
                if let Err(d) = load(&p, "") {
                    panic!(
                        "{}: {:?}",
                        p.display(),
                        d.iter().map(|x| x.to_string()).collect::<Vec<_>>()
                    );
                }
            }
        }
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&base.join("keepalived"), &mut files);
        for p in files {
            if let Err(d) = load(&p, "") {
                let unknown: Vec<String> = d
                    .iter()
                    .filter(|x| x.message.contains("unknown keyword"))
                    .map(|x| x.to_string())
                    .collect();
                assert!(unknown.is_empty(), "{}: {unknown:?}", p.display());
            }
        }
    }

    #[test]
    fn a_seed_in_detail() {
        let c = load_str(
            "k.conf",
            "global_defs {\n router_id node1\n vrrp_mcast_group4 224.0.100.19\n smtp_server 127.0.0.1\n notification_email {\n  root@localhost\n }\n}\n\
             vrrp_script chk { script \"killall -0 nginx\"\n interval 1\n weight -5\n fall 3\n}\n\
             vrrp_instance VI_1 {\n state MASTER\n interface lo\n virtual_router_id 14\n priority 100\n advert_int 1\n\
             authentication {\n auth_type PASS\n auth_pass 571f97b2xyz\n }\n virtual_ipaddress {\n 10.1.0.91/16 dev lo label lo:0\n }\n\
             track_script {\n chk\n }\n notify_master \"/etc/keepalived/notify.sh master\"\n}\n",
            "",
        )
        .unwrap();
        let i = &c.instances[0];
        assert_eq!(
            (i.vrid, i.priority, i.advert_cs, i.version),
            (14, 100, 100, 2)
        );
        assert_eq!(i.mcast_group, Ipv4Addr::new(224, 0, 100, 19));
        assert_eq!(i.auth, Auth::Pass(*b"571f97b2"));
        assert_eq!(
            i.vips[0],
            Vip {
                addr: Ipv4Addr::new(10, 1, 0, 91).into(),
                prefix: 16,
                nodad: false,
                brd: None,
                dev: Some("lo".into()),
                scope: None,
                label: Some("lo:0".into())
            }
        );
        assert_eq!(
            i.notify.master.as_deref(),
            Some("/etc/keepalived/notify.sh master")
        );
        assert_eq!(c.scripts[0].weight, -5);
        assert_eq!(c.scripts[0].fall, 3);
        assert_eq!(c.global.emails, vec!["root@localhost"]);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.message.contains("only the first 8")));
    }

    #[test]
    fn errors_with_positions_and_hints() {
        let e = errs("vrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_idd 51\n  priority 100\n}\n");
        assert!(e.iter().any(|m| m.starts_with("k.conf:4:3: unknown keyword 'virtual_router_idd' (did you mean 'virtual_router_id'?)")), "{e:?}");
        let e = errs("vrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  priority 300\n}\n");
        assert!(
            e.iter()
                .any(|m| m.starts_with("k.conf:5:12: priority 300 is out of range")),
            "{e:?}"
        );
        let e = errs("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 256\n}\n");
        assert!(
            e.iter()
                .any(|m| m.contains("virtual_router_id 256 is out of range")),
            "{e:?}"
        );
        let e = errs(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n advert_int 1.5\n}\n",
        );
        assert!(
            e.iter().any(|m| m.contains("VRRPv2 counts whole seconds")),
            "{e:?}"
        );
        let e = errs("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_script {\n nope\n }\n}\n");
        assert!(
            e.iter().any(|m| m.starts_with("k.conf:5:2: ")
                && m.contains("track_script 'nope' is not defined")),
            "{e:?}"
        );
        for (vip, want) in [
            (
                "10.99.0.300/24",
                "k.conf:4:2: '10.99.0.300/24' is not an IP address",
            ),
            (
                "10.0.0.1/33",
                "k.conf:4:2: '10.0.0.1/33': the prefix length must be 0 to 32",
            ),
        ] {
            let e = errs(&format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_ipaddress {{\n {vip}\n }}\n virtual_router_id 5\n}}\n"));
            assert!(e.iter().any(|m| m.starts_with(want)), "{e:?}");
            // its own error, and no 'has no virtual_ipaddress' besides
            assert!(
                !e.iter().any(|m| m.contains("has no virtual_ipaddress")),
                "{e:?}"
            );
        }
        let e = errs("vrrp_instance VI_1\n interface eth0\n virtual_router_id 5\n}\n");
        assert!(
            e.iter().any(|m| m
                == "k.conf:1:1: 'vrrp_instance VI_1' opens no block: a '{' is missing after it"),
            "{e:?}"
        );
        assert!(!e.iter().any(|m| m.contains("has no")), "{e:?}");
        let e = errs("global_defs {\n vrrp_verson 3\n}\n");
        assert!(
            e.iter().any(|m| m.contains("did you mean 'vrrp_version'")),
            "{e:?}"
        );
    }

    #[test]
    fn sync_group_tracking_weights_and_group_track_items() {
        let text = |extra: &str| {
            format!(
                "vrrp_script chk {{\n  script /bin/true\n  weight -20\n}}\n\
                 vrrp_sync_group G {{\n  group {{\n    VI_1\n  }}\n  track_interface {{\n    eth7\n  }}\n{extra}}}\n\
                 vrrp_instance VI_1 {{\n  interface lo\n  virtual_router_id 1\n  priority 100\n  track_script {{\n    chk\n  }}\n  track_interface {{\n    eth8 weight 10\n  }}\n}}\n"
            )
        };
        // without sync_group_tracking_weight every weight is 0 (a failure is a FAULT), said once
        let c = load_str("g.conf", &text(""), "").unwrap();
        let i = &c.instances[0];
        assert_eq!(
            i.track_interfaces,
            vec![("eth8".into(), 0), ("eth7".into(), 0)]
        );
        assert_eq!(i.track_scripts[0].weight, Some(0));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.message.contains("tracking weights are ignored")));
        // with it the weights count; the group's own interface is still a FAULT item
        let c = load_str("g.conf", &text("  sync_group_tracking_weight\n"), "").unwrap();
        let i = &c.instances[0];
        assert_eq!(
            i.track_interfaces,
            vec![("eth8".into(), 10), ("eth7".into(), 0)]
        );
        assert_eq!(i.track_scripts[0].weight, None);
    }

    #[test]
    fn v3_centiseconds_and_unicast() {
        let c = load_str(
            "k.conf",
            "global_defs {\n vrrp_version 3\n}\nvrrp_instance V {\n interface lo\n virtual_router_id 9\n advert_int 0.1\n unicast_src_ip 10.0.0.1\n unicast_peer {\n 10.0.0.2\n }\n virtual_ipaddress {\n 10.0.0.100/24\n }\n}\n",
            "",
        )
        .unwrap();
        let i = &c.instances[0];
        assert_eq!((i.version, i.advert_cs), (3, 10));
        assert_eq!(i.unicast_peers, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    }
}
