//! Kernel interfaces: virtual IPs through rtnetlink (RTM_NEWADDR/RTM_DELADDR), gratuitous
//! ARP through a packet socket, the raw VRRP socket, and link state (RTM_GETLINK).

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::conf::Vip;

pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Whether the interface exists, is up and has carrier, as rtnetlink reports it now.
///
/// A failure to read the state (no descriptor left, no answer) is not "down": the last state
/// read for that interface is kept (up if none was ever read), and the failure is logged at
/// most once a minute per interface. Only the kernel saying so makes a link down.
pub fn link_up(name: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<HashMap<String, LinkMemory>>> = Mutex::new(None);
    let read = link_state(name);
    let Ok(mut last) = LAST.lock() else {
        return read.ok().flatten().unwrap_or(true);
    };
    let entry = last
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert(LinkMemory::default());
    if entry.take(&read, Instant::now()) {
        if let Err(e) = &read {
            tracing::warn!(interface = name, error = %e, kept_up = entry.up,
                "cannot read the link state; keeping the last known state (logged once a minute)");
        }
    }
    entry.up
}

/// What [`link_up`] remembers of one interface.
#[derive(Clone, Copy, Debug)]
struct LinkMemory {
    up: bool,
    logged: Option<std::time::Instant>,
}

impl Default for LinkMemory {
    fn default() -> Self {
        LinkMemory {
            up: true,
            logged: None,
        }
    }
}

impl LinkMemory {
    /// Takes one read; true when a read error is to be logged now (once a minute at most).
    fn take(&mut self, read: &io::Result<Option<bool>>, now: std::time::Instant) -> bool {
        match read {
            Ok(state) => {
                self.up = state.unwrap_or(false);
                false
            }
            Err(_) => {
                let due = self.logged.is_none_or(|t| {
                    now.saturating_duration_since(t) >= std::time::Duration::from_secs(60)
                });
                if due {
                    self.logged = Some(now);
                }
                due
            }
        }
    }
}

/// The link state of `name` from RTM_GETLINK: `Some(up)` where up means administratively up
/// with carrier (IFF_UP and IFF_LOWER_UP), `None` when there is no such interface, an error
/// when the kernel could not be asked.
pub fn link_state(name: &str) -> io::Result<Option<bool>> {
    let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    body.extend_from_slice(&0i32.to_ne_bytes()); // index: by name
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    push_attr(&mut body, libc::IFLA_IFNAME, &n);
    let reply = match netlink_exchange(libc::RTM_GETLINK, 0, &body) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(e),
    };
    // nlmsghdr (16) + ifinfomsg: family, pad, type (2), index (4), flags (4)
    let ty = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let flags = reply
        .get(24..28)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (ty, flags) {
        (Some(libc::RTM_NEWLINK), Some(f)) => {
            let want = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
            Ok(Some(f & want == want))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected answer to RTM_GETLINK",
        )),
    }
}

pub fn mac(name: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    (v.len() == 6).then(|| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&v);
        m
    })
}

/// The first IPv4 address of an interface that is not one of `exclude` (our VIPs).
pub fn primary_ipv4(name: &str, exclude: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    opsflow_common::ipv4_interfaces()
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, a, _)| a)
        .find(|a| !exclude.contains(a))
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align(buf.len()), 0);
}

/// Adds (`add`) or removes a virtual IP on interface `index`. Adding an address that is
/// there, or removing one that is not, is not an error.
pub fn set_vip(index: u32, vip: &Vip, add: bool) -> io::Result<()> {
    let scope: u8 = match vip.scope.as_deref() {
        Some("host") => 254,
        Some("link") => 253,
        Some("site") => 200,
        _ => 0,
    };
    // struct ifaddrmsg: family, prefixlen, flags, scope, index
    let (family, octets): (u8, Vec<u8>) = match vip.addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    // IFA_F_NODAD: usable at once, never tentative
    let flags: u8 = if vip.nodad { 0x02 } else { 0 };
    let mut body = vec![family, vip.prefix, flags, scope];
    body.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut body, libc::IFA_LOCAL, &octets);
    push_attr(&mut body, libc::IFA_ADDRESS, &octets);
    if let Some(b) = vip.brd {
        push_attr(&mut body, libc::IFA_BROADCAST, &b.octets());
    }
    if let (Some(l), false) = (&vip.label, vip.addr.is_ipv6()) {
        let mut s = l.clone().into_bytes();
        s.push(0);
        push_attr(&mut body, libc::IFA_LABEL, &s);
    }
    let result = if add {
        netlink_request(
            libc::RTM_NEWADDR,
            (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
            &body,
        )
    } else {
        netlink_request(libc::RTM_DELADDR, 0, &body)
    };
    match result {
        // adding an address that is there, or removing one that is not, is fine
        Err(e) if !add && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        Err(e) if add && e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Adds (`add`, replacing a route with the same key) or removes an IPv4 route. Removing a
/// route that is not there is not an error. Routes carry protocol 18 (keepalived's
/// RTPROT_KEEPALIVED), so `ip route show proto keepalived` lists them.
pub fn set_route(r: &crate::conf::route::Route, add: bool) -> io::Result<()> {
    let oif =
        match r.dev.as_deref() {
            Some(d) => Some(ifindex(d).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no interface {d}"))
            })?),
            None => None,
        };
    let table = r.table.unwrap_or(libc::RT_TABLE_MAIN as u32);
    // universe unless given, even for a route without a gateway: keepalived does so (`ip
    // route` would pick link); ha/tests/differential.rs compares the two
    let scope = r.scope.unwrap_or(libc::RT_SCOPE_UNIVERSE);
    let rtype = if r.blackhole {
        libc::RTN_BLACKHOLE
    } else {
        libc::RTN_UNICAST
    };
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    let mut body = vec![
        libc::AF_INET as u8,
        r.prefix,
        0,
        0,
        if table < 256 { table as u8 } else { 0 },
        18,
        scope,
        rtype,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut body, libc::RTA_DST, &r.dst.octets());
    push_attr(&mut body, libc::RTA_TABLE, &table.to_ne_bytes());
    if let Some(i) = oif {
        push_attr(&mut body, libc::RTA_OIF, &i.to_ne_bytes());
    }
    if let Some(g) = r.via {
        push_attr(&mut body, libc::RTA_GATEWAY, &g.octets());
    }
    if let Some(s) = r.src {
        push_attr(&mut body, libc::RTA_PREFSRC, &s.octets());
    }
    if let Some(m) = r.metric {
        push_attr(&mut body, libc::RTA_PRIORITY, &m.to_ne_bytes());
    }
    let result = if add {
        netlink_request(
            libc::RTM_NEWROUTE,
            (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
            &body,
        )
    } else {
        netlink_request(libc::RTM_DELROUTE, 0, &body)
    };
    match result {
        Err(e) if !add && e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// Adds or removes an IPv4 policy rule (action: look up its table). Adding a rule that is
/// there, or removing one that is not, is not an error. Rules carry protocol 18 as routes do.
pub fn set_rule(r: &crate::conf::route::Rule, add: bool) -> io::Result<()> {
    // linux/fib_rules.h (not in libc)
    const FRA_DST: u16 = 1;
    const FRA_SRC: u16 = 2;
    const FRA_IIFNAME: u16 = 3;
    const FRA_PRIORITY: u16 = 6;
    const FRA_FWMARK: u16 = 10;
    const FRA_TABLE: u16 = 15;
    const FRA_OIFNAME: u16 = 17;
    const FRA_PROTOCOL: u16 = 21;
    const FR_ACT_TO_TBL: u8 = 1;
    let len = |a: Option<(Ipv4Addr, u8)>| a.map_or(0, |(_, l)| l);
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags
    let mut body = vec![
        libc::AF_INET as u8,
        len(r.to),
        len(r.from),
        0,
        if r.table < 256 { r.table as u8 } else { 0 },
        0,
        0,
        FR_ACT_TO_TBL,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    if let Some((a, _)) = r.from.filter(|(_, l)| *l > 0) {
        push_attr(&mut body, FRA_SRC, &a.octets());
    }
    if let Some((a, _)) = r.to.filter(|(_, l)| *l > 0) {
        push_attr(&mut body, FRA_DST, &a.octets());
    }
    push_attr(&mut body, FRA_TABLE, &r.table.to_ne_bytes());
    push_attr(&mut body, FRA_PRIORITY, &r.priority.to_ne_bytes());
    if let Some(m) = r.fwmark {
        push_attr(&mut body, FRA_FWMARK, &m.to_ne_bytes());
    }
    for (ty, name) in [(FRA_IIFNAME, &r.iif), (FRA_OIFNAME, &r.oif)] {
        if let Some(n) = name {
            let mut s = n.clone().into_bytes();
            s.push(0);
            push_attr(&mut body, ty, &s);
        }
    }
    if add {
        push_attr(&mut body, FRA_PROTOCOL, &[18]);
    }
    let result = if add {
        netlink_request(
            libc::RTM_NEWRULE,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &body,
        )
    } else {
        netlink_request(libc::RTM_DELRULE, 0, &body)
    };
    match result {
        Err(e) if add && e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) if !add && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Sends `count` gratuitous ARPs for `ip` from the interface.
pub fn garp(ifname: &str, ip: Ipv4Addr, count: u32) -> io::Result<()> {
    let index = ifindex(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")))?;
    let src = mac(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no MAC for {ifname}")))?;
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ip.octets());
    send_frame(index, &f, libc::ETH_P_ARP as u16, [0xff; 6], count)
}

/// A raw socket for IP protocol 112 bound to an interface.
fn raw_vrrp(ifname: &str) -> io::Result<Socket> {
    raw_proto(ifname, crate::vrrp::PROTO)
}

fn raw_proto(ifname: &str, proto: i32) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(proto)))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    Ok(s)
}

/// A raw VRRP socket on an interface: multicast group joined (unless unicast), TTL 255,
/// source address set. With `ah` it is a socket for IP protocol 51 that also sends whole
/// datagrams (IP_HDRINCL): the AH ICV covers the IP header, so ha writes it.
pub fn vrrp_socket(
    ifname: &str,
    index: u32,
    src: Ipv4Addr,
    group: Option<Ipv4Addr>,
    ah: bool,
) -> io::Result<Socket> {
    let s = if ah {
        let s = raw_proto(ifname, crate::ah::PROTO as i32)?;
        s.set_header_included_v4(true)?;
        s
    } else {
        raw_vrrp(ifname)?
    };
    s.set_ttl(255)?;
    s.set_multicast_ttl_v4(255)?;
    s.set_multicast_loop_v4(false)?;
    match group {
        Some(g) => {
            s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))?;
            multicast_if_v4(&s, index, src)?;
        }
        // unicast: packets to our address only, and our address as their source
        None => s.bind(&SocketAddrV4::new(src, 0).into())?,
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// IP_MULTICAST_IF by interface index and source address (`struct ip_mreqn`). Hand-written:
/// socket2 sets it by address only, which the kernel refuses (EINVAL) on a socket bound to
/// an interface that does not hold the address, as a VMAC does not hold the base's.
fn multicast_if_v4(s: &Socket, index: u32, src: Ipv4Addr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let m = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        imr_ifindex: index as i32,
    };
    // SAFETY: setsockopt reads size_of::<ip_mreqn>() bytes from a live local value.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &m as *const libc::ip_mreqn as *const libc::c_void,
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn netlink_request(msg_type: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    netlink_exchange(msg_type, flags | libc::NLM_F_ACK as u16, body).map(|_| ())
}

/// One rtnetlink request; the first answer (an NLMSG_ERROR with a code is the error). The
/// answer is awaited at most a second.
fn netlink_exchange(msg_type: u16, flags: u16, body: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: a plain netlink socket; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setting SO_RCVTIMEO from a timeval of the stated size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of_val(&tv) as u32,
        );
    }
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    let mut buf = vec![0u8; 16384];
    // SAFETY: sending our buffer; receiving into a buffer of the stated length.
    let n = unsafe {
        if libc::send(
            fd.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    if buf.len() >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(buf)
}

fn ifinfo(index: u32, up: bool) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    let flags = if up { libc::IFF_UP as u32 } else { 0 };
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    b
}

/// The VRRP virtual MAC of a VRID: 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for
/// IPv6 (RFC 5798 §7.3).
pub fn vmac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0, 0, 0x5e, 0, if ipv6 { 2 } else { 1 }, vrid]
}

/// Creates (replacing a leftover of the same name) a macvlan `name` on `parent` with the
/// virtual MAC, up, and makes ARP for the VIPs answer from it only (arp_ignore=1 on both).
/// For an IPv6 instance (`ipv6`) the VMAC keeps IPv6, to hold the VIPs and answer neighbour
/// solicitations for them with the virtual MAC (RFC 5798 §7.4), without a link-local address
/// of its own (every node's would be the same) and without DAD.
pub fn create_vmac(parent: &str, name: &str, vrid: u8, ipv6: bool) -> io::Result<u32> {
    let parent_index = ifindex(parent)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {parent}")))?;
    let _ = delete_link(name);
    // created down: the IPv6 settings must be in place before the kernel configures it
    let mut body = ifinfo(0, false);
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    push_attr(&mut body, libc::IFLA_IFNAME, &n);
    push_attr(&mut body, libc::IFLA_LINK, &parent_index.to_ne_bytes());
    push_attr(&mut body, libc::IFLA_ADDRESS, &vmac(vrid, ipv6));
    // IFLA_LINKINFO { IFLA_INFO_KIND "macvlan", IFLA_INFO_DATA { IFLA_MACVLAN_MODE private } }
    let mut data = Vec::new();
    push_attr(
        &mut data,
        1,                   /* IFLA_MACVLAN_MODE */
        &1u32.to_ne_bytes(), /* MACVLAN_MODE_PRIVATE */
    );
    let mut info = Vec::new();
    push_attr(&mut info, libc::IFLA_INFO_KIND, b"macvlan\0");
    push_attr(
        &mut info,
        libc::IFLA_INFO_DATA | 0x8000, /* NLA_F_NESTED */
        &data,
    );
    push_attr(&mut body, libc::IFLA_LINKINFO | 0x8000, &info);
    netlink_request(
        libc::RTM_NEWLINK,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        &body,
    )?;
    // ARP for the VIPs must come from the VMAC only: answer only for addresses on the
    // interface asked (arp_ignore=1), and never announce a VIP as the sender of an ARP request
    // sent from the base interface (arp_announce=2), or neighbours learn the base MAC
    for dev in [parent, name] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/arp_ignore"), "1");
        let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/arp_announce"), "2");
    }
    // no IPv6 of its own on the VMAC: every node has one with the same MAC, and link-local
    // traffic from it would make switches flap the MAC between ports (set while it is down,
    // before the kernel's router solicitation and DAD could send anything)
    let v6 = |k: &str, v: &str| std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{k}"), v);
    if ipv6 {
        let _ = v6("addr_gen_mode", "1"); // no link-local address
        let _ = v6("accept_dad", "0");
    } else {
        let _ = v6("disable_ipv6", "1");
    }
    let index = ifindex(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} vanished after creation"),
        )
    })?;
    netlink_request(libc::RTM_NEWLINK, 0, &ifinfo(index, true))?;
    Ok(index)
}

/// Deletes an interface by name.
pub fn delete_link(name: &str) -> io::Result<()> {
    let index =
        ifindex(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
    netlink_request(libc::RTM_DELLINK, 0, &ifinfo(index, false))
}

/// A raw socket that sends whole IPv4 datagrams (IP_HDRINCL) out of `ifname`: adverts leave
/// a VMAC interface, which has no address of its own, with the base interface's address.
pub fn hdrincl_socket(ifname: &str) -> io::Result<Socket> {
    let s = raw_vrrp(ifname)?;
    s.set_header_included_v4(true)?;
    s.set_multicast_loop_v4(false)?;
    Ok(s)
}

/// Prepends an IPv4 header (TTL 255, protocol 112); the kernel fills length, id and checksum.
pub fn with_ip_header(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45,
        0xc0,
        0,
        0,
        0,
        0,
        0,
        0,
        255,
        crate::vrrp::PROTO as u8,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let total = (h.len() + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// The link-local address of an interface (adverts over IPv6 come from it), from
/// /proc/net/if_inet6: "ADDR(32 hex) IFINDEX PREFIXLEN SCOPE FLAGS NAME", scope 0x20 = link.
/// Tentative addresses (flag 0x40) are skipped: they cannot be bound yet.
pub fn link_local(name: &str) -> Option<Ipv6Addr> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (addr, scope, flags, dev) = (f.first()?, f.get(3)?, f.get(4)?, f.get(5)?);
        let tentative = u32::from_str_radix(flags, 16).ok()? & 0x40 != 0;
        if *dev != name || *scope != "20" || tentative || addr.len() != 32 {
            return None;
        }
        u128::from_str_radix(addr, 16).ok().map(Ipv6Addr::from)
    })
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: an int option of the stated size on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw IPv6 VRRP socket on an interface: bound to `src` (the link-local address, or
/// unicast_src_ip), hop limit 255 for unicast and multicast, the group joined unless
/// unicast, and the hop limit and destination of each received datagram reported (RFC 5798
/// §7.1 checks the first; the checksum's pseudo-header needs the second).
pub fn vrrp_socket6(
    ifname: &str,
    index: u32,
    src: Ipv6Addr,
    group: Option<Ipv6Addr>,
) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(crate::vrrp::PROTO)),
    )?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    s.set_multicast_if_v6(index)?;
    // traffic class 0xc0 (network control), as keepalived sends
    setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 0xc0)?;
    if let Some(g) = group {
        s.join_multicast_v6(&g, index)?;
    }
    let scope = if src.is_unicast_link_local() {
        index
    } else {
        0
    };
    s.bind(&SocketAddrV6::new(src, 0, 0, scope).into())?;
    setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// What one datagram on an IPv6 raw socket came with.
pub struct Rx6 {
    pub len: usize,
    pub src: Ipv6Addr,
    pub dst: Option<Ipv6Addr>,
    pub hop_limit: Option<u8>,
}

/// Receives one datagram from an IPv6 raw socket with its source, destination and hop limit.
pub fn recv6(fd: i32, buf: &mut [u8]) -> io::Result<Rx6> {
    // SAFETY: recvmsg into our buffers of the stated sizes; the control messages are read
    // with the libc CMSG macros within the length the kernel reports.
    unsafe {
        let mut name: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 32];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of_val(&name) as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rx = Rx6 {
            len: n as usize,
            src: Ipv6Addr::from(name.sin6_addr.s6_addr),
            dst: None,
            hop_limit: None,
        };
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IPV6 {
                if (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                    let h = std::ptr::read_unaligned(data as *const i32);
                    rx.hop_limit = u8::try_from(h).ok();
                } else if (*c).cmsg_type == libc::IPV6_PKTINFO {
                    let p = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    rx.dst = Some(Ipv6Addr::from(p.ipi6_addr.s6_addr));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok(rx)
    }
}

/// The frame of an unsolicited neighbour advertisement for `ip` (RFC 4861 §7.2.6), as
/// keepalived sends one: to all nodes (ff02::1) from the address itself, hop limit 255,
/// Override set (Router too when the host forwards), with the target link-layer address.
pub fn na_frame(mac: [u8; 6], ip: Ipv6Addr, router: bool) -> Vec<u8> {
    let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136, 0, 0, 0, if router { 0xa0 } else { 0x20 }, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&ip.octets());
    pseudo.extend_from_slice(&all.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let c = crate::vrrp::csum(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Sends `count` unsolicited neighbour advertisements for `ip` from the interface.
pub fn unsolicited_na(ifname: &str, ip: Ipv6Addr, count: u32) -> io::Result<()> {
    let index = ifindex(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")))?;
    let src = mac(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no MAC for {ifname}")))?;
    let router = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .is_ok_and(|v| v.trim() == "1");
    let f = na_frame(src, ip, router);
    send_frame(index, &f, 0x86dd, [0x33, 0x33, 0, 0, 0, 1], count)
}

/// Sends an Ethernet frame `count` times from a packet socket on interface `index`.
fn send_frame(index: u32, f: &[u8], ethertype: u16, dst: [u8; 6], count: u32) -> io::Result<()> {
    // SAFETY: a packet socket we close on return; sockaddr_ll filled for sendto.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            ethertype.to_be() as i32,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = index as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst);
        for _ in 0..count.max(1) {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr() as *const libc::c_void,
                f.len(),
                0,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sll) as u32,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod link_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn unsolicited_neighbour_advertisements_are_well_formed() {
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 0x0a];
        let f = na_frame(mac, ip, false);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1], "to all nodes");
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!((f[20], f[21]), (58, 255), "ICMPv6, hop limit 255");
        assert_eq!(&f[22..38], &ip.octets(), "from the address itself");
        let icmp = &f[54..];
        assert_eq!(
            (icmp[0], icmp[4]),
            (136, 0x20),
            "NA, Override, not Solicited"
        );
        assert_eq!(&icmp[8..24], &ip.octets(), "target");
        assert_eq!(
            &icmp[24..],
            &[2, 1, 2, 0, 0, 0, 0, 0x0a],
            "target link-layer address"
        );
        // the checksum covers the pseudo-header: summing it all gives zero
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
        assert_eq!(crate::vrrp::csum(&[&pseudo, icmp]), 0);
        assert_eq!(
            na_frame(mac, ip, true)[54 + 4],
            0xa0,
            "Router when forwarding"
        );
    }

    #[test]
    fn the_kernel_answers_for_lo_and_for_a_missing_interface() {
        assert_eq!(link_state("lo").unwrap(), Some(true));
        assert_eq!(link_state("ofl-missing0").unwrap(), None);
        assert!(link_up("lo"));
        assert!(!link_up("ofl-missing0"));
    }

    #[test]
    fn a_read_error_keeps_the_last_state_and_logs_once_a_minute() {
        let t0 = Instant::now();
        let err = || Err(io::Error::from_raw_os_error(libc::EMFILE));
        let mut m = LinkMemory::default();
        assert!(m.up, "never read: assumed up");
        assert!(!m.take(&Ok(Some(false)), t0));
        assert!(!m.up);
        // errors: still down (not flipped), logged on the first and after a minute
        assert!(m.take(&err(), t0));
        assert!(!m.up);
        assert!(!m.take(&err(), t0 + Duration::from_secs(59)));
        assert!(m.take(&err(), t0 + Duration::from_secs(61)));
        assert!(!m.take(&Ok(Some(true)), t0 + Duration::from_secs(62)));
        assert!(m.up);
        // and an up link stays up through errors
        assert!(!m.take(&err(), t0 + Duration::from_secs(63)));
        assert!(m.up);
        // a missing interface is down: the kernel said so
        m.take(&Ok(None), t0 + Duration::from_secs(64));
        assert!(!m.up);
    }
}
