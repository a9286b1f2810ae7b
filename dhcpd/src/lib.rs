//! dhcpd: a DHCPv4 server for PXE networks that reads ISC `dhcpd.conf`.

pub mod conf;
pub mod engine;
pub mod leases;
pub mod wire;
