//! Gray rollouts behind the HA load balancer, with no failed request.
//!
//! - [`config`]: `release.toml` (app, directors, hosts) and placeholders;
//! - [`plan`]: batch specs (`2`, `25%`, `1,2,50%`);
//! - [`state`]: the lock and the JSON-lines journal in the state directory;
//! - [`remote`]: ssh/local commands, ha's control API, the health gate;
//! - [`run`]: a release host by host and batch by batch, rollback, cleanup.
//!
//! Invariants: never more than one batch out of rotation; never below `min_healthy`; a failed
//! batch is rolled back to what the journal recorded before it; every step is idempotent so
//! `resume` can repeat the one a crash interrupted.

pub mod config;
pub mod plan;
pub mod remote;
pub mod run;
pub mod state;
