//! `release.toml`: the app, its directors and its hosts.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    /// Where releases live on the hosts: `BASE/APP-VERSION`, `BASE/APP` the current one.
    pub base: String,
    /// The artifact of a version: a local `.tar.gz` path with placeholders.
    pub artifact: String,
    pub stop: String,
    pub start: String,
    /// Health URL (placeholders), checked from this machine.
    pub health: String,
    #[serde(default = "three")]
    pub health_successes: u32,
    /// Seconds for the health gate.
    #[serde(default = "thirty")]
    pub health_timeout: u64,
    /// Releases kept per host after a success (the current and previous are always kept).
    #[serde(default = "five")]
    pub keep: usize,
    /// Real servers that must stay in service while a batch is out.
    #[serde(default = "one")]
    pub min_healthy: usize,
    /// `ssh` (default) or `local` (one host: this machine).
    #[serde(default = "ssh")]
    pub transport: String,
    /// Seconds to wait for a drained server's connections to finish.
    #[serde(default = "thirty")]
    pub drain_timeout: u64,
    /// Journal, lock and ssh sockets; default: `.release` next to the config file.
    pub state_dir: Option<PathBuf>,
    /// Extra ssh arguments (`["-i", "/root/.ssh/deploy", "-p", "2222"]`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

fn three() -> u32 {
    3
}
fn thirty() -> u64 {
    30
}
fn five() -> usize {
    5
}
fn one() -> usize {
    1
}
fn ssh() -> String {
    "ssh".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Director {
    /// `http://HOST:PORT` (TCP, bearer token) or a unix socket path.
    pub control: String,
    pub token_file: Option<PathBuf>,
    #[serde(skip)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// SSH destination (`root@10.0.0.11`); unused with `transport = "local"`.
    #[serde(default)]
    pub ssh: String,
    /// The real server: `RIP:PORT`.
    pub rs: String,
    /// The virtual server: `VIP:PORT` or `fwmark-N`.
    pub virtual_server: String,
    /// Overrides app.base for this host.
    pub base: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub app: App,
    #[serde(default, rename = "director")]
    pub directors: Vec<Director>,
    #[serde(rename = "host")]
    pub hosts: Vec<Host>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read {}: {e} (give --config FILE)", path.display())
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = s.start - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    (line, col)
                })
                .unwrap_or((1, 1));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
        })?;
        cfg.path = path.to_path_buf();
        let dir = path.parent().unwrap_or(Path::new("."));
        for d in &mut cfg.directors {
            if let Some(f) = &d.token_file {
                let f = if f.is_absolute() {
                    f.clone()
                } else {
                    dir.join(f)
                };
                d.token = Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "director {}: cannot read token_file {}: {e}",
                                d.control,
                                f.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                );
            } else if d.control.starts_with("http") {
                anyhow::bail!(
                    "{}: director {} is reached over TCP and needs token_file (ha refuses an unauthenticated control API on the network)",
                    path.display(),
                    d.control
                );
            }
        }
        if cfg.hosts.is_empty() {
            anyhow::bail!("{}: no [[host]]", path.display());
        }
        let mut seen = std::collections::HashSet::new();
        for h in &cfg.hosts {
            if !seen.insert(h.name.clone()) {
                anyhow::bail!("{}: host {} is listed twice", path.display(), h.name);
            }
            if cfg.app.transport == "ssh" && h.ssh.is_empty() {
                anyhow::bail!(
                    "{}: host {} has no ssh destination (or set app.transport = \"local\")",
                    path.display(),
                    h.name
                );
            }
        }
        if !["ssh", "local"].contains(&cfg.app.transport.as_str()) {
            anyhow::bail!(
                "{}: app.transport must be \"ssh\" or \"local\"",
                path.display()
            );
        }
        if cfg.app.transport == "local" && cfg.hosts.len() != 1 {
            anyhow::bail!(
                "{}: transport = \"local\" runs on this machine: exactly one [[host]]",
                path.display()
            );
        }
        Ok(cfg)
    }

    pub fn state_dir(&self) -> PathBuf {
        match &self.app.state_dir {
            Some(d) => d.clone(),
            None => self
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(".release"),
        }
    }

    pub fn base(&self, h: &Host) -> String {
        h.base.clone().unwrap_or_else(|| self.app.base.clone())
    }

    /// Expands `{app} {version} {base} {host} {rs}`.
    pub fn expand(&self, tpl: &str, h: Option<&Host>, version: &str) -> String {
        let mut s = tpl
            .replace("{app}", &self.app.name)
            .replace("{version}", version);
        if let Some(h) = h {
            s = s
                .replace("{base}", &self.base(h))
                .replace("{host}", &h.name)
                .replace("{rs}", &h.rs);
        } else {
            s = s.replace("{base}", &self.app.base);
        }
        s
    }

    /// `waimai-1.4` → `1.4` (the app must be this config's).
    pub fn version_of(&self, app_version: &str) -> anyhow::Result<String> {
        match app_version.strip_prefix(&format!("{}-", self.app.name)) {
            Some(v) if !v.is_empty() && !v.contains('/') => Ok(v.to_string()),
            _ => anyhow::bail!(
                "{app_version:?} is not {}-VERSION (this config releases {})",
                self.app.name,
                self.app.name
            ),
        }
    }
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_versions() {
        let dir = std::env::temp_dir().join(format!("rel-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("release.toml");
        std::fs::write(
            &p,
            r#"[app]
name = "waimai"
base = "/webapps/data"
artifact = "/srv/{app}-{version}.tar.gz"
stop = "stop"
start = "cd {base}/{app} && run {host}"
health = "http://{rs}/health"

[[host]]
name = "h1"
ssh = "root@10.0.0.11"
rs = "10.0.0.11:80"
virtual_server = "10.0.0.100:80"
base = "/other"
"#,
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let h = &c.hosts[0];
        assert_eq!(
            c.expand(&c.app.start, Some(h), "1.4"),
            "cd /other/waimai && run h1"
        );
        assert_eq!(
            c.expand(&c.app.artifact, Some(h), "1.4"),
            "/srv/waimai-1.4.tar.gz"
        );
        assert_eq!(
            c.expand(&c.app.health, Some(h), "1.4"),
            "http://10.0.0.11:80/health"
        );
        assert_eq!(c.version_of("waimai-1.4").unwrap(), "1.4");
        assert!(c
            .version_of("other-1.4")
            .unwrap_err()
            .to_string()
            .contains("releases waimai"));
        assert_eq!(c.state_dir(), dir.join(".release"));
        std::fs::write(&p, "[app]\nname = 1\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("release.toml:2:8"), "{e}");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
