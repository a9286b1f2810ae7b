//! dhcpd: a DHCPv4 server for PXE networks that reads ISC `dhcpd.conf`.
//!
//! # Map
//! - [`conf`]: the dhcpd.conf language (lexer, parser, option types, expressions, scopes).
//! - [`wire`]: DHCP messages on the wire; parsing never panics.
//! - [`engine`]: the protocol and allocation core, pure: request + time in, action out.
//! - [`leases`]: leases and the `dhcpd.leases` journal (group commit, compaction).
//! - [`net`]: interfaces, sockets, link-layer delivery.
//! - [`ping`]: `ping-check`'s ICMP probes, one thread for all of them.
//! - [`isclog`]: ISC's per-transaction log lines (`DHCPACK on IP to MAC via IF`), rate-limited.
//! - [`store`]: where leases are made durable: the journal, or a PostgreSQL table shared by
//!   several servers (`lease-database`).
//! - [`server`]: threads: a receiver per interface (recvmmsg/sendmmsg batches), one journal
//!   writer (one write and fdatasync per batch before its ACKs), metrics.
//! - [`cli`] and [`app`]: the command line and what it does (`main.rs` only calls them).
//!
//! # Invariants
//! - An ACK that grants a lease leaves only after that lease is on disk (written and
//!   `fdatasync`ed by the journal thread, which sends the ACK itself).
//! - The engine never offers an address that another client holds, that is offered to
//!   another client, reserved for a host, or one of our own addresses.
//! - Anything in dhcpd.conf we do not implement is an error at its position, or, where ISC's
//!   meaning can be served without it (`omapi-port`), a warning
//!   that names what is not done. Nothing is ignored silently.

pub mod app;
pub mod cli;
pub mod conf;
pub mod ddns;
pub mod engine;
pub mod hosts;
pub mod isclog;
pub mod leases;
pub mod net;
pub mod ping;
pub mod ra;
pub mod server;
pub mod store;
pub mod wire;
