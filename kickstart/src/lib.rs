//! One inventory drives PXE menus, DHCP hosts, kickstarts and HA configs.
//!
//! This crate is a shell for now: the component lands with issue #5.
