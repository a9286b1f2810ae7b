//! Exit codes, by what the operator does next (README and `release --help` list them).

use std::fmt;

/// Why a command failed, as far as a script calling `release` needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 1: anything else, including a rollback that did not complete (the message says where).
    Failed,
    /// 2: the command line (unknown flag, missing or invalid APP-VERSION, --batch).
    Usage,
    /// 3: release.toml cannot be read or is invalid.
    Config,
    /// 4: another release holds the lock, or a stale lock or unfinished release is in the way.
    LockBusy,
    /// 5: a batch failed and was rolled back; the hosts are back on their earlier version.
    RolledBack,
    /// 6: a host (ssh) or a director could not be reached.
    Unreachable,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::Config => 3,
            Kind::LockBusy => 4,
            Kind::RolledBack => 5,
            Kind::Unreachable => 6,
        }
    }
}

/// The list in `release --help`.
pub const EXIT_CODES: &str =
    "Exit codes: 0 success; 1 failed otherwise (e.g. a rollback that did not complete); \
2 usage (command line, invalid APP-VERSION); 3 config (release.toml unreadable or invalid); \
4 lock busy (another release runs, a stale lock, or an unfinished release: `release resume`); \
5 a batch failed and was rolled back; 6 a host or director unreachable.";

/// An error that carries its exit code; anywhere in an `anyhow` chain.
#[derive(Debug)]
pub struct Coded {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An `anyhow::Error` with exit code `kind`.
pub fn coded(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        kind,
        message: message.into(),
    })
}

/// The first [`Kind`] found in `e`'s chain; [`Kind::Failed`] when none.
pub fn kind_of(e: &anyhow::Error) -> Kind {
    e.chain()
        .find_map(|c| c.downcast_ref::<Coded>().map(|c| c.kind))
        .unwrap_or(Kind::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_context() {
        let e = coded(Kind::LockBusy, "held").context("release waimai-1.4");
        assert_eq!(kind_of(&e), Kind::LockBusy);
        assert_eq!(format!("{e:#}"), "release waimai-1.4: held");
        assert_eq!(kind_of(&anyhow::anyhow!("x")), Kind::Failed);
        let codes: Vec<u8> = [
            Kind::Failed,
            Kind::Usage,
            Kind::Config,
            Kind::LockBusy,
            Kind::RolledBack,
            Kind::Unreachable,
        ]
        .iter()
        .map(|k| k.code())
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6]);
        for c in codes {
            assert!(EXIT_CODES.contains(&format!("{c} ")), "{c}");
        }
    }
}
