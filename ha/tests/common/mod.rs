//! What several ha test files share: starting keepalived as the reference peer.

use std::path::Path;

use opsflow_tests::{Host, Proc};

/// Starts keepalived's VRRP process in the foreground on `host` with `conf`, its pid files
/// beside `base` (`BASE.kp`, `.kr`, `.kc`). Stale pid files go first, as a service manager
/// gives a restarted unit a fresh runtime directory: after kill -9 keepalived's unreaped
/// VRRP child would make it refuse to start.
pub fn keepalived(host: &Host, label: &str, conf: &Path, base: &Path) -> Proc {
    let pid = |s: &str| format!("{}.{s}", base.display());
    for s in ["kp", "kr", "kc"] {
        let _ = std::fs::remove_file(pid(s));
    }
    let args = [
        "--vrrp",
        "-f",
        &conf.to_string_lossy(),
        "-p",
        &pid("kp"),
        "-r",
        &pid("kr"),
        "-c",
        &pid("kc"),
        "-l",
        "-D",
        "-n",
    ];
    host.spawn(label, "keepalived", &args)
}
