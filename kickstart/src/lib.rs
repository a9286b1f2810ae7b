//! One inventory drives PXE menus, DHCP hosts, kickstarts and HA configs.
//!
//! - [`bootprog`]: the boot programs (pxelinux, GRUB, iPXE) from the distribution's packages;
//! - [`cli`] and [`cmd`]: the command line and the commands behind it;
//! - [`inventory`]: the TOML inventory, validated with positions;
//! - [`kinds`]: what a value of each kind (host name, e-mail, package, path) may contain;
//! - [`state`]: netboot overrides in the state directory (the installed callback);
//! - [`render`]: the minijinja templates and their contexts;
//! - [`sync`]: the TFTP tree and dhcpd.conf, atomic and idempotent;
//! - [`serve`]: the HTTP server;
//! - [`confine`]: files below a tree, never outside it;
//! - [`token`]: the installed callback's per-system tokens.

pub mod bootprog;
pub mod cli;
pub mod cmd;
pub mod confine;
pub mod inventory;
pub mod kinds;
pub mod render;
pub mod serve;
pub mod state;
pub mod sync;
pub mod token;

use std::path::Path;

use render::Site;

/// Loads the inventory, its state directory (`state_dir` overrides the inventory's) and the
/// templates. Errors list every problem, one per line.
pub fn load_site(inventory: &Path, state_dir: Option<&Path>) -> anyhow::Result<Site> {
    let mut inv = inventory::Inventory::load(inventory).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(d) = state_dir {
        inv.server.state_dir = d.to_path_buf();
    }
    let st = state::State::load(&inv.server.state_dir)?;
    let key = match token::CallbackKey::load_or_create(&inv.server.state_dir) {
        Ok(k) => k,
        // a state directory this user cannot write (`check` or `render` as an ordinary
        // user): render with a key of this run; `serve` refuses such a key
        Err(e) if !inv.server.state_dir.join(token::KEY_FILE).exists() => {
            tracing::warn!(
                "{e:#}; the callback tokens rendered now are not the ones `kickstart serve` accepts"
            );
            token::CallbackKey::ephemeral()?
        }
        Err(e) => return Err(e),
    };
    Site::new(inv, st, key).map_err(|errs| render::all_errors(&errs))
}
