//! ha: the keepalived-compatible HA daemon for load-balancer nodes.
//!
//! This build has the configuration language: `ha --check` reads keepalived.conf (includes,
//! `$VAR`, `@id` lines), knows every keyword of keepalived's samples, reports unknown ones as
//! `FILE:LINE:COL: unknown keyword 'X' (did you mean 'Y'?)`, range-checks values, and warns
//! about keywords it does not implement. The VRRP daemon lands with issue #6, the load
//! balancer with #7.
//!
//! # Map
//! - [`conf::syntax`]: lines, words, blocks, positions, includes, variables, `@id` lines.
//! - [`conf::schema`]: the keywords of each block and what ha does with them.
//! - [`conf`]: the validated model (instances, scripts, sync groups, virtual IPs).

pub mod conf;
pub mod vrrp;
