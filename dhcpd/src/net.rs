//! Interfaces and sockets: one UDP socket on port 67 per interface (SO_BINDTODEVICE), and
//! delivery of replies to relays, addressed clients, broadcast, or the link layer (an ARP
//! entry for the new address, then a unicast: what ISC dhcpd and dnsmasq do).

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::engine::{Dest, Iface, Reply};

/// IPv4 interfaces of this host (the first address of each), loopback excluded.
pub fn interfaces() -> io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = Vec::new();
    for (name, addr, prefix) in opsflow_common::ipv4_interfaces() {
        if out.iter().any(|i| i.name == name) {
            continue;
        }
        let index = CString::new(name.clone())
            .map(|c| {
                // SAFETY: NUL-terminated name.
                unsafe { libc::if_nametoindex(c.as_ptr()) }
            })
            .unwrap_or(0);
        out.push(Iface {
            name,
            index,
            addr,
            prefix,
        });
    }
    Ok(out)
}

/// Datagrams taken or sent with one system call, at most.
pub const BATCH: usize = 64;
/// Room for one request (a DHCP message fits an Ethernet frame; 4 KiB leaves room for jumbo).
const SLOT: usize = 4096;

/// Buffers for [`Port::receive`], reused from one call to the next.
pub struct Received {
    buf: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    from: Vec<libc::sockaddr_in>,
    len: Vec<usize>,
    n: usize,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            buf: vec![0; BATCH * SLOT],
            // SAFETY: iovec and mmsghdr are plain C data; all-zero is valid (and set before
            // use by `Port::receive`).
            iov: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdr: vec![unsafe { std::mem::zeroed() }; BATCH],
            // SAFETY: sockaddr_in is plain C data; all-zero is valid.
            from: vec![unsafe { std::mem::zeroed() }; BATCH],
            len: vec![0; BATCH],
            n: 0,
        }
    }
}

impl Received {
    /// How many datagrams the last [`Port::receive`] took.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The datagrams of the last [`Port::receive`], with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddrV4)> {
        (0..self.n).map(|i| {
            let a = &self.from[i];
            let from = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            );
            (&self.buf[i * SLOT..i * SLOT + self.len[i]], from)
        })
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain C data; all-zero is valid.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Sets a socket buffer to `bytes`: with the FORCE option when the process may (root,
/// CAP_NET_ADMIN), so that `net.core.rmem_max` (208 KiB on a fresh Debian: a few hundred
/// requests, a few milliseconds of a stalled thread at 20,000 DORA/s) does not cap it; else as
/// much as the sysctl allows.
fn buffer(s: &Socket, force: libc::c_int, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt on an open socket with an int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = if force == libc::SO_RCVBUFFORCE {
            s.set_recv_buffer_size(bytes)
        } else {
            s.set_send_buffer_size(bytes)
        };
    }
}

/// A socket serving one interface.
pub struct Port {
    pub iface: Iface,
    pub sock: UdpSocket,
}

impl Port {
    /// Binds 0.0.0.0:`port` on the interface only.
    pub fn bind(iface: Iface, port: u16) -> io::Result<Port> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        s.bind_device(Some(iface.name.as_bytes()))?;
        buffer(&s, libc::SO_RCVBUFFORCE, 4 << 20);
        buffer(&s, libc::SO_SNDBUFFORCE, 4 << 20);
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        Ok(Port {
            iface,
            sock: s.into(),
        })
    }

    /// Where a reply goes (a unicast to a client without an address first gets an ARP entry;
    /// if that fails, the reply is broadcast).
    fn target(&self, r: &Reply) -> SocketAddrV4 {
        match &r.dest {
            Dest::Relay(ip) => SocketAddrV4::new(*ip, 67),
            Dest::Unicast(ip) => SocketAddrV4::new(*ip, 68),
            Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            Dest::Link { ip, mac } => {
                if self.set_arp(*ip, *mac).is_ok() {
                    SocketAddrV4::new(*ip, 68)
                } else {
                    SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
                }
            }
        }
    }

    /// Sends replies with as few `sendmmsg` calls as it takes (one unless one fails); the
    /// outcome of each, in order, is passed to `done`.
    pub fn deliver_all<'a>(
        &self,
        replies: impl IntoIterator<Item = &'a Reply>,
        mut done: impl FnMut(usize, io::Result<()>),
    ) {
        let replies: Vec<&Reply> = replies.into_iter().collect();
        for (start, chunk) in (0..replies.len())
            .step_by(BATCH)
            .map(|s| (s, &replies[s..(s + BATCH).min(replies.len())]))
        {
            let mut to: Vec<libc::sockaddr_in> =
                chunk.iter().map(|r| sockaddr(self.target(r))).collect();
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|r| libc::iovec {
                    iov_base: r.bytes.as_ptr() as *mut libc::c_void,
                    iov_len: r.bytes.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain C data; all-zero is a valid empty header.
            let mut hdr: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; chunk.len()];
            for (i, h) in hdr.iter_mut().enumerate() {
                h.msg_hdr.msg_name = (&mut to[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
            }
            let mut i = 0;
            while i < chunk.len() {
                // SAFETY: the headers point into `to` and `iov` (and the replies' bytes), which
                // outlive the call; the count is the headers' length from `i`.
                let n = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        hdr[i..].as_mut_ptr(),
                        (chunk.len() - i) as u32,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // the first message failed: report it, go on with the next
                    done(start + i, Err(e));
                    i += 1;
                } else {
                    for k in i..i + n as usize {
                        done(start + k, Ok(()));
                    }
                    i += n as usize;
                }
            }
        }
    }

    /// Waits for at least one datagram, then takes up to [`BATCH`] that are queued, with one
    /// `recvmmsg`; returns how many.
    pub fn receive(&self, b: &mut Received) -> io::Result<usize> {
        // the headers point into `b` itself: set again on every call (no allocation)
        for (i, c) in b.buf.chunks_mut(SLOT).enumerate() {
            b.iov[i] = libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            };
        }
        for (i, h) in b.hdr.iter_mut().enumerate() {
            // SAFETY: msghdr is plain C data; all-zero is a valid empty header.
            h.msg_hdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut b.from[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_hdr.msg_iov = &mut b.iov[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let hdr = &mut b.hdr;
        loop {
            // SAFETY: BATCH headers, each pointing at a SLOT-sized part of `b.buf` and at an
            // entry of `b.from`, all alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    hdr.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                b.n = n as usize;
                for (i, h) in hdr.iter().take(b.n).enumerate() {
                    b.len[i] = (h.msg_len as usize).min(SLOT);
                }
                return Ok(b.n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Adds a (temporary) ARP entry so a unicast to a client without an address reaches it.
    fn set_arp(&self, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        let dev = CString::new(self.iface.name.clone())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: arpreq is plain C data; we fill the fields SIOCSARP reads and pass a valid
        // socket descriptor.
        unsafe {
            let mut req: libc::arpreq = std::mem::zeroed();
            let pa = &mut req.arp_pa as *mut libc::sockaddr as *mut libc::sockaddr_in;
            (*pa).sin_family = libc::AF_INET as u16;
            (*pa).sin_addr.s_addr = u32::from(ip).to_be();
            req.arp_ha.sa_family = libc::ARPHRD_ETHER;
            for (i, b) in mac.iter().enumerate() {
                req.arp_ha.sa_data[i] = *b as libc::c_char;
            }
            req.arp_flags = libc::ATF_COM;
            let name = dev.as_bytes_with_nul();
            for (i, b) in name.iter().take(req.arp_dev.len() - 1).enumerate() {
                req.arp_dev[i] = *b as libc::c_char;
            }
            if libc::ioctl(
                self.sock.as_raw_fd(),
                libc::SIOCSARP,
                &req as *const libc::arpreq,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_not_capped_by_the_sysctl_for_root() {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        // more than any rmem_max/wmem_max of this machine or a fresh Debian
        buffer(&s, libc::SO_RCVBUFFORCE, 64 << 20);
        buffer(&s, libc::SO_SNDBUFFORCE, 64 << 20);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var("CI").is_err(), "CI runs the tests as root");
            eprintln!("skipped: the FORCE options need root");
            return;
        }
        // the kernel doubles what is asked, for its bookkeeping
        assert!(s.recv_buffer_size().unwrap() >= 128 << 20);
        assert!(s.send_buffer_size().unwrap() >= 128 << 20);
    }
}
