//! The typed `GET /v1/status` document. The JSON is what `ha status --json` has always printed:
//! scripts read e.g. `d["vrrp"][0]["state"]` and
//! `d["virtual_servers"][i]["real_servers"][j]["address"|"port"|"healthy"|"weight"]`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Everything a running ha reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub vrrp: Vec<Instance>,
    #[serde(default)]
    pub virtual_servers: Vec<VirtualServer>,
    /// The gray routes in force (`GET /v1/gray` answers the same list).
    #[serde(default)]
    pub gray: Vec<crate::gray::GrayState>,
}

/// A VRRP state, spelled as keepalived spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Init,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    pub const ALL: [VrrpState; 4] = [
        VrrpState::Init,
        VrrpState::Backup,
        VrrpState::Master,
        VrrpState::Fault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One VRRP instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub vrid: u8,
    pub interface: String,
    pub state: VrrpState,
    /// The configured priority.
    pub priority: u8,
    /// The priority after tracking.
    pub effective_priority: u8,
    /// `ADDR/LEN`, as configured.
    pub vips: Vec<String>,
    /// The master's address: the source of the adverts we hear (IPv4, or for a VRRPv3
    /// IPv6 instance its link-local or unicast source), our own while we are master, none
    /// before anyone was heard.
    pub master_address: Option<IpAddr>,
    /// RFC 3339, UTC.
    pub last_transition: String,
}

/// One virtual server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualServer {
    /// `VIP:PORT`, `VIP:PORT/udp`, `[VIP6]:PORT`, `fwmark-N` or (IPv6) `fwmark6-N`: the name the drain route
    /// takes.
    pub id: String,
    pub address: Option<IpAddr>,
    /// 0 for a fwmark service.
    pub port: u16,
    pub protocol: String,
    pub fwmark: Option<u32>,
    pub scheduler: String,
    pub method: String,
    pub persistence_timeout: Option<u32>,
    pub quorum_up: bool,
    /// `ADDR:PORT`.
    pub sorry_server: Option<String>,
    pub sorry_server_active: bool,
    /// The data plane: `ipvs` or `nftables`.
    pub backend: String,
    pub real_servers: Vec<RealServer>,
}

/// One real server of a virtual server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealServer {
    pub address: IpAddr,
    pub port: u16,
    /// The weight in the data plane now (0 when out of rotation).
    pub weight: u32,
    pub configured_weight: u32,
    pub healthy: bool,
    /// Drained by an operator.
    pub maintenance: bool,
    pub in_service: bool,
    pub active_connections: u64,
    pub inactive_connections: u64,
    pub last_error: Option<String>,
}

impl RealServer {
    /// `RIP:PORT` (`[RIP6]:PORT`): the name the drain route takes.
    pub fn id(&self) -> String {
        SocketAddr::new(self.address, self.port).to_string()
    }
}

/// A virtual server as ha names it: `VIP:PORT`, `VIP:PORT/PROTO` (tcp, udp, sctp),
/// `[VIP6]:PORT`, `fwmark-N` or `fwmark6-N` (N > 0).
pub fn is_virtual_server_id(vs: &str) -> bool {
    if let Some(n) = vs
        .strip_prefix("fwmark-")
        .or_else(|| vs.strip_prefix("fwmark6-"))
    {
        return n.parse::<u32>().is_ok_and(|n| n > 0);
    }
    let (addr, proto) = match vs.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (vs, None),
    };
    is_real_server_id(addr)
        && proto.is_none_or(|p| ["tcp", "udp", "sctp"].contains(&p.to_ascii_lowercase().as_str()))
}

/// A real server as ha names it: `RIP:PORT` or `[RIP6]:PORT`, port 1-65535.
pub fn is_real_server_id(rs: &str) -> bool {
    real_server_addr(rs).is_some()
}

/// The address of a real server id ([`is_real_server_id`]).
pub fn real_server_addr(rs: &str) -> Option<SocketAddr> {
    rs.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// The one spelling of a virtual or real server id: `ADDR:PORT` or `ADDR:PORT/PROTO` with the
/// address as [`SocketAddr`] prints it (IPv6 in brackets, compressed), so
/// `[2001:0db8::0010]:80` and the percent-encoded `%5B2001:db8::10%5D:80` name
/// `[2001:db8::10]:80`. Anything else (`fwmark-N`, a typo) comes back as given.
pub fn canonical_id(id: &str) -> String {
    let decoded = id
        .replace("%5B", "[")
        .replace("%5b", "[")
        .replace("%5D", "]")
        .replace("%5d", "]")
        .replace("%3A", ":")
        .replace("%3a", ":");
    let (addr, proto) = match decoded.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (decoded.as_str(), None),
    };
    match (addr.parse::<SocketAddr>(), proto) {
        (Ok(a), None) => a.to_string(),
        (Ok(a), Some(p)) => format!("{a}/{}", p.to_ascii_lowercase()),
        (Err(_), _) => id.to_string(),
    }
}

impl Status {
    /// The virtual server named `id` (`VIP:PORT`, `[VIP6]:PORT` or `fwmark-N`).
    pub fn virtual_server(&self, id: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| v.id == id)
    }

    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.vrrp.iter().find(|i| i.name == name)
    }
}

impl VirtualServer {
    /// The real server named `id` (`RIP:PORT`).
    pub fn real_server(&self, id: &str) -> Option<&RealServer> {
        self.real_servers.iter().find(|r| r.id() == id)
    }
}

/// The answer to a drain or enable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RsChange {
    pub virtual_server: String,
    pub real_server: String,
    pub maintenance: bool,
    pub healthy: bool,
    /// Empty, or what the operator should know (an enabled server that is still unhealthy).
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sample() -> Status {
        Status {
            vrrp: vec![Instance {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: VrrpState::Master,
                priority: 150,
                effective_priority: 150,
                vips: vec!["10.0.0.100/24".into()],
                master_address: None,
                last_transition: "2026-11-30T11:00:00Z".into(),
            }],
            virtual_servers: vec![VirtualServer {
                id: "10.0.0.100:80".into(),
                address: Some(Ipv4Addr::new(10, 0, 0, 100).into()),
                port: 80,
                protocol: "TCP".into(),
                fwmark: None,
                scheduler: "wrr".into(),
                method: "NAT".into(),
                persistence_timeout: None,
                quorum_up: true,
                sorry_server: None,
                sorry_server_active: false,
                backend: "nftables".into(),
                real_servers: vec![RealServer {
                    address: Ipv4Addr::new(10, 0, 1, 1).into(),
                    port: 8080,
                    weight: 3,
                    configured_weight: 3,
                    healthy: true,
                    maintenance: false,
                    in_service: true,
                    active_connections: 2,
                    inactive_connections: 0,
                    last_error: None,
                }],
            }],
            gray: vec![],
        }
    }

    #[test]
    fn the_json_keeps_the_fields_scripts_read() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["vrrp"][0]["state"], "MASTER");
        assert_eq!(v["vrrp"][0]["master_address"], serde_json::Value::Null);
        let r = &v["virtual_servers"][0]["real_servers"][0];
        assert_eq!(r["address"], "10.0.1.1");
        assert_eq!(r["port"], 8080);
        assert_eq!(r["healthy"], true);
        assert_eq!(r["weight"], 3);
        let keys: Vec<&String> = v["virtual_servers"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys.len(), 13, "{keys:?}");
    }

    #[test]
    fn status_round_trips_and_finds_by_id() {
        let s = sample();
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let vs = back.virtual_server("10.0.0.100:80").unwrap();
        assert_eq!(vs.real_server("10.0.1.1:8080").unwrap().weight, 3);
        assert!(back.virtual_server("fwmark-1").is_none());
        assert_eq!(back.instance("VI_1").unwrap().state, VrrpState::Master);
    }

    #[test]
    fn ipv6_servers_are_named_in_brackets() {
        let mut s = sample();
        let v = &mut s.virtual_servers[0];
        v.id = "[2001:db8::10]:80".into();
        v.address = Some("2001:db8::10".parse().unwrap());
        v.real_servers[0].address = "2001:db8:1::11".parse().unwrap();
        assert_eq!(v.real_servers[0].id(), "[2001:db8:1::11]:8080");
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["virtual_servers"][0]["address"], "2001:db8::10");
        assert_eq!(
            j["virtual_servers"][0]["real_servers"][0]["address"],
            "2001:db8:1::11"
        );
        let back: Status = serde_json::from_value(j).unwrap();
        assert!(back
            .virtual_server("[2001:db8::10]:80")
            .and_then(|v| v.real_server("[2001:db8:1::11]:8080"))
            .is_some());
    }

    #[test]
    fn ids_have_one_spelling() {
        for (given, want) in [
            ("[2001:0db8::0010]:80", "[2001:db8::10]:80"),
            ("%5B2001:db8::10%5D:80", "[2001:db8::10]:80"),
            ("%5b2001%3adb8%3a%3a10%5d%3a53/UDP", "[2001:db8::10]:53/udp"),
            ("10.0.0.1:80", "10.0.0.1:80"),
            ("10.0.0.1:53/udp", "10.0.0.1:53/udp"),
            ("fwmark-5", "fwmark-5"),
            ("2001:db8::10:80", "2001:db8::10:80"),
        ] {
            assert_eq!(canonical_id(given), want, "{given}");
        }
    }

    #[test]
    fn a_status_without_virtual_servers_parses() {
        let s: Status = serde_json::from_str(r#"{"vrrp":[]}"#).unwrap();
        assert!(s.virtual_servers.is_empty());
    }
}
