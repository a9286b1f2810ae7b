//! The load balancers in front of the hosts: what release asks of them ([`Directors`]) and
//! ha's control API behind it ([`HaDirectors`]).

use std::io::{Read, Write};
use std::time::Duration;

use crate::config::Director;
use crate::exit::{coded, Kind};

/// One real server as a director reports it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RsState {
    pub weight: u64,
    pub configured_weight: u64,
    pub healthy: bool,
    pub maintenance: bool,
    pub active: u64,
}

/// The directors of a release, by index; every call reaches one director.
pub trait Directors: Sync {
    /// How many directors there are.
    fn count(&self) -> usize;
    /// Director `d`'s name in messages (its control address).
    fn name(&self, d: usize) -> String;
    /// Every real server of virtual server `vs` on director `d`: (`RIP:PORT`, state).
    fn real_servers(&self, d: usize, vs: &str) -> anyhow::Result<Vec<(String, RsState)>>;
    /// Drains (`drain`) or enables real server `rs` of `vs` on director `d`.
    fn set(&self, d: usize, vs: &str, rs: &str, drain: bool) -> anyhow::Result<()>;

    /// Real server `rs` of `vs` on director `d`.
    fn real_server(&self, d: usize, vs: &str, rs: &str) -> anyhow::Result<RsState> {
        self.real_servers(d, vs)?
            .into_iter()
            .find(|(k, _)| k == rs)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "director {}: virtual server {vs} has no real server {rs}",
                    self.name(d)
                )
            })
    }
}

/// ha's control API, one per `[[director]]`.
pub struct HaDirectors {
    pub list: Vec<Director>,
}

impl Directors for HaDirectors {
    fn count(&self) -> usize {
        self.list.len()
    }

    fn name(&self, d: usize) -> String {
        self.list[d].control.clone()
    }

    fn real_servers(&self, d: usize, vs: &str) -> anyhow::Result<Vec<(String, RsState)>> {
        let dir = &self.list[d];
        let s = status(dir)?;
        let v = s["virtual_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["id"] == vs)
            .ok_or_else(|| {
                anyhow::anyhow!("director {} has no virtual server {vs}", dir.control)
            })?;
        Ok(v["real_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    format!("{}:{}", r["address"].as_str().unwrap_or(""), r["port"]),
                    RsState {
                        weight: r["weight"].as_u64().unwrap_or(0),
                        configured_weight: r["configured_weight"].as_u64().unwrap_or(0),
                        healthy: r["healthy"].as_bool().unwrap_or(false),
                        maintenance: r["maintenance"].as_bool().unwrap_or(false),
                        active: r["active_connections"].as_u64().unwrap_or(0),
                    },
                )
            })
            .collect())
    }

    fn set(&self, d: usize, vs: &str, rs: &str, drain: bool) -> anyhow::Result<()> {
        let dir = &self.list[d];
        let verb = if drain { "drain" } else { "enable" };
        let (code, body) = call(
            dir,
            "POST",
            &format!("/v1/virtual-servers/{vs}/real-servers/{rs}/{verb}"),
        )?;
        if code != 200 {
            anyhow::bail!(
                "director {}: {verb} {rs} answered {code}: {}",
                dir.control,
                body.trim()
            );
        }
        Ok(())
    }
}

fn status(dir: &Director) -> anyhow::Result<serde_json::Value> {
    let (code, body) = call(dir, "GET", "/v1/status")?;
    if code != 200 {
        anyhow::bail!(
            "director {}: status answered {code}: {}",
            dir.control,
            body.trim()
        );
    }
    serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("director {}: status is not JSON: {e}", dir.control))
}

/// One HTTP/1.0 exchange with a director, 5 s deadline: (status, body).
fn call(dir: &Director, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let unreachable =
        |e: std::io::Error| coded(Kind::Unreachable, format!("director {}: {e}", dir.control));
    let auth = dir
        .token
        .as_deref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (host, mut stream): (String, Box<dyn ReadWrite>) = if dir.control.starts_with('/') {
        let s = std::os::unix::net::UnixStream::connect(&dir.control).map_err(unreachable)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        ("localhost".into(), Box::new(s))
    } else {
        use std::net::ToSocketAddrs;
        let target = dir
            .control
            .strip_prefix("http://")
            .unwrap_or(&dir.control)
            .trim_end_matches('/')
            .to_string();
        let addr = target
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| coded(Kind::Unreachable, format!("director {target}: no address")))?;
        let s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        (target, Box::new(s))
    };
    let req =
        format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n{auth}\r\n");
    stream.write_all(req.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(unreachable)?;
    crate::health::parse_response(&raw)
        .ok_or_else(|| anyhow::anyhow!("director {}: not an HTTP answer", dir.control))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
