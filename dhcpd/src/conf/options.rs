//! DHCP option names, codes and value types (RFC 2132 and friends, ISC names), and the
//! encoding of configured values.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The type of one field of an option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Ip,
    U8,
    U16,
    U32,
    I8,
    I16,
    I32,
    Bool,
    /// Text: `"..."` only.
    Text,
    /// String: `"..."` or colon-separated hex bytes.
    Str,
    /// One domain name (RFC 1035 wire form).
    DomainName,
    /// A list of domain names (RFC 1035 wire form, uncompressed).
    DomainList,
    /// `encapsulate SPACE`: the value is built from the options of SPACE set for the client.
    Encapsulate(String),
}

/// An option's value type: a record of fields, optionally repeated (`array of`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptType {
    pub fields: Vec<Field>,
    pub array: bool,
}

impl OptType {
    fn one(f: Field) -> OptType {
        OptType {
            fields: vec![f],
            array: false,
        }
    }
    fn arr(f: Field) -> OptType {
        OptType {
            fields: vec![f],
            array: true,
        }
    }
}

/// A known option.
#[derive(Clone, Debug)]
pub struct OptDef {
    pub name: String,
    pub code: u8,
    pub ty: OptType,
    /// The option space, for options declared as `SPACE.NAME` (`None`: the DHCP space).
    pub space: Option<String>,
}

/// An option space declared with `option space NAME [code width N] [length width N];`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Space {
    pub name: String,
    pub code_width: u8,
    pub length_width: u8,
}

/// Option definitions by name (standard ones plus `option NAME code N = TYPE;`).
#[derive(Clone, Debug)]
pub struct OptDefs {
    by_name: HashMap<String, OptDef>,
    names: HashMap<u8, String>,
    pub spaces: Vec<Space>,
    /// The DHCP option that encapsulates each space (`code N = encapsulate SPACE`).
    pub encap: HashMap<String, u8>,
}

fn std_defs() -> Vec<(&'static str, u8, OptType)> {
    use Field::*;
    let ip = || OptType::one(Ip);
    let ips = || OptType::arr(Ip);
    let text = || OptType::one(Text);
    let u32_ = || OptType::one(U32);
    let b = || OptType::one(Bool);
    vec![
        ("subnet-mask", 1, ip()),
        ("time-offset", 2, OptType::one(I32)),
        ("routers", 3, ips()),
        ("time-servers", 4, ips()),
        ("ien116-name-servers", 5, ips()),
        ("domain-name-servers", 6, ips()),
        ("log-servers", 7, ips()),
        ("cookie-servers", 8, ips()),
        ("lpr-servers", 9, ips()),
        ("impress-servers", 10, ips()),
        ("resource-location-servers", 11, ips()),
        ("host-name", 12, text()),
        ("boot-size", 13, OptType::one(U16)),
        ("merit-dump", 14, text()),
        ("domain-name", 15, text()),
        ("swap-server", 16, ip()),
        ("root-path", 17, text()),
        ("extensions-path", 18, text()),
        ("ip-forwarding", 19, b()),
        ("non-local-source-routing", 20, b()),
        (
            "policy-filter",
            21,
            OptType {
                fields: vec![Ip, Ip],
                array: true,
            },
        ),
        ("max-dgram-reassembly", 22, OptType::one(U16)),
        ("default-ip-ttl", 23, OptType::one(U8)),
        ("path-mtu-aging-timeout", 24, u32_()),
        ("path-mtu-plateau-table", 25, OptType::arr(U16)),
        ("interface-mtu", 26, OptType::one(U16)),
        ("all-subnets-local", 27, b()),
        ("broadcast-address", 28, ip()),
        ("perform-mask-discovery", 29, b()),
        ("mask-supplier", 30, b()),
        ("router-discovery", 31, b()),
        ("router-solicitation-address", 32, ip()),
        (
            "static-routes",
            33,
            OptType {
                fields: vec![Ip, Ip],
                array: true,
            },
        ),
        ("trailer-encapsulation", 34, b()),
        ("arp-cache-timeout", 35, u32_()),
        ("ieee802-3-encapsulation", 36, b()),
        ("default-tcp-ttl", 37, OptType::one(U8)),
        ("tcp-keepalive-interval", 38, u32_()),
        ("tcp-keepalive-garbage", 39, b()),
        ("nis-domain", 40, text()),
        ("nis-servers", 41, ips()),
        ("ntp-servers", 42, ips()),
        ("vendor-encapsulated-options", 43, OptType::one(Str)),
        ("netbios-name-servers", 44, ips()),
        ("netbios-dd-server", 45, ips()),
        ("netbios-node-type", 46, OptType::one(U8)),
        ("netbios-scope", 47, text()),
        ("font-servers", 48, ips()),
        ("x-display-manager", 49, ips()),
        ("dhcp-requested-address", 50, ip()),
        ("dhcp-lease-time", 51, u32_()),
        ("dhcp-option-overload", 52, OptType::one(U8)),
        ("dhcp-message-type", 53, OptType::one(U8)),
        ("dhcp-server-identifier", 54, ip()),
        ("dhcp-parameter-request-list", 55, OptType::arr(U8)),
        ("dhcp-message", 56, text()),
        ("dhcp-max-message-size", 57, OptType::one(U16)),
        ("dhcp-renewal-time", 58, u32_()),
        ("dhcp-rebinding-time", 59, u32_()),
        ("vendor-class-identifier", 60, OptType::one(Str)),
        ("dhcp-client-identifier", 61, OptType::one(Str)),
        ("nis+-domain", 64, text()),
        ("nis+-servers", 65, ips()),
        ("tftp-server-name", 66, text()),
        ("bootfile-name", 67, text()),
        ("mobile-ip-home-agent", 68, ips()),
        ("smtp-server", 69, ips()),
        ("pop-server", 70, ips()),
        ("nntp-server", 71, ips()),
        ("www-server", 72, ips()),
        ("finger-server", 73, ips()),
        ("irc-server", 74, ips()),
        ("streettalk-server", 75, ips()),
        ("streettalk-directory-assistance-server", 76, ips()),
        ("user-class", 77, OptType::one(Str)),
        ("relay-agent-information", 82, OptType::one(Str)),
        ("client-last-transaction-time", 91, u32_()),
        ("associated-ip", 92, ips()),
        ("pxe-system-type", 93, OptType::arr(U16)),
        (
            "pxe-interface-id",
            94,
            OptType {
                fields: vec![U8, U8, U8],
                array: false,
            },
        ),
        ("pxe-client-id", 97, OptType::one(Str)),
        ("default-url", 114, text()),
        ("subnet-selection", 118, ip()),
        ("domain-search", 119, OptType::one(DomainList)),
        ("vivco", 124, OptType::one(Str)),
        ("vivso", 125, OptType::one(Str)),
        ("pana-agent", 136, ips()),
        ("v4-lost", 137, OptType::one(DomainName)),
        ("capwap-ac-v4", 138, ips()),
        ("sip-ua-cs-domains", 141, OptType::one(DomainList)),
        ("rdnss-selection", 146, OptType::one(Str)),
        ("tftp-server-address", 150, ips()),
        ("v4-portparams", 159, OptType::one(Str)),
        ("v4-captive-portal", 160, text()),
        ("pxelinux.magic", 208, OptType::one(Str)),
        ("pxelinux.configfile", 209, text()),
        ("pxelinux.pathprefix", 210, text()),
        ("pxelinux.reboottime", 211, u32_()),
        ("web-proxy-auto-discovery", 252, text()),
    ]
}

impl Default for OptDefs {
    fn default() -> Self {
        let mut d = OptDefs {
            by_name: HashMap::new(),
            names: HashMap::new(),
            spaces: Vec::new(),
            encap: HashMap::new(),
        };
        for (name, code, ty) in std_defs() {
            d.define(name, code, ty);
        }
        // relay agent information (RFC 3046), as ISC predefines it
        d.add_space("agent", 1, 1);
        d.encap.insert("agent".into(), 82);
        let s = || OptType::one(Field::Str);
        d.define("agent.circuit-id", 1, s());
        d.define("agent.remote-id", 2, s());
        d.define("agent.agent-id", 3, OptType::one(Field::Ip));
        d.define("agent.link-selection", 5, OptType::one(Field::Ip));
        d.define("agent.subscriber-id", 6, s());
        d
    }
}

impl OptDefs {
    /// Adds or replaces a definition (ISC allows redefining a code under a new name).
    /// A name `SPACE.NAME` whose space is declared belongs to that space.
    pub fn define(&mut self, name: &str, code: u8, ty: OptType) {
        let space = name
            .split_once('.')
            .map(|(s, _)| s)
            .filter(|s| self.space(s).is_some())
            .map(str::to_string);
        if space.is_none() {
            self.names.insert(code, name.to_string());
        }
        if let [Field::Encapsulate(sp)] = ty.fields.as_slice() {
            self.encap.insert(sp.clone(), code);
        }
        self.by_name.insert(
            name.to_string(),
            OptDef {
                name: name.to_string(),
                code,
                ty,
                space,
            },
        );
    }

    pub fn add_space(&mut self, name: &str, code_width: u8, length_width: u8) {
        self.spaces.retain(|s| s.name != name);
        self.spaces.push(Space {
            name: name.to_string(),
            code_width,
            length_width,
        });
    }

    pub fn space(&self, name: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.name == name)
    }

    /// The encoded options of one space (`opts`: code and value, in order), with the
    /// space's code and length widths.
    pub fn encode_space(&self, space: &str, opts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let (cw, lw) = self
            .space(space)
            .map_or((1, 1), |s| (s.code_width, s.length_width));
        let mut out = Vec::new();
        for (code, v) in opts {
            if lw > 0 && v.len() >= 1usize << (8 * lw as u32) {
                tracing::warn!(
                    space,
                    code,
                    len = v.len(),
                    "option value too long for its space's length width: not sent"
                );
                continue;
            }
            out.extend_from_slice(&(*code as u32).to_be_bytes()[4 - cw as usize..]);
            if lw > 0 {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes()[4 - lw as usize..]);
            }
            out.extend_from_slice(v);
        }
        out
    }

    /// Looks a name up; `dhcp.NAME` is the same as `NAME`.
    pub fn get(&self, name: &str) -> Option<&OptDef> {
        self.by_name
            .get(name)
            .or_else(|| name.strip_prefix("dhcp.").and_then(|n| self.by_name.get(n)))
    }

    /// The name of a code, for logs.
    pub fn name_of(&self, code: u8) -> Option<&str> {
        self.names.get(&code).map(String::as_str)
    }

    /// The closest known name (for "did you mean" hints).
    pub fn nearest(&self, name: &str) -> Option<&str> {
        self.by_name
            .keys()
            .map(|k| (crate::conf::distance(k, name), k.as_str()))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, k)| k)
    }
}

/// Parses a type declaration in words (`unsigned integer 16`, `array of ip-address`, ...).
/// Records (`{ ip-address, text }`) arrive as a list of such declarations.
pub fn parse_field(words: &[String]) -> Result<Field, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match w.as_slice() {
        ["ip-address"] => Field::Ip,
        ["unsigned", "integer", "8"] => Field::U8,
        ["unsigned", "integer", "16"] => Field::U16,
        ["unsigned", "integer", "32"] => Field::U32,
        ["signed", "integer", "8"] | ["integer", "8"] => Field::I8,
        ["signed", "integer", "16"] | ["integer", "16"] => Field::I16,
        ["signed", "integer", "32"] | ["integer", "32"] => Field::I32,
        ["boolean"] => Field::Bool,
        ["text"] => Field::Text,
        ["string"] => Field::Str,
        ["domain-name"] => Field::DomainName,
        ["domain-list"] | ["domain-list", "compressed"] => Field::DomainList,
        ["encapsulate", space] => Field::Encapsulate(space.to_string()),
        _ => {
            return Err(format!(
                "unknown option type '{}' (known: ip-address, unsigned integer 8/16/32, signed integer 8/16/32, boolean, text, string, domain-name, domain-list)",
                w.join(" ")
            ))
        }
    })
}

/// A value token as the parser hands it over.
#[derive(Clone, Debug)]
pub enum Val {
    Word(String),
    Str(String),
}

/// Part of an encoded value that needs a DNS lookup at start-up (an ip-address written as a
/// host name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Bytes(Vec<u8>),
    Host(String),
}

/// Parses colon-separated hex bytes (`00:07`, `0:0:c0:5d:bd:95`).
pub fn colon_hex(s: &str) -> Option<Vec<u8>> {
    if !s.contains(':') {
        return None;
    }
    s.split(':')
        .map(|p| {
            if (1..=2).contains(&p.len()) {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

fn domain_wire(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("'{name}' is not a valid domain name"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

fn int<T: TryFrom<i64>>(v: &Val, what: &str) -> Result<T, String> {
    let Val::Word(w) = v else {
        return Err(format!("expected {what}, found a quoted string"));
    };
    let n: i64 = if let Some(h) = w.strip_prefix("0x") {
        i64::from_str_radix(h, 16).map_err(|_| format!("'{w}' is not {what}"))?
    } else {
        w.parse().map_err(|_| format!("'{w}' is not {what}"))?
    };
    T::try_from(n).map_err(|_| format!("{n} is out of range for {what}"))
}

/// Encodes one field; pushes bytes (or a host name to resolve) onto `out`.
pub fn encode_field(f: &Field, v: &Val, out: &mut Vec<Chunk>) -> Result<(), String> {
    let mut b = Vec::new();
    match f {
        Field::Ip => match v {
            Val::Word(w) => match w.parse::<Ipv4Addr>() {
                Ok(a) => b.extend_from_slice(&a.octets()),
                Err(_)
                    if w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                        && w.contains(|c: char| c.is_ascii_alphabetic()) =>
                {
                    out.push(Chunk::Host(w.clone()));
                    return Ok(());
                }
                Err(_) => return Err(format!("'{w}' is not an IPv4 address or host name")),
            },
            Val::Str(s) => return Err(format!("expected an IPv4 address, found \"{s}\"")),
        },
        Field::U8 => b.push(int::<u8>(v, "an unsigned 8-bit integer")?),
        Field::U16 => {
            b.extend_from_slice(&int::<u16>(v, "an unsigned 16-bit integer")?.to_be_bytes())
        }
        Field::U32 => {
            b.extend_from_slice(&int::<u32>(v, "an unsigned 32-bit integer")?.to_be_bytes())
        }
        Field::I8 => b.extend_from_slice(&int::<i8>(v, "a signed 8-bit integer")?.to_be_bytes()),
        Field::I16 => b.extend_from_slice(&int::<i16>(v, "a signed 16-bit integer")?.to_be_bytes()),
        Field::I32 => b.extend_from_slice(&int::<i32>(v, "a signed 32-bit integer")?.to_be_bytes()),
        Field::Bool => match v {
            Val::Word(w) => match w.as_str() {
                "true" | "on" | "1" => b.push(1),
                "false" | "off" | "0" => b.push(0),
                _ => return Err(format!("'{w}' is not a boolean (true, false, on, off)")),
            },
            Val::Str(_) => return Err("expected a boolean, found a quoted string".into()),
        },
        Field::Text => match v {
            Val::Str(s) => b.extend_from_slice(s.as_bytes()),
            Val::Word(w) => return Err(format!("text values must be quoted: \"{w}\"")),
        },
        Field::Str | Field::Encapsulate(_) => match v {
            Val::Str(s) => b.extend_from_slice(s.as_bytes()),
            Val::Word(w) => match colon_hex(w) {
                Some(bytes) => b.extend_from_slice(&bytes),
                None => {
                    return Err(format!(
                        "'{w}' is neither a quoted string nor colon-separated hex bytes"
                    ))
                }
            },
        },
        Field::DomainName | Field::DomainList => match v {
            Val::Str(s) => domain_wire(s, &mut b)?,
            Val::Word(w) => return Err(format!("domain names must be quoted: \"{w}\"")),
        },
    }
    out.push(Chunk::Bytes(b));
    Ok(())
}

/// Encodes a whole value given as comma-separated groups of tokens (a record is written as
/// space-separated fields; arrays are comma-separated).
pub fn encode(ty: &OptType, groups: &[Vec<Val>]) -> Result<Vec<Chunk>, String> {
    let mut out = Vec::new();
    let list_of_one_field = ty.fields.len() == 1 && matches!(ty.fields[0], Field::DomainList);
    if !ty.array && !list_of_one_field && groups.len() > 1 {
        return Err(format!(
            "this option takes one value, found {}",
            groups.len()
        ));
    }
    for g in groups {
        if g.len() != ty.fields.len() {
            return Err(format!(
                "expected {} field(s) per value, found {}",
                ty.fields.len(),
                g.len()
            ));
        }
        for (f, v) in ty.fields.iter().zip(g) {
            encode_field(f, v, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Val {
        Val::Word(s.into())
    }

    #[test]
    fn encodes_common_types() {
        let d = OptDefs::default();
        let r = d.get("routers").unwrap();
        assert_eq!(
            encode(&r.ty, &[vec![w("10.0.0.1")], vec![w("10.0.0.2")]]).unwrap(),
            vec![
                Chunk::Bytes(vec![10, 0, 0, 1]),
                Chunk::Bytes(vec![10, 0, 0, 2])
            ]
        );
        let dn = d.get("domain-name-servers").unwrap();
        assert_eq!(
            encode(&dn.ty, &[vec![w("ns1.example.org")]]).unwrap(),
            vec![Chunk::Host("ns1.example.org".into())]
        );
        let ds = d.get("domain-search").unwrap();
        let e = encode(
            &ds.ty,
            &[vec![Val::Str("a.b".into())], vec![Val::Str("c".into())]],
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                Chunk::Bytes(vec![1, b'a', 1, b'b', 0]),
                Chunk::Bytes(vec![1, b'c', 0])
            ]
        );
        assert_eq!(colon_hex("00:07"), Some(vec![0, 7]));
        assert_eq!(
            colon_hex("0:0:c0:5d:bd:95"),
            Some(vec![0, 0, 0xc0, 0x5d, 0xbd, 0x95])
        );
        assert_eq!(colon_hex("pxelinux.0"), None);
    }

    #[test]
    fn encodes_option_spaces_with_their_widths() {
        let mut d = OptDefs::default();
        d.add_space("wide", 2, 2);
        d.add_space("narrow", 1, 1);
        let opts = vec![(5u8, vec![1, 2]), (6, vec![0; 300])];
        assert_eq!(d.encode_space("wide", &opts[..1]), vec![0, 5, 0, 2, 1, 2]);
        // 300 bytes do not fit a one-byte length: left out, not cut
        assert_eq!(d.encode_space("narrow", &opts), vec![5, 2, 1, 2]);
        assert_eq!(d.encode_space("wide", &opts).len(), 6 + 4 + 300);
    }

    #[test]
    fn rejects_bad_values() {
        let d = OptDefs::default();
        assert!(encode(&d.get("subnet-mask").unwrap().ty, &[vec![w("300.1.1.1")]]).is_err());
        assert!(encode(&d.get("interface-mtu").unwrap().ty, &[vec![w("70000")]]).is_err());
        assert!(encode(&d.get("domain-name").unwrap().ty, &[vec![w("bare")]]).is_err());
        assert!(encode(
            &d.get("subnet-mask").unwrap().ty,
            &[vec![w("1.1.1.1")], vec![w("2.2.2.2")]]
        )
        .is_err());
    }
}
