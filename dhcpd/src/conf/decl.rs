//! Declarations: the statements that open scopes (subnet, shared-network, group, host, class,
//! pool) and those that describe them (range, hardware, fixed-address, match, allow/deny).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cursor::Cursor;
use super::lexer::{self, Pos, Tok};
use super::model::*;
use super::options::{self, Chunk};
use super::{err, Diag};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Global,
    Shared(usize),
    Subnet(usize),
    Group,
    Host(usize),
    Class(usize),
    Pool(usize),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Ctx {
    pub(super) scope: ScopeId,
    pub(super) kind: Kind,
}

pub(super) struct Loader<'a> {
    pub(super) cfg: &'a mut Config,
    /// Include depth.
    pub(super) depth: usize,
    /// How deep the parser is in blocks, parentheses, `not`s and function calls (see
    /// [`MAX_NESTING`]).
    pub(super) nest: usize,
    pub(super) errors: Vec<Diag>,
    /// The declaration each pool sits in.
    pub(super) pool_parent: Vec<Kind>,
    /// Ranges of pools, placed into their subnet once everything is parsed.
    pub(super) pending: Vec<(usize, Range)>,
}

/// The deepest that blocks, conditions and expressions may nest. The parser recurses on each
/// level, so a file nested thousands deep (a generator's bug, or a hostile file handed to a
/// reload) would overflow the stack and abort the daemon; real configs nest a handful deep.
pub(super) const MAX_NESTING: usize = 64;

impl Loader<'_> {
    /// Runs `f` one nesting level deeper, or refuses at `pos` past [`MAX_NESTING`].
    pub(super) fn nested<T>(
        &mut self,
        pos: &Pos,
        f: impl FnOnce(&mut Self) -> Result<T, Diag>,
    ) -> Result<T, Diag> {
        if self.nest >= MAX_NESTING {
            return Err(err(
                pos,
                format!(
                    "nested more than {MAX_NESTING} deep (blocks, parentheses, 'not' or function calls): a '}}' or ')' is probably missing"
                ),
            ));
        }
        self.nest += 1;
        let r = f(self);
        self.nest -= 1;
        r
    }

    pub(super) fn file(&mut self, path: &Path, from: &Pos, ctx: Ctx) -> Result<(), Diag> {
        // `from` is the include statement, or (line 0) the file itself
        let include = (from.line > 0).then_some(from);
        let hint = if include.is_some() {
            ""
        } else {
            "give the path of dhcpd.conf with -cf or --config"
        };
        let text = opsflow_common::diag::read_text(path)
            .map_err(|u| u.diag(&path.display().to_string(), include, hint))?;
        self.text(Arc::from(path.display().to_string()), &text, ctx)
    }

    pub(super) fn text(&mut self, name: Arc<str>, text: &str, ctx: Ctx) -> Result<(), Diag> {
        let toks = lexer::lex(&name, text).map_err(|e| err(&e.pos, e.message))?;
        let mut p = Cursor { toks, i: 0 };
        self.block(&mut p, ctx, true)
    }

    pub(super) fn new_scope(&mut self, parent: ScopeId) -> ScopeId {
        self.cfg.scopes.push(Scope {
            parent: Some(parent),
            stmts: Vec::new(),
        });
        self.cfg.scopes.len() - 1
    }

    pub(super) fn warn(&mut self, pos: &Pos, message: impl Into<String>) {
        self.cfg.warnings.push(Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: true,
        });
    }

    /// Statements until `}` (consumed) or, at top level, end of file.
    pub(super) fn block(&mut self, p: &mut Cursor, ctx: Ctx, top: bool) -> Result<(), Diag> {
        if top {
            return self.statements(p, ctx, true);
        }
        // the '{' that opened it
        let pos = p.prev_pos();
        self.nested(&pos, |l| l.statements(p, ctx, false))
    }

    fn statements(&mut self, p: &mut Cursor, ctx: Ctx, top: bool) -> Result<(), Diag> {
        loop {
            let t = p.peek().clone();
            match &t.tok {
                Tok::Eof if top => return Ok(()),
                Tok::Eof => return Err(err(&t.pos, "unexpected end of file: a '}' is missing")),
                Tok::Punct("}") if !top => {
                    p.next();
                    return Ok(());
                }
                Tok::Punct("}") => {
                    self.errors.push(err(&t.pos, "'}' without a matching '{'"));
                    p.next();
                }
                _ => {
                    let start = p.i;
                    if let Err(d) = self.statement(p, ctx) {
                        // report it and go on with the next statement
                        self.errors.push(d);
                        p.skip_statement(start);
                    }
                }
            }
        }
    }

    pub(super) fn push(&mut self, ctx: Ctx, s: Stmt) {
        self.cfg.scopes[ctx.scope].stmts.push(s);
    }

    pub(super) fn statement(&mut self, p: &mut Cursor, ctx: Ctx) -> Result<(), Diag> {
        let t = p.next();
        let Tok::Word(kw) = &t.tok else {
            return Err(err(
                &t.pos,
                format!("expected a statement, found {}", t.tok),
            ));
        };
        let pos = t.pos.clone();
        match kw.as_str() {
            "include" => self.include(p, ctx, &pos)?,
            "subnet" => self.subnet(p, ctx, &pos)?,
            "shared-network" => self.shared_network(p, ctx, &pos)?,
            "group" => self.group(p, ctx)?,
            "host" => self.host(p, ctx, &pos)?,
            "class" => self.class(p, ctx, &pos)?,
            "subclass" => self.subclass(p)?,
            "set" | "unset" | "log" | "execute" | "on" => {
                let s = self.exec_stmt(p, kw, &pos)?;
                self.push(ctx, s);
            }
            "spawn" | "lease" => self.class_limit(p, ctx, kw, &pos)?,
            "pool" => self.pool(p, ctx, &pos)?,
            "key" if ctx.kind == Kind::Global => self.key(p, &pos)?,
            "zone" if ctx.kind == Kind::Global => self.zone(p, &pos)?,
            "lease-database" if ctx.kind == Kind::Global => self.lease_database(p, &pos)?,
            "range" => self.range(p, ctx, &pos)?,
            "hardware" => self.hardware(p, ctx, &pos)?,
            "fixed-address" => self.fixed_address(p, ctx, &pos)?,
            "match" => self.match_stmt(p, ctx, &pos)?,
            "allow" | "deny" | "ignore" => self.access(p, ctx, kw)?,
            "not" => {
                p.keyword("authoritative")?;
                p.semi()?;
                self.push(ctx, Stmt::Param(Param::Authoritative(false)));
            }
            "if" => {
                let s = self.if_stmt(p)?;
                self.push(ctx, s);
            }
            "option" => self.option_stmt(p, ctx, &pos)?,
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
    pub(super) fn place_pool_ranges(&mut self) {
        for (pl, r) in std::mem::take(&mut self.pending) {
            let candidates: Vec<usize> = match self.pool_parent[pl] {
                Kind::Subnet(s) => vec![s],
                Kind::Shared(sh) => self.cfg.shared[sh].subnets.clone(),
                _ => Vec::new(),
            };
            let Some(s) = candidates.into_iter().find(|&s| {
                self.cfg.subnets[s].contains(r.start) && self.cfg.subnets[s].contains(r.end)
            }) else {
                self.errors.push(err(
                    &r.pos,
                    format!(
                        "range {} {} is not inside any subnet of this pool's declaration",
                        r.start, r.end
                    ),
                ));
                continue;
            };
            self.cfg.subnets[s].ranges.push(r);
        }
    }
}

/// One function per declaration statement, called by [`Loader::statement`].
impl Loader<'_> {
    fn include(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
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
        Ok(())
    }

    fn subnet(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        if !matches!(ctx.kind, Kind::Global | Kind::Shared(_) | Kind::Group) {
            return Err(err(
                pos,
                "a subnet may only be declared at top level, in a shared-network or in a group",
            ));
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
            pos: pos.clone(),
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
        Ok(())
    }

    fn shared_network(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        if !matches!(ctx.kind, Kind::Global | Kind::Group) {
            return Err(err(
                pos,
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
        Ok(())
    }

    fn group(&mut self, p: &mut Cursor, ctx: Ctx) -> Result<(), Diag> {
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
        Ok(())
    }

    fn host(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        if matches!(ctx.kind, Kind::Host(_) | Kind::Class(_) | Kind::Pool(_)) {
            return Err(err(pos, "a host cannot be declared here"));
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
            pos: pos.clone(),
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
        Ok(())
    }

    fn class(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        let (name, npos) = p.name()?;
        if self.cfg.classes.iter().any(|c| c.name == name) {
            return Err(err(&npos, format!("class \"{name}\" is declared twice")));
        }
        p.open()?;
        let scope = self.new_scope(ctx.scope);
        self.cfg.classes.push(Class {
            name,
            cond: None,
            submatch: None,
            spawn: None,
            subclasses: Vec::new(),
            lease_limit: None,
            scope,
            pos: pos.clone(),
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
        Ok(())
    }

    fn pool(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        if !matches!(ctx.kind, Kind::Subnet(_) | Kind::Shared(_)) {
            return Err(err(
                pos,
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
        Ok(())
    }

    fn range(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
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
        if u32::from(start) > u32::from(end) {
            return Err(err(
                pos,
                format!("range {start} {end}: the first address is above the last"),
            ));
        }
        let r = Range {
            start,
            end,
            pos: pos.clone(),
            pool: None,
            dynamic_bootp,
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
            _ => return Err(err(pos, "a range may only appear in a subnet or a pool")),
        }
        Ok(())
    }

    fn hardware(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        let Kind::Host(h) = ctx.kind else {
            return Err(err(
                pos,
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
        let bytes = options::colon_hex(&mac)
            .filter(|b| b.len() == 6)
            .ok_or_else(|| {
                err(
                    &mpos,
                    format!("'{mac}' is not an Ethernet address (six colon-separated hex bytes)"),
                )
            })?;
        p.semi()?;
        let mut hw = [0u8; 6];
        hw.copy_from_slice(&bytes);
        self.cfg.hosts[h].hw = Some(hw);
        Ok(())
    }

    fn fixed_address(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        let Kind::Host(h) = ctx.kind else {
            return Err(err(
                pos,
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
        Ok(())
    }

    /// `match if BOOL;` or `match DATA;` (the value looked up among the subclasses).
    fn match_stmt(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        let Kind::Class(c) = ctx.kind else {
            return Err(err(pos, "'match' is only meaningful in a class"));
        };
        if p.peek_word() == Some("if") {
            p.next();
            let e = self.bool_expr(p)?;
            p.semi()?;
            self.cfg.classes[c].cond = Some(e);
        } else {
            let d = self.data(p)?;
            p.semi()?;
            self.cfg.classes[c].submatch = Some(d);
        }
        Ok(())
    }

    /// `spawn with DATA;` and `lease limit N;` in a class.
    fn class_limit(&mut self, p: &mut Cursor, ctx: Ctx, kw: &str, pos: &Pos) -> Result<(), Diag> {
        let Kind::Class(c) = ctx.kind else {
            return Err(err(pos, format!("'{kw}' is only meaningful in a class")));
        };
        if kw == "spawn" {
            p.keyword("with")?;
            let d = self.data(p)?;
            p.semi()?;
            self.cfg.classes[c].spawn = Some(d);
        } else {
            p.keyword("limit")?;
            let (w, wpos) = p.word()?;
            let n = w
                .parse()
                .map_err(|_| err(&wpos, format!("lease limit '{w}' is not a number")))?;
            p.semi()?;
            self.cfg.classes[c].lease_limit = Some(n);
        }
        Ok(())
    }

    /// The index of the class declared as `name` (before the `what` that names it).
    fn class_named(&self, name: &str, pos: &Pos, what: &str) -> Result<usize, Diag> {
        self.cfg
            .classes
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                err(
                    pos,
                    format!("no class named \"{name}\" is declared before this {what}"),
                )
            })
    }

    /// `subclass "CLASS" VALUE;` or with a `{ ... }` scope of its own.
    fn subclass(&mut self, p: &mut Cursor) -> Result<(), Diag> {
        let (name, npos) = p.name()?;
        let c = self.class_named(&name, &npos, "subclass")?;
        if self.cfg.classes[c].submatch.is_none() && self.cfg.classes[c].spawn.is_none() {
            return Err(err(&npos, format!("class \"{name}\" has no 'match EXPRESSION;' (such as 'match hardware;'), so a subclass of it can never match")));
        }
        let t = p.next();
        let value = match t.tok {
            Tok::Str(s) => s.into_bytes(),
            Tok::Word(w) => options::colon_hex(&w).ok_or_else(|| {
                err(&t.pos, format!("subclass value '{w}' is neither a \"string\" nor colon-separated hex bytes (1:52:54:00:aa:bb:cc for hardware)"))
            })?,
            other => return Err(err(&t.pos, format!("expected the subclass value, found {other}"))),
        };
        let parent = self.cfg.classes[c].scope;
        let scope = self.new_scope(parent);
        if p.peek().tok == Tok::Punct("{") {
            p.next();
            self.block(
                p,
                Ctx {
                    scope,
                    kind: Kind::Class(c),
                },
                false,
            )?;
        } else {
            p.semi()?;
        }
        self.cfg.classes[c].subclasses.push((value, scope));
        Ok(())
    }

    fn access(&mut self, p: &mut Cursor, ctx: Ctx, kw: &str) -> Result<(), Diag> {
        let allow = kw == "allow";
        let (what, wpos) = p.word()?;
        let access = match what.as_str() {
            "members" => {
                p.keyword("of")?;
                let (name, npos) = p.string()?;
                let idx = self.class_named(&name, &npos, "line")?;
                Some(Access::Members(idx))
            }
            "known-clients" | "known" => Some(Access::Known),
            "unknown-clients" | "unknown" => Some(Access::Unknown),
            "dynamic" => {
                p.keyword("bootp")?;
                p.keyword("clients")?;
                Some(Access::DynamicBootp)
            }
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
            (_, Some(Access::Unknown)) => self.push(ctx, Stmt::Param(Param::UnknownClients(allow))),
            (_, Some(_)) => {
                return Err(err(
                    &wpos,
                    format!("'{kw} {what}' is only supported in a pool"),
                ))
            }
            (_, None) => match (what.as_str(), allow) {
                ("bootp", _) => self.push(ctx, Stmt::Param(Param::Bootp(allow))),
                ("client-updates", _) => {
                    let v = match kw {
                        "allow" => ClientUpdates::Allow,
                        "ignore" => ClientUpdates::Ignore,
                        _ => ClientUpdates::Deny,
                    };
                    self.push(ctx, Stmt::Param(Param::ClientUpdates(v)))
                }
                ("booting", false) => return Err(err(&wpos, "'deny booting' is not supported")),
                ("duplicates" | "declines", false) => {
                    return Err(err(&wpos, format!("'{kw} {what}' is not supported")))
                }
                _ => {} // the behaviour we have anyway
            },
        }
        Ok(())
    }

    fn option_stmt(&mut self, p: &mut Cursor, ctx: Ctx, pos: &Pos) -> Result<(), Diag> {
        if let Some(s) = self.option(p, pos)? {
            // a host's client identifier is how it is recognised, not only an option
            if let (
                Kind::Host(h),
                Stmt::Option {
                    space: None,
                    code: 61,
                    value,
                },
            ) = (ctx.kind, &s)
            {
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
        Ok(())
    }
}
