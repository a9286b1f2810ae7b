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

/// What `ha doctor` said at the end of a node's `%post`, as the installed callback carried it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Doctor {
    /// Unix seconds.
    pub since: u64,
    /// `ha doctor`'s exit status (0 ok, 3 warnings, 4 failed), when the callback said.
    pub exit: Option<i32>,
    /// ok, warn, fail; "unknown" when no report came or it could not be read.
    pub status: String,
    /// The findings that warn or fail: `CHECK SUBJECT: what was found`.
    pub problems: Vec<String>,
}

impl Doctor {
    /// The outcome of the `?doctor=EXIT` parameter and the report in the callback's body.
    pub fn from_callback(exit: Option<i32>, body: &[u8]) -> Doctor {
        let report = (!body.is_empty()).then(|| serde_json::from_slice::<ha::doctor::Report>(body));
        let (status, problems) = match report {
            Some(Ok(r)) => (
                match r.status {
                    ha::doctor::Status::Ok => "ok",
                    ha::doctor::Status::Warn => "warn",
                    ha::doctor::Status::Fail => "fail",
                }
                .to_string(),
                r.findings
                    .iter()
                    .filter(|f| f.status != ha::doctor::Status::Ok)
                    .map(|f| {
                        let subject = if f.subject.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", f.subject)
                        };
                        format!("{}{subject}: {}", f.check.name(), f.found)
                    })
                    .collect(),
            ),
            Some(Err(e)) => (
                "unknown".to_string(),
                vec![format!("the doctor report is not readable: {e}")],
            ),
            None => (
                "unknown".to_string(),
                vec![format!(
                    "no doctor report (ha doctor exit {})",
                    exit.map_or("unknown".into(), |c| c.to_string())
                )],
            ),
        };
        Doctor {
            since: now(),
            exit,
            status,
            problems,
        }
    }

    /// One cell of `kickstart list`: `ok`, `warn: clock`, `FAIL: vrrp-firewall VI_1, clock`.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(p))
            .collect();
        match self.status.as_str() {
            "ok" => "ok".to_string(),
            "warn" => format!("warn: {}", names.join(", ")),
            "fail" => format!("FAIL: {}", names.join(", ")),
            _ => format!("unknown ({})", self.problems.join("; ")),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `STATE_DIR/netboot.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub netboot: BTreeMap<String, Override>,
    /// The last doctor outcome of each system's install.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub doctor: BTreeMap<String, Doctor>,
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
                since: now(),
                reason: reason.to_string(),
            },
        );
        self.save()
    }

    /// Records the doctor outcome of an install and writes the file atomically.
    pub fn set_doctor(&mut self, system: &str, d: Doctor) -> anyhow::Result<()> {
        self.doctor.insert(system.to_string(), d);
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

    #[test]
    fn a_doctor_report_is_summed_up_by_its_problems() {
        let body = br#"{"node":"lb1","config":"/etc/keepalived/keepalived.conf","status":"fail","findings":[
            {"check":"clock","subject":"","status":"warn","found":"not synchronised yet","fix":"wait"},
            {"check":"vrrp-firewall","subject":"VI_1","status":"fail","found":"dropped by table inet x chain in (input hook) rule handle 4","fix":"nft insert rule"},
            {"check":"ipvs","subject":"","status":"ok","found":"loaded"}]}"#;
        let d = Doctor::from_callback(Some(4), body);
        assert_eq!(d.status, "fail");
        assert_eq!(d.problems.len(), 2);
        assert!(
            d.problems[1].starts_with("vrrp-firewall VI_1: dropped by table inet x"),
            "{:?}",
            d.problems
        );
        assert_eq!(d.summary(), "FAIL: clock, vrrp-firewall VI_1");
        let none = Doctor::from_callback(Some(1), b"");
        assert_eq!(
            (none.status.as_str(), none.summary().as_str()),
            ("unknown", "unknown (no doctor report (ha doctor exit 1))")
        );
        assert!(Doctor::from_callback(None, b"{").problems[0].contains("not readable"));
        // kept with the netboot overrides, and an old file without it still loads
        let dir = std::env::temp_dir().join(format!("ks-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut st = State::load(&dir).unwrap();
        st.set_doctor("lb1", d.clone()).unwrap();
        assert_eq!(State::load(&dir).unwrap().doctor.get("lb1"), Some(&d));
        std::fs::write(State::file(&dir), r#"{"netboot":{}}"#).unwrap();
        assert!(State::load(&dir).unwrap().doctor.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
