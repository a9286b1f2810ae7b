//! Releases end to end in lab namespaces: an ha director (nftables backend, TCP control API
//! with a token) in front of three real-server hosts, each with its own sshd and the app
//! running from BASE/waimai; a client sends requests to the VIP all along.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opsflow_tests::{wait_until, workspace_bin, Host, Lab, Proc};

const REL: &str = env!("CARGO_BIN_EXE_release");
const VIP: &str = "10.92.1.100";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// The app: /who answers "waimai-X.Y NAME"; /health is 500 when the release has a BROKEN file.
const APP: &str = r#"
import http.server, os, socketserver, sys
HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
BROKEN = os.path.exists(os.path.join(HERE, "BROKEN"))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if (self.path == "/health" and BROKEN) else 200
        b = f"{VERSION} {sys.argv[1]}\n".encode()
        self.send_response(code); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", 80), H).serve_forever()
"#;

struct Env {
    lab: Lab,
    client: Host,
    /// A second client, on its own network (10.92.3.0/24), for gray releases by user.
    client_b: Host,
    ctl: Host,
    _ha: Proc,
    conf: PathBuf,
    token: String,
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
}

/// The client key for every host of the lab: `DIR/id`, authorized in `DIR/authorized_keys`.
fn client_key(dir: &Path) -> PathBuf {
    let key = dir.join("id");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        key.display()
    ));
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    key
}

fn setup() -> Option<Env> {
    let lab = Lab::new(&["python3", "nft", "sshd", "ssh", "ssh-keygen", "tar"])?;
    let front = lab.switch("front");
    let back = lab.switch("back");
    let client = lab.host("cl");
    lab.attach(&client, &front, "eth0", Some("10.92.1.10/24"));
    let d1 = lab.host("d1");
    lab.attach(&d1, &front, "eth0", Some("10.92.1.2/24"));
    lab.attach(&d1, &back, "eth1", Some("10.92.2.1/24"));
    d1.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    let side = lab.switch("side");
    let client_b = lab.host("cb");
    lab.attach(&client_b, &side, "eth0", Some("10.92.3.10/24"));
    lab.attach(&d1, &side, "eth2", Some("10.92.3.1/24"));
    client_b.run("ip", &["route", "add", "default", "via", "10.92.3.1"]);
    let ctl = lab.host("ctl");
    lab.attach(&ctl, &back, "eth0", Some("10.92.2.5/24"));
    let dir = lab.dir().to_path_buf();
    let key = client_key(&dir);
    // artifacts 1.3 .. 1.6; 1.5 is broken
    for v in ["1.3", "1.4", "1.5", "1.6"] {
        let b = dir.join(format!("build/waimai-{v}"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("app.py"), APP).unwrap();
        std::fs::write(b.join("VERSION"), format!("waimai-{v}\n")).unwrap();
        if v == "1.5" {
            std::fs::write(b.join("BROKEN"), "").unwrap();
        }
        sh(&format!(
            "tar -C {} -czf {}/waimai-{v}.tar.gz .",
            b.display(),
            dir.display()
        ));
    }
    let mut hosts_toml = String::new();
    for (i, name) in HOSTS.iter().enumerate() {
        let ip = format!("10.92.2.{}", 11 + i);
        let h = lab.host(name);
        lab.attach(&h, &back, "eth0", Some(&format!("{ip}/24")));
        h.run("ip", &["route", "add", "default", "via", "10.92.2.1"]);
        let base = dir.join(format!("{name}/webapps/data"));
        std::fs::create_dir_all(base.join("waimai-1.3")).unwrap();
        sh(&format!(
            "tar -C {}/waimai-1.3 -xzf {}/waimai-1.3.tar.gz && ln -s waimai-1.3 {}/waimai",
            base.display(),
            dir.display(),
            base.display()
        ));
        let p = h.sshd(&dir, &ip, &dir.join("authorized_keys"));
        std::mem::forget(p); // killed with the namespace
        let (st, out) = h.sh(&format!(
            "cd {b}/waimai && (setsid python3 app.py {name} >/dev/null 2>&1 </dev/null & echo $! > {b}/waimai.pid)",
            b = base.display()
        ));
        assert!(st.success(), "{out}");
        assert!(wait_until(Duration::from_secs(10), || h.tcp_listening(80)
            && h.tcp_listening(22)));
        hosts_toml.push_str(&format!(
            "[[host]]\nname = \"{name}\"\nssh = \"root@{ip}\"\nrs = \"{ip}:80\"\nvirtual_server = \"{VIP}:80\"\nbase = \"{}\"\n\n",
            base.display()
        ));
    }
    let token = "t0k3n-for-the-test".to_string();
    std::fs::write(dir.join("token"), &token).unwrap();
    // ha refuses a token file others can read
    std::fs::set_permissions(
        dir.join("token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut rs = String::new();
    for i in 0..HOSTS.len() {
        rs.push_str(&format!("  real_server 10.92.2.{} 80 {{\n    weight 1\n    HTTP_GET {{\n      url {{\n        path /health\n        status_code 200\n      }}\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n", 11 + i));
    }
    let ha_conf = dir.join("d1.conf");
    std::fs::write(
        &ha_conf,
        format!("vrrp_instance VI_1 {{\n  state MASTER\n  interface eth0\n  virtual_router_id 72\n  priority 150\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\nvirtual_server {VIP} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{rs}}}\n"),
    )
    .unwrap();
    let ha = d1.spawn(
        "ha",
        workspace_bin("ha"),
        &[
            "--config",
            ha_conf.to_str().unwrap(),
            "--control",
            "10.92.2.1:9100",
            "--control-token-file",
            dir.join("token").to_str().unwrap(),
            "--state-file",
            dir.join("ha-state.json").to_str().unwrap(),
            "--lvs-backend",
            "nftables",
        ],
    );
    let conf = dir.join("release.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[app]
name = "waimai"
base = "/webapps/data"
artifact = "{dir}/{{app}}-{{version}}.tar.gz"
stop = "kill $(cat {{base}}/{{app}}.pid) 2>/dev/null; true"
start = "cd {{base}}/{{app}} && (setsid python3 app.py {{host}} >/dev/null 2>&1 </dev/null & echo $! >{{base}}/{{app}}.pid)"
health = "http://{{rs}}/health"
health_successes = 3
health_timeout = 8
keep = 2
min_healthy = 1
drain_timeout = 5
ssh_options = ["-i", "{key}", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

[[director]]
control = "http://10.92.2.1:9100"
token_file = "{dir}/token"

{hosts_toml}"#,
            dir = dir.display(),
            key = key.display()
        ),
    )
    .unwrap();
    let env = Env {
        lab,
        client,
        client_b,
        ctl,
        _ha: ha,
        conf,
        token,
    };
    assert!(
        wait_until(Duration::from_secs(15), || env
            .who()
            .is_some_and(|w| w.starts_with("waimai-1.3"))),
        "the VIP does not serve 1.3"
    );
    Some(env)
}

fn who(client: &Host) -> Option<String> {
    client.enter(|| {
        let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(b"GET /who HTTP/1.0\r\n\r\n").ok()?;
        let mut b = String::new();
        s.read_to_string(&mut b).ok()?;
        let body = b.split_once("\r\n\r\n")?.1.trim().to_string();
        body.starts_with("waimai-").then_some(body)
    })
}

/// Real servers out of rotation now, as the director reports them.
fn out_of_rotation(ctl: &Host, token: &str) -> Option<usize> {
    let mut c = ctl.command(workspace_bin("ha"));
    c.args([
        "status",
        "--json",
        "--control",
        "10.92.2.1:9100",
        "--token",
        token,
    ]);
    let o = c.output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some(
        v["virtual_servers"][0]["real_servers"]
            .as_array()?
            .iter()
            .filter(|r| r["healthy"] != true || r["weight"].as_u64() == Some(0))
            .count(),
    )
}

impl Env {
    fn who(&self) -> Option<String> {
        who(&self.client)
    }

    fn release(&self, args: &[&str]) -> Output {
        let mut c = self.ctl.command(REL);
        c.arg("--config").arg(&self.conf).args(args);
        c.output().unwrap()
    }

    fn version_of(&self, h: &str) -> String {
        let link = self.lab.dir().join(format!("{h}/webapps/data/waimai"));
        std::fs::read_link(link).unwrap().display().to_string()
    }
}

/// Client requests and out-of-rotation samples while `f` runs: (ok, failed, max out).
fn under_load(env: &Env, f: impl FnOnce()) -> (usize, usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad, max_out) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let (client, ctl, token) = (&env.client, &env.ctl, env.token.as_str());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match who(client) {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    None => bad.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(n) = out_of_rotation(ctl, token) {
                    max_out.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        f();
        stop.store(true, Ordering::Relaxed);
    });
    (ok.into_inner(), bad.into_inner(), max_out.into_inner())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn journal(env: &Env) -> PathBuf {
    env.conf
        .parent()
        .unwrap_or(Path::new("."))
        .join(".release/journal.jsonl")
}

#[test]
fn gray_release_rollback_resume_and_lock() {
    let Some(env) = setup() else { return };

    // --plan prints the batches and touches nothing
    let o = env.release(&["--batch", "50%", "waimai-1.4", "--plan"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("batch 1: h1 h2") && text(&o).contains("(2/3 hosts, 66.7%)"),
        "{}",
        text(&o)
    );
    assert_eq!(env.version_of("h1"), "waimai-1.3");

    // 1.3 -> 1.4 in batches of 2: no failed request, at most 2 out at once
    let mut out = None;
    let (ok, bad, max) = under_load(&env, || {
        out = Some(env.release(&["--batch", "2", "waimai-1.4", "--yes"]))
    });
    let o = out.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        bad,
        0,
        "{bad} of {} requests failed during the release",
        ok + bad
    );
    assert!(max <= 2, "{max} hosts were out of rotation at once");
    for h in HOSTS {
        assert_eq!(env.version_of(h), "waimai-1.4");
    }
    assert!(wait_until(Duration::from_secs(5), || env
        .who()
        .is_some_and(|w| w.starts_with("waimai-1.4"))));

    // a broken version: the first batch goes back to 1.4, later hosts are untouched
    let mut out = None;
    let (ok, bad, _) = under_load(&env, || {
        out = Some(env.release(&["--batch", "1", "waimai-1.5", "--yes"]))
    });
    let o = out.unwrap();
    assert_eq!(o.status.code(), Some(5), "rolled back: {}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("h1 failed at health") && msg.contains("rolled back (h1→1.4)"),
        "{msg}"
    );
    assert!(
        msg.contains("later batches untouched (h2 h3)") && msg.contains("marked bad"),
        "{msg}"
    );
    assert_eq!(
        bad,
        0,
        "{bad} of {} requests failed during the broken release",
        ok + bad
    );
    for h in HOSTS {
        assert_eq!(env.version_of(h), "waimai-1.4");
    }
    let o = env.release(&["rollback", "1.5", "--yes"]);
    assert!(
        o.status.code() == Some(2) && text(&o).contains("marked bad"),
        "{}",
        text(&o)
    );

    // killed mid-way: status says what happened, resume finishes
    let mut child = env.ctl.command(REL);
    child
        .arg("--config")
        .arg(&env.conf)
        .args(["--batch", "1", "waimai-1.6", "--yes"]);
    child
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = child.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(60), || HOSTS
        .iter()
        .any(|h| env.version_of(h) == "waimai-1.6")));
    // `ip netns exec` execs release: this is its pid
    let _ = child.kill();
    let _ = child.wait();
    let o = env.release(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("DID NOT FINISH") && text(&o).contains("STALE"),
        "{}",
        text(&o)
    );
    let o = env.release(&["--batch", "1", "waimai-1.6", "--yes"]);
    assert!(
        o.status.code() == Some(4) && text(&o).contains("release resume"),
        "{}",
        text(&o)
    );
    let mut out = None;
    let (ok, bad, _) = under_load(&env, || out = Some(env.release(&["resume", "--yes"])));
    let o = out.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        bad,
        0,
        "{bad} of {} requests failed around the crash and resume",
        ok + bad
    );
    for h in HOSTS {
        assert_eq!(env.version_of(h), "waimai-1.6");
    }

    // one release at a time: the second is refused, naming the holder
    let mut first = env.ctl.command(REL);
    first
        .arg("--config")
        .arg(&env.conf)
        .args(["--batch", "1", "waimai-1.4", "--yes"]);
    first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = first.spawn().unwrap();
    let lock = env.conf.parent().unwrap().join(".release/lock");
    assert!(wait_until(Duration::from_secs(10), || lock.exists()));
    let o = env.release(&["--batch", "1", "waimai-1.4", "--yes"]);
    assert_eq!(o.status.code(), Some(4), "lock busy: {}", text(&o));
    assert!(
        text(&o).contains("holds the lock") && text(&o).contains(&format!("pid {}", first.id())),
        "{}",
        text(&o)
    );
    // the refused run left the holder's lock in place
    let holder = std::fs::read_to_string(&lock).unwrap_or_default();
    assert!(
        first.try_wait().unwrap().is_some() || holder.contains(&format!("\"pid\":{}", first.id())),
        "{holder}"
    );
    assert!(first.wait().unwrap().success());
    assert!(!lock.exists(), "the lock outlived its release");
    let h = env.release(&["history"]);
    let hist = text(&h);
    assert_eq!(hist.lines().count(), 4, "{hist}");
    assert!(
        std::fs::read_to_string(journal(&env))
            .unwrap()
            .lines()
            .count()
            > 20
    );
    // keep = 2: old releases are gone, the current and previous stay
    let base = env.lab.dir().join("h1/webapps/data");
    assert!(base.join("waimai-1.4").is_dir() && base.join("waimai-1.6").is_dir());
    assert!(!base.join("waimai-1.3").exists());
}

/// A host reached over real ssh whose base directory holds a quote, a space, `$(...)` and a
/// backquote: every value reaches the host's shell as one word through both levels of
/// quoting (ssh's remote command line, then `sh -c`); a hostile version is refused before
/// anything runs; a hostile version read back from the host's symlink is refused too.
#[test]
fn hostile_versions_and_paths_do_not_run_through_ssh() {
    let Some(lab) = Lab::new(&["python3", "sshd", "ssh", "ssh-keygen", "tar"]) else {
        return;
    };
    let sw = lab.switch("q");
    let ctl = lab.host("qc");
    lab.attach(&ctl, &sw, "eth0", Some("10.93.7.5/24"));
    let h = lab.host("q1");
    lab.attach(&h, &sw, "eth0", Some("10.93.7.11/24"));
    let dir = lab.dir().to_path_buf();
    let key = client_key(&dir);
    let _sshd = h.sshd(&dir, "10.93.7.11", &dir.join("authorized_keys"));
    assert!(wait_until(Duration::from_secs(10), || h.tcp_listening(22)));
    // the app: a static server whose /health is a file of the release
    for v in ["1.3", "1.4"] {
        let b = dir.join(format!("build/waimai-{v}"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("health"), format!("waimai-{v}\n")).unwrap();
        sh(&format!(
            "tar -C {} -czf {}/waimai-{v}.tar.gz .",
            b.display(),
            dir.display()
        ));
    }
    let base = dir.join("q1/we'b $(touch PWNED) `touch PWNED` apps");
    std::fs::create_dir_all(base.join("waimai-1.3")).unwrap();
    std::os::unix::fs::symlink("waimai-1.3", base.join("waimai")).unwrap();
    let base_toml = base.display().to_string().replace('\\', "\\\\");
    let conf = dir.join("release.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[app]
name = "waimai"
base = "/unused"
artifact = "{dir}/{{app}}-{{version}}.tar.gz"
stop = "kill $(cat {{base}}/{{app}}.pid 2>/dev/null) 2>/dev/null; true"
start = "printf '%s|' {{version}} {{host}} {{base}} >{{base}}/started; cd {{base}}/{{app}} && (setsid python3 -m http.server --bind 10.93.7.11 80 >/dev/null 2>&1 </dev/null & echo $! >{{base}}/{{app}}.pid)"
health = "http://{{rs}}/health"
health_successes = 2
health_timeout = 10
ssh_options = ["-i", "{key}", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

[[host]]
name = "q1"
ssh = "root@10.93.7.11"
rs = "10.93.7.11:80"
virtual_server = "10.93.7.100:80"
base = "{base_toml}"
"#,
            dir = dir.display(),
            key = key.display()
        ),
    )
    .unwrap();
    let release = |args: &[&str]| {
        let mut c = ctl.command(REL);
        c.current_dir(&dir).arg("--config").arg(&conf).args(args);
        c.output().unwrap()
    };
    let pwned = || {
        let o = std::process::Command::new("find")
            .arg(&dir)
            .args(["-name", "PWNED"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };

    // before any release: status reaches the host over ssh (the state directory, home of
    // the control sockets, is created on the way) and says so in text and in JSON
    assert!(!dir.join(".release").exists());
    let o = release(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("waimai-1.3"),
        "{}",
        text(&o)
    );
    let o = release(&["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hosts"][0]["version"], "1.3", "{v}");
    assert_eq!(v["lock"]["state"], "free", "{v}");
    let o = release(&["history", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["releases"].as_array().map(Vec::len), Some(0), "{v}");

    let o = release(&["-y", "waimai-1.4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_link(base.join("waimai")).unwrap(),
        Path::new("waimai-1.4")
    );
    // the values arrived whole, each one word, through ssh and sh -c
    assert_eq!(
        std::fs::read_to_string(base.join("started")).unwrap(),
        format!("1.4|q1|{}|", base.display())
    );
    assert_eq!(pwned(), "", "a placeholder ran a command");

    // a hostile version is refused before anything runs
    let o = release(&["-y", "waimai-1.4;touch PWNED;echo"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a valid version"), "{}", text(&o));
    let o = release(&["rollback", "-y", "1.3;touch PWNED"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(pwned(), "", "the version ran a command");

    // a hostile version read back from the host is refused, not used
    std::fs::create_dir_all(base.join("waimai-1;touch PWNED")).unwrap();
    std::fs::remove_file(base.join("waimai")).unwrap();
    std::os::unix::fs::symlink("waimai-1;touch PWNED", base.join("waimai")).unwrap();
    let o = release(&["-y", "waimai-1.3"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("not a valid version") && text(&o).contains("q1"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_link(base.join("waimai")).unwrap(),
        Path::new("waimai-1;touch PWNED"),
        "the release went ahead"
    );
    assert_eq!(pwned(), "", "a version read back ran a command");

    // a host that does not answer: status still reports (exit 0), a release exits 6
    let gone = dir.join("gone.toml");
    let cfg = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("root@10.93.7.11", "root@10.93.7.99")
        .replace(
            "\"LogLevel=ERROR\"]",
            "\"LogLevel=ERROR\", \"-o\", \"ConnectTimeout=2\"]",
        );
    std::fs::write(&gone, cfg).unwrap();
    let gone_release = |args: &[&str]| {
        let mut c = ctl.command(REL);
        c.current_dir(&dir).arg("--config").arg(&gone).args(args);
        c.output().unwrap()
    };
    let o = gone_release(&["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["hosts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ssh")),
        "{v}"
    );
    let o = gone_release(&["-y", "waimai-1.3"]);
    assert_eq!(o.status.code(), Some(6), "unreachable: {}", text(&o));
}

/// Answers (time, body or None) of one request loop per client while `f` runs.
type Answers = Vec<(std::time::Instant, Option<String>)>;

/// How many requests each loop of [`loops`] has made so far.
type Counts = [std::sync::atomic::AtomicUsize; 2];

/// Returns once each request loop has made `n` more requests (at most 30 s).
fn more_requests(counts: &Counts, n: usize) {
    let from = counts.each_ref().map(|c| c.load(Ordering::Relaxed));
    assert!(
        wait_until(Duration::from_secs(30), || {
            (0..2).all(|i| counts[i].load(Ordering::Relaxed) >= from[i] + n)
        }),
        "the request loops made fewer than {n} requests in 30 s"
    );
}

fn loops(clients: [&Host; 2], f: impl FnOnce(&Counts)) -> [Answers; 2] {
    let stop = AtomicBool::new(false);
    let counts: Counts = Default::default();
    let run = |i: usize| {
        let mut v = Answers::new();
        while !stop.load(Ordering::Relaxed) {
            v.push((std::time::Instant::now(), who(clients[i])));
            counts[i].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(40));
        }
        v
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| run(0));
        let b = s.spawn(|| run(1));
        f(&counts);
        stop.store(true, Ordering::Relaxed);
        [a.join().unwrap(), b.join().unwrap()]
    })
}

/// The answers between two instants, and how many failed.
fn between(v: &Answers, from: std::time::Instant, to: std::time::Instant) -> (Vec<&str>, usize) {
    let w: Vec<&Option<String>> = v
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, a)| a)
        .collect();
    (
        w.iter().filter_map(|a| a.as_deref()).collect(),
        w.iter().filter(|a| a.is_none()).count(),
    )
}

#[test]
fn gray_by_user_then_promote_and_then_abort() {
    let Some(env) = setup() else { return };
    let users = "10.92.1.0/24"; // client A; client_b (10.92.3.10) is everyone else
    let o = env.release(&["--users", users, "waimai-1.4", "--plan"]);
    assert!(
        o.status.success() && text(&o).contains("batch 1: h1") && text(&o).contains("state gray"),
        "{}",
        text(&o)
    );

    // --users: the canary (h1) gets 1.4, A is routed to it; promote: the rest, route gone
    let t = std::sync::Mutex::new(Vec::new());
    let mark = || t.lock().unwrap().push(std::time::Instant::now());
    let mut outs = Vec::new();
    let [a, b] = loops([&env.client, &env.client_b], |counts| {
        mark();
        outs.push(env.release(&["--users", users, "waimai-1.4", "--yes"]));
        mark();
        outs.push(env.release(&["status"]));
        // the gray phase lasts until each client has made 5 more requests
        more_requests(counts, 5);
        mark();
        outs.push(env.release(&["promote", "--yes"]));
        mark();
    });
    let t = t.into_inner().unwrap();
    assert!(outs[0].status.success(), "{}", text(&outs[0]));
    assert!(text(&outs[1]).contains("GRAY"), "{}", text(&outs[1]));
    assert!(outs[2].status.success(), "{}", text(&outs[2]));
    for h in HOSTS {
        assert_eq!(env.version_of(h), "waimai-1.4");
    }
    let (all_a, fail_a) = between(&a, t[0], t[3]);
    let (all_b, fail_b) = between(&b, t[0], t[3]);
    assert_eq!(
        (fail_a, fail_b),
        (0, 0),
        "failed requests: A {fail_a}, B {fail_b}"
    );
    let (gray_a, _) = between(&a, t[1], t[3]);
    assert!(
        gray_a.len() >= 5 && gray_a.iter().all(|w| w.starts_with("waimai-1.4 ")),
        "A from the route to the end of promote: {gray_a:?}"
    );
    // until promote starts, A reaches the canary only
    let (wait_a, _) = between(&a, t[1], t[2]);
    assert!(
        wait_a.iter().all(|w| *w == "waimai-1.4 h1"),
        "A in the gray phase: {wait_a:?}"
    );
    // B never sees the canary's version before promote (the route comes before the canary
    // is back in rotation)
    let (gray_b, _) = between(&b, t[0], t[2]);
    assert!(
        gray_b.len() >= 5 && gray_b.iter().all(|w| w.starts_with("waimai-1.3 ")),
        "B in the gray phase: {gray_b:?}"
    );
    assert!(all_a.len() + all_b.len() > 20);
    let o = env.release(&["status"]);
    assert!(!text(&o).contains("GRAY"), "{}", text(&o));
    assert!(wait_until(Duration::from_secs(5), || {
        let seen: std::collections::BTreeSet<String> =
            (0..6).filter_map(|_| who(&env.client)).collect();
        seen.len() >= 2 && seen.iter().all(|w| w.starts_with("waimai-1.4"))
    }));

    // a second gray run, aborted: the canary is back on 1.4, the route gone, nothing failed
    let mut outs = Vec::new();
    let [a, b] = loops([&env.client, &env.client_b], |_| {
        outs.push(env.release(&["--users", users, "waimai-1.6", "--yes"]));
        outs.push(env.release(&["--batch", "2", "waimai-1.6", "--yes"]));
        outs.push(env.release(&["abort", "--yes"]));
    });
    assert!(outs[0].status.success(), "{}", text(&outs[0]));
    assert_eq!(
        outs[1].status.code(),
        Some(4),
        "a release while gray waits: {}",
        text(&outs[1])
    );
    assert!(text(&outs[1]).contains("promote"), "{}", text(&outs[1]));
    assert!(outs[2].status.success(), "{}", text(&outs[2]));
    assert!(
        a.iter().any(|(_, w)| w.as_deref() == Some("waimai-1.6 h1")),
        "A never saw the canary"
    );
    assert!(!b
        .iter()
        .any(|(_, w)| w.as_deref().is_some_and(|w| w.starts_with("waimai-1.6"))));
    let failed = a.iter().chain(&b).filter(|(_, w)| w.is_none()).count();
    assert_eq!(failed, 0, "failed requests during the gray run and abort");
    for h in HOSTS {
        assert_eq!(env.version_of(h), "waimai-1.4");
    }
    let o = env.release(&["abort", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = env.release(&["history"]);
    assert!(text(&o).contains("aborted"), "{}", text(&o));
}
