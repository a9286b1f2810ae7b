//! IPv6 router advertisements for a provisioning network, as dnsmasq's `enable-ra`: answers
//! router solicitations on an interface at once and advertises unsolicited every
//! [`UNSOLICITED_EVERY`], with router lifetime 0 (not a default router) unless configured, no
//! prefixes, M and O clear (no DHCPv6).
//!
//! Why: iPXE (and other PXE stacks) configure IPv6 beside DHCPv4 and wait for a router
//! advertisement before booting; on a network without one, iPXE waits about 13 s after the
//! DHCP ACK. One RA that says "no router, no DHCPv6" ends that wait.
//!
//! Hand-written on a raw ICMPv6 socket (socket2): an RA is 24 bytes and the kernel computes
//! the ICMPv6 checksum; no crate does this small job without a full router daemon.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// How often an unsolicited advertisement goes out.
pub const UNSOLICITED_EVERY: Duration = Duration::from_secs(60);
/// At most this many solicited advertisements per second and interface (a solicitation flood
/// does not become an advertisement flood).
const MAX_ANSWERS_PER_SEC: u32 = 10;

/// What the advertisements say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Router lifetime in seconds; 0: this host is not a default router.
    pub router_lifetime: u16,
    /// The interface's MAC, sent as the source link-layer address option.
    pub mac: Option<[u8; 6]>,
}

impl Advert {
    /// The ICMPv6 message (RFC 4861 4.2); the checksum is left 0 for the kernel.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
        m.push(64); // cur hop limit
        m.push(0); // M = 0, O = 0
        m.extend_from_slice(&self.router_lifetime.to_be_bytes());
        m.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified
        if let Some(mac) = self.mac {
            m.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
            m.extend_from_slice(&mac);
        }
        m
    }
}

/// Whether an ICMPv6 message (as a raw socket delivers it, without the IPv6 header) is a
/// well-formed router solicitation (RFC 4861 6.1.1: code 0, 8 bytes or more).
pub fn is_solicitation(msg: &[u8]) -> bool {
    msg.len() >= 8 && msg[0] == ROUTER_SOLICITATION && msg[1] == 0
}

fn mac_of(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

fn index_of(iface: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// The advertiser of one interface: a raw ICMPv6 socket bound to it, in the all-routers group.
pub struct Responder {
    iface: String,
    index: u32,
    sock: Socket,
    advert: Vec<u8>,
}

impl Responder {
    /// Opens the socket on `iface` (needs CAP_NET_RAW).
    pub fn open(iface: &str, router_lifetime: u16) -> io::Result<Responder> {
        let index = index_of(iface)?;
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        sock.bind_device(Some(iface.as_bytes()))?;
        // RFC 4861: hop limit 255 on everything neighbour discovery sends
        sock.set_multicast_hops_v6(255)?;
        sock.set_unicast_hops_v6(255)?;
        sock.set_multicast_if_v6(index)?;
        sock.set_multicast_loop_v6(false)?;
        sock.join_multicast_v6(&"ff02::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED), index)?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let advert = Advert {
            router_lifetime,
            mac: mac_of(iface),
        }
        .encode();
        Ok(Responder {
            iface: iface.to_string(),
            index,
            sock,
            advert,
        })
    }

    /// Sends one advertisement to all nodes (ff02::1).
    pub fn advertise(&self) -> io::Result<()> {
        let to = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, self.index);
        self.sock.send_to(&self.advert, &to.into()).map(|_| ())
    }

    /// Answers solicitations and advertises periodically, forever.
    pub fn run(self) {
        let mut next_unsolicited = Instant::now();
        let mut window = (Instant::now(), 0u32);
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        let mut send_failed = false;
        loop {
            let now = Instant::now();
            let mut due = now >= next_unsolicited;
            if due {
                next_unsolicited = now + UNSOLICITED_EVERY;
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    // SAFETY: recv_from initialised the first n bytes.
                    let msg: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    if is_solicitation(&msg) {
                        let now = Instant::now();
                        if now.duration_since(window.0) >= Duration::from_secs(1) {
                            window = (now, 0);
                        }
                        window.1 += 1;
                        if window.1 <= MAX_ANSWERS_PER_SEC {
                            debug!(interface = %self.iface, from = ?from.as_socket_ipv6(), "router solicitation: advertising");
                            due = true;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    warn!(interface = %self.iface, "router advertisements: receive failed: {e}")
                }
            }
            if due {
                match self.advertise() {
                    Ok(()) => send_failed = false,
                    // e.g. no link-local address yet (DAD): said once, retried
                    Err(e) if !send_failed => {
                        send_failed = true;
                        warn!(interface = %self.iface, "cannot send a router advertisement: {e}");
                        next_unsolicited = Instant::now() + Duration::from_secs(1);
                    }
                    Err(_) => next_unsolicited = Instant::now() + Duration::from_secs(1),
                }
            }
        }
    }
}

/// Starts a responder thread per interface; an interface whose socket cannot be opened is an
/// error naming it.
pub fn spawn(ifaces: &[String], router_lifetime: u16) -> anyhow::Result<()> {
    for i in ifaces {
        let r = Responder::open(i, router_lifetime).map_err(|e| {
            anyhow::anyhow!(
                "router advertisements on {i}: {e} (needs CAP_NET_RAW and IPv6 on the interface)"
            )
        })?;
        std::thread::Builder::new()
            .name(format!("ra-{i}"))
            .spawn(move || r.run())?;
        info!(interface = %i, router_lifetime, "answering IPv6 router solicitations");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advert_says_no_router_no_dhcpv6_and_our_mac() {
        let a = Advert {
            router_lifetime: 0,
            mac: Some([0x52, 0x54, 0, 0x99, 0, 2]),
        };
        assert_eq!(
            a.encode(),
            [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x99, 0, 2]
        );
        let b = Advert {
            router_lifetime: 1800,
            mac: None,
        };
        assert_eq!(b.encode()[6..8], [0x07, 0x08]);
        assert_eq!(b.encode().len(), 16);
    }

    #[test]
    fn only_a_well_formed_solicitation_is_answered() {
        assert!(is_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(is_solicitation(&[
            133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6
        ]));
        assert!(!is_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0]));
        assert!(!is_solicitation(&[133, 0, 0, 0]));
        assert!(!is_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_solicitation(&[]));
    }
}
