//! The token cursor the parser reads with, and the expressions of `match if` and `if`.

use std::net::Ipv4Addr;

use super::decl::Loader;
use super::expr::{Bool, Data, Num, OptRef};
use super::lexer::{Pos, Tok, Token};
use super::options;
use super::{err, Diag};

impl Loader<'_> {
    pub(super) fn bool_expr(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        let first = self.and_expr(p)?;
        if p.peek_word() != Some("or") {
            return Ok(first);
        }
        let mut any = vec![first];
        while p.peek_word() == Some("or") {
            p.next();
            any.push(self.and_expr(p)?);
        }
        Ok(Bool::Or(any))
    }

    pub(super) fn and_expr(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        let first = self.unary(p)?;
        if p.peek_word() != Some("and") {
            return Ok(first);
        }
        let mut all = vec![first];
        while p.peek_word() == Some("and") {
            p.next();
            all.push(self.unary(p)?);
        }
        Ok(Bool::And(all))
    }

    pub(super) fn unary(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        let pos = p.peek().pos.clone();
        self.nested(&pos, |l| l.unary_here(p))
    }

    fn unary_here(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        match p.peek_word() {
            Some("not") => {
                p.next();
                return Ok(Bool::Not(Box::new(self.unary(p)?)));
            }
            Some("exists") => {
                p.next();
                let (name, npos) = p.word()?;
                return Ok(Bool::Exists(self.option_code(&name, &npos)?));
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
        if p.peek_word() == Some("extract-int") {
            let a = self.num(p)?;
            p.expect("=")?;
            return Ok(Bool::NumEq(a, self.num(p)?));
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

    /// An option of the client's packet, by name; a sub-option needs its space to be
    /// encapsulated by a DHCP option declared before.
    pub(super) fn option_code(&self, name: &str, pos: &Pos) -> Result<OptRef, Diag> {
        let d = self.cfg.defs.get(name).ok_or_else(|| {
            let hint = self
                .cfg
                .defs
                .nearest(name)
                .map(|n| format!(" (did you mean '{n}'?)"))
                .unwrap_or_default();
            err(pos, format!("unknown option '{name}'{hint}"))
        })?;
        let within = match &d.space {
            None => None,
            Some(sp) => Some(*self.cfg.defs.encap.get(sp).ok_or_else(|| {
                err(pos, format!("option space '{sp}' is not carried by any option, so '{name}' cannot be read from a packet; declare 'option NAME code N = encapsulate {sp};' first"))
            })?),
        };
        Ok(OptRef {
            code: d.code,
            within,
        })
    }

    /// A numeric expression: a number or `extract-int(DATA, 8|16|32)`.
    pub(super) fn num(&mut self, p: &mut Cursor) -> Result<Num, Diag> {
        let (w, wpos) = p.word()?;
        if w == "extract-int" {
            p.expect("(")?;
            let d = self.data(p)?;
            p.expect(",")?;
            let width = int_width(p)?;
            p.expect(")")?;
            return Ok(Num::Extract(Box::new(d), width));
        }
        w.parse()
            .map(Num::Const)
            .map_err(|_| err(&wpos, format!("'{w}' is not a number or extract-int(...)")))
    }

    pub(super) fn data(&mut self, p: &mut Cursor) -> Result<Data, Diag> {
        let pos = p.peek().pos.clone();
        self.nested(&pos, |l| l.data_here(p))
    }

    fn data_here(&mut self, p: &mut Cursor) -> Result<Data, Diag> {
        let t = p.next();
        let num = |p: &mut Cursor| -> Result<usize, Diag> {
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
                    // concat(A, B, ...): ISC takes two or more
                    let mut parts = vec![self.data(p)?];
                    p.expect(",")?;
                    loop {
                        parts.push(self.data(p)?);
                        if !p.comma() {
                            break;
                        }
                    }
                    p.expect(")")?;
                    Ok(Data::Concat(parts))
                }
                "lcase" | "ucase" => {
                    p.expect("(")?;
                    let d = Box::new(self.data(p)?);
                    p.expect(")")?;
                    Ok(if w == "lcase" { Data::Lcase(d) } else { Data::Ucase(d) })
                }
                "hardware" => Ok(Data::Hardware),
                "leased-address" => Ok(Data::LeasedAddress),
                "host-decl-name" => Ok(Data::HostDeclName),
                "config-option" => {
                    let (name, npos) = p.word()?;
                    let o = self.option_code(&name, &npos)?;
                    if o.within.is_some() {
                        return Err(err(&npos, "config-option of a sub-option is not supported; name the option that carries it"));
                    }
                    Ok(Data::ConfigOption(o.code))
                }
                "binary-to-ascii" => {
                    p.expect("(")?;
                    let base = num(p)?;
                    p.expect(",")?;
                    let width = int_width(p)?;
                    p.expect(",")?;
                    let sep = Box::new(self.data(p)?);
                    p.expect(",")?;
                    let data = Box::new(self.data(p)?);
                    p.expect(")")?;
                    if !(2..=16).contains(&base) {
                        return Err(err(&t.pos, format!("binary-to-ascii: base {base} is not between 2 and 16")));
                    }
                    Ok(Data::BinaryToAscii { base: base as u32, width, sep, data })
                }
                "pick-first-value" => {
                    p.expect("(")?;
                    let mut v = vec![self.data(p)?];
                    while p.comma() {
                        v.push(self.data(p)?);
                    }
                    p.expect(")")?;
                    Ok(Data::PickFirst(v))
                }
                "encode-int" => {
                    p.expect("(")?;
                    let n = self.num(p)?;
                    p.expect(",")?;
                    let width = int_width(p)?;
                    p.expect(")")?;
                    Ok(Data::EncodeInt(Box::new(n), width))
                }
                _ => match options::colon_hex(&w) {
                    Some(b) => Ok(Data::Const(b)),
                    None if is_ident(&w) => Ok(Data::Var(w)),
                    None => Err(err(&t.pos, format!(
                        "'{w}' is not a value here: use option NAME, substring(...), suffix(...), hardware, a variable, a \"string\" or colon-separated hex like 00:07"
                    ))),
                },
            },
            other => Err(err(&t.pos, format!("expected a value, found {other}"))),
        }
    }
}

/// A variable name (`set NAME = ...`): letters, digits, `-` and `_`, starting with a letter.
fn is_ident(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_alphabetic())
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The width argument of extract-int, encode-int and binary-to-ascii: 8, 16 or 32.
fn int_width(p: &mut Cursor) -> Result<u8, Diag> {
    let (w, wpos) = p.word()?;
    match w.as_str() {
        "8" | "16" | "32" => Ok(w.parse().unwrap_or(8)),
        _ => Err(err(&wpos, format!("width '{w}' is not 8, 16 or 32"))),
    }
}

/// A cursor over the tokens of one file.
pub(super) struct Cursor {
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
}

impl Cursor {
    /// Error recovery: back to the token at `from` (where the failed statement began), then
    /// past that statement: up to its `;`, or over its `{ ... }` block (and any `else`
    /// blocks), or up to the `}` that closes the enclosing block (left for it).
    pub(super) fn skip_statement(&mut self, from: usize) {
        self.i = from;
        let mut depth = 0usize;
        loop {
            match &self.peek().tok {
                Tok::Eof => return,
                Tok::Punct(";") if depth == 0 => {
                    self.next();
                    return;
                }
                Tok::Punct("{") => depth += 1,
                Tok::Punct("}") if depth == 0 => return,
                Tok::Punct("}") => {
                    depth -= 1;
                    if depth == 0 {
                        self.next();
                        if !matches!(self.peek_word(), Some("else" | "elsif")) {
                            return;
                        }
                        continue;
                    }
                }
                _ => {}
            }
            self.next();
        }
    }

    pub(super) fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    pub(super) fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    pub(super) fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    /// Position of the previous token (the `{` a block was opened with).
    pub(super) fn prev_pos(&self) -> Pos {
        self.toks[self.i.saturating_sub(1)].pos.clone()
    }
    /// Position just after the previous token (where a missing ';' belongs).
    pub(super) fn after_prev(&self) -> Pos {
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
    pub(super) fn expect(&mut self, punct: &'static str) -> Result<(), Diag> {
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
    pub(super) fn semi(&mut self) -> Result<(), Diag> {
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
    pub(super) fn open(&mut self) -> Result<(), Diag> {
        self.expect("{")
    }
    pub(super) fn comma(&mut self) -> bool {
        if self.peek().tok == Tok::Punct(",") {
            self.next();
            true
        } else {
            false
        }
    }
    pub(super) fn word(&mut self) -> Result<(String, Pos), Diag> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) => Ok((w, t.pos)),
            other => Err(err(&t.pos, format!("expected a word, found {other}"))),
        }
    }
    pub(super) fn keyword(&mut self, kw: &str) -> Result<(), Diag> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) if w == kw => Ok(()),
            other => Err(err(&t.pos, format!("expected '{kw}', found {other}"))),
        }
    }
    pub(super) fn string(&mut self) -> Result<(String, Pos), Diag> {
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
    pub(super) fn name(&mut self) -> Result<(String, Pos), Diag> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) | Tok::Word(s) => Ok((s, t.pos)),
            other => Err(err(&t.pos, format!("expected a name, found {other}"))),
        }
    }
    pub(super) fn ip(&mut self) -> Result<(Ipv4Addr, Pos), Diag> {
        let (w, pos) = self.word()?;
        let ip = w
            .parse()
            .map_err(|_| err(&pos, format!("'{w}' is not an IPv4 address")))?;
        Ok((ip, pos))
    }
}
