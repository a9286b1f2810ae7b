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
mod decl;
mod eval;
mod model;
mod params;
mod validate;

use std::path::Path;
use std::sync::Arc;

use decl::{Ctx, Kind, Loader};
use lexer::Pos;
use opsflow_common::diag::error as err;
pub use opsflow_common::diag::{distance, Diag};

pub use eval::Params;
pub use model::*;
use validate::validate;

/// Loads and validates a config file (and its includes).
pub fn load(path: &Path) -> Result<Config, Vec<Diag>> {
    let mut cfg = Config::default();
    let mut p = Loader {
        cfg: &mut cfg,
        depth: 0,
        errors: Vec::new(),
        pool_parent: Vec::new(),
        pending: Vec::new(),
    };
    let top = Pos {
        file: Arc::from(path.display().to_string()),
        line: 0,
        col: 0,
    };
    if let Err(d) = p.file(
        path,
        &top,
        Ctx {
            scope: GLOBAL,
            kind: Kind::Global,
        },
    ) {
        p.errors.push(d);
    } else if let Err(d) = p.place_pool_ranges() {
        p.errors.push(d);
    }
    let mut errors = std::mem::take(&mut p.errors);
    if errors.is_empty() {
        errors.extend(validate(&mut cfg));
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

/// Parses config text (for tests and `include`-free uses).
pub fn parse_str(name: &str, text: &str) -> Result<Config, Vec<Diag>> {
    let mut cfg = Config::default();
    let mut p = Loader {
        cfg: &mut cfg,
        depth: 0,
        errors: Vec::new(),
        pool_parent: Vec::new(),
        pending: Vec::new(),
    };
    if let Err(d) = p
        .text(
            Arc::from(name),
            text,
            Ctx {
                scope: GLOBAL,
                kind: Kind::Global,
            },
        )
        .and_then(|_| p.place_pool_ranges())
    {
        return Err(vec![d]);
    }
    let errors = validate(&mut cfg);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
