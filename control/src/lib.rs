//! ha's control contract, shared by the server (`ha`) and its clients (`ha status|drain|enable`,
//! `release`):
//!
//! - [`status`]: the typed `GET /v1/status` document (VRRP instances, virtual servers, real
//!   servers) and the answer to a drain or enable;
//! - [`gray`]: gray routes (gray release by user), their key and their reported state;
//! - [`route`]: the route table, the only place a control path is spelled;
//! - [`address`]: one grammar for where the API is (a unix socket path or `HOST:PORT`) and the
//!   optional bearer token;
//! - [`client`]: the one client (hyper over unix or TCP, connect and total deadlines, a correct
//!   `Host` header, typed answers).
//!
//! # Invariants
//! - A control path is built and parsed only in [`route`].
//! - Nobody reads the status by string key: servers fill [`status::Status`], clients get it back.

pub mod address;
pub mod client;
pub mod gray;
pub mod route;
pub mod status;

pub use address::{Address, Endpoint};
pub use client::{Client, Error};
pub use gray::{GrayKey, GrayRemoved, GrayRoute, GrayState};
pub use route::{Route, RsAction};
pub use status::{Instance, RealServer, RsChange, Status, VirtualServer, VrrpState};
