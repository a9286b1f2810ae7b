//! `static_routes`/`virtual_routes` and `static_rules`/`virtual_rules` lines.
//!
//! Routes, in keepalived's (and `ip route`'s) grammar:
//! `[src ADDR] [blackhole] DEST[/LEN] [via|gw ADDR] [dev IFACE] [scope S] [table N]
//! [metric|preference|priority N] [proto N]`. Multipath (`or`, `nexthop`) and IPv6 are warned
//! about by name and the route skipped.
//!
//! Rules, as `ip rule`: `[from ADDR[/LEN]] [to ADDR[/LEN]] [table N] [priority|preference|pref N]
//! [fwmark N] [iif IFACE] [oif IFACE]`. A rule whose address is invalid is named and skipped
//! (keepalived skips it too); one without a priority gets 16384, as keepalived gives it, with
//! keepalived's warning.

use std::net::Ipv4Addr;

use super::syntax::{error, warning, Diag, Node, Word};

/// One IPv4 route ha installs through rtnetlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub via: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub src: Option<Ipv4Addr>,
    /// Routing table (main when absent).
    pub table: Option<u32>,
    pub metric: Option<u32>,
    /// rtnetlink scope: 0 universe, 200 site, 253 link, 254 host.
    pub scope: Option<u8>,
    pub blackhole: bool,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.blackhole {
            f.write_str("blackhole ")?;
        }
        write!(f, "{}/{}", self.dst, self.prefix)?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(t) = self.table {
            write!(f, " table {t}")?;
        }
        Ok(())
    }
}

fn cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    if s == "default" {
        return Some((Ipv4Addr::UNSPECIFIED, 0));
    }
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok().filter(|p| *p <= 32)?),
        None => (s, 32),
    };
    Some((a.parse().ok()?, p))
}

fn number(w: &Word, v: Option<&Word>, diags: &mut Vec<Diag>) -> Option<u32> {
    let n = v.and_then(|v| v.text.parse::<u32>().ok());
    if n.is_none() {
        diags.push(error(
            &w.pos,
            format!("'{}' needs a number (0-4294967295)", w.text),
        ));
    }
    n
}

/// Parses one route line; a line ha cannot install is named in `diags` and skipped.
pub fn parse_route(n: &Node, diags: &mut Vec<Diag>) -> Option<Route> {
    let words: Vec<&Word> = std::iter::once(&n.key).chain(&n.args).collect();
    let mut r = Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
        via: None,
        dev: None,
        src: None,
        table: None,
        metric: None,
        scope: None,
        blackhole: false,
    };
    let mut dst = false;
    let mut it = words.into_iter();
    let addr = |w: &Word, v: Option<&Word>, diags: &mut Vec<Diag>| {
        let a = v.and_then(|v| v.text.parse::<Ipv4Addr>().ok());
        if a.is_none() {
            diags.push(error(&w.pos, format!("'{}' needs an IPv4 address", w.text)));
        }
        a
    };
    while let Some(w) = it.next() {
        match w.text.as_str() {
            "src" => r.src = Some(addr(w, it.next(), diags)?),
            "via" | "gw" => r.via = Some(addr(w, it.next(), diags)?),
            "dev" | "oif" => match it.next() {
                Some(d) => r.dev = Some(d.text.clone()),
                None => {
                    diags.push(error(&w.pos, "'dev' needs an interface name"));
                    return None;
                }
            },
            "table" => r.table = Some(number(w, it.next(), diags)?),
            "metric" | "preference" | "priority" => r.metric = Some(number(w, it.next(), diags)?),
            "proto" | "protocol" => {
                it.next();
            }
            "scope" => {
                r.scope = Some(match it.next().map(|v| v.text.as_str()) {
                    Some("global" | "universe") => 0,
                    Some("site") => 200,
                    Some("link") => 253,
                    Some("host") => 254,
                    _ => {
                        diags.push(error(&w.pos, "'scope' needs global, site, link or host"));
                        return None;
                    }
                })
            }
            "blackhole" => r.blackhole = true,
            "or" | "nexthop" => {
                diags.push(warning(
                    &w.pos,
                    format!(
                        "multipath routes ('{}') are not implemented by ha; this route is not installed",
                        w.text
                    ),
                ));
                return None;
            }
            t if !dst && cidr(t).is_some() => {
                (r.dst, r.prefix) = cidr(t)?;
                dst = true;
            }
            t if !dst && t.contains(':') => {
                diags.push(warning(
                    &w.pos,
                    format!("IPv6 route {t} is not implemented by ha; it is not installed"),
                ));
                return None;
            }
            t => {
                diags.push(warning(
                    &w.pos,
                    format!(
                        "'{t}' in a route is not implemented by ha; this route is not installed"
                    ),
                ));
                return None;
            }
        }
    }
    if !dst {
        diags.push(error(
            &n.key.pos,
            "a route needs a destination (ADDR/LEN or default)",
        ));
        return None;
    }
    Some(r)
}

/// One IPv4 policy routing rule (action: look up `table`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub from: Option<(Ipv4Addr, u8)>,
    pub to: Option<(Ipv4Addr, u8)>,
    pub table: u32,
    pub priority: u32,
    pub fwmark: Option<u32>,
    pub iif: Option<String>,
    pub oif: Option<String>,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "priority {}", self.priority)?;
        if let Some((a, l)) = self.from {
            write!(f, " from {a}/{l}")?;
        }
        if let Some((a, l)) = self.to {
            write!(f, " to {a}/{l}")?;
        }
        write!(f, " table {}", self.table)
    }
}

/// Parses one rule line; a line ha cannot install is named in `diags` and skipped.
pub fn parse_rule(n: &Node, diags: &mut Vec<Diag>) -> Option<Rule> {
    let mut r = Rule {
        from: None,
        to: None,
        table: libc::RT_TABLE_MAIN as u32,
        priority: 0,
        fwmark: None,
        iif: None,
        oif: None,
    };
    let mut priority = None;
    let mut table = false;
    let mut it = std::iter::once(&n.key).chain(&n.args);
    while let Some(w) = it.next() {
        let v = it.next();
        match w.text.as_str() {
            "from" | "to" => {
                let Some(a) = v.and_then(|v| {
                    cidr(&v.text).or((v.text == "all").then_some((Ipv4Addr::UNSPECIFIED, 0)))
                }) else {
                    diags.push(warning(
                        &w.pos,
                        format!(
                            "invalid rule {} address '{}' (ADDR[/LEN] or all); this rule is not installed, as keepalived skips it",
                            w.text,
                            v.map_or("", |v| v.text.as_str())
                        ),
                    ));
                    return None;
                };
                if w.text == "from" {
                    r.from = Some(a);
                } else {
                    r.to = Some(a);
                }
            }
            "table" | "lookup" => {
                r.table = number(w, v, diags)?;
                table = true;
            }
            "priority" | "preference" | "pref" => priority = Some(number(w, v, diags)?),
            "fwmark" => r.fwmark = Some(number(w, v, diags)?),
            "iif" | "oif" => {
                let Some(d) = v else {
                    diags.push(error(
                        &w.pos,
                        format!("'{}' needs an interface name", w.text),
                    ));
                    return None;
                };
                if w.text == "iif" {
                    r.iif = Some(d.text.clone());
                } else {
                    r.oif = Some(d.text.clone());
                }
            }
            t => {
                diags.push(warning(
                    &w.pos,
                    format!("'{t}' in a rule is not implemented by ha; this rule is not installed"),
                ));
                return None;
            }
        }
    }
    if !table {
        diags.push(error(
            &n.key.pos,
            "a rule needs 'table N' (the only action ha installs)",
        ));
        return None;
    }
    r.priority = priority.unwrap_or_else(|| {
        diags.push(warning(
            &n.key.pos,
            "rule has no priority: ha sets it to 16384 as keepalived does, which is probably not what you want",
        ));
        16384
    });
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::syntax::Pos;

    fn node(line: &str) -> Node {
        let mut w = line.split_whitespace().map(|t| Word {
            text: t.to_string(),
            pos: Pos {
                file: "t".into(),
                line: 1,
                col: 1,
            },
        });
        Node {
            key: w.next().unwrap(),
            args: w.collect(),
            block: None,
        }
    }

    #[test]
    fn keepalived_sample_routes() {
        let mut d = Vec::new();
        let r = parse_route(
            &node("src 192.168.100.1 192.168.109.0/24 via 192.168.200.254 dev eth1"),
            &mut d,
        )
        .unwrap();
        assert_eq!(r.src, Some(Ipv4Addr::new(192, 168, 100, 1)));
        assert_eq!((r.dst, r.prefix), (Ipv4Addr::new(192, 168, 109, 0), 24));
        assert_eq!(r.via, Some(Ipv4Addr::new(192, 168, 200, 254)));
        assert_eq!(r.dev.as_deref(), Some("eth1"));
        let r = parse_route(&node("0.0.0.0/0 gw 192.168.0.1 table 100"), &mut d).unwrap();
        assert_eq!((r.prefix, r.table), (0, Some(100)));
        let r = parse_route(&node("blackhole 192.168.113.1/32"), &mut d).unwrap();
        assert!(r.blackhole);
        let r = parse_route(&node("192.168.212.0/24 dev eth3 scope site"), &mut d).unwrap();
        assert_eq!(r.scope, Some(200));
        assert!(d.is_empty(), "{d:?}");
        assert!(parse_route(
            &node("192.168.113.0/24 via 192.168.100.252 or 192.168.100.253"),
            &mut d
        )
        .is_none());
        assert_eq!(d.len(), 1);
        assert!(parse_route(&node("table 3"), &mut d).is_none());
    }

    #[test]
    fn keepalived_sample_rules() {
        let mut d = Vec::new();
        let r = parse_rule(&node("from 192.168.100.0/24 table 1 priority 100"), &mut d).unwrap();
        assert_eq!(r.from, Some((Ipv4Addr::new(192, 168, 100, 0), 24)));
        assert_eq!((r.table, r.priority), (1, 100));
        assert!(d.is_empty(), "{d:?}");
        let r = parse_rule(&node("to 10.0.0.1 table 2"), &mut d).unwrap();
        assert_eq!(
            (r.to, r.priority),
            (Some((Ipv4Addr::new(10, 0, 0, 1), 32)), 16384)
        );
        assert_eq!(d.len(), 1);
        assert!(parse_rule(&node("to 192.168.100./24 table 1"), &mut d).is_none());
        assert_eq!(d.len(), 2);
    }
}
