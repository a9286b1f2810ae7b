//! keepalived's IPVS extras over the same generic netlink family: service flags (`ops`, the
//! scheduler flags), the persistence engine and destination thresholds (kept beside the
//! desired services and reconciled like them), flushing at start and stop, the connection
//! timeouts (`IPVS_CMD_SET_CONFIG`) and the connection sync daemon
//! (`IPVS_CMD_NEW_DAEMON`/`IPVS_CMD_DEL_DAEMON`), which follows a VRRP instance's state.

use std::collections::HashMap;
use std::net::IpAddr;

use tracing::{info, warn};

#[cfg(test)]
use super::get;
use super::{get_u32, Attrs, Ipvs};
use crate::conf::ipvs::{
    FlushOnStop, IpvsGlobal, SyncDaemon, Thresholds, VsExtras, F_ONEPACKET, F_SCHED1, F_SCHED2,
    F_SCHED3,
};
use crate::conf::lvs::VsKey;
use crate::lvs::dataplane::{Change, Service};

const CMD_NEW_DAEMON: u8 = 9;
const CMD_DEL_DAEMON: u8 = 10;
const CMD_SET_CONFIG: u8 = 12;
const CMD_FLUSH: u8 = 17;

const ATTR_DAEMON: u16 = 3;
const ATTR_TIMEOUT_TCP: u16 = 4;
const ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const ATTR_TIMEOUT_UDP: u16 = 6;

pub(super) const SVC_PE_NAME: u16 = 11;

const DAEMON_STATE: u16 = 1;
const DAEMON_MCAST_IFN: u16 = 2;
const DAEMON_SYNC_ID: u16 = 3;
const DAEMON_SYNC_MAXLEN: u16 = 4;
const DAEMON_MCAST_GROUP: u16 = 5;
const DAEMON_MCAST_PORT: u16 = 7;
const DAEMON_MCAST_TTL: u16 = 8;

const STATE_MASTER: u32 = 1;
const STATE_BACKUP: u32 = 2;

/// The service flags we own: the others (persistence, hashed) are the kernel's or set apart.
const OWN_FLAGS: u32 = F_ONEPACKET | F_SCHED1 | F_SCHED2 | F_SCHED3;

/// IPVS-only settings of the desired services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    pub services: HashMap<VsKey, VsExtras>,
    pub thresholds: HashMap<(VsKey, IpAddr, u16), Thresholds>,
    /// Destinations with a forwarding method of their own (a real server's `lvs_method`,
    /// `sorry_server_lvs_method`).
    pub methods: HashMap<(VsKey, IpAddr, u16), String>,
}

/// What the backend keeps for the extras: the desired ones, what the kernel said at the last
/// dump, and what `clear` does.
#[derive(Default)]
pub(super) struct State {
    pub extras: Extras,
    pub flush_onstop: FlushOnStop,
    kernel_services: HashMap<VsKey, (u32, Option<String>)>,
    kernel_thresholds: HashMap<(VsKey, IpAddr, u16), Thresholds>,
    kernel_dests: HashMap<(VsKey, IpAddr, u16), (u32, &'static str)>,
}

impl State {
    pub fn flags(&self, key: &VsKey) -> u32 {
        self.extras.services.get(key).map_or(0, |x| x.flags)
    }
    pub fn pe(&self, key: &VsKey) -> Option<&str> {
        self.extras
            .services
            .get(key)
            .and_then(|x| x.persistence_engine.as_deref())
    }
    pub fn thresholds(&self, key: &VsKey, addr: IpAddr, port: u16) -> Thresholds {
        self.extras
            .thresholds
            .get(&(key.clone(), addr, port))
            .copied()
            .unwrap_or_default()
    }
    /// Notes a service of the kernel's dump: its flags and engine.
    pub fn seen_service(&mut self, key: &VsKey, flags: u32, pe: Option<&[u8]>) {
        let pe = pe
            .map(|p| {
                String::from_utf8_lossy(p)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .filter(|p| !p.is_empty());
        self.kernel_services.insert(key.clone(), (flags, pe));
    }
    /// A destination's own forwarding method, if it has one.
    pub fn method(&self, key: &VsKey, addr: IpAddr, port: u16) -> Option<&str> {
        self.extras
            .methods
            .get(&(key.clone(), addr, port))
            .map(String::as_str)
    }
    /// Notes a destination of the kernel's dump: its weight, method and thresholds.
    pub fn seen_dest(
        &mut self,
        key: &VsKey,
        d: &super::Dest,
        method: &'static str,
        a: &[(u16, &[u8])],
    ) {
        let (addr, port) = (d.addr, d.port);
        self.kernel_dests
            .insert((key.clone(), addr, port), (d.weight, method));
        let t = Thresholds {
            uthreshold: get_u32(a, super::DEST_U_THRESH).unwrap_or(0),
            lthreshold: get_u32(a, super::DEST_L_THRESH).unwrap_or(0),
        };
        self.kernel_thresholds.insert((key.clone(), addr, port), t);
    }

    /// Adds the edits the extras need to `changes`: a service whose flags or engine differ,
    /// a destination whose thresholds differ (services and destinations being added carry
    /// theirs already).
    pub fn changes(&self, actual: &[Service], desired: &[Service], changes: &mut Vec<Change>) {
        for s in desired {
            let Some(a) = actual.iter().find(|a| a.key == s.key) else {
                continue;
            };
            let (kflags, kpe) = self
                .kernel_services
                .get(&s.key)
                .cloned()
                .unwrap_or_default();
            let edited = changes
                .iter()
                .any(|c| matches!(c, Change::EditService(x) if x.key == s.key));
            if !edited
                && (kflags & OWN_FLAGS != self.flags(&s.key) & OWN_FLAGS
                    || kpe.as_deref() != self.pe(&s.key))
            {
                changes.push(Change::EditService(Service {
                    dests: Vec::new(),
                    ..s.clone()
                }));
            }
            for d in &s.dests {
                if !a.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                    continue;
                }
                let k = (s.key.clone(), d.addr, d.port);
                let have = self.kernel_thresholds.get(&k).copied().unwrap_or_default();
                let edited = changes.iter().any(|c| matches!(c, Change::EditDest(x, y) if *x == s.key && y.addr == d.addr && y.port == d.port));
                let method = self.method(&s.key, d.addr, d.port).unwrap_or(&s.method);
                let kernel_method = self.kernel_dests.get(&k).map(|x| x.1);
                if !edited
                    && (have != self.thresholds(&s.key, d.addr, d.port)
                        || kernel_method != Some(method))
                {
                    changes.push(Change::EditDest(s.key.clone(), d.clone()));
                }
            }
        }
        // an edit that would change nothing (the service-wide method comparison sees a
        // destination with its own method as different) is dropped
        changes.retain(|c| match c {
            Change::EditDest(k, d) => {
                let key = (k.clone(), d.addr, d.port);
                let method = desired
                    .iter()
                    .find(|s| &s.key == k)
                    .map(|s| self.method(k, d.addr, d.port).unwrap_or(&s.method));
                let same = self.kernel_dests.get(&key).map(|x| (x.0, Some(x.1)))
                    == Some((d.weight, method))
                    && self
                        .kernel_thresholds
                        .get(&key)
                        .copied()
                        .unwrap_or_default()
                        == self.thresholds(k, d.addr, d.port);
                !same
            }
            _ => true,
        });
    }
}

/// The service attributes the extras add: the engine's name.
pub(super) fn service_pe(a: Attrs, pe: Option<&str>) -> Attrs {
    match pe {
        Some(p) => a.string(SVC_PE_NAME, p),
        None => a,
    }
}

fn daemon_attrs(s: &SyncDaemon, state: u32) -> Attrs {
    let mut a = Attrs::new()
        .u32(DAEMON_STATE, state)
        .string(DAEMON_MCAST_IFN, &s.interface)
        .u32(DAEMON_SYNC_ID, u32::from(s.syncid.unwrap_or(0)));
    if let Some(m) = s.maxlen {
        a = a.u16(DAEMON_SYNC_MAXLEN, m);
    }
    if let Some(g) = s.group {
        a = a.raw(DAEMON_MCAST_GROUP, &g.octets());
    }
    // the kernel reads the port in host order (nla_get_u16), unlike a service's
    if let Some(p) = s.port {
        a = a.u16(DAEMON_MCAST_PORT, p);
    }
    if let Some(t) = s.ttl {
        a = a.raw(DAEMON_MCAST_TTL, &[t]);
    }
    a
}

fn state_name(state: u32) -> &'static str {
    if state == STATE_MASTER {
        "master"
    } else {
        "backup"
    }
}

impl Ipvs {
    /// `lvs_flush` (the whole table, as keepalived does) and `lvs_timeouts`, once at start;
    /// remembers `lvs_flush_onstop` for [`Ipvs::clear`].
    pub(super) fn prepare_extras(&mut self, g: &IpvsGlobal) -> anyhow::Result<()> {
        self.x.flush_onstop = g.lvs_flush_onstop;
        if g.lvs_flush {
            self.flush_all()?;
            info!("lvs_flush: the IPVS table was emptied before programming ours");
        }
        if let Some(t) = g.lvs_timeouts {
            let mut a = Attrs::new();
            for (ty, v) in [
                (ATTR_TIMEOUT_TCP, t.tcp),
                (ATTR_TIMEOUT_TCP_FIN, t.tcpfin),
                (ATTR_TIMEOUT_UDP, t.udp),
            ] {
                // 0 leaves the kernel's value, as keepalived's
                if v > 0 {
                    a = a.u32(ty, v);
                }
            }
            self.cmd(CMD_SET_CONFIG, a)
                .map_err(|e| anyhow::anyhow!("IPVS: cannot set lvs_timeouts: {e}"))?;
            info!(
                tcp = t.tcp,
                tcpfin = t.tcpfin,
                udp = t.udp,
                "IPVS connection timeouts set"
            );
        }
        Ok(())
    }

    /// Empties the whole IPVS table (every service, ours or not).
    pub(super) fn flush_all(&mut self) -> anyhow::Result<()> {
        self.cmd(CMD_FLUSH, Attrs::new())
            .map_err(|e| anyhow::anyhow!("IPVS: cannot flush: {e}"))
    }

    fn daemon(&mut self, s: &SyncDaemon, state: u32, start: bool) {
        let r = if start {
            self.cmd(
                CMD_NEW_DAEMON,
                Attrs::new().nest(ATTR_DAEMON, daemon_attrs(s, state)),
            )
        } else {
            self.cmd(
                CMD_DEL_DAEMON,
                Attrs::new().nest(ATTR_DAEMON, Attrs::new().u32(DAEMON_STATE, state)),
            )
        };
        match r {
            Ok(()) => info!(
                interface = %s.interface,
                syncid = s.syncid.unwrap_or(0),
                "IPVS {} sync daemon {}",
                state_name(state),
                if start { "started" } else { "stopped" }
            ),
            // already running (start) or not running (stop): nothing to do
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && start => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) && !start => {}
            Err(e) => warn!(
                interface = %s.interface,
                error = %e,
                "cannot {} the IPVS {} sync daemon",
                if start { "start" } else { "stop" },
                state_name(state)
            ),
        }
    }
}

/// What the sync daemon does for a VRRP state, as keepalived: `Some(true)` (MASTER) runs the
/// master daemon, `Some(false)` (BACKUP, FAULT) the backup daemon, `None` (stopping) neither.
pub fn sync_daemon(s: &SyncDaemon, master: Option<bool>) {
    let mut ipvs = match Ipvs::open() {
        Ok(i) => i,
        Err(e) => {
            warn!(error = %e, "lvs_sync_daemon: no IPVS");
            return;
        }
    };
    match master {
        Some(true) => {
            ipvs.daemon(s, STATE_BACKUP, false);
            ipvs.daemon(s, STATE_MASTER, true);
        }
        Some(false) => {
            ipvs.daemon(s, STATE_MASTER, false);
            ipvs.daemon(s, STATE_BACKUP, true);
        }
        None => {
            ipvs.daemon(s, STATE_MASTER, false);
            ipvs.daemon(s, STATE_BACKUP, false);
        }
    }
}

/// The extras of the configured virtual services (sorry servers have no thresholds).
pub(in crate::lvs) fn of(vss: &[crate::lvs::VsRun]) -> Extras {
    let mut x = Extras::default();
    for v in vss {
        x.services.insert(v.cfg.key.clone(), v.cfg.ipvs.clone());
        for r in &v.rss {
            x.thresholds.insert(
                (v.cfg.key.clone(), r.cfg.addr, r.cfg.port),
                r.cfg.thresholds,
            );
            if let Some(m) = &r.cfg.lvs_method {
                x.methods
                    .insert((v.cfg.key.clone(), r.cfg.addr, r.cfg.port), m.clone());
            }
        }
        if let (Some((a, p)), Some(m)) = (v.cfg.sorry_server, &v.cfg.ipvs.sorry_server_lvs_method) {
            x.methods.insert((v.cfg.key.clone(), a, p), m.clone());
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvs::dataplane::tests::svc;
    use std::net::Ipv4Addr;

    #[test]
    fn a_changed_flag_engine_or_threshold_is_an_edit_and_nothing_else_is() {
        let s = svc(53, &[(1, 1), (2, 1)]);
        let mut st = State::default();
        st.seen_service(&s.key, 0x2, None);
        for d in &s.dests {
            st.seen_dest(&s.key, d, "NAT", &[]);
        }
        let mut ch = Vec::new();
        st.changes(std::slice::from_ref(&s), std::slice::from_ref(&s), &mut ch);
        assert!(
            ch.is_empty(),
            "the kernel's hashed flag is not ours: {ch:?}"
        );
        st.extras.services.insert(
            s.key.clone(),
            VsExtras {
                flags: F_ONEPACKET,
                ops: true,
                persistence_engine: Some("sip".into()),
                ..Default::default()
            },
        );
        st.extras.thresholds.insert(
            (s.key.clone(), Ipv4Addr::new(10, 0, 1, 2).into(), 80),
            Thresholds {
                uthreshold: 9,
                lthreshold: 1,
            },
        );
        st.changes(std::slice::from_ref(&s), std::slice::from_ref(&s), &mut ch);
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert!(matches!(&ch[0], Change::EditService(x) if x.key == s.key));
        assert!(
            matches!(&ch[1], Change::EditDest(_, d) if d.addr == IpAddr::from(Ipv4Addr::new(10, 0, 1, 2)))
        );
        // a destination with its own method: one edit while the kernel differs, none after
        let mut st = State::default();
        st.seen_service(&s.key, 0, None);
        for d in &s.dests {
            st.seen_dest(&s.key, d, "NAT", &[]);
        }
        let tun = (s.key.clone(), Ipv4Addr::new(10, 0, 1, 1).into(), 80);
        st.extras.methods.insert(tun.clone(), "TUN".into());
        let mut ch = Vec::new();
        st.changes(std::slice::from_ref(&s), std::slice::from_ref(&s), &mut ch);
        assert_eq!(ch.len(), 1, "{ch:?}");
        st.seen_dest(&s.key, &s.dests[0], "TUN", &[]);
        // what the service-wide comparison in apply adds for it is a no-op, dropped
        let mut ch = vec![Change::EditDest(s.key.clone(), s.dests[0].clone())];
        st.changes(std::slice::from_ref(&s), std::slice::from_ref(&s), &mut ch);
        assert!(ch.is_empty(), "{ch:?}");
    }

    #[test]
    fn sync_daemon_attributes() {
        let s = SyncDaemon {
            interface: "eth1".into(),
            instance: "VI_1".into(),
            syncid: Some(7),
            maxlen: Some(1400),
            port: Some(8849),
            ttl: Some(2),
            group: Some(Ipv4Addr::new(224, 0, 0, 82)),
            pos: None,
        };
        let a = daemon_attrs(&s, STATE_MASTER);
        let p = super::super::parse_attrs(&a.0);
        assert_eq!(get_u32(&p, DAEMON_STATE), Some(STATE_MASTER));
        assert_eq!(get(&p, DAEMON_MCAST_IFN), Some(&b"eth1\0"[..]));
        assert_eq!(get_u32(&p, DAEMON_SYNC_ID), Some(7));
        assert_eq!(get(&p, DAEMON_MCAST_GROUP), Some(&[224, 0, 0, 82][..]));
        assert_eq!(get(&p, DAEMON_MCAST_PORT), Some(&8849u16.to_ne_bytes()[..]));
        assert_eq!(get(&p, DAEMON_MCAST_TTL), Some(&[2u8][..]));
    }
}
