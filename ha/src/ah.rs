//! IPsec AH (RFC 2402) for VRRPv2 as keepalived implements `auth_type AH`: the advert's IPv4
//! datagram carries an AH header (next header 112, SPI = the sender's address, a sequence
//! number) whose ICV is HMAC-MD5-96 keyed with the 8-byte `auth_pass` (zero-padded), computed
//! over the IPv4 header with its mutable fields zeroed (TOS, fragment offset, checksum, and
//! the TTL when unicast), the AH header with a zero ICV, and the VRRP packet. Pure: bytes in,
//! bytes out; the sequence counter is the caller's (keepalived keeps one per instance, for
//! the adverts it sends and as the high-water mark of those it accepts).

use std::net::Ipv4Addr;

use hmac::{Hmac, Mac};
use md5::Md5;

use crate::vrrp::{csum, Reject};

/// IP protocol number of AH.
pub const PROTO: u8 = 51;
/// Length of the AH header keepalived sends: 12 fixed bytes and a 96-bit ICV.
pub const LEN: usize = 24;
/// AH payload length field: the header in 32-bit words, minus 2.
const PLEN: u8 = (LEN / 4 - 2) as u8;
const ICV: std::ops::Range<usize> = 12..24;

fn mac(key: &[u8; 8]) -> Hmac<Md5> {
    // HMAC takes keys of any length; this cannot fail
    <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Feeds the datagram to the MAC as keepalived does: the IP header with TOS, fragment offset
/// and checksum zeroed (and the TTL when unicast), the AH header with its ICV zeroed, the rest
/// as it is.
fn feed(m: &mut Hmac<Md5>, pkt: &[u8], ihl: usize, unicast: bool) {
    let mut head = pkt[..ihl + LEN].to_vec();
    head[1] = 0; // TOS
    head[6] = 0; // flags and fragment offset
    head[7] = 0;
    head[10] = 0; // header checksum
    head[11] = 0;
    if unicast {
        head[8] = 0; // TTL
    }
    head[ihl + ICV.start..ihl + ICV.end].fill(0);
    m.update(&head);
    m.update(&pkt[ihl + LEN..]);
}

/// Builds the whole IPv4 datagram of an AH-authenticated advert (sent with IP_HDRINCL, so
/// the bytes the ICV covers are the bytes on the wire): TOS 0xc0, TTL 255, the given IP id
/// (non-zero, or the kernel would pick one after the ICV was computed) and sequence number.
pub fn seal(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u32,
    vrrp: &[u8],
    key: &[u8; 8],
    unicast: bool,
) -> Vec<u8> {
    let total = (20 + LEN + vrrp.len()) as u16;
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 255, PROTO, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = csum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&[crate::vrrp::PROTO as u8, PLEN, 0, 0]);
    p.extend_from_slice(&src.octets()); // SPI: the sender's address
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(vrrp);
    let mut m = mac(key);
    feed(&mut m, &p, 20, unicast);
    let icv = m.finalize().into_bytes();
    p[20 + ICV.start..20 + ICV.end].copy_from_slice(&icv[..12]);
    p
}

/// The VRRP router id an AH datagram carries (to skip other routers' adverts unchecked).
pub fn vrid(pkt: &[u8]) -> Option<u8> {
    let ihl = (*pkt.first()? as usize & 0x0f) * 4;
    pkt.get(ihl + LEN + 1).copied()
}

/// Checks a received AH datagram as keepalived does: the ICV first (a wrong password or a
/// changed field is `Reject::Auth`), then the SPI (the source address), then the sequence
/// number, which must be above `last_seq`; an accepted one becomes the new `last_seq`.
pub fn verify(pkt: &[u8], key: &[u8; 8], unicast: bool, last_seq: &mut u32) -> Result<(), Reject> {
    let Some(&b0) = pkt.first() else {
        return Err(Reject::Short);
    };
    let ihl = (b0 as usize & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl + LEN + 8 {
        return Err(Reject::Short);
    }
    if pkt[9] != PROTO || pkt[ihl] != crate::vrrp::PROTO as u8 {
        return Err(Reject::Type);
    }
    let mut m = mac(key);
    feed(&mut m, pkt, ihl, unicast);
    if m.verify_truncated_left(&pkt[ihl + ICV.start..ihl + ICV.end])
        .is_err()
    {
        return Err(Reject::Auth);
    }
    if pkt[ihl + 4..ihl + 8] != pkt[12..16] {
        return Err(Reject::Auth);
    }
    let seq = u32::from_be_bytes([pkt[ihl + 8], pkt[ihl + 9], pkt[ihl + 10], pkt[ihl + 11]]);
    if seq <= *last_seq {
        return Err(Reject::Replay);
    }
    *last_seq = seq;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_ah_adverts_verify_and_ours_are_byte_identical() {
        // captured with tcpdump from keepalived 2.2.7 (ha/src/testdata/keepalived-ah.hex):
        // auth_pass secret1, vrid 53, priority 150, sequence number 1
        let pkt = crate::vrrp::fixture_hex(include_str!("testdata/keepalived-ah.hex"));
        let key = *b"secret1\0";
        let mut last = 0;
        assert_eq!(verify(&pkt, &key, false, &mut last), Ok(()));
        assert_eq!(last, 1);
        assert_eq!(verify(&pkt, &key, false, &mut last), Err(Reject::Replay));
        assert_eq!(verify(&pkt, b"secret2\0", false, &mut 0), Err(Reject::Auth));
        let (src, dst) = (Ipv4Addr::new(10, 98, 0, 1), Ipv4Addr::new(224, 0, 0, 18));
        let id = u16::from_be_bytes([pkt[4], pkt[5]]);
        assert_eq!(seal(src, dst, id, 1, &pkt[44..], &key, false), pkt);
        // and the VRRP inside decodes as an AH advert
        let (from, _, a) =
            crate::vrrp::decode(&pkt, 2, &crate::conf::Auth::Ah(key)).expect("valid");
        assert_eq!((from, a.vrid, a.priority), (src, 53, 150));
        assert_eq!(
            crate::vrrp::decode(&pkt, 2, &crate::conf::Auth::None),
            Err(Reject::Auth),
            "an AH advert is refused by an instance without AH"
        );
    }

    #[test]
    fn sealed_adverts_verify_once_and_only_with_the_password() {
        let (src, dst) = (Ipv4Addr::new(10, 98, 0, 1), Ipv4Addr::new(224, 0, 0, 18));
        let vrrp = [
            0x21, 53, 150, 1, 2, 1, 0, 0, 10, 98, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let key = *b"secret1\0";
        let p = seal(src, dst, 7, 3, &vrrp, &key, false);
        assert_eq!(p.len(), 20 + 24 + vrrp.len());
        assert_eq!(vrid(&p), Some(53));
        let mut last = 2;
        assert_eq!(verify(&p, &key, false, &mut last), Ok(()));
        assert_eq!(last, 3);
        assert_eq!(verify(&p, &key, false, &mut last), Err(Reject::Replay));
        let mut last = 0;
        assert_eq!(
            verify(&p, b"secret2\0", false, &mut last),
            Err(Reject::Auth)
        );
        assert_eq!(last, 0, "a rejected advert does not move the counter");
        // mutable fields may change in transit (the TTL only when unicast, as keepalived
        // has it); anything else may not
        let mut q = p.clone();
        q[1] = 0;
        q[10] ^= 0xff;
        assert_eq!(verify(&q, &key, false, &mut 0), Ok(()));
        q[8] = 1;
        assert_eq!(verify(&q, &key, false, &mut 0), Err(Reject::Auth));
        let u = seal(src, Ipv4Addr::new(10, 98, 0, 2), 7, 3, &vrrp, &key, true);
        let mut q = u.clone();
        q[8] = 1;
        assert_eq!(verify(&q, &key, true, &mut 0), Ok(()));
        let mut q = p.clone();
        q[46] ^= 1; // the priority
        assert_eq!(verify(&q, &key, false, &mut 0), Err(Reject::Auth));
        for n in 0..p.len() {
            let _ = verify(&p[..n], &key, false, &mut 0);
        }
    }
}
