//! What changes at run time and must survive restarts, kept in the state directory and never
//! in the inventory: netboot turned off by the installed callback (Cobbler's `pxe_just_once`)
//! or by `kickstart netboot`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One system's override of the inventory's `netboot`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Override {
    pub netboot: bool,
    /// Unix seconds.
    pub since: u64,
    /// Why: "installed callback from 10.99.0.21", "kickstart netboot off".
    pub reason: String,
}

/// `STATE_DIR/netboot.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub netboot: BTreeMap<String, Override>,
    #[serde(skip)]
    path: PathBuf,
}

impl State {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("netboot.json")
    }

    /// Reads the state; a missing file is an empty state.
    pub fn load(dir: &Path) -> anyhow::Result<State> {
        let path = Self::file(dir);
        let mut st: State = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; fix or remove the file (it only holds netboot overrides)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        st.path = path;
        Ok(st)
    }

    /// The effective netboot of a system whose inventory says `configured`.
    pub fn netboot(&self, system: &str, configured: bool) -> bool {
        self.netboot
            .get(system)
            .map_or(configured, |o| o.netboot && configured)
    }

    /// Records an override and writes the file atomically.
    pub fn set(&mut self, system: &str, netboot: bool, reason: &str) -> anyhow::Result<()> {
        self.netboot.insert(
            system.to_string(),
            Override {
                netboot,
                since: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                reason: reason.to_string(),
            },
        );
        self.save()
    }

    /// Removes an override (back to what the inventory says).
    pub fn clear(&mut self, system: &str) -> anyhow::Result<bool> {
        let had = self.netboot.remove(system).is_some();
        if had {
            self.save()?;
        }
        Ok(had)
    }

    fn save(&self) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        Ok(write_atomic(&self.path, &text)?)
    }
}

pub use opsflow_common::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_persist_and_only_turn_off() {
        let dir = std::env::temp_dir().join(format!("ks-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut st = State::load(&dir).unwrap();
        assert!(st.netboot("a", true));
        st.set("a", false, "installed").unwrap();
        let st2 = State::load(&dir).unwrap();
        assert!(!st2.netboot("a", true));
        // an override never turns on what the inventory has off
        assert!(!st2.netboot("b", false));
        let mut st3 = State::load(&dir).unwrap();
        st3.set("b", true, "netboot on").unwrap();
        assert!(!st3.netboot("b", false));
        assert!(st3.clear("a").unwrap());
        assert!(State::load(&dir).unwrap().netboot("a", true));
        std::fs::write(State::file(&dir), "{").unwrap();
        let e = State::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("netboot.json") && e.contains("fix or remove"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
