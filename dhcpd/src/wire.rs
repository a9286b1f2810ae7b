//! DHCPv4 messages on the wire (RFC 2131, 2132, 3396). Parsing never panics.
//!
//! Our own codec rather than `dhcproto`: the reply's options must follow the client's
//! parameter request list in order, options longer than 255 bytes must be split (RFC 3396),
//! the `file` and `sname` fields may carry options (overload), and every received option must
//! stay available as raw bytes for `dhcpd.conf` expressions. `dhcproto` keeps options in a
//! map and decides the order itself.

use std::net::Ipv4Addr;

pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// Smallest message a BOOTP relay or client must accept; replies are padded to it.
pub const MIN_LEN: usize = 300;

pub const OPT_PAD: u8 = 0;
pub const OPT_END: u8 = 255;
pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_HOST_NAME: u8 = 12;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_OVERLOAD: u8 = 52;
pub const OPT_MSG_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PRL: u8 = 55;
pub const OPT_MESSAGE: u8 = 56;
pub const OPT_MAX_SIZE: u8 = 57;
pub const OPT_T1: u8 = 58;
pub const OPT_T2: u8 = 59;
pub const OPT_VENDOR_CLASS: u8 = 60;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_TFTP_SERVER: u8 = 66;
pub const OPT_BOOTFILE: u8 = 67;
pub const OPT_RELAY_AGENT: u8 = 82;
pub const OPT_SUBNET_SELECTION: u8 = 118;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MsgType {
    pub fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Discover,
            2 => MsgType::Offer,
            3 => MsgType::Request,
            4 => MsgType::Decline,
            5 => MsgType::Ack,
            6 => MsgType::Nak,
            7 => MsgType::Release,
            8 => MsgType::Inform,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Discover => "discover",
            MsgType::Offer => "offer",
            MsgType::Request => "request",
            MsgType::Decline => "decline",
            MsgType::Ack => "ack",
            MsgType::Nak => "nak",
            MsgType::Release => "release",
            MsgType::Inform => "inform",
        }
    }
}

/// Why a datagram was dropped (also the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    Short,
    NotRequest,
    BadMagic,
    BadHlen,
    Truncated,
    BadType,
}

impl WireError {
    pub fn reason(self) -> &'static str {
        match self {
            WireError::Short => "short",
            WireError::NotRequest => "not_bootrequest",
            WireError::BadMagic => "bad_magic",
            WireError::BadHlen => "bad_hlen",
            WireError::Truncated => "truncated_option",
            WireError::BadType => "bad_message_type",
        }
    }
}

/// A parsed message (request or reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    pub sname: Vec<u8>,
    pub file: Vec<u8>,
    /// Options in order of first appearance; repeated codes concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn parse_options(mut b: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), WireError> {
    while let Some((&code, rest)) = b.split_first() {
        match code {
            OPT_PAD => b = rest,
            OPT_END => return Ok(()),
            _ => {
                let (&len, rest) = rest.split_first().ok_or(WireError::Truncated)?;
                let len = len as usize;
                if rest.len() < len {
                    return Err(WireError::Truncated);
                }
                let val = &rest[..len];
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, v)) => v.extend_from_slice(val),
                    None => out.push((code, val.to_vec())),
                }
                b = &rest[len..];
            }
        }
    }
    // no END option: tolerated (many embedded clients omit it)
    Ok(())
}

impl Msg {
    /// Parses a BOOTREQUEST: a DHCP message (with a valid message type) or a BOOTP request
    /// (without one).
    pub fn parse_request(buf: &[u8]) -> Result<Msg, WireError> {
        let m = Msg::parse(buf)?;
        if m.op != BOOTREQUEST {
            return Err(WireError::NotRequest);
        }
        match m.option(OPT_MSG_TYPE) {
            None => Ok(m),
            Some(v) if v.len() == 1 && MsgType::from_u8(v[0]).is_some() => Ok(m),
            Some(_) => Err(WireError::BadType),
        }
    }

    /// Parses any BOOTP/DHCP message.
    pub fn parse(buf: &[u8]) -> Result<Msg, WireError> {
        if buf.len() < 240 {
            return Err(WireError::Short);
        }
        if buf[236..240] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if buf[2] > 16 {
            return Err(WireError::BadHlen);
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&buf[28..44]);
        let mut m = Msg {
            op: buf[0],
            htype: buf[1],
            hlen: buf[2],
            hops: buf[3],
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            secs: u16::from_be_bytes([buf[8], buf[9]]),
            flags: u16::from_be_bytes([buf[10], buf[11]]),
            ciaddr: ip(&buf[12..16]),
            yiaddr: ip(&buf[16..20]),
            siaddr: ip(&buf[20..24]),
            giaddr: ip(&buf[24..28]),
            chaddr,
            sname: buf[44..108].to_vec(),
            file: buf[108..236].to_vec(),
            options: Vec::new(),
        };
        parse_options(&buf[240..], &mut m.options)?;
        if let Some(&[ov]) = m.option(OPT_OVERLOAD) {
            let (file, sname) = (m.file.clone(), m.sname.clone());
            if ov & 1 != 0 {
                parse_options(&file, &mut m.options)?;
                m.file.clear();
            }
            if ov & 2 != 0 {
                parse_options(&sname, &mut m.options)?;
                m.sname.clear();
            }
        }
        Ok(m)
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    pub fn msg_type(&self) -> Option<MsgType> {
        self.option(OPT_MSG_TYPE)
            .and_then(|v| v.first().copied())
            .and_then(MsgType::from_u8)
    }

    pub fn option_ip(&self, code: u8) -> Option<Ipv4Addr> {
        match self.option(code) {
            Some(v) if v.len() == 4 => Some(ip(v)),
            _ => None,
        }
    }

    /// The hardware address (hlen bytes of chaddr).
    pub fn hw(&self) -> &[u8] {
        &self.chaddr[..(self.hlen as usize).min(16)]
    }

    /// The Ethernet address when the client has one.
    pub fn mac(&self) -> Option<[u8; 6]> {
        (self.htype == 1 && self.hlen == 6).then(|| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&self.chaddr[..6]);
            m
        })
    }

    pub fn broadcast_flag(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// Encodes, padding to the BOOTP minimum and keeping under `max_len` by leaving out
    /// options from the end of the list that do not fit.
    pub fn encode(&self, max_len: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(max_len.max(MIN_LEN));
        b.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        let mut field = |v: &[u8], len: usize| {
            let n = v.len().min(len - 1); // keep a terminating NUL
            b.extend_from_slice(&v[..n]);
            b.extend(std::iter::repeat_n(0, len - n));
        };
        field(&self.sname, 64);
        field(&self.file, 128);
        b.extend_from_slice(&MAGIC);
        let limit = max_len.max(MIN_LEN) - 1; // room for END
        for (code, val) in &self.options {
            let mut encoded = Vec::with_capacity(val.len() + 2);
            if val.is_empty() {
                encoded.extend_from_slice(&[*code, 0]);
            }
            for chunk in val.chunks(255) {
                encoded.push(*code);
                encoded.push(chunk.len() as u8);
                encoded.extend_from_slice(chunk);
            }
            if b.len() + encoded.len() > limit {
                continue; // does not fit; smaller options later in the list still may
            }
            b.extend_from_slice(&encoded);
        }
        b.push(OPT_END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, 0);
        }
        b
    }
}

/// Builds a client request (for tests, benchmarks and tools).
pub fn request(kind: MsgType, mac: [u8; 6], xid: u32, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    let mut options = vec![(OPT_MSG_TYPE, vec![kind as u8])];
    options.extend(opts.iter().map(|(c, v)| (*c, v.to_vec())));
    Msg {
        op: BOOTREQUEST,
        htype: 1,
        hlen: 6,
        hops: 0,
        xid,
        secs: 0,
        flags: 0,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr,
        sname: Vec::new(),
        file: Vec::new(),
        options,
    }
    .encode(1500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_long_options() {
        let long = vec![7u8; 600];
        let raw = request(
            MsgType::Discover,
            [2, 0, 0, 0, 0, 1],
            42,
            &[(OPT_PRL, &[1, 3, 6]), (43, &long)],
        );
        let m = Msg::parse_request(&raw).unwrap();
        assert_eq!(m.msg_type(), Some(MsgType::Discover));
        assert_eq!(m.xid, 42);
        assert_eq!(m.mac(), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            m.option(43).unwrap().len(),
            600,
            "RFC 3396 split and joined"
        );
        assert_eq!(m.option(OPT_PRL), Some(&[1u8, 3, 6][..]));
    }

    #[test]
    fn overload_fields_carry_options() {
        let mut raw = request(
            MsgType::Request,
            [2, 0, 0, 0, 0, 2],
            1,
            &[(OPT_OVERLOAD, &[1])],
        );
        // put option 12 "x" into the file field
        raw[108..112].copy_from_slice(&[OPT_HOST_NAME, 1, b'x', OPT_END]);
        let m = Msg::parse_request(&raw).unwrap();
        assert_eq!(m.option(OPT_HOST_NAME), Some(&b"x"[..]));
    }

    #[test]
    fn hostile_input_never_panics() {
        assert_eq!(Msg::parse(&[]), Err(WireError::Short));
        let good = request(
            MsgType::Discover,
            [2, 0, 0, 0, 0, 3],
            9,
            &[(OPT_CLIENT_ID, &[1, 2, 3])],
        );
        for n in 0..good.len() {
            let _ = Msg::parse_request(&good[..n]);
        }
        let mut bad = good.clone();
        bad[240..].fill(0);
        bad[240] = OPT_MSG_TYPE;
        bad[241] = 1;
        bad[242] = 3;
        bad[243] = 50;
        bad[244] = 200; // runs past the end
        bad.truncate(260);
        assert_eq!(Msg::parse_request(&bad), Err(WireError::Truncated));
        let mut x = 1u32;
        for _ in 0..2000 {
            let mut p = good.clone();
            for _ in 0..8 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (x as usize >> 8) % p.len();
                p[i] = (x >> 24) as u8;
            }
            let _ = Msg::parse_request(&p);
        }
        let mut hlen = good.clone();
        hlen[2] = 200;
        assert_eq!(Msg::parse(&hlen), Err(WireError::BadHlen));
    }

    #[test]
    fn encode_pads_and_drops_what_does_not_fit() {
        let m = Msg::parse(&request(MsgType::Discover, [2; 6], 1, &[])).unwrap();
        assert_eq!(m.encode(576).len(), MIN_LEN);
        let mut big = m.clone();
        big.options.push((43, vec![1; 400]));
        big.options.push((15, b"lab".to_vec()));
        let out = Msg::parse(&big.encode(576)).unwrap();
        assert!(out.option(43).is_none());
        assert_eq!(out.option(15), Some(&b"lab"[..]));
    }
}
