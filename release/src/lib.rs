//! Gray rollouts behind the HA load balancer, with no failed request.
//!
//! - [`cli`]: the command line; [`commands`]: what each subcommand does, `status` and
//!   `history` reports (text and JSON); [`exit`]: exit codes by kind;
//! - [`config`]: `release.toml` (app, directors, hosts), placeholders and the version pattern;
//! - [`plan`]: batch specs (`2`, `25%`, `1,2,50%`);
//! - [`session`]: the lock, the journal and the rollback target of one command
//!   ([`state`]: the lock file and the JSON-lines journal);
//! - [`decide`]: the decisions as pure functions (batch admission, min_healthy, failure
//!   classification, rollback target);
//! - [`directors`] and [`hosts`]: the traits release acts through, and their real
//!   implementations (ha's control API; ssh or local `sh -c`); [`health`]: the health gate;
//! - [`run`]: a release host by host and batch by batch, rollback, cleanup.
//!
//! Invariants: never more than one batch out of rotation; never below `min_healthy`; a failed
//! batch is rolled back to what the journal recorded before it; a version that failed is
//! recorded bad (or the run fails) and is never a rollback target; every step is idempotent so
//! `resume` can repeat the one a crash interrupted; no value reaches a shell unquoted.

//! - [`gray`]: gray release by user (`--users`, `promote`, `abort`): a gray route is one more
//!   [`directors::Directors`] call per director, `gray`/`promote`/`abort` are more
//!   [`state::Entry`] kinds replayed into [`state::Release`]'s phase, and `promote`/`abort` are
//!   [`run::Runner::run_batches`] over the remaining batches or a rollback of the canary.

pub mod cli;
pub mod commands;
pub mod config;
pub mod decide;
pub mod directors;
pub mod exit;
pub mod gray;
pub mod health;
pub mod hosts;
pub mod plan;
pub mod run;
pub mod session;
pub mod state;
