//! What several ha test files share: starting keepalived as the reference peer, and ha.

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

/// Starts `ha` (the binary under test, `bin`) on `host` with `conf` and its control socket at
/// `sock`, and waits until it says it is ready.
#[allow(dead_code)] // each test file compiles this module; ha/tests/vrrp.rs starts ha its own way
pub fn ha(host: &Host, label: &str, bin: &str, conf: &str, sock: &str) -> Proc {
    let mut p = host.spawn(label, bin, &["--config", conf, "--control", sock]);
    assert!(
        p.wait_for_output("ha ready", std::time::Duration::from_secs(10)),
        "{}",
        p.output()
    );
    p
}

/// SIGTERM to a daemon; it must exit within 15 s (a starved machine is slow, not wrong).
#[allow(dead_code)] // ha/tests/vrrp.rs measures its own SIGTERMs
pub fn term(p: Option<Proc>) {
    if let Some(mut p) = p {
        assert!(
            p.stop(std::time::Duration::from_secs(15)).is_some(),
            "{} did not stop on SIGTERM:\n{}",
            p.label(),
            p.output()
        );
    }
}
