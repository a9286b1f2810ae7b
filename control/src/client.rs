//! The one client of ha's control API: hyper over a unix socket or TCP, a connect deadline and
//! a total deadline (a stuck daemon never hangs the caller), the right `Host` header, the
//! bearer token, typed answers.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::address::{Address, Endpoint};
use crate::gray::{GrayKey, GrayRemoved, GrayRoute, GrayState};
use crate::route::{Route, RsAction};
use crate::status::{RsChange, Status};

/// Answers larger than this are refused (a status of thousands of real servers is far below).
const MAX_BODY: usize = 16 << 20;

/// What can go wrong talking to ha.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {address}: {cause} (is ha running with --control {address}?)")]
    Connect {
        address: Address,
        /// Shown in the message, not as a source (that would print it twice).
        cause: std::io::Error,
    },
    #[error("{address}: no connection within {after:?} (is the address right, is a firewall dropping it?)")]
    ConnectTimeout { address: Address, after: Duration },
    #[error("{address}: no complete answer within {after:?} (the daemon is stuck or overloaded)")]
    Timeout { address: Address, after: Duration },
    /// hyper's own text is a short description, its reason (the I/O error) is its source:
    /// both are in the message, once.
    #[error("{address}: {}", with_reasons(.cause))]
    Http {
        address: Address,
        cause: hyper::Error,
    },
    #[error("{address} answered {code}: {body}")]
    Status {
        address: Address,
        code: u16,
        body: String,
    },
    #[error("{address}: the answer is not what this client understands ({cause}); are ha and this tool the same version?")]
    Decode {
        address: Address,
        cause: serde_json::Error,
    },
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// An error's text followed by the texts of its sources: `A: B: C`.
fn with_reasons(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s.push_str(&format!(": {c}"));
        next = c.source();
    }
    s
}

impl Error {
    /// The HTTP status of a refused request (401, 404, ...), if that is what happened.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A client of one ha.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    connect_timeout: Duration,
    total_timeout: Duration,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

impl Client {
    /// A client with a 2 s connect and a 5 s total deadline.
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the deadlines: for the connection, and for the whole exchange (connection included).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Client {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status, Error> {
        let body = self.call(&Route::Status).await?;
        serde_json::from_slice(&body).map_err(|source| Error::Decode {
            address: self.endpoint.address.clone(),
            cause: source,
        })
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let body = self.call(&Route::Metrics).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Drains or enables a real server of a virtual server.
    pub async fn set_real_server(
        &self,
        virtual_server: &str,
        real_server: &str,
        action: RsAction,
    ) -> Result<RsChange, Error> {
        let route = Route::RealServer {
            virtual_server: virtual_server.to_string(),
            real_server: real_server.to_string(),
            action,
        };
        let body = self.call(&route).await?;
        serde_json::from_slice(&body).map_err(|source| Error::Decode {
            address: self.endpoint.address.clone(),
            cause: source,
        })
    }

    /// `GET /v1/gray`: the gray routes in force.
    pub async fn gray_list(&self) -> Result<Vec<GrayState>, Error> {
        let body = self.call(&Route::GrayList).await?;
        self.decode(&body)
    }

    /// `POST /v1/gray`: adds (or replaces) a gray route; answers its state.
    pub async fn gray_add(&self, route: &GrayRoute) -> Result<GrayState, Error> {
        let body = self.call_with(&Route::GrayAdd, self.encode(route)?).await?;
        self.decode(&body)
    }

    /// `DELETE /v1/gray`: removes the routes `key` names; answers those removed.
    pub async fn gray_del(&self, key: &GrayKey) -> Result<GrayRemoved, Error> {
        let body = self.call_with(&Route::GrayDel, self.encode(key)?).await?;
        self.decode(&body)
    }

    fn encode(&self, v: &impl serde::Serialize) -> Result<Bytes, Error> {
        serde_json::to_vec(v)
            .map(Bytes::from)
            .map_err(|source| Error::Decode {
                address: self.endpoint.address.clone(),
                cause: source,
            })
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(body).map_err(|source| Error::Decode {
            address: self.endpoint.address.clone(),
            cause: source,
        })
    }

    /// One request; the body of a 2xx answer, else [`Error::Status`] with the answer's text.
    pub async fn call(&self, route: &Route) -> Result<Bytes, Error> {
        self.call_with(route, Bytes::new()).await
    }

    /// One request with a JSON body.
    pub async fn call_with(&self, route: &Route, body: Bytes) -> Result<Bytes, Error> {
        let address = &self.endpoint.address;
        match tokio::time::timeout(self.total_timeout, self.exchange(route, body)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                address: address.clone(),
                after: self.total_timeout,
            }),
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, Error> {
        let address = &self.endpoint.address;
        let connecting = async {
            Ok::<Box<dyn Io>, std::io::Error>(match address {
                Address::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
                Address::Tcp { host, port } => {
                    let h = host.trim_start_matches('[').trim_end_matches(']');
                    let s = tokio::net::TcpStream::connect((h, *port)).await?;
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
            })
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(source)) => Err(Error::Connect {
                address: address.clone(),
                cause: source,
            }),
            Err(_) => Err(Error::ConnectTimeout {
                address: address.clone(),
                after: self.connect_timeout,
            }),
        }
    }

    async fn exchange(&self, route: &Route, body: Bytes) -> Result<Bytes, Error> {
        let address = &self.endpoint.address;
        let http = |source| Error::Http {
            address: address.clone(),
            cause: source,
        };
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(route.method())
            .uri(route.path())
            .header(hyper::header::HOST, address.host_header())
            .header(hyper::header::CONTENT_LENGTH, body.len().to_string());
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.endpoint.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| Error::Status {
            address: address.clone(),
            code: 0,
            body: format!("cannot build the request: {e}"),
        })?;
        let res = sender.send_request(req).await.map_err(http)?;
        let code = res.status();
        let body = Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| Error::Status {
                address: address.clone(),
                code: code.as_u16(),
                body: format!("cannot read the answer: {e}"),
            })?
            .to_bytes();
        driver.abort();
        if code.is_success() {
            Ok(body)
        } else {
            Err(Error::Status {
                address: address.clone(),
                code: code.as_u16(),
                body: String::from_utf8_lossy(&body).trim().to_string(),
            })
        }
    }
}

/// The same client for synchronous callers: each call runs on a runtime of its own.
#[derive(Debug)]
pub struct Blocking {
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Blocking {
    pub fn new(client: Client) -> Result<Blocking, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Blocking { client, rt })
    }

    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    pub fn status(&self) -> Result<Status, Error> {
        self.run(self.client.status())
    }

    pub fn metrics(&self) -> Result<String, Error> {
        self.run(self.client.metrics())
    }

    pub fn set_real_server(
        &self,
        virtual_server: &str,
        real_server: &str,
        action: RsAction,
    ) -> Result<RsChange, Error> {
        self.run(
            self.client
                .set_real_server(virtual_server, real_server, action),
        )
    }

    pub fn call(&self, route: &Route) -> Result<Bytes, Error> {
        self.run(self.client.call(route))
    }

    pub fn gray_list(&self) -> Result<Vec<GrayState>, Error> {
        self.run(self.client.gray_list())
    }

    pub fn gray_add(&self, route: &GrayRoute) -> Result<GrayState, Error> {
        self.run(self.client.gray_add(route))
    }

    pub fn gray_del(&self, key: &GrayKey) -> Result<GrayRemoved, Error> {
        self.run(self.client.gray_del(key))
    }
}

#[cfg(test)]
mod reason_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("error reading a body from connection")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_reason_is_shown_once_after_the_description() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        assert_eq!(
            super::with_reasons(&e),
            "error reading a body from connection: connection reset by peer"
        );
    }
}
