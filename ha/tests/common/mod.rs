//! What several ha test files share: starting keepalived as the reference peer and ha, and
//! asking a virtual server and ha's status (the LVS and gray tests, whose lab is in `lvs`).

pub mod lvs;

use std::path::Path;

use opsflow_tests::{Host, Proc};

/// Starts keepalived's VRRP process in the foreground on `host` with `conf`, its pid files
/// beside `base` (`BASE.kp`, `.kr`, `.kc`). Stale pid files go first, as a service manager
/// gives a restarted unit a fresh runtime directory: after kill -9 keepalived's unreaped
/// VRRP child would make it refuse to start.
#[allow(dead_code)] // the LVS tests use no keepalived
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

/// One `GET /who` on a new connection from `client` to `addr` (a virtual server): the body
/// the answering real server sent, trimmed (the lab's real servers answer their name).
#[allow(dead_code)] // only the LVS tests send traffic
pub fn who(client: &Host, addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    use std::time::Duration;
    client.enter(|| {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /who HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body.rsplit("\r\n\r\n").next()?.trim().to_string())
    })
}

/// `ha status --json` over the control socket `sock` (an empty status when it cannot be read).
#[allow(dead_code)] // only the LVS tests read the status document
pub fn status(bin: &str, sock: &Path) -> opsflow_control::Status {
    let out = std::process::Command::new(bin)
        .args(["status", "--json", "--control"])
        .arg(sock)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// How many real servers a status reports healthy and with a weight above 0.
#[allow(dead_code)] // only the LVS tests read the status document
pub fn serving(st: &opsflow_control::Status) -> usize {
    st.virtual_servers
        .iter()
        .flat_map(|v| &v.real_servers)
        .filter(|r| r.healthy && r.weight > 0)
        .count()
}
