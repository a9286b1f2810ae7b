//! The hosts a release runs on: what release asks of them ([`Hosts`]) and how
//! ([`ShellHosts`]: OpenSSH with ControlMaster multiplexing and BatchMode, or this machine).
//!
//! Every command runs with `sh -c`. Over ssh the script is quoted once more for the remote
//! login shell (ssh joins its arguments into one command line); values inside the script are
//! quoted by [`crate::config::Config::expand_cmd`] or [`shell_quote`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{check_version, shell_quote, Config, Host};
use crate::exit::{coded, Kind};
use crate::health::health_gate;

/// What a release does to one host. Each step is idempotent, so `resume` can repeat it.
pub trait Hosts: Sync {
    /// The version `BASE/APP` points at (None: no release yet), checked against
    /// [`crate::config::VERSION_PATTERN`].
    fn current(&self, h: &Host) -> anyhow::Result<Option<String>>;
    /// Runs the app's stop command for `version`.
    fn stop(&self, h: &Host, version: &str) -> anyhow::Result<()>;
    /// Unpacks `version` into `BASE/APP-VERSION` unless it is there; says what it did.
    fn deploy(&self, h: &Host, version: &str) -> anyhow::Result<String>;
    /// Points `BASE/APP` at `APP-VERSION`, atomically.
    fn switch(&self, h: &Host, version: &str) -> anyhow::Result<()>;
    /// Runs the app's start command for `version`.
    fn start(&self, h: &Host, version: &str) -> anyhow::Result<()>;
    /// The health gate for `version` on `h`.
    fn health(&self, h: &Host, version: &str) -> anyhow::Result<()>;
    /// Leaves a `.release-bad` mark in the failed version's directory (best effort).
    fn mark_bad(&self, h: &Host, version: &str);
    /// Removes old releases beyond `keep`, never `current` or `previous`; the removed ones.
    fn cleanup(
        &self,
        h: &Host,
        current: &str,
        previous: Option<&str>,
    ) -> anyhow::Result<Vec<String>>;
}

/// How commands reach a host.
#[derive(Clone, Debug)]
pub enum Transport {
    Ssh {
        dest: String,
        /// ControlPath directory (the state directory), created when needed.
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
    /// The process that runs `script`: `sh -c SCRIPT` here, or `ssh ... -- sh -c 'SCRIPT'`.
    pub fn command(&self, script: &str) -> Command {
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
                // ssh sends one command line to the remote login shell: quote the script once
                // more, so that shell hands it to `sh -c` unchanged
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
        if let Transport::Ssh { sockets, .. } = self {
            // the control sockets live in the state directory: `status` may come first
            std::fs::create_dir_all(sockets).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the state directory {}: {e}",
                    sockets.display()
                )
            })?;
        }
        let out = self.command(script).stdin(stdin).output().map_err(|e| {
            anyhow::anyhow!("cannot run ssh or sh: {e} (apt-get install openssh-client)")
        })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Ran {
            ok: out.status.success(),
            code: out.status.code(),
            out: text.trim().to_string(),
        })
    }

    /// Whether a failed run is ssh's own failure (exit 255), not the script's.
    fn unreachable(&self, r: &Ran) -> bool {
        matches!(self, Transport::Ssh { .. }) && r.code == Some(255)
    }

    /// Runs `script` and fails with its output unless it succeeds.
    pub fn check(&self, script: &str, what: &str) -> anyhow::Result<String> {
        let r = self.run(script)?;
        if !r.ok {
            if self.unreachable(&r) {
                return Err(coded(
                    Kind::Unreachable,
                    format!("{what}: ssh failed: {}", r.out),
                ));
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

/// The hosts of `release.toml`, reached with `sh -c` over ssh or here.
pub struct ShellHosts<'a> {
    pub cfg: &'a Config,
    /// The state directory (ssh control sockets).
    pub dir: PathBuf,
}

impl ShellHosts<'_> {
    pub fn transport(&self, h: &Host) -> Transport {
        if self.cfg.app.transport == "local" {
            Transport::Local
        } else {
            Transport::Ssh {
                dest: h.ssh.clone(),
                sockets: self.dir.clone(),
                options: self.cfg.app.ssh_options.clone(),
            }
        }
    }

    fn app_dir(&self, h: &Host, version: &str) -> String {
        format!("{}/{}-{version}", self.cfg.base(h), self.cfg.app.name)
    }
}

impl Hosts for ShellHosts<'_> {
    fn current(&self, h: &Host) -> anyhow::Result<Option<String>> {
        let link = format!("{}/{}", self.cfg.base(h), self.cfg.app.name);
        let t = self.transport(h);
        let r = t.run(&format!("readlink {}", shell_quote(&link)))?;
        if !r.ok {
            if t.unreachable(&r) {
                return Err(coded(
                    Kind::Unreachable,
                    format!("{}: ssh failed: {}", h.name, r.out),
                ));
            }
            return Ok(None);
        }
        let target = r.out.trim().rsplit('/').next().unwrap_or("").to_string();
        let Some(v) = target.strip_prefix(&format!("{}-", self.cfg.app.name)) else {
            return Ok(None);
        };
        // a version read back is used in commands: it must pass the same check as ours
        check_version(v).map_err(|e| {
            anyhow::anyhow!(
                "{}: {link} points at {target:?}: {e}; fix the link by hand",
                h.name
            )
        })?;
        Ok(Some(v.to_string()))
    }

    fn stop(&self, h: &Host, version: &str) -> anyhow::Result<()> {
        self.transport(h)
            .check(&self.cfg.expand_cmd(&self.cfg.app.stop, h, version), "stop")?;
        Ok(())
    }

    fn deploy(&self, h: &Host, version: &str) -> anyhow::Result<String> {
        let t = self.transport(h);
        let dir = self.app_dir(h, version);
        let q = shell_quote(&dir);
        let artifact = PathBuf::from(self.cfg.expand(&self.cfg.app.artifact, Some(h), version));
        let there = t.run(&format!("cat {q}/.release-sha256 2>/dev/null"))?;
        if t.unreachable(&there) {
            return Err(coded(
                Kind::Unreachable,
                format!("ssh failed: {}", there.out),
            ));
        }
        let there = there.out;
        if !artifact.is_file() {
            if !there.is_empty() {
                return Ok("already on the host (no local artifact)".into());
            }
            anyhow::bail!("artifact {} does not exist", artifact.display());
        }
        let sum = sha256_file(&artifact)?;
        if there.trim() == sum {
            return Ok("already there (same checksum)".into());
        }
        let script = format!(
            "set -e; rm -rf {q}.partial; mkdir -p {q}.partial; tar -xzf - -C {q}.partial; echo {sum} > {q}.partial/.release-sha256; rm -rf {q}; mv {q}.partial {q}"
        );
        let r = t.pipe(&script, &artifact)?;
        if !r.ok {
            anyhow::bail!("unpacking {} into {dir}: {}", artifact.display(), r.out);
        }
        Ok("unpacked".into())
    }

    fn switch(&self, h: &Host, version: &str) -> anyhow::Result<()> {
        let base = shell_quote(&self.cfg.base(h));
        let name = &self.cfg.app.name;
        let app = shell_quote(name);
        let tmp = shell_quote(&format!(".{name}.new"));
        let target = shell_quote(&format!("{name}-{version}"));
        self.transport(h).check(
            &format!(
                "set -e; cd {base}; test -d {target}; if [ -e {app} ] && [ ! -L {app} ]; then echo {app}' is not a symlink; move it aside' >&2; exit 1; fi; ln -sfn {target} {tmp}; mv -Tf {tmp} {app}"
            ),
            "switching the symlink",
        )?;
        Ok(())
    }

    fn start(&self, h: &Host, version: &str) -> anyhow::Result<()> {
        self.transport(h).check(
            &self.cfg.expand_cmd(&self.cfg.app.start, h, version),
            "start",
        )?;
        Ok(())
    }

    fn health(&self, h: &Host, version: &str) -> anyhow::Result<()> {
        health_gate(
            &self.cfg.expand(&self.cfg.app.health, Some(h), version),
            self.cfg.app.health_successes,
            Duration::from_secs(self.cfg.app.health_timeout),
        )
    }

    fn mark_bad(&self, h: &Host, version: &str) {
        let _ = self.transport(h).run(&format!(
            "touch {}/.release-bad 2>/dev/null",
            shell_quote(&self.app_dir(h, version))
        ));
    }

    fn cleanup(
        &self,
        h: &Host,
        current: &str,
        previous: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let base = shell_quote(&self.cfg.base(h));
        let name = &self.cfg.app.name;
        let app = shell_quote(name);
        let prev = shell_quote(&previous.map(|v| format!("{name}-{v}")).unwrap_or_default());
        let cur = shell_quote(&format!("{name}-{current}"));
        let script = format!(
            "cd {base} && ls -1dt {app}-*/ 2>/dev/null | sed 's|/$||' | grep -v '\\.partial$' | tail -n +{} | while read -r d; do [ \"$d\" = {cur} ] || [ \"$d\" = {prev} ] || {{ rm -rf \"$d\" && echo \"$d\"; }}; done",
            self.cfg.app.keep + 1
        );
        let out = self
            .transport(h)
            .check(&script, "cleanup of old releases")?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

pub fn sha256_file(p: &Path) -> anyhow::Result<String> {
    let mut f =
        std::fs::File::open(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The versions every host is on now, read in parallel: host → version.
pub fn currents(
    hosts: &dyn Hosts,
    list: &[Host],
) -> std::collections::BTreeMap<String, anyhow::Result<Option<String>>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = list
            .iter()
            .map(|h| (h.name.clone(), s.spawn(move || hosts.current(h))))
            .collect();
        hs.into_iter()
            .map(|(n, t)| {
                (
                    n,
                    t.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked"))),
                )
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_quotes_the_script_once_more_for_the_remote_shell() {
        let t = Transport::Ssh {
            dest: "root@h1".into(),
            sockets: PathBuf::from("/state"),
            options: vec![],
        };
        let c = t.command("echo 'it'\\''s' $HOME");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let last = args.last().unwrap();
        assert_eq!(last, "sh -c 'echo '\\''it'\\''\\'\\'''\\''s'\\'' $HOME'");
        // what the remote login shell makes of it: sh, -c and the script, unchanged
        let o = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", &last["sh -c ".len()..]))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "echo 'it'\\''s' $HOME\n"
        );
        assert_eq!(&args[args.len() - 3..args.len() - 1], ["root@h1", "--"]);
    }
}
