//! What a release does, batch by batch and host by host: drain on every director, stop,
//! deploy, switch, start, health gate, enable; a failed batch rolled back as a whole. The
//! decisions come from [`crate::decide`], the facts from [`Directors`] and [`Hosts`], and
//! every step is recorded through the [`Session`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::{Config, Host};
use crate::decide::{self, Fault, Observed};
use crate::directors::Directors;
use crate::exit::{coded, kind_of, Kind};
use crate::health::wait;
use crate::hosts::Hosts;
use crate::plan;
use crate::session::Session;
use crate::state::{self, Release};

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

/// How long to wait for the directors, and how often to ask.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Until every director reports a drained server at weight 0.
    pub drain: Duration,
    /// For a drained server's connections to finish (then it is stopped anyway).
    pub quiesce: Duration,
    /// Until every director has an enabled server healthy at its weight.
    pub enable: Duration,
    pub poll: Duration,
}

impl Timing {
    pub fn from_config(cfg: &Config, drain_timeout: Duration) -> Timing {
        Timing {
            drain: Duration::from_secs(10),
            quiesce: drain_timeout,
            enable: Duration::from_secs(cfg.app.health_timeout.max(30)),
            poll: Duration::from_millis(200),
        }
    }
}

/// A release run: the config, the hosts and directors it acts on, where it reports.
pub struct Runner<'a> {
    pub cfg: &'a Config,
    pub hosts: &'a dyn Hosts,
    pub directors: &'a dyn Directors,
    pub out: &'a Printer,
    pub timing: Timing,
}

/// How far a host got, for the rollback of its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reached {
    Drained,
    Stopped,
}

struct HostFailure {
    step: &'static str,
    reached: Reached,
    error: anyhow::Error,
}

impl<'a> Runner<'a> {
    pub(crate) fn host(&self, name: &str) -> Option<&'a Host> {
        self.cfg.hosts.iter().find(|h| h.name == name)
    }

    fn set_all(&self, h: &Host, drain: bool) -> anyhow::Result<()> {
        for d in 0..self.directors.count() {
            self.directors.set(d, &h.virtual_server, &h.rs, drain)?;
        }
        Ok(())
    }

    pub(crate) fn drain(&self, h: &Host) -> anyhow::Result<()> {
        self.set_all(h, true)?;
        for d in 0..self.directors.count() {
            wait(self.timing.drain, self.timing.poll, || {
                Ok(decide::drained(&self.directors.real_server(
                    d,
                    &h.virtual_server,
                    &h.rs,
                )?))
            })
            .map_err(|e| {
                e.context(format!(
                    "director {} did not report weight 0 for {}",
                    self.directors.name(d),
                    h.rs
                ))
            })?;
        }
        Ok(())
    }

    /// Waits for the drained server's connections to finish; true when they did.
    pub(crate) fn quiesce(&self, h: &Host) -> bool {
        wait(self.timing.quiesce, self.timing.poll, || {
            let mut total = 0;
            for d in 0..self.directors.count() {
                total += self
                    .directors
                    .real_server(d, &h.virtual_server, &h.rs)?
                    .active;
            }
            Ok(total == 0)
        })
        .is_ok()
    }

    /// Enables on every director and waits until each has it healthy at its weight.
    fn enable(&self, h: &Host) -> anyhow::Result<()> {
        self.set_all(h, false)?;
        for d in 0..self.directors.count() {
            wait(self.timing.enable, self.timing.poll, || {
                Ok(decide::back_in_rotation(&self.directors.real_server(
                    d,
                    &h.virtual_server,
                    &h.rs,
                )?))
            })
            .map_err(|e| {
                e.context(format!(
                    "director {} did not report {} healthy at its weight",
                    self.directors.name(d),
                    h.rs
                ))
            })?;
        }
        Ok(())
    }

    fn start_and_check(&self, h: &Host, version: &str) -> Result<(), HostFailure> {
        let fail = |step, error| HostFailure {
            step,
            reached: Reached::Stopped,
            error,
        };
        self.out.step(&h.name, "start");
        self.hosts.start(h, version).map_err(|e| fail("start", e))?;
        self.out.step(&h.name, "health gate");
        self.hosts.health(h, version).map_err(|e| fail("health", e))
    }

    /// One host through every step. Each step is idempotent, so `resume` can run it again.
    fn release_host(
        &self,
        session: &Session,
        id: &str,
        h: &Host,
        version: &str,
    ) -> Result<(), HostFailure> {
        let fail = |step: &'static str, reached: Reached| {
            move |error: anyhow::Error| HostFailure {
                step,
                reached,
                error,
            }
        };
        let log = |step: &str, reached: Reached| {
            session
                .step(id, &h.name, step)
                .map_err(fail("journal", reached))
        };
        self.out.step(&h.name, "drain");
        self.drain(h).map_err(fail("drain", Reached::Drained))?;
        log("drained", Reached::Drained)?;
        self.out.step(&h.name, "wait for connections");
        if !self.quiesce(h) {
            self.out.step(
                &h.name,
                &format!(
                    "connections still open after {}s; stopping anyway",
                    self.timing.quiesce.as_secs()
                ),
            );
        }
        self.out.step(&h.name, "stop");
        self.hosts
            .stop(h, version)
            .map_err(fail("stop", Reached::Stopped))?;
        log("stopped", Reached::Stopped)?;
        self.out.step(&h.name, "deploy");
        let how = self
            .hosts
            .deploy(h, version)
            .map_err(fail("deploy", Reached::Stopped))?;
        self.out.step(&h.name, &format!("deploy: {how}"));
        self.hosts
            .switch(h, version)
            .map_err(fail("switch", Reached::Stopped))?;
        log("switched", Reached::Stopped)?;
        self.start_and_check(h, version)?;
        log("healthy", Reached::Stopped)?;
        self.out.step(&h.name, "enable");
        self.enable(h).map_err(fail("enable", Reached::Stopped))?;
        session
            .host_done(id, &h.name, version)
            .map_err(fail("journal", Reached::Stopped))
    }

    /// Puts a host of a failed batch back on `to` and in rotation.
    pub(crate) fn roll_back(
        &self,
        session: &Session,
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
            // the failed version may not stop cleanly; the switch and start decide
            let _ = self.hosts.stop(h, v);
            self.hosts.switch(h, v)?;
            self.start_and_check(h, v).map_err(|f| f.error)?;
        }
        self.enable(h)?;
        session.rolled_back(id, &h.name, to)?;
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

    /// Asks every director about the batch's virtual servers and applies min_healthy.
    fn admit(&self, batch: &[&Host]) -> anyhow::Result<()> {
        let mut vss: Vec<&str> = batch.iter().map(|h| h.virtual_server.as_str()).collect();
        vss.sort_unstable();
        vss.dedup();
        let mut seen = Vec::new();
        for d in 0..self.directors.count() {
            for vs in &vss {
                seen.push((
                    self.directors.name(d),
                    *vs,
                    self.directors.real_servers(d, vs)?,
                ));
            }
        }
        let observed: Vec<Observed> = seen
            .iter()
            .map(|(d, vs, servers)| Observed {
                director: d,
                vs,
                servers,
            })
            .collect();
        let members: Vec<decide::Member> = batch
            .iter()
            .map(|h| (h.name.as_str(), h.virtual_server.as_str(), h.rs.as_str()))
            .collect();
        decide::admit(&members, &observed, self.cfg.app.min_healthy).map_err(anyhow::Error::msg)
    }

    /// Runs the batches of `rel`, skipping hosts already done. Err: what failed, what was
    /// rolled back and what to run next, with its exit kind.
    pub fn run_batches(
        &self,
        session: &mut Session,
        rel: &Release,
        done: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let version = &rel.version;
        let name = format!("{}-{version}", self.cfg.app.name);
        let total = self.cfg.hosts.len();
        for (bi, batch) in rel.batches.iter().enumerate() {
            let hosts: Vec<&Host> = decide::pending(batch, done)
                .into_iter()
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
            if let Err(e) = self.admit(&hosts) {
                let kind = kind_of(&e);
                return Err(coded(
                    kind,
                    format!("{name}: batch {} not started: {e:#}", bi + 1),
                ));
            }
            let shared: &Session = session;
            let results: Vec<(&Host, Result<(), HostFailure>)> = std::thread::scope(|s| {
                let handles: Vec<_> = hosts
                    .iter()
                    .map(|h| {
                        (
                            *h,
                            s.spawn(move || self.release_host(shared, &rel.id, h, version)),
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
            return Err(self.fail_batch(session, rel, bi, &hosts, &results, &failures));
        }
        Ok(())
    }

    /// Rolls a failed batch back as a whole (the hosts that failed and those that made it),
    /// marks the version bad when the fault is its own, and says what happened.
    fn fail_batch(
        &self,
        session: &mut Session,
        rel: &Release,
        bi: usize,
        hosts: &[&Host],
        results: &[(&Host, Result<(), HostFailure>)],
        failures: &[(&Host, &HostFailure)],
    ) -> anyhow::Error {
        let version = &rel.version;
        let name = format!("{}-{version}", self.cfg.app.name);
        let mut what = Vec::new();
        let mut unreachable = false;
        for (h, f) in failures {
            self.out
                .done(&h.name, &format!("FAILED at {}: {:#}", f.step, f.error));
            what.push(format!("{} failed at {}: {:#}", h.name, f.step, f.error));
            unreachable |= kind_of(&f.error) == Kind::Unreachable;
        }
        let fault = decide::batch_fault(failures.iter().map(|(_, f)| f.step));
        let mut problems = Vec::new();
        for (h, r) in results {
            let reached = match r {
                Ok(()) => Reached::Stopped,
                Err(f) => f.reached,
            };
            let before = decide::restore_version(rel, &h.name);
            if let Err(e) = self.roll_back(session, &rel.id, h, reached, &before) {
                unreachable |= kind_of(&e) == Kind::Unreachable;
                problems.push(format!("{}: {e:#}", h.name));
            }
        }
        if fault == Fault::Version {
            if let Err(e) = session.mark_bad(&rel.id, version, &what.join("; ")) {
                problems.push(format!(
                    "{name} could not be recorded as bad ({e:#}): do not roll back to it"
                ));
            }
            for h in hosts {
                self.hosts.mark_bad(h, version);
            }
        }
        let rolled: Vec<String> = hosts
            .iter()
            .map(|h| {
                format!(
                    "{}→{}",
                    h.name,
                    decide::restore_version(rel, &h.name).unwrap_or_else(|| "(none)".into())
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
            if fault == Fault::Version {
                format!("; {name} is marked bad and its directories are kept")
            } else {
                String::new()
            }
        );
        if !problems.is_empty() {
            msg.push_str(&format!(
                " THE ROLLBACK DID NOT COMPLETE: {}. Check `release status`.",
                problems.join("; ")
            ));
        } else if fault == Fault::Version {
            msg.push_str(&format!(
                " Next: fix the release and run `release --batch N {}-NEWVERSION`; `release status` shows every host.",
                self.cfg.app.name
            ));
        } else {
            msg.push_str(" Next: fix the cause and run the same release again.");
        }
        coded(
            decide::failed_batch_kind(problems.is_empty(), unreachable),
            msg,
        )
    }

    /// Removes releases beyond `keep` on every host, never the current or the previous one.
    pub fn cleanup(&self, before: &BTreeMap<String, Option<String>>, version: &str) {
        for h in &self.cfg.hosts {
            let prev = before.get(&h.name).cloned().flatten();
            match self.hosts.cleanup(h, version, prev.as_deref()) {
                Ok(removed) => {
                    for d in removed {
                        self.out
                            .say(&format!("[{}] removed old release {d}", h.name));
                    }
                }
                Err(e) => self.out.say(&format!(
                    "warning: [{}] cleanup of old releases failed: {e:#}",
                    h.name
                )),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::directors::RsState;
    use crate::state::{Journal, Sink};

    /// Directors that do what they are told, and remember how many servers were out at once.
    struct FakeDirectors {
        count: usize,
        servers: Mutex<Vec<BTreeMap<String, RsState>>>,
        max_out: Mutex<usize>,
        sets: Mutex<Vec<String>>,
    }

    impl FakeDirectors {
        fn new(count: usize, rss: &[String]) -> FakeDirectors {
            let one: BTreeMap<String, RsState> = rss
                .iter()
                .map(|rs| {
                    (
                        rs.clone(),
                        RsState {
                            weight: 1,
                            configured_weight: 1,
                            healthy: true,
                            maintenance: false,
                            active: 0,
                        },
                    )
                })
                .collect();
            FakeDirectors {
                count,
                servers: Mutex::new(vec![one; count]),
                max_out: Mutex::new(0),
                sets: Mutex::new(Vec::new()),
            }
        }
    }

    impl Directors for FakeDirectors {
        fn count(&self) -> usize {
            self.count
        }
        fn name(&self, d: usize) -> String {
            format!("d{d}")
        }
        fn real_servers(&self, d: usize, _vs: &str) -> anyhow::Result<Vec<(String, RsState)>> {
            Ok(self.servers.lock().unwrap()[d]
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn set(&self, d: usize, _vs: &str, rs: &str, drain: bool) -> anyhow::Result<()> {
            let mut all = self.servers.lock().unwrap();
            let s = all[d].get_mut(rs).unwrap();
            s.weight = if drain { 0 } else { s.configured_weight };
            s.maintenance = drain;
            let out = all[d].values().filter(|s| !decide::in_service(s)).count();
            let mut m = self.max_out.lock().unwrap();
            *m = (*m).max(out);
            self.sets.lock().unwrap().push(format!(
                "d{d} {} {rs}",
                if drain { "drain" } else { "enable" }
            ));
            Ok(())
        }
        fn gray(
            &self,
            d: usize,
            vs: &str,
            clients: &[opsflow_control::gray::IpNet],
            rss: Option<&[String]>,
        ) -> anyhow::Result<()> {
            let nets: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
            self.sets.lock().unwrap().push(match rss {
                Some(r) => format!("d{d} gray {vs} {} -> {}", nets.join(","), r.join(",")),
                None => format!("d{d} ungray {vs} {}", nets.join(",")),
            });
            Ok(())
        }
    }

    /// Hosts whose health gate fails for the versions in `broken`.
    struct FakeHosts {
        current: Mutex<BTreeMap<String, Option<String>>>,
        broken: Vec<String>,
    }

    impl Hosts for FakeHosts {
        fn current(&self, h: &Host) -> anyhow::Result<Option<String>> {
            Ok(self.current.lock().unwrap()[&h.name].clone())
        }
        fn stop(&self, _h: &Host, _v: &str) -> anyhow::Result<()> {
            Ok(())
        }
        fn deploy(&self, _h: &Host, _v: &str) -> anyhow::Result<String> {
            Ok("unpacked".into())
        }
        fn switch(&self, h: &Host, v: &str) -> anyhow::Result<()> {
            self.current
                .lock()
                .unwrap()
                .insert(h.name.clone(), Some(v.to_string()));
            Ok(())
        }
        fn start(&self, _h: &Host, _v: &str) -> anyhow::Result<()> {
            Ok(())
        }
        fn health(&self, _h: &Host, v: &str) -> anyhow::Result<()> {
            if self.broken.iter().any(|b| b == v) {
                anyhow::bail!("/health answered 500");
            }
            Ok(())
        }
        fn mark_bad(&self, _h: &Host, _v: &str) {}
        fn cleanup(&self, _h: &Host, _c: &str, _p: Option<&str>) -> anyhow::Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    type Lines = std::sync::Arc<Mutex<Vec<String>>>;

    /// A journal sink that fails every line containing `needle`.
    struct FailOn {
        needle: &'static str,
        lines: Lines,
    }

    impl Write for FailOn {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let line = String::from_utf8_lossy(buf).into_owned();
            if line.contains(self.needle) {
                return Err(std::io::Error::other("disk full"));
            }
            self.lines.lock().unwrap().push(line);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink for FailOn {
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct World {
        dir: PathBuf,
        cfg: Config,
        hosts: FakeHosts,
        directors: FakeDirectors,
        out: Printer,
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn world(name: &str, n: usize, min_healthy: usize, broken: &[&str]) -> World {
        let dir = std::env::temp_dir().join(format!("rel-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut toml = format!("[app]\nname = \"w\"\nbase = \"/b\"\nartifact = \"a\"\nstop = \"s\"\nstart = \"s\"\nhealth = \"h\"\nmin_healthy = {min_healthy}\n\n");
        for i in 1..=n {
            toml.push_str(&format!("[[host]]\nname = \"h{i}\"\nssh = \"root@h{i}\"\nrs = \"10.0.0.{i}:80\"\nvirtual_server = \"10.0.0.100:80\"\n\n"));
        }
        std::fs::write(dir.join("release.toml"), toml).unwrap();
        let cfg = Config::load(&dir.join("release.toml")).unwrap();
        let rss: Vec<String> = cfg.hosts.iter().map(|h| h.rs.clone()).collect();
        World {
            hosts: FakeHosts {
                current: Mutex::new(
                    cfg.hosts
                        .iter()
                        .map(|h| (h.name.clone(), Some("1.3".to_string())))
                        .collect(),
                ),
                broken: broken.iter().map(|s| s.to_string()).collect(),
            },
            directors: FakeDirectors::new(2, &rss),
            cfg,
            dir,
            out: Printer::new(),
        }
    }

    impl World {
        fn runner(&self) -> Runner<'_> {
            Runner {
                cfg: &self.cfg,
                hosts: &self.hosts,
                directors: &self.directors,
                out: &self.out,
                timing: Timing {
                    drain: Duration::from_secs(1),
                    quiesce: Duration::ZERO,
                    enable: Duration::from_secs(1),
                    poll: Duration::from_millis(1),
                },
            }
        }

        /// Starts a release of `version` in batches of `size` and runs it.
        fn release(&self, session: &mut Session, version: &str, size: usize) -> anyhow::Result<()> {
            let names: Vec<String> = self.cfg.hosts.iter().map(|h| h.name.clone()).collect();
            let batches = plan::batches(&[plan::Step::Count(size)], &names);
            let before = crate::hosts::currents(&self.hosts, &self.cfg.hosts)
                .into_iter()
                .map(|(h, v)| (h, v.unwrap()))
                .collect();
            let rel = session.start(version, batches, before, "test", "u", &[])?;
            self.runner().run_batches(session, &rel, &BTreeMap::new())
        }

        /// A session whose journal fails every line containing `needle`; the lines written.
        fn failing_session(&self, needle: &'static str) -> (Session, Lines) {
            let lines = Lines::default();
            let s = Session::open(&self.dir, "test", false)
                .unwrap()
                .with_journal(Journal::with_sink(
                    self.dir.join("journal.jsonl"),
                    Box::new(FailOn {
                        needle,
                        lines: lines.clone(),
                    }),
                ));
            (s, lines)
        }

        fn versions(&self) -> Vec<Option<String>> {
            self.hosts
                .current
                .lock()
                .unwrap()
                .values()
                .cloned()
                .collect()
        }
    }

    #[test]
    fn a_release_goes_batch_by_batch_never_more_than_one_batch_out() {
        let w = world("ok", 4, 1, &[]);
        let mut s = Session::open(&w.dir, "test", false).unwrap();
        w.release(&mut s, "1.4", 2).unwrap();
        assert_eq!(w.versions(), vec![Some("1.4".to_string()); 4]);
        let max_out = *w.directors.max_out.lock().unwrap();
        assert!((1..=2).contains(&max_out), "{max_out} out at once");
        // drained and enabled on both directors
        assert_eq!(w.directors.sets.lock().unwrap().len(), 4 * 2 * 2);
        let (rels, bad) = state::replay(&Journal::read(&w.dir).unwrap());
        assert_eq!(rels[0].done.len(), 4);
        assert!(bad.is_empty());
    }

    #[test]
    fn a_broken_version_rolls_its_batch_back_and_is_marked_bad() {
        let w = world("bad", 4, 1, &["1.5"]);
        let mut s = Session::open(&w.dir, "test", false).unwrap();
        let e = w.release(&mut s, "1.5", 2).unwrap_err();
        assert_eq!(kind_of(&e), Kind::RolledBack, "{e:#}");
        let msg = format!("{e:#}");
        assert!(msg.contains("h1 failed at health"), "{msg}");
        assert!(msg.contains("later batches untouched (h3 h4)"), "{msg}");
        assert_eq!(w.versions(), vec![Some("1.3".to_string()); 4]);
        assert_eq!(s.bad(), ["1.5"]);
        // every server back in service on every director
        for d in 0..2 {
            assert!(w
                .directors
                .real_servers(d, "")
                .unwrap()
                .iter()
                .all(|(_, s)| decide::in_service(s)));
        }
        // the journal agrees, and a rollback never goes to 1.5
        let (_, bad) = state::replay(&Journal::read(&w.dir).unwrap());
        assert_eq!(bad, ["1.5"]);
        assert!(s.rollback_target("w", Some("1.5")).is_err());
    }

    #[test]
    fn a_gray_release_routes_before_the_canary_returns_and_unroutes_after_promote_or_abort() {
        let w = world("gray", 3, 1, &[]);
        let names: Vec<String> = w.cfg.hosts.iter().map(|h| h.name.clone()).collect();
        let batches = plan::batches(&[plan::Step::Count(1)], &names);
        let before: BTreeMap<String, Option<String>> = names
            .iter()
            .map(|h| (h.clone(), Some("1.3".into())))
            .collect();
        let users = ["10.9.0.0/24".to_string()];
        let mut s = Session::open(&w.dir, "test", false).unwrap();
        let rel = s
            .start("1.4", batches.clone(), before.clone(), "t", "u", &users)
            .unwrap();
        w.runner().gray_canary(&mut s, &rel).unwrap();
        let log = |from: usize| w.directors.sets.lock().unwrap()[from..].to_vec();
        let canary = log(0);
        let pos = |l: &[String], x: &str| l.iter().position(|c| c == x).unwrap();
        let route = "d0 gray 10.0.0.100:80 10.9.0.0/24 -> 10.0.0.1:80";
        assert!(
            pos(&canary, route) < pos(&canary, "d0 enable 10.0.0.1:80"),
            "{canary:?}"
        );
        assert!(!canary.iter().any(|c| c.contains("10.0.0.2")), "{canary:?}");
        assert_eq!(w.versions()[..2], [Some("1.4".into()), Some("1.3".into())]);
        let (rs, _) = state::replay(&Journal::read(&w.dir).unwrap());
        assert_eq!(rs[0].phase, Some(state::Phase::Gray));
        // promote: the other hosts, then the route goes
        let rel = rs[0].clone();
        w.runner().gray_promote(&mut s, &rel).unwrap();
        let promote = log(canary.len());
        let last = promote.iter().rposition(|c| c.contains("enable")).unwrap();
        assert!(
            pos(&promote, "d1 ungray 10.0.0.100:80 10.9.0.0/24") > last,
            "{promote:?}"
        );
        assert_eq!(w.versions(), vec![Some("1.4".to_string()); 3]);
        s.finish(&rel.id, true, "ok").unwrap();
        // abort: the canary drained, the route removed, the canary back on 1.4 and enabled
        let n = w.directors.sets.lock().unwrap().len();
        let before14 = names
            .iter()
            .map(|h| (h.clone(), Some("1.4".into())))
            .collect();
        let rel = s.start("1.6", batches, before14, "t", "u", &users).unwrap();
        w.runner().gray_canary(&mut s, &rel).unwrap();
        assert_eq!(w.versions()[0], Some("1.6".into()));
        let (rs, _) = state::replay(&Journal::read(&w.dir).unwrap());
        let m = w.directors.sets.lock().unwrap().len();
        w.runner().gray_abort(&mut s, &rs[1]).unwrap();
        let abort = log(m);
        let drain = pos(&abort, "d1 drain 10.0.0.1:80");
        let ungray = pos(&abort, "d1 ungray 10.0.0.100:80 10.9.0.0/24");
        assert!(
            drain < ungray && ungray < pos(&abort, "d0 enable 10.0.0.1:80"),
            "{abort:?}"
        );
        assert_eq!(w.versions(), vec![Some("1.4".to_string()); 3]);
        assert!(n < m);
    }

    #[test]
    fn a_bad_version_that_cannot_be_recorded_fails_the_run() {
        let w = world("nobad", 2, 1, &["1.5"]);
        let (mut s, lines) = w.failing_session("\"event\":\"bad\"");
        let e = w.release(&mut s, "1.5", 1).unwrap_err();
        let msg = format!("{e:#}");
        assert_eq!(kind_of(&e), Kind::Failed, "{msg}");
        assert!(
            msg.contains("could not be recorded as bad") && msg.contains("disk full"),
            "{msg}"
        );
        assert!(msg.contains("THE ROLLBACK DID NOT COMPLETE"), "{msg}");
        assert!(s.bad().is_empty());
        assert!(lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("rolled_back")));
    }

    #[test]
    fn a_step_that_cannot_be_journaled_fails_its_host_and_rolls_back() {
        let w = world("nostep", 2, 1, &[]);
        let (mut s, _) = w.failing_session("\"step\":\"switched\"");
        let e = w.release(&mut s, "1.4", 1).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("h1 failed at journal"), "{msg}");
        assert_eq!(kind_of(&e), Kind::RolledBack, "{msg}");
        assert_eq!(w.versions(), vec![Some("1.3".to_string()); 2]);
        // not the version's fault: not marked bad
        assert!(s.bad().is_empty());
    }

    #[test]
    fn min_healthy_refuses_a_batch_before_it_is_touched() {
        let w = world("minh", 4, 3, &[]);
        let mut s = Session::open(&w.dir, "test", false).unwrap();
        let e = w.release(&mut s, "1.4", 2).unwrap_err();
        assert!(format!("{e:#}").contains("batch 1 not started"), "{e:#}");
        assert!(w.directors.sets.lock().unwrap().is_empty());
        assert_eq!(w.versions(), vec![Some("1.3".to_string()); 4]);
    }
}
