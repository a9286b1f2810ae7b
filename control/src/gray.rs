//! Gray routes (gray release by user): traffic from chosen client networks to a virtual
//! server goes only to chosen real servers; everyone else keeps the normal pool, from which
//! those real servers are removed. `POST /v1/gray` takes a [`GrayRoute`], `DELETE /v1/gray` a
//! [`GrayKey`], `GET /v1/gray` answers a list of [`GrayState`] (also in the status document).

use std::fmt;

pub use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

/// One gray route. Its identity is (`virtual_server`, `clients`): adding the same again
/// replaces its real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayRoute {
    /// `VIP:PORT`, `VIP:PORT/udp` or `[VIP6]:PORT`, as the drain route names it.
    pub virtual_server: String,
    /// The client networks, of the virtual server's family (`10.1.0.0/16`,
    /// `2001:db8:5::/48`; a bare address is a /32 or /128).
    pub clients: Vec<IpNet>,
    /// `RIP:PORT` (`[RIP6]:PORT`), real servers of that virtual server.
    pub real_servers: Vec<String>,
}

/// Which gray routes `DELETE /v1/gray` removes: those of `virtual_server` with exactly these
/// client networks, or every route of it when `clients` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayKey {
    pub virtual_server: String,
    #[serde(default)]
    pub clients: Vec<IpNet>,
}

/// A gray route as a running ha reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayState {
    #[serde(flatten)]
    pub route: GrayRoute,
    /// The firewall mark of its virtual service.
    pub fwmark: u32,
    /// The gray real servers in service now; when none is, `fallback` is true and the gray
    /// clients get the normal pool.
    pub in_service: Vec<String>,
    pub fallback: bool,
}

/// The answer to `DELETE /v1/gray`: the routes removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayRemoved {
    pub removed: Vec<GrayRoute>,
}

/// Parses `10.1.0.0/16,10.2.3.4,2001:db8:5::/48` (a bare address is a /32 or /128); the
/// error names the bad item.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let net = match item.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match item.parse::<std::net::IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => {
                    return Err(format!(
                        "{item:?} is not an IP network (write it as 10.1.0.0/16, 10.2.3.4 or 2001:db8:5::/48)"
                    ))
                }
            },
        };
        if net.trunc() != net {
            return Err(format!(
                "{item}: host bits are set; did you mean {}?",
                net.trunc()
            ));
        }
        out.push(net);
    }
    if out.is_empty() {
        return Err("no client network given (e.g. 10.1.0.0/16,10.2.3.4/32)".into());
    }
    Ok(out)
}

impl fmt::Display for GrayRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients: Vec<String> = self.clients.iter().map(IpNet::to_string).collect();
        write!(
            f,
            "{} from {} -> {}",
            self.virtual_server,
            clients.join(","),
            self.real_servers.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_with_and_without_a_prefix() {
        let n = parse_networks("10.1.0.0/16, 10.2.3.4").unwrap();
        assert_eq!(n[0].to_string(), "10.1.0.0/16");
        assert_eq!(n[1].to_string(), "10.2.3.4/32");
        assert!(parse_networks("10.1.0.1/16")
            .unwrap_err()
            .contains("did you mean 10.1.0.0/16"));
        assert!(parse_networks("bogus").unwrap_err().contains("\"bogus\""));
        assert!(parse_networks(" , ").is_err());
        let n = parse_networks("2001:db8:5::/48,2001:db8::9").unwrap();
        assert_eq!(n[0].to_string(), "2001:db8:5::/48");
        assert_eq!(n[1].to_string(), "2001:db8::9/128");
        assert!(parse_networks("2001:db8:5::1/48")
            .unwrap_err()
            .contains("did you mean 2001:db8:5::/48"));
    }

    #[test]
    fn a_state_is_the_route_flattened() {
        let s = GrayState {
            route: GrayRoute {
                virtual_server: "10.0.0.1:80".into(),
                clients: parse_networks("10.9.0.0/24").unwrap(),
                real_servers: vec!["10.0.1.3:80".into()],
            },
            fwmark: 7,
            in_service: vec![],
            fallback: true,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["clients"][0], "10.9.0.0/24");
        assert_eq!(v["virtual_server"], "10.0.0.1:80");
        let back: GrayState = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            s.route.to_string(),
            "10.0.0.1:80 from 10.9.0.0/24 -> 10.0.1.3:80"
        );
    }
}
