//! Executable statements: `set`, `unset`, `log`, `execute` and `on EVENT { ... }`.

use super::cursor::Cursor;
use super::decl::Loader;
use super::lexer::{Pos, Tok, Token};
use super::model::*;
use super::{err, Diag};

impl Loader<'_> {
    /// One of `set`, `unset`, `log`, `execute`, `on` (the keyword `kw` is already read).
    pub(super) fn exec_stmt(&mut self, p: &mut Cursor, kw: &str, pos: &Pos) -> Result<Stmt, Diag> {
        let s = match kw {
            "set" => {
                let (name, _) = p.word()?;
                p.expect("=")?;
                Stmt::Set(name, self.data(p)?)
            }
            "unset" => Stmt::Unset(p.word()?.0),
            "log" => {
                p.expect("(")?;
                // an optional priority first, as ISC: fatal, error, info or debug
                if matches!(p.peek_word(), Some("fatal" | "error" | "info" | "debug")) {
                    p.next();
                    p.expect(",")?;
                }
                let d = self.data(p)?;
                p.expect(")")?;
                Stmt::Log(d)
            }
            "execute" => {
                p.expect("(")?;
                let mut argv = vec![self.data(p)?];
                while p.comma() {
                    argv.push(self.data(p)?);
                }
                p.expect(")")?;
                Stmt::Execute(argv)
            }
            "on" => {
                let mut events = Vec::new();
                loop {
                    let (w, wpos) = p.word()?;
                    events.push(match w.as_str() {
                        "commit" => Event::Commit,
                        "release" => Event::Release,
                        "expiry" => Event::Expiry,
                        _ => {
                            return Err(err(
                                &wpos,
                                format!("'on {w}': the events are commit, release and expiry"),
                            ))
                        }
                    });
                    if p.peek().tok != Tok::Punct("or") && p.peek_word() != Some("or") {
                        break;
                    }
                    p.next();
                }
                let start = p.i;
                let body = self.cond_block(p)?;
                let text = isc_text(&p.toks[start..p.i]);
                return Ok(Stmt::On(
                    events,
                    std::sync::Arc::new(OnBlock { body, text }),
                ));
            }
            _ => return Err(err(pos, format!("'{kw}' is not an executable statement"))),
        };
        p.semi()?;
        Ok(s)
    }
}

/// Tokens as ISC dhcpd.conf text, for a lease file: single spaces, none before `,` `;` `)`
/// or after `(`; strings quoted, with `"` and `\` escaped and control characters as `\n`,
/// `\t`, `\r` or octal, which the lexer reads back.
fn isc_text(toks: &[Token]) -> String {
    let mut s = String::new();
    for t in toks {
        let glued = matches!(t.tok, Tok::Punct("," | ";" | ")")) || s.ends_with('(');
        if !s.is_empty() && !glued {
            s.push(' ');
        }
        match &t.tok {
            Tok::Word(w) => s.push_str(w),
            Tok::Punct(p) => s.push_str(p),
            Tok::Str(v) => {
                s.push('"');
                for c in v.chars() {
                    match c {
                        '"' | '\\' => {
                            s.push('\\');
                            s.push(c);
                        }
                        '\n' => s.push_str("\\n"),
                        '\t' => s.push_str("\\t"),
                        '\r' => s.push_str("\\r"),
                        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                            s.push_str(&format!("\\{:03o}", c as u32));
                        }
                        c => s.push(c),
                    }
                }
                s.push('"');
            }
            Tok::Eof => {}
        }
    }
    s
}
