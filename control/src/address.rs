//! Where the control API is: one grammar for servers and clients.
//!
//! - anything containing `/` is a unix socket path (`/run/ha/ha.sock`, `./ha.sock`);
//! - anything else is `HOST:PORT` for TCP (`10.0.0.1:9100`, `[::1]:9100`, `lb1:9100`), and may
//!   be written `http://HOST:PORT` (a trailing `/` is ignored).
//!
//! TCP always goes with a bearer token; a unix socket is guarded by its file mode.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed control address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

/// A control address that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("control address {given:?}: {why} (give a unix socket path such as /run/ha/ha.sock, or HOST:PORT)")]
pub struct BadAddress {
    pub given: String,
    pub why: String,
}

impl FromStr for Address {
    type Err = BadAddress;

    fn from_str(s: &str) -> Result<Address, BadAddress> {
        let bad = |why: &str| BadAddress {
            given: s.to_string(),
            why: why.to_string(),
        };
        let (tcp, rest) = match s.strip_prefix("http://") {
            Some(r) => (true, r.strip_suffix('/').unwrap_or(r)),
            None => (false, s),
        };
        if rest.is_empty() {
            return Err(bad("empty"));
        }
        if !tcp && rest.contains('/') {
            return Ok(Address::Unix(PathBuf::from(rest)));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("no port; a socket in this directory is written ./NAME"))?;
        let port: u16 = port.parse().map_err(|_| match port.parse::<u64>() {
            Ok(n) => bad(&format!("port {n} is out of range (0-65535)")),
            Err(_) => bad(&format!("port {port:?} is not a number")),
        })?;
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if host.is_empty() || host.contains('/') || (bare.is_none() && host.contains(':')) {
            return Err(bad(
                "the host is not a name or address (IPv6 goes in [brackets])",
            ));
        }
        Ok(Address::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl Address {
    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp { .. })
    }

    /// The `Host` header a request to this address carries.
    pub fn host_header(&self) -> String {
        match self {
            Address::Unix(_) => "localhost".to_string(),
            Address::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    /// A unix socket's directory, if it names one (for the pid file's instance name, etc.).
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        match self {
            Address::Unix(p) => Some(p),
            Address::Tcp { .. } => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// An address and the bearer token to present there.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Address,
    pub token: Option<String>,
}

impl Endpoint {
    pub fn new(address: Address, token: Option<String>) -> Endpoint {
        Endpoint { address, token }
    }

    /// Parses the address; the token is taken as given (trimmed; empty means none).
    pub fn parse(address: &str, token: Option<&str>) -> Result<Endpoint, BadAddress> {
        Ok(Endpoint {
            address: address.parse()?,
            token: token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        })
    }
}

// the token never appears in logs or error messages
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_grammar() {
        let ok = [
            ("/run/ha/ha.sock", Address::Unix("/run/ha/ha.sock".into())),
            ("./ha.sock", Address::Unix("./ha.sock".into())),
            ("run/x.sock", Address::Unix("run/x.sock".into())),
            ("10.0.0.1:9100", tcp("10.0.0.1", 9100)),
            ("http://10.0.0.1:9100", tcp("10.0.0.1", 9100)),
            ("http://10.0.0.1:9100/", tcp("10.0.0.1", 9100)),
            ("lb1.example:80", tcp("lb1.example", 80)),
            ("[::1]:9100", tcp("[::1]", 9100)),
        ];
        for (s, want) in ok {
            assert_eq!(s.parse::<Address>(), Ok(want), "{s}");
        }
        for s in [
            "",
            "ha.sock",
            "10.0.0.1",
            "10.0.0.1:http",
            "10.0.0.1:70000",
            ":80",
            "::1:80",
            "http://a/b:1",
            "http://",
        ] {
            let e = s.parse::<Address>().unwrap_err();
            assert!(e.to_string().contains("HOST:PORT"), "{s}: {e}");
        }
    }

    #[test]
    fn host_headers() {
        assert_eq!(tcp("10.0.0.1", 9100).host_header(), "10.0.0.1:9100");
        assert_eq!(tcp("[::1]", 1).host_header(), "[::1]:1");
        assert_eq!(Address::Unix("/x/y".into()).host_header(), "localhost");
    }

    #[test]
    fn the_token_is_trimmed_and_never_printed() {
        let e = Endpoint::parse("/s/x", Some(" secret\n")).unwrap();
        assert_eq!(e.token.as_deref(), Some("secret"));
        assert!(!format!("{e:?}").contains("secret"));
        assert_eq!(Endpoint::parse("/s/x", Some("  ")).unwrap().token, None);
    }
}
