//! Option negotiation (RFC 2347 blksize/timeout/tsize/windowsize, tftp-hpa's utimeout).
//! Pure: requested options and limits in, the values in force and the OACK out.

use std::time::Duration;

/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// IPv4 (20) + UDP (8) + TFTP (4) header bytes around a block.
pub const HEADER_OVERHEAD: usize = 32;

/// Server-side limits for one transfer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Already clamped to the path MTU of the route to the client.
    pub max_blksize: u16,
    pub max_window: u16,
    pub default_timeout: Duration,
}

/// What a transfer runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub window: u16,
    pub timeout: Duration,
    /// For writes: the size the client announced.
    pub tsize: Option<u64>,
    /// Options to acknowledge; empty means no OACK (plain RFC 1350 start).
    pub oack: Vec<(String, String)>,
}

/// Negotiates. `file_size` is the size to announce for a read (None for netascii, whose
/// size on the wire differs from the file's).
pub fn negotiate(
    requested: &[(String, String)],
    write: bool,
    file_size: Option<u64>,
    limits: Limits,
) -> Negotiated {
    let mut n = Negotiated {
        blksize: 512,
        window: 1,
        timeout: limits.default_timeout,
        tsize: None,
        oack: Vec::new(),
    };
    let mut seen = Vec::new();
    for (name, value) in requested {
        if seen.contains(name) {
            continue; // the first occurrence wins
        }
        seen.push(name.clone());
        let num = value.trim().parse::<u64>().ok();
        match (name.as_str(), num) {
            ("blksize", Some(v)) if v >= 8 => {
                let b = v.min(limits.max_blksize as u64).min(MAX_BLKSIZE as u64);
                n.blksize = b as usize;
                n.oack.push((name.clone(), b.to_string()));
            }
            ("timeout", Some(v)) if (1..=255).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                n.oack.push((name.clone(), v.to_string()));
            }
            ("utimeout", Some(v)) if (10_000..=255_000_000).contains(&v) => {
                n.timeout = Duration::from_micros(v);
                n.oack.push((name.clone(), v.to_string()));
            }
            ("tsize", Some(v)) => {
                if write {
                    n.tsize = Some(v);
                    n.oack.push((name.clone(), v.to_string()));
                } else if let Some(size) = file_size {
                    n.oack.push((name.clone(), size.to_string()));
                }
            }
            ("windowsize", Some(v)) if (1..=65535).contains(&v) => {
                let w = v.min(limits.max_window.max(1) as u64);
                n.window = w as u16;
                n.oack.push((name.clone(), w.to_string()));
            }
            _ => {} // unknown or invalid: not acknowledged, as RFC 2347 says
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_blksize: 1468,
            max_window: 64,
            default_timeout: Duration::from_secs(1),
        }
    }

    fn opts(o: &[(&str, &str)]) -> Vec<(String, String)> {
        o.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn clamps_and_acknowledges() {
        let n = negotiate(
            &opts(&[
                ("blksize", "65464"),
                ("tsize", "0"),
                ("windowsize", "100"),
                ("timeout", "3"),
            ]),
            false,
            Some(4096),
            limits(),
        );
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.window, 64);
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(
            n.oack,
            opts(&[
                ("blksize", "1468"),
                ("tsize", "4096"),
                ("windowsize", "64"),
                ("timeout", "3")
            ])
        );
    }

    #[test]
    fn invalid_and_unknown_options_are_ignored() {
        let n = negotiate(
            &opts(&[
                ("blksize", "7"),
                ("timeout", "0"),
                ("windowsize", "x"),
                ("color", "red"),
                ("blksize", "1024"),
            ]),
            false,
            Some(1),
            limits(),
        );
        assert_eq!(n.blksize, 512);
        assert!(n.oack.is_empty(), "{:?}", n.oack);
    }

    #[test]
    fn no_options_means_no_oack() {
        let n = negotiate(&[], false, Some(10), limits());
        assert_eq!((n.blksize, n.window), (512, 1));
        assert!(n.oack.is_empty());
    }

    #[test]
    fn write_keeps_client_tsize_and_netascii_read_omits_it() {
        let n = negotiate(&opts(&[("tsize", "777")]), true, None, limits());
        assert_eq!(n.tsize, Some(777));
        assert_eq!(n.oack, opts(&[("tsize", "777")]));
        let n = negotiate(&opts(&[("tsize", "0")]), false, None, limits());
        assert!(n.oack.is_empty());
    }

    #[test]
    fn utimeout() {
        let n = negotiate(&opts(&[("utimeout", "50000")]), false, Some(1), limits());
        assert_eq!(n.timeout, Duration::from_millis(50));
    }
}
