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
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        Ok(Port {
            iface,
            sock: s.into(),
        })
    }

    /// Sends a reply where it belongs.
    pub fn deliver(&self, r: &Reply) -> io::Result<()> {
        let to = match &r.dest {
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
        };
        self.sock.send_to(&r.bytes, to).map(|_| ())
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
