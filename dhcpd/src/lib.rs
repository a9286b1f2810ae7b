//! DHCPv4 server for PXE networks that reads ISC dhcpd.conf.
//!
//! This crate is a shell for now: the component lands with issue #3.
