//! Offer holds: an address offered to a client is kept for it for [`super::OFFER_HOLD`]
//! seconds.
//!
//! Bounded by construction, as ISC keeps the offer on the lease record: a hold is keyed by
//! the address (an address inside a subnet's ranges or a host's fixed address, so a subnet
//! never holds more offers than it has addresses), and a client holds at most one offer (a
//! new one replaces its previous one). Nothing here outlives the hold.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::Key;

#[derive(Default)]
pub(super) struct Offers {
    by_ip: HashMap<Ipv4Addr, (Key, u64)>,
    by_key: HashMap<Key, Ipv4Addr>,
}

impl Offers {
    /// The client and deadline of the hold on `ip`, if any (possibly expired).
    pub fn get(&self, ip: &Ipv4Addr) -> Option<&(Key, u64)> {
        self.by_ip.get(ip)
    }

    /// The address held for `key` until after `now`.
    pub fn of(&self, key: &Key, now: u64) -> Option<Ipv4Addr> {
        let ip = *self.by_key.get(key)?;
        self.by_ip
            .get(&ip)
            .is_some_and(|(_, until)| *until > now)
            .then_some(ip)
    }

    /// Holds `ip` for `key` until `until`; the client's previous hold (if elsewhere) is
    /// dropped, as is another client's expired hold on `ip`.
    pub fn hold(&mut self, ip: Ipv4Addr, key: &Key, until: u64) {
        if let Some(old) = self.by_key.get(key).copied() {
            if old != ip {
                self.by_ip.remove(&old);
            }
        }
        self.remove(ip);
        self.by_key.insert(key.clone(), ip);
        self.by_ip.insert(ip, (key.clone(), until));
    }

    /// Drops the hold on `ip`.
    pub fn remove(&mut self, ip: Ipv4Addr) {
        if let Some((k, _)) = self.by_ip.remove(&ip) {
            if self.by_key.get(&k) == Some(&ip) {
                self.by_key.remove(&k);
            }
        }
    }

    /// Drops the holds that ended at or before `now`.
    pub fn sweep(&mut self, now: u64) {
        let by_key = &mut self.by_key;
        self.by_ip.retain(|ip, (k, until)| {
            let keep = *until > now;
            if !keep && by_key.get(k) == Some(ip) {
                by_key.remove(k);
            }
            keep
        });
    }

    /// Holds kept (an expired one until the next sweep).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Clients with a hold (never more than the holds).
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.by_key.len()
    }
}
