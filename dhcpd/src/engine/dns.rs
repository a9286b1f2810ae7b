//! Which DNS names a lease gets: the engine decides, the server's DNS thread sends.

use std::net::Ipv4Addr;

use super::{Client, Engine};
use crate::conf::{DdnsStyle, Params};
use crate::ddns::{owner, zone_for, Job, Names};
use crate::wire::{Msg, OPT_CLIENT_ID, OPT_HOST_NAME};

const OPT_DOMAIN_NAME: u8 = 15;

impl Engine {
    /// After a lease of `ip` is granted: queue the A/PTR update if DDNS applies to it (a
    /// style other than none, a host name, a dynamic address or `update-static-leases`).
    pub(super) fn ddns_commit(&mut self, p: &Params, c: &Client, msg: &Msg, ip: Ipv4Addr, lt: u32) {
        if p.ddns_style == DdnsStyle::None || !p.ddns_updates {
            return;
        }
        if self.fixed_set.contains(&ip) && !p.update_static {
            return;
        }
        let host = p
            .ddns_hostname
            .clone()
            .or_else(|| msg.option(OPT_HOST_NAME).map(<[u8]>::to_vec));
        let domain = p.ddns_domain.clone().or_else(|| {
            p.options
                .get(&OPT_DOMAIN_NAME)
                .and_then(|v| self.bytes(v))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        });
        let (Some(host), Some(domain)) = (host, domain) else {
            return;
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
            return;
        }
        let fqdn = crate::conf::ddns::fqdn(&format!("{label}.{}", domain.trim_end_matches('.')));
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
            owner: owner(p.ddns_style, &ident, id.is_some(), &fqdn),
            fwd: zone_for(&self.cfg.zones, &fqdn).cloned(),
            rev: zone_for(&self.cfg.zones, &rev_name).cloned(),
            fqdn,
            ip,
            rev_name,
        };
        if names.fwd.is_none() && names.rev.is_none() {
            tracing::warn!(name = %names.fqdn, "ddns: no zone declared for this name or its reverse: declare 'zone NAME {{ primary ADDRESS; key KEY; }}'");
            return;
        }
        if self.ddns_names.get(&ip) == Some(&names) {
            return; // a renewal: the records are there
        }
        if let Some(old) = self.ddns_names.insert(ip, names.clone()) {
            if old.fqdn != names.fqdn {
                self.ddns_jobs.push(Job::Remove(old));
            }
        }
        self.ddns_jobs.push(Job::Add(names));
    }

    /// The lease of `ip` ended (released): its records go.
    pub(super) fn ddns_remove(&mut self, ip: Ipv4Addr) {
        if let Some(n) = self.ddns_names.remove(&ip) {
            self.ddns_jobs.push(Job::Remove(n));
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
