//! The configuration model: scopes, declarations and the statements executed per client.

use std::net::Ipv4Addr;

use super::expr::{Bool, Data};
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
    /// `dynamic-bootp-lease-length`: seconds a dynamic BOOTP lease lasts (ISC: forever).
    DynamicBootpLeaseLength(u32),
    /// `dynamic-bootp-lease-cutoff`: when every dynamic BOOTP lease ends (Unix seconds);
    /// it overrides the length, as in ISC.
    DynamicBootpLeaseCutoff(u64),
    /// `deny unknown-clients;` outside a pool: only clients with a host declaration.
    UnknownClients(bool),
    /// `allow bootp;` / `deny bootp;`: whether BOOTP requests are answered.
    Bootp(bool),
    /// `ping-check`: probe a free address with an ICMP echo before offering it.
    PingCheck(bool),
    /// `ping-timeout`: seconds to wait for the echo reply (1 to 30).
    PingTimeout(u32),
    /// `stash-agent-options`: keep a relayed client's option 82 for its renewals.
    StashAgentOptions(bool),
    /// `vendor-option-space NAME`: option 43 carries the options of NAME.
    VendorOptionSpace(String),
    /// `site-option-space "NAME"`: the options of NAME are sent as DHCP options.
    SiteOptionSpace(String),
    /// `ddns-update-style`: none, interim or standard.
    DdnsStyle(DdnsStyle),
    DdnsUpdates(bool),
    DdnsDomainname(String),
    DdnsRevDomainname(String),
    DdnsTtl(u32),
    /// `ddns-hostname EXPRESSION;`
    DdnsHostname(Data),
    UpdateStaticLeases(bool),
    /// `allow|ignore|deny client-updates`: whether a client that asks to keep its A record
    /// (option 81 without S) may.
    ClientUpdates(ClientUpdates),
}

/// `allow|ignore|deny client-updates`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientUpdates {
    Allow,
    Ignore,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdnsStyle {
    None,
    /// ISC's own: a TXT record with a hash of the client identifies the owner.
    Interim,
    /// RFC 4703: a DHCID record identifies the owner.
    Standard,
}

/// The events of `on commit|release|expiry { ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    Commit,
    Release,
    Expiry,
}

/// The body of an `on EVENT { ... }` block, with its text in ISC's syntax: what a lease file
/// keeps of an `on expiry` block (`on expiry { ... }` in the lease), to run when the lease
/// ends after a restart.
#[derive(Clone, Debug)]
pub struct OnBlock {
    pub body: Vec<Stmt>,
    /// `{ STATEMENT; ... }`, tokens joined by single spaces.
    pub text: String,
}

/// A statement executed when a client's parameters are computed.
#[derive(Clone, Debug)]
pub enum Stmt {
    Param(Param),
    /// `option NAME VALUE;` (`space`: the option space of `SPACE.NAME`, `None` for DHCP).
    Option {
        space: Option<String>,
        code: u8,
        value: Vec<Chunk>,
    },
    /// `option NAME = EXPRESSION;`, evaluated per packet.
    OptionExpr {
        space: Option<String>,
        code: u8,
        expr: Data,
    },
    /// `set NAME = EXPRESSION;`
    Set(String, Data),
    /// `unset NAME;`
    Unset(String),
    /// `log(PRIORITY, EXPRESSION);`
    Log(Data),
    /// `execute("COMMAND", ARG, ...);`: argv run directly, no shell.
    Execute(Vec<Data>),
    /// `on commit|release|expiry { ... }`
    On(Vec<Event>, std::sync::Arc<OnBlock>),
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
    /// `dynamic bootp clients`: BOOTP clients without a host declaration.
    DynamicBootp,
    All,
}

#[derive(Clone, Debug)]
pub struct Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub pos: Pos,
    /// The pool this range belongs to (its access rules and scope).
    pub pool: Option<usize>,
    /// `range dynamic-bootp`: BOOTP clients without a host declaration get addresses here
    /// too (DHCP clients use it as any range).
    pub dynamic_bootp: bool,
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
    /// `match EXPRESSION;` (`match hardware;`, `match option X;`): the value looked up among
    /// the subclasses.
    pub submatch: Option<Data>,
    /// `spawn with EXPRESSION;`: one subclass per distinct value.
    pub spawn: Option<Data>,
    /// `subclass "NAME" VALUE [{ ... }]`: the value and the subclass's own scope.
    pub subclasses: Vec<(Vec<u8>, ScopeId)>,
    /// `lease limit N;`: leases one (spawned) subclass may hold at once.
    pub lease_limit: Option<u32>,
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
    pub keys: Vec<super::ddns::TsigKey>,
    pub zones: Vec<super::ddns::Zone>,
    /// `lease-database { ... }`: the shared lease store, if not the journal file.
    pub lease_db: Option<super::leasedb::LeaseDb>,
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
            keys: Vec::new(),
            zones: Vec::new(),
            lease_db: None,
            warnings: Vec::new(),
        }
    }
}
