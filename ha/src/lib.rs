//! keepalived-compatible HA daemon: VRRP, virtual IPs, IPVS/nftables virtual servers, health checks.
//!
//! This crate is a shell for now: the component lands with issue #6.
