//! Which DNS names a lease gets: the engine decides, the server's DNS thread sends.

use std::net::Ipv4Addr;

use super::{fqdn, Client, Engine};
use crate::conf::ddns::Zone;
use crate::conf::{DdnsStyle, Params};
use crate::ddns::{owner, zone_for, Job, Names};
use crate::leases::{Lease, State};
use crate::wire::{Msg, OPT_CLIENT_ID, OPT_HOST_NAME};

/// The variables in which ISC keeps a lease's DNS names.
const DDNS_VARS: [&str; 5] = [
    "ddns-fwd-name",
    "ddns-rev-name",
    "ddns-txt",
    "ddns-dhcid",
    "ddns-client-fqdn",
];

/// The DNS names a lease's `ddns-*` variables record: the forward name with its TXT
/// (interim) or DHCID (standard) ownership record, and the reverse name; either name may be
/// missing (ISC leaves out the one it did not add).
fn names_of(l: &Lease, zones: &[Zone]) -> Option<Names> {
    let var = |k: &str| l.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let text = |k: &str| var(k).map(|v| crate::conf::ddns::fqdn(&String::from_utf8_lossy(&v)));
    let (fwd_name, rev_name) = (text("ddns-fwd-name"), text("ddns-rev-name"));
    // the client's own name (it keeps its A record): the PTR only
    let client_name = text("ddns-client-fqdn").filter(|_| fwd_name.is_none());
    if fwd_name.is_none() && rev_name.is_none() && client_name.is_none() {
        return None;
    }
    let (style, owner) = match (var("ddns-dhcid"), var("ddns-txt")) {
        (Some(d), _) => (DdnsStyle::Standard, d),
        (None, Some(t)) => (DdnsStyle::Interim, t),
        (None, None) => (DdnsStyle::Interim, Vec::new()),
    };
    let fwd = fwd_name
        .as_deref()
        .and_then(|f| zone_for(zones, f))
        .cloned();
    let fqdn = fwd_name.or(client_name);
    let rev = rev_name
        .as_deref()
        .and_then(|r| zone_for(zones, r))
        .cloned();
    Some(Names {
        fqdn: fqdn.unwrap_or_default(),
        ip: l.ip,
        ttl: 0,
        style,
        owner,
        fwd,
        rev_name: rev_name.unwrap_or_default(),
        rev,
    })
}

const OPT_DOMAIN_NAME: u8 = 15;

impl Engine {
    /// After a lease of `ip` is granted: queue the A/PTR update if DDNS applies to it (a
    /// style other than none, a host name, a dynamic address or `update-static-leases`).
    /// The name is `ddns-hostname`, else the first label of the client's FQDN option (81),
    /// else its host name (12), in `ddns-domainname`; a client that keeps its own A record
    /// (option 81 without S, `allow client-updates`) gets only the PTR, to its own name.
    /// Returns the option 81 of the reply, if the client sent one.
    pub(super) fn ddns_commit(
        &mut self,
        p: &Params,
        c: &Client,
        msg: &Msg,
        ip: Ipv4Addr,
        lt: u32,
    ) -> Option<Vec<u8>> {
        if p.ddns_style == DdnsStyle::None || !p.ddns_updates {
            return None;
        }
        if self.fixed_set.contains(&ip) && !p.update_static {
            return None;
        }
        let client = msg.option(fqdn::OPT_FQDN).and_then(fqdn::parse);
        let host = p
            .ddns_hostname
            .clone()
            .or_else(|| {
                let f = client.as_ref()?;
                (!f.name.is_empty()).then(|| f.name.clone().into_bytes())
            })
            .or_else(|| msg.option(OPT_HOST_NAME).map(<[u8]>::to_vec));
        let domain = p.ddns_domain.clone().or_else(|| {
            p.options
                .get(&OPT_DOMAIN_NAME)
                .and_then(|v| self.bytes(v))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        });
        let (Some(host), Some(domain)) = (host, domain) else {
            return None;
        };
        // the first label of what the client calls itself, in DNS characters only
        let label: String = String::from_utf8_lossy(&host)
            .split('.')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if label.is_empty() {
            return None;
        }
        let mut fqdn =
            crate::conf::ddns::fqdn(&format!("{label}.{}", domain.trim_end_matches('.')));
        let reply = client.as_ref().map(|f| f.answer(p.client_updates, &fqdn));
        let own_a = client
            .as_ref()
            .filter(|f| f.client_updates_a(p.client_updates) && f.name.contains('.'));
        if let Some(f) = own_a {
            fqdn = crate::conf::ddns::fqdn(&f.name);
        }
        let o = ip.octets();
        let rev_name = crate::conf::ddns::fqdn(&format!(
            "{}.{}.{}.{}.{}",
            o[3],
            o[2],
            o[1],
            o[0],
            p.ddns_rev_domain.trim_end_matches('.')
        ));
        let id = msg.option(OPT_CLIENT_ID);
        let ident = id
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| c.view.hardware_bytes());
        let names = Names {
            ttl: p.ddns_ttl.unwrap_or(lt / 2),
            style: p.ddns_style,
            // the client's own A record: no ownership record (none is added)
            owner: match own_a {
                Some(_) => Vec::new(),
                None => owner(p.ddns_style, &ident, id.is_some(), &fqdn),
            },
            fwd: match own_a {
                Some(_) => None,
                None => zone_for(&self.cfg.zones, &fqdn).cloned(),
            },
            rev: zone_for(&self.cfg.zones, &rev_name).cloned(),
            fqdn,
            ip,
            rev_name,
        };
        if names.fwd.is_none() && names.rev.is_none() {
            tracing::warn!(name = %names.fqdn, "ddns: no zone declared for this name or its reverse: declare 'zone NAME {{ primary ADDRESS; key KEY; }}'");
            return reply;
        }
        if self.ddns_names.get(&ip) == Some(&names) {
            return reply; // a renewal: the records are there
        }
        if let Some(old) = self.ddns_names.insert(ip, names.clone()) {
            if old.fqdn != names.fqdn || old.fwd != names.fwd {
                self.ddns_jobs.push(Job::Remove(old));
            }
        }
        self.ddns_jobs.push(Job::Add(names));
        reply
    }

    /// The lease of `ip` ended (released): its records go, and so do the `ddns-*`
    /// variables that named them in the lease (as ISC drops them).
    pub(super) fn ddns_remove(&mut self, ip: Ipv4Addr) {
        if let Some(n) = self.ddns_names.remove(&ip) {
            self.ddns_jobs.push(Job::Remove(n));
        }
        if let Some(l) = self.leases.get_mut(&ip) {
            l.vars.retain(|(k, _)| !DDNS_VARS.contains(&k.as_str()));
        }
    }

    /// The lease of `ip` as granted, with the DNS names it holds written into its variables
    /// as ISC writes them to the lease file (`set ddns-fwd-name = ...;`), so that a restart
    /// (or ISC, or we reading ISC's file) still knows which records to remove.
    pub(super) fn ddns_record(&mut self, lease: &mut Lease) {
        lease.vars.retain(|(k, _)| !DDNS_VARS.contains(&k.as_str()));
        if let Some(n) = self.ddns_names.get(&lease.ip) {
            let owner = match n.style {
                DdnsStyle::Standard => "ddns-dhcid",
                _ => "ddns-txt",
            };
            if n.owner.is_empty() {
                // the client keeps its A record: ISC notes its name for the PTR only
                lease
                    .vars
                    .push(("ddns-client-fqdn".to_string(), n.fqdn.clone().into_bytes()));
            } else {
                lease.vars.extend([
                    ("ddns-fwd-name".to_string(), n.fqdn.clone().into_bytes()),
                    (owner.to_string(), n.owner.clone()),
                ]);
            }
            lease
                .vars
                .push(("ddns-rev-name".to_string(), n.rev_name.clone().into_bytes()));
            lease.vars.sort();
        }
        if let Some(l) = self.leases.get_mut(&lease.ip) {
            l.vars = lease.vars.clone();
        }
    }

    /// At start: the DNS names of active leases, from the `ddns-*` variables of the journal
    /// or of an ISC lease file, so that their records go when they end.
    pub(super) fn ddns_restore(&mut self) {
        let restored: Vec<Names> = self
            .leases
            .values()
            .filter(|l| l.state == State::Active)
            .filter_map(|l| names_of(l, &self.cfg.zones))
            .collect();
        for n in restored {
            self.ddns_names.insert(n.ip, n);
        }
    }

    /// After a reload: what the old engine knew per lease (DNS names,
    /// `on expiry` blocks, DNS updates not yet sent) stays.
    pub fn carry_over(&mut self, old: &mut Engine) {
        self.ddns_names = std::mem::take(&mut old.ddns_names);
        self.on_expiry = std::mem::take(&mut old.on_expiry);
        self.ddns_jobs = std::mem::take(&mut old.ddns_jobs);
        self.billing = std::mem::take(&mut old.billing);
        self.shared = old.shared;
    }

    /// The DNS updates decided since the last call, for the server to send.
    pub fn take_ddns_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.ddns_jobs)
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
