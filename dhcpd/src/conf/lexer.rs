//! Tokens of the ISC dhcpd.conf language, each with its position.

use std::fmt;
use std::sync::Arc;

pub use opsflow_common::diag::Pos;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: keyword, name, number, address, colon-hex, dotted name.
    Word(String),
    /// A quoted string, escapes resolved.
    Str(String),
    /// One of `{ } ; , = ( )` or `!=`, `~=`, `~~`.
    Punct(&'static str),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "'{w}'"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Punct(p) => write!(f, "'{p}'"),
            Tok::Eof => write!(f, "end of file"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// A lexing error with its position.
#[derive(Debug, Clone)]
pub struct LexError {
    pub pos: Pos,
    pub message: String,
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '+' | '*' | '@' | '$')
}

/// Splits a file into tokens. `#` starts a comment to the end of the line.
pub fn lex(file: &Arc<str>, text: &str) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut col = 1;
    let mut chars = text.chars().peekable();
    let pos = |line, col| Pos {
        file: file.clone(),
        line,
        col,
    };
    while let Some(&c) = chars.peek() {
        let start = pos(line, col);
        if c == '\n' {
            chars.next();
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            chars.next();
            col += 1;
            continue;
        }
        if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
            }
            continue;
        }
        if c == '"' {
            chars.next();
            col += 1;
            let mut s = String::new();
            loop {
                let Some(c) = chars.next() else {
                    return Err(LexError {
                        pos: start,
                        message: "unterminated string (missing closing \")".into(),
                    });
                };
                col += 1;
                match c {
                    '"' => break,
                    '\n' => {
                        line += 1;
                        col = 1;
                        s.push('\n');
                    }
                    '\\' => {
                        let Some(e) = chars.next() else { continue };
                        col += 1;
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            '0'..='7' => {
                                let mut v = e.to_digit(8).unwrap_or(0);
                                for _ in 0..2 {
                                    match chars.peek().and_then(|c| c.to_digit(8)) {
                                        Some(d) => {
                                            v = v * 8 + d;
                                            chars.next();
                                            col += 1;
                                        }
                                        None => break,
                                    }
                                }
                                s.push(char::from_u32(v).unwrap_or('?'));
                            }
                            other => s.push(other),
                        }
                    }
                    c => s.push(c),
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
            continue;
        }
        let two: Option<&'static str> = {
            let mut it = chars.clone();
            it.next();
            match (c, it.peek()) {
                ('!', Some('=')) => Some("!="),
                ('~', Some('=')) => Some("~="),
                ('~', Some('~')) => Some("~~"),
                _ => None,
            }
        };
        if let Some(p) = two {
            chars.next();
            chars.next();
            col += 2;
            out.push(Token {
                tok: Tok::Punct(p),
                pos: start,
            });
            continue;
        }
        let single = match c {
            '{' => Some("{"),
            '}' => Some("}"),
            ';' => Some(";"),
            ',' => Some(","),
            '=' => Some("="),
            '(' => Some("("),
            ')' => Some(")"),
            _ => None,
        };
        if let Some(p) = single {
            chars.next();
            col += 1;
            out.push(Token {
                tok: Tok::Punct(p),
                pos: start,
            });
            continue;
        }
        if word_char(c) {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if !word_char(c) {
                    break;
                }
                w.push(c);
                chars.next();
                col += 1;
            }
            out.push(Token {
                tok: Tok::Word(w),
                pos: start,
            });
            continue;
        }
        return Err(LexError {
            pos: start,
            message: format!("unexpected character '{c}'"),
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: pos(line, col),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(&Arc::from("t"), s)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn words_strings_and_punctuation() {
        assert_eq!(
            toks("hardware ethernet 0:0:c0:5d:bd:95; # comment\noption pxelinux.magic code 208 = string;"),
            vec![
                Tok::Word("hardware".into()),
                Tok::Word("ethernet".into()),
                Tok::Word("0:0:c0:5d:bd:95".into()),
                Tok::Punct(";"),
                Tok::Word("option".into()),
                Tok::Word("pxelinux.magic".into()),
                Tok::Word("code".into()),
                Tok::Word("208".into()),
                Tok::Punct("="),
                Tok::Word("string".into()),
                Tok::Punct(";"),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks(r#""a\"b\101""#),
            vec![Tok::Str("a\"bA".into()), Tok::Eof]
        );
        assert_eq!(
            toks("a != b"),
            vec![
                Tok::Word("a".into()),
                Tok::Punct("!="),
                Tok::Word("b".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn positions_and_errors() {
        let t = lex(&Arc::from("f.conf"), "a;\n  b").unwrap();
        assert_eq!(t[2].pos.to_string(), "f.conf:2:3");
        let e = lex(&Arc::from("f.conf"), "x \"open").unwrap_err();
        assert_eq!(e.pos.to_string(), "f.conf:1:3");
        let e = lex(&Arc::from("f.conf"), "x\n  %").unwrap_err();
        assert_eq!(e.pos.to_string(), "f.conf:2:3");
    }
}
