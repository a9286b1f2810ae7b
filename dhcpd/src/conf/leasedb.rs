//! `lease-database { type postgresql; name "leases"; host "db"; port 5432; user "dhcp";
//! password-file "/etc/dhcp/db.pw"; }`: a shared lease store instead of the journal file
//! (Kea's `lease-database`, in dhcpd.conf's syntax).

use std::path::PathBuf;

use super::cursor::Cursor;
use super::decl::Loader;
use super::lexer::{Pos, Tok};
use super::{err, Diag};

/// Where the leases live when not in the journal file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseDb {
    /// The database name.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// Where the statement is, for messages about it.
    pub pos: Pos,
}

impl Loader<'_> {
    /// `lease-database { ... }` at top level.
    pub(super) fn lease_database(&mut self, p: &mut Cursor, pos: &Pos) -> Result<(), Diag> {
        if self.cfg.lease_db.is_some() {
            return Err(err(
                pos,
                "a second lease-database statement (only one is allowed)",
            ));
        }
        p.open()?;
        let (mut kind, mut name, mut host, mut port, mut user, mut pw) =
            (None, None, None, 5432u16, None, None);
        loop {
            let t = p.next();
            let w = match t.tok {
                Tok::Punct("}") => break,
                Tok::Word(w) => w,
                other => {
                    return Err(err(
                        &t.pos,
                        format!("expected a lease-database setting or '}}', found {other}"),
                    ))
                }
            };
            let (v, vpos) = p.name()?;
            match w.as_str() {
                "type" => kind = Some((v, vpos)),
                "name" => name = Some(v),
                "host" => host = Some(v),
                "user" => user = Some(v),
                "password-file" => pw = Some(PathBuf::from(v)),
                "port" => {
                    port = v.parse().map_err(|_| {
                        err(&vpos, format!("port '{v}' is not a number from 1 to 65535"))
                    })?
                }
                _ => {
                    return Err(err(
                        &t.pos,
                        format!("unknown lease-database setting '{w}' (type, name, host, port, user, password-file)"),
                    ))
                }
            }
            p.semi()?;
        }
        if p.peek().tok == Tok::Punct(";") {
            p.next();
        }
        match &kind {
            Some((k, _)) if k == "postgresql" => {}
            Some((k, kpos)) => {
                return Err(err(
                    kpos,
                    format!("lease-database type '{k}' is not supported (postgresql; without lease-database the journal file is used)"),
                ))
            }
            None => return Err(err(pos, "lease-database needs 'type postgresql;'")),
        }
        let name = name.ok_or_else(|| err(pos, "lease-database needs 'name \"DATABASE\";'"))?;
        self.cfg.lease_db = Some(LeaseDb {
            name,
            host: host.unwrap_or_else(|| "localhost".into()),
            port,
            user: user.unwrap_or_else(|| "dhcp".into()),
            password_file: pw,
            pos: pos.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::conf::parse_str;

    #[test]
    fn lease_database_is_read_and_its_mistakes_are_placed() {
        let c = parse_str(
            "t.conf",
            "lease-database {\n  type postgresql;\n  name \"leases\";\n  host \"10.0.0.5\";\n  \
             port 5433;\n  user \"dhcp\";\n  password-file \"/etc/dhcp/db.pw\";\n}\n",
        )
        .unwrap();
        let db = c.lease_db.unwrap();
        assert_eq!(
            (
                db.name.as_str(),
                db.host.as_str(),
                db.port,
                db.user.as_str()
            ),
            ("leases", "10.0.0.5", 5433, "dhcp")
        );
        assert_eq!(db.password_file.unwrap().to_str(), Some("/etc/dhcp/db.pw"));
        assert!(parse_str("t.conf", "").unwrap().lease_db.is_none());
        let e = parse_str("t.conf", "lease-database {\n  type mysql;\n  name x;\n}\n").unwrap_err();
        assert!(e[0].to_string().contains("t.conf:2:8"), "{}", e[0]);
        assert!(e[0].message.contains("'mysql' is not supported"));
        let e = parse_str("t.conf", "lease-database { type postgresql; }").unwrap_err();
        assert!(e[0].message.contains("needs 'name"), "{}", e[0]);
        let e = parse_str(
            "t.conf",
            "subnet 10.0.0.0 netmask 255.0.0.0 { lease-database { } }",
        )
        .unwrap_err();
        assert!(!e.is_empty());
    }
}
