//! dhcpd: a DHCPv4 server for PXE networks that reads ISC `dhcpd.conf`.

pub mod conf;
