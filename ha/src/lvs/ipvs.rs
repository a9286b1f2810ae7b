//! The IPVS backend: the kernel's `IPVS` generic netlink family, spoken directly (what
//! ipvsadm and keepalived use; no shelling out).
//!
//! The message layer is small and written here: a generic netlink header, then nested
//! attributes (type, length, payload, padded to 4 bytes). No crate carries the IPVS attribute
//! set, and the encoding is the same few lines whichever framework wraps it.
//!
//! Ownership: we only ever touch services whose key is in our configuration now or was when
//! we installed it; other services in the kernel (another keepalived, an operator's ipvsadm)
//! are left alone.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::dataplane::{diff, Backend, Change, Counts, Dest, Service};
use crate::conf::lvs::VsKey;

mod extra;
pub(super) use extra::of as extras_of;
pub use extra::{sync_daemon, Extras};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

const CMD_NEW_SERVICE: u8 = 1;
const CMD_SET_SERVICE: u8 = 2;
const CMD_DEL_SERVICE: u8 = 3;
const CMD_GET_SERVICE: u8 = 4;
const CMD_NEW_DEST: u8 = 5;
const CMD_SET_DEST: u8 = 6;
const CMD_DEL_DEST: u8 = 7;
const CMD_GET_DEST: u8 = 8;

const ATTR_SERVICE: u16 = 1;
const ATTR_DEST: u16 = 2;

const SVC_AF: u16 = 1;
const SVC_PROTOCOL: u16 = 2;
const SVC_ADDR: u16 = 3;
const SVC_PORT: u16 = 4;
const SVC_FWMARK: u16 = 5;
const SVC_SCHED_NAME: u16 = 6;
const SVC_FLAGS: u16 = 7;
const SVC_TIMEOUT: u16 = 8;
const SVC_NETMASK: u16 = 9;

const DEST_ADDR: u16 = 1;
const DEST_PORT: u16 = 2;
const DEST_FWD_METHOD: u16 = 3;
const DEST_WEIGHT: u16 = 4;
const DEST_U_THRESH: u16 = 5;
const DEST_L_THRESH: u16 = 6;
const DEST_ACTIVE_CONNS: u16 = 7;
const DEST_INACT_CONNS: u16 = 8;
const DEST_ADDR_FAMILY: u16 = 11;

const IP_VS_SVC_F_PERSISTENT: u32 = 1;

/// An attribute being built.
struct Attrs(Vec<u8>);

impl Attrs {
    fn new() -> Attrs {
        Attrs(Vec::new())
    }
    fn raw(mut self, ty: u16, payload: &[u8]) -> Attrs {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
        self
    }
    fn u16(self, ty: u16, v: u16) -> Attrs {
        self.raw(ty, &v.to_ne_bytes())
    }
    fn be16(self, ty: u16, v: u16) -> Attrs {
        self.raw(ty, &v.to_be_bytes())
    }
    fn u32(self, ty: u16, v: u32) -> Attrs {
        self.raw(ty, &v.to_ne_bytes())
    }
    /// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first 4.
    fn addr(self, ty: u16, a: IpAddr) -> Attrs {
        let mut b = [0u8; 16];
        match a {
            IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => b = a.octets(),
        }
        self.raw(ty, &b)
    }
    fn string(self, ty: u16, s: &str) -> Attrs {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.raw(ty, &b)
    }
    fn nest(self, ty: u16, inner: Attrs) -> Attrs {
        self.raw(ty | NLA_F_NESTED, &inner.0)
    }
}

/// Attributes of a received message: (type without flags, payload).
fn parse_attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    out
}

fn get<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
}

fn get_u32(attrs: &[(u16, &[u8])], ty: u16) -> Option<u32> {
    get(attrs, ty).and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
}

fn get_u16(attrs: &[(u16, &[u8])], ty: u16) -> Option<u16> {
    get(attrs, ty).and_then(|v| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
}

fn get_be16(attrs: &[(u16, &[u8])], ty: u16) -> Option<u16> {
    get(attrs, ty).and_then(|v| Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?)))
}

/// An address attribute of family `af` (`AF_INET` or `AF_INET6`).
fn get_addr(attrs: &[(u16, &[u8])], ty: u16, af: u16) -> Option<IpAddr> {
    get(attrs, ty).and_then(|v| {
        if af == libc::AF_INET6 as u16 {
            let b: [u8; 16] = v.get(..16)?.try_into().ok()?;
            return Some(Ipv6Addr::from(b).into());
        }
        Some(Ipv4Addr::new(*v.first()?, *v.get(1)?, *v.get(2)?, *v.get(3)?).into())
    })
}

fn af_of(a: &IpAddr) -> u16 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u16,
        IpAddr::V6(_) => libc::AF_INET6 as u16,
    }
}

/// A service's address family: its VIP's, or a fwmark service's own.
fn key_af(key: &VsKey) -> u16 {
    if key.is_ipv6() {
        libc::AF_INET6 as u16
    } else {
        libc::AF_INET as u16
    }
}

fn proto_num(p: &str) -> u16 {
    match p {
        "UDP" => 17,
        "SCTP" => 132,
        _ => 6,
    }
}

fn proto_name(n: u16) -> &'static str {
    match n {
        17 => "UDP",
        132 => "SCTP",
        _ => "TCP",
    }
}

fn fwd_method(m: &str) -> u32 {
    match m {
        "DR" => 3,
        "TUN" => 2,
        _ => 0,
    }
}

fn method_name(n: u32) -> &'static str {
    match n & 7 {
        3 => "DR",
        2 => "TUN",
        _ => "NAT",
    }
}

/// The attributes that name a service.
fn service_id(key: &VsKey) -> Attrs {
    let a = Attrs::new().u16(SVC_AF, key_af(key));
    match key {
        VsKey::Addr(addr, port, proto) => a
            .u16(SVC_PROTOCOL, proto_num(proto))
            .addr(SVC_ADDR, *addr)
            .be16(SVC_PORT, *port),
        VsKey::Fwmark(m, _) => a.u32(SVC_FWMARK, *m),
    }
}

fn service_full(s: &Service, x: &extra::State) -> Attrs {
    let persistent = s.persistence_timeout.is_some();
    let mut flags = Vec::with_capacity(8);
    flags.extend_from_slice(
        &(if persistent {
            IP_VS_SVC_F_PERSISTENT
        } else {
            0
        } | x.flags(&s.key))
        .to_ne_bytes(),
    );
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    extra::service_pe(service_id(&s.key), x.pe(&s.key))
        .string(SVC_SCHED_NAME, &s.scheduler)
        .raw(SVC_FLAGS, &flags)
        .u32(SVC_TIMEOUT, s.persistence_timeout.unwrap_or(0))
        .raw(SVC_NETMASK, &netmask(s))
}

/// The persistence netmask: IPv4 a mask; IPv6 a prefix length (1-128, host order, as ipvsadm
/// sends it; the kernel refuses an inet6 service without one).
fn netmask(s: &Service) -> [u8; 4] {
    if key_af(&s.key) == libc::AF_INET6 as u16 {
        return 128u32.to_ne_bytes();
    }
    s.persistence_granularity
        .map_or(u32::MAX, u32::from)
        .to_be_bytes()
}

fn dest_attrs(
    d: &Dest,
    method: &str,
    port_default: u16,
    t: crate::conf::ipvs::Thresholds,
) -> Attrs {
    Attrs::new()
        .addr(DEST_ADDR, d.addr)
        .be16(DEST_PORT, if d.port == 0 { port_default } else { d.port })
        .u32(DEST_FWD_METHOD, fwd_method(method))
        .u32(DEST_WEIGHT, d.weight)
        .u32(DEST_U_THRESH, t.uthreshold)
        .u32(DEST_L_THRESH, t.lthreshold)
        .u16(DEST_ADDR_FAMILY, af_of(&d.addr))
}

/// A generic netlink socket bound to the IPVS family.
pub struct Ipvs {
    fd: OwnedFd,
    family: u16,
    seq: u32,
    /// What we installed (or adopted): the services we answer for.
    actual: Vec<Service>,
    owned: BTreeSet<VsKey>,
    /// keepalived's IPVS extras: flags, engines, thresholds, lvs_flush_onstop.
    x: extra::State,
}

impl Ipvs {
    /// Opens the socket and resolves the family; fails when the kernel has no IPVS.
    pub fn open() -> anyhow::Result<Ipvs> {
        // SAFETY: plain socket(2); the descriptor is owned by OwnedFd below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            anyhow::bail!("netlink socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut me = Ipvs {
            fd,
            family: GENL_ID_CTRL,
            seq: 1,
            actual: Vec::new(),
            owned: BTreeSet::new(),
            x: extra::State::default(),
        };
        let reply = me
            .request(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                1,
                NLM_F_REQUEST,
                Attrs::new().string(CTRL_ATTR_FAMILY_NAME, "IPVS"),
            )
            .map_err(|e| anyhow::anyhow!("the kernel has no IPVS generic netlink family ({e}); load ip_vs or use --lvs-backend nftables"))?;
        let id = reply
            .first()
            .and_then(|m| get_u16(&parse_attrs(m), CTRL_ATTR_FAMILY_ID))
            .ok_or_else(|| anyhow::anyhow!("IPVS family id missing in the controller's answer"))?;
        me.family = id;
        Ok(me)
    }

    /// Sends one message; returns the attribute payloads of the answers (several for a dump).
    fn request(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        flags: u16,
        attrs: Attrs,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = 16 + 4 + attrs.0.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&family.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(&attrs.0);
        // SAFETY: sending our buffer on our socket to the kernel (zeroed sockaddr_nl).
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: receiving into our buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut b = &buf[..n as usize];
            while b.len() >= 16 {
                let mlen = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mtype = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if mlen < 16 || mlen > b.len() {
                    break;
                }
                let body = &b[16..mlen];
                b = &b[((mlen + 3) & !3).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match mtype {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            body.get(..4)
                                .and_then(|x| x.try_into().ok())
                                .unwrap_or([0; 4]),
                        );
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(std::io::Error::from_raw_os_error(-code));
                    }
                    _ => {
                        out.push(body.get(4..).unwrap_or(&[]).to_vec());
                        if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    fn cmd(&mut self, cmd: u8, attrs: Attrs) -> std::io::Result<()> {
        let family = self.family;
        self.request(family, cmd, 1, NLM_F_REQUEST | NLM_F_ACK, attrs)
            .map(|_| ())
    }

    /// Every IPVS service in the kernel (ours or not), with destinations.
    pub fn dump(&mut self) -> anyhow::Result<Vec<Service>> {
        let family = self.family;
        let svcs = self.request(
            family,
            CMD_GET_SERVICE,
            1,
            NLM_F_REQUEST | NLM_F_DUMP,
            Attrs::new(),
        )?;
        let mut out = Vec::new();
        for m in svcs {
            let top = parse_attrs(&m);
            let Some(nest) = get(&top, ATTR_SERVICE) else {
                continue;
            };
            let a = parse_attrs(nest);
            let af = get_u16(&a, SVC_AF).unwrap_or(0);
            if af != libc::AF_INET as u16 && af != libc::AF_INET6 as u16 {
                continue;
            }
            let key = match get_u32(&a, SVC_FWMARK) {
                Some(m) if m != 0 => VsKey::Fwmark(m, af == libc::AF_INET6 as u16),
                _ => VsKey::Addr(
                    get_addr(&a, SVC_ADDR, af).unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
                    get_be16(&a, SVC_PORT).unwrap_or(0),
                    proto_name(get_u16(&a, SVC_PROTOCOL).unwrap_or(6)).to_string(),
                ),
            };
            let sched = get(&a, SVC_SCHED_NAME)
                .map(|s| {
                    String::from_utf8_lossy(s)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_default();
            let flags = get_u32(&a, SVC_FLAGS).unwrap_or(0);
            self.x
                .seen_service(&key, flags, get(&a, extra::SVC_PE_NAME));
            let timeout = get_u32(&a, SVC_TIMEOUT).unwrap_or(0);
            let netmask = get(&a, SVC_NETMASK)
                .and_then(|v| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
                .unwrap_or(u32::MAX);
            let dests = self.dests(&key)?;
            let method = dests.first().map(|d| d.1).unwrap_or("NAT");
            out.push(Service {
                key,
                scheduler: sched,
                method: method.to_string(),
                persistence_timeout: (flags & IP_VS_SVC_F_PERSISTENT != 0).then_some(timeout),
                persistence_granularity: (flags & IP_VS_SVC_F_PERSISTENT != 0
                    && af == libc::AF_INET as u16
                    && netmask != u32::MAX)
                    .then_some(Ipv4Addr::from(netmask)),
                dests: dests.into_iter().map(|d| d.0).collect(),
            });
        }
        Ok(out)
    }

    fn dests(&mut self, key: &VsKey) -> anyhow::Result<Vec<(Dest, &'static str, u32, u32)>> {
        let family = self.family;
        let msgs = self.request(
            family,
            CMD_GET_DEST,
            1,
            NLM_F_REQUEST | NLM_F_DUMP,
            Attrs::new().nest(ATTR_SERVICE, service_id(key)),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let top = parse_attrs(&m);
            let Some(nest) = get(&top, ATTR_DEST) else {
                continue;
            };
            let a = parse_attrs(nest);
            let port = get_be16(&a, DEST_PORT).unwrap_or(0);
            // older kernels send no family: the service's
            let af = get_u16(&a, DEST_ADDR_FAMILY).unwrap_or(key_af(key));
            out.push((
                Dest {
                    addr: get_addr(&a, DEST_ADDR, af).unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
                    port: if matches!(key, VsKey::Fwmark(..)) {
                        0
                    } else {
                        port
                    },
                    weight: get_u32(&a, DEST_WEIGHT).unwrap_or(0),
                },
                method_name(get_u32(&a, DEST_FWD_METHOD).unwrap_or(0)),
                get_u32(&a, DEST_ACTIVE_CONNS).unwrap_or(0),
                get_u32(&a, DEST_INACT_CONNS).unwrap_or(0),
            ));
            if let Some((d, m, ..)) = out.last() {
                self.x.seen_dest(key, d, m, &a);
            }
        }
        Ok(out)
    }

    fn port_of(key: &VsKey) -> u16 {
        match key {
            VsKey::Addr(_, p, _) => *p,
            VsKey::Fwmark(..) => 0,
        }
    }

    fn run(&mut self, c: &Change, desired: &[Service]) -> std::io::Result<()> {
        let method_of = |k: &VsKey| {
            desired
                .iter()
                .find(|s| &s.key == k)
                .map_or("NAT".to_string(), |s| s.method.clone())
        };
        match c {
            Change::AddService(s) => self.cmd(
                CMD_NEW_SERVICE,
                Attrs::new().nest(ATTR_SERVICE, service_full(s, &self.x)),
            ),
            Change::EditService(s) => self.cmd(
                CMD_SET_SERVICE,
                Attrs::new().nest(ATTR_SERVICE, service_full(s, &self.x)),
            ),
            Change::DelService(k) => self.cmd(
                CMD_DEL_SERVICE,
                Attrs::new().nest(ATTR_SERVICE, service_id(k)),
            ),
            Change::AddDest(k, d) | Change::EditDest(k, d) => self.cmd(
                if matches!(c, Change::AddDest(..)) {
                    CMD_NEW_DEST
                } else {
                    CMD_SET_DEST
                },
                Attrs::new().nest(ATTR_SERVICE, service_id(k)).nest(
                    ATTR_DEST,
                    dest_attrs(
                        d,
                        self.x
                            .method(k, d.addr, d.port)
                            .unwrap_or(method_of(k).as_str()),
                        Self::port_of(k),
                        self.x.thresholds(k, d.addr, d.port),
                    ),
                ),
            ),
            Change::DelDest(k, a, p) => self.cmd(
                CMD_DEL_DEST,
                Attrs::new().nest(ATTR_SERVICE, service_id(k)).nest(
                    ATTR_DEST,
                    Attrs::new()
                        .addr(DEST_ADDR, *a)
                        .be16(DEST_PORT, if *p == 0 { Self::port_of(k) } else { *p }),
                ),
            ),
        }
    }
}

impl Backend for Ipvs {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn apply(&mut self, desired: &[Service]) -> anyhow::Result<Vec<Change>> {
        // what the kernel has, for the services we answer for (now or before)
        for s in desired {
            self.owned.insert(s.key.clone());
        }
        let kernel = self.dump()?;
        let actual: Vec<Service> = kernel
            .into_iter()
            .filter(|s| self.owned.contains(&s.key))
            .collect();
        // a method change on a destination is an edit too: compare per destination method
        let mut changes = diff(&actual, desired);
        for s in desired {
            if let Some(a) = actual.iter().find(|a| a.key == s.key) {
                if a.method != s.method && !a.dests.is_empty() {
                    for d in &s.dests {
                        if a.dests.iter().any(|x| x.addr == d.addr && x.port == d.port)
                            && !changes.iter().any(|c| matches!(c, Change::EditDest(k, x) if *k == s.key && x.addr == d.addr && x.port == d.port))
                        {
                            changes.push(Change::EditDest(s.key.clone(), d.clone()));
                        }
                    }
                }
            }
        }
        // the extras' edits (flags, engines, thresholds, own methods), no-op edits dropped
        self.x.changes(&actual, desired, &mut changes);
        for c in &changes {
            self.run(c, desired)
                .map_err(|e| anyhow::anyhow!("IPVS {c:?}: {e}"))?;
        }
        self.owned.retain(|k| desired.iter().any(|s| &s.key == k));
        self.actual = desired.to_vec();
        Ok(changes)
    }

    fn set_extras(&mut self, extras: Extras) {
        self.x.extras = extras;
    }

    fn prepare(&mut self, g: &crate::conf::ipvs::IpvsGlobal) -> anyhow::Result<()> {
        self.prepare_extras(g)
    }

    fn counts(&mut self) -> Counts {
        let mut out = Counts::new();
        let keys: Vec<VsKey> = self.actual.iter().map(|s| s.key.clone()).collect();
        for key in keys {
            if let Ok(ds) = self.dests(&key) {
                for (d, _, act, inact) in ds {
                    out.insert(
                        (key.clone(), d.addr, d.port),
                        (u64::from(act), u64::from(inact)),
                    );
                }
            }
        }
        out
    }

    fn clear(&mut self) -> anyhow::Result<()> {
        if self.x.flush_onstop == crate::conf::ipvs::FlushOnStop::Full {
            tracing::info!("lvs_flush_onstop: emptying the whole IPVS table");
            self.owned.clear();
            self.actual.clear();
            return self.flush_all();
        }
        let owned: Vec<VsKey> = self.owned.iter().cloned().collect();
        for k in owned {
            if let Err(e) = self.cmd(
                CMD_DEL_SERVICE,
                Attrs::new().nest(ATTR_SERVICE, service_id(&k)),
            ) {
                if e.raw_os_error() != Some(libc::ESRCH) && e.raw_os_error() != Some(libc::ENOENT) {
                    anyhow::bail!("IPVS: cannot delete {}: {e}", k.id());
                }
            }
        }
        self.owned.clear();
        self.actual.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fwmark_service_is_named_in_its_own_family() {
        for (v6, af) in [(false, libc::AF_INET), (true, libc::AF_INET6)] {
            let id = service_id(&VsKey::Fwmark(7, v6));
            let p = parse_attrs(&id.0);
            assert_eq!(get_u16(&p, SVC_AF), Some(af as u16));
            assert_eq!(get_u32(&p, SVC_FWMARK), Some(7));
            assert_eq!(get(&p, SVC_ADDR), None);
        }
    }

    #[test]
    fn attributes_round_trip() {
        let a = Attrs::new()
            .u16(1, 2)
            .addr(3, Ipv4Addr::new(10, 0, 0, 1).into())
            .addr(5, "2001:db8::10".parse().unwrap())
            .be16(4, 80)
            .string(6, "wrr");
        let p = parse_attrs(&a.0);
        assert_eq!(get_u16(&p, 1), Some(2));
        assert_eq!(
            get_addr(&p, 3, libc::AF_INET as u16),
            Some(Ipv4Addr::new(10, 0, 0, 1).into())
        );
        assert_eq!(
            get_addr(&p, 5, libc::AF_INET6 as u16),
            Some("2001:db8::10".parse().unwrap())
        );
        assert_eq!(get_be16(&p, 4), Some(80));
        assert_eq!(get(&p, 6), Some(&b"wrr\0"[..]));
        // every attribute starts 4-aligned
        assert_eq!(a.0.len() % 4, 0);
        let n = Attrs::new().nest(1, Attrs::new().u32(5, 7));
        let outer = parse_attrs(&n.0);
        assert_eq!(get_u32(&parse_attrs(get(&outer, 1).unwrap()), 5), Some(7));
    }
}
