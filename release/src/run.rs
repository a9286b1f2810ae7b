//! What a release does, batch by batch and host by host, and the commands around it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{check_version, shell_quote, Config, Host};
use crate::plan;
use crate::remote::{health_gate, wait, Transport};
use crate::state::{self, Entry, Journal, Release};

/// What the user reads: indicatif bars per host on a terminal, timestamped lines otherwise.
pub struct Printer {
    bars: Option<(
        indicatif::MultiProgress,
        std::sync::Mutex<BTreeMap<String, indicatif::ProgressBar>>,
    )>,
}

fn stamp() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = t.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t.subsec_millis()
    )
}

impl Printer {
    pub fn new() -> Printer {
        use std::io::IsTerminal;
        Printer {
            bars: std::io::stdout().is_terminal().then(|| {
                (
                    indicatif::MultiProgress::new(),
                    std::sync::Mutex::new(BTreeMap::new()),
                )
            }),
        }
    }

    pub fn say(&self, msg: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(msg);
            }
            None => println!("{} {msg}", stamp()),
        }
    }

    /// A host's current step: its bar's message, or a line.
    pub fn step(&self, host: &str, msg: &str) {
        match &self.bars {
            Some((mp, bars)) => {
                if let Ok(mut b) = bars.lock() {
                    let bar = b.entry(host.to_string()).or_insert_with(|| {
                        let pb = mp.add(indicatif::ProgressBar::new_spinner());
                        pb.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{spinner} {prefix:>8} {elapsed:>4} {msg}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                        );
                        pb.set_prefix(host.to_string());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        pb
                    });
                    bar.set_message(msg.to_string());
                }
            }
            None => println!("{} [{host}] {msg}", stamp()),
        }
    }

    /// Ends a host's bar with a final message.
    pub fn done(&self, host: &str, msg: &str) {
        match &self.bars {
            Some((_, bars)) => {
                if let Ok(mut b) = bars.lock() {
                    if let Some(bar) = b.remove(host) {
                        bar.finish_with_message(msg.to_string());
                    }
                }
            }
            None => println!("{} [{host}] {msg}", stamp()),
        }
    }
}

impl Default for Printer {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Ctx {
    pub cfg: Config,
    pub dir: PathBuf,
    pub out: Printer,
    pub drain_timeout: Duration,
}

/// How far a host got, for the rollback of its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Drained,
    Stopped,
}

struct HostFailure {
    step: &'static str,
    reached: Reached,
    error: anyhow::Error,
}

impl Ctx {
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

    fn host(&self, name: &str) -> Option<&Host> {
        self.cfg.hosts.iter().find(|h| h.name == name)
    }

    fn app_dir(&self, h: &Host, version: &str) -> String {
        format!("{}/{}-{version}", self.cfg.base(h), self.cfg.app.name)
    }

    /// The version `BASE/APP` points at on `h`.
    pub fn current(&self, h: &Host) -> anyhow::Result<Option<String>> {
        let link = format!("{}/{}", self.cfg.base(h), self.cfg.app.name);
        let r = self
            .transport(h)
            .run(&format!("readlink {}", shell_quote(&link)))?;
        if !r.ok {
            if r.code == Some(255) && matches!(self.transport(h), Transport::Ssh { .. }) {
                anyhow::bail!("{}: ssh failed: {}", h.name, r.out);
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

    fn set_all(&self, h: &Host, drain: bool) -> anyhow::Result<()> {
        for d in &self.cfg.directors {
            d.set(&h.virtual_server, &h.rs, drain)?;
        }
        Ok(())
    }

    fn drain(&self, h: &Host) -> anyhow::Result<()> {
        self.set_all(h, true)?;
        for d in &self.cfg.directors {
            wait(Duration::from_secs(10), || {
                Ok(d.real_server(&h.virtual_server, &h.rs)?.weight == 0)
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "director {} did not report weight 0 for {}: {e}",
                    d.control,
                    h.rs
                )
            })?;
        }
        Ok(())
    }

    /// Waits for the drained server's connections to finish; true when they did.
    fn quiesce(&self, h: &Host) -> bool {
        wait(self.drain_timeout, || {
            let mut total = 0;
            for d in &self.cfg.directors {
                total += d.real_server(&h.virtual_server, &h.rs)?.active;
            }
            Ok(total == 0)
        })
        .is_ok()
    }

    /// Enables on every director and waits until each has it healthy at its weight.
    fn enable(&self, h: &Host) -> anyhow::Result<()> {
        self.set_all(h, false)?;
        let limit = Duration::from_secs(self.cfg.app.health_timeout.max(30));
        for d in &self.cfg.directors {
            wait(limit, || {
                let s = d.real_server(&h.virtual_server, &h.rs)?;
                Ok(s.healthy && !s.maintenance && s.weight == s.configured_weight && s.weight > 0)
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "director {} did not report {} healthy at its weight: {e}",
                    d.control,
                    h.rs
                )
            })?;
        }
        Ok(())
    }

    fn deploy(&self, h: &Host, version: &str) -> anyhow::Result<&'static str> {
        let t = self.transport(h);
        let dir = self.app_dir(h, version);
        let q = shell_quote(&dir);
        let artifact = PathBuf::from(self.cfg.expand(&self.cfg.app.artifact, Some(h), version));
        let there = t.run(&format!("cat {q}/.release-sha256 2>/dev/null"))?.out;
        if !artifact.is_file() {
            if !there.is_empty() {
                return Ok("already on the host (no local artifact)");
            }
            anyhow::bail!("artifact {} does not exist", artifact.display());
        }
        let sum = sha256_file(&artifact)?;
        if there.trim() == sum {
            return Ok("already there (same checksum)");
        }
        let script = format!(
            "set -e; rm -rf {q}.partial; mkdir -p {q}.partial; tar -xzf - -C {q}.partial; echo {sum} > {q}.partial/.release-sha256; rm -rf {q}; mv {q}.partial {q}"
        );
        let r = t.pipe(&script, &artifact)?;
        if !r.ok {
            anyhow::bail!("unpacking {} into {dir}: {}", artifact.display(), r.out);
        }
        Ok("unpacked")
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

    fn start_and_check(&self, h: &Host, version: &str) -> Result<(), HostFailure> {
        let t = self.transport(h);
        let fail = |step, error| HostFailure {
            step,
            reached: Reached::Stopped,
            error,
        };
        self.out.step(&h.name, "start");
        t.check(
            &self.cfg.expand_cmd(&self.cfg.app.start, h, version),
            "start",
        )
        .map_err(|e| fail("start", e))?;
        self.out.step(&h.name, "health gate");
        health_gate(
            &self.cfg.expand(&self.cfg.app.health, Some(h), version),
            self.cfg.app.health_successes,
            Duration::from_secs(self.cfg.app.health_timeout),
        )
        .map_err(|e| fail("health", e))
    }

    /// One host through every step. Each step is idempotent, so `resume` can run it again.
    fn release_host(
        &self,
        j: &Journal,
        id: &str,
        h: &Host,
        version: &str,
    ) -> Result<(), HostFailure> {
        let log = |step: &str| {
            let _ = j.write(&Entry::Step {
                id: id.into(),
                host: h.name.clone(),
                step: step.into(),
                ts: state::now(),
            });
        };
        let t = self.transport(h);
        self.out.step(&h.name, "drain");
        self.drain(h).map_err(|e| HostFailure {
            step: "drain",
            reached: Reached::Drained,
            error: e,
        })?;
        log("drained");
        self.out.step(&h.name, "wait for connections");
        if !self.quiesce(h) {
            self.out.step(
                &h.name,
                &format!(
                    "connections still open after {}s; stopping anyway",
                    self.drain_timeout.as_secs()
                ),
            );
        }
        self.out.step(&h.name, "stop");
        t.check(&self.cfg.expand_cmd(&self.cfg.app.stop, h, version), "stop")
            .map_err(|e| HostFailure {
                step: "stop",
                reached: Reached::Stopped,
                error: e,
            })?;
        log("stopped");
        self.out.step(&h.name, "deploy");
        let how = self.deploy(h, version).map_err(|e| HostFailure {
            step: "deploy",
            reached: Reached::Stopped,
            error: e,
        })?;
        self.out.step(&h.name, &format!("deploy: {how}"));
        self.switch(h, version).map_err(|e| HostFailure {
            step: "switch",
            reached: Reached::Stopped,
            error: e,
        })?;
        log("switched");
        self.start_and_check(h, version)?;
        log("healthy");
        self.out.step(&h.name, "enable");
        self.enable(h).map_err(|e| HostFailure {
            step: "enable",
            reached: Reached::Stopped,
            error: e,
        })?;
        let _ = j.write(&Entry::HostDone {
            id: id.into(),
            host: h.name.clone(),
            version: version.into(),
            ts: state::now(),
        });
        Ok(())
    }

    /// Puts a host of a failed batch back on `to` and in rotation.
    fn roll_back(
        &self,
        j: &Journal,
        id: &str,
        h: &Host,
        reached: Reached,
        to: &Option<String>,
    ) -> anyhow::Result<()> {
        if reached >= Reached::Stopped {
            let Some(v) = to else {
                anyhow::bail!(
                    "{} had no release before; it stays stopped and drained",
                    h.name
                );
            };
            self.out
                .step(&h.name, &format!("roll back to {}-{v}", self.cfg.app.name));
            let t = self.transport(h);
            let _ = t.run(&self.cfg.expand_cmd(&self.cfg.app.stop, h, v));
            self.switch(h, v)?;
            self.start_and_check(h, v).map_err(|f| f.error)?;
        }
        self.enable(h)?;
        let _ = j.write(&Entry::RolledBack {
            id: id.into(),
            host: h.name.clone(),
            to: to.clone(),
            ts: state::now(),
        });
        self.out.done(
            &h.name,
            &format!(
                "back on {}",
                to.as_deref()
                    .map_or("its old state".to_string(), |v| format!(
                        "{}-{v}",
                        self.cfg.app.name
                    ))
            ),
        );
        Ok(())
    }

    /// Never drain a batch that would leave fewer than min_healthy servers in service.
    fn check_min_healthy(&self, batch: &[&Host]) -> anyhow::Result<()> {
        let mut by_vs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for h in batch {
            by_vs
                .entry(h.virtual_server.as_str())
                .or_default()
                .push(h.rs.as_str());
        }
        for d in &self.cfg.directors {
            for (vs, rss) in &by_vs {
                let all = d.real_servers(vs)?;
                let remaining = all
                    .iter()
                    .filter(|(rs, s)| {
                        !rss.contains(&rs.as_str()) && s.healthy && s.weight > 0 && !s.maintenance
                    })
                    .count();
                if remaining < self.cfg.app.min_healthy {
                    anyhow::bail!(
                        "taking {} out would leave {remaining} real server(s) of {vs} in service on {} (min_healthy = {}); use a smaller --batch or bring the others back first",
                        batch.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
                        d.control,
                        self.cfg.app.min_healthy
                    );
                }
            }
        }
        Ok(())
    }

    /// Runs the batches of release `id`, skipping hosts already done. Err: the message for
    /// the user (what failed, what was rolled back, what to run next).
    pub fn run_batches(
        &self,
        j: &Journal,
        rel: &Release,
        done: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let version = &rel.version;
        let name = format!("{}-{version}", self.cfg.app.name);
        let total = self.cfg.hosts.len();
        for (bi, batch) in rel.batches.iter().enumerate() {
            let hosts: Vec<&Host> = batch
                .iter()
                .filter(|n| !done.contains_key(*n))
                .filter_map(|n| self.host(n))
                .collect();
            if hosts.is_empty() {
                continue;
            }
            self.out.say(&format!(
                "batch {}/{}: {} ({})",
                bi + 1,
                rel.batches.len(),
                hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                plan::fraction(hosts.len(), total)
            ));
            if let Err(e) = self.check_min_healthy(&hosts) {
                return Err(format!("{name}: batch {} not started: {e:#}", bi + 1));
            }
            let results: Vec<(&Host, Result<(), HostFailure>)> = std::thread::scope(|s| {
                let handles: Vec<_> = hosts
                    .iter()
                    .map(|h| {
                        (
                            *h,
                            s.spawn(move || self.release_host(j, &rel.id, h, version)),
                        )
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(h, t)| {
                        (
                            h,
                            t.join().unwrap_or_else(|_| {
                                Err(HostFailure {
                                    step: "internal",
                                    reached: Reached::Stopped,
                                    error: anyhow::anyhow!("the host's worker panicked"),
                                })
                            }),
                        )
                    })
                    .collect()
            });
            let failures: Vec<(&Host, &HostFailure)> = results
                .iter()
                .filter_map(|(h, r)| r.as_ref().err().map(|f| (*h, f)))
                .collect();
            if failures.is_empty() {
                for h in &hosts {
                    self.out.done(&h.name, &format!("on {name}, in rotation"));
                }
                continue;
            }
            // roll the whole batch back: the hosts that failed and those that made it
            let mut what = Vec::new();
            for (h, f) in &failures {
                self.out
                    .done(&h.name, &format!("FAILED at {}: {:#}", f.step, f.error));
                what.push(format!("{} failed at {}: {:#}", h.name, f.step, f.error));
            }
            let version_fault = failures
                .iter()
                .any(|(_, f)| matches!(f.step, "deploy" | "switch" | "start" | "health"));
            let mut rollback_problems = Vec::new();
            for (h, r) in &results {
                let reached = match r {
                    Ok(()) => Reached::Stopped,
                    Err(f) => f.reached,
                };
                let before = rel.before.get(&h.name).cloned().flatten();
                if let Err(e) = self.roll_back(j, &rel.id, h, reached, &before) {
                    rollback_problems.push(format!("{}: {e:#}", h.name));
                }
            }
            if version_fault {
                let _ = j.write(&Entry::Bad {
                    id: rel.id.clone(),
                    version: version.clone(),
                    reason: what.join("; "),
                    ts: state::now(),
                });
                for h in &hosts {
                    let _ = self.transport(h).run(&format!(
                        "touch {}/.release-bad 2>/dev/null",
                        shell_quote(&self.app_dir(h, version))
                    ));
                }
            }
            let rolled: Vec<String> = hosts
                .iter()
                .map(|h| {
                    format!(
                        "{}→{}",
                        h.name,
                        rel.before
                            .get(&h.name)
                            .cloned()
                            .flatten()
                            .map_or("(none)".to_string(), |v| v)
                    )
                })
                .collect();
            let later: Vec<&str> = rel.batches[bi + 1..]
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let mut msg = format!(
                "release {name} failed in batch {} ({}). The batch was rolled back ({}){}{}.",
                bi + 1,
                what.join("; "),
                rolled.join(", "),
                if later.is_empty() {
                    String::new()
                } else {
                    format!("; later batches untouched ({})", later.join(" "))
                },
                if version_fault {
                    format!("; {name} is marked bad and its directories are kept")
                } else {
                    String::new()
                }
            );
            if !rollback_problems.is_empty() {
                msg.push_str(&format!(
                    " THE ROLLBACK DID NOT COMPLETE: {}. Check `release status`.",
                    rollback_problems.join("; ")
                ));
            } else if version_fault {
                msg.push_str(&format!(
                    " Next: fix the release and run `release --batch N {}-NEWVERSION`; `release status` shows every host.",
                    self.cfg.app.name
                ));
            } else {
                msg.push_str(" Next: fix the cause and run the same release again.");
            }
            return Err(msg);
        }
        Ok(())
    }

    /// Removes releases beyond `keep` on every host, never the current or the previous one.
    pub fn cleanup(&self, keep_also: &BTreeMap<String, Option<String>>, version: &str) {
        for h in &self.cfg.hosts {
            let base = shell_quote(&self.cfg.base(h));
            let name = &self.cfg.app.name;
            let app = shell_quote(name);
            let prev = shell_quote(
                &keep_also
                    .get(&h.name)
                    .cloned()
                    .flatten()
                    .map(|v| format!("{name}-{v}"))
                    .unwrap_or_default(),
            );
            let cur = shell_quote(&format!("{name}-{version}"));
            let script = format!(
                "cd {base} && ls -1dt {app}-*/ 2>/dev/null | sed 's|/$||' | grep -v '\\.partial$' | tail -n +{} | while read -r d; do [ \"$d\" = {cur} ] || [ \"$d\" = {prev} ] || {{ rm -rf \"$d\" && echo \"$d\"; }}; done",
                self.cfg.app.keep + 1
            );
            match self.transport(h).run(&script) {
                Ok(r) if r.ok => {
                    for d in r.out.lines().filter(|l| !l.is_empty()) {
                        self.out
                            .say(&format!("[{}] removed old release {d}", h.name));
                    }
                }
                Ok(r) => self.out.say(&format!(
                    "warning: [{}] cleanup of old releases failed: {}",
                    h.name, r.out
                )),
                Err(e) => self.out.say(&format!(
                    "warning: [{}] cleanup of old releases failed: {e:#}",
                    h.name
                )),
            }
        }
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
pub fn currents(ctx: &Ctx) -> BTreeMap<String, anyhow::Result<Option<String>>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = ctx
            .cfg
            .hosts
            .iter()
            .map(|h| (h.name.clone(), s.spawn(move || ctx.current(h))))
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

pub fn new_id() -> String {
    format!("{}-{}", state::now(), std::process::id())
}

/// Seconds since `t`, for messages.
pub fn ago(t: u64) -> String {
    let d = state::now().saturating_sub(t);
    if d < 120 {
        format!("{d}s ago")
    } else if d < 7200 {
        format!("{}m ago", d / 60)
    } else {
        format!("{}h ago", d / 3600)
    }
}

/// Measures a closure, for the final summary.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}
