//! The token cursor the parser reads with, and the expressions of `match if` and `if`.

use std::net::Ipv4Addr;

use super::decl::Loader;
use super::expr::{Bool, Data};
use super::lexer::{Pos, Tok, Token};
use super::options;
use super::{err, Diag};

impl Loader<'_> {
    pub(super) fn bool_expr(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        let mut left = self.and_expr(p)?;
        while p.peek_word() == Some("or") {
            p.next();
            let right = self.and_expr(p)?;
            left = Bool::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    pub(super) fn and_expr(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
        let mut left = self.unary(p)?;
        while p.peek_word() == Some("and") {
            p.next();
            let right = self.unary(p)?;
            left = Bool::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    pub(super) fn unary(&mut self, p: &mut Cursor) -> Result<Bool, Diag> {
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

    pub(super) fn option_code(&self, name: &str, pos: &Pos) -> Result<u8, Diag> {
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

    pub(super) fn data(&mut self, p: &mut Cursor) -> Result<Data, Diag> {
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
