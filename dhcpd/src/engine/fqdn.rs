//! The client FQDN option (81, RFC 4702) as ISC dhcpd 4.4 reads and answers it.
//!
//! Flags: S (0x01, the server updates the A record), O (0x02, in ISC's older reading "N",
//! no client update), E (0x04, the name is in DNS wire format). ISC answers S|O (3) with the
//! name it registered, or, when the client keeps its A record (`allow client-updates`, the
//! default, or the "white lie" of `ignore client-updates`), flags 0 with the client's own
//! name; RCODE1 and RCODE2 are 255 either way.

use crate::conf::ClientUpdates;

pub(super) const OPT_FQDN: u8 = 81;
const S: u8 = 0x01;
const O: u8 = 0x02;
const E: u8 = 0x04;

/// Option 81 as a client sent it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClientFqdn {
    pub flags: u8,
    /// The name as text, without a trailing dot (empty if none).
    pub name: String,
    /// The name's bytes as sent, for an answer that echoes it.
    raw: Vec<u8>,
}

/// Reads option 81's value; `None` if it is malformed (too short, a bad label length).
pub(super) fn parse(v: &[u8]) -> Option<ClientFqdn> {
    let (&flags, rest) = v.split_first()?;
    let raw = rest.get(2..)?.to_vec();
    let name = if flags & E != 0 {
        let mut labels = Vec::new();
        let mut b = raw.as_slice();
        while let [len, tail @ ..] = b {
            if *len == 0 {
                break;
            }
            if *len > 63 {
                return None;
            }
            let label = tail.get(..*len as usize)?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            b = &tail[*len as usize..];
        }
        labels.join(".")
    } else {
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .trim_end_matches('.')
            .to_string()
    };
    Some(ClientFqdn { flags, name, raw })
}

impl ClientFqdn {
    /// Whether the client keeps its own A record: it asked to (S clear) and the server lets
    /// it (`allow client-updates`).
    pub fn client_updates_a(&self, policy: ClientUpdates) -> bool {
        self.flags & S == 0 && policy == ClientUpdates::Allow
    }

    /// The option 81 of the reply: `registered` is the name the server put into the DNS
    /// (with its trailing dot).
    pub fn answer(&self, policy: ClientUpdates, registered: &str) -> Vec<u8> {
        let echo = self.flags & S == 0 && policy != ClientUpdates::Deny;
        if echo {
            let mut v = vec![self.flags & E, 255, 255];
            v.extend_from_slice(&self.raw);
            return v;
        }
        let mut v = vec![S | O | (self.flags & E), 255, 255];
        if self.flags & E != 0 {
            v.extend(crate::ddns::wire_name(registered));
        } else {
            v.extend_from_slice(registered.as_bytes());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers ISC dhcpd 4.4.3 gave dhclient in the lab (its lease file's `option fqdn`).
    #[test]
    fn answers_as_isc() {
        let ascii = |flags: u8, name: &str| {
            let mut v = vec![flags, 0, 0];
            v.extend_from_slice(name.as_bytes());
            parse(&v).unwrap()
        };
        let server = "other.lab.test.";
        let c = ascii(1, "other.example.org.");
        assert_eq!(c.name, "other.example.org");
        for policy in [
            ClientUpdates::Allow,
            ClientUpdates::Ignore,
            ClientUpdates::Deny,
        ] {
            assert!(!c.client_updates_a(policy));
            assert_eq!(c.answer(policy, server), b"\x03\xff\xffother.lab.test.");
        }
        let c = ascii(0, "other.example.org.");
        assert!(c.client_updates_a(ClientUpdates::Allow));
        assert!(!c.client_updates_a(ClientUpdates::Ignore));
        for policy in [ClientUpdates::Allow, ClientUpdates::Ignore] {
            assert_eq!(c.answer(policy, server), b"\0\xff\xffother.example.org.");
        }
        assert_eq!(
            c.answer(ClientUpdates::Deny, server),
            b"\x03\xff\xffother.lab.test."
        );
        // E: the name in wire format, both ways
        let c = parse(b"\x05\0\0\x05other\x07example\x03org\0").unwrap();
        assert_eq!(c.name, "other.example.org");
        assert_eq!(
            c.answer(ClientUpdates::Allow, server),
            b"\x07\xff\xff\x05other\x03lab\x04test\0"
        );
        assert_eq!(parse(b"\x05\0\0\x05ot"), None);
        assert_eq!(parse(b"\x01\0"), None);
    }
}
