//! Which keywords each keepalived.conf block accepts: implemented, deferred to the LVS part
//! (parsed and checked, acted on with ha part 2), or known but not implemented (a warning).
//! Anything else is an unknown keyword: an error with the nearest known keyword as a hint.

/// A block context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    Top,
    Global,
    VrrpScript,
    Instance,
    Auth,
    SyncGroup,
    VirtualServer,
    RealServer,
    HttpCheck,
    Url,
    TcpCheck,
    SmtpCheck,
    SmtpHost,
    MiscCheck,
    FileCheck,
    UdpCheck,
    DnsCheck,
    TrackFile,
    TrackProcess,
    OtherCheck,
    /// A block whose lines are items (addresses, names), not keywords.
    List,
}

/// What a keyword is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Acted on.
    Yes,
    /// Parsed and validated now; acted on by the load-balancer part.
    Lvs,
    /// Known keepalived keyword that ha does not implement: warned about, never silent.
    No,
    /// Not a keepalived 2.2 keyword any more (older releases had it): keepalived ignores
    /// it as unknown (and `keepalived -t` fails); ha warns by name and ignores it too.
    Removed,
}

pub struct Kw {
    pub name: &'static str,
    pub status: Status,
    pub block: Option<Ctx>,
}

const fn k(name: &'static str, status: Status, block: Option<Ctx>) -> Kw {
    Kw {
        name,
        status,
        block,
    }
}

use Ctx::*;
use Status::*;

const TOP: &[Kw] = &[
    k("global_defs", Yes, Some(Global)),
    k("vrrp_script", Yes, Some(VrrpScript)),
    k("vrrp_instance", Yes, Some(Instance)),
    k("vrrp_sync_group", Yes, Some(SyncGroup)),
    k("static_ipaddress", Yes, Some(List)),
    k("static_routes", Yes, Some(List)),
    k("static_route", Removed, Some(List)),
    k("static_address", Yes, Some(List)),
    k("static_rules", Yes, Some(List)),
    k("virtual_server", Lvs, Some(VirtualServer)),
    k("virtual_server_group", Lvs, Some(List)),
    k("real_server_group", Removed, Some(VirtualServer)),
    k("vrrp_track_file", Yes, Some(TrackFile)),
    k("track_file", Yes, Some(TrackFile)),
    k("vrrp_track_process", Yes, Some(TrackProcess)),
    k("track_process", Yes, Some(TrackProcess)),
    k("linkbeat_use_polling", No, None),
    k("net_namespace", No, None),
    k("instance", No, None),
    k("use_pid_dir", No, None),
    k("child_wait_time", No, None),
    k("garp_group", No, Some(OtherCheck)),
    k("bfd_instance", No, Some(OtherCheck)),
];

const GLOBAL: &[Kw] = &[
    k("router_id", Yes, None),
    k("notification_email", Yes, Some(List)),
    k("notification_email_from", Yes, None),
    k("smtp_server", Yes, None),
    k("smtp_connect_timeout", Yes, None),
    k("smtp_helo_name", Yes, None),
    k("vrrp_mcast_group4", Yes, None),
    k("vrrp_version", Yes, None),
    k("vrrp_garp_master_delay", Yes, None),
    k("vrrp_garp_master_repeat", Yes, None),
    k("vrrp_garp_master_refresh", Yes, None),
    k("vrrp_garp_master_refresh_repeat", No, None),
    k("vrrp_garp_interval", No, None),
    k("script_user", Yes, None),
    k("enable_script_security", Yes, None),
    k("vrrp_skip_check_adv_addr", No, None),
    k("vrrp_strict", No, None),
    k("vrrp_check_unicast_src", No, None),
    k("vrrp_mcast_group6", Yes, None),
    k("vrrp_gna_interval", No, None),
    k("vrrp_garp_lower_prio_delay", No, None),
    k("vrrp_garp_lower_prio_repeat", No, None),
    k("vrrp_lower_prio_no_advert", No, None),
    k("vrrp_higher_prio_send_advert", No, None),
    k("vrrp_iptables", No, None),
    k("vrrp_ipsets", No, None),
    k("vrrp_priority", No, None),
    k("vrrp_no_swap", No, None),
    k("vrrp_rt_priority", No, None),
    k("vrrp_cpu_affinity", No, None),
    k("vrrp_rlimit_rtime", No, None),
    k("vrrp_startup_delay", No, None),
    k("vrrp_netlink_cmd_rcv_bufs", No, None),
    k("vrrp_netlink_monitor_rcv_bufs", No, None),
    k("vrrp_min_garp", No, None),
    k("checker_priority", No, None),
    k("checker_no_swap", No, None),
    k("checker_rt_priority", No, None),
    k("bfd_priority", No, None),
    k("lvs_id", Removed, None),
    k("lvs_sync_daemon", Yes, None),
    k("lvs_timeouts", Lvs, None),
    k("lvs_flush", Lvs, None),
    k("lvs_flush_onstop", Lvs, None),
    k("enable_traps", No, None),
    k("enable_snmp_vrrp", No, None),
    k("enable_snmp_checker", No, None),
    k("enable_snmp_rfc", No, None),
    k("enable_snmp_keepalived", No, None),
    k("snmp_socket", No, None),
    k("enable_dbus", No, None),
    k("dynamic_interfaces", No, None),
    k("max_auto_priority", No, None),
    k("notify_fifo", No, None),
    k("notify_fifo_script", No, None),
    k("vrrp_notify_fifo", No, None),
    k("vrrp_notify_fifo_script", No, None),
    k("lvs_notify_fifo", No, None),
    k("lvs_notify_fifo_script", No, None),
    k("default_interface", No, None),
    k("process_names", No, None),
    k("process_name", No, None),
    k("vrrp_process_name", No, None),
    k("checker_process_name", No, None),
    k("local_name", No, None),
    k("no_email_faults", No, None),
    k("smtp_alert", Yes, None),
    k("smtp_alert_vrrp", Yes, None),
    k("smtp_alert_checker", No, None),
    k("vrrp_version_3_checksum_compat", No, None),
];

const SCRIPT: &[Kw] = &[
    k("script", Yes, None),
    k("interval", Yes, None),
    k("timeout", Yes, None),
    k("weight", Yes, None),
    k("fall", Yes, None),
    k("rise", Yes, None),
    k("user", Yes, None),
    k("init_fail", Yes, None),
];

const INSTANCE: &[Kw] = &[
    k("state", Yes, None),
    k("interface", Yes, None),
    k("virtual_router_id", Yes, None),
    k("priority", Yes, None),
    k("advert_int", Yes, None),
    k("authentication", Yes, Some(Auth)),
    k("virtual_ipaddress", Yes, Some(List)),
    k("virtual_ipaddress_excluded", Yes, Some(List)),
    k("track_interface", Yes, Some(List)),
    k("track_script", Yes, Some(List)),
    k("nopreempt", Yes, None),
    k("preempt", Yes, None),
    k("preempt_delay", Yes, None),
    k("notify_master", Yes, None),
    k("notify_backup", Yes, None),
    k("notify_fault", Yes, None),
    k("notify_stop", Yes, None),
    k("notify", Yes, None),
    k("smtp_alert", Yes, None),
    k("unicast_src_ip", Yes, None),
    k("unicast_peer", Yes, Some(List)),
    k("mcast_src_ip", Yes, None),
    k("version", Yes, None),
    k("garp_master_delay", Yes, None),
    k("garp_master_repeat", Yes, None),
    k("garp_master_refresh", Yes, None),
    k("garp_master_refresh_repeat", No, None),
    k("use_vmac", Yes, None),
    k("vmac_xmit_base", Yes, None),
    k("accept", Yes, None),
    k("no_accept", No, None),
    k("dont_track_primary", Yes, None),
    k("skip_check_adv_addr", No, None),
    k("check_unicast_src", No, None),
    k("virtual_routes", Yes, Some(List)),
    k("virtual_rules", Yes, Some(List)),
    k("track_file", Yes, Some(List)),
    k("track_process", Yes, Some(List)),
    k("track_bfd", No, Some(List)),
    k("lvs_sync_daemon_interface", Yes, None),
    k("native_ipv6", Yes, None),
    k("strict_mode", No, None),
    k("debug", No, None),
    k("garp_lower_prio_delay", No, None),
    k("garp_lower_prio_repeat", No, None),
    k("lower_prio_no_advert", No, None),
    k("higher_prio_send_advert", No, None),
    k("kernel_rx_buf_size", No, None),
    k("unicast_ttl", No, None),
    k("notify_master_rx_lower_pri", No, None),
    k("notify_deleted", No, None),
];

const AUTH: &[Kw] = &[k("auth_type", Yes, None), k("auth_pass", Yes, None)];

const SYNC: &[Kw] = &[
    k("group", Yes, Some(List)),
    k("notify_master", Yes, None),
    k("notify_backup", Yes, None),
    k("notify_fault", Yes, None),
    k("notify_stop", Yes, None),
    k("notify", Yes, None),
    k("smtp_alert", Yes, None),
    k("global_tracking", Yes, None),
    k("sync_group_tracking_weight", Yes, None),
    k("track_interface", Yes, Some(List)),
    k("track_script", Yes, Some(List)),
    k("track_file", Yes, Some(List)),
    k("track_process", Yes, Some(List)),
];

const VS: &[Kw] = &[
    k("delay_loop", Lvs, None),
    k("lb_algo", Lvs, None),
    k("lvs_sched", Lvs, None),
    k("lb_kind", Lvs, None),
    k("lvs_method", Lvs, None),
    k("persistence_timeout", Lvs, None),
    k("persistence_granularity", Lvs, None),
    k("persistence_engine", Lvs, None),
    k("protocol", Lvs, None),
    k("sorry_server", Lvs, None),
    k("sorry_server_inhibit", Lvs, None),
    k("sorry_server_lvs_method", Lvs, None),
    k("virtualhost", Lvs, None),
    k("alpha", Lvs, None),
    k("omega", Lvs, None),
    k("quorum", Lvs, None),
    k("hysteresis", Lvs, None),
    k("quorum_up", Lvs, None),
    k("quorum_down", Lvs, None),
    k("ha_suspend", Lvs, None),
    k("ops", Lvs, None),
    k("hashed", Lvs, None),
    k("flag-1", Lvs, None),
    k("flag-2", Lvs, None),
    k("flag-3", Lvs, None),
    k("sh-port", Lvs, None),
    k("sh-fallback", Lvs, None),
    k("mh-port", Lvs, None),
    k("mh-fallback", Lvs, None),
    k("nat_mask", Removed, None),
    k("retry", Lvs, None),
    k("delay_before_retry", Lvs, None),
    k("connect_timeout", Lvs, None),
    k("warmup", Lvs, None),
    k("inhibit_on_failure", Lvs, None),
    k("smtp_alert", Lvs, None),
    k("real_server", Lvs, Some(RealServer)),
    k("real_group", No, Some(RealServer)),
    k("lvs_id", Removed, None),
    k("ip_family", Lvs, None),
    k("one_packet_scheduling", No, None),
];

const RS: &[Kw] = &[
    k("weight", Lvs, None),
    k("inhibit_on_failure", Lvs, None),
    k("notify_up", Lvs, None),
    k("notify_down", Lvs, None),
    k("uthreshold", Lvs, None),
    k("lthreshold", Lvs, None),
    k("alpha", Lvs, None),
    k("omega", Lvs, None),
    k("retry", Lvs, None),
    k("delay_before_retry", Lvs, None),
    k("connect_timeout", Lvs, None),
    k("delay_loop", Lvs, None),
    k("virtualhost", Lvs, None),
    k("smtp_alert", Lvs, None),
    k("warmup", Lvs, None),
    k("lvs_method", Lvs, None),
    k("HTTP_GET", Lvs, Some(HttpCheck)),
    k("SSL_GET", Lvs, Some(HttpCheck)),
    k("TCP_CHECK", Lvs, Some(TcpCheck)),
    k("SMTP_CHECK", Lvs, Some(SmtpCheck)),
    k("MISC_CHECK", Lvs, Some(MiscCheck)),
    k("FILE_CHECK", Lvs, Some(FileCheck)),
    k("UDP_CHECK", Lvs, Some(UdpCheck)),
    k("PING_CHECK", Lvs, Some(TcpCheck)),
    k("DNS_CHECK", Lvs, Some(DnsCheck)),
    k("BFD_CHECK", No, Some(OtherCheck)),
    k("CI-LINUX", Removed, Some(OtherCheck)),
];

const COMMON_CHECK: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_port",
    "bind_if",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "fwmark",
    "delay_loop",
    "alpha",
    "omega",
];

const HTTP: &[Kw] = &[
    k("url", Lvs, Some(Url)),
    k("virtualhost", Lvs, None),
    k("http_protocol", No, None),
    k("enable_sni", No, None),
    k("tls_compliant", No, None),
    k("fast_recovery", No, None),
];

const URL: &[Kw] = &[
    k("path", Lvs, None),
    k("digest", Lvs, None),
    k("status_code", Lvs, None),
    k("virtualhost", Lvs, None),
    k("regex", No, None),
    k("regex_no_match", No, None),
    k("regex_options", No, None),
    k("regex_stack", No, None),
    k("regex_min_offset", No, None),
    k("regex_max_offset", No, None),
];

const SMTP: &[Kw] = &[k("helo_name", Lvs, None), k("host", Lvs, Some(SmtpHost))];
const MISC: &[Kw] = &[
    k("misc_path", Lvs, None),
    k("misc_timeout", Lvs, None),
    k("misc_dynamic", Lvs, None),
    k("user", Lvs, None),
    k("warmup", Lvs, None),
];

const TRACK_PROCESS: &[Kw] = &[
    k("process", Yes, None),
    k("param_match", Yes, None),
    k("full_command", Yes, None),
    k("weight", Yes, None),
    k("quorum", Yes, None),
    k("quorum_max", Yes, None),
    k("delay", Yes, None),
    k("fork_delay", Yes, None),
    k("terminate_delay", Yes, None),
];
const FILE_CHECK: &[Kw] = &[k("track_file", Lvs, None)];
const DNS_CHECK: &[Kw] = &[k("type", Lvs, None), k("name", Lvs, None)];
const UDP_CHECK: &[Kw] = &[k("payload", Lvs, None), k("require_reply", Lvs, None)];
const TRACK_FILE: &[Kw] = &[
    k("file", Yes, None),
    k("weight", Yes, None),
    k("init_file", Yes, None),
];

/// The keywords of a block context; `None` for item lists and checkers we take as opaque.
fn table(ctx: Ctx) -> &'static [Kw] {
    match ctx {
        Top => TOP,
        Global => GLOBAL,
        VrrpScript => SCRIPT,
        Instance => INSTANCE,
        Auth => AUTH,
        SyncGroup => SYNC,
        VirtualServer => VS,
        RealServer => RS,
        HttpCheck => HTTP,
        Url => URL,
        SmtpCheck => SMTP,
        MiscCheck => MISC,
        FileCheck => FILE_CHECK,
        UdpCheck => UDP_CHECK,
        DnsCheck => DNS_CHECK,
        TrackFile => TRACK_FILE,
        TrackProcess => TRACK_PROCESS,
        TcpCheck | SmtpHost | OtherCheck | List => &[],
    }
}

/// Looks a keyword up in a context.
pub fn lookup(ctx: Ctx, key: &str) -> Option<&'static Kw> {
    if let Some(kw) = table(ctx).iter().find(|k| k.name == key) {
        return Some(kw);
    }
    if matches!(
        ctx,
        HttpCheck | TcpCheck | SmtpCheck | SmtpHost | MiscCheck | UdpCheck
    ) && COMMON_CHECK.contains(&key)
    {
        static COMMON: Kw = Kw {
            name: "",
            status: Status::Lvs,
            block: None,
        };
        return Some(&COMMON);
    }
    None
}

/// Whether unknown keys in a context are accepted (item lists; checkers we do not model).
pub fn open(ctx: Ctx) -> bool {
    matches!(ctx, List | OtherCheck)
}

/// The nearest keyword of a context (edit distance at most 3).
pub fn nearest(ctx: Ctx, key: &str) -> Option<&'static str> {
    let mut names: Vec<&'static str> = table(ctx).iter().map(|k| k.name).collect();
    if matches!(
        ctx,
        HttpCheck | TcpCheck | SmtpCheck | SmtpHost | MiscCheck | UdpCheck
    ) {
        names.extend_from_slice(COMMON_CHECK);
    }
    names
        .into_iter()
        .map(|n| (distance(n, key), n))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

pub use opsflow_common::diag::distance;

/// Every context reachable from the top of a file, with its keywords (for the
/// no-silent-keyword test): the schema's own block links, walked once each.
pub fn all() -> impl Iterator<Item = (Ctx, &'static Kw)> {
    let mut seen = vec![Top];
    let mut k = 0;
    while let Some(&ctx) = seen.get(k) {
        for b in table(ctx).iter().filter_map(|kw| kw.block) {
            if !seen.contains(&b) {
                seen.push(b);
            }
        }
        k += 1;
    }
    seen.into_iter()
        .flat_map(|c| table(c).iter().map(move |kw| (c, kw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No silent keyword: a keyword marked implemented (Yes, or Lvs: acted on by the load
    /// balancer) must be read by the config model, i.e. matched by name in the code that
    /// builds it; anything else must be marked No (warned) or Removed (an error).
    #[test]
    fn every_keyword_marked_implemented_is_read_by_the_model() {
        let model = [
            include_str!("mod.rs"),
            include_str!("lvs.rs"),
            include_str!("syntax.rs"),
            include_str!("track.rs"),
            include_str!("ipvs.rs"),
        ]
        .concat();
        let unread: Vec<String> = all()
            .filter(|(_, k)| matches!(k.status, Yes | Lvs))
            .filter(|(_, k)| !model.contains(&format!("\"{}\"", k.name)))
            .map(|(c, k)| format!("{c:?}/{}", k.name))
            .collect();
        assert!(
            unread.is_empty(),
            "marked implemented but never read: {unread:?}"
        );
    }
}
