//! The virtual-server lab the LVS and gray tests share: real servers that answer their name
//! over HTTP, and a director running ha on the nftables backend.
#![allow(dead_code)] // each ha test file compiles this module; only the LVS and gray tests use it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opsflow_control::Status;
use opsflow_tests::{wait_until, Host, Lab, Proc};

/// A small HTTP/1.1 server (keep-alive) that answers its name: `/who`, `/health`, `/slow`
/// (after 3 s); `python3 rs.py NAME PORT BIND`, on IPv6 when BIND has a colon (`::`).
const RS_PY: &str = r#"
import http.server, socket, sys, time
name, port, bind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if ":" in bind:
    http.server.ThreadingHTTPServer.address_family = socket.AF_INET6
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3)
        b = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((bind, port), H).serve_forever()
"#;

/// The lab's real servers, each one host with a name server on port 80, started and
/// stopped by index.
pub struct RealServers {
    script: PathBuf,
    /// Where they listen: `0.0.0.0` or `::`.
    bind: &'static str,
    hosts: Vec<(Host, Option<Proc>)>,
    /// Their names, the answer to `/who`.
    pub names: Vec<String>,
}

impl RealServers {
    /// Starts a real server on each host (named as given, listening on `bind`) and waits
    /// until each listens.
    pub fn start(lab: &Lab, hosts: Vec<(Host, String)>, bind: &'static str) -> RealServers {
        let script = lab.path("rs.py");
        std::fs::write(&script, RS_PY).unwrap();
        let (hosts, names) = hosts.into_iter().map(|(h, n)| ((h, None), n)).unzip();
        let mut rs = RealServers {
            script,
            bind,
            hosts,
            names,
        };
        for i in 0..rs.hosts.len() {
            rs.up(i);
        }
        rs
    }

    /// Starts real server `i` and waits until it listens.
    pub fn up(&mut self, i: usize) {
        let (h, p) = &mut self.hosts[i];
        *p = Some(h.spawn(
            &self.names[i],
            "python3",
            &[
                self.script.to_str().unwrap(),
                &self.names[i],
                "80",
                self.bind,
            ],
        ));
        assert!(wait_until(Duration::from_secs(10), || h.tcp_listening(80)));
    }

    /// Kills real server `i`.
    pub fn down(&mut self, i: usize) {
        if let Some(mut p) = self.hosts[i].1.take() {
            p.kill();
        }
    }
}

/// ha on a director host with the nftables backend; its config, control socket and state
/// file are in the lab's directory.
pub struct Director {
    pub host: Host,
    pub ha: Option<Proc>,
    pub sock: PathBuf,
    pub conf: PathBuf,
    pub state: PathBuf,
    bin: &'static str,
}

impl Director {
    /// `bin` is the ha binary under test; the config is written to `conf` by the test.
    pub fn new(lab: &Lab, host: Host, bin: &'static str) -> Director {
        Director {
            host,
            ha: None,
            sock: lab.path("ha.sock"),
            conf: lab.path("ha.conf"),
            state: lab.path("state.json"),
            bin,
        }
    }

    /// Starts ha (`label` in the test's output) and waits until its control socket exists.
    pub fn spawn(&mut self, label: &str) {
        let p = self.host.spawn(
            label,
            self.bin,
            &[
                "--config",
                self.conf.to_str().unwrap(),
                "--control",
                self.sock.to_str().unwrap(),
                "--state-file",
                self.state.to_str().unwrap(),
                "--lvs-backend",
                "nftables",
            ],
        );
        self.ha = Some(p);
        assert!(wait_until(Duration::from_secs(10), || self.sock.exists()));
    }

    /// Starts ha and waits until it reports `healthy` real servers in service.
    pub fn start(&mut self, label: &str, healthy: usize) {
        self.spawn(label);
        assert!(
            wait_until(Duration::from_secs(15), || self.healthy() == healthy),
            "{healthy} healthy real servers not reported: {}\n{}",
            self.status_text(),
            self.ha.as_ref().unwrap().output()
        );
    }

    /// SIGTERM to ha; it must be gone within 15 s.
    pub fn stop(&mut self) {
        super::term(self.ha.take());
    }

    /// `ha ARGS --control SOCK`: whether it succeeded, and what it printed.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        opsflow_tests::outcome(
            std::process::Command::new(self.bin)
                .args(args)
                .args(["--control", self.sock.to_str().unwrap()]),
        )
    }

    /// `ha status --json`.
    pub fn status(&self) -> Status {
        super::status(self.bin, &self.sock)
    }

    /// `ha status` as an operator reads it.
    pub fn status_text(&self) -> String {
        self.cli(&["status"]).1
    }

    /// How many real servers are healthy with a weight above 0.
    pub fn healthy(&self) -> usize {
        super::serving(&self.status())
    }
}

/// Answers per real server over `n` new connections from `client` to `vs`; failures
/// counted under "fail".
pub fn spread(client: &Host, vs: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let who = super::who(client, vs);
        *m.entry(who.unwrap_or_else(|| "fail".into())).or_default() += 1;
    }
    m
}
