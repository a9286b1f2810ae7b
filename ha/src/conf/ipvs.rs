//! keepalived's IPVS extras: the connection sync daemon (`lvs_sync_daemon`), connection
//! timeouts (`lvs_timeouts`), flushing at start and stop (`lvs_flush`, `lvs_flush_onstop`),
//! and per-service / per-destination settings (`ops`, the scheduler flags,
//! `persistence_engine`, `uthreshold`/`lthreshold`). All are IPVS settings: the nftables
//! backend has nothing they could mean ([`nft_notes`] says so by name).

use std::net::Ipv4Addr;

use super::lvs::VsKey;
use super::syntax::{error, warning, Diag, Node, Pos};
use super::Config;

/// keepalived's bound for an IPVS timeout (`LVS_MAX_TIMEOUT`): 31 days in seconds.
pub const MAX_TIMEOUT: u32 = 86400 * 31;
/// The kernel's `IP_VS_IFNAME_MAXLEN` (with its NUL) and `IP_VS_PENAME_MAXLEN`.
const IFNAME_MAX: usize = 16;
const PENAME_MAX: usize = 16;

/// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncDaemon {
    /// The interface the sync messages go out of (master) or are read from (backup).
    pub interface: String,
    /// The VRRP instance whose state the daemon follows: MASTER runs the master daemon,
    /// anything else the backup daemon.
    pub instance: String,
    /// The sync id; keepalived's default is the instance's virtual_router_id.
    pub syncid: Option<u8>,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<Ipv4Addr>,
    pub pos: Option<Pos>,
}

/// `lvs_timeouts tcp N tcpfin N udp N` (seconds; 0 or absent leaves the kernel's value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// `lvs_flush_onstop`: what goes at shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushOnStop {
    /// Our own virtual services only (keepalived's default, and `lvs_flush_onstop VS`).
    #[default]
    Ours,
    /// The whole IPVS table, foreign services included (`lvs_flush_onstop`).
    Full,
}

/// The global IPVS settings, with where each was written (for [`nft_notes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpvsGlobal {
    pub lvs_sync_daemon: Option<SyncDaemon>,
    pub lvs_timeouts: Option<Timeouts>,
    /// `lvs_flush`: empty the whole IPVS table before programming ours.
    pub lvs_flush: bool,
    pub lvs_flush_onstop: FlushOnStop,
    /// Every global IPVS keyword given: (position, keyword).
    pub used: Vec<(Pos, String)>,
}

/// Per virtual service: the IPVS service flags and persistence engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VsExtras {
    /// `IP_VS_SVC_F_*` bits beyond persistence: ONEPACKET (`ops`), SCHED1..3 (`flag-N`,
    /// `sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`), HASHED.
    pub flags: u32,
    /// `ops` (also in `flags`).
    pub ops: bool,
    /// `persistence_engine NAME` (the kernel has `sip`).
    pub persistence_engine: Option<String>,
    /// `sorry_server_lvs_method`: the sorry server's own forwarding method.
    pub sorry_server_lvs_method: Option<String>,
}

pub const F_HASHED: u32 = 0x2;
pub const F_ONEPACKET: u32 = 0x4;
pub const F_SCHED1: u32 = 0x8;
pub const F_SCHED2: u32 = 0x10;
pub const F_SCHED3: u32 = 0x20;

/// Per real server: IPVS connection thresholds (0 is no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub uthreshold: u32,
    pub lthreshold: u32,
}

fn uint(n: &Node, i: usize, lo: u32, hi: u32, what: &str, diags: &mut Vec<Diag>) -> Option<u32> {
    let Some(w) = n.args.get(i) else {
        diags.push(error(
            &n.key.pos,
            format!("{}: {what} needs a value", n.key.text),
        ));
        return None;
    };
    match w.text.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) && w.text.bytes().all(|b| b.is_ascii_digit()) => Some(v),
        _ => {
            diags.push(error(
                &w.pos,
                format!(
                    "{} {what} '{}' is not a whole number from {lo} to {hi}",
                    n.key.text, w.text
                ),
            ));
            None
        }
    }
}

fn sync_daemon(n: &Node, diags: &mut Vec<Diag>) -> Option<SyncDaemon> {
    let (Some(ifname), Some(inst)) = (n.arg(0), n.arg(1)) else {
        diags.push(error(
            &n.key.pos,
            "lvs_sync_daemon needs an interface and a VRRP instance: lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]",
        ));
        return None;
    };
    if ifname.len() >= IFNAME_MAX {
        diags.push(error(
            &n.args[0].pos,
            format!("lvs_sync_daemon: interface name '{ifname}' is longer than 15 characters"),
        ));
        return None;
    }
    let mut s = SyncDaemon {
        interface: ifname.to_string(),
        instance: inst.to_string(),
        pos: Some(n.key.pos.clone()),
        ..Default::default()
    };
    let mut i = 2;
    // keepalived before "id" took the sync id as the third word; it still reads it, and says so
    if n.arg(2)
        .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()))
    {
        diags.push(warning(
            &n.args[2].pos,
            "lvs_sync_daemon: write 'id' before the sync id (the old form still works)",
        ));
        s.syncid = uint(n, 2, 0, 255, "sync id", diags).map(|v| v as u8);
        i = 3;
    }
    while let Some(opt) = n.arg(i) {
        match opt {
            "id" => s.syncid = uint(n, i + 1, 0, 255, "id", diags).map(|v| v as u8),
            "maxlen" => {
                s.maxlen = uint(n, i + 1, 0, 65535 - 20 - 8, "maxlen", diags).map(|v| v as u16)
            }
            "port" => s.port = uint(n, i + 1, 0, 65535, "port", diags).map(|v| v as u16),
            "ttl" => s.ttl = uint(n, i + 1, 1, 255, "ttl", diags).map(|v| v as u8),
            "group" => match n.arg(i + 1).map(str::parse::<Ipv4Addr>) {
                Some(Ok(a)) if a.is_multicast() => s.group = Some(a),
                _ => diags.push(error(
                    &n.args.get(i + 1).unwrap_or(&n.args[i]).pos,
                    "lvs_sync_daemon group needs an IPv4 multicast address (IPv6 sync groups are not supported by ha yet)",
                )),
            },
            other => {
                diags.push(error(
                    &n.args[i].pos,
                    format!("lvs_sync_daemon: unknown option '{other}' (id, maxlen, port, ttl, group)"),
                ));
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Some(s)
}

fn timeouts(n: &Node, diags: &mut Vec<Diag>) -> Option<Timeouts> {
    if n.args.len() < 2 {
        diags.push(error(
            &n.key.pos,
            "lvs_timeouts needs at least one of: tcp N, tcpfin N, udp N",
        ));
        return None;
    }
    let mut t = Timeouts::default();
    let mut i = 0;
    while let Some(opt) = n.arg(i) {
        let slot = match opt {
            "tcp" => &mut t.tcp,
            "tcpfin" => &mut t.tcpfin,
            "udp" => &mut t.udp,
            other => {
                diags.push(error(
                    &n.args[i].pos,
                    format!("lvs_timeouts: unknown option '{other}' (tcp, tcpfin, udp)"),
                ));
                i += 1;
                continue;
            }
        };
        if let Some(v) = uint(n, i + 1, 0, MAX_TIMEOUT, opt, diags) {
            *slot = v;
        }
        i += 2;
    }
    Some(t)
}

/// The IPVS keywords of `global_defs` (and the deprecated `lvs_sync_daemon_interface` of a
/// `vrrp_instance`, which keepalived still honours when no global one is given).
pub fn global(nodes: &[Node], diags: &mut Vec<Diag>) -> IpvsGlobal {
    let mut g = IpvsGlobal::default();
    for n in nodes.iter().filter(|n| n.key.text == "global_defs") {
        for s in n.block.iter().flatten() {
            let key = s.key.text.as_str();
            match key {
                "lvs_sync_daemon" => {
                    if g.lvs_sync_daemon.is_some() {
                        diags.push(error(&s.key.pos, "lvs_sync_daemon is given twice"));
                    } else {
                        g.lvs_sync_daemon = sync_daemon(s, diags);
                    }
                }
                "lvs_timeouts" => g.lvs_timeouts = timeouts(s, diags),
                "lvs_flush" => g.lvs_flush = true,
                "lvs_flush_onstop" => match s.arg(0) {
                    None => g.lvs_flush_onstop = FlushOnStop::Full,
                    Some("VS") => g.lvs_flush_onstop = FlushOnStop::Ours,
                    Some(other) => diags.push(error(
                        &s.args[0].pos,
                        format!("lvs_flush_onstop: '{other}' is not VS (or nothing, for the whole table)"),
                    )),
                },
                _ => continue,
            }
            g.used.push((s.key.pos.clone(), key.to_string()));
        }
    }
    for n in nodes.iter().filter(|n| n.key.text == "vrrp_instance") {
        for s in n.block.iter().flatten() {
            if s.key.text != "lvs_sync_daemon_interface" {
                continue;
            }
            let inst = n.arg(0).unwrap_or_default();
            if g.lvs_sync_daemon.is_some() {
                diags.push(warning(&s.key.pos, format!("vrrp_instance {inst}: lvs_sync_daemon_interface is deprecated and a sync daemon is already configured: ignored")));
                continue;
            }
            let Some(ifname) = s.arg(0).filter(|i| i.len() < IFNAME_MAX) else {
                diags.push(error(
                    &s.key.pos,
                    "lvs_sync_daemon_interface needs an interface name (at most 15 characters)",
                ));
                continue;
            };
            diags.push(warning(&s.key.pos, format!("vrrp_instance {inst}: lvs_sync_daemon_interface is deprecated (keepalived -t fails on it); ha runs the sync daemon on {ifname} as keepalived does. Write 'lvs_sync_daemon {ifname} {inst}' in global_defs")));
            g.lvs_sync_daemon = Some(SyncDaemon {
                interface: ifname.to_string(),
                instance: inst.to_string(),
                pos: Some(s.key.pos.clone()),
                ..Default::default()
            });
            g.used.push((s.key.pos.clone(), s.key.text.clone()));
        }
    }
    g
}

/// The sync daemon's instance must exist; its virtual_router_id is the default sync id.
pub fn resolve(cfg: &mut Config, diags: &mut Vec<Diag>) {
    let Some(s) = cfg.global.ipvs.lvs_sync_daemon.as_mut() else {
        return;
    };
    match cfg.instances.iter().find(|i| i.name == s.instance) {
        Some(i) => {
            s.syncid.get_or_insert(i.vrid);
        }
        None => {
            if let Some(pos) = &s.pos {
                diags.push(error(
                    pos,
                    format!(
                        "lvs_sync_daemon: no vrrp_instance '{}' (the sync daemon follows that instance's state)",
                        s.instance
                    ),
                ));
            }
        }
    }
}

/// `ops`, the scheduler flags and `persistence_engine` of one `virtual_server` block.
pub fn vs_extras(
    body: &[Node],
    key: &VsKey,
    scheduler: &str,
    persistent: bool,
    diags: &mut Vec<Diag>,
) -> VsExtras {
    let mut x = VsExtras::default();
    for s in body {
        let key_text = s.key.text.as_str();
        let bit = match key_text {
            "lb_kind" | "lvs_method" if s.args.len() > 1 => {
                diags.push(warning(
                    &s.args[1].pos,
                    format!("{key_text}: tunnel options ('{}' ...) are not implemented by ha: the tunnel is IPIP", s.args[1].text),
                ));
                continue;
            }
            "ops" => {
                if matches!(key, VsKey::Addr(_, _, p) if p != "UDP") {
                    diags.push(warning(
                        &s.key.pos,
                        format!("virtual_server {}: one-packet scheduling (ops) needs UDP: ignored, as keepalived does", key.id()),
                    ));
                    continue;
                }
                x.ops = true;
                F_ONEPACKET
            }
            "hashed" => F_HASHED,
            "flag-1" => F_SCHED1,
            "flag-2" => F_SCHED2,
            "flag-3" => F_SCHED3,
            "sh-fallback" | "sh-port" | "mh-fallback" | "mh-port" => {
                let for_sched = &key_text[..2];
                if scheduler != for_sched {
                    diags.push(warning(
                        &s.key.pos,
                        format!("{key_text} only applies to the {for_sched} scheduler: ignored, as keepalived does"),
                    ));
                    continue;
                }
                if key_text.ends_with("fallback") {
                    F_SCHED1
                } else {
                    F_SCHED2
                }
            }
            "sorry_server_lvs_method" => {
                x.sorry_server_lvs_method = forwarding(s, diags);
                continue;
            }
            "persistence_engine" => {
                match s.arg(0) {
                    Some(pe) if pe.len() < PENAME_MAX => {
                        if pe != "sip" {
                            diags.push(warning(
                                &s.args[0].pos,
                                format!("persistence_engine '{pe}': the kernel's only engine is sip; IPVS will refuse this service"),
                            ));
                        }
                        if !persistent {
                            diags.push(warning(
                                &s.key.pos,
                                "persistence_engine has no effect without persistence_timeout",
                            ));
                        }
                        x.persistence_engine = Some(pe.to_string());
                    }
                    _ => diags.push(error(
                        &s.key.pos,
                        "persistence_engine needs an engine name of at most 15 characters (sip)",
                    )),
                }
                continue;
            }
            _ => continue,
        };
        x.flags |= bit;
    }
    x
}

/// A forwarding method: NAT, DR or TUN (keepalived spells them in capitals); tunnel options
/// after TUN are warned about (ha's tunnels are IPIP).
fn forwarding(s: &Node, diags: &mut Vec<Diag>) -> Option<String> {
    let m = s.arg(0).unwrap_or("").to_ascii_uppercase();
    if !["NAT", "DR", "TUN"].contains(&m.as_str()) {
        diags.push(error(
            &s.key.pos,
            format!("{}: '{m}' is not NAT, DR or TUN", s.key.text),
        ));
        return None;
    }
    if let Some(w) = s.args.get(1) {
        diags.push(warning(
            &w.pos,
            format!(
                "{}: tunnel options ('{}' ...) are not implemented by ha: the tunnel is IPIP",
                s.key.text, w.text
            ),
        ));
    }
    Some(m)
}

/// A real server's own `lvs_method` (keepalived 2.2: it overrides the virtual server's).
pub fn rs_method(body: &[Node], diags: &mut Vec<Diag>) -> Option<String> {
    body.iter()
        .filter(|s| s.key.text == "lvs_method")
        .fold(None, |_, s| forwarding(s, diags))
}

/// `uthreshold` and `lthreshold` of one `real_server` block.
pub fn thresholds(body: &[Node], diags: &mut Vec<Diag>) -> Thresholds {
    let mut t = Thresholds::default();
    let mut at = None;
    for s in body {
        match s.key.text.as_str() {
            "uthreshold" => t.uthreshold = uint(s, 0, 0, u32::MAX, "value", diags).unwrap_or(0),
            "lthreshold" => t.lthreshold = uint(s, 0, 0, u32::MAX, "value", diags).unwrap_or(0),
            _ => continue,
        }
        at = Some(s.key.pos.clone());
    }
    if let Some(pos) = at.filter(|_| t.lthreshold > t.uthreshold) {
        // keepalived passes this on and the kernel refuses the destination (ERANGE)
        diags.push(error(
            &pos,
            format!(
                "lthreshold {} is above uthreshold {}: IPVS refuses such a real server (set uthreshold, or lower lthreshold)",
                t.lthreshold, t.uthreshold
            ),
        ));
        t = Thresholds::default();
    }
    t
}

/// The IPVS-only settings in use, each named with its position: on the nftables backend
/// they mean nothing (nftables has no sync daemon, connection table timeouts of its own,
/// one-packet scheduling, persistence engines or connection thresholds).
pub fn nft_notes(cfg: &Config) -> Vec<Diag> {
    let note = |pos: &Pos, what: &str| {
        warning(
            pos,
            format!("{what} is an IPVS setting: it has no meaning on the nftables backend and is ignored there"),
        )
    };
    let mut out: Vec<Diag> = cfg
        .global
        .ipvs
        .used
        .iter()
        .map(|(p, k)| note(p, k))
        .collect();
    fn walk(nodes: &[Node], out: &mut Vec<Diag>, note: &dyn Fn(&Pos, &str) -> Diag) {
        for n in nodes {
            if matches!(
                n.key.text.as_str(),
                "ops"
                    | "hashed"
                    | "flag-1"
                    | "flag-2"
                    | "flag-3"
                    | "sh-fallback"
                    | "sh-port"
                    | "mh-fallback"
                    | "mh-port"
                    | "persistence_engine"
                    | "uthreshold"
                    | "lthreshold"
            ) {
                out.push(note(&n.key.pos, &n.key.text));
            }
            if n.key.text == "real_server" {
                walk(n.block.as_deref().unwrap_or(&[]), out, note);
            }
        }
    }
    for vs in &cfg.virtual_servers {
        walk(vs.block.as_deref().unwrap_or(&[]), &mut out, &note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<Diag>> {
        super::super::load_str("t.conf", text, "")
    }

    const INST: &str = "vrrp_instance VI_1 {\n interface lo\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";

    #[test]
    fn sync_daemon_takes_keepalived_options_and_the_instance_vrid() {
        let c = load(&format!("global_defs {{\n lvs_sync_daemon eth1 VI_1 maxlen 1400 port 8849 ttl 2 group 224.0.0.82\n}}\n{INST}")).unwrap();
        let s = c.global.ipvs.lvs_sync_daemon.unwrap();
        assert_eq!(
            (s.interface.as_str(), s.instance.as_str()),
            ("eth1", "VI_1")
        );
        assert_eq!(s.syncid, Some(51), "the default sync id is the vrid");
        assert_eq!(
            (s.maxlen, s.port, s.ttl, s.group),
            (
                Some(1400),
                Some(8849),
                Some(2),
                Some(Ipv4Addr::new(224, 0, 0, 82))
            )
        );
        let c = load(&format!(
            "global_defs {{\n lvs_sync_daemon eth1 VI_1 id 7\n}}\n{INST}"
        ))
        .unwrap();
        assert_eq!(c.global.ipvs.lvs_sync_daemon.unwrap().syncid, Some(7));
    }

    #[test]
    fn sync_daemon_errors_name_the_option() {
        for (line, says) in [
            (
                "lvs_sync_daemon eth1",
                "needs an interface and a VRRP instance",
            ),
            ("lvs_sync_daemon eth1 VI_9", "no vrrp_instance 'VI_9'"),
            ("lvs_sync_daemon eth1 VI_1 ttl 256", "ttl '256'"),
            ("lvs_sync_daemon eth1 VI_1 group 10.0.0.1", "multicast"),
            (
                "lvs_sync_daemon eth1 VI_1 speed 9",
                "unknown option 'speed'",
            ),
        ] {
            let e = load(&format!("global_defs {{\n {line}\n}}\n{INST}")).unwrap_err();
            assert!(
                e.iter().any(|d| !d.warning && d.message.contains(says)),
                "{line}: {e:?}"
            );
        }
    }

    #[test]
    fn deprecated_instance_form_still_runs_the_daemon_with_a_warning() {
        let c = load("vrrp_instance VI_1 {\n interface lo\n virtual_router_id 5\n lvs_sync_daemon_interface eth1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n").unwrap();
        let s = c.global.ipvs.lvs_sync_daemon.clone().unwrap();
        assert_eq!((s.interface.as_str(), s.syncid), ("eth1", Some(5)));
        assert!(c.warnings.iter().any(|w| w.message.contains("deprecated")));
    }

    #[test]
    fn timeouts_and_flushes() {
        let c = load("global_defs {\n lvs_timeouts tcp 7200 tcpfin 120 udp 300\n lvs_flush\n lvs_flush_onstop\n}\n").unwrap();
        let g = &c.global.ipvs;
        assert_eq!(
            g.lvs_timeouts,
            Some(Timeouts {
                tcp: 7200,
                tcpfin: 120,
                udp: 300
            })
        );
        assert!(g.lvs_flush);
        assert_eq!(g.lvs_flush_onstop, FlushOnStop::Full);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = load("global_defs {\n lvs_flush_onstop VS\n}\n").unwrap();
        assert_eq!(c.global.ipvs.lvs_flush_onstop, FlushOnStop::Ours);
        for (line, says) in [
            ("lvs_timeouts tcp 2678401", "0 to 2678400"),
            ("lvs_timeouts tcp", "needs at least one"),
            ("lvs_timeouts sctp 5", "unknown option 'sctp'"),
            ("lvs_flush_onstop NO", "'NO' is not VS"),
        ] {
            let e = load(&format!("global_defs {{\n {line}\n}}\n")).unwrap_err();
            assert!(e.iter().any(|d| d.message.contains(says)), "{line}: {e:?}");
        }
    }

    #[test]
    fn service_flags_engine_and_thresholds() {
        let c = load("virtual_server 10.0.0.1 5060 {\n lb_algo sh\n protocol UDP\n persistence_timeout 60\n ops\n sh-port\n persistence_engine sip\n real_server 10.0.1.1 5060 {\n  uthreshold 100\n  lthreshold 10\n }\n}\n").unwrap();
        let vs = &c.lvs[0];
        assert_eq!(vs.ipvs.flags, F_ONEPACKET | F_SCHED2);
        assert_eq!(vs.ipvs.persistence_engine.as_deref(), Some("sip"));
        assert_eq!(
            vs.real_servers[0].thresholds,
            Thresholds {
                uthreshold: 100,
                lthreshold: 10
            }
        );
        // ops needs UDP; sh-port needs sh: warned and left out, as keepalived does
        let c = load("virtual_server 10.0.0.1 80 {\n lb_algo rr\n ops\n sh-port\n real_server 10.0.1.1 80 {\n }\n}\n").unwrap();
        assert_eq!(c.lvs[0].ipvs.flags, 0);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        let e = load(
            "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  lthreshold 10\n }\n}\n",
        )
        .unwrap_err();
        assert!(
            e.iter().any(|d| d.message.contains("above uthreshold")),
            "{e:?}"
        );
    }

    #[test]
    fn own_forwarding_methods_of_real_and_sorry_servers() {
        let c = load("virtual_server 10.0.0.1 80 {\n lb_kind DR\n sorry_server 10.0.1.9 80\n sorry_server_lvs_method NAT\n real_server 10.0.1.1 80 {\n  lvs_method TUN\n }\n real_server 10.0.1.2 80 {\n }\n}\n").unwrap();
        let vs = &c.lvs[0];
        assert_eq!(vs.ipvs.sorry_server_lvs_method.as_deref(), Some("NAT"));
        assert_eq!(vs.real_servers[0].lvs_method.as_deref(), Some("TUN"));
        assert_eq!(vs.real_servers[1].lvs_method, None);
        let c = load("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  lvs_method TUN type gue port 6080\n }\n}\n").unwrap();
        assert!(c
            .warnings
            .iter()
            .any(|w| w.message.contains("tunnel options")));
        let e = load(
            "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  lvs_method FOO\n }\n}\n",
        )
        .unwrap_err();
        assert!(
            e.iter().any(|d| d.message.contains("not NAT, DR or TUN")),
            "{e:?}"
        );
    }

    #[test]
    fn nftables_notes_name_every_ipvs_setting() {
        let c = load("global_defs {\n lvs_flush\n lvs_timeouts udp 30\n}\nvirtual_server 10.0.0.1 53 {\n protocol UDP\n ops\n real_server 10.0.1.1 53 {\n  uthreshold 5\n }\n}\n").unwrap();
        let notes: Vec<String> = nft_notes(&c).into_iter().map(|d| d.to_string()).collect();
        for k in ["lvs_flush ", "lvs_timeouts ", "ops ", "uthreshold "] {
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains(k) && n.contains("nftables")),
                "{k}: {notes:?}"
            );
        }
        assert_eq!(notes.len(), 4);
    }
}
