//! The ISC `dhcpd.conf` language: lexed with positions, parsed into scopes, validated.
//!
//! Scopes nest as in ISC dhcpd (global → shared-network → subnet → pool, group → host,
//! class); a client's parameters are the statements of every scope that applies, executed
//! from the lowest precedence to the highest, `if` branches evaluated against its packet.
//! Anything we do not implement is an error at its position; logging statements are
//! accepted with a warning.

pub mod expr;
pub mod lexer;
pub mod options;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use expr::{Bool, Data};
use lexer::{Pos, Tok, Token};
use opsflow_common::diag::error as err;
pub use opsflow_common::diag::{distance, Diag};
use options::{Chunk, OptDefs, OptType, Val};

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

/// Loads and validates a config file (and its includes).
pub fn load(path: &Path) -> Result<Config, Vec<Diag>> {
    let mut cfg = Config::default();
    let mut p = Loader {
        cfg: &mut cfg,
        depth: 0,
        errors: Vec::new(),
        pool_parent: Vec::new(),
        pending: Vec::new(),
    };
    let top = Pos {
        file: Arc::from(path.display().to_string()),
        line: 0,
        col: 0,
    };
    if let Err(d) = p.file(
        path,
        &top,
        Ctx {
            scope: GLOBAL,
            kind: Kind::Global,
        },
    ) {
        p.errors.push(d);
    } else if let Err(d) = p.place_pool_ranges() {
        p.errors.push(d);
    }
    let mut errors = std::mem::take(&mut p.errors);
    if errors.is_empty() {
        errors.extend(validate(&mut cfg));
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

/// Parses config text (for tests and `include`-free uses).
pub fn parse_str(name: &str, text: &str) -> Result<Config, Vec<Diag>> {
    let mut cfg = Config::default();
    let mut p = Loader {
        cfg: &mut cfg,
        depth: 0,
        errors: Vec::new(),
        pool_parent: Vec::new(),
        pending: Vec::new(),
    };
    if let Err(d) = p
        .text(
            Arc::from(name),
            text,
            Ctx {
                scope: GLOBAL,
                kind: Kind::Global,
            },
        )
        .and_then(|_| p.place_pool_ranges())
    {
        return Err(vec![d]);
    }
    let errors = validate(&mut cfg);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Global,
    Shared(usize),
    Subnet(usize),
    Group,
    Host(usize),
    Class(usize),
    Pool(usize),
}

#[derive(Clone, Copy, Debug)]
struct Ctx {
    scope: ScopeId,
    kind: Kind,
}

struct Loader<'a> {
    cfg: &'a mut Config,
    depth: usize,
    errors: Vec<Diag>,
    /// The declaration each pool sits in.
    pool_parent: Vec<Kind>,
    /// Ranges of pools, placed into their subnet once everything is parsed.
    pending: Vec<(usize, Range)>,
}

impl Loader<'_> {
    fn file(&mut self, path: &Path, from: &Pos, ctx: Ctx) -> Result<(), Diag> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(from, format!("cannot read {}: {e}", path.display())))?;
        self.text(Arc::from(path.display().to_string()), &text, ctx)
    }

    fn text(&mut self, name: Arc<str>, text: &str, ctx: Ctx) -> Result<(), Diag> {
        let toks = lexer::lex(&name, text).map_err(|e| err(&e.pos, e.message))?;
        let mut p = Parser { toks, i: 0 };
        self.block(&mut p, ctx, true)
    }

    fn new_scope(&mut self, parent: ScopeId) -> ScopeId {
        self.cfg.scopes.push(Scope {
            parent: Some(parent),
            stmts: Vec::new(),
        });
        self.cfg.scopes.len() - 1
    }

    fn warn(&mut self, pos: &Pos, message: impl Into<String>) {
        self.cfg.warnings.push(Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: true,
        });
    }

    /// Statements until `}` (consumed) or, at top level, end of file.
    fn block(&mut self, p: &mut Parser, ctx: Ctx, top: bool) -> Result<(), Diag> {
        loop {
            let t = p.peek().clone();
            match &t.tok {
                Tok::Eof if top => return Ok(()),
                Tok::Eof => return Err(err(&t.pos, "unexpected end of file: a '}' is missing")),
                Tok::Punct("}") if !top => {
                    p.next();
                    return Ok(());
                }
                Tok::Punct("}") => return Err(err(&t.pos, "'}' without a matching '{'")),
                _ => self.statement(p, ctx)?,
            }
        }
    }

    fn push(&mut self, ctx: Ctx, s: Stmt) {
        self.cfg.scopes[ctx.scope].stmts.push(s);
    }

    fn statement(&mut self, p: &mut Parser, ctx: Ctx) -> Result<(), Diag> {
        let t = p.next();
        let Tok::Word(kw) = &t.tok else {
            return Err(err(
                &t.pos,
                format!("expected a statement, found {}", t.tok),
            ));
        };
        let pos = t.pos.clone();
        match kw.as_str() {
            "include" => {
                let (file, fpos) = p.string()?;
                p.semi()?;
                if self.depth > 16 {
                    return Err(err(&fpos, "includes nested more than 16 deep (a loop?)"));
                }
                let mut path = PathBuf::from(&file);
                if path.is_relative() {
                    if let Some(dir) = Path::new(&*pos.file).parent() {
                        let candidate = dir.join(&path);
                        if candidate.exists() {
                            path = candidate;
                        }
                    }
                }
                self.depth += 1;
                let r = self.file(&path, &fpos, ctx);
                self.depth -= 1;
                r?;
            }
            "subnet" => {
                if !matches!(ctx.kind, Kind::Global | Kind::Shared(_) | Kind::Group) {
                    return Err(err(&pos, "a subnet may only be declared at top level, in a shared-network or in a group"));
                }
                let (net, npos) = p.ip()?;
                p.keyword("netmask")?;
                let (mask, mpos) = p.ip()?;
                let m = u32::from(mask);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return Err(err(&mpos, format!("{mask} is not a valid netmask")));
                }
                if u32::from(net) & m != u32::from(net) {
                    return Err(err(
                        &npos,
                        format!(
                            "{net} is not the network address of netmask {mask} (did you mean {}?)",
                            Ipv4Addr::from(u32::from(net) & m)
                        ),
                    ));
                }
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                let shared = if let Kind::Shared(s) = ctx.kind {
                    Some(s)
                } else {
                    None
                };
                self.cfg.subnets.push(Subnet {
                    net,
                    mask,
                    ranges: Vec::new(),
                    scope,
                    shared,
                    pos,
                });
                let idx = self.cfg.subnets.len() - 1;
                if let Some(s) = shared {
                    self.cfg.shared[s].subnets.push(idx);
                }
                self.block(
                    p,
                    Ctx {
                        scope,
                        kind: Kind::Subnet(idx),
                    },
                    false,
                )?;
            }
            "shared-network" => {
                if !matches!(ctx.kind, Kind::Global | Kind::Group) {
                    return Err(err(
                        &pos,
                        "a shared-network may only be declared at top level or in a group",
                    ));
                }
                let (name, _) = p.name()?;
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                self.cfg.shared.push(SharedNetwork {
                    name,
                    scope,
                    subnets: Vec::new(),
                });
                let idx = self.cfg.shared.len() - 1;
                self.block(
                    p,
                    Ctx {
                        scope,
                        kind: Kind::Shared(idx),
                    },
                    false,
                )?;
            }
            "group" => {
                if matches!(p.peek().tok, Tok::Word(_) | Tok::Str(_)) {
                    p.next();
                }
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                let kind = match ctx.kind {
                    Kind::Subnet(_) | Kind::Shared(_) => ctx.kind,
                    _ => Kind::Group,
                };
                // a group inside a subnet keeps the subnet's meaning for the statements in it
                self.block(p, Ctx { scope, kind }, false)?;
            }
            "host" => {
                if matches!(ctx.kind, Kind::Host(_) | Kind::Class(_) | Kind::Pool(_)) {
                    return Err(err(&pos, "a host cannot be declared here"));
                }
                let (name, _) = p.name()?;
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                self.cfg.hosts.push(Host {
                    name,
                    hw: None,
                    client_id: None,
                    fixed: Vec::new(),
                    scope,
                    pos,
                });
                let idx = self.cfg.hosts.len() - 1;
                self.block(
                    p,
                    Ctx {
                        scope,
                        kind: Kind::Host(idx),
                    },
                    false,
                )?;
            }
            "class" => {
                let (name, npos) = p.name()?;
                if self.cfg.classes.iter().any(|c| c.name == name) {
                    return Err(err(&npos, format!("class \"{name}\" is declared twice")));
                }
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                self.cfg.classes.push(Class {
                    name,
                    cond: None,
                    scope,
                    pos,
                });
                let idx = self.cfg.classes.len() - 1;
                self.block(
                    p,
                    Ctx {
                        scope,
                        kind: Kind::Class(idx),
                    },
                    false,
                )?;
            }
            "subclass" => {
                return Err(err(
                    &pos,
                    "'subclass' is not supported; use a class with 'match if'",
                ));
            }
            "pool" => {
                if !matches!(ctx.kind, Kind::Subnet(_) | Kind::Shared(_)) {
                    return Err(err(
                        &pos,
                        "a pool may only appear in a subnet or a shared-network",
                    ));
                }
                p.open()?;
                let scope = self.new_scope(ctx.scope);
                self.cfg.pools.push(Pool {
                    scope,
                    allow: Vec::new(),
                    deny: Vec::new(),
                });
                let idx = self.cfg.pools.len() - 1;
                // ranges of a pool go to the subnet that contains them (placed after parsing)
                self.pool_parent.push(ctx.kind);
                self.block(
                    p,
                    Ctx {
                        scope,
                        kind: Kind::Pool(idx),
                    },
                    false,
                )?;
            }
            "range" => {
                let mut dynamic_bootp = false;
                if p.peek_word() == Some("dynamic-bootp") {
                    p.next();
                    dynamic_bootp = true;
                }
                let (start, _) = p.ip()?;
                let end = if matches!(p.peek().tok, Tok::Word(_)) {
                    p.ip()?.0
                } else {
                    start
                };
                p.semi()?;
                if dynamic_bootp {
                    self.warn(
                        &pos,
                        "BOOTP is not supported: this range serves DHCP clients only",
                    );
                }
                if u32::from(start) > u32::from(end) {
                    return Err(err(
                        &pos,
                        format!("range {start} {end}: the first address is above the last"),
                    ));
                }
                let r = Range {
                    start,
                    end,
                    pos: pos.clone(),
                    pool: None,
                };
                match ctx.kind {
                    Kind::Subnet(s) => self.cfg.subnets[s].ranges.push(r),
                    Kind::Pool(pl) => self.pending.push((
                        pl,
                        Range {
                            pool: Some(pl),
                            ..r
                        },
                    )),
                    _ => return Err(err(&pos, "a range may only appear in a subnet or a pool")),
                }
            }
            "hardware" => {
                let Kind::Host(h) = ctx.kind else {
                    return Err(err(
                        &pos,
                        "'hardware' is only meaningful in a host declaration",
                    ));
                };
                let (ty, tpos) = p.word()?;
                if ty != "ethernet" {
                    return Err(err(
                        &tpos,
                        format!("hardware type '{ty}' is not supported (only ethernet)"),
                    ));
                }
                let (mac, mpos) = p.word()?;
                let bytes = options::colon_hex(&mac).filter(|b| b.len() == 6).ok_or_else(|| {
                    err(&mpos, format!("'{mac}' is not an Ethernet address (six colon-separated hex bytes)"))
                })?;
                p.semi()?;
                let mut hw = [0u8; 6];
                hw.copy_from_slice(&bytes);
                self.cfg.hosts[h].hw = Some(hw);
            }
            "fixed-address" => {
                let Kind::Host(h) = ctx.kind else {
                    return Err(err(
                        &pos,
                        "'fixed-address' is only meaningful in a host declaration",
                    ));
                };
                loop {
                    let (w, wpos) = p.word()?;
                    let a = match w.parse::<Ipv4Addr>() {
                        Ok(ip) => Addr::Ip(ip),
                        Err(_) if w.contains(|c: char| c.is_ascii_alphabetic()) => Addr::Name(w),
                        Err(_) => {
                            return Err(err(
                                &wpos,
                                format!("'{w}' is not an IPv4 address or host name"),
                            ))
                        }
                    };
                    self.cfg.hosts[h].fixed.push(a);
                    if !p.comma() {
                        break;
                    }
                }
                p.semi()?;
            }
            "match" => {
                let Kind::Class(c) = ctx.kind else {
                    return Err(err(&pos, "'match' is only meaningful in a class"));
                };
                if p.peek_word() != Some("if") {
                    return Err(err(&p.peek().pos, "only 'match if EXPRESSION;' is supported (not 'match option' with subclasses)"));
                }
                p.next();
                let e = self.bool_expr(p)?;
                p.semi()?;
                self.cfg.classes[c].cond = Some(e);
            }
            "allow" | "deny" | "ignore" => {
                let allow = kw == "allow";
                let (what, wpos) = p.word()?;
                let access = match what.as_str() {
                    "members" => {
                        p.keyword("of")?;
                        let (name, npos) = p.string()?;
                        let idx = self
                            .cfg
                            .classes
                            .iter()
                            .position(|c| c.name == name)
                            .ok_or_else(|| {
                                err(
                                    &npos,
                                    format!(
                                        "no class named \"{name}\" is declared before this line"
                                    ),
                                )
                            })?;
                        Some(Access::Members(idx))
                    }
                    "known-clients" | "known" => Some(Access::Known),
                    "unknown-clients" | "unknown" => Some(Access::Unknown),
                    "all" => {
                        p.keyword("clients")?;
                        Some(Access::All)
                    }
                    "booting" | "bootp" | "client-updates" | "duplicates" | "declines" => None,
                    _ => return Err(err(&wpos, format!("'{kw} {what}' is not supported"))),
                };
                p.semi()?;
                match (ctx.kind, access) {
                    (Kind::Pool(pl), Some(a)) => {
                        if allow {
                            self.cfg.pools[pl].allow.push(a);
                        } else {
                            self.cfg.pools[pl].deny.push(a);
                        }
                    }
                    (_, Some(Access::Unknown)) => {
                        self.push(ctx, Stmt::Param(Param::UnknownClients(allow)))
                    }
                    (_, Some(_)) => {
                        return Err(err(
                            &wpos,
                            format!("'{kw} {what}' is only supported in a pool"),
                        ))
                    }
                    (_, None) => match (what.as_str(), allow) {
                        ("bootp", true) => {
                            return Err(err(&wpos, "BOOTP is not supported; remove 'allow bootp'"))
                        }
                        ("booting", false) => {
                            return Err(err(&wpos, "'deny booting' is not supported"))
                        }
                        ("duplicates" | "declines", false) => {
                            return Err(err(&wpos, format!("'{kw} {what}' is not supported")))
                        }
                        _ => {} // the behaviour we have anyway
                    },
                }
            }
            "not" => {
                p.keyword("authoritative")?;
                p.semi()?;
                self.push(ctx, Stmt::Param(Param::Authoritative(false)));
            }
            "if" => {
                let s = self.if_stmt(p)?;
                self.push(ctx, s);
            }
            "option" => {
                if let Some(s) = self.option(p, &pos)? {
                    // a host's client identifier is how it is recognised, not only an option
                    if let (Kind::Host(h), Stmt::Option { code: 61, value }) = (ctx.kind, &s) {
                        let mut id = Vec::new();
                        for c in value {
                            if let Chunk::Bytes(b) = c {
                                id.extend_from_slice(b);
                            }
                        }
                        self.cfg.hosts[h].client_id = Some(id);
                    }
                    self.push(ctx, s);
                }
            }
            _ => {
                let s = self.param(p, kw, &pos)?;
                if let Some(s) = s {
                    self.push(ctx, s);
                }
            }
        }
        Ok(())
    }
}

impl Loader<'_> {
    fn place_pool_ranges(&mut self) -> Result<(), Diag> {
        for (pl, r) in std::mem::take(&mut self.pending) {
            let candidates: Vec<usize> = match self.pool_parent[pl] {
                Kind::Subnet(s) => vec![s],
                Kind::Shared(sh) => self.cfg.shared[sh].subnets.clone(),
                _ => Vec::new(),
            };
            let Some(s) = candidates.into_iter().find(|&s| {
                self.cfg.subnets[s].contains(r.start) && self.cfg.subnets[s].contains(r.end)
            }) else {
                return Err(err(
                    &r.pos,
                    format!(
                        "range {} {} is not inside any subnet of this pool's declaration",
                        r.start, r.end
                    ),
                ));
            };
            self.cfg.subnets[s].ranges.push(r);
        }
        Ok(())
    }

    fn param(&mut self, p: &mut Parser, kw: &str, pos: &Pos) -> Result<Option<Stmt>, Diag> {
        let secs = |p: &mut Parser| -> Result<u32, Diag> {
            let (w, wpos) = p.word()?;
            w.parse::<u32>()
                .map_err(|_| err(&wpos, format!("'{w}' is not a number of seconds")))
        };
        let flag = |p: &mut Parser| -> Result<bool, Diag> {
            let (w, wpos) = p.word()?;
            match w.as_str() {
                "true" | "on" => Ok(true),
                "false" | "off" => Ok(false),
                _ => Err(err(
                    &wpos,
                    format!("'{w}' is not a flag (on, off, true, false)"),
                )),
            }
        };
        let param = match kw {
            "default-lease-time" => Param::DefaultLeaseTime(secs(p)?),
            "max-lease-time" => Param::MaxLeaseTime(secs(p)?),
            "min-lease-time" => Param::MinLeaseTime(secs(p)?),
            "abandon-lease-time" => Param::AbandonLeaseTime(secs(p)?),
            "filename" => Param::Filename(p.string()?.0),
            "server-name" => Param::ServerName(p.string()?.0),
            "next-server" => {
                let (w, wpos) = p.word()?;
                match w.parse::<Ipv4Addr>() {
                    Ok(a) => Param::NextServer(Addr::Ip(a)),
                    Err(_) if w.contains(|c: char| c.is_ascii_alphabetic()) => {
                        Param::NextServer(Addr::Name(w))
                    }
                    Err(_) => {
                        return Err(err(
                            &wpos,
                            format!("'{w}' is not an IPv4 address or host name"),
                        ))
                    }
                }
            }
            "server-identifier" => Param::ServerIdentifier(p.ip()?.0),
            "authoritative" => Param::Authoritative(true),
            "always-broadcast" => Param::AlwaysBroadcast(flag(p)?),
            "use-host-decl-names" => Param::UseHostDeclNames(flag(p)?),
            "one-lease-per-client" => {
                flag(p)?;
                p.semi()?;
                return Ok(None); // what we do anyway
            }
            "log-facility" | "pid-file-name" | "lease-file-name" => {
                while !matches!(p.peek().tok, Tok::Punct(";") | Tok::Eof) {
                    p.next();
                }
                p.semi()?;
                let why = if kw == "log-facility" {
                    "log-facility has no effect: dhcpd logs to stderr (use the service manager's journal)"
                } else {
                    "has no effect: use the command-line option instead"
                };
                self.warn(
                    pos,
                    if kw == "log-facility" {
                        why.to_string()
                    } else {
                        format!("{kw} {why}")
                    },
                );
                return Ok(None);
            }
            "ddns-update-style" => {
                let (w, wpos) = p.word()?;
                p.semi()?;
                if w != "none" {
                    return Err(err(&wpos, format!("dynamic DNS updates are not supported: use 'ddns-update-style none;' instead of '{w}'")));
                }
                return Ok(None);
            }
            "ddns-updates"
            | "update-static-leases"
            | "ping-check"
            | "get-lease-hostnames"
            | "boot-unknown-clients" => {
                let (w, wpos) = p.word()?;
                p.semi()?;
                let off = matches!(w.as_str(), "off" | "false");
                let fine = if kw == "boot-unknown-clients" {
                    !off
                } else {
                    off
                };
                if !fine {
                    return Err(err(
                        &wpos,
                        format!("'{kw} {w}' is not supported (only the default behaviour is)"),
                    ));
                }
                return Ok(None);
            }
            _ => {
                const KNOWN: &[&str] = &[
                    "include",
                    "subnet",
                    "shared-network",
                    "group",
                    "host",
                    "class",
                    "pool",
                    "range",
                    "hardware",
                    "fixed-address",
                    "match",
                    "allow",
                    "deny",
                    "ignore",
                    "authoritative",
                    "option",
                    "if",
                    "default-lease-time",
                    "max-lease-time",
                    "min-lease-time",
                    "filename",
                    "server-name",
                    "next-server",
                    "server-identifier",
                    "always-broadcast",
                    "use-host-decl-names",
                    "log-facility",
                    "ddns-update-style",
                    "ping-check",
                    "one-lease-per-client",
                    "abandon-lease-time",
                ];
                let hint = KNOWN
                    .iter()
                    .map(|k| (distance(k, kw), *k))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, k)| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                return Err(err(
                    pos,
                    format!("unknown or unsupported statement '{kw}'{hint}"),
                ));
            }
        };
        p.semi()?;
        Ok(Some(Stmt::Param(param)))
    }

    /// `option space X;`, `option NAME code N = TYPE;`, or `option NAME VALUE[, VALUE];`
    fn option(&mut self, p: &mut Parser, pos: &Pos) -> Result<Option<Stmt>, Diag> {
        let (name, npos) = p.word()?;
        if name == "space" {
            let (space, _) = p.word()?;
            while !matches!(p.peek().tok, Tok::Punct(";") | Tok::Eof) {
                p.next(); // code width / length width / hash size
            }
            p.semi()?;
            self.cfg.defs.spaces.push(space);
            return Ok(None);
        }
        if p.peek_word() == Some("code") {
            p.next();
            let (c, cpos) = p.word()?;
            let code: u8 = c
                .parse()
                .ok()
                .filter(|c| (1..=254).contains(c))
                .ok_or_else(|| err(&cpos, format!("option code '{c}' is not between 1 and 254")))?;
            p.expect("=")?;
            let ty = self.opt_type(p)?;
            p.semi()?;
            if let Some((space, _)) = name.split_once('.') {
                if !self.cfg.defs.spaces.iter().any(|s| s == space) {
                    return Err(err(&npos, format!("option space '{space}' is not declared (add 'option space {space};' first)")));
                }
            }
            self.cfg.defs.define(&name, code, ty);
            return Ok(None);
        }
        let Some(def) = self.cfg.defs.get(&name).cloned() else {
            let hint = self
                .cfg
                .defs
                .nearest(&name)
                .map(|n| format!(" (did you mean '{n}'?)"))
                .unwrap_or_default();
            return Err(err(
                &npos,
                format!(
                    "unknown option '{name}'{hint}; declare it with 'option {name} code N = TYPE;'"
                ),
            ));
        };
        let mut groups: Vec<Vec<Val>> = vec![Vec::new()];
        let vpos = p.peek().pos.clone();
        loop {
            let t = p.next();
            match t.tok {
                Tok::Word(w) => groups
                    .last_mut()
                    .map(|g| g.push(Val::Word(w)))
                    .unwrap_or(()),
                Tok::Str(s) => groups.last_mut().map(|g| g.push(Val::Str(s))).unwrap_or(()),
                Tok::Punct(",") => groups.push(Vec::new()),
                Tok::Punct(";") => break,
                other => {
                    return Err(err(
                        &t.pos,
                        format!("expected ';' after the value of option {name}, found {other}"),
                    ))
                }
            }
        }
        let value = options::encode(&def.ty, &groups)
            .map_err(|m| err(&vpos, format!("option {name}: {m}")))?;
        let _ = pos;
        Ok(Some(Stmt::Option {
            code: def.code,
            value,
        }))
    }

    fn opt_type(&mut self, p: &mut Parser) -> Result<OptType, Diag> {
        let start = p.peek().pos.clone();
        let mut array = false;
        if p.peek_word() == Some("array") {
            p.next();
            p.keyword("of")?;
            array = true;
        }
        let mut fields = Vec::new();
        let record = p.peek().tok == Tok::Punct("{");
        if record {
            p.next();
        }
        loop {
            let mut words = Vec::new();
            while let Tok::Word(w) = &p.peek().tok {
                words.push(w.clone());
                p.next();
            }
            if words.first().map(String::as_str) == Some("encapsulate") {
                return Err(err(&start, "encapsulated option spaces are not supported"));
            }
            fields.push(options::parse_field(&words).map_err(|m| err(&start, m))?);
            if record && p.comma() {
                continue;
            }
            break;
        }
        if record {
            p.expect("}")?;
        }
        Ok(OptType { fields, array })
    }

    fn if_stmt(&mut self, p: &mut Parser) -> Result<Stmt, Diag> {
        let mut branches = Vec::new();
        let cond = self.bool_expr(p)?;
        let body = self.cond_block(p)?;
        branches.push((cond, body));
        let mut otherwise = Vec::new();
        loop {
            match p.peek_word() {
                Some("elsif") => {
                    p.next();
                    let c = self.bool_expr(p)?;
                    let b = self.cond_block(p)?;
                    branches.push((c, b));
                }
                Some("else") => {
                    p.next();
                    if p.peek_word() == Some("if") {
                        p.next();
                        let c = self.bool_expr(p)?;
                        let b = self.cond_block(p)?;
                        branches.push((c, b));
                        continue;
                    }
                    otherwise = self.cond_block(p)?;
                    break;
                }
                _ => break,
            }
        }
        Ok(Stmt::If {
            branches,
            otherwise,
        })
    }

    /// The body of an `if` branch: parameters, options and nested `if`s.
    fn cond_block(&mut self, p: &mut Parser) -> Result<Vec<Stmt>, Diag> {
        p.open()?;
        let mut out = Vec::new();
        loop {
            let t = p.peek().clone();
            match &t.tok {
                Tok::Punct("}") => {
                    p.next();
                    return Ok(out);
                }
                Tok::Eof => return Err(err(&t.pos, "unexpected end of file: a '}' is missing")),
                Tok::Word(w) => {
                    p.next();
                    let s = match w.as_str() {
                        "if" => Some(self.if_stmt(p)?),
                        "option" => self.option(p, &t.pos)?,
                        "subnet" | "host" | "group" | "class" | "pool" | "shared-network"
                        | "range" => {
                            return Err(err(
                                &t.pos,
                                format!("'{w}' cannot be declared inside an if statement"),
                            ))
                        }
                        kw => self.param(p, kw, &t.pos)?,
                    };
                    out.extend(s);
                }
                other => return Err(err(&t.pos, format!("expected a statement, found {other}"))),
            }
        }
    }

    fn bool_expr(&mut self, p: &mut Parser) -> Result<Bool, Diag> {
        let mut left = self.and_expr(p)?;
        while p.peek_word() == Some("or") {
            p.next();
            let right = self.and_expr(p)?;
            left = Bool::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, p: &mut Parser) -> Result<Bool, Diag> {
        let mut left = self.unary(p)?;
        while p.peek_word() == Some("and") {
            p.next();
            let right = self.unary(p)?;
            left = Bool::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, p: &mut Parser) -> Result<Bool, Diag> {
        match p.peek_word() {
            Some("not") => {
                p.next();
                return Ok(Bool::Not(Box::new(self.unary(p)?)));
            }
            Some("exists") => {
                p.next();
                let (name, npos) = p.word()?;
                let code = self.option_code(&name, &npos)?;
                return Ok(Bool::Exists(code));
            }
            Some("known") => {
                p.next();
                return Ok(Bool::Known);
            }
            _ => {}
        }
        if p.peek().tok == Tok::Punct("(") {
            // a parenthesised boolean, or a data expression that starts with '(' (rare)
            p.next();
            let b = self.bool_expr(p)?;
            p.expect(")")?;
            return Ok(b);
        }
        let left = self.data(p)?;
        let op = p.next();
        let right = self.data(p)?;
        match op.tok {
            Tok::Punct("=") => Ok(Bool::Eq(left, right)),
            Tok::Punct("!=") => Ok(Bool::Ne(left, right)),
            other => Err(err(
                &op.pos,
                format!("expected '=' or '!=' in the condition, found {other}"),
            )),
        }
    }

    fn option_code(&self, name: &str, pos: &Pos) -> Result<u8, Diag> {
        self.cfg.defs.get(name).map(|d| d.code).ok_or_else(|| {
            let hint = self
                .cfg
                .defs
                .nearest(name)
                .map(|n| format!(" (did you mean '{n}'?)"))
                .unwrap_or_default();
            err(pos, format!("unknown option '{name}'{hint}"))
        })
    }

    fn data(&mut self, p: &mut Parser) -> Result<Data, Diag> {
        let t = p.next();
        let num = |p: &mut Parser| -> Result<usize, Diag> {
            let (w, wpos) = p.word()?;
            w.parse()
                .map_err(|_| err(&wpos, format!("'{w}' is not a number")))
        };
        match t.tok {
            Tok::Str(s) => Ok(Data::Const(s.into_bytes())),
            Tok::Word(w) => match w.as_str() {
                "option" => {
                    let (name, npos) = p.word()?;
                    Ok(Data::Option(self.option_code(&name, &npos)?))
                }
                "substring" => {
                    p.expect("(")?;
                    let d = self.data(p)?;
                    p.expect(",")?;
                    let off = num(p)?;
                    p.expect(",")?;
                    let len = num(p)?;
                    p.expect(")")?;
                    Ok(Data::Substring(Box::new(d), off, len))
                }
                "suffix" => {
                    p.expect("(")?;
                    let d = self.data(p)?;
                    p.expect(",")?;
                    let len = num(p)?;
                    p.expect(")")?;
                    Ok(Data::Suffix(Box::new(d), len))
                }
                "packet" => {
                    p.expect("(")?;
                    let off = num(p)?;
                    p.expect(",")?;
                    let len = num(p)?;
                    p.expect(")")?;
                    Ok(Data::Packet(off, len))
                }
                "concat" => {
                    p.expect("(")?;
                    let a = self.data(p)?;
                    p.expect(",")?;
                    let b = self.data(p)?;
                    p.expect(")")?;
                    Ok(Data::Concat(Box::new(a), Box::new(b)))
                }
                "lcase" | "ucase" => {
                    p.expect("(")?;
                    let d = Box::new(self.data(p)?);
                    p.expect(")")?;
                    Ok(if w == "lcase" { Data::Lcase(d) } else { Data::Ucase(d) })
                }
                "hardware" => Ok(Data::Hardware),
                _ => match options::colon_hex(&w) {
                    Some(b) => Ok(Data::Const(b)),
                    None => Err(err(&t.pos, format!(
                        "'{w}' is not a value here: use option NAME, substring(...), suffix(...), hardware, a \"string\" or colon-separated hex like 00:07"
                    ))),
                },
            },
            other => Err(err(&t.pos, format!("expected a value, found {other}"))),
        }
    }
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    /// Position just after the previous token (where a missing ';' belongs).
    fn after_prev(&self) -> Pos {
        let prev = &self.toks[self.i.saturating_sub(1)];
        let len = match &prev.tok {
            Tok::Word(w) => w.len(),
            Tok::Str(s) => s.len() + 2,
            Tok::Punct(p) => p.len(),
            Tok::Eof => 0,
        };
        Pos {
            col: prev.pos.col + len,
            ..prev.pos.clone()
        }
    }
    fn expect(&mut self, punct: &'static str) -> Result<(), Diag> {
        if self.peek().tok == Tok::Punct(punct) {
            self.next();
            return Ok(());
        }
        let found = self.peek().tok.clone();
        Err(err(
            &self.peek().pos,
            format!("expected '{punct}', found {found}"),
        ))
    }
    fn semi(&mut self) -> Result<(), Diag> {
        if self.peek().tok == Tok::Punct(";") {
            self.next();
            return Ok(());
        }
        let found = self.peek().tok.clone();
        Err(err(
            &self.after_prev(),
            format!("missing ';' at the end of the statement (found {found} next)"),
        ))
    }
    fn open(&mut self) -> Result<(), Diag> {
        self.expect("{")
    }
    fn comma(&mut self) -> bool {
        if self.peek().tok == Tok::Punct(",") {
            self.next();
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> Result<(String, Pos), Diag> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) => Ok((w, t.pos)),
            other => Err(err(&t.pos, format!("expected a word, found {other}"))),
        }
    }
    fn keyword(&mut self, kw: &str) -> Result<(), Diag> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) if w == kw => Ok(()),
            other => Err(err(&t.pos, format!("expected '{kw}', found {other}"))),
        }
    }
    fn string(&mut self) -> Result<(String, Pos), Diag> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok((s, t.pos)),
            other => Err(err(
                &t.pos,
                format!("expected a quoted string, found {other}"),
            )),
        }
    }
    /// A name: a word or a quoted string.
    fn name(&mut self) -> Result<(String, Pos), Diag> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) | Tok::Word(s) => Ok((s, t.pos)),
            other => Err(err(&t.pos, format!("expected a name, found {other}"))),
        }
    }
    fn ip(&mut self) -> Result<(Ipv4Addr, Pos), Diag> {
        let (w, pos) = self.word()?;
        let ip = w
            .parse()
            .map_err(|_| err(&pos, format!("'{w}' is not an IPv4 address")))?;
        Ok((ip, pos))
    }
}

fn validate(cfg: &mut Config) -> Vec<Diag> {
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
    let mut warnings = Vec::new();
    for h in &cfg.hosts {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_str("t.conf", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn check_err(text: &str, want: &str) {
        let e = errors(text);
        assert!(
            e.iter().any(|m| m.contains(want)),
            "want an error containing {want:?}, got {e:?}"
        );
    }

    #[test]
    fn the_corpus_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dhcpd");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // the corpus sits beside the checkout (../shared); CI always has it
            assert!(
                std::env::var("CI").is_err(),
                "corpus missing at {}",
                dir.display()
            );
            eprintln!("SKIP: no corpus at {}", dir.display());
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if let Err(errs) = load(&p) {
                panic!(
                    "{}: {:?}",
                    p.display(),
                    errs.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn pxe_classes_and_conditionals_evaluate() {
        let cfg = parse_str(
            "t.conf",
            r#"option architecture-type code 93 = unsigned integer 16;
            subnet 10.20.0.0 netmask 255.255.255.0 {
              range 10.20.0.100 10.20.0.199;
              class "pxeclients" {
                match if substring (option vendor-class-identifier, 0, 9) = "PXEClient";
                next-server 10.20.0.2;
                if option architecture-type = 00:07 { filename "uefi/shimx64.efi"; }
                elsif option architecture-type = 00:09 { filename "uefi/shimx64.efi"; }
                else { filename "pxelinux/pxelinux.0"; }
              }
            }"#,
        )
        .unwrap();
        struct P(Vec<u8>);
        impl expr::Packet for P {
            fn option(&self, code: u8) -> Option<&[u8]> {
                match code {
                    60 => Some(b"PXEClient:Arch:00007"),
                    93 => Some(&self.0),
                    _ => None,
                }
            }
            fn hardware(&self) -> Vec<u8> {
                vec![]
            }
            fn raw(&self) -> &[u8] {
                &[]
            }
            fn known(&self) -> bool {
                false
            }
        }
        let class = &cfg.classes[0];
        assert!(class.cond.as_ref().unwrap().eval(&P(vec![0, 7])));
        for (arch, want) in [
            (vec![0, 7], "uefi/shimx64.efi"),
            (vec![0, 0], "pxelinux/pxelinux.0"),
        ] {
            let mut params = Params::default();
            cfg.eval(&[class.scope], &P(arch), &mut params);
            assert_eq!(params.filename.as_deref(), Some(want));
            assert_eq!(
                params.next_server,
                Some(Addr::Ip(Ipv4Addr::new(10, 20, 0, 2)))
            );
        }
    }

    #[test]
    fn scopes_inherit_and_override() {
        let cfg = parse_str(
            "t.conf",
            "default-lease-time 600; option domain-name \"g\";\n\
             subnet 10.1.0.0 netmask 255.255.0.0 { range 10.1.1.1 10.1.1.9; default-lease-time 300; }\n\
             group { option domain-name \"grp\"; host h { hardware ethernet 0:0:c0:5d:bd:95; fixed-address 10.1.2.3; } }",
        )
        .unwrap();
        let h = &cfg.hosts[0];
        assert_eq!(h.hw, Some([0, 0, 0xc0, 0x5d, 0xbd, 0x95]));
        let mut scopes = cfg.chain(cfg.subnets[0].scope);
        scopes.extend(cfg.chain(h.scope).into_iter().filter(|s| *s != GLOBAL));
        let mut p = Params::default();
        struct N;
        impl expr::Packet for N {
            fn option(&self, _: u8) -> Option<&[u8]> {
                None
            }
            fn hardware(&self) -> Vec<u8> {
                vec![]
            }
            fn raw(&self) -> &[u8] {
                &[]
            }
            fn known(&self) -> bool {
                true
            }
        }
        cfg.eval(&scopes, &N, &mut p);
        assert_eq!(p.default_lease, 300);
        assert_eq!(p.options[&15], vec![Chunk::Bytes(b"grp".to_vec())]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        check_err(
            "subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.1.1.1 10.1.1.9\n}\n",
            "t.conf:2:26: missing ';'",
        );
        check_err(
            "subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.2.0.1 10.2.0.9;\n}\n",
            "t.conf:2:3: range 10.2.0.1 10.2.0.9 is outside subnet 10.1.0.0/16",
        );
        check_err(
            "subnet 10.1.0.1 netmask 255.255.0.0 { }",
            "t.conf:1:8: 10.1.0.1 is not the network address",
        );
        check_err(
            "defualt-lease-time 60;",
            "did you mean 'default-lease-time'?",
        );
        check_err("option routerz 10.0.0.1;", "did you mean 'routers'?");
        check_err(
            "option routers 10.0.0.300;",
            "t.conf:1:16: option routers: '10.0.0.300'",
        );
        check_err(
            "ddns-update-style interim;",
            "dynamic DNS updates are not supported",
        );
        check_err("subnet 10.1.0.0 netmask 255.255.0.0 {", "a '}' is missing");
        check_err(
            "host h { hardware ethernet 1:2:3; }",
            "not an Ethernet address",
        );
        check_err(
            "subnet 10.1.0.0 netmask 255.255.0.0 { range 10.1.0.5 10.1.0.9; }\nsubnet 10.1.0.0 netmask 255.255.255.0 { }",
            "overlaps",
        );
        check_err(
            "class \"c\" { match option vendor-class-identifier; }",
            "only 'match if",
        );
        check_err("if foo = \"x\" { }", "'foo' is not a value here");
        check_err(
            "option foo.bar code 200 = text;",
            "option space 'foo' is not declared",
        );
    }

    #[test]
    fn warnings_for_logging_statements() {
        let cfg = parse_str("t.conf", "log-facility local7;\nhost lonely { }").unwrap();
        let w: Vec<String> = cfg.warnings.iter().map(|d| d.to_string()).collect();
        assert!(
            w[0].starts_with("t.conf:1:1: warning: log-facility"),
            "{w:?}"
        );
        assert!(w[1].contains("can never match"), "{w:?}");
    }
}
