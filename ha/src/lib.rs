//! ha: the keepalived-compatible HA daemon for load-balancer nodes.
//!
//! # Map
//! - [`conf`]: keepalived.conf (syntax with positions, keyword schema, validated model).
//! - [`vrrp`]: VRRP v2/v3 adverts (IPv4 and IPv6) and the RFC 5798 state machine, pure (time
//!   is an input); [`ah`]: keepalived's IPsec AH authentication of VRRPv2 adverts.
//! - [`daemon`]: the event loop: routers, tracking, notify scripts, reload, shutdown.
//! - [`net`]: rtnetlink addresses, gratuitous ARP, the raw VRRP socket, link state.
//! - [`lvs`]: virtual servers: health checkers, the data plane (nftables), drains.
//! - [`script`]: scripts as keepalived runs them (argv, no shell; user; script security).
//! - [`smtp`]: alert e-mail.
//! - [`status`]: the status and counters the daemon and the LVS task publish.
//! - [`doctor`]: `ha doctor`, the node's HA prerequisites (clock, VRRP through the firewall,
//!   IPVS, nonlocal bind, the LVS-DR real servers).
//! - [`track`]: what tracking reads from the system (processes).
//! - [`control`]: the control API server (`/v1/status`, `/metrics`, drain/enable; the
//!   contract and the client are `opsflow-control`), the socket's mode, the token file.
//! - [`cli`] (clap definitions), [`app`] (what each command does, the start-up order),
//!   [`dump`] (SIGUSR1/SIGUSR2 files under /run/ha).
//!
//! # Invariants
//! - Protocol decisions are made only in [`vrrp::Router`] and [`vrrp::Groups`] (sync groups);
//!   the daemon executes their actions.
//! - Scripts run as an argv (keepalived's quoting), never through a shell ([`script`]).
//! - Notify scripts and e-mail never block the event loop; they run in order per instance.
//! - A master that stops sends priority 0 first and removes its VIPs.
//! - The TCP control API always requires a bearer token.

pub mod ah;
pub mod app;
pub mod channel;
pub mod cli;
pub mod conf;
pub mod control;
pub mod daemon;
pub mod doctor;
pub mod dump;
pub mod lvs;
pub mod net;
pub mod script;
pub mod smtp;
pub mod status;
pub mod track;
pub mod vrrp;
pub mod watch;
