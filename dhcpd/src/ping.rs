//! `ping-check`: an ICMP echo to an address before it is offered, as ISC dhcpd does. One
//! thread owns a raw ICMP socket and every probe in flight: it sends the echo when a probe
//! arrives, collects replies, and reports each probe once, answered or timed out, to a
//! callback (the server, which tells the engine and handles the request again).

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, warn};

/// A probe asked for by the engine, with what is needed to handle the request again.
#[derive(Debug)]
pub struct Probe {
    pub ip: Ipv4Addr,
    pub timeout: u32,
    pub abandon: u32,
    /// The interface (server port index) and raw packet of the request that led to it.
    pub port: usize,
    pub raw: Vec<u8>,
}

/// Requests waiting on one address's probe (a client's retransmissions): at most this many.
const WAITING_PER_ADDRESS: usize = 8;

/// An ICMP echo request with identifier `id` and sequence `seq`.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"opsflow dhcpd ping-check");
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The RFC 1071 Internet checksum.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The source of an echo reply carrying `id`, from a packet read on a raw ICMP socket (IPv4
/// header included); `None` for anything else. Never panics.
pub fn echo_reply_from(pkt: &[u8], id: u16) -> Option<Ipv4Addr> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    let icmp = pkt.get(ihl..)?;
    let src = pkt.get(12..16)?;
    (icmp.len() >= 8 && icmp[0] == 0 && icmp[1] == 0 && icmp[4..6] == id.to_be_bytes())
        .then(|| Ipv4Addr::new(src[0], src[1], src[2], src[3]))
}

/// Runs the prober until every sender of `rx` is gone. `done(probe, answered)` is called once
/// per probe. The raw socket is opened at the first probe; without one (no CAP_NET_RAW) every
/// probe is reported unanswered at once, after one warning that says so.
pub fn run(rx: Receiver<Probe>, done: impl Fn(Probe, bool)) {
    let mut opened = false;
    let mut sock = None;
    let id = (std::process::id() & 0xffff) as u16;
    let mut seq = 0u16;
    let mut pending: HashMap<Ipv4Addr, (Instant, Vec<Probe>)> = HashMap::new();
    let mut buf = [0u8; 1500];
    loop {
        let next = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(10))
        };
        match next {
            Ok(p) => {
                if !opened {
                    opened = true;
                    sock = open()
                        .inspect_err(|e| warn!(error = %e, "ping-check: cannot open a raw ICMP socket (needs CAP_NET_RAW); addresses are offered without a conflict probe"))
                        .ok();
                }
                let Some(s) = &sock else {
                    done(p, false);
                    continue;
                };
                if let Some((_, waiting)) = pending.get_mut(&p.ip) {
                    if waiting.len() < WAITING_PER_ADDRESS {
                        waiting.push(p);
                    }
                    continue;
                }
                seq = seq.wrapping_add(1);
                let to = SockAddr::from(SocketAddrV4::new(p.ip, 0));
                if let Err(e) = s.send_to(&echo_request(id, seq), &to) {
                    // unreachable from here: nothing to conflict with on a path we have
                    debug!(ip = %p.ip, error = %e, "ping-check: echo not sent");
                    done(p, false);
                    continue;
                }
                let deadline = Instant::now() + Duration::from_secs(p.timeout.into());
                pending.insert(p.ip, (deadline, vec![p]));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Some(mut s) = sock.as_ref() {
            while let Ok(n) = s.read(&mut buf) {
                let Some(from) = echo_reply_from(&buf[..n], id) else {
                    continue;
                };
                if let Some((_, waiting)) = pending.remove(&from) {
                    for p in waiting {
                        done(p, true);
                    }
                }
            }
        }
        let now = Instant::now();
        let expired: Vec<Ipv4Addr> = pending
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in expired {
            if let Some((_, waiting)) = pending.remove(&ip) {
                for p in waiting {
                    done(p, false);
                }
            }
        }
    }
}

fn open() -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero_and_replies_are_recognised() {
        let req = echo_request(0x1234, 7);
        assert_eq!(checksum(&req), 0, "a correct checksum sums to zero");
        let mut reply = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 93, 1, 50, 10, 93, 1, 1,
        ];
        let mut icmp = req.clone();
        icmp[0] = 0;
        reply.extend_from_slice(&icmp);
        assert_eq!(
            echo_reply_from(&reply, 0x1234),
            Some(Ipv4Addr::new(10, 93, 1, 50))
        );
        assert_eq!(echo_reply_from(&reply, 0x1235), None, "another pinger's");
        let mut unreachable = reply.clone();
        unreachable[20] = 3;
        assert_eq!(echo_reply_from(&unreachable, 0x1234), None);
        for n in 0..reply.len() {
            let _ = echo_reply_from(&reply[..n], 0x1234);
        }
        assert_eq!(echo_reply_from(&[0x4f], 1), None);
    }
}
