//! Gray rollouts behind the HA load balancer with no failed request.
//!
//! This crate is a shell for now: the component lands with issue #8.
