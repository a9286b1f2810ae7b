//! Dynamic DNS (RFC 2136) as ISC dhcpd does it: a forward A record with an ownership record
//! beside it (TXT under `interim`, DHCID under `standard`, RFC 4701/4703), a reverse PTR,
//! TSIG-signed (RFC 8945, hmac-md5 or hmac-sha256), removed again on release.
//!
//! Hand-written: the messages are a few records, and the DNS crates on crates.io bring a
//! resolver and an async runtime this needs none of.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::conf::ddns::{fqdn, Alg, TsigKey, Zone};
use crate::conf::DdnsStyle;

const T_A: u16 = 1;
const T_PTR: u16 = 12;
const T_TXT: u16 = 16;
const T_SOA: u16 = 6;
const T_DHCID: u16 = 49;
const T_TSIG: u16 = 250;
const T_ANY: u16 = 255;
const C_IN: u16 = 1;
const C_NONE: u16 = 254;
const C_ANY: u16 = 255;

/// One update for the DNS thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    Add(Names),
    Remove(Names),
}

/// What one lease puts into the DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub fqdn: String,
    pub ip: Ipv4Addr,
    pub ttl: u32,
    pub style: DdnsStyle,
    /// The ownership record's data: TXT (interim) or DHCID (standard).
    pub owner: Vec<u8>,
    pub fwd: Option<Zone>,
    pub rev_name: String,
    pub rev: Option<Zone>,
}

/// The ownership record of a client (`id`: its client identifier, or hardware type and
/// address): ISC's interim TXT, or an RFC 4701 DHCID with SHA-256.
pub fn owner(style: DdnsStyle, id: &[u8], client_id: bool, name: &str) -> Vec<u8> {
    match style {
        DdnsStyle::Standard => {
            let mut h = Sha256::new();
            h.update(id);
            h.update(wire_name(name));
            let mut v = vec![0, if client_id { 1 } else { 0 }, 1];
            v.extend_from_slice(&h.finalize());
            v
        }
        _ => {
            // ISC interim: the identifier type, then the MD5 of the identifier, in hex
            let hex: String = Md5::digest(id).iter().map(|b| format!("{b:02x}")).collect();
            format!("{}{hex}", if client_id { "31" } else { "00" }).into_bytes()
        }
    }
}

/// The zone that covers `name`: the declared one with the most labels.
pub fn zone_for<'a>(zones: &'a [Zone], name: &str) -> Option<&'a Zone> {
    zones
        .iter()
        .filter(|z| z.covers(name) > 0)
        .max_by_key(|z| z.covers(name))
}

/// `name` in DNS wire format (labels, then the root).
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in fqdn(name).split('.').filter(|l| !l.is_empty()) {
        v.push(l.len().min(63) as u8);
        v.extend_from_slice(&l.as_bytes()[..l.len().min(63)]);
    }
    v.push(0);
    v
}

/// An UPDATE message being built: zone, prerequisites, updates.
struct Update {
    id: u16,
    zone: String,
    pre: Vec<Vec<u8>>,
    upd: Vec<Vec<u8>>,
}

fn rr(name: &str, ty: u16, class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut v = wire_name(name);
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(&class.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

fn txt(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len().min(255) as u8];
    v.extend_from_slice(&s[..s.len().min(255)]);
    v
}

impl Update {
    fn new(zone: &str) -> Update {
        let id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u16 ^ std::process::id() as u16);
        Update {
            id,
            zone: zone.to_string(),
            pre: Vec::new(),
            upd: Vec::new(),
        }
    }

    /// The message, signed with `key` if there is one.
    fn encode(&self, key: Option<&TsigKey>, now: u64) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&0x2800u16.to_be_bytes()); // opcode UPDATE
        for n in [1, self.pre.len(), self.upd.len(), 0] {
            m.extend_from_slice(&(n as u16).to_be_bytes());
        }
        m.extend(wire_name(&self.zone));
        m.extend_from_slice(&T_SOA.to_be_bytes());
        m.extend_from_slice(&C_IN.to_be_bytes());
        for r in self.pre.iter().chain(&self.upd) {
            m.extend_from_slice(r);
        }
        if let Some(k) = key {
            sign(&mut m, k, self.id, now);
        }
        m
    }
}

fn mac(key: &TsigKey, data: &[u8]) -> Vec<u8> {
    match key.alg {
        Alg::HmacMd5 => {
            let mut m =
                <Hmac<Md5> as Mac>::new_from_slice(&key.secret).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Alg::HmacSha256 => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.secret)
                .expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Appends a TSIG record (RFC 8945 section 4.3.3: the MAC covers the message and the TSIG
/// variables).
fn sign(m: &mut Vec<u8>, key: &TsigKey, id: u16, now: u64) {
    let fudge: u16 = 300;
    let time = &now.to_be_bytes()[2..];
    let mut vars = wire_name(&key.name);
    vars.extend_from_slice(&C_ANY.to_be_bytes());
    vars.extend_from_slice(&0u32.to_be_bytes());
    vars.extend(wire_name(key.alg.name()));
    vars.extend_from_slice(time);
    vars.extend_from_slice(&fudge.to_be_bytes());
    vars.extend_from_slice(&[0, 0, 0, 0]); // error, other length
    let mut signed = m.clone();
    signed.extend(vars);
    let digest = mac(key, &signed);
    let mut rdata = wire_name(key.alg.name());
    rdata.extend_from_slice(time);
    rdata.extend_from_slice(&fudge.to_be_bytes());
    rdata.extend_from_slice(&(digest.len() as u16).to_be_bytes());
    rdata.extend(digest);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    m.extend(rr(&key.name, T_TSIG, C_ANY, 0, &rdata));
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// The messages of a job, in order, each with the zone it goes to. An add of the forward
/// name comes in two forms: "the name is free" and "the name is this client's"; the second
/// is sent if the first finds the name in use.
fn messages(job: &Job) -> Vec<(Zone, Vec<Update>)> {
    let mut out = Vec::new();
    let (n, add) = match job {
        Job::Add(n) => (n, true),
        Job::Remove(n) => (n, false),
    };
    let (oty, odata) = match n.style {
        DdnsStyle::Standard => (T_DHCID, n.owner.clone()),
        _ => (T_TXT, txt(&n.owner)),
    };
    let a = n.ip.octets();
    if let Some(z) = &n.fwd {
        let mut v = Vec::new();
        if add {
            let mut free = Update::new(&z.name);
            free.pre.push(rr(&n.fqdn, T_ANY, C_NONE, 0, &[]));
            free.upd.push(rr(&n.fqdn, T_A, C_IN, n.ttl, &a));
            free.upd.push(rr(&n.fqdn, oty, C_IN, n.ttl, &odata));
            v.push(free);
            let mut mine = Update::new(&z.name);
            mine.pre.push(rr(&n.fqdn, oty, C_IN, 0, &odata));
            mine.upd.push(rr(&n.fqdn, T_A, C_ANY, 0, &[]));
            mine.upd.push(rr(&n.fqdn, T_A, C_IN, n.ttl, &a));
            v.push(mine);
        } else {
            let mut del = Update::new(&z.name);
            del.pre.push(rr(&n.fqdn, oty, C_IN, 0, &odata));
            del.upd.push(rr(&n.fqdn, T_A, C_NONE, 0, &a));
            del.upd.push(rr(&n.fqdn, oty, C_ANY, 0, &[]));
            v.push(del);
        }
        out.push((z.clone(), v));
    }
    if let Some(z) = &n.rev {
        let mut u = Update::new(&z.name);
        u.upd.push(rr(&n.rev_name, T_PTR, C_ANY, 0, &[]));
        if add {
            u.upd
                .push(rr(&n.rev_name, T_PTR, C_IN, n.ttl, &wire_name(&n.fqdn)));
        }
        out.push((z.clone(), vec![u]));
    }
    out
}

/// Sends one update and returns the response code (0: NOERROR; 6: YXDOMAIN; 8: NXRRSET).
fn send(z: &Zone, u: &Update) -> std::io::Result<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let msg = u.encode(z.key.as_ref(), now);
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let to = SocketAddr::from((z.primary, 53));
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        s.send_to(&msg, to)?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) if from == to && n >= 12 && buf[..2] == u.id.to_be_bytes() => {
                return Ok(buf[3] & 0x0f);
            }
            Ok(_) => continue,
            // no answer within the timeout, or a signal (a reload's SIGHUP) interrupted the
            // wait (a read with SO_RCVTIMEO is not restarted): send again
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer in 3 tries",
    ))
}

/// Carries out a job, logging as ISC does.
pub fn run(job: &Job) {
    for (z, updates) in messages(job) {
        let what = match job {
            Job::Add(n) if Some(&z) == n.fwd.as_ref() => {
                format!("forward map from {} to {}", n.fqdn, n.ip)
            }
            Job::Add(n) => format!("reverse map from {} to {}", n.rev_name, n.fqdn),
            Job::Remove(n) if Some(&z) == n.fwd.as_ref() => {
                format!("forward map from {} to {}", n.fqdn, n.ip)
            }
            Job::Remove(n) => format!("reverse map from {}", n.rev_name),
        };
        let verb = if matches!(job, Job::Add(_)) {
            "Added new"
        } else {
            "Removed"
        };
        let mut last = None;
        for u in &updates {
            match send(&z, u) {
                Ok(0) => {
                    last = Some(Ok(()));
                    break;
                }
                Ok(rc) => last = Some(Err(format!("{} ({rc})", rcode(rc)))),
                Err(e) => {
                    last = Some(Err(format!("{e}")));
                    break;
                }
            }
        }
        match last {
            Some(Ok(())) => info!("{verb} {what}"),
            Some(Err(e)) => {
                warn!(zone = %z.name, server = %z.primary, "Unable to update {what}: {e}");
                if matches!(job, Job::Add(n) if Some(&z) == n.fwd.as_ref()) {
                    return; // as ISC: no PTR for a name that is not this client's
                }
            }
            None => {}
        }
    }
}

fn rcode(rc: u8) -> &'static str {
    match rc {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN (the name belongs to another client)",
        7 => "YXRRSET",
        8 => "NXRRSET (the name belongs to another client)",
        9 => "NOTAUTH (bad key or signature?)",
        10 => "NOTZONE",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_messages_are_signed_and_counted() {
        let key = TsigKey {
            name: "k.".into(),
            alg: Alg::HmacSha256,
            secret: b"0123456789abcdef".to_vec(),
        };
        let z = Zone {
            name: "example.test.".into(),
            primary: Ipv4Addr::new(10, 0, 0, 1),
            key: Some(key.clone()),
        };
        let n = Names {
            fqdn: "node7.example.test.".into(),
            ip: Ipv4Addr::new(10, 0, 0, 7),
            ttl: 300,
            style: DdnsStyle::Interim,
            owner: owner(
                DdnsStyle::Interim,
                &[1, 2, 0, 0, 0, 0, 7],
                false,
                "node7.example.test.",
            ),
            fwd: Some(z.clone()),
            rev_name: "7.0.0.10.in-addr.arpa.".into(),
            rev: None,
        };
        assert_eq!(n.owner.len(), 34);
        let msgs = messages(&Job::Add(n.clone()));
        assert_eq!(msgs.len(), 1);
        let m = msgs[0].1[0].encode(Some(&key), 1_700_000_000);
        // header: opcode UPDATE, one zone, one prerequisite, two updates, one TSIG
        assert_eq!(&m[2..12], &[0x28, 0, 0, 1, 0, 1, 0, 2, 0, 1]);
        // the MAC is over the unsigned message and the TSIG variables
        let unsigned = msgs[0].1[0].encode(None, 0);
        assert!(m.starts_with(&unsigned[..10]));
        let tail = &m[unsigned.len()..];
        assert!(tail.starts_with(&wire_name("k.")));
        assert!(m.windows(32).any(|w| {
            let mut s = unsigned.clone();
            s.extend(wire_name("k."));
            s.extend_from_slice(&[0, 255, 0, 0, 0, 0]);
            s.extend(wire_name("hmac-sha256."));
            s.extend_from_slice(&1_700_000_000u64.to_be_bytes()[2..]);
            s.extend_from_slice(&[1, 44, 0, 0, 0, 0]);
            w == mac(&key, &s).as_slice()
        }));
        let rm = messages(&Job::Remove(n));
        assert_eq!(rm[0].1.len(), 1);
        assert_eq!(
            zone_for(std::slice::from_ref(&z), "a.b.example.test"),
            Some(&z)
        );
        assert_eq!(zone_for(std::slice::from_ref(&z), "example.org"), None);
        let d = owner(DdnsStyle::Standard, &[1, 2, 3], true, "x.");
        assert_eq!((d.len(), &d[..3]), (35, &[0u8, 1, 1][..]));
    }
}
