//! The subcommands: what `release` does with a parsed command line. `main` only maps the
//! error this returns to an exit code ([`crate::exit::kind_of`]).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Cli, Cmd};
use crate::config::Config;
use crate::directors::{Directors, HaDirectors, RsState};
use crate::exit::{coded, Kind};
use crate::hosts::{currents, Hosts, ShellHosts};
use crate::run::{ago, timed, Printer, Runner, Timing};
use crate::session::Session;
use crate::state::{self, Entry, Journal, LockInfo, Release};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(&cli.config).map_err(|e| coded(Kind::Config, format!("{e:#}")))?;
    let dir = cfg.state_dir();
    let hosts = ShellHosts {
        cfg: &cfg,
        dir: dir.clone(),
    };
    let directors = HaDirectors::new(&cfg.directors)?;
    let drain = Duration::from_secs(cli.drain_timeout.unwrap_or(cfg.app.drain_timeout));
    let out = Printer::new();
    let runner = Runner {
        cfg: &cfg,
        hosts: &hosts,
        directors: &directors,
        out: &out,
        timing: Timing::from_config(&cfg, drain),
    };
    let app = &cfg.app.name;
    match cli.cmd {
        Some(Cmd::Status { json }) => {
            let report = status(&cfg, &dir, &hosts, &directors)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        Some(Cmd::History { json }) => {
            let report = history(&cfg, &dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        Some(Cmd::Unlock { force }) => unlock(&cfg, &dir, force),
        Some(Cmd::Promote) => crate::gray::promote_or_abort(&runner, &dir, cli.yes, true),
        Some(Cmd::Abort) => crate::gray::promote_or_abort(&runner, &dir, cli.yes, false),
        Some(Cmd::Resume) => {
            let mut session = Session::open(&dir, &command_line(), true)?;
            let Some(rel) = session.unfinished().cloned() else {
                println!("nothing to resume: every release in the journal finished");
                return Ok(());
            };
            if rel.phase.is_some() {
                return crate::gray::resume(&runner, &mut session, &rel, cli.yes);
            }
            let left: Vec<&str> = rel
                .batches
                .iter()
                .flat_map(|b| crate::decide::pending(b, &rel.done))
                .collect();
            println!(
                "resuming {app}-{} ({}): {} host(s) left: {}",
                rel.version,
                rel.id,
                left.len(),
                left.join(" ")
            );
            confirm(cli.yes, &format!("resume {app}-{}", rel.version))?;
            finish(&runner, &mut session, &rel, &rel.done)
        }
        Some(Cmd::Rollback { version }) => {
            let session = if cli.plan {
                None
            } else {
                Some(Session::open(&dir, &command_line(), false)?)
            };
            let target = match &session {
                Some(s) => {
                    s.refuse_unfinished(app)?;
                    s.rollback_target(app, version.as_deref())?
                }
                None => {
                    let (releases, bad) = state::replay(&Journal::read(&dir)?);
                    crate::decide::rollback_target(app, &releases, &bad, version.as_deref())
                        .map_err(|e| coded(Kind::Usage, e))?
                }
            };
            start(
                &runner,
                session,
                &cli.batch,
                &target,
                cli.yes,
                "rollback",
                &[],
            )
        }
        None => {
            let Some(t) = cli.target.as_deref() else {
                return Err(coded(
                    Kind::Usage,
                    format!("what to release? e.g. `release --batch 2 {app}-1.4` (or status, history, rollback, resume, unlock)"),
                ));
            };
            let version = cfg
                .version_of(t)
                .map_err(|e| coded(Kind::Usage, format!("{e:#}")))?;
            let users: Vec<String> = match &cli.users {
                Some(u) => opsflow_control::gray::parse_networks(u)
                    .map_err(|e| coded(Kind::Usage, format!("--users {u}: {e}")))?
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                None => Vec::new(),
            };
            // the lock first: a running release is named as such, not as "unfinished"
            let session = if cli.plan {
                None
            } else {
                let s = Session::open(&dir, &command_line(), false)?;
                s.refuse_unfinished(app)?;
                Some(s)
            };
            start(
                &runner, session, &cli.batch, &version, cli.yes, "release", &users,
            )
        }
    }
}

pub(crate) fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

pub(crate) fn confirm(yes: bool, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(coded(
            Kind::Usage,
            format!("{what}: add --yes to run without a terminal"),
        ));
    }
    print!("{what}: proceed? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        return Err(coded(Kind::Usage, "not confirmed"));
    }
    Ok(())
}

/// Plans and runs a release; without a session (`--plan`) it prints the plan only.
fn start(
    runner: &Runner,
    session: Option<Session>,
    spec: &str,
    version: &str,
    yes: bool,
    verb: &str,
    users: &[String],
) -> anyhow::Result<()> {
    let cfg = runner.cfg;
    let app = &cfg.app.name;
    let steps =
        crate::plan::parse(spec).map_err(|e| coded(Kind::Usage, format!("--batch {spec}: {e}")))?;
    let names: Vec<String> = cfg.hosts.iter().map(|h| h.name.clone()).collect();
    let batches = crate::plan::batches(&steps, &names);
    println!("{verb} {app}-{version}: {} batch(es)", batches.len());
    for (i, b) in batches.iter().enumerate() {
        println!(
            "  batch {}: {:<30} ({}){}",
            i + 1,
            b.join(" "),
            crate::plan::fraction(b.len(), names.len()),
            if i == 0 && !users.is_empty() {
                " canary"
            } else {
                ""
            }
        );
    }
    if !users.is_empty() {
        print!("{}", crate::gray::plan(users, &batches));
    }
    let Some(mut session) = session else {
        return Ok(());
    };
    let mut before = BTreeMap::new();
    for (h, v) in currents(runner.hosts, &cfg.hosts) {
        let v = v.map_err(|e| e.context(format!("cannot read the current release of {h}")))?;
        before.insert(h, v);
    }
    println!(
        "  now: {}",
        before
            .iter()
            .map(|(h, v)| format!(
                "{h} {}",
                v.as_deref()
                    .map_or("(none)".to_string(), |v| format!("{app}-{v}"))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    confirm(yes, &format!("{verb} {app}-{version}"))?;
    let user = std::env::var("USER").unwrap_or_default();
    let rel = session.start(version, batches, before, &command_line(), &user, users)?;
    if !users.is_empty() {
        return crate::gray::canary(runner, &mut session, &rel);
    }
    finish(runner, &mut session, &rel, &BTreeMap::new())
}

/// Runs the batches of `rel` and records how it ended.
pub(crate) fn finish(
    runner: &Runner,
    session: &mut Session,
    rel: &Release,
    done: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let app = &runner.cfg.app.name;
    let (r, took) = timed(|| runner.run_batches(session, rel, done));
    match r {
        Ok(()) => {
            session.finish(
                &rel.id,
                true,
                &format!("{app}-{} on every host", rel.version),
            )?;
            runner.out.say(&format!(
                "{app}-{} is on all {} hosts ({:.1}s)",
                rel.version,
                runner.cfg.hosts.len(),
                took.as_secs_f64()
            ));
            runner.cleanup(&rel.before, &rel.version);
            Ok(())
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if let Err(w) = session.finish(&rel.id, false, &msg) {
                return Err(e.context(format!("{w:#}")));
            }
            Err(e)
        }
    }
}

fn unlock(cfg: &Config, dir: &std::path::Path, force: bool) -> anyhow::Result<()> {
    if !force {
        return Err(coded(
            Kind::Usage,
            "unlock removes the lock of a release that may still run: say --force",
        ));
    }
    match state::force_unlock(dir)? {
        Some(l) => println!("removed the lock of {}", l.describe()),
        None => println!("there was no lock"),
    }
    let (releases, _) = state::replay(&Journal::read(dir)?);
    if let Some(r) = crate::decide::unfinished(&releases) {
        Journal::open(dir)?.write(&Entry::Finished {
            id: r.id.clone(),
            ok: false,
            message: "abandoned by release unlock --force".into(),
            ts: state::now(),
        })?;
        println!(
            "abandoned the unfinished release {}-{}; `release status` shows where each host is",
            cfg.app.name, r.version
        );
    }
    Ok(())
}

/// One release as `status` and `history` report it.
#[derive(Debug, Serialize)]
pub struct ReleaseReport {
    pub id: String,
    pub version: String,
    /// `ok`, `failed`, `aborted` (a gray release) or `unfinished`.
    pub result: &'static str,
    pub message: Option<String>,
    pub started: u64,
    pub user: String,
    pub command: String,
    pub batches: Vec<Vec<String>>,
    pub before: BTreeMap<String, Option<String>>,
    /// Last step per host.
    pub steps: BTreeMap<String, String>,
    /// A gray release by user: its client networks and phase (`canary`, `gray`, `promoting`,
    /// `aborting`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
}

impl From<&Release> for ReleaseReport {
    fn from(r: &Release) -> Self {
        let (result, message) = match &r.finished {
            Some((true, m)) => ("ok", Some(m.clone())),
            Some((false, m)) if r.phase.is_some() && m.starts_with("aborted") => {
                ("aborted", Some(m.clone()))
            }
            Some((false, m)) => ("failed", Some(m.clone())),
            None => ("unfinished", None),
        };
        ReleaseReport {
            id: r.id.clone(),
            version: r.version.clone(),
            result,
            message,
            started: r.started,
            user: r.user.clone(),
            command: r.command.clone(),
            batches: r.batches.clone(),
            before: r.before.clone(),
            steps: r.steps.clone(),
            users: r.users.clone(),
            phase: r.phase.map(|p| p.name()),
        }
    }
}

/// `release history [--json]`.
#[derive(Debug, Serialize)]
pub struct HistoryReport {
    pub app: String,
    pub journal: PathBuf,
    pub releases: Vec<ReleaseReport>,
    pub bad_versions: Vec<String>,
}

pub fn history(cfg: &Config, dir: &std::path::Path) -> anyhow::Result<HistoryReport> {
    let (releases, bad) = state::replay(&Journal::read(dir)?);
    Ok(HistoryReport {
        app: cfg.app.name.clone(),
        journal: dir.join("journal.jsonl"),
        releases: releases.iter().map(ReleaseReport::from).collect(),
        bad_versions: bad,
    })
}

impl HistoryReport {
    pub fn render(&self) -> String {
        let app = &self.app;
        let mut s = String::new();
        if self.releases.is_empty() {
            s.push_str(&format!(
                "no release in the journal yet ({})\n",
                self.journal.display()
            ));
        }
        for r in &self.releases {
            let result = match (r.result, &r.message) {
                ("failed", Some(m)) => {
                    format!("FAILED: {}", m.chars().take(100).collect::<String>())
                }
                (res, _) => res.to_string(),
            };
            s.push_str(&format!(
                "{:<20} {app}-{:<10} {:<8} by {:<8} {}\n",
                r.id,
                r.version,
                ago(r.started),
                r.user,
                result
            ));
        }
        s
    }
}

/// The lock as `status` reports it.
#[derive(Debug, Serialize)]
pub struct LockReport {
    /// `free`, `held` or `stale`.
    pub state: &'static str,
    pub holder: Option<LockInfo>,
}

/// One director's view of a host's real server.
#[derive(Debug, Serialize)]
pub struct DirectorView {
    pub director: String,
    pub real_server: Option<RsState>,
    pub error: Option<String>,
}

/// One host in `status`.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub name: String,
    pub real_server: String,
    pub virtual_server: String,
    pub version: Option<String>,
    pub error: Option<String>,
    pub directors: Vec<DirectorView>,
}

/// `release status [--json]`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub app: String,
    pub lock: LockReport,
    pub unfinished: Option<ReleaseReport>,
    pub last: Option<ReleaseReport>,
    pub bad_versions: Vec<String>,
    pub hosts: Vec<HostReport>,
}

type RealServers = Vec<(String, RsState)>;

/// Gathers `status`: the journal, the lock, every host's version and every director's view.
/// Hosts or directors that cannot be reached are reported as such, never an error.
pub fn status(
    cfg: &Config,
    dir: &std::path::Path,
    hosts: &dyn Hosts,
    directors: &dyn Directors,
) -> anyhow::Result<StatusReport> {
    let (releases, bad) = state::replay(&Journal::read(dir)?);
    let lock = match state::read_lock(dir) {
        Some(l) if l.stale() => LockReport {
            state: "stale",
            holder: Some(l),
        },
        Some(l) => LockReport {
            state: "held",
            holder: Some(l),
        },
        None => LockReport {
            state: "free",
            holder: None,
        },
    };
    let unfinished = crate::decide::unfinished(&releases).map(ReleaseReport::from);
    let last = match unfinished {
        Some(_) => None,
        None => releases.last().map(ReleaseReport::from),
    };
    let cur = currents(hosts, &cfg.hosts);
    let mut views: BTreeMap<(usize, &str), Result<RealServers, String>> = BTreeMap::new();
    for d in 0..directors.count() {
        for h in &cfg.hosts {
            views
                .entry((d, h.virtual_server.as_str()))
                .or_insert_with(|| {
                    directors
                        .real_servers(d, &h.virtual_server)
                        .map_err(|e| format!("{e:#}"))
                });
        }
    }
    let hosts = cfg
        .hosts
        .iter()
        .map(|h| {
            let (version, error) = match cur.get(&h.name) {
                Some(Ok(v)) => (v.clone(), None),
                Some(Err(e)) => (None, Some(format!("{e:#}"))),
                None => (None, Some("not asked".into())),
            };
            let directors = (0..directors.count())
                .map(|d| {
                    let (real_server, error) = match &views[&(d, h.virtual_server.as_str())] {
                        Ok(list) => match list.iter().find(|(rs, _)| *rs == h.rs) {
                            Some((_, s)) => (Some(s.clone()), None),
                            None => (None, Some(format!("no real server {}", h.rs))),
                        },
                        Err(e) => (None, Some(e.clone())),
                    };
                    DirectorView {
                        director: directors.name(d),
                        real_server,
                        error,
                    }
                })
                .collect();
            HostReport {
                name: h.name.clone(),
                real_server: h.rs.clone(),
                virtual_server: h.virtual_server.clone(),
                version,
                error,
                directors,
            }
        })
        .collect();
    Ok(StatusReport {
        app: cfg.app.name.clone(),
        lock,
        unfinished,
        last,
        bad_versions: bad,
        hosts,
    })
}

impl StatusReport {
    pub fn render(&self) -> String {
        let app = &self.app;
        let mut s = String::new();
        match (&self.lock.state, &self.lock.holder) {
            (&"stale", Some(l)) => {
                s.push_str(&format!("lock: STALE, {} (process gone)\n", l.describe()))
            }
            (_, Some(l)) => s.push_str(&format!("lock: held by {}\n", l.describe())),
            _ => s.push_str("lock: free\n"),
        }
        match (&self.unfinished, &self.last) {
            (Some(r), _) if r.phase == Some("gray") => {
                s.push_str(&crate::gray::render_waiting(app, r));
            }
            (Some(r), _) => {
                s.push_str(&format!(
                    "release {app}-{} ({}) DID NOT FINISH, started {} by {}; `release resume` completes it\n",
                    r.version, r.id, ago(r.started), r.user
                ));
                for h in r.batches.iter().flatten() {
                    s.push_str(&format!(
                        "  {h:<12} {}\n",
                        r.steps.get(h).map_or("not started", String::as_str)
                    ));
                }
            }
            (None, Some(r)) => s.push_str(&format!(
                "last release: {app}-{} {} ({})\n",
                r.version,
                match r.result {
                    "ok" => "succeeded",
                    "aborted" => "aborted",
                    _ => "failed",
                },
                ago(r.started)
            )),
            (None, None) => s.push_str("no release in the journal yet\n"),
        }
        if !self.bad_versions.is_empty() {
            s.push_str(&format!(
                "bad versions (never rolled back to): {}\n",
                self.bad_versions.join(", ")
            ));
        }
        s.push_str(&format!(
            "\n{:<12} {:<16} {:<22} directors\n",
            "host", "version", "real server"
        ));
        for h in &self.hosts {
            let v = match (&h.version, &h.error) {
                (_, Some(e)) => format!("? ({e})"),
                (Some(v), None) => format!("{app}-{v}"),
                (None, None) => "(none)".into(),
            };
            let ds: Vec<String> = h
                .directors
                .iter()
                .map(|d| match &d.real_server {
                    Some(r) => format!(
                        "{}: weight {}{}{}",
                        d.director,
                        r.weight,
                        if r.maintenance { ", DRAINED" } else { "" },
                        if r.healthy { "" } else { ", unhealthy" }
                    ),
                    None => format!(
                        "{}: unreachable or unknown ({})",
                        d.director,
                        d.error.as_deref().unwrap_or("?")
                    ),
                })
                .collect();
            s.push_str(&format!(
                "{:<12} {:<16} {:<22} {}\n",
                h.name,
                v,
                h.real_server,
                ds.join("; ")
            ));
        }
        s
    }
}
