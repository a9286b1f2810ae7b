//! Dynamic DNS declarations: `key NAME { algorithm ...; secret "..."; }` and
//! `zone NAME { primary ADDRESS; key NAME; }`.

use std::net::Ipv4Addr;

use base64::Engine as _;

use super::cursor::Cursor;
use super::decl::Loader;
use super::lexer::{Pos, Tok};
use super::{err, Diag};

/// TSIG algorithms (RFC 8945).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    HmacMd5,
    HmacSha256,
}

impl Alg {
    /// The algorithm's domain name, as it goes into a TSIG record.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HmacMd5 => "hmac-md5.sig-alg.reg.int.",
            Alg::HmacSha256 => "hmac-sha256.",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub alg: Alg,
    pub secret: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Lower case, with the final dot.
    pub name: String,
    pub primary: Ipv4Addr,
    pub key: Option<TsigKey>,
}

/// A name in lower case with one final dot.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

impl Zone {
    /// How many labels of `name` this zone covers (0: none).
    pub fn covers(&self, name: &str) -> usize {
        let n = fqdn(name);
        let inside = n == self.name || n.ends_with(&format!(".{}", self.name));
        if inside {
            self.name.split('.').filter(|l| !l.is_empty()).count()
        } else {
            0
        }
    }
}

impl Loader<'_> {
    /// `key NAME { algorithm ALG; secret "BASE64"; }`
    pub(super) fn key(&mut self, p: &mut Cursor, pos: &Pos) -> Result<(), Diag> {
        let (name, _) = p.name()?;
        p.open()?;
        let (mut alg, mut secret) = (None, None);
        loop {
            let t = p.next();
            match t.tok {
                Tok::Punct("}") => break,
                Tok::Word(w) if w == "algorithm" => {
                    let (a, apos) = p.name()?;
                    alg = Some(match fqdn(&a).as_str() {
                        "hmac-md5." | "hmac-md5.sig-alg.reg.int." => Alg::HmacMd5,
                        "hmac-sha256." => Alg::HmacSha256,
                        _ => {
                            return Err(err(
                                &apos,
                                format!(
                                "TSIG algorithm '{a}' is not supported (hmac-md5 or hmac-sha256)"
                            ),
                            ))
                        }
                    });
                    p.semi()?;
                }
                Tok::Word(w) if w == "secret" => {
                    let (s, spos) = p.name()?;
                    secret = Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(s.as_bytes())
                            .map_err(|e| err(&spos, format!("the secret is not base64: {e}")))?,
                    );
                    p.semi()?;
                }
                other => {
                    return Err(err(
                        &t.pos,
                        format!(
                            "expected 'algorithm', 'secret' or '}}' in key {name}, found {other}"
                        ),
                    ))
                }
            }
        }
        if p.peek().tok == Tok::Punct(";") {
            p.next();
        }
        let (Some(alg), Some(secret)) = (alg, secret) else {
            return Err(err(
                pos,
                format!("key {name} needs both 'algorithm' and 'secret'"),
            ));
        };
        self.cfg.keys.push(TsigKey {
            name: fqdn(&name),
            alg,
            secret,
        });
        Ok(())
    }

    /// `zone NAME { primary ADDRESS; key NAME; }`
    pub(super) fn zone(&mut self, p: &mut Cursor, pos: &Pos) -> Result<(), Diag> {
        let (name, _) = p.name()?;
        p.open()?;
        let (mut primary, mut key) = (None, None);
        loop {
            let t = p.next();
            match t.tok {
                Tok::Punct("}") => break,
                Tok::Word(w) if w == "primary" || w == "secondary" => {
                    let a = p.ip()?.0;
                    if w == "primary" || primary.is_none() {
                        primary = Some(a);
                    }
                    p.semi()?;
                }
                Tok::Word(w) if w == "key" => {
                    let (k, kpos) = p.name()?;
                    let found = self.cfg.keys.iter().find(|x| x.name == fqdn(&k)).cloned();
                    key = Some(found.ok_or_else(|| {
                        err(
                            &kpos,
                            format!("no key named {k} is declared before this zone"),
                        )
                    })?);
                    p.semi()?;
                }
                other => {
                    return Err(err(
                        &t.pos,
                        format!("expected 'primary', 'key' or '}}' in zone {name}, found {other}"),
                    ))
                }
            }
        }
        if p.peek().tok == Tok::Punct(";") {
            p.next();
        }
        let primary =
            primary.ok_or_else(|| err(pos, format!("zone {name} needs 'primary ADDRESS;'")))?;
        self.cfg.zones.push(Zone {
            name: fqdn(&name),
            primary,
            key,
        });
        Ok(())
    }
}
