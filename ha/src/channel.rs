//! The VRRP socket of one instance, by family and authentication: IPv4 (protocol 112), IPv4
//! with keepalived's IPsec AH (protocol 51, whole datagrams written by ha), and IPv6
//! (protocol 112 from the interface's link-local address, hop limit 255). Opens it, reads and
//! checks adverts in a task of its own, and sends adverts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use crate::conf::{Auth, Instance};
use crate::net;
use crate::vrrp::{self, Advert};

/// What the reader hands the daemon: a valid advert from a peer, or why one was dropped.
pub type Received = Result<(IpAddr, Advert), &'static str>;

pub struct Channel {
    pub sock: Arc<AsyncFd<socket2::Socket>>,
    /// Our address in adverts: the IPv4 source, or the IPv6 link-local (or unicast) one.
    pub my_ip: IpAddr,
    /// The multicast group, or the unicast peers.
    pub dsts: Vec<IpAddr>,
    pub ifindex: u32,
    unicast: bool,
    /// AH: keepalived's one counter per instance, the sequence number of the adverts sent
    /// and the highest one accepted.
    seq: Arc<AtomicU32>,
    /// AH: the IP id of the next datagram (never 0: the kernel would replace it).
    ip_id: AtomicU16,
    /// The reader drops what it reads (another channel hears this link meanwhile).
    muted: Arc<AtomicBool>,
}

impl Channel {
    /// Opens the instance's socket; the error says what to do.
    pub fn open(c: &Instance, ifindex: u32) -> Result<Channel, String> {
        let unicast = !c.unicast_peers.is_empty();
        let (sock, my_ip, group) = if c.ipv6 {
            let src = match c.unicast_src.or(c.mcast_src) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => link_local_soon(&c.interface),
            };
            let src = src.ok_or("the interface has no usable IPv6 link-local address to send adverts from (is IPv6 on, DAD done?)")?;
            let g = c.mcast_group6;
            let s = net::vrrp_socket6(&c.interface, ifindex, src, (!unicast).then_some(g));
            (s, IpAddr::V6(src), IpAddr::V6(g))
        } else {
            let vips: Vec<Ipv4Addr> = c.vips.iter().filter_map(|v| v4(v.addr)).collect();
            let src = c
                .unicast_src
                .or(c.mcast_src)
                .and_then(v4)
                .or_else(|| net::primary_ipv4(&c.interface, &vips))
                .ok_or("the interface has no IPv4 address to send adverts from")?;
            let g = c.mcast_group;
            let ah = matches!(c.auth, Auth::Ah(_));
            let s = net::vrrp_socket(&c.interface, ifindex, src, (!unicast).then_some(g), ah);
            (s, IpAddr::V4(src), IpAddr::V4(g))
        };
        let sock = sock.map_err(|e| format!("cannot open the VRRP socket (are we root?): {e}"))?;
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd, which keeps it
        // open until the AsyncFd is dropped.
        let sock = unsafe { AsyncFd::register(sock) }
            .map_err(|e| format!("cannot register the VRRP socket: {e}"))?;
        Ok(Channel {
            sock: Arc::new(sock),
            my_ip,
            dsts: if unicast {
                c.unicast_peers.clone()
            } else {
                vec![group]
            },
            ifindex,
            unicast,
            seq: Arc::new(AtomicU32::new(0)),
            ip_id: AtomicU16::new(0),
            muted: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens an instance's channel on its VMAC interface `name` (index `index`), from
    /// `base`'s address, as keepalived hears the link (and for IPv6 sends) on the VMAC. For
    /// IPv6 the base interface's link-local address goes onto the VMAC (without DAD) first,
    /// so that the adverts leave with the virtual MAC and the same source as before. The AH
    /// sequence counter stays the instance's one.
    pub fn open_vmac(
        c: &Instance,
        base: &Channel,
        name: &str,
        index: u32,
    ) -> Result<Channel, String> {
        if let IpAddr::V6(src) = base.my_ip {
            if src.is_unicast_link_local() {
                let ll = crate::conf::Vip {
                    addr: base.my_ip,
                    prefix: 64,
                    nodad: true,
                    brd: None,
                    dev: None,
                    scope: None,
                    label: None,
                };
                net::set_vip(index, &ll, true).map_err(|e| {
                    format!("cannot put the link-local address {src} on {name}: {e}")
                })?;
            }
        }
        let mut on_vmac = c.clone();
        on_vmac.interface = name.to_string();
        on_vmac.mcast_src = Some(base.my_ip);
        on_vmac.unicast_src = None;
        let mut ch = Channel::open(&on_vmac, index)?;
        ch.seq = base.seq.clone();
        Ok(ch)
    }

    /// Whether the reader acts on what it reads: a multicast channel on the base interface is
    /// muted while the VMAC's channel hears the link (the peers' adverts reach both when they
    /// come from a base interface, and only the VMAC when they come from the virtual MAC).
    pub fn mute(&self, on: bool) {
        if !self.unicast {
            self.muted.store(on, Ordering::SeqCst);
        }
    }

    /// Whether this channel's destinations are unicast peers.
    pub fn is_unicast(&self) -> bool {
        self.unicast
    }

    /// Reads adverts until the socket goes; each valid one from a peer, or the reason one
    /// was dropped, goes to `out`.
    pub fn reader(
        &self,
        c: &Instance,
        out: impl Fn(Received) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let sock = self.sock.clone();
        let seq = self.seq.clone();
        let muted = self.muted.clone();
        let (version, auth, vrid, peers, me) = (
            c.version,
            c.auth.clone(),
            c.vrid,
            c.unicast_peers.clone(),
            self.my_ip,
        );
        let (ipv6, unicast) = (c.ipv6, self.unicast);
        let group6 = c.mcast_group6;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok(mut guard) = sock.readable().await else {
                    return;
                };
                let r = guard.try_io(|s| {
                    let fd = s.get_ref().as_raw_fd();
                    if ipv6 {
                        net::recv6(fd, &mut buf).map(Some)
                    } else {
                        recv(fd, &mut buf).map(|n| {
                            Some(net::Rx6 {
                                len: n,
                                src: Ipv6Addr::UNSPECIFIED,
                                dst: None,
                                hop_limit: None,
                            })
                        })
                    }
                });
                let Ok(Ok(Some(rx))) = r else { continue };
                if muted.load(Ordering::SeqCst) {
                    continue;
                }
                let pkt = &buf[..rx.len.min(buf.len())];
                let got = if ipv6 {
                    if IpAddr::V6(rx.src) == me || pkt.get(1) != Some(&vrid) {
                        continue; // ours, or another virtual router on this link
                    }
                    let dst = rx.dst.unwrap_or(group6);
                    // unicast adverts may cross routers: the hop limit is checked for multicast
                    let hops = if unicast { None } else { rx.hop_limit };
                    vrrp::decode6(pkt, rx.src, dst, hops).map(|a| (IpAddr::V6(rx.src), a))
                } else {
                    if pkt.len() >= 20 && pkt[12..16] == ip4_octets(me) {
                        continue; // our own, looped back by a VMAC
                    }
                    let checked = match &auth {
                        Auth::Ah(key) => {
                            if crate::ah::vrid(pkt).is_some_and(|v| v != vrid) {
                                continue;
                            }
                            let mut last = seq.load(Ordering::SeqCst);
                            let r = crate::ah::verify(pkt, key, unicast, &mut last);
                            seq.fetch_max(last, Ordering::SeqCst);
                            r
                        }
                        _ => {
                            let ihl = (pkt.first().copied().unwrap_or(0) as usize & 0x0f) * 4;
                            if pkt.len() >= 22 && pkt.get(ihl + 1).is_some_and(|v| *v != vrid) {
                                continue; // another virtual router on this link
                            }
                            Ok(())
                        }
                    };
                    checked
                        .and_then(|()| vrrp::decode(pkt, version, &auth))
                        .map(|(from, _, a)| (IpAddr::V4(from), a))
                };
                match got {
                    Ok((_, a)) if a.vrid != vrid => {}
                    Ok((from, _)) if !peers.is_empty() && !peers.contains(&from) => {
                        out(Err("unicast_not_a_peer"))
                    }
                    Ok(x) => out(Ok(x)),
                    Err(e) => out(Err(e.reason())),
                }
            }
        })
    }

    /// Sends one advert to every destination, from `vmac_tx` (whole IPv4 datagrams out of
    /// the VMAC interface) when given. Returns how many went out; the last error otherwise.
    pub fn send(
        &self,
        a: &Advert,
        auth: &Auth,
        vmac_tx: Option<&socket2::Socket>,
    ) -> (u32, Option<std::io::Error>) {
        let (mut sent, mut err) = (0, None);
        for dst in &self.dsts {
            let r = match (self.my_ip, *dst) {
                (IpAddr::V6(src), IpAddr::V6(d)) => {
                    let payload = vrrp::encode6(a, src, d);
                    let link = d.is_multicast() || d.is_unicast_link_local();
                    let scope = if link { self.ifindex } else { 0 };
                    let to = SocketAddrV6::new(d, 0, 0, scope);
                    self.sock.get_ref().send_to(&payload, &to.into())
                }
                (IpAddr::V4(src), IpAddr::V4(d)) => {
                    let payload = vrrp::encode(a, auth, src, d);
                    let to = SocketAddrV4::new(d, 0).into();
                    match (auth, vmac_tx) {
                        (Auth::Ah(key), tx) => {
                            let seq = self.seq.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
                            let mut id = self.ip_id.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
                            if id == 0 {
                                id = self.ip_id.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
                            }
                            let pkt = crate::ah::seal(src, d, id, seq, &payload, key, self.unicast);
                            tx.unwrap_or(self.sock.get_ref()).send_to(&pkt, &to)
                        }
                        (_, Some(tx)) => tx.send_to(&net::with_ip_header(src, d, &payload), &to),
                        (_, None) => self.sock.get_ref().send_to(&payload, &to),
                    }
                }
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{dst} is not of the instance's family"),
                )),
            };
            match r {
                Ok(_) => sent += 1,
                Err(e) => err = Some(e),
            }
        }
        (sent, err)
    }
}

/// The interface's link-local address, waiting up to 3 s for duplicate address detection
/// (an interface that just came up has only a tentative one, which cannot be bound).
fn link_local_soon(ifname: &str) -> Option<Ipv6Addr> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if let Some(a) = net::link_local(ifname) {
            return Some(a);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn ip4_octets(a: IpAddr) -> [u8; 4] {
    v4(a).map_or([0; 4], |a| a.octets())
}

fn recv(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: reading into our buffer from a raw socket we own.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
