//! Parameter and option statements, and `if` blocks (which hold only those).

use std::net::Ipv4Addr;

use super::cursor::Cursor;
use super::decl::Loader;
use super::lexer::{Pos, Tok};
use super::model::*;
use super::options::{self, OptType, Val};
use super::{distance, err, Diag};

impl Loader<'_> {
    pub(super) fn param(
        &mut self,
        p: &mut Cursor,
        kw: &str,
        pos: &Pos,
    ) -> Result<Option<Stmt>, Diag> {
        let secs = |p: &mut Cursor| -> Result<u32, Diag> {
            let (w, wpos) = p.word()?;
            w.parse::<u32>()
                .map_err(|_| err(&wpos, format!("'{w}' is not a number of seconds")))
        };
        // a point in time as ISC 4.4 reads it for `dynamic-bootp-lease-cutoff`: Unix seconds
        // or `infinite` (2106, the end of its 32-bit time); also the form its manual gives,
        // `W YYYY/MM/DD HH:MM:SS` (UTC, W the weekday), which ISC 4.4 itself refuses
        let date = |p: &mut Cursor| -> Result<u64, Diag> {
            let (w, wpos) = p.word()?;
            let bad = |what: &str| {
                err(
                    &wpos,
                    format!("'{what}' is not a time: write Unix seconds (as ISC 4.4 reads it), 'infinite' or 'W YYYY/MM/DD HH:MM:SS' (UTC; W, the weekday, 0-6 from Sunday)"),
                )
            };
            if w == "infinite" {
                return Ok(u64::from(u32::MAX));
            }
            if p.peek().tok == Tok::Punct(";") {
                return w.parse().map_err(|_| bad(&w));
            }
            let (d, _) = p.word()?;
            let (t, _) = p.word()?;
            let text = format!("{w} {d} {t}");
            crate::leases::parse_isc_date(&text).ok_or_else(|| bad(&text))
        };
        let flag = |p: &mut Cursor| -> Result<bool, Diag> {
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
            "dynamic-bootp-lease-length" => Param::DynamicBootpLeaseLength(secs(p)?),
            "dynamic-bootp-lease-cutoff" => Param::DynamicBootpLeaseCutoff(date(p)?),
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
                Param::DdnsStyle(match w.as_str() {
                    "none" => DdnsStyle::None,
                    "interim" => DdnsStyle::Interim,
                    "standard" => DdnsStyle::Standard,
                    _ => {
                        return Err(err(
                            &wpos,
                            format!("'{w}' is not a ddns-update-style (none, interim or standard)"),
                        ))
                    }
                })
            }
            "ddns-updates" => Param::DdnsUpdates(flag(p)?),
            "update-static-leases" => Param::UpdateStaticLeases(flag(p)?),
            "ddns-domainname" => Param::DdnsDomainname(p.string()?.0),
            "ddns-rev-domainname" => Param::DdnsRevDomainname(p.string()?.0),
            "ddns-ttl" => Param::DdnsTtl(secs(p)?),
            "ddns-hostname" => {
                if p.peek().tok == Tok::Punct("=") {
                    p.next();
                }
                Param::DdnsHostname(self.data(p)?)
            }
            "omapi-port" | "omapi-key" => {
                p.word()?;
                p.semi()?;
                self.warn(pos, format!("{kw}: OMAPI is not served; add and remove host reservations at run time with 'dhcpd hosts add|del|list' (a control socket)"));
                return Ok(None);
            }
            "failover" => {
                return Err(err(pos, "failover peer: ISC's failover protocol is not implemented; several opsflow dhcpd servers share one PostgreSQL lease store instead (issue 21)"));
            }
            "ping-check" => Param::PingCheck(flag(p)?),
            "ping-timeout" => Param::PingTimeout(secs(p)?.clamp(1, 30)),
            "stash-agent-options" => Param::StashAgentOptions(flag(p)?),
            "vendor-option-space" | "site-option-space" => {
                let t = p.next();
                let (Tok::Word(sp) | Tok::Str(sp)) = t.tok else {
                    return Err(err(
                        &t.pos,
                        format!("{kw}: expected the name of an option space"),
                    ));
                };
                if self.cfg.defs.space(&sp).is_none() {
                    return Err(err(
                        &t.pos,
                        format!(
                            "option space '{sp}' is not declared (add 'option space {sp};' first)"
                        ),
                    ));
                }
                if kw == "vendor-option-space" {
                    Param::VendorOptionSpace(sp)
                } else {
                    Param::SiteOptionSpace(sp)
                }
            }
            "get-lease-hostnames" | "boot-unknown-clients" => {
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
                    "ddns-updates",
                    "ddns-domainname",
                    "ddns-rev-domainname",
                    "ddns-hostname",
                    "ddns-ttl",
                    "update-static-leases",
                    "omapi-port",
                    "omapi-key",
                    "failover",
                    "key",
                    "zone",
                    "ping-check",
                    "ping-timeout",
                    "stash-agent-options",
                    "vendor-option-space",
                    "site-option-space",
                    "set",
                    "unset",
                    "on",
                    "log",
                    "execute",
                    "subclass",
                    "one-lease-per-client",
                    "abandon-lease-time",
                    "dynamic-bootp-lease-length",
                    "dynamic-bootp-lease-cutoff",
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
    pub(super) fn option(&mut self, p: &mut Cursor, pos: &Pos) -> Result<Option<Stmt>, Diag> {
        let (name, npos) = p.word()?;
        if name == "space" {
            let (space, _) = p.word()?;
            let (mut cw, mut lw) = (1u8, 1u8);
            while let Some(w) = p.peek_word().map(str::to_string) {
                p.next();
                let (n, npos) = p.word()?;
                let bad = || err(&npos, format!("'{w} {n}' is not supported"));
                match (w.as_str(), n.as_str()) {
                    ("code", "width") => {
                        let (v, vpos) = p.word()?;
                        cw = match v.as_str() {
                            "1" | "2" | "4" => v.parse().unwrap_or(1),
                            _ => return Err(err(&vpos, format!("code width {v}: only 1, 2 or 4"))),
                        };
                    }
                    ("length", "width") => {
                        let (v, vpos) = p.word()?;
                        lw = match v.as_str() {
                            "0" | "1" | "2" => v.parse().unwrap_or(1),
                            _ => {
                                return Err(err(&vpos, format!("length width {v}: only 0, 1 or 2")))
                            }
                        };
                    }
                    ("hash", "size") => {
                        p.word()?; // a tuning of ISC's hash table: nothing to do here
                    }
                    _ => return Err(bad()),
                }
            }
            p.semi()?;
            self.cfg.defs.add_space(&space, cw, lw);
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
                if space != "dhcp" && self.cfg.defs.space(space).is_none() {
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
        let space = def.space.clone();
        if p.peek().tok == Tok::Punct("=") {
            p.next();
            let expr = self.data(p)?;
            p.semi()?;
            return Ok(Some(Stmt::OptionExpr {
                space,
                code: def.code,
                expr,
            }));
        }
        let mut groups: Vec<Vec<Val>> = vec![Vec::new()];
        let vpos = p.peek().pos.clone();
        // where a ';' was probably left out: the end of a line not ending in ',' that the
        // value went on past (a value spans lines only after a comma)
        let mut missing: Option<(Pos, String)> = None;
        let mut last: Option<(usize, bool)> = None;
        loop {
            let end_of_prev = p.after_prev();
            let t = p.next();
            if let Some((line, comma)) = last {
                if t.pos.line > line && !comma && missing.is_none() {
                    missing = Some((end_of_prev, t.tok.to_string()));
                }
            }
            last = Some((t.pos.line, t.tok == Tok::Punct(",")));
            match t.tok {
                Tok::Word(w) => groups
                    .last_mut()
                    .map(|g| g.push(Val::Word(w)))
                    .unwrap_or(()),
                Tok::Str(s) => groups.last_mut().map(|g| g.push(Val::Str(s))).unwrap_or(()),
                Tok::Punct(",") => groups.push(Vec::new()),
                Tok::Punct(";") => break,
                other => {
                    return Err(match missing {
                        Some((at, next)) => err(
                            &at,
                            format!("missing ';' after the value of option {name} (the next line starts with {next})"),
                        ),
                        None => err(
                            &t.pos,
                            format!("expected ';' after the value of option {name}, found {other}"),
                        ),
                    })
                }
            }
        }
        let value = options::encode(&def.ty, &groups).map_err(|m| match &missing {
            // the value took in the next line: the ';' before it is what is wrong
            Some((at, next)) => err(
                at,
                format!("missing ';' after the value of option {name} (the next line starts with {next})"),
            ),
            None => err(&vpos, format!("option {name}: {m}")),
        })?;
        let _ = pos;
        Ok(Some(Stmt::Option {
            space,
            code: def.code,
            value,
        }))
    }

    pub(super) fn opt_type(&mut self, p: &mut Cursor) -> Result<OptType, Diag> {
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
            if let ["encapsulate", sp] = words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                if self.cfg.defs.space(sp).is_none() {
                    return Err(err(
                        &start,
                        format!(
                            "option space '{sp}' is not declared (add 'option space {sp};' first)"
                        ),
                    ));
                }
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

    pub(super) fn if_stmt(&mut self, p: &mut Cursor) -> Result<Stmt, Diag> {
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
    pub(super) fn cond_block(&mut self, p: &mut Cursor) -> Result<Vec<Stmt>, Diag> {
        let pos = p.peek().pos.clone();
        self.nested(&pos, |l| l.cond_statements(p))
    }

    fn cond_statements(&mut self, p: &mut Cursor) -> Result<Vec<Stmt>, Diag> {
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
                        "set" | "unset" | "log" | "execute" | "on" => {
                            Some(self.exec_stmt(p, w, &t.pos)?)
                        }
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
}
