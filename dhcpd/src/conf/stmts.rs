//! Executable statements: `set`, `unset`, `log`, `execute` and `on EVENT { ... }`.

use super::cursor::Cursor;
use super::decl::Loader;
use super::lexer::{Pos, Tok};
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
                let body = self.cond_block(p)?;
                return Ok(Stmt::On(events, body));
            }
            _ => return Err(err(pos, format!("'{kw}' is not an executable statement"))),
        };
        p.semi()?;
        Ok(s)
    }
}
