//! Reaching hosts (OpenSSH with ControlMaster multiplexing and BatchMode, or this machine)
//! and directors (ha's control API), and the health gate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{shell_quote, Director};

/// How commands reach a host.
#[derive(Clone, Debug)]
pub enum Transport {
    Ssh {
        dest: String,
        /// ControlPath directory.
        sockets: PathBuf,
        /// Extra ssh arguments from the config.
        options: Vec<String>,
    },
    Local,
}

/// The output of a command that ran.
pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub out: String,
}

impl Transport {
    fn command(&self, script: &str) -> Command {
        match self {
            Transport::Local => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(script);
                c
            }
            Transport::Ssh {
                dest,
                sockets,
                options,
            } => {
                let mut c = Command::new("ssh");
                c.args(options);
                c.args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=10",
                    "-o",
                    "ServerAliveInterval=5",
                    "-o",
                    "ControlMaster=auto",
                    "-o",
                ])
                .arg(format!("ControlPath={}/ssh-%C", sockets.display()))
                .args(["-o", "ControlPersist=30", dest.as_str(), "--"])
                .arg(format!("sh -c {}", shell_quote(script)));
                c
            }
        }
    }

    /// Runs `script` with `sh -c` on the host.
    pub fn run(&self, script: &str) -> anyhow::Result<Ran> {
        self.run_with(script, Stdio::null())
    }

    fn run_with(&self, script: &str, stdin: Stdio) -> anyhow::Result<Ran> {
        let out =
            self.command(script).stdin(stdin).output().map_err(|e| {
                anyhow::anyhow!("cannot run ssh: {e} (apt-get install openssh-client)")
            })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Ran {
            ok: out.status.success(),
            code: out.status.code(),
            out: text.trim().to_string(),
        })
    }

    /// Runs `script` and fails with its output unless it succeeds.
    pub fn check(&self, script: &str, what: &str) -> anyhow::Result<String> {
        let r = self.run(script)?;
        if !r.ok {
            if matches!(self, Transport::Ssh { .. }) && r.code == Some(255) {
                anyhow::bail!("{what}: ssh failed: {}", r.out);
            }
            anyhow::bail!(
                "{what}: exit {}{}",
                r.code.map_or("by signal".to_string(), |c| c.to_string()),
                if r.out.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.out)
                }
            );
        }
        Ok(r.out)
    }

    /// Runs `script` with `file` on its standard input.
    pub fn pipe(&self, script: &str, file: &Path) -> anyhow::Result<Ran> {
        let f = std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
        self.run_with(script, Stdio::from(f))
    }
}

/// A plain HTTP/1.0 exchange with a deadline: (status, body).
fn http(
    target: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req =
        format!("{method} {path} HTTP/1.0\r\nHost: release\r\nContent-Length: 0\r\n{auth}\r\n");
    let mut raw = Vec::new();
    if target.starts_with('/') {
        let mut s = std::os::unix::net::UnixStream::connect(target)
            .map_err(|e| anyhow::anyhow!("cannot connect to {target}: {e}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(req.as_bytes())?;
        s.read_to_end(&mut raw)?;
    } else {
        use std::net::ToSocketAddrs;
        let addr = target
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("{target}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{target}: no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| anyhow::anyhow!("cannot connect to {target}: {e}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(req.as_bytes())?;
        s.read_to_end(&mut raw)
            .map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{target}: not an HTTP answer"))?;
    Ok((code, body.to_string()))
}

/// `http://HOST:PORT/...` → (`HOST:PORT`, `/...`).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        anyhow::anyhow!("{url}: only http:// URLs (or unix socket paths) are supported")
    })?;
    Ok(match rest.split_once('/') {
        Some((h, p)) => (h.to_string(), format!("/{p}")),
        None => (rest.to_string(), "/".to_string()),
    })
}

/// One real server as a director reports it.
#[derive(Debug, Clone, Default)]
pub struct RsState {
    pub weight: u64,
    pub configured_weight: u64,
    pub healthy: bool,
    pub maintenance: bool,
    pub active: u64,
}

impl Director {
    fn target(&self) -> anyhow::Result<String> {
        if self.control.starts_with('/') {
            Ok(self.control.clone())
        } else {
            Ok(split_url(&self.control)?.0)
        }
    }

    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let (code, body) = http(
            &self.target()?,
            "GET",
            "/v1/status",
            self.token.as_deref(),
            Duration::from_secs(5),
        )?;
        if code != 200 {
            anyhow::bail!(
                "director {}: status answered {code}: {}",
                self.control,
                body.trim()
            );
        }
        serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("director {}: status is not JSON: {e}", self.control))
    }

    /// Every real server of `vs`: (`RIP:PORT`, state).
    pub fn real_servers(&self, vs: &str) -> anyhow::Result<Vec<(String, RsState)>> {
        let s = self.status()?;
        let v = s["virtual_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["id"] == vs)
            .ok_or_else(|| {
                anyhow::anyhow!("director {} has no virtual server {vs}", self.control)
            })?;
        Ok(v["real_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    format!("{}:{}", r["address"].as_str().unwrap_or(""), r["port"]),
                    RsState {
                        weight: r["weight"].as_u64().unwrap_or(0),
                        configured_weight: r["configured_weight"].as_u64().unwrap_or(0),
                        healthy: r["healthy"].as_bool().unwrap_or(false),
                        maintenance: r["maintenance"].as_bool().unwrap_or(false),
                        active: r["active_connections"].as_u64().unwrap_or(0),
                    },
                )
            })
            .collect())
    }

    pub fn real_server(&self, vs: &str, rs: &str) -> anyhow::Result<RsState> {
        self.real_servers(vs)?
            .into_iter()
            .find(|(k, _)| k == rs)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "director {}: virtual server {vs} has no real server {rs}",
                    self.control
                )
            })
    }

    /// POST drain or enable.
    pub fn set(&self, vs: &str, rs: &str, drain: bool) -> anyhow::Result<()> {
        let verb = if drain { "drain" } else { "enable" };
        let (code, body) = http(
            &self.target()?,
            "POST",
            &format!("/v1/virtual-servers/{vs}/real-servers/{rs}/{verb}"),
            self.token.as_deref(),
            Duration::from_secs(5),
        )?;
        if code != 200 {
            anyhow::bail!(
                "director {}: {verb} {rs} answered {code}: {}",
                self.control,
                body.trim()
            );
        }
        Ok(())
    }
}

/// Polls `cond` every 200 ms until it holds or `timeout` passes; the last error or "timed
/// out" otherwise.
pub fn wait(
    timeout: Duration,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let last = cond();
        if let Ok(true) = last {
            return Ok(());
        }
        if Instant::now() >= end {
            return match last {
                Err(e) => Err(e),
                _ => Err(anyhow::anyhow!("not within {}s", timeout.as_secs())),
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The health gate: `successes` consecutive 2xx answers from `url` within `timeout`.
pub fn health_gate(url: &str, successes: u32, timeout: Duration) -> anyhow::Result<()> {
    let (target, path) = split_url(url)?;
    let end = Instant::now() + timeout;
    let mut streak = 0;
    let mut last = String::from("no answer yet");
    while Instant::now() < end {
        match http(&target, "GET", &path, None, Duration::from_secs(2)) {
            Ok((code, _)) if (200..300).contains(&code) => {
                streak += 1;
                if streak >= successes {
                    return Ok(());
                }
            }
            Ok((code, body)) => {
                streak = 0;
                last = format!(
                    "status {code} {}",
                    body.trim().chars().take(80).collect::<String>()
                );
            }
            Err(e) => {
                streak = 0;
                last = e.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    anyhow::bail!(
        "{url}: not {successes} healthy answers in a row within {}s (last: {last})",
        timeout.as_secs()
    )
}
