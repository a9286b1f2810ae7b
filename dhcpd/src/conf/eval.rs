//! Evaluation: the parameters in force for one client, from the scopes that apply to it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::expr;
use super::model::*;
use super::options::Chunk;

/// The parameters in force for one client.
#[derive(Clone, Debug)]
pub struct Params {
    pub default_lease: u32,
    pub max_lease: u32,
    pub min_lease: u32,
    pub abandon_time: u32,
    /// `dynamic-bootp-lease-length`; none: dynamic BOOTP leases never end (ISC).
    pub bootp_lease_length: Option<u32>,
    /// `dynamic-bootp-lease-cutoff`: when dynamic BOOTP leases end; before the length.
    pub bootp_lease_cutoff: Option<u64>,
    pub filename: Option<String>,
    pub server_name: Option<String>,
    pub next_server: Option<Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub authoritative: bool,
    pub always_broadcast: bool,
    pub use_host_decl_names: bool,
    pub unknown_clients: bool,
    /// BOOTP requests answered (ISC's default: allowed).
    pub bootp: bool,
    /// Conflict detection before an offer (off unless `ping-check true;`).
    pub ping_check: bool,
    pub ping_timeout: u32,
    /// Option values by code; the last statement executed wins.
    pub options: BTreeMap<u8, Vec<Chunk>>,
    /// Options of other spaces (`ipxe.no-pxedhcp`), by space and code.
    pub sub_options: BTreeMap<(String, u8), Vec<Chunk>>,
    pub vendor_space: Option<String>,
    pub site_space: Option<String>,
    pub stash_agent: bool,
    pub ddns_style: DdnsStyle,
    pub ddns_updates: bool,
    pub ddns_domain: Option<String>,
    pub ddns_rev_domain: String,
    pub ddns_ttl: Option<u32>,
    /// `ddns-hostname`, evaluated for the client.
    pub ddns_hostname: Option<Vec<u8>>,
    pub update_static: bool,
    pub client_updates: ClientUpdates,
    /// The client FQDN option (81) of the reply: set by the engine from what DDNS did.
    pub fqdn_reply: Option<Vec<u8>>,
    /// Variables from `set`.
    pub vars: HashMap<String, Vec<u8>>,
    /// The body of the last `on EVENT` block executed, per event.
    pub on: BTreeMap<Event, std::sync::Arc<OnBlock>>,
    /// `log(...)` messages and `execute(...)` argvs, in order, for the caller to perform.
    pub effects: Vec<Effect>,
}

/// Something a statement asks the server to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Log(String),
    Execute(Vec<String>),
}

/// A packet seen with the variables set so far and the options configured so far.
struct WithVars<'a> {
    pkt: &'a dyn expr::Packet,
    vars: &'a HashMap<String, Vec<u8>>,
    options: &'a BTreeMap<u8, Vec<Chunk>>,
}

impl expr::Packet for WithVars<'_> {
    fn option(&self, code: u8) -> Option<&[u8]> {
        self.pkt.option(code)
    }
    fn hardware(&self) -> Vec<u8> {
        self.pkt.hardware()
    }
    fn raw(&self) -> &[u8] {
        self.pkt.raw()
    }
    fn known(&self) -> bool {
        self.pkt.known()
    }
    fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.vars.get(name).cloned().or_else(|| self.pkt.var(name))
    }
    fn leased_address(&self) -> Option<[u8; 4]> {
        self.pkt.leased_address()
    }
    fn host_decl_name(&self) -> Option<String> {
        self.pkt.host_decl_name()
    }
    fn config_option(&self, code: u8) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        for c in self.options.get(&code)? {
            match c {
                Chunk::Bytes(b) => v.extend_from_slice(b),
                Chunk::Host(_) => return self.pkt.config_option(code),
            }
        }
        Some(v)
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            default_lease: 43200,
            max_lease: 86400,
            min_lease: 0,
            abandon_time: 86400,
            bootp_lease_length: None,
            bootp_lease_cutoff: None,
            filename: None,
            server_name: None,
            next_server: None,
            server_id: None,
            authoritative: false,
            always_broadcast: false,
            use_host_decl_names: false,
            unknown_clients: true,
            bootp: true,
            ping_check: false,
            ping_timeout: 1,
            options: Default::default(),
            sub_options: Default::default(),
            vendor_space: None,
            site_space: None,
            stash_agent: false,
            ddns_style: DdnsStyle::None,
            ddns_updates: true,
            ddns_domain: None,
            ddns_rev_domain: "in-addr.arpa.".into(),
            ddns_ttl: None,
            ddns_hostname: None,
            update_static: false,
            client_updates: ClientUpdates::Allow,
            fqdn_reply: None,
            vars: Default::default(),
            on: Default::default(),
            effects: Vec::new(),
        }
    }
}

impl Config {
    /// The scope and its ancestors, outermost first.
    pub fn chain(&self, scope: ScopeId) -> Vec<ScopeId> {
        let mut v = vec![scope];
        let mut s = scope;
        while let Some(parent) = self.scopes[s].parent {
            v.push(parent);
            s = parent;
        }
        v.reverse();
        v
    }

    /// Executes the statements of `scopes` in order (later wins) for a packet.
    pub fn eval(&self, scopes: &[ScopeId], pkt: &dyn expr::Packet, out: &mut Params) {
        for &s in scopes {
            exec(&self.scopes[s].stmts, pkt, out);
        }
    }

    /// Runs the statements of an `on` block (or any list) for a packet, returning what they
    /// ask to be done; `vars` carries the variables across.
    pub fn run(
        &self,
        stmts: &[Stmt],
        pkt: &dyn expr::Packet,
        vars: HashMap<String, Vec<u8>>,
    ) -> Vec<Effect> {
        let mut p = Params {
            vars,
            ..Params::default()
        };
        exec(stmts, pkt, &mut p);
        p.effects
    }

    /// The subnets sharing a network segment with `subnet` (itself included).
    pub fn segment(&self, subnet: usize) -> Vec<usize> {
        match self.subnets[subnet].shared {
            Some(sh) => self.shared[sh].subnets.clone(),
            None => vec![subnet],
        }
    }
}

fn exec(stmts: &[Stmt], pkt: &dyn expr::Packet, out: &mut Params) {
    for s in stmts {
        match s {
            Stmt::Param(p) => match p {
                Param::DefaultLeaseTime(v) => out.default_lease = *v,
                Param::MaxLeaseTime(v) => out.max_lease = *v,
                Param::MinLeaseTime(v) => out.min_lease = *v,
                Param::AbandonLeaseTime(v) => out.abandon_time = *v,
                Param::DynamicBootpLeaseLength(v) => out.bootp_lease_length = Some(*v),
                Param::DynamicBootpLeaseCutoff(v) => out.bootp_lease_cutoff = Some(*v),
                Param::Filename(v) => out.filename = Some(v.clone()),
                Param::ServerName(v) => out.server_name = Some(v.clone()),
                Param::NextServer(v) => out.next_server = Some(v.clone()),
                Param::ServerIdentifier(v) => out.server_id = Some(*v),
                Param::Authoritative(v) => out.authoritative = *v,
                Param::AlwaysBroadcast(v) => out.always_broadcast = *v,
                Param::UseHostDeclNames(v) => out.use_host_decl_names = *v,
                Param::UnknownClients(v) => out.unknown_clients = *v,
                Param::Bootp(v) => out.bootp = *v,
                Param::PingCheck(v) => out.ping_check = *v,
                Param::PingTimeout(v) => out.ping_timeout = *v,
                Param::StashAgentOptions(v) => out.stash_agent = *v,
                Param::VendorOptionSpace(v) => out.vendor_space = Some(v.clone()),
                Param::SiteOptionSpace(v) => out.site_space = Some(v.clone()),
                Param::DdnsStyle(v) => out.ddns_style = *v,
                Param::DdnsUpdates(v) => out.ddns_updates = *v,
                Param::DdnsDomainname(v) => out.ddns_domain = Some(v.clone()),
                Param::DdnsRevDomainname(v) => out.ddns_rev_domain = v.clone(),
                Param::DdnsTtl(v) => out.ddns_ttl = Some(*v),
                Param::DdnsHostname(d) => out.ddns_hostname = d.eval(&with(pkt, out)),
                Param::UpdateStaticLeases(v) => out.update_static = *v,
                Param::ClientUpdates(v) => out.client_updates = *v,
            },
            Stmt::Option { space, code, value } => set_option(out, space, *code, value.clone()),
            Stmt::OptionExpr { space, code, expr } => {
                // a null value leaves the option as it was, as in ISC
                if let Some(v) = expr.eval(&with(pkt, out)) {
                    set_option(out, space, *code, vec![Chunk::Bytes(v)]);
                }
            }
            Stmt::Set(name, expr) => match expr.eval(&with(pkt, out)) {
                Some(v) => {
                    out.vars.insert(name.clone(), v);
                }
                None => {
                    out.vars.remove(name);
                }
            },
            Stmt::Unset(name) => {
                out.vars.remove(name);
            }
            Stmt::Log(expr) => {
                if let Some(v) = expr.eval(&with(pkt, out)) {
                    out.effects
                        .push(Effect::Log(String::from_utf8_lossy(&v).into_owned()));
                }
            }
            Stmt::Execute(argv) => {
                let w = with(pkt, out);
                // an argument that evaluates to null is passed as an empty string, as ISC
                let args: Vec<String> = argv
                    .iter()
                    .map(|d| String::from_utf8_lossy(&d.eval(&w).unwrap_or_default()).into_owned())
                    .collect();
                out.effects.push(Effect::Execute(args));
            }
            Stmt::On(events, body) => {
                for e in events {
                    out.on.insert(*e, body.clone());
                }
            }
            Stmt::If {
                branches,
                otherwise,
            } => match branches.iter().find(|(c, _)| c.eval(&with(pkt, out))) {
                Some((_, body)) => exec(body, pkt, out),
                None => exec(otherwise, pkt, out),
            },
        }
    }
}

fn with<'a>(pkt: &'a dyn expr::Packet, out: &'a Params) -> WithVars<'a> {
    WithVars {
        pkt,
        vars: &out.vars,
        options: &out.options,
    }
}

fn set_option(out: &mut Params, space: &Option<String>, code: u8, value: Vec<Chunk>) {
    match space {
        None => {
            out.options.insert(code, value);
        }
        Some(sp) => {
            out.sub_options.insert((sp.clone(), code), value);
        }
    }
}
