//! ha as a service: the control socket's mode, the token file rules, one instance per pid
//! file, keepalived's signals, sd_notify, and a control API that stays usable while hundreds of
//! connections never finish their request.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use opsflow_control::client::Blocking;
use opsflow_control::{Client, Endpoint, VrrpState};
use opsflow_tests::{wait_until, Host, Lab};

const HA: &str = env!("CARGO_BIN_EXE_ha");

fn conf(inst: &str, vrid: u8, vip: &str) -> String {
    format!(
        "vrrp_instance {inst} {{\n  state MASTER\n  interface eth0\n  virtual_router_id {vrid}\n  \
         priority 150\n  advert_int 1\n  virtual_ipaddress {{\n    {vip}/24 dev eth0\n  }}\n}}\n"
    )
}

fn state(sock: &Path) -> Option<VrrpState> {
    let c = Client::new(Endpoint::parse(sock.to_str().unwrap(), None).unwrap())
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
    let s = Blocking::new(c).ok()?.status().ok()?;
    s.vrrp.first().map(|i| i.state)
}

/// One ha MASTER in a namespace of its own, started under umask 000, with sd_notify to a
/// datagram socket of the test.
struct One {
    lab: Lab,
    host: Host,
    inst: String,
}

fn one(tag: &str, vrid: u8, vip: &str) -> Option<One> {
    let lab = Lab::new(&["sh"])?;
    let host = lab.host(tag);
    let sw = lab.switch("lan");
    lab.attach(&host, &sw, "eth0", Some(&format!("10.{vrid}.0.1/24")));
    let inst = format!("VI_{tag}_{}", std::process::id());
    std::fs::write(lab.path("ha.conf"), conf(&inst, vrid, vip)).unwrap();
    Some(One { lab, host, inst })
}

impl One {
    /// ha with this lab's files, after `setup` (a shell line such as `umask 000`).
    fn command(&self, setup: &str) -> Command {
        let mut c = self.host.command("sh");
        c.args(["-c", &format!("{setup}; exec \"$0\" \"$@\""), HA])
            .arg("--config")
            .arg(self.lab.path("ha.conf"))
            .arg("--control")
            .arg(self.lab.path("ha.sock"))
            .arg("--state-file")
            .arg(self.lab.path("state.json"))
            .arg("--pid-file")
            .arg(self.lab.path("ha.pid"));
        c
    }
}

fn notes(sock: &UnixDatagram, until: &str, within: Duration) -> String {
    let mut all = String::new();
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !all.contains(until) {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('|');
        }
    }
    all
}

#[test]
fn a_running_ha_owns_its_pid_file_socket_mode_signals_and_notifications() {
    let Some(o) = one("svc", 71, "10.71.0.100") else {
        return;
    };
    let nsock_path = o.lab.path("notify.sock");
    let nsock = UnixDatagram::bind(&nsock_path).unwrap();
    let mut cmd = o.command("umask 000");
    cmd.env("NOTIFY_SOCKET", &nsock_path);
    let mut ha = o.host.spawn_command("ha", cmd);
    let sock = o.lab.path("ha.sock");
    let got = notes(&nsock, "READY=1", Duration::from_secs(10));
    assert!(got.contains("READY=1"), "{got}\n{}", ha.output());
    assert!(
        wait_until(Duration::from_secs(10), || state(&sock)
            == Some(VrrpState::Master)),
        "{}",
        ha.output()
    );

    // the socket: 0660 although ha runs under umask 000
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "control socket mode {mode:o}");

    // a second ha on the same pid file is refused, naming the first one's pid, before it
    // touches the first one's socket
    let pid = ha.pid().to_string();
    let out = o.command("umask 000").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.split(|c: char| !c.is_ascii_digit()).any(|w| w == pid),
        "{text}"
    );
    assert_eq!(state(&sock), Some(VrrpState::Master));
    let held = std::fs::read_to_string(o.lab.path("ha.pid")).unwrap();
    assert_eq!(held.trim(), pid);

    // SIGUSR2 then SIGUSR1: stats and data under /run/ha, naming the instance; ha lives on
    for (sig, ext) in [(libc::SIGUSR2, "stats"), (libc::SIGUSR1, "data")] {
        // the file names carry this run's socket path: nothing older matches
        ha.signal(sig);
        let fresh = || {
            std::fs::read_dir("/run/ha")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == ext)
                        && std::fs::read_to_string(p).is_ok_and(|t| t.contains(&o.inst))
                })
                .collect::<Vec<_>>()
        };
        assert!(
            wait_until(Duration::from_secs(3), || !fresh().is_empty()),
            "no .{ext} under /run/ha naming {}: {}",
            o.inst,
            ha.output()
        );
        for f in fresh() {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{}", f.display());
            let _ = std::fs::remove_file(&f);
            let _ = std::fs::remove_file(f.with_extension(format!("{ext}.json")));
        }
        assert!(ha.is_running(), "ha died of signal {sig}: {}", ha.output());
    }
    assert_eq!(state(&sock), Some(VrrpState::Master));

    // SIGHUP: RELOADING then READY; SIGTERM: STOPPING, and the pid file goes
    ha.signal(libc::SIGHUP);
    let got = notes(&nsock, "READY=1", Duration::from_secs(5));
    assert!(
        got.contains("RELOADING=1") && got.contains("READY=1"),
        "{got}"
    );
    assert!(got.find("RELOADING=1") < got.find("READY=1"), "{got}");
    ha.signal(libc::SIGTERM);
    let got = notes(&nsock, "STOPPING=1", Duration::from_secs(5));
    assert!(got.contains("STOPPING=1"), "{got}");
    assert!(ha
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert!(!o.lab.path("ha.pid").exists());
}

#[test]
fn idle_connections_do_not_starve_the_control_socket() {
    let Some(o) = one("idle", 72, "10.72.0.100") else {
        return;
    };
    // fewer descriptors than idle connections: a cap below the limit must hold
    let cmd = o.command("ulimit -n 128");
    let mut ha = o.host.spawn_command("ha", cmd);
    let sock = o.lab.path("ha.sock");
    assert!(
        wait_until(Duration::from_secs(10), || state(&sock)
            == Some(VrrpState::Master)),
        "{}",
        ha.output()
    );
    let mut idle = Vec::new();
    for i in 0..200 {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(mut s) => {
                use std::io::Write;
                if i % 2 == 1 {
                    let _ = s.write_all(b"GET /v1/sta");
                }
                idle.push(s);
            }
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 100, "only {} connections", idle.len());
    // a legitimate request is answered while they are held
    let t0 = Instant::now();
    assert_eq!(state(&sock), Some(VrrpState::Master), "{}", ha.output());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(o.host.has_addr("10.72.0.100"));
    assert!(ha.is_running());
    let lines = ha.output().lines().count();
    assert!(lines < 100, "{lines} log lines:\n{}", ha.output());
    drop(idle);
}

#[test]
fn a_token_file_that_is_no_secret_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("ha-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ha.conf");
    std::fs::write(&cfg, conf("VI_tok", 73, "10.73.0.100")).unwrap();
    let token = dir.join("token");
    let run = |mode: u32, content: &str| {
        std::fs::write(&token, content).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(HA)
            .arg("--config")
            .arg(&cfg)
            .args(["--control", "127.0.0.1:1"])
            .arg("--control-token-file")
            .arg(&token)
            .arg("--pid-file")
            .arg(dir.join("ha.pid"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(0o644, "secret\n");
    assert!(
        e.contains(token.to_str().unwrap()) && e.contains("chmod 600"),
        "{e}"
    );
    let e = run(0o600, "  \n");
    assert!(
        e.contains(token.to_str().unwrap()) && e.contains("empty"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ha_status_gives_up_on_a_stuck_daemon() {
    let dir = std::env::temp_dir().join(format!("ha-stuck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("ha.sock");
    let _ = std::fs::remove_file(&sock);
    // listens, never answers: connections sit in the backlog
    let _stuck = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let t0 = Instant::now();
    let out = Command::new(HA)
        .args(["status", "--timeout", "1", "--control"])
        .arg(&sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no complete answer within"), "{err}");
    // it returned: how fast is not the point, only that it did not wait forever
    assert!(t0.elapsed() < Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
}
