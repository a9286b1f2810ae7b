//! Checks across declarations once everything is parsed: ranges, overlaps, hosts.

use std::collections::HashSet;

use super::lexer::Pos;
use super::model::*;
use super::{err, Diag};

pub(super) fn validate(cfg: &mut Config) -> Vec<Diag> {
    let mut errors = Vec::new();
    for (i, s) in cfg.subnets.iter().enumerate() {
        for r in &s.ranges {
            if !s.contains(r.start) || !s.contains(r.end) {
                errors.push(err(
                    &r.pos,
                    format!(
                        "range {} {} is outside subnet {}/{} (netmask {})",
                        r.start,
                        r.end,
                        s.net,
                        s.prefix_len(),
                        s.mask
                    ),
                ));
            } else if r.start == s.net || r.end == s.broadcast() {
                errors.push(err(
                    &r.pos,
                    format!(
                        "range {} {} includes the network or broadcast address of {}/{}",
                        r.start,
                        r.end,
                        s.net,
                        s.prefix_len()
                    ),
                ));
            }
        }
        for o in &cfg.subnets[i + 1..] {
            if s.contains(o.net) || o.contains(s.net) {
                errors.push(err(
                    &o.pos,
                    format!(
                        "subnet {}/{} overlaps subnet {}/{} declared at {}",
                        o.net,
                        o.prefix_len(),
                        s.net,
                        s.prefix_len(),
                        s.pos
                    ),
                ));
            }
        }
    }
    let mut all: Vec<(u32, u32, Pos)> = cfg
        .subnets
        .iter()
        .flat_map(|s| {
            s.ranges
                .iter()
                .map(|r| (u32::from(r.start), u32::from(r.end), r.pos.clone()))
        })
        .collect();
    all.sort_by_key(|r| r.0);
    for w in all.windows(2) {
        if w[1].0 <= w[0].1 {
            errors.push(err(
                &w[1].2,
                format!("this range overlaps the range at {}", w[0].2),
            ));
        }
    }
    let mut seen_hw = HashSet::new();
    let mut names: std::collections::HashMap<&str, &Pos> = std::collections::HashMap::new();
    let mut warnings = Vec::new();
    for h in &cfg.hosts {
        if let Some(first) = names.insert(&h.name, &h.pos) {
            errors.push(err(
                &h.pos,
                format!(
                    "host {} is declared twice (first at {first}; ISC dhcpd refuses it too): give each host its own name",
                    h.name
                ),
            ));
            names.insert(&h.name, first);
        }
        if h.hw.is_none() && h.client_id.is_none() {
            warnings.push(Diag {
                pos: h.pos.clone(),
                message: format!("host {} has neither 'hardware ethernet' nor a client identifier: it can never match", h.name),
                warning: true,
            });
        }
        if let Some(hw) = h.hw {
            if !seen_hw.insert(hw) {
                warnings.push(Diag {
                    pos: h.pos.clone(),
                    message: format!(
                        "host {}: another host has the same hardware address",
                        h.name
                    ),
                    warning: true,
                });
            }
        }
        for a in &h.fixed {
            if let Addr::Ip(ip) = a {
                let v = u32::from(*ip);
                if all.iter().any(|r| r.0 <= v && v <= r.1) {
                    warnings.push(Diag {
                        pos: h.pos.clone(),
                        message: format!("host {}: fixed address {ip} lies inside a dynamic range; it is kept out of the pool", h.name),
                        warning: true,
                    });
                }
            }
        }
    }
    cfg.warnings.extend(warnings);
    errors
}
