//! The ISC `dhcpd.conf` language: lexed with positions, parsed into scopes, validated.
//!
//! Scopes nest as in ISC dhcpd (global → shared-network → subnet → pool, group → host,
//! class); a client's parameters are the statements of every scope that applies, executed
//! from the lowest precedence to the highest, `if` branches evaluated against its packet.
//! Anything we do not implement is an error at its position; logging statements are
//! accepted with a warning.

pub mod expr;
pub mod lexer;
pub mod options;

mod cursor;
pub mod ddns;
mod decl;
mod eval;
pub mod leasedb;
mod model;
mod params;
mod stmts;
mod validate;

use std::path::Path;
use std::sync::Arc;

#[cfg(test)]
use decl::MAX_NESTING;
use decl::{Ctx, Kind, Loader};
use lexer::Pos;
use opsflow_common::diag::error as err;
pub use opsflow_common::diag::{distance, Diag};

pub use eval::{Effect, Params};
pub use model::*;
use validate::validate;

/// Loads and validates a config file (and its includes). On failure, every problem found,
/// in file and line order: parsing goes on after an error at the next statement.
pub fn load(path: &Path) -> Result<Config, Vec<Diag>> {
    let top = Pos {
        file: Arc::from(path.display().to_string()),
        line: 0,
        col: 0,
    };
    parse(|l, ctx| l.file(path, &top, ctx))
}

/// Parses config text (for tests and `include`-free uses).
pub fn parse_str(name: &str, text: &str) -> Result<Config, Vec<Diag>> {
    parse(|l, ctx| l.text(Arc::from(name), text, ctx))
}

/// The `on EVENT { ... }` blocks in `text` (what a lease file keeps of a lease's blocks),
/// read with the option definitions of the running config; `name` says where the text is.
pub fn on_blocks(
    defs: &options::OptDefs,
    name: &str,
    text: &str,
) -> Result<Vec<(Event, Arc<OnBlock>)>, Vec<Diag>> {
    let cfg = Config {
        defs: defs.clone(),
        ..Config::default()
    };
    let cfg = parse_into(cfg, |l, ctx| l.text(Arc::from(name), text, ctx))?;
    let mut out = Vec::new();
    for s in &cfg.scopes[GLOBAL].stmts {
        if let Stmt::On(events, block) = s {
            out.extend(events.iter().map(|e| (*e, block.clone())));
        }
    }
    Ok(out)
}

fn parse(read: impl FnOnce(&mut Loader, Ctx) -> Result<(), Diag>) -> Result<Config, Vec<Diag>> {
    parse_into(Config::default(), read)
}

fn parse_into(
    mut cfg: Config,
    read: impl FnOnce(&mut Loader, Ctx) -> Result<(), Diag>,
) -> Result<Config, Vec<Diag>> {
    let mut l = Loader {
        cfg: &mut cfg,
        depth: 0,
        nest: 0,
        errors: Vec::new(),
        pool_parent: Vec::new(),
        pending: Vec::new(),
    };
    let ctx = Ctx {
        scope: GLOBAL,
        kind: Kind::Global,
    };
    if let Err(d) = read(&mut l, ctx) {
        l.errors.push(d);
    }
    l.place_pool_ranges();
    let mut errors = std::mem::take(&mut l.errors);
    // what was parsed is checked too, so one run reports every problem
    errors.extend(validate(&mut cfg));
    if errors.is_empty() {
        return Ok(cfg);
    }
    errors.sort_by(|a, b| {
        (&*a.pos.file, a.pos.line, a.pos.col).cmp(&(&*b.pos.file, b.pos.line, b.pos.col))
    });
    errors.dedup_by(|a, b| a.pos == b.pos && a.message == b.message);
    Err(errors)
}

#[cfg(test)]
mod tests;
