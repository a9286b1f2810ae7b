//! ISC dhcpd's per-transaction log lines, in its wording, because they are what operators grep
//! for: `DHCPDISCOVER from MAC via IF`, `DHCPACK on IP to MAC (host) via IF`, ... "via" is the
//! relay's address for a relayed packet, else the interface, as in ISC.
//!
//! Logged at info through one rate limiter: under a flood a few lines per second get out and
//! the next one that does carries the count of those suppressed.

use std::net::Ipv4Addr;
use std::time::Duration;

use opsflow_common::ratelimit::RateLimit;
use tracing::info;

use crate::engine::Reply;
use crate::wire::{Msg, MsgType, OPT_HOST_NAME, OPT_REQUESTED_IP, OPT_SERVER_ID};

static LIMIT: RateLimit = RateLimit::new(200, Duration::from_secs(1));

/// Logs one line through the rate limiter.
pub fn log(line: &str) {
    if let Some(suppressed) = gate() {
        emit(line, suppressed);
    }
}

/// The rate limiter's verdict on the next line, asked before the line is built (under a
/// flood, formatting lines that are then suppressed cost several per cent of the CPU per
/// DORA): `Some(lines suppressed before it)` when it may be logged with [`emit`].
pub fn gate() -> Option<u64> {
    LIMIT.check()
}

/// Logs a line that [`gate`] let through.
pub fn emit(line: &str, suppressed: u64) {
    if suppressed == 0 {
        info!(target: "dhcpd::isc", "{line}");
    } else {
        info!(target: "dhcpd::isc", suppressed, "{line}");
    }
}

fn mac(msg: &Msg) -> String {
    let hw = msg.hw();
    if hw.is_empty() {
        return "(no hardware address)".into();
    }
    hw.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `(name) ` from the client's host-name option, or nothing.
fn host(msg: &Msg) -> String {
    match msg.option(OPT_HOST_NAME) {
        Some(h) if !h.is_empty() => {
            let name: String = String::from_utf8_lossy(h)
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            format!("({name}) ")
        }
        _ => String::new(),
    }
}

fn via(msg: &Msg, iface: &str) -> String {
    if msg.giaddr.is_unspecified() {
        iface.to_string()
    } else {
        msg.giaddr.to_string()
    }
}

/// The line for a request, as ISC logs it on receipt. `None` for messages a server does not
/// receive (replies).
pub fn request(msg: &Msg, iface: &str) -> Option<String> {
    let (m, h, v) = (mac(msg), host(msg), via(msg, iface));
    let requested = msg.option_ip(OPT_REQUESTED_IP);
    let Some(kind) = msg.msg_type() else {
        return Some(format!("BOOTREQUEST from {m} via {v}"));
    };
    Some(match kind {
        MsgType::Discover => format!("DHCPDISCOVER from {m} {h}via {v}"),
        MsgType::Request => {
            let ip = requested.unwrap_or(msg.ciaddr);
            let sid = msg
                .option_ip(OPT_SERVER_ID)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            format!("DHCPREQUEST for {ip}{sid} from {m} {h}via {v}")
        }
        MsgType::Release => format!("DHCPRELEASE of {} from {m} {h}via {v}", msg.ciaddr),
        MsgType::Decline => {
            let ip = requested.unwrap_or(Ipv4Addr::UNSPECIFIED);
            format!("DHCPDECLINE of {ip} from {m} {h}via {v}")
        }
        MsgType::Inform => format!("DHCPINFORM from {} via {v}", msg.ciaddr),
        _ => return None,
    })
}

/// The line for a reply to `msg`: OFFER, ACK (also the answer to an INFORM) or NAK.
pub fn reply(msg: &Msg, r: &Reply, iface: &str) -> Option<String> {
    let (m, h, v) = (mac(msg), host(msg), via(msg, iface));
    let yiaddr = r
        .bytes
        .get(16..20)
        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    if r.bootp {
        return Some(format!("BOOTREPLY for {yiaddr} to {m} via {v}"));
    }
    Some(match r.kind {
        MsgType::Offer => format!("DHCPOFFER on {yiaddr} to {m} {h}via {v}"),
        MsgType::Ack if msg.msg_type() == Some(MsgType::Inform) => {
            format!("DHCPACK to {} ({m}) via {v}", msg.ciaddr)
        }
        MsgType::Ack => format!("DHCPACK on {yiaddr} to {m} {h}via {v}"),
        MsgType::Nak => {
            let ip = msg.option_ip(OPT_REQUESTED_IP).unwrap_or(msg.ciaddr);
            format!("DHCPNAK on {ip} to {m} via {v}")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dest;
    use crate::wire::request as req;

    const MAC: [u8; 6] = [2, 0x92, 4, 0, 0, 0x0d];

    fn parsed(kind: MsgType, opts: &[(u8, &[u8])]) -> Msg {
        Msg::parse(&req(kind, MAC, 1, opts)).unwrap()
    }

    fn answer(kind: MsgType, yiaddr: [u8; 4]) -> Reply {
        let mut m = parsed(kind, &[]);
        m.yiaddr = yiaddr.into();
        Reply {
            bytes: m.encode(576),
            dest: Dest::Broadcast,
            kind,
            bootp: false,
        }
    }

    #[test]
    fn lines_in_isc_wording() {
        let d = parsed(MsgType::Discover, &[]);
        assert_eq!(
            request(&d, "eth0").unwrap(),
            "DHCPDISCOVER from 02:92:04:00:00:0d via eth0"
        );
        let off = answer(MsgType::Offer, [10, 92, 4, 100]);
        assert_eq!(
            reply(&d, &off, "eth0").unwrap(),
            "DHCPOFFER on 10.92.4.100 to 02:92:04:00:00:0d via eth0"
        );
        let r = parsed(
            MsgType::Request,
            &[
                (OPT_REQUESTED_IP, &[10, 92, 4, 100]),
                (OPT_SERVER_ID, &[10, 92, 4, 1]),
                (OPT_HOST_NAME, b"node7"),
            ],
        );
        assert_eq!(
            request(&r, "eth0").unwrap(),
            "DHCPREQUEST for 10.92.4.100 (10.92.4.1) from 02:92:04:00:00:0d (node7) via eth0"
        );
        let ack = answer(MsgType::Ack, [10, 92, 4, 100]);
        assert_eq!(
            reply(&r, &ack, "eth0").unwrap(),
            "DHCPACK on 10.92.4.100 to 02:92:04:00:00:0d (node7) via eth0"
        );
        let nak = answer(MsgType::Nak, [0, 0, 0, 0]);
        assert_eq!(
            reply(&r, &nak, "eth0").unwrap(),
            "DHCPNAK on 10.92.4.100 to 02:92:04:00:00:0d via eth0"
        );
        let mut rel = parsed(MsgType::Release, &[]);
        rel.ciaddr = Ipv4Addr::new(10, 92, 4, 100);
        rel.giaddr = Ipv4Addr::new(10, 94, 5, 9);
        assert_eq!(
            request(&rel, "eth0").unwrap(),
            "DHCPRELEASE of 10.92.4.100 from 02:92:04:00:00:0d via 10.94.5.9",
            "a relayed packet names the relay"
        );
        let dec = parsed(MsgType::Decline, &[(OPT_REQUESTED_IP, &[10, 92, 4, 101])]);
        assert_eq!(
            request(&dec, "eth0").unwrap(),
            "DHCPDECLINE of 10.92.4.101 from 02:92:04:00:00:0d via eth0"
        );
        let mut inf = parsed(MsgType::Inform, &[]);
        inf.ciaddr = Ipv4Addr::new(10, 92, 4, 7);
        assert_eq!(
            request(&inf, "eth0").unwrap(),
            "DHCPINFORM from 10.92.4.7 via eth0"
        );
    }
}
