//! What `dhcpd.conf` scripts ask of the engine: class membership by subclass, encapsulated
//! option spaces in replies, and the `on commit|release` blocks with their `log` and
//! `execute` effects.

use std::net::Ipv4Addr;
use std::process::Command;

use tracing::{info, warn};

use super::{Client, Engine, View};
use crate::conf::{expr::Packet, Effect, Event, Params, ScopeId};
use crate::leases::{Lease, State};
use crate::wire::OPT_RELAY_AGENT;

impl Engine {
    /// The classes a client belongs to, the scopes of the subclasses it matched, and the
    /// (class, subclass value) pairs whose `lease limit` applies to it.
    pub(super) fn classes(&self, view: &View) -> (Vec<usize>, Vec<ScopeId>, Vec<Billing>) {
        let (mut classes, mut subs, mut billed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, c) in self.cfg.classes.iter().enumerate() {
            let key = if c.cond.as_ref().is_some_and(|e| e.eval(view)) {
                Vec::new()
            } else if let Some(sub) = c
                .submatch
                .as_ref()
                .and_then(|d| d.eval(view))
                .and_then(|k| c.subclasses.iter().find(|(v, _)| *v == k))
            {
                subs.push(sub.1);
                sub.0.clone()
            } else if let Some(k) = c.spawn.as_ref().and_then(|d| d.eval(view)) {
                k // a spawning class: every value makes a subclass of its own
            } else {
                continue;
            };
            classes.push(i);
            if c.lease_limit.is_some() {
                billed.push((i, key));
            }
        }
        (classes, subs, billed)
    }

    /// Whether the client may take a lease of `ip` under its classes' `lease limit`s: each
    /// (sub)class it is billed to holds fewer active leases than the limit, not counting
    /// `ip` itself (its renewal).
    pub(super) fn within_limits(&self, c: &Client, ip: Ipv4Addr, now: u64) -> bool {
        c.billed.iter().all(|b| {
            let limit = self.cfg.classes[b.0].lease_limit.unwrap_or(u32::MAX) as usize;
            let held = self
                .billing
                .iter()
                .filter(|(a, ks)| {
                    **a != ip
                        && ks.contains(b)
                        && self
                            .leases
                            .get(a)
                            .is_some_and(|l| l.state == State::Active && l.ends > now)
                })
                .count();
            held < limit
        })
    }

    /// The value of an option that encapsulates an option space, built from the options of
    /// that space set for the client (`code N = encapsulate SPACE`, or 43 under
    /// `vendor-option-space`); with `site-option-space`, that space's option at `code`.
    pub(super) fn encapsulated(&self, p: &Params, code: u8) -> Option<Vec<u8>> {
        if let Some(site) = &p.site_space {
            if let Some(v) = p.sub_options.get(&(site.clone(), code)) {
                return self.bytes(v);
            }
        }
        let space = match (&p.vendor_space, code) {
            (Some(v), 43) => v.as_str(),
            _ => self
                .cfg
                .defs
                .encap
                .iter()
                .find(|(_, c)| **c == code && code != OPT_RELAY_AGENT)?
                .0
                .as_str(),
        };
        let subs: Vec<(u8, Vec<u8>)> = p
            .sub_options
            .range((space.to_string(), 0)..=(space.to_string(), 255))
            .filter_map(|((_, c), v)| Some((*c, self.bytes(v)?)))
            .collect();
        (!subs.is_empty()).then(|| self.cfg.defs.encode_space(space, &subs))
    }

    /// The codes `encapsulated` may build, for replies to clients without a request list.
    pub(super) fn encapsulating_codes(&self, p: &Params) -> Vec<u8> {
        let mut v: Vec<u8> = self.cfg.defs.encap.values().copied().collect();
        v.extend(p.vendor_space.as_ref().map(|_| 43));
        if let Some(site) = &p.site_space {
            v.extend(
                p.sub_options
                    .keys()
                    .filter(|(s, _)| s == site)
                    .map(|(_, c)| *c),
            );
        }
        v.retain(|c| *c != OPT_RELAY_AGENT);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Runs the client's `on EVENT` block for the lease of `ip`, then performs what it and
    /// the scopes' own statements (`p.effects`) ask.
    pub(super) fn event(&self, ev: Event, p: &Params, c: &Client, ip: Ipv4Addr) {
        let mut effects = p.effects.clone();
        if let Some(body) = p.on.get(&ev) {
            let view = View {
                leased: Some(ip),
                ..c.view.clone()
            };
            effects.extend(self.cfg.run(&body.body, &view, p.vars.clone()));
        }
        perform(effects);
    }

    /// At commit: keep the client's `on expiry` block with the lease (as ISC keeps it in the
    /// lease's binding scope), with the request it answered, for [`Engine::expire`], and its
    /// text in the lease (`lease`, and the engine's record of it) for the lease file.
    pub(super) fn keep_expiry(&mut self, p: &Params, c: &Client, lease: &mut Lease) {
        let ip = lease.ip;
        lease.on_expiry = p.on.get(&Event::Expiry).map(|b| b.text.clone());
        if let Some(l) = self.leases.get_mut(&ip) {
            l.on_expiry = lease.on_expiry.clone();
        }
        match p.on.get(&Event::Expiry) {
            Some(body) => {
                let kept = Kept {
                    body: body.clone(),
                    vars: p.vars.clone(),
                    msg: c.view.msg.clone(),
                    raw: c.view.raw.to_vec(),
                    host: c.view.host.clone(),
                };
                self.on_expiry.insert(ip, kept);
            }
            None => {
                self.on_expiry.remove(&ip);
            }
        }
    }

    /// At start: the `on expiry` blocks kept in the lease file with active leases (ours or
    /// ISC's), to run when they end. They run without the request the lease answered (ISC
    /// has none either at expiry): with the lease's hardware address and client identifier.
    pub(super) fn expiry_restore(&mut self) {
        let kept: Vec<(Ipv4Addr, Kept)> = self
            .leases
            .values()
            .filter(|l| l.state == State::Active)
            .filter_map(|l| {
                let text = l.on_expiry.as_ref()?;
                let where_ = format!("lease {}", l.ip);
                let blocks = crate::conf::on_blocks(
                    &self.cfg.defs,
                    &where_,
                    &format!("on expiry {text}"),
                );
                let body = match blocks {
                    Ok(b) => b.into_iter().find(|(e, _)| *e == Event::Expiry)?.1,
                    Err(d) => {
                        let why: Vec<String> = d.iter().map(ToString::to_string).collect();
                        warn!(lease = %l.ip, "the lease file's 'on expiry' block of this lease cannot be read ({}): it will not run; fix or remove it in the lease file", why.join("; "));
                        return None;
                    }
                };
                let id: Vec<(u8, &[u8])> = l
                    .client_id
                    .iter()
                    .map(|id| (crate::wire::OPT_CLIENT_ID, id.as_slice()))
                    .collect();
                let raw = crate::wire::request(
                    crate::wire::MsgType::Request,
                    l.mac.unwrap_or_default(),
                    0,
                    &id,
                );
                let msg = crate::wire::Msg::parse_request(&raw).ok()?;
                Some((
                    l.ip,
                    Kept {
                        body,
                        vars: l.vars.iter().cloned().collect(),
                        msg,
                        raw,
                        host: None,
                    },
                ))
            })
            .collect();
        self.on_expiry.extend(kept);
    }

    /// Leases past their end since the last call: their DNS records go (queued) and their
    /// `on expiry` blocks run. Called about once a second by the server. Returns the leases
    /// that changed (they no longer name DNS records or keep an `on expiry` block), for the
    /// journal, so that a restart does not do it again.
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        let mut changed = Vec::new();
        let ended = |e: &Engine, ip: &Ipv4Addr| {
            e.leases
                .get(ip)
                .is_none_or(|l| l.state != State::Active || l.ends <= now)
        };
        let dns: Vec<Ipv4Addr> = self
            .ddns_names
            .keys()
            .filter(|ip| ended(self, ip))
            .copied()
            .collect();
        for ip in dns {
            if self
                .leases
                .get(&ip)
                .is_some_and(|l| l.state == State::Active)
            {
                self.ddns_remove(ip);
                changed.push(ip);
            } else {
                // released or given up another way: whoever ended it removed the records
                self.ddns_names.remove(&ip);
            }
        }
        let gone: Vec<Ipv4Addr> = self
            .on_expiry
            .keys()
            .filter(|ip| ended(self, ip))
            .copied()
            .collect();
        for ip in gone {
            let Some(k) = self.on_expiry.remove(&ip) else {
                continue;
            };
            if !self
                .leases
                .get(&ip)
                .is_some_and(|l| l.state == State::Active)
            {
                continue; // released, not expired
            }
            if let Some(l) = self.leases.get_mut(&ip) {
                l.on_expiry = None;
            }
            changed.push(ip);
            let view = View {
                msg: &k.msg,
                raw: &k.raw,
                host: k.host.clone(),
                stashed: self.leases.get(&ip).and_then(|l| l.agent.clone()),
                leased: Some(ip),
            };
            perform(self.cfg.run(&k.body.body, &view, k.vars.clone()));
        }
        changed.sort_unstable();
        changed.dedup();
        changed
            .iter()
            .filter_map(|ip| self.leases.get(ip).cloned())
            .collect()
    }
}

/// A class and the subclass value a lease is billed to (`lease limit`).
pub(super) type Billing = (usize, Vec<u8>);

/// An `on expiry` block kept with its lease.
pub(super) struct Kept {
    body: std::sync::Arc<crate::conf::OnBlock>,
    vars: std::collections::HashMap<String, Vec<u8>>,
    msg: crate::wire::Msg,
    raw: Vec<u8>,
    host: Option<String>,
}

/// Logs `log()` messages at info and runs `execute()` argvs directly (no shell), waiting
/// for each in a thread of its own so that the server is not held up (ISC waits inline);
/// a failure or a non-zero exit is logged with the command.
pub fn perform(effects: Vec<Effect>) {
    for e in effects {
        match e {
            Effect::Log(m) => info!("{m}"),
            Effect::Execute(argv) => {
                let Some((cmd, args)) = argv.split_first() else {
                    continue;
                };
                let mut child = match Command::new(cmd).args(args).spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(command = %cmd, "execute(): cannot run: {e}");
                        continue;
                    }
                };
                let cmd = cmd.clone();
                std::thread::spawn(move || match child.wait() {
                    Ok(s) if s.success() => {}
                    Ok(s) => warn!(command = %cmd, status = %s, "execute(): command failed"),
                    Err(e) => warn!(command = %cmd, "execute(): {e}"),
                });
            }
        }
    }
}

impl View<'_> {
    /// Hardware type and address (ISC's `hardware`).
    pub(super) fn hardware_bytes(&self) -> Vec<u8> {
        let mut v = vec![self.msg.htype];
        v.extend_from_slice(self.msg.hw());
        v
    }
}

impl Packet for View<'_> {
    fn option(&self, code: u8) -> Option<&[u8]> {
        self.msg.option(code).or(match code {
            // a renewal without the relay: the agent options stashed with the lease
            OPT_RELAY_AGENT => self.stashed.as_deref(),
            _ => None,
        })
    }
    fn hardware(&self) -> Vec<u8> {
        self.hardware_bytes()
    }
    fn raw(&self) -> &[u8] {
        self.raw
    }
    fn known(&self) -> bool {
        self.host.is_some()
    }
    fn leased_address(&self) -> Option<[u8; 4]> {
        self.leased.map(|a| a.octets())
    }
    fn host_decl_name(&self) -> Option<String> {
        self.host.clone()
    }
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
