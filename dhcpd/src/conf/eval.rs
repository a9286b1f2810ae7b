//! Evaluation: the parameters in force for one client, from the scopes that apply to it.

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
    pub options: std::collections::BTreeMap<u8, Vec<Chunk>>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            default_lease: 43200,
            max_lease: 86400,
            min_lease: 0,
            abandon_time: 86400,
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
            },
            Stmt::Option { code, value } => {
                out.options.insert(*code, value.clone());
            }
            Stmt::If {
                branches,
                otherwise,
            } => match branches.iter().find(|(c, _)| c.eval(pkt)) {
                Some((_, body)) => exec(body, pkt, out),
                None => exec(otherwise, pkt, out),
            },
        }
    }
}
