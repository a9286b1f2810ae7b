//! Does the local packet filter let VRRP in? The ruleset (`nft -j list ruleset`, and
//! `iptables-legacy-save` / `ip6tables-legacy-save` when the legacy tables are in use) is read
//! into one small model of chains, rules, conditions and verdicts, and a VRRP advert (IPv4, or
//! VRRPv3 over IPv6) is walked through every base chain of the input and prerouting hooks of
//! its family (`ip` or `ip6`, and `inet`) as the kernel would: rules in order, jumps and gotos
//! followed, the chain policy at the end. A match on the other family's header never holds. Every base chain must accept for the packet to
//! arrive, so the first one that drops it is named (family, table, chain, rule handle).
//!
//! A condition ha cannot decide (an `xt` match, a mark, `fib`) is "unknown": a rule that
//! drops under unknown conditions is a warning ("may drop"), an accept under unknown
//! conditions is not relied upon. Connection tracking is judged as for the first advert
//! (`ct state new`): multicast adverts never become established.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

/// What a VRRP advert looks like to the input hook of this node.
#[derive(Clone, Debug)]
pub struct Packet {
    /// IP protocol: 112 (VRRP), or 51 (AH).
    pub proto: u8,
    /// The sender: a unicast peer; `None` for multicast (any router on the link).
    pub saddr: Option<IpAddr>,
    /// Where multicast senders are: the subnet of the interface, for IPv6 fe80::/64
    /// (`None`: unknown).
    pub src_net: Option<(IpAddr, u8)>,
    /// The destination: the multicast group, or this node's unicast_src when known.
    pub daddr: Option<IpAddr>,
    /// The interface the advert arrives on.
    pub iif: String,
}

impl Packet {
    /// Whether it is an IPv6 packet (by its addresses).
    pub fn is_v6(&self) -> bool {
        self.saddr
            .or(self.daddr)
            .or(self.src_net.map(|n| n.0))
            .is_some_and(|a| a.is_ipv6())
    }
}

/// One rule's condition.
#[derive(Clone, Debug, PartialEq)]
enum Cond {
    Proto(bool, Vec<u8>),
    Saddr(bool, Vec<Net>),
    Daddr(bool, Vec<Net>),
    Iif(bool, Vec<String>),
    /// Packet type (`meta pkttype`): host, multicast, broadcast, other.
    PktType(bool, Vec<String>),
    CtState(bool, Vec<String>),
    /// The packet's family is one of these (IPv6: `true`): `meta nfproto`, `meta protocol`.
    Family(bool, Vec<bool>),
    /// A match on one family's header (IPv6: `true`): never true for the other family's
    /// packets, whatever its operator (nft adds that dependency itself).
    Only(bool, Box<Cond>),
    /// Never true for a VRRP packet (a TCP port, ARP).
    Never,
    Unknown(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Net(IpAddr, u8);

impl Net {
    /// Whether `a` is in the network (never for an address of the other family).
    fn contains(&self, a: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let width: u32 = if a.is_ipv6() { 128 } else { 32 };
        if a.is_ipv6() != self.0.is_ipv6() {
            return false;
        }
        let len = u32::from(self.1).min(width);
        let mask = if len == 0 {
            0
        } else {
            (u128::MAX >> (128 - width)) & !((1u128 << (width - len)) - 1)
        };
        bits(a) & mask == bits(self.0) & mask
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Accept,
    Drop,
    Jump(String),
    Goto(String),
    Return,
    /// No verdict: evaluation goes on with the next rule (counter, log).
    Continue,
    Unknown(String),
}

#[derive(Clone, Debug)]
struct Rule {
    handle: Option<u64>,
    conds: Vec<Cond>,
    verdict: Verdict,
}

/// Which tool the ruleset came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Nft,
    IptablesLegacy,
}

#[derive(Clone, Debug)]
struct Chain {
    source: Source,
    family: String,
    table: String,
    name: String,
    hook: Option<String>,
    /// Base chains only; `true` for policy drop.
    policy_drop: bool,
    rules: Vec<Rule>,
}

/// A ruleset read from nft or iptables-legacy.
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    chains: Vec<Chain>,
}

/// Where a packet ends in a base chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    pub source: Source,
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: String,
    /// The rule that drops it; `None` when it is the chain's policy.
    pub handle: Option<u64>,
    /// The chain the dropping rule is in (a jump target), when not the base chain.
    pub in_chain: String,
    /// `false`: the rule drops only under conditions ha could not decide.
    pub certain: bool,
    /// What ha could not decide, for the message.
    pub unknown: Vec<String>,
}

impl Dropped {
    /// `table inet nodefw chain filter_in handle 4` (iptables: `iptables-legacy table filter
    /// chain INPUT rule 2`).
    pub fn place(&self) -> String {
        let what = match (self.source, self.handle) {
            (Source::Nft, Some(h)) => format!("rule handle {h}"),
            (Source::IptablesLegacy, Some(h)) => format!("rule {h}"),
            (_, None) => "policy drop".to_string(),
        };
        match self.source {
            Source::Nft => format!(
                "table {} {} chain {} ({} hook) {what}",
                self.family, self.table, self.in_chain, self.hook
            ),
            Source::IptablesLegacy => format!(
                "iptables-legacy table {} chain {} {what}",
                self.table, self.in_chain
            ),
        }
    }
}

const HOOKS: [&str; 2] = ["prerouting", "input"];

fn proto_number(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => proto_by_name(s),
        _ => None,
    }
}

fn proto_by_name(s: &str) -> Option<u8> {
    Some(match s.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "vrrp" => 112,
        "sctp" => 132,
        "udplite" => 136,
        n => return n.parse().ok(),
    })
}

fn parse_net(s: &str) -> Option<Net> {
    let width = |a: &IpAddr| if a.is_ipv6() { 128 } else { 32 };
    match s.split_once('/') {
        Some((a, l)) => {
            let a: IpAddr = a.parse().ok()?;
            Some(Net(a, l.parse().ok().filter(|l| *l <= width(&a))?))
        }
        None => {
            let a: IpAddr = s.parse().ok()?;
            Some(Net(a, width(&a)))
        }
    }
}

/// The elements of a set, a single value, a named set (resolved in `sets`) or a list.
fn elements<'a>(v: &'a Value, sets: &'a HashMap<String, Vec<Value>>) -> Option<Vec<&'a Value>> {
    match v {
        Value::Object(o) if o.contains_key("set") => match &o["set"] {
            Value::Array(a) => Some(a.iter().collect()),
            one => Some(vec![one]),
        },
        Value::String(s) if s.starts_with('@') => sets.get(&s[1..]).map(|e| e.iter().collect()),
        Value::Array(a) => Some(a.iter().collect()),
        one => Some(vec![one]),
    }
}

fn value_net(v: &Value) -> Option<Net> {
    match v {
        Value::String(s) => parse_net(s),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let a = p.get("addr")?.as_str()?.parse().ok()?;
                let l = u8::try_from(p.get("len")?.as_u64()?).ok()?;
                Some(Net(a, l))
            } else if let Some(Value::Array(r)) = o.get("range") {
                // a range as the smallest prefix holding it is wrong in general; only exact
                // single-address ranges are taken
                let lo: IpAddr = r.first()?.as_str()?.parse().ok()?;
                let hi: IpAddr = r.get(1)?.as_str()?.parse().ok()?;
                (lo == hi).then_some(Net(lo, if lo.is_ipv6() { 128 } else { 32 }))
            } else {
                // an element with options (`10.0.0.2 comment "x"`)
                o.get("elem").and_then(|e| e.get("val")).and_then(value_net)
            }
        }
        _ => None,
    }
}

fn strings(els: &[&Value]) -> Option<Vec<String>> {
    els.iter().map(|v| v.as_str().map(str::to_string)).collect()
}

/// One nft `match` expression as a condition.
fn nft_match(m: &Value, sets: &HashMap<String, Vec<Value>>) -> Cond {
    let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
    let neg = op == "!=";
    let unknown = || Cond::Unknown(compact(m));
    if !matches!(op, "==" | "!=" | "in") {
        return unknown();
    }
    let (Some(left), Some(right)) = (m.get("left"), m.get("right")) else {
        return unknown();
    };
    let Some(els) = elements(right, sets) else {
        return unknown();
    };
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        let field = p.get("field").and_then(Value::as_str).unwrap_or("");
        let v6 = proto == "ip6";
        return match (proto, field) {
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                Cond::Only(v6, Box::new(protos(neg, &els).unwrap_or_else(unknown)))
            }
            ("ip" | "ip6", "saddr" | "daddr") => Cond::Only(
                v6,
                Box::new(match els.iter().map(|v| value_net(v)).collect() {
                    Some(nets) if field == "saddr" => Cond::Saddr(neg, nets),
                    Some(nets) => Cond::Daddr(neg, nets),
                    None => unknown(),
                }),
            ),
            ("ip" | "ip6", _) => Cond::Only(v6, Box::new(unknown())),
            // the header of another protocol is never there: nft adds that dependency itself
            (
                "tcp" | "udp" | "udplite" | "sctp" | "dccp" | "icmp" | "icmpv6" | "esp" | "comp"
                | "arp" | "th",
                _,
            ) => Cond::Never,
            ("ah", _) => unknown(),
            _ => unknown(),
        };
    }
    if let Some(key) = left
        .get("meta")
        .and_then(|m| m.get("key"))
        .and_then(Value::as_str)
    {
        return match key {
            "l4proto" => protos(neg, &els).unwrap_or_else(unknown),
            "nfproto" | "protocol" => match strings(&els) {
                Some(v) => Cond::Family(
                    neg,
                    v.iter()
                        .filter_map(|s| match s.as_str() {
                            "ipv4" | "ip" => Some(false),
                            "ipv6" | "ip6" => Some(true),
                            _ => None,
                        })
                        .collect(),
                ),
                None => unknown(),
            },
            "iifname" | "iif" => match strings(&els) {
                Some(v) => Cond::Iif(neg, v),
                None => unknown(),
            },
            "pkttype" => match strings(&els) {
                Some(v) => Cond::PktType(neg, v),
                None => unknown(),
            },
            _ => unknown(),
        };
    }
    if left
        .get("ct")
        .and_then(|c| c.get("key"))
        .and_then(Value::as_str)
        == Some("state")
    {
        return match strings(&els) {
            Some(v) => Cond::CtState(neg, v),
            None => unknown(),
        };
    }
    unknown()
}

fn protos(neg: bool, els: &[&Value]) -> Option<Cond> {
    let v: Option<Vec<u8>> = els.iter().map(|v| proto_number(v)).collect();
    v.map(|v| Cond::Proto(neg, v))
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// A verdict map (`ct state vmap { established : accept, invalid : drop }`) as one rule per
/// element: `KEY == ELEMENT` and its verdict. The elements are distinct, so at most one
/// matches, as in the map.
fn vmap_rules(
    m: &Value,
    handle: Option<u64>,
    conds: &[Cond],
    sets: &HashMap<String, Vec<Value>>,
) -> Vec<Rule> {
    let entries = m
        .get("data")
        .and_then(|d| d.get("set"))
        .and_then(Value::as_array);
    let (Some(key), Some(entries)) = (m.get("key"), entries) else {
        return vec![Rule {
            handle,
            conds: conds.to_vec(),
            verdict: Verdict::Unknown(compact(m)),
        }];
    };
    entries
        .iter()
        .map(|entry| {
            let (elem, verdict) = match entry.as_array().map(Vec::as_slice) {
                Some([elem, verdict]) => (elem, nft_verdict(verdict)),
                _ => (entry, None),
            };
            let mut c = conds.to_vec();
            c.push(nft_match(
                &serde_json::json!({"op": "==", "left": key, "right": elem}),
                sets,
            ));
            Rule {
                handle,
                conds: c,
                verdict: verdict.unwrap_or_else(|| Verdict::Unknown(compact(entry))),
            }
        })
        .collect()
}

fn nft_verdict(e: &Value) -> Option<Verdict> {
    let o = e.as_object()?;
    let (k, v) = o.iter().next()?;
    Some(match k.as_str() {
        "accept" => Verdict::Accept,
        "drop" | "reject" => Verdict::Drop,
        "jump" => Verdict::Jump(v.get("target")?.as_str()?.to_string()),
        "goto" => Verdict::Goto(v.get("target")?.as_str()?.to_string()),
        "return" => Verdict::Return,
        "queue" => Verdict::Unknown(compact(e)),
        "xt" if v.get("type").and_then(Value::as_str) == Some("target") => {
            Verdict::Unknown(compact(e))
        }
        _ => return None,
    })
}

impl Ruleset {
    /// Reads `nft -j list ruleset`.
    pub fn from_nft_json(text: &str) -> anyhow::Result<Ruleset> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("nft -j list ruleset: not JSON: {e}"))?;
        let items = doc
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("nft -j list ruleset: no \"nftables\" array"))?;
        let key = |o: &Value, name: &str| {
            format!(
                "{} {} {name}",
                o.get("family").and_then(Value::as_str).unwrap_or(""),
                o.get("table").and_then(Value::as_str).unwrap_or("")
            )
        };
        let mut sets: HashMap<String, HashMap<String, Vec<Value>>> = HashMap::new();
        let mut chains: Vec<Chain> = Vec::new();
        for it in items {
            if let Some(s) = it.get("set") {
                let name = s.get("name").and_then(Value::as_str).unwrap_or("");
                let elem = s.get("elem").and_then(Value::as_array).cloned();
                sets.entry(key(s, ""))
                    .or_default()
                    .insert(name.to_string(), elem.unwrap_or_default());
            }
            if let Some(c) = it.get("chain") {
                let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
                chains.push(Chain {
                    source: Source::Nft,
                    family: s("family").unwrap_or_default(),
                    table: s("table").unwrap_or_default(),
                    name: s("name").unwrap_or_default(),
                    hook: s("hook"),
                    policy_drop: s("policy").as_deref() == Some("drop"),
                    rules: Vec::new(),
                });
            }
        }
        let none = HashMap::new();
        for it in items {
            let Some(r) = it.get("rule") else { continue };
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let tsets = sets.get(&key(r, "")).unwrap_or(&none);
            let mut conds = Vec::new();
            let mut verdict = Verdict::Continue;
            let mut vmap = None;
            for e in r
                .get("expr")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(m) = e.get("match") {
                    conds.push(nft_match(m, tsets));
                } else if let Some(m) = e.get("vmap") {
                    vmap = Some(m);
                } else if let Some(v) = nft_verdict(e) {
                    verdict = v;
                } else if e.get("limit").is_some() || e.get("quota").is_some() {
                    // the verdict applies to some packets only
                    conds.push(Cond::Unknown(compact(e)));
                } else if let Some(x) = e.get("xt") {
                    conds.push(Cond::Unknown(format!(
                        "xt match {}",
                        x.get("name").and_then(Value::as_str).unwrap_or("?")
                    )));
                }
                // counter, log, notrack... go on
            }
            let handle = r.get("handle").and_then(Value::as_u64);
            let rules = match vmap {
                None => vec![Rule {
                    handle,
                    conds,
                    verdict,
                }],
                Some(m) => vmap_rules(m, handle, &conds, tsets),
            };
            if let Some(c) = chains
                .iter_mut()
                .find(|c| c.family == s("family") && c.table == s("table") && c.name == s("chain"))
            {
                c.rules.extend(rules);
            }
        }
        Ok(Ruleset { chains })
    }

    /// Reads `iptables-legacy-save` (or any iptables-save text).
    pub fn from_iptables_save(text: &str) -> Ruleset {
        Ruleset::from_xtables_save(text, "ip")
    }

    /// Reads `ip6tables-legacy-save` (or any ip6tables-save text).
    pub fn from_ip6tables_save(text: &str) -> Ruleset {
        Ruleset::from_xtables_save(text, "ip6")
    }

    fn from_xtables_save(text: &str, family: &str) -> Ruleset {
        let mut chains: Vec<Chain> = Vec::new();
        let mut table = String::new();
        let mut counts: HashMap<String, u64> = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(c) = line.strip_prefix(':') {
                let mut w = c.split_whitespace();
                let name = w.next().unwrap_or("").to_string();
                let policy = w.next().unwrap_or("-");
                let hook = match name.as_str() {
                    "INPUT" => Some("input"),
                    "PREROUTING" => Some("prerouting"),
                    "FORWARD" => Some("forward"),
                    "OUTPUT" => Some("output"),
                    "POSTROUTING" => Some("postrouting"),
                    _ => None,
                };
                chains.push(Chain {
                    source: Source::IptablesLegacy,
                    family: family.into(),
                    table: table.clone(),
                    name,
                    hook: hook.map(str::to_string),
                    policy_drop: policy == "DROP",
                    rules: Vec::new(),
                });
            } else if line.starts_with("-A ") {
                let Some(words) = shlex::split(line) else {
                    continue;
                };
                let (chain, rule) = iptables_rule(&words);
                let n = counts.entry(format!("{table} {chain}")).or_default();
                *n += 1;
                let rule = Rule {
                    handle: Some(*n),
                    ..rule
                };
                if let Some(c) = chains
                    .iter_mut()
                    .find(|c| c.table == table && c.name == chain)
                {
                    c.rules.push(rule);
                }
            }
        }
        Ruleset { chains }
    }

    /// Whether any chain of the input path has a rule or a drop policy (a ruleset worth
    /// reading: an empty legacy table set says nothing).
    pub fn is_empty(&self) -> bool {
        self.chains
            .iter()
            .all(|c| c.rules.is_empty() && !c.policy_drop)
    }

    /// The base chains of the input path that drop `p` (or may drop it), in hook order:
    /// those of its family (`ip` or `ip6`) and of `inet`.
    pub fn drops(&self, p: &Packet) -> Vec<Dropped> {
        let mut out = Vec::new();
        let family = if p.is_v6() { "ip6" } else { "ip" };
        for hook in HOOKS {
            for c in self.chains.iter().filter(|c| {
                c.hook.as_deref() == Some(hook) && (c.family == family || c.family == "inet")
            }) {
                let mut unknown = Vec::new();
                if let Some((in_chain, handle, certain)) =
                    self.walk(c, p, &mut unknown, 0).dropped()
                {
                    out.push(Dropped {
                        source: c.source,
                        family: c.family.clone(),
                        table: c.table.clone(),
                        chain: c.name.clone(),
                        hook: hook.to_string(),
                        handle,
                        in_chain,
                        certain,
                        unknown,
                    });
                }
            }
        }
        out
    }

    /// Runs `p` through `chain`: the outcome, with what could not be decided on the way.
    /// A drop under undecided conditions is remembered and evaluation goes on: a later sure
    /// drop makes it certain, a sure accept with nothing undecided before it clears it.
    fn walk(&self, chain: &Chain, p: &Packet, unknown: &mut Vec<String>, depth: u32) -> Outcome {
        if depth > 16 {
            unknown.push(format!(
                "jumps nested deeper than 16 at chain {}",
                chain.name
            ));
            return Outcome::Unknown;
        }
        // something before this rule may have accepted (or returned) the packet
        let mut uncertain = false;
        let mut maybe_drop: Option<Outcome> = None;
        for r in &chain.rules {
            let mut m = Tri::Yes;
            for c in &r.conds {
                m = m.and(eval(c, p, unknown));
            }
            if m == Tri::No {
                continue;
            }
            let sure = m == Tri::Yes;
            let next = match &r.verdict {
                Verdict::Accept => Outcome::Accept,
                Verdict::Drop => Outcome::Drop {
                    chain: chain.name.clone(),
                    handle: r.handle,
                },
                Verdict::Return => Outcome::Return,
                Verdict::Continue => continue,
                Verdict::Unknown(what) => {
                    unknown.push(what.clone());
                    Outcome::Unknown
                }
                Verdict::Jump(t) | Verdict::Goto(t) => {
                    let Some(target) = self.chains.iter().find(|c| {
                        c.source == chain.source
                            && c.family == chain.family
                            && c.table == chain.table
                            && &c.name == t
                    }) else {
                        continue;
                    };
                    match self.walk(target, p, unknown, depth + 1) {
                        // the end of a jumped-to chain comes back here; of a goto's, it
                        // leaves this chain too
                        Outcome::Return if matches!(r.verdict, Verdict::Jump(_)) => continue,
                        o => o,
                    }
                }
            };
            match next {
                // accepted here or by a rule before: only an undecided drop before remains
                Outcome::Accept if sure => return maybe_drop.unwrap_or(Outcome::Accept),
                Outcome::Accept | Outcome::Unknown => uncertain = true,
                Outcome::Drop { chain, handle } if sure && !uncertain => {
                    return Outcome::Drop { chain, handle }
                }
                Outcome::Drop { chain, handle } | Outcome::MaybeDrop { chain, handle } => {
                    maybe_drop.get_or_insert(Outcome::MaybeDrop { chain, handle });
                }
                Outcome::Return if sure => return self.end(chain, maybe_drop, uncertain),
                Outcome::Return => uncertain = true,
            }
        }
        self.end(chain, maybe_drop, uncertain)
    }

    /// The end of a chain: the policy of a base chain, a return from any other.
    fn end(&self, chain: &Chain, maybe_drop: Option<Outcome>, uncertain: bool) -> Outcome {
        if chain.hook.is_some() && chain.policy_drop {
            let policy = (chain.name.clone(), None);
            return match maybe_drop {
                Some(d) => d,
                None if uncertain => Outcome::MaybeDrop {
                    chain: policy.0,
                    handle: policy.1,
                },
                None => Outcome::Drop {
                    chain: policy.0,
                    handle: policy.1,
                },
            };
        }
        match maybe_drop {
            Some(d) => d,
            // something in here may have accepted the packet: the caller cannot be sure
            None if uncertain => Outcome::Unknown,
            None => Outcome::Return,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Accept,
    Drop { chain: String, handle: Option<u64> },
    MaybeDrop { chain: String, handle: Option<u64> },
    Return,
    Unknown,
}

impl Outcome {
    fn dropped(self) -> Option<(String, Option<u64>, bool)> {
        match self {
            Outcome::Drop { chain, handle } => Some((chain, handle, true)),
            Outcome::MaybeDrop { chain, handle } => Some((chain, handle, false)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn and(self, o: Tri) -> Tri {
        match (self, o) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        }
    }
    fn of(neg: bool, b: bool) -> Tri {
        if b != neg {
            Tri::Yes
        } else {
            Tri::No
        }
    }
}

fn iface_matches(pattern: &str, name: &str) -> bool {
    // iptables `eth+` and nft `eth*` are prefixes
    match pattern
        .strip_suffix('*')
        .or_else(|| pattern.strip_suffix('+'))
    {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn eval(c: &Cond, p: &Packet, unknown: &mut Vec<String>) -> Tri {
    let saddr = |neg: bool, nets: &[Net], unknown: &mut Vec<String>| match (p.saddr, p.src_net) {
        (Some(a), _) => Tri::of(neg, nets.iter().any(|n| n.contains(a))),
        // every sender on the link is in (or none is in) the rule's networks
        (None, Some((a, l))) if nets.iter().any(|n| n.1 <= l && n.contains(a)) => {
            Tri::of(neg, true)
        }
        (None, Some((a, l)))
            if !nets
                .iter()
                .any(|n| n.contains(a) || Net(a, l).contains(n.0)) =>
        {
            Tri::of(neg, false)
        }
        _ => {
            unknown.push(
                "a source address match (multicast adverts come from any router on the link)"
                    .into(),
            );
            Tri::Maybe
        }
    };
    match c {
        Cond::Proto(neg, ps) if ps.is_empty() => Tri::of(*neg, true),
        Cond::Proto(neg, ps) => Tri::of(*neg, ps.contains(&p.proto)),
        Cond::Saddr(neg, nets) => saddr(*neg, nets, unknown),
        Cond::Daddr(neg, nets) => match p.daddr {
            Some(a) => Tri::of(*neg, nets.iter().any(|n| n.contains(a))),
            None => {
                unknown.push("a destination address match (no unicast_src configured)".into());
                Tri::Maybe
            }
        },
        Cond::Iif(neg, names) => Tri::of(*neg, names.iter().any(|n| iface_matches(n, &p.iif))),
        Cond::PktType(neg, types) => {
            let t = match p.daddr {
                Some(a) if a.is_multicast() => "multicast",
                Some(_) => "host",
                None => "host",
            };
            Tri::of(*neg, types.iter().any(|x| x == t))
        }
        Cond::CtState(neg, states) => Tri::of(*neg, states.iter().any(|s| s == "new")),
        Cond::Family(neg, fams) => Tri::of(*neg, fams.contains(&p.is_v6())),
        Cond::Only(v6, c) if *v6 == p.is_v6() => eval(c, p, unknown),
        Cond::Only(..) => Tri::No,
        Cond::Never => Tri::No,
        Cond::Unknown(what) => {
            unknown.push(what.clone());
            Tri::Maybe
        }
    }
}

/// One `-A CHAIN ...` line of iptables-save: its chain and rule.
fn iptables_rule(w: &[String]) -> (String, Rule) {
    let mut chain = String::new();
    let mut conds = Vec::new();
    let mut verdict = Verdict::Continue;
    let mut neg = false;
    let mut i = 0;
    let arg = |i: usize| w.get(i + 1).map(String::as_str).unwrap_or("");
    while i < w.len() {
        let a = w[i].as_str();
        let mut used = 1;
        match a {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-A" => {
                chain = arg(i).to_string();
                used = 2;
            }
            "-p" | "--protocol" => {
                conds.push(match proto_by_name(arg(i)) {
                    Some(n) => Cond::Proto(neg, vec![n]),
                    None => Cond::Unknown(format!("-p {}", arg(i))),
                });
                used = 2;
            }
            "-s" | "--source" | "-d" | "--destination" => {
                let nets: Option<Vec<Net>> = arg(i).split(',').map(parse_net).collect();
                conds.push(match nets {
                    Some(n) if a.starts_with("-s") || a == "--source" => Cond::Saddr(neg, n),
                    Some(n) => Cond::Daddr(neg, n),
                    None => Cond::Unknown(format!("{a} {}", arg(i))),
                });
                used = 2;
            }
            "-i" | "--in-interface" => {
                conds.push(Cond::Iif(neg, vec![arg(i).to_string()]));
                used = 2;
            }
            "--state" | "--ctstate" => {
                let s = arg(i).split(',').map(str::to_ascii_lowercase).collect();
                conds.push(Cond::CtState(neg, s));
                used = 2;
            }
            "--pkt-type" => {
                conds.push(Cond::PktType(neg, vec![arg(i).to_string()]));
                used = 2;
            }
            "-m" | "--match" => {
                // the matches whose options are understood, or that never decide (comment)
                if !matches!(arg(i), "state" | "conntrack" | "comment" | "pkttype")
                    && !["tcp", "udp", "icmp", "sctp", "multiport"].contains(&arg(i))
                {
                    conds.push(Cond::Unknown(format!("-m {}", arg(i))));
                }
                used = 2;
            }
            "--comment" => used = 2,
            "-j" | "--jump" | "-g" | "--goto" => {
                let t = arg(i);
                verdict = match t {
                    "ACCEPT" => Verdict::Accept,
                    "DROP" | "REJECT" => Verdict::Drop,
                    "RETURN" => Verdict::Return,
                    "LOG" | "NFLOG" | "MARK" | "CONNMARK" | "CT" | "NOTRACK" | "TRACE" => {
                        Verdict::Continue
                    }
                    other if other.chars().all(|c| c.is_ascii_uppercase()) => {
                        Verdict::Unknown(format!("-j {other}"))
                    }
                    other if a == "-g" || a == "--goto" => Verdict::Goto(other.to_string()),
                    other => Verdict::Jump(other.to_string()),
                };
                used = 2;
            }
            // options of -p tcp/udp/icmp never matter: -p already decided
            "--dport" | "--sport" | "--dports" | "--sports" | "--icmp-type" | "--tcp-flags"
            | "--reject-with" | "--log-prefix" | "--log-level" => {
                used = if a == "--tcp-flags" { 3 } else { 2 };
            }
            "--syn" => {}
            other if other.starts_with('-') => {
                conds.push(Cond::Unknown(format!("{other} {}", arg(i))));
                used = 2;
            }
            _ => {}
        }
        neg = false;
        i += used;
    }
    (
        chain,
        Rule {
            handle: None,
            conds,
            verdict,
        },
    )
}

/// `nft -a list ruleset` text: the rule line of each (family table chain handle), for messages.
pub fn rule_texts(listing: &str) -> HashMap<(String, String, String, u64), String> {
    let mut out = HashMap::new();
    let (mut fam, mut table, mut chain) = (String::new(), String::new(), String::new());
    for line in listing.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("table ") {
            let mut w = rest.split_whitespace();
            fam = w.next().unwrap_or("").to_string();
            table = w.next().unwrap_or("").to_string();
        } else if let Some(rest) = t.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
        } else if let Some((rule, h)) = t.rsplit_once(" # handle ") {
            if let Ok(h) = h.trim().parse() {
                out.insert(
                    (fam.clone(), table.clone(), chain.clone(), h),
                    rule.to_string(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
