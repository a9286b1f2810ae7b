//! The load balancers in front of the hosts: what release asks of them ([`Directors`]) and
//! ha's control API behind it ([`HaDirectors`]).

use opsflow_control::client::Blocking;
use opsflow_control::gray::IpNet;
use opsflow_control::{Client, Endpoint, Error, GrayKey, GrayRoute, RsAction};

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
    /// Sets (`Some(real servers)`) or removes (`None`) the gray route of `clients` to `vs` on
    /// director `d`; removing a route that is not there succeeds.
    fn gray(
        &self,
        d: usize,
        vs: &str,
        clients: &[IpNet],
        real_servers: Option<&[String]>,
    ) -> anyhow::Result<()>;

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

/// ha's control API, one client per `[[director]]` (opsflow-control's, with its deadlines).
pub struct HaDirectors {
    clients: Vec<Client>,
}

impl HaDirectors {
    /// Clients for the directors of the config (addresses were checked when it was loaded).
    pub fn new(list: &[Director]) -> anyhow::Result<HaDirectors> {
        let clients = list
            .iter()
            .map(|d| {
                Endpoint::parse(&d.control, d.token.as_deref())
                    .map(Client::new)
                    .map_err(|e| coded(Kind::Config, e.to_string()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(HaDirectors { clients })
    }

    /// Runs one call of director `d` to completion (a runtime per call: host threads call
    /// concurrently, and a stuck director delays only its own caller).
    fn blocking(&self, d: usize) -> anyhow::Result<Blocking> {
        Blocking::new(self.clients[d].clone()).map_err(anyhow::Error::new)
    }
}

/// A client error with its exit kind: no connection or no answer is "unreachable".
fn classify(e: Error) -> anyhow::Error {
    match e {
        Error::Connect { .. }
        | Error::ConnectTimeout { .. }
        | Error::Timeout { .. }
        | Error::Http { .. } => coded(Kind::Unreachable, format!("director {e}")),
        e => anyhow::anyhow!("director {e}"),
    }
}

impl Directors for HaDirectors {
    fn count(&self) -> usize {
        self.clients.len()
    }

    fn name(&self, d: usize) -> String {
        self.clients[d].endpoint().address.to_string()
    }

    fn real_servers(&self, d: usize, vs: &str) -> anyhow::Result<Vec<(String, RsState)>> {
        let status = self.blocking(d)?.status().map_err(classify)?;
        let v = status.virtual_server(vs).ok_or_else(|| {
            anyhow::anyhow!("director {} has no virtual server {vs}", self.name(d))
        })?;
        Ok(v.real_servers
            .iter()
            .map(|r| {
                (
                    r.id(),
                    RsState {
                        weight: r.weight.into(),
                        configured_weight: r.configured_weight.into(),
                        healthy: r.healthy,
                        maintenance: r.maintenance,
                        active: r.active_connections,
                    },
                )
            })
            .collect())
    }

    fn set(&self, d: usize, vs: &str, rs: &str, drain: bool) -> anyhow::Result<()> {
        let action = if drain {
            RsAction::Drain
        } else {
            RsAction::Enable
        };
        self.blocking(d)?
            .set_real_server(vs, rs, action)
            .map_err(classify)?;
        Ok(())
    }

    fn gray(
        &self,
        d: usize,
        vs: &str,
        clients: &[IpNet],
        real_servers: Option<&[String]>,
    ) -> anyhow::Result<()> {
        let c = self.blocking(d)?;
        match real_servers {
            Some(rss) => {
                c.gray_add(&GrayRoute {
                    virtual_server: vs.to_string(),
                    clients: clients.to_vec(),
                    real_servers: rss.to_vec(),
                })
                .map_err(classify)?;
            }
            None => {
                c.gray_del(&GrayKey {
                    virtual_server: vs.to_string(),
                    clients: clients.to_vec(),
                })
                .map_err(classify)?;
            }
        }
        Ok(())
    }
}
