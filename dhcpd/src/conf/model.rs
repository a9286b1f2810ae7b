//! The configuration model: scopes, declarations and the statements executed per client.

use std::net::Ipv4Addr;

use super::expr::Bool;
use super::lexer::Pos;
use super::options::{Chunk, OptDefs};
use super::Diag;

pub type ScopeId = usize;

/// An IPv4 address or a host name resolved at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Ip(Ipv4Addr),
    Name(String),
}

/// A parameter statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    DefaultLeaseTime(u32),
    MaxLeaseTime(u32),
    MinLeaseTime(u32),
    Filename(String),
    ServerName(String),
    NextServer(Addr),
    ServerIdentifier(Ipv4Addr),
    Authoritative(bool),
    AlwaysBroadcast(bool),
    UseHostDeclNames(bool),
    AbandonLeaseTime(u32),
    /// `deny unknown-clients;` outside a pool: only clients with a host declaration.
    UnknownClients(bool),
    /// `allow bootp;` / `deny bootp;`: whether BOOTP requests are answered.
    Bootp(bool),
    /// `ping-check`: probe a free address with an ICMP echo before offering it.
    PingCheck(bool),
    /// `ping-timeout`: seconds to wait for the echo reply (1 to 30).
    PingTimeout(u32),
}

/// A statement executed when a client's parameters are computed.
#[derive(Clone, Debug)]
pub enum Stmt {
    Param(Param),
    Option {
        code: u8,
        value: Vec<Chunk>,
    },
    If {
        branches: Vec<(Bool, Vec<Stmt>)>,
        otherwise: Vec<Stmt>,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub parent: Option<ScopeId>,
    pub stmts: Vec<Stmt>,
}

/// Who may draw from a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Members(usize),
    Known,
    Unknown,
    All,
}

#[derive(Clone, Debug)]
pub struct Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub pos: Pos,
    /// The pool this range belongs to (its access rules and scope).
    pub pool: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub scope: ScopeId,
    pub allow: Vec<Access>,
    pub deny: Vec<Access>,
}

#[derive(Clone, Debug)]
pub struct Subnet {
    pub net: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub ranges: Vec<Range>,
    pub scope: ScopeId,
    pub shared: Option<usize>,
    pub pos: Pos,
}

impl Subnet {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & u32::from(self.mask) == u32::from(self.net)
    }
    pub fn prefix_len(&self) -> u32 {
        u32::from(self.mask).count_ones()
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !u32::from(self.mask))
    }
}

#[derive(Clone, Debug)]
pub struct SharedNetwork {
    pub name: String,
    pub scope: ScopeId,
    pub subnets: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub hw: Option<[u8; 6]>,
    pub client_id: Option<Vec<u8>>,
    pub fixed: Vec<Addr>,
    pub scope: ScopeId,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Class {
    pub name: String,
    pub cond: Option<Bool>,
    pub scope: ScopeId,
    pub pos: Pos,
}

/// A parsed and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub scopes: Vec<Scope>,
    pub subnets: Vec<Subnet>,
    pub shared: Vec<SharedNetwork>,
    pub pools: Vec<Pool>,
    pub hosts: Vec<Host>,
    pub classes: Vec<Class>,
    pub defs: OptDefs,
    pub warnings: Vec<Diag>,
}

pub const GLOBAL: ScopeId = 0;

impl Default for Config {
    fn default() -> Self {
        Config {
            scopes: vec![Scope::default()],
            subnets: Vec::new(),
            shared: Vec::new(),
            pools: Vec::new(),
            hosts: Vec::new(),
            classes: Vec::new(),
            defs: OptDefs::default(),
            warnings: Vec::new(),
        }
    }
}
