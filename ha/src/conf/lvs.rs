//! `virtual_server` blocks as typed values: what the LVS part programs and checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::syntax::{error, warning, Diag, Node};
use super::{num, string};

/// How a virtual service is addressed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VsKey {
    /// VIP (IPv4 or IPv6), port, protocol (`TCP`, `UDP`, `SCTP`).
    Addr(IpAddr, u16, String),
    /// A firewall mark and whether the service is IPv6 (`ip_family inet6`, or its real
    /// servers'): IPVS keeps an inet and an inet6 service of one mark apart.
    Fwmark(u32, bool),
}

impl VsKey {
    /// `10.0.0.1:80` (TCP), `10.0.0.1:53/udp`, `[2001:db8::10]:80`, `fwmark-5`: how the
    /// control API names it.
    pub fn id(&self) -> String {
        match self {
            VsKey::Addr(a, p, proto) if proto == "TCP" => SocketAddr::new(*a, *p).to_string(),
            VsKey::Addr(a, p, proto) => {
                format!("{}/{}", SocketAddr::new(*a, *p), proto.to_ascii_lowercase())
            }
            VsKey::Fwmark(m, false) => format!("fwmark-{m}"),
            VsKey::Fwmark(m, true) => format!("fwmark6-{m}"),
        }
    }

    /// Whether the service forwards IPv6: its VIP's family, or a fwmark service's own.
    pub fn is_ipv6(&self) -> bool {
        match self {
            VsKey::Addr(a, _, _) => a.is_ipv6(),
            VsKey::Fwmark(_, v6) => *v6,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Url {
    pub path: String,
    /// Accepted statuses as inclusive ranges (`200-299 301`); empty: any 2xx.
    pub status_code: Vec<(u16, u16)>,
    pub digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    Http {
        ssl: bool,
        urls: Vec<Url>,
        virtualhost: Option<String>,
    },
    Tcp,
    /// PING_CHECK: an ICMP echo request answered within connect_timeout.
    Ping,
    /// DNS_CHECK: a query (`type`, default SOA; `name`, default `.`) answered with the same
    /// id and RCODE 0.
    Dns {
        qtype: u16,
        name: String,
    },
    /// UDP_CHECK: `payload` sent; down on an ICMP port unreachable, or, with
    /// `require_reply [HEX]`, without a reply (starting with HEX) in time.
    Udp {
        payload: Vec<u8>,
        require_reply: Option<Vec<u8>>,
    },
    Smtp {
        helo: String,
    },
    Misc {
        path: String,
        timeout: Option<f64>,
        dynamic: bool,
        /// `user USER [GROUP]`: run as this user instead of the default script user.
        user: Option<String>,
    },
    /// keepalived's FILE_CHECK: `track_file NAME [weight W [reverse]]`, the file and its
    /// weight from the `track_file NAME` block (filled in when the whole file is read).
    File {
        track: String,
        path: String,
        weight: i32,
        reverse: bool,
        /// `weight` given on the FILE_CHECK line (overrides the block's).
        own_weight: Option<i32>,
        pos: super::syntax::Pos,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checker {
    pub kind: CheckKind,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub connect_timeout: f64,
    pub retry: u32,
    pub delay_before_retry: f64,
    pub delay_loop: Option<f64>,
    /// `warmup N`: the first check waits a random time up to N seconds (default: none).
    pub warmup: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub inhibit_on_failure: bool,
    pub notify_up: Option<String>,
    pub notify_down: Option<String>,
    pub alpha: bool,
    pub checkers: Vec<Checker>,
    /// IPVS `uthreshold` / `lthreshold`.
    pub thresholds: super::ipvs::Thresholds,
    /// Its own `lvs_method` (IPVS), overriding the virtual server's.
    pub lvs_method: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    pub key: VsKey,
    pub delay_loop: f64,
    pub scheduler: String,
    pub method: String,
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<Ipv4Addr>,
    pub sorry_server: Option<(IpAddr, u16)>,
    pub sorry_server_inhibit: bool,
    pub alpha: bool,
    pub omega: bool,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<String>,
    pub quorum_down: Option<String>,
    pub ha_suspend: bool,
    pub inhibit_on_failure: bool,
    pub virtualhost: Option<String>,
    pub real_servers: Vec<RealServer>,
    /// IPVS service flags (`ops`, scheduler flags) and `persistence_engine`.
    pub ipvs: super::ipvs::VsExtras,
}

pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// An IPv4 or IPv6 address argument (keepalived takes either wherever it takes an address).
fn ip(n: &Node, i: usize, what: &str, diags: &mut Vec<Diag>) -> Option<IpAddr> {
    let Some(w) = n.args.get(i) else {
        diags.push(error(&n.key.pos, format!("{} needs {what}", n.key.text)));
        return None;
    };
    match w.text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            diags.push(error(
                &w.pos,
                format!(
                    "{}: '{}' is not an IPv4 or IPv6 address",
                    n.key.text, w.text
                ),
            ));
            None
        }
    }
}

fn port(n: &Node, i: usize, diags: &mut Vec<Diag>) -> Option<u16> {
    let w = n.args.get(i)?;
    match w.text.parse() {
        Ok(p) => Some(p),
        Err(_) => {
            diags.push(error(
                &w.pos,
                format!("{}: '{}' is not a port (0-65535)", n.key.text, w.text),
            ));
            None
        }
    }
}

/// A checker timer as keepalived takes it: a plain decimal number of seconds between
/// 0.000001 and 4294.967295 (microseconds in 32 bits).
fn timer(n: &Node, diags: &mut Vec<Diag>) -> Option<f64> {
    let v: f64 = num(n, "a number of seconds (plain decimal)", diags)?;
    if !(0.000001..=4294.967295).contains(&v) {
        diags.push(error(
            &n.args[0].pos,
            format!(
                "{} {v} is out of range (0.000001 to 4294.967295 seconds)",
                n.key.text
            ),
        ));
        return None;
    }
    Some(v)
}

/// The DNS_CHECK types keepalived knows.
const DNS_TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

/// `payload` / `require_reply` data: hex digits (an optional `0x`), an even number of them.
fn hex(n: &Node, diags: &mut Vec<Diag>) -> Vec<u8> {
    let text: String = n.args.iter().map(|w| w.text.as_str()).collect();
    let t = text.trim_start_matches("0x").trim_start_matches("0X");
    let bytes: Option<Vec<u8>> = (t.len() % 2 == 0)
        .then(|| {
            (0..t.len())
                .step_by(2)
                .map(|k| t.get(k..k + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect()
        })
        .flatten();
    bytes.unwrap_or_else(|| {
        diags.push(error(
            &n.key.pos,
            format!(
                "{}: '{text}' is not hex data (an even number of hex digits)",
                n.key.text
            ),
        ));
        Vec::new()
    })
}

/// `status_code 200-299 301 400-403`: statuses and inclusive ranges, each 100-599.
fn status_codes(n: &Node, diags: &mut Vec<Diag>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    if n.args.is_empty() {
        diags.push(error(
            &n.key.pos,
            "status_code needs a status (200) or a range (200-299)",
        ));
    }
    for w in &n.args {
        let (lo, hi) = w.text.split_once('-').unwrap_or((&w.text, &w.text));
        let ok = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        match (ok(lo), ok(hi)) {
            (Some(a), Some(b)) if a <= b => out.push((a, b)),
            _ => diags.push(error(
                &w.pos,
                format!(
                    "status_code: '{}' is not an HTTP status (100-599) or a range like 200-299",
                    w.text
                ),
            )),
        }
    }
    out
}

fn flag(n: &Node) -> bool {
    !matches!(n.arg(0), Some("false" | "no" | "off" | "0"))
}

/// Checker settings a virtual server or real server gives its checkers (keepalived 2.2:
/// `connect_timeout`, `retry`, `delay_before_retry`, and a real server's `delay_loop`); a
/// checker's own line wins.
#[derive(Clone, Copy, Debug)]
struct CheckDefaults {
    connect_timeout: f64,
    retry: u32,
    delay_before_retry: f64,
    delay_loop: Option<f64>,
    warmup: Option<f64>,
}

impl Default for CheckDefaults {
    fn default() -> Self {
        CheckDefaults {
            connect_timeout: 5.0,
            retry: 1,
            delay_before_retry: 1.0,
            delay_loop: None,
            warmup: None,
        }
    }
}

impl CheckDefaults {
    /// Reads one line if it is a default; whether it was.
    fn read(&mut self, s: &Node, diags: &mut Vec<Diag>) -> bool {
        match s.key.text.as_str() {
            "connect_timeout" => self.connect_timeout = timer(s, diags).unwrap_or(5.0),
            "retry" => self.retry = num(s, "a count", diags).unwrap_or(1),
            "delay_before_retry" => self.delay_before_retry = timer(s, diags).unwrap_or(1.0),
            "warmup" => self.warmup = timer(s, diags),
            _ => return false,
        }
        true
    }
}

fn checker(n: &Node, rs_port: u16, d: &CheckDefaults, diags: &mut Vec<Diag>) -> Option<Checker> {
    let kind_name = n.key.text.as_str();
    let body = n.block.as_deref().unwrap_or(&[]);
    let mut c = Checker {
        kind: CheckKind::Tcp,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        connect_timeout: d.connect_timeout,
        retry: d.retry,
        delay_before_retry: d.delay_before_retry,
        delay_loop: d.delay_loop,
        warmup: d.warmup,
    };
    let mut urls = Vec::new();
    let mut vhost = None;
    let mut helo = "localhost".to_string();
    let mut misc_path = None;
    let mut misc_timeout = None;
    let mut misc_dynamic = false;
    let mut misc_user = None;
    let mut file_track: Option<(String, Option<i32>, bool)> = None;
    let mut payload = Vec::new();
    let mut dns_type = 6;
    let mut dns_name = ".".to_string();
    let mut require_reply = None;
    for s in body {
        match s.key.text.as_str() {
            "connect_ip" => c.connect_ip = ip(s, 0, "an address", diags),
            "connect_port" => c.connect_port = port(s, 0, diags),
            "bindto" => c.bindto = ip(s, 0, "an address", diags),
            "bind_port" => c.bind_port = port(s, 0, diags),
            "connect_timeout" => c.connect_timeout = timer(s, diags).unwrap_or(5.0),
            "retry" | "nb_get_retry" => {
                if s.key.text == "nb_get_retry" {
                    diags.push(warning(
                        &s.key.pos,
                        "nb_get_retry is deprecated: use retry (keepalived warns too)",
                    ));
                }
                c.retry = num(s, "a count", diags).unwrap_or(1)
            }
            "delay_before_retry" => c.delay_before_retry = timer(s, diags).unwrap_or(1.0),
            "warmup" => c.warmup = timer(s, diags),
            "delay_loop" => c.delay_loop = timer(s, diags),
            "url" => {
                let mut u = Url {
                    path: "/".into(),
                    status_code: Vec::new(),
                    digest: None,
                };
                for f in s.block.as_deref().unwrap_or(&[]) {
                    match f.key.text.as_str() {
                        "path" => u.path = string(f).unwrap_or_else(|| "/".into()),
                        "status_code" => u.status_code = status_codes(f, diags),
                        "digest" => {
                            let d = f.arg(0).unwrap_or("").to_ascii_lowercase();
                            if d.len() != 32 || !d.chars().all(|c| c.is_ascii_hexdigit()) {
                                diags.push(error(
                                    &f.key.pos,
                                    "digest must be 32 hex digits (the MD5 `ha genhash` prints)",
                                ));
                            }
                            u.digest = Some(d);
                        }
                        _ => {}
                    }
                }
                urls.push(u);
            }
            "virtualhost" => vhost = string(s),
            "helo_name" => helo = string(s).unwrap_or(helo),
            "misc_path" => misc_path = string(s),
            "misc_timeout" => misc_timeout = timer(s, diags),
            "misc_dynamic" => misc_dynamic = flag(s),
            "user" => misc_user = string(s),
            "payload" => payload = hex(s, diags),
            "type" if kind_name == "DNS_CHECK" => {
                let t = s.arg(0).unwrap_or("").to_ascii_uppercase();
                match DNS_TYPES.iter().find(|(n, _)| *n == t) {
                    Some((_, v)) => dns_type = *v,
                    None => diags.push(warning(
                        &s.key.pos,
                        format!(
                            "DNS_CHECK type '{t}' is unknown: SOA is used (as keepalived does)"
                        ),
                    )),
                }
            }
            "name" if kind_name == "DNS_CHECK" => dns_name = string(s).unwrap_or(dns_name),
            "require_reply" => require_reply = Some(hex(s, diags)),
            "track_file" => {
                let w = match s.arg(1) {
                    Some("weight") => s.args.get(2).and_then(|w| w.text.parse().ok()),
                    _ => None,
                };
                file_track = s
                    .arg(0)
                    .map(|t| (t.to_string(), w, s.arg(3) == Some("reverse")));
            }
            _ => {}
        }
    }
    let _ = rs_port;
    c.kind = match kind_name {
        "HTTP_GET" | "SSL_GET" => {
            if urls.is_empty() {
                urls.push(Url {
                    path: "/".into(),
                    status_code: Vec::new(),
                    digest: None,
                });
            }
            CheckKind::Http {
                ssl: kind_name == "SSL_GET",
                urls,
                virtualhost: vhost,
            }
        }
        "TCP_CHECK" => CheckKind::Tcp,
        "PING_CHECK" => CheckKind::Ping,
        "DNS_CHECK" => CheckKind::Dns {
            qtype: dns_type,
            name: dns_name,
        },
        "UDP_CHECK" => CheckKind::Udp {
            payload,
            require_reply,
        },
        "SMTP_CHECK" => CheckKind::Smtp { helo },
        "MISC_CHECK" => {
            let Some(path) = misc_path else {
                diags.push(error(&n.key.pos, "MISC_CHECK needs misc_path"));
                return None;
            };
            CheckKind::Misc {
                path,
                timeout: misc_timeout,
                dynamic: misc_dynamic,
                user: misc_user,
            }
        }
        "FILE_CHECK" => {
            let Some((track, own_weight, reverse)) = file_track else {
                diags.push(error(
                    &n.key.pos,
                    "FILE_CHECK needs 'track_file NAME' (a track_file NAME { file PATH } block)",
                ));
                return None;
            };
            CheckKind::File {
                track,
                path: String::new(),
                weight: 0,
                reverse,
                own_weight,
                pos: n.key.pos.clone(),
            }
        }
        other => {
            diags.push(warning(
                &n.key.pos,
                format!("{other} is not implemented by ha; this real server is not checked by it"),
            ));
            return None;
        }
    };
    Some(c)
}

fn real_server(
    n: &Node,
    vs: &VirtualServer,
    defaults: &CheckDefaults,
    diags: &mut Vec<Diag>,
) -> Option<RealServer> {
    let mut d = *defaults;
    for s in n.block.as_deref().unwrap_or(&[]) {
        if !d.read(s, diags) && s.key.text == "delay_loop" {
            d.delay_loop = timer(s, diags);
        }
    }
    let addr = ip(n, 0, "ADDRESS PORT", diags)?;
    let port = match n.args.get(1) {
        Some(_) => port(n, 1, diags)?,
        None => match &vs.key {
            VsKey::Fwmark(..) => 0,
            VsKey::Addr(_, p, _) => *p,
        },
    };
    let mut rs = RealServer {
        addr,
        port,
        weight: 1,
        inhibit_on_failure: vs.inhibit_on_failure,
        notify_up: None,
        notify_down: None,
        alpha: vs.alpha,
        checkers: Vec::new(),
        thresholds: super::ipvs::thresholds(n.block.as_deref().unwrap_or(&[]), diags),
        lvs_method: super::ipvs::rs_method(n.block.as_deref().unwrap_or(&[]), diags),
    };
    for s in n.block.as_deref().unwrap_or(&[]) {
        match s.key.text.as_str() {
            "weight" => rs.weight = num(s, "a weight", diags).unwrap_or(1),
            "inhibit_on_failure" => rs.inhibit_on_failure = flag(s),
            "notify_up" => rs.notify_up = string(s),
            "notify_down" => rs.notify_down = string(s),
            "alpha" => rs.alpha = flag(s),
            "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "SMTP_CHECK" | "MISC_CHECK" | "FILE_CHECK"
            | "UDP_CHECK" | "PING_CHECK" | "DNS_CHECK" | "BFD_CHECK" => {
                if let Some(c) = checker(s, port, &d, diags) {
                    // SMTP_CHECK's `host { ... }` blocks: one check per host, each with the
                    // block's own connection settings (keepalived 2.2 does the same)
                    let hosts: Vec<&Node> = s
                        .block
                        .iter()
                        .flatten()
                        .filter(|h| s.key.text == "SMTP_CHECK" && h.key.text == "host")
                        .collect();
                    for h in &hosts {
                        let mut one = c.clone();
                        for f in h.block.iter().flatten() {
                            match f.key.text.as_str() {
                                "connect_ip" => one.connect_ip = ip(f, 0, "an address", diags),
                                "connect_port" => one.connect_port = self::port(f, 0, diags),
                                "bindto" => one.bindto = ip(f, 0, "an address", diags),
                                "bind_port" => one.bind_port = self::port(f, 0, diags),
                                "connect_timeout" => {
                                    one.connect_timeout =
                                        timer(f, diags).unwrap_or(c.connect_timeout)
                                }
                                _ => {}
                            }
                        }
                        rs.checkers.push(one);
                    }
                    if hosts.is_empty() {
                        rs.checkers.push(c);
                    }
                }
            }
            _ => {}
        }
    }
    if rs.checkers.is_empty() {
        if let Some(w) = n.block.iter().flatten().find(|s| s.key.text == "warmup") {
            diags.push(warning(
                &w.key.pos,
                "warmup has no effect: this real server has no checker",
            ));
        }
    }
    Some(rs)
}

/// A `virtual_server_group` member: an address (range) and port, or a fwmark.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupEntry {
    Addr(IpAddr, u16),
    Fwmark(u32),
}

/// Every `virtual_server_group NAME { VIP PORT | A.B.C.D-E PORT | X:Y::Z-W PORT | fwmark N }`
/// (an IPv6 range varies the last 16-bit group, its end in hex, as keepalived reads it).
pub fn groups(
    nodes: &[Node],
    diags: &mut Vec<Diag>,
) -> std::collections::HashMap<String, Vec<GroupEntry>> {
    let mut out = std::collections::HashMap::new();
    for n in nodes
        .iter()
        .filter(|n| n.key.text == "virtual_server_group")
    {
        let Some(name) = n.arg(0) else {
            diags.push(error(&n.key.pos, "virtual_server_group needs a name"));
            continue;
        };
        let mut entries = Vec::new();
        for e in n.block.as_deref().unwrap_or(&[]) {
            if e.key.text == "fwmark" {
                match e.arg(0).map(str::parse::<u32>) {
                    Some(Ok(m)) => entries.push(GroupEntry::Fwmark(m)),
                    _ => diags.push(error(&e.key.pos, "fwmark needs a number")),
                }
                continue;
            }
            // "10.0.0.1 80" or the range "10.0.0.1-10 80" (IPv6: "ae00::2-9 80", hex)
            let (first, last) = match e.key.text.split_once('-') {
                Some((a, b)) => (a.to_string(), Some(b)),
                None => (e.key.text.clone(), None),
            };
            let (Ok(a), Some(Ok(port))) =
                (first.parse::<IpAddr>(), e.arg(0).map(str::parse::<u16>))
            else {
                diags.push(error(
                    &e.key.pos,
                    format!(
                        "virtual_server_group {name}: '{}' is not ADDRESS[-LAST] PORT or fwmark N",
                        e.key.text
                    ),
                ));
                continue;
            };
            match a {
                IpAddr::V4(a) => {
                    let o = a.octets();
                    let last = last.and_then(|l| l.parse::<u8>().ok());
                    for last in o[3]..=last.unwrap_or(o[3]).max(o[3]) {
                        entries.push(GroupEntry::Addr(
                            Ipv4Addr::new(o[0], o[1], o[2], last).into(),
                            port,
                        ));
                    }
                }
                IpAddr::V6(a) => {
                    let mut g = a.segments();
                    let last = last.and_then(|l| u16::from_str_radix(l, 16).ok());
                    for last in g[7]..=last.unwrap_or(g[7]).max(g[7]) {
                        g[7] = last;
                        entries.push(GroupEntry::Addr(Ipv6Addr::from(g).into(), port));
                    }
                }
            }
        }
        out.insert(name.to_string(), entries);
    }
    out
}

/// One `virtual_server` block: one virtual server, or one per member of its group.
pub fn virtual_servers(
    n: &Node,
    groups: &std::collections::HashMap<String, Vec<GroupEntry>>,
    diags: &mut Vec<Diag>,
) -> Vec<VirtualServer> {
    if n.arg(0) != Some("group") {
        return virtual_server(n, diags).into_iter().collect();
    }
    let Some(name) = n.arg(1) else {
        diags.push(error(
            &n.key.pos,
            "virtual_server group needs the group's name",
        ));
        return Vec::new();
    };
    let Some(entries) = groups.get(name) else {
        diags.push(error(
            &n.key.pos,
            format!("virtual_server group {name}: no virtual_server_group {name} is defined"),
        ));
        return Vec::new();
    };
    // the block's settings once, then one virtual server per member
    let preset = VsKey::Addr(Ipv4Addr::UNSPECIFIED.into(), 0, "TCP".into());
    let Some(template) = virtual_server_with(n, Some(preset), diags) else {
        return Vec::new();
    };
    let proto = match &template.key {
        VsKey::Addr(_, _, p) => p.clone(),
        VsKey::Fwmark(..) => "TCP".to_string(),
    };
    let has_fwmark = entries.iter().any(|e| matches!(e, GroupEntry::Fwmark(_)));
    let v6 = has_fwmark && fwmark_v6(n, &template, diags);
    entries
        .iter()
        .map(|e| {
            let mut vs = template.clone();
            vs.key = match e {
                GroupEntry::Addr(a, p) => VsKey::Addr(*a, *p, proto.clone()),
                GroupEntry::Fwmark(m) => VsKey::Fwmark(*m, v6),
            };
            vs
        })
        .collect()
}

/// A fwmark service's family, as keepalived decides it: `ip_family inet|inet6`; else that
/// of its real and sorry servers that are not tunnelled (which must agree), or of the
/// tunnelled ones when they all agree, or a persistence_granularity that is a prefix length;
/// else IPv4.
fn fwmark_v6(n: &Node, vs: &VirtualServer, diags: &mut Vec<Diag>) -> bool {
    let body = n.block.as_deref().unwrap_or(&[]);
    let mut family = None;
    for s in body.iter().filter(|s| s.key.text == "ip_family") {
        family = match s.arg(0) {
            Some("inet") => Some(false),
            Some("inet6") => Some(true),
            other => {
                diags.push(error(
                    &s.key.pos,
                    format!("ip_family '{}' is not inet or inet6", other.unwrap_or("")),
                ));
                family
            }
        };
    }
    let tun = |m: Option<&String>| m.unwrap_or(&vs.method) == "TUN";
    let direct: Vec<bool> = vs
        .real_servers
        .iter()
        .filter(|r| !tun(r.lvs_method.as_ref()))
        .map(|r| r.addr.is_ipv6())
        .chain(
            vs.sorry_server
                .filter(|_| !tun(vs.ipvs.sorry_server_lvs_method.as_ref()))
                .map(|(a, _)| a.is_ipv6()),
        )
        .collect();
    let all = |v: &[bool]| v.first().filter(|f| v.iter().all(|x| x == *f)).copied();
    let servers = if direct.is_empty() {
        let tunnelled: Vec<bool> = vs.real_servers.iter().map(|r| r.addr.is_ipv6()).collect();
        all(&tunnelled)
    } else {
        if all(&direct).is_none() {
            diags.push(error(
                &n.key.pos,
                format!("{}: its real servers are of both address families; only tunnelled (lb_kind TUN) ones may differ", vs.key.id()),
            ));
        }
        all(&direct)
    };
    if let (Some(f), Some(s)) = (family, servers) {
        if f != s && !direct.is_empty() {
            diags.push(error(
                &n.key.pos,
                format!(
                    "{}: ip_family {} but its real servers are the other family",
                    vs.key.id(),
                    if f { "inet6" } else { "inet" }
                ),
            ));
        }
    }
    let prefix = body.iter().any(|s| {
        s.key.text == "persistence_granularity"
            && s.arg(0)
                .is_some_and(|a| !a.contains('.') && !a.contains(':'))
    });
    family.or(servers).unwrap_or(prefix)
}

/// Builds one `virtual_server` block.
pub fn virtual_server(n: &Node, diags: &mut Vec<Diag>) -> Option<VirtualServer> {
    virtual_server_with(n, None, diags)
}

fn virtual_server_with(
    n: &Node,
    key: Option<VsKey>,
    diags: &mut Vec<Diag>,
) -> Option<VirtualServer> {
    let key = match key.as_ref().map_or(n.arg(0), |_| Some("preset")) {
        Some("preset") => key.clone().unwrap_or(VsKey::Fwmark(0, false)),
        Some("fwmark") => VsKey::Fwmark(
            match n.args.get(1).map(|w| w.text.parse()) {
                Some(Ok(m)) => m,
                _ => {
                    diags.push(error(&n.key.pos, "virtual_server fwmark needs a number"));
                    return None;
                }
            },
            false, // by ip_family or the real servers, once they are read
        ),
        Some("group") => {
            diags.push(error(
                &n.key.pos,
                "virtual_server group: build it with virtual_servers()",
            ));
            return None;
        }
        _ => {
            let a = ip(n, 0, "ADDRESS PORT", diags)?;
            if n.args.len() < 2 {
                diags.push(error(&n.key.pos, "virtual_server needs ADDRESS PORT"));
                return None;
            }
            // a bad port has its own error
            let p = port(n, 1, diags)?;
            VsKey::Addr(a, p, "TCP".into())
        }
    };
    let mut vs = VirtualServer {
        key,
        delay_loop: 60.0,
        scheduler: "wlc".into(),
        method: "NAT".into(),
        persistence_timeout: None,
        persistence_granularity: None,
        sorry_server: None,
        sorry_server_inhibit: false,
        alpha: false,
        omega: false,
        quorum: 1,
        hysteresis: 0,
        quorum_up: None,
        quorum_down: None,
        ha_suspend: false,
        inhibit_on_failure: false,
        virtualhost: None,
        real_servers: Vec::new(),
        ipvs: Default::default(),
    };
    let body = n.block.as_deref().unwrap_or(&[]);
    let mut defaults = CheckDefaults::default();
    // settings first: real servers inherit some of them
    for s in body {
        match s.key.text.as_str() {
            "delay_loop" => vs.delay_loop = timer(s, diags).unwrap_or(60.0),
            "lb_algo" | "lvs_sched" => {
                let v = s.arg(0).unwrap_or("").to_ascii_lowercase();
                if !SCHEDULERS.contains(&v.as_str()) {
                    diags.push(error(
                        &s.key.pos,
                        format!(
                            "{}: '{v}' is not one of {}",
                            s.key.text,
                            SCHEDULERS.join(", ")
                        ),
                    ));
                }
                vs.scheduler = v;
            }
            "lb_kind" | "lvs_method" => {
                let v = s.arg(0).unwrap_or("").to_ascii_uppercase();
                if !["NAT", "DR", "TUN"].contains(&v.as_str()) {
                    diags.push(error(
                        &s.key.pos,
                        format!("{}: '{v}' is not NAT, DR or TUN", s.key.text),
                    ));
                }
                vs.method = v;
            }
            "protocol" => {
                let v = s.arg(0).unwrap_or("").to_ascii_uppercase();
                if !["TCP", "UDP", "SCTP"].contains(&v.as_str()) {
                    diags.push(error(
                        &s.key.pos,
                        format!("protocol '{v}' is not TCP, UDP or SCTP"),
                    ));
                }
                match &mut vs.key {
                    VsKey::Addr(_, _, proto) => *proto = v,
                    VsKey::Fwmark(m, _) => diags.push(warning(
                        &s.key.pos,
                        format!("virtual_server fwmark {m}: a protocol is ignored for a fwmark service (keepalived warns too)"),
                    )),
                }
            }
            "persistence_timeout" => {
                vs.persistence_timeout = num(s, "seconds", diags).or(Some(360))
            }
            "persistence_granularity" => {
                vs.persistence_granularity = match (&vs.key, s.arg(0)) {
                    // IPv6: a prefix length, which ha does not apply (one client address
                    // per persistence entry); a fwmark service's family is then IPv6
                    (VsKey::Addr(IpAddr::V6(_), _, _) | VsKey::Fwmark(..), Some(len))
                        if len.parse::<u8>().is_ok_and(|l| (1..=128).contains(&l)) =>
                    {
                        diags.push(warning(&s.key.pos, format!("persistence_granularity {len}: ha keeps IPv6 persistence per client address (/128)")));
                        None
                    }
                    _ => match ip(s, 0, "a netmask", diags) {
                        Some(IpAddr::V4(m)) => Some(m),
                        Some(IpAddr::V6(_)) => {
                            diags.push(error(&s.key.pos, "persistence_granularity needs an IPv4 netmask (255.255.255.0), or for an IPv6 virtual server a prefix length"));
                            None
                        }
                        None => None,
                    },
                }
            }
            "sorry_server" => {
                if let Some(a) = ip(s, 0, "ADDRESS PORT", diags) {
                    let p = port(s, 1, diags).unwrap_or(match &vs.key {
                        VsKey::Addr(_, p, _) => *p,
                        VsKey::Fwmark(..) => 0,
                    });
                    vs.sorry_server = Some((a, p));
                }
            }
            "sorry_server_inhibit" => vs.sorry_server_inhibit = flag(s),
            "alpha" => vs.alpha = flag(s),
            "omega" => vs.omega = flag(s),
            "quorum" => vs.quorum = num(s, "a weight", diags).unwrap_or(1),
            "hysteresis" => vs.hysteresis = num(s, "a weight", diags).unwrap_or(0),
            "quorum_up" => vs.quorum_up = string(s),
            "quorum_down" => vs.quorum_down = string(s),
            "ha_suspend" => vs.ha_suspend = flag(s),
            "inhibit_on_failure" => vs.inhibit_on_failure = flag(s),
            "virtualhost" => vs.virtualhost = string(s),
            _ => {
                defaults.read(s, diags);
            }
        }
    }
    vs.ipvs = super::ipvs::vs_extras(
        body,
        &vs.key,
        &vs.scheduler,
        vs.persistence_timeout.is_some(),
        diags,
    );
    for s in body {
        if s.key.text == "real_server" {
            if let Some(rs) = real_server(s, &vs, &defaults, diags) {
                if vs
                    .real_servers
                    .iter()
                    .any(|o| o.addr == rs.addr && o.port == rs.port)
                {
                    diags.push(error(
                        &s.key.pos,
                        format!(
                            "real_server {} is listed twice",
                            SocketAddr::new(rs.addr, rs.port)
                        ),
                    ));
                    continue;
                }
                // NAT and DR forward within one family; only a tunnel may cross (IPVS)
                if let VsKey::Addr(a, _, _) = &vs.key {
                    if !a.is_unspecified() && a.is_ipv6() != rs.addr.is_ipv6() && vs.method != "TUN"
                    {
                        diags.push(error(
                            &s.key.pos,
                            format!(
                                "real_server {}: virtual server {} is another address family; {} needs real servers of its own family (only lb_kind TUN may mix)",
                                rs.addr, a, vs.method
                            ),
                        ));
                        continue;
                    }
                }
                vs.real_servers.push(rs);
            }
        }
    }
    if let VsKey::Fwmark(m, _) = vs.key {
        vs.key = VsKey::Fwmark(m, fwmark_v6(n, &vs, diags));
    }
    // a checker's virtualhost defaults to the virtual server's
    if let Some(vh) = vs.virtualhost.clone() {
        for rs in &mut vs.real_servers {
            for c in &mut rs.checkers {
                if let CheckKind::Http { virtualhost, .. } = &mut c.kind {
                    virtualhost.get_or_insert(vh.clone());
                }
            }
        }
    }
    Some(vs)
}

#[cfg(test)]
mod tests {
    use crate::conf::load_str;

    use super::*;

    #[test]
    fn smtp_check_host_blocks_are_checks_of_their_own() {
        let text = "virtual_server 10.0.0.1 25 {\n real_server 10.0.0.2 25 {\n  SMTP_CHECK {\n   connect_timeout 3\n   host {\n    connect_ip 10.0.0.7\n    connect_port 2525\n   }\n   host {\n    connect_ip 10.0.0.8\n   }\n  }\n }\n}\n";
        let c = crate::conf::load_str("s.conf", text, "").unwrap();
        let cs = &c.lvs[0].real_servers[0].checkers;
        assert_eq!(cs.len(), 2);
        assert_eq!(
            (cs[0].connect_ip, cs[0].connect_port),
            (Some("10.0.0.7".parse().unwrap()), Some(2525))
        );
        assert_eq!(
            (cs[1].connect_ip, cs[1].connect_port),
            (Some("10.0.0.8".parse().unwrap()), None)
        );
        assert_eq!(cs[1].connect_timeout, 3.0);
    }

    #[test]
    fn checkers_inherit_virtual_and_real_server_defaults() {
        let text = "virtual_server 10.0.0.1 80 {\n delay_loop 5\n connect_timeout 2\n retry 4\n real_server 10.0.0.2 80 {\n  delay_before_retry 0.5\n  delay_loop 3\n  TCP_CHECK {\n  }\n  TCP_CHECK {\n   connect_timeout 1\n   retry 2\n  }\n }\n}\n";
        let c = crate::conf::load_str("v.conf", text, "").unwrap();
        let rs = &c.lvs[0].real_servers[0];
        let (a, b) = (&rs.checkers[0], &rs.checkers[1]);
        assert_eq!(
            (
                a.connect_timeout,
                a.retry,
                a.delay_before_retry,
                a.delay_loop
            ),
            (2.0, 4, 0.5, Some(3.0))
        );
        assert_eq!(
            (b.connect_timeout, b.retry, b.delay_before_retry),
            (1.0, 2, 0.5)
        );
    }

    #[test]
    fn ipv6_virtual_servers_groups_and_checkers() {
        let text = "virtual_server_group g6 {\n  ae00::2-b 80\n}\nvirtual_server 2001:db8::10 80 {\n  sorry_server 2001:db8:1::99 80\n  persistence_timeout 50\n  persistence_granularity 64\n  real_server 2001:db8:1::11 80 {\n    TCP_CHECK {\n      connect_ip 2001:db8:2::11\n      bindto 2001:db8:1::1\n    }\n  }\n}\nvirtual_server group g6 {\n  real_server ae00::100 80 {\n  }\n}\n";
        let c = load_str("v6.conf", text, "").unwrap();
        assert_eq!(c.lvs[0].key.id(), "[2001:db8::10]:80");
        assert_eq!(c.lvs[0].persistence_granularity, None);
        let rs = &c.lvs[0].real_servers[0];
        assert_eq!(rs.addr, "2001:db8:1::11".parse::<IpAddr>().unwrap());
        assert_eq!(
            rs.checkers[0].connect_ip,
            Some("2001:db8:2::11".parse().unwrap())
        );
        assert_eq!(
            c.lvs[0].sorry_server,
            Some(("2001:db8:1::99".parse().unwrap(), 80))
        );
        // ae00::2-b: ten members, the range's end in hex as keepalived reads it
        let ids: Vec<String> = c.lvs[1..].iter().map(|v| v.key.id()).collect();
        assert_eq!(ids.len(), 10, "{ids:?}");
        assert_eq!(
            (ids[0].as_str(), ids[9].as_str()),
            ("[ae00::2]:80", "[ae00::b]:80")
        );
        // NAT does not cross families
        let e = load_str(
            "m.conf",
            "virtual_server 2001:db8::10 80 {\n  real_server 10.0.0.1 80 {\n  }\n}\n",
            "",
        )
        .unwrap_err();
        assert!(
            e.iter()
                .any(|d| d.message.contains("another address family")),
            "{e:?}"
        );
    }

    #[test]
    fn a_fwmark_service_takes_its_family_from_ip_family_or_its_real_servers() {
        let key = |body: &str| {
            load_str(
                "f.conf",
                &format!("virtual_server fwmark 9 {{\n{body}}}\n"),
                "x",
            )
            .map(|c| c.lvs[0].key.clone())
        };
        let rs6 = "  real_server 2001:db8:1::11 80 {\n  }\n";
        let rs4 = "  real_server 10.0.1.1 80 {\n  }\n";
        assert_eq!(key(rs6).unwrap(), VsKey::Fwmark(9, true));
        assert_eq!(VsKey::Fwmark(9, true).id(), "fwmark6-9");
        assert_eq!(key(rs4).unwrap(), VsKey::Fwmark(9, false));
        assert_eq!(key("  ip_family inet6\n").unwrap(), VsKey::Fwmark(9, true));
        assert_eq!(key("").unwrap(), VsKey::Fwmark(9, false));
        // tunnelled real servers all IPv6, or an IPv6 persistence prefix
        let tun6 = format!("  lb_kind TUN\n{rs6}");
        assert_eq!(key(&tun6).unwrap(), VsKey::Fwmark(9, true));
        let pfx = "  persistence_timeout 60\n  persistence_granularity 64\n";
        assert_eq!(key(pfx).unwrap(), VsKey::Fwmark(9, true));
        // NAT real servers of both families, or against ip_family: errors at the block
        let e = key(&format!("{rs4}{rs6}")).unwrap_err();
        assert!(
            e.iter()
                .any(|d| d.message.contains("both address families") && d.pos.line == 1),
            "{e:?}"
        );
        let e = key(&format!("  ip_family inet\n{rs6}")).unwrap_err();
        assert!(
            e.iter().any(|d| d.message.contains("ip_family inet but")),
            "{e:?}"
        );
        let e = key("  ip_family ipx\n").unwrap_err();
        assert!(
            e.iter().any(|d| d.message.contains("not inet or inet6")),
            "{e:?}"
        );
    }

    #[test]
    fn groups_expand_into_one_service_per_member() {
        let cfg = load_str(
            "t.conf",
            "virtual_server_group web {\n  10.0.0.1-3 80\n  10.0.0.9 8080\n  fwmark 7\n}\nvirtual_server group web {\n  lb_algo wrr\n  protocol UDP\n  persistence_timeout 60\n  persistence_granularity 255.255.255.0\n  real_server 10.0.1.1 80 {\n    weight 2\n  }\n}\n",
            "x",
        )
        .unwrap();
        let ids: Vec<String> = cfg.lvs.iter().map(|v| v.key.id()).collect();
        assert_eq!(
            ids,
            [
                "10.0.0.1:80/udp",
                "10.0.0.2:80/udp",
                "10.0.0.3:80/udp",
                "10.0.0.9:8080/udp",
                "fwmark-7"
            ]
        );
        assert!(cfg
            .lvs
            .iter()
            .all(|v| v.scheduler == "wrr" && v.real_servers[0].weight == 2));
        assert_eq!(
            cfg.lvs[0].persistence_granularity,
            Some(Ipv4Addr::new(255, 255, 255, 0))
        );
        let e = load_str("t.conf", "virtual_server group nope {\n}\n", "x").unwrap_err();
        assert!(
            e.iter()
                .any(|d| d.message.contains("no virtual_server_group nope")),
            "{e:?}"
        );
    }
}
