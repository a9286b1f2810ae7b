//! Expressions of `match`, `if`, `set`, `option NAME = EXPR` and `on` blocks: the ISC
//! functions real configs use (see dhcp-eval(5)).

/// What an expression needs from the packet being answered.
pub trait Packet {
    /// Raw bytes of a client option, if present.
    fn option(&self, code: u8) -> Option<&[u8]>;
    /// Hardware type followed by the hardware address (ISC's `hardware`).
    fn hardware(&self) -> Vec<u8>;
    /// Bytes of the raw packet.
    fn raw(&self) -> &[u8];
    /// Whether a host declaration matched this client.
    fn known(&self) -> bool;
    /// A variable set with `set NAME = ...;`.
    fn var(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    /// The address being leased (`leased-address`), once one is chosen.
    fn leased_address(&self) -> Option<[u8; 4]> {
        None
    }
    /// The name of the host declaration that matched (`host-decl-name`).
    fn host_decl_name(&self) -> Option<String> {
        None
    }
    /// The value the configuration gives an option for this client (`config-option`).
    fn config_option(&self, _code: u8) -> Option<Vec<u8>> {
        None
    }
}

/// An option of the client's packet: a DHCP option, or a sub-option of an encapsulating one
/// (`agent.circuit-id` is sub-option 1 of option 82; `ipxe.http` sub-option 19 of 175).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptRef {
    pub code: u8,
    pub within: Option<u8>,
}

impl OptRef {
    pub fn get(&self, p: &dyn Packet) -> Option<Vec<u8>> {
        match self.within {
            None => p.option(self.code).map(<[u8]>::to_vec),
            Some(w) => sub_option(p.option(w)?, self.code).map(<[u8]>::to_vec),
        }
    }
}

/// Sub-option `code` of an encapsulated value (one-byte codes and lengths, as RFC 3046 and
/// iPXE use); `None` if absent or the value is malformed there.
pub fn sub_option(mut b: &[u8], code: u8) -> Option<&[u8]> {
    while b.len() >= 2 {
        let (c, l) = (b[0], b[1] as usize);
        let v = b.get(2..2 + l)?;
        if c == code {
            return Some(v);
        }
        b = &b[2 + l..];
    }
    None
}

/// A numeric expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Num {
    Const(u64),
    /// `extract-int(DATA, 8|16|32)`: a big-endian integer at the start of DATA.
    Extract(Box<Data>, u8),
}

impl Num {
    pub fn eval(&self, p: &dyn Packet) -> Option<u64> {
        match self {
            Num::Const(n) => Some(*n),
            Num::Extract(d, w) => {
                let v = d.eval(p)?;
                let n = (*w as usize) / 8;
                let b = v.get(..n)?;
                Some(b.iter().fold(0u64, |a, &x| a << 8 | x as u64))
            }
        }
    }
}

/// A data expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Option(OptRef),
    Const(Vec<u8>),
    Substring(Box<Data>, usize, usize),
    Suffix(Box<Data>, usize),
    Hardware,
    Packet(usize, usize),
    /// The parts in order (a list, not nested pairs: a long `concat` stays shallow).
    Concat(Vec<Data>),
    Lcase(Box<Data>),
    Ucase(Box<Data>),
    /// A variable set with `set`.
    Var(String),
    /// `binary-to-ascii(BASE, WIDTH, SEPARATOR, DATA)`.
    BinaryToAscii {
        base: u32,
        width: u8,
        sep: Box<Data>,
        data: Box<Data>,
    },
    /// `pick-first-value(A, B, ...)`: the first that is not null.
    PickFirst(Vec<Data>),
    /// `encode-int(NUM, 8|16|32)`.
    EncodeInt(Box<Num>, u8),
    LeasedAddress,
    HostDeclName,
    ConfigOption(u8),
}

/// A boolean expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bool {
    Eq(Data, Data),
    Ne(Data, Data),
    Exists(OptRef),
    NumEq(Num, Num),
    Known,
    /// Operands of one `and` (or `or`) chain: a list, so a long chain is not a deep tree
    /// (whose evaluation and drop would recurse once per operand).
    And(Vec<Bool>),
    Or(Vec<Bool>),
    Not(Box<Bool>),
}

impl Data {
    /// Evaluates; `None` when an option is absent (ISC's null value).
    pub fn eval(&self, p: &dyn Packet) -> Option<Vec<u8>> {
        Some(match self {
            Data::Option(o) => o.get(p)?,
            Data::Const(v) => v.clone(),
            Data::Substring(d, off, len) => {
                let v = d.eval(p)?;
                let start = (*off).min(v.len());
                let end = start.saturating_add(*len).min(v.len());
                v[start..end].to_vec()
            }
            Data::Suffix(d, len) => {
                let v = d.eval(p)?;
                v[v.len().saturating_sub(*len)..].to_vec()
            }
            Data::Hardware => p.hardware(),
            Data::Packet(off, len) => {
                let r = p.raw();
                let start = (*off).min(r.len());
                r[start..start.saturating_add(*len).min(r.len())].to_vec()
            }
            Data::Concat(parts) => {
                let mut v = Vec::new();
                for d in parts {
                    v.extend(d.eval(p)?);
                }
                v
            }
            Data::Lcase(d) => d.eval(p)?.to_ascii_lowercase(),
            Data::Ucase(d) => d.eval(p)?.to_ascii_uppercase(),
            Data::Var(n) => p.var(n)?,
            Data::BinaryToAscii {
                base,
                width,
                sep,
                data,
            } => {
                let sep = sep.eval(p)?;
                let v = data.eval(p)?;
                let n = (*width as usize / 8).max(1);
                let mut out = Vec::new();
                for (i, c) in v.chunks(n).enumerate() {
                    if i > 0 {
                        out.extend_from_slice(&sep);
                    }
                    let x = c.iter().fold(0u64, |a, &b| a << 8 | b as u64);
                    out.extend(radix(x, *base).into_bytes());
                }
                out
            }
            Data::PickFirst(v) => return v.iter().find_map(|d| d.eval(p)),
            Data::EncodeInt(n, w) => {
                let x = n.eval(p)?;
                x.to_be_bytes()[8 - *w as usize / 8..].to_vec()
            }
            Data::LeasedAddress => p.leased_address()?.to_vec(),
            Data::HostDeclName => p.host_decl_name()?.into_bytes(),
            Data::ConfigOption(c) => p.config_option(*c)?,
        })
    }
}

impl Bool {
    pub fn eval(&self, p: &dyn Packet) -> bool {
        match self {
            // comparisons with a missing value are false, as in ISC
            Bool::Eq(a, b) => matches!((a.eval(p), b.eval(p)), (Some(x), Some(y)) if x == y),
            Bool::Ne(a, b) => matches!((a.eval(p), b.eval(p)), (Some(x), Some(y)) if x != y),
            Bool::Exists(o) => o.get(p).is_some(),
            Bool::NumEq(a, b) => matches!((a.eval(p), b.eval(p)), (Some(x), Some(y)) if x == y),
            Bool::Known => p.known(),
            Bool::And(all) => all.iter().all(|b| b.eval(p)),
            Bool::Or(any) => any.iter().any(|b| b.eval(p)),
            Bool::Not(a) => !a.eval(p),
        }
    }
}

/// `x` in base 2..=16, lower-case digits, no leading zeros (as ISC's binary-to-ascii).
fn radix(mut x: u64, base: u32) -> String {
    let base = base.clamp(2, 16) as u64;
    let mut d = Vec::new();
    loop {
        d.push(b"0123456789abcdef"[(x % base) as usize]);
        x /= base;
        if x == 0 {
            break;
        }
    }
    d.reverse();
    String::from_utf8(d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P;
    impl Packet for P {
        fn option(&self, code: u8) -> Option<&[u8]> {
            match code {
                60 => Some(b"PXEClient:Arch:00007:UNDI:003016"),
                93 => Some(&[0, 7]),
                82 => Some(&[1, 3, b'a', b'b', b'c', 2, 2, b'r', b'x']),
                _ => None,
            }
        }
        fn hardware(&self) -> Vec<u8> {
            vec![1, 2, 0, 0, 0, 0, 1]
        }
        fn raw(&self) -> &[u8] {
            &[1, 1, 6]
        }
        fn known(&self) -> bool {
            false
        }
    }

    fn o(code: u8) -> OptRef {
        OptRef { code, within: None }
    }

    #[test]
    fn agent_sub_options_and_functions() {
        let circuit = OptRef {
            code: 1,
            within: Some(82),
        };
        let remote = Data::Option(OptRef {
            code: 2,
            within: Some(82),
        });
        assert_eq!(circuit.get(&P), Some(b"abc".to_vec()));
        assert_eq!(remote.eval(&P), Some(b"rx".to_vec()));
        let missing = OptRef {
            code: 9,
            within: Some(82),
        };
        assert_eq!(missing.get(&P), None);
        assert_eq!(sub_option(&[1, 9, 0], 1), None, "length past the end");
        let hw = Data::BinaryToAscii {
            base: 16,
            width: 8,
            sep: Box::new(Data::Const(b":".to_vec())),
            data: Box::new(Data::Suffix(Box::new(Data::Hardware), 6)),
        };
        assert_eq!(hw.eval(&P), Some(b"2:0:0:0:0:1".to_vec()));
        let ip = Data::BinaryToAscii {
            base: 10,
            width: 8,
            sep: Box::new(Data::Const(b".".to_vec())),
            data: Box::new(Data::Const(vec![10, 44, 12, 20])),
        };
        assert_eq!(ip.eval(&P), Some(b"10.44.12.20".to_vec()));
        let pick = Data::PickFirst(vec![Data::Option(o(77)), Data::Const(b"d".to_vec())]);
        assert_eq!(pick.eval(&P), Some(b"d".to_vec()));
        let n = Num::Extract(Box::new(Data::Option(o(93))), 16);
        assert_eq!(n.eval(&P), Some(7));
        assert_eq!(
            Data::EncodeInt(Box::new(n), 32).eval(&P),
            Some(vec![0, 0, 0, 7])
        );
    }

    #[test]
    fn pxe_class_and_architecture() {
        let vci = Bool::Eq(
            Data::Substring(Box::new(Data::Option(o(60))), 0, 9),
            Data::Const(b"PXEClient".to_vec()),
        );
        assert!(vci.eval(&P));
        assert!(Bool::Eq(Data::Option(o(93)), Data::Const(vec![0, 7])).eval(&P));
        assert!(!Bool::Eq(Data::Option(o(93)), Data::Const(vec![0, 9])).eval(&P));
        assert!(
            !Bool::Eq(Data::Option(o(77)), Data::Const(vec![])).eval(&P),
            "absent option"
        );
        assert!(
            !Bool::Ne(Data::Option(o(77)), Data::Const(vec![])).eval(&P),
            "absent option"
        );
        assert!(Bool::Not(Box::new(Bool::Exists(o(77)))).eval(&P));
        assert_eq!(
            Data::Substring(Box::new(Data::Option(o(60))), 100, 5).eval(&P),
            Some(vec![])
        );
        assert_eq!(
            Data::Suffix(Box::new(Data::Hardware), 2).eval(&P),
            Some(vec![0, 1])
        );
    }
}
