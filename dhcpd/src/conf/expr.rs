//! Expressions of `match if` and `if`: the subset classic PXE configs use.

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
}

/// A data expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Option(u8),
    Const(Vec<u8>),
    Substring(Box<Data>, usize, usize),
    Suffix(Box<Data>, usize),
    Hardware,
    Packet(usize, usize),
    Concat(Box<Data>, Box<Data>),
    Lcase(Box<Data>),
    Ucase(Box<Data>),
}

/// A boolean expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bool {
    Eq(Data, Data),
    Ne(Data, Data),
    Exists(u8),
    Known,
    And(Box<Bool>, Box<Bool>),
    Or(Box<Bool>, Box<Bool>),
    Not(Box<Bool>),
}

impl Data {
    /// Evaluates; `None` when an option is absent (ISC's null value).
    pub fn eval(&self, p: &dyn Packet) -> Option<Vec<u8>> {
        Some(match self {
            Data::Option(c) => p.option(*c)?.to_vec(),
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
            Data::Concat(a, b) => {
                let mut v = a.eval(p)?;
                v.extend(b.eval(p)?);
                v
            }
            Data::Lcase(d) => d.eval(p)?.to_ascii_lowercase(),
            Data::Ucase(d) => d.eval(p)?.to_ascii_uppercase(),
        })
    }
}

impl Bool {
    pub fn eval(&self, p: &dyn Packet) -> bool {
        match self {
            // comparisons with a missing value are false, as in ISC
            Bool::Eq(a, b) => matches!((a.eval(p), b.eval(p)), (Some(x), Some(y)) if x == y),
            Bool::Ne(a, b) => matches!((a.eval(p), b.eval(p)), (Some(x), Some(y)) if x != y),
            Bool::Exists(c) => p.option(*c).is_some(),
            Bool::Known => p.known(),
            Bool::And(a, b) => a.eval(p) && b.eval(p),
            Bool::Or(a, b) => a.eval(p) || b.eval(p),
            Bool::Not(a) => !a.eval(p),
        }
    }
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

    #[test]
    fn pxe_class_and_architecture() {
        let vci = Bool::Eq(
            Data::Substring(Box::new(Data::Option(60)), 0, 9),
            Data::Const(b"PXEClient".to_vec()),
        );
        assert!(vci.eval(&P));
        assert!(Bool::Eq(Data::Option(93), Data::Const(vec![0, 7])).eval(&P));
        assert!(!Bool::Eq(Data::Option(93), Data::Const(vec![0, 9])).eval(&P));
        assert!(
            !Bool::Eq(Data::Option(77), Data::Const(vec![])).eval(&P),
            "absent option"
        );
        assert!(
            !Bool::Ne(Data::Option(77), Data::Const(vec![])).eval(&P),
            "absent option"
        );
        assert!(Bool::Not(Box::new(Bool::Exists(77))).eval(&P));
        assert_eq!(
            Data::Substring(Box::new(Data::Option(60)), 100, 5).eval(&P),
            Some(vec![])
        );
        assert_eq!(
            Data::Suffix(Box::new(Data::Hardware), 2).eval(&P),
            Some(vec![0, 1])
        );
    }
}
