//! keepalived's signal dumps: SIGUSR1 writes the data (keepalived's `/tmp/keepalived.data`:
//! global definitions, every VRRP instance, the virtual servers), SIGUSR2 the statistics
//! (`/tmp/keepalived.stats`), each as text and as JSON, under `/run/ha/` (0755, root's) rather
//! than a predictable path in /tmp. Files are opened with O_NOFOLLOW, created 0640.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use opsflow_control::Status;
use serde::Serialize;
use tracing::{info, warn};

use crate::status::{Counters, Shared};

/// Where the dumps of one ha go: `DIR/STEM.data`, `.data.json`, `.stats`, `.stats.json`.
#[derive(Clone, Debug)]
pub struct Dumps {
    pub dir: PathBuf,
    /// Per instance of ha (the pid file's name), so several ha on one host do not collide.
    pub stem: String,
    /// For the global definitions.
    pub config_file: PathBuf,
    pub router_id: Option<String>,
}

#[derive(Serialize)]
struct Data<'a> {
    pid: u32,
    config_file: &'a Path,
    router_id: Option<&'a str>,
    #[serde(flatten)]
    status: &'a Status,
}

#[derive(Serialize)]
struct InstanceStats<'a> {
    name: &'a str,
    state: opsflow_control::VrrpState,
    effective_priority: u8,
}

#[derive(Serialize)]
struct Stats<'a> {
    pid: u32,
    instances: Vec<InstanceStats<'a>>,
    adverts_received: u64,
    adverts_sent: u64,
    transitions: u64,
    adverts_dropped: std::collections::BTreeMap<&'a str, u64>,
}

/// keepalived's `.data` layout, for people.
pub fn data_text(d: &Dumps, s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "------< Global definitions >------");
    let _ = writeln!(o, " Router ID = {}", d.router_id.as_deref().unwrap_or("-"));
    let _ = writeln!(o, " Config file = {}", d.config_file.display());
    let _ = writeln!(o, " Pid = {}", std::process::id());
    let _ = writeln!(o, "------< VRRP Topology >------");
    for i in &s.vrrp {
        let _ = writeln!(o, " VRRP Instance = {}", i.name);
        let _ = writeln!(o, "   State = {}", i.state);
        let _ = writeln!(o, "   Interface = {}", i.interface);
        let _ = writeln!(o, "   Virtual Router ID = {}", i.vrid);
        let _ = writeln!(o, "   Priority = {}", i.priority);
        let _ = writeln!(o, "   Effective priority = {}", i.effective_priority);
        let master = i.master_address.map(|a| a.to_string());
        let _ = writeln!(o, "   Master router = {}", master.as_deref().unwrap_or("-"));
        let _ = writeln!(o, "   Last transition = {}", i.last_transition);
        let _ = writeln!(o, "   Virtual IP = {}", i.vips.len());
        for v in &i.vips {
            let _ = writeln!(o, "     {v}");
        }
    }
    if !s.virtual_servers.is_empty() {
        let _ = writeln!(o, "------< LVS Topology >------");
        for v in &s.virtual_servers {
            let _ = writeln!(
                o,
                " Virtual server = {} ({} {}, {}, quorum {})",
                v.id,
                v.scheduler,
                v.method,
                v.backend,
                if v.quorum_up { "up" } else { "down" }
            );
            for r in &v.real_servers {
                let _ = writeln!(
                    o,
                    "   Real server = {} weight {}/{} {} {}",
                    r.id(),
                    r.weight,
                    r.configured_weight,
                    if r.healthy { "healthy" } else { "unhealthy" },
                    if r.maintenance { "drained" } else { "" }
                );
            }
        }
    }
    o
}

/// keepalived's `.stats` layout, for people.
pub fn stats_text(s: &Status, c: &Counters) -> String {
    let mut o = String::new();
    for i in &s.vrrp {
        let _ = writeln!(o, "VRRP Instance: {}", i.name);
        let _ = writeln!(o, "  State: {}", i.state);
        let _ = writeln!(o, "  Effective priority: {}", i.effective_priority);
    }
    let _ = writeln!(o, "All instances:");
    let _ = writeln!(o, "  Advertisements:");
    let _ = writeln!(o, "    Received: {}", c.adverts_rx);
    let _ = writeln!(o, "    Sent: {}", c.adverts_tx);
    let _ = writeln!(o, "  State transitions: {}", c.transitions);
    let _ = writeln!(o, "  Adverts dropped:");
    let mut dropped: Vec<_> = c.dropped.iter().collect();
    dropped.sort();
    for (k, v) in dropped {
        let _ = writeln!(o, "    {k}: {v}");
    }
    o
}

impl Dumps {
    /// (file, content) pairs for SIGUSR1 (`data`) or SIGUSR2 (stats).
    fn render(&self, data: bool, s: &Status, c: &Counters) -> Vec<(PathBuf, String)> {
        let pid = std::process::id();
        let path = |ext: &str| self.dir.join(format!("{}.{ext}", self.stem));
        if data {
            let json = Data {
                pid,
                config_file: &self.config_file,
                router_id: self.router_id.as_deref(),
                status: s,
            };
            vec![
                (path("data"), data_text(self, s)),
                (
                    path("data.json"),
                    serde_json::to_string_pretty(&json).unwrap_or_default(),
                ),
            ]
        } else {
            let json = Stats {
                pid,
                instances: s
                    .vrrp
                    .iter()
                    .map(|i| InstanceStats {
                        name: &i.name,
                        state: i.state,
                        effective_priority: i.effective_priority,
                    })
                    .collect(),
                adverts_received: c.adverts_rx,
                adverts_sent: c.adverts_tx,
                transitions: c.transitions,
                adverts_dropped: c.dropped.iter().map(|(k, v)| (*k, *v)).collect(),
            };
            vec![
                (path("stats"), stats_text(s, c)),
                (
                    path("stats.json"),
                    serde_json::to_string_pretty(&json).unwrap_or_default(),
                ),
            ]
        }
    }

    /// Writes the data (`data`) or stats files now.
    pub fn write(&self, data: bool, shared: &Shared) -> std::io::Result<Vec<PathBuf>> {
        let files = match shared.lock() {
            Ok(g) => self.render(data, &g.0, &g.1),
            Err(_) => return Err(std::io::Error::other("the state lock is poisoned")),
        };
        ensure_dir(&self.dir)?;
        let mut written = Vec::new();
        for (p, text) in files {
            write_private(&p, text.as_bytes())?;
            written.push(p);
        }
        Ok(written)
    }
}

/// `dir`, created 0755 if missing, made 0755 if it is more open.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let m = std::fs::symlink_metadata(dir)?;
    if m.permissions().mode() & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// O_NOFOLLOW | O_CREAT | O_TRUNC, mode 0640: a link planted at `p` is not followed.
fn write_private(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(named)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(named)?;
    f.write_all(data).map_err(named)
}

/// Installs the SIGUSR1 (data) and SIGUSR2 (stats) handlers now, and returns the task that
/// answers them for the life of the process (to be spawned).
pub fn on_signals(
    dumps: Dumps,
    shared: Shared,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    Ok(async move {
        loop {
            let data = tokio::select! {
                Some(()) = usr1.recv() => true,
                Some(()) = usr2.recv() => false,
                else => return,
            };
            let what = if data {
                "SIGUSR1: data"
            } else {
                "SIGUSR2: stats"
            };
            match dumps.write(data, &shared) {
                Ok(files) => info!(files = ?files, "{what} written"),
                Err(e) => warn!(error = %e, "{what}: cannot write"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn shared() -> Shared {
        let s: Status = serde_json::from_str(
            r#"{"vrrp":[{"name":"VI_dump","vrid":9,"interface":"eth0","state":"MASTER","priority":100,
            "effective_priority":100,"vips":["10.0.0.9/24"],"master_address":null,"last_transition":"t"}]}"#,
        )
        .unwrap();
        let c = Counters {
            adverts_tx: 7,
            ..Default::default()
        };
        Arc::new(Mutex::new((s, c)))
    }

    #[test]
    fn both_dumps_name_the_instance_and_refuse_links() {
        let dir = std::env::temp_dir().join(format!("ha-dump-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Dumps {
            dir: dir.join("run"),
            stem: "ha-x".into(),
            config_file: "/etc/k.conf".into(),
            router_id: Some("lb1".into()),
        };
        let sh = shared();
        let data = d.write(true, &sh).unwrap();
        let stats = d.write(false, &sh).unwrap();
        assert_eq!(data.len() + stats.len(), 4);
        for f in data.iter().chain(&stats) {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.contains("VI_dump"), "{}: {text}", f.display());
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{}", f.display());
        }
        assert!(std::fs::read_to_string(&stats[0])
            .unwrap()
            .contains("Sent: 7"));
        let mode = std::fs::metadata(&d.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        // a symlink planted where a dump goes is not followed
        let target = dir.join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(&data[0]).unwrap();
        std::os::unix::fs::symlink(&target, &data[0]).unwrap();
        assert!(d.write(true, &sh).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
