use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use release::config::Config;
use release::run::{ago, currents, new_id, Ctx, Printer};
use release::state::{self, Entry, Journal, Taken};

/// Gray rollouts behind the HA load balancer: batch by batch, drained, health-gated, with
/// rollback and resume.
#[derive(Parser, Debug)]
#[command(name = "release", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// APP-VERSION to release, e.g. waimai-1.4. VERSION must match
    /// [A-Za-z0-9][A-Za-z0-9._+~-]{0,63}: no shell metacharacters, no `/`, no spaces.
    target: Option<String>,
    /// The configuration.
    #[arg(
        long,
        short = 'c',
        default_value = "release.toml",
        env = "RELEASE_CONFIG",
        global = true
    )]
    config: PathBuf,
    /// Batch size: a count (2), a percentage (25%) or a ramp (1,2,50%).
    #[arg(long, short = 'b', default_value = "1", global = true)]
    batch: String,
    /// Print the batches and exit.
    #[arg(long)]
    plan: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y', global = true)]
    yes: bool,
    /// Seconds to wait for a drained server's connections (default: app.drain_timeout).
    #[arg(long, global = true)]
    drain_timeout: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Which version each host is on, which are drained, and the release in progress.
    Status,
    /// Past releases from the journal.
    History,
    /// Release an earlier version again (default: the one before the current), never a bad one.
    Rollback { version: Option<String> },
    /// Finish a release that was interrupted (the process was killed, the machine rebooted).
    Resume,
    /// Remove the lock (and abandon an unfinished release).
    Unlock {
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    opsflow_common::init_logging("RELEASE_LOG", "text");
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("release: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn confirm(yes: bool, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{what}: add --yes to run without a terminal");
    }
    print!("{what}: proceed? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        anyhow::bail!("not confirmed");
    }
    Ok(())
}

fn take_lock(dir: &std::path::Path, stale_ok: bool) -> anyhow::Result<state::Lock> {
    match state::lock(dir, &command_line(), stale_ok)? {
        Taken::Held(l) => Ok(l),
        Taken::Busy(o) => anyhow::bail!(
            "another release holds the lock: {}; wait for it to finish (lock file {}/lock)",
            o.describe(),
            dir.display()
        ),
        Taken::Stale(o) => anyhow::bail!(
            "stale lock: {} is gone; if that release is not running any more, `release resume` finishes it, or `release unlock --force` abandons it",
            o.describe()
        ),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&cli.config)?;
    let dir = cfg.state_dir();
    let drain_timeout = Duration::from_secs(cli.drain_timeout.unwrap_or(cfg.app.drain_timeout));
    let ctx = Ctx {
        cfg,
        dir: dir.clone(),
        out: Printer::new(),
        drain_timeout,
    };
    let app = ctx.cfg.app.name.clone();
    let (releases, bad) = state::replay(&Journal::read(&dir));
    let unfinished = releases
        .iter()
        .rev()
        .find(|r| r.finished.is_none())
        .cloned();
    match cli.cmd {
        Some(Cmd::Status) => {
            match state::read_lock(&dir) {
                Some(l) if l.stale() => println!("lock: STALE, {} (process gone)", l.describe()),
                Some(l) => println!("lock: held by {}", l.describe()),
                None => println!("lock: free"),
            }
            match &unfinished {
                Some(r) => {
                    println!("release {app}-{} ({}) DID NOT FINISH, started {} by {}; `release resume` completes it", r.version, r.id, ago(r.started), r.user);
                    for h in r.batches.iter().flatten() {
                        println!(
                            "  {h:<12} {}",
                            r.steps.get(h).map_or("not started", String::as_str)
                        );
                    }
                }
                None => match releases.last() {
                    Some(r) => println!(
                        "last release: {app}-{} {} ({})",
                        r.version,
                        if r.finished.as_ref().is_some_and(|f| f.0) {
                            "succeeded"
                        } else {
                            "failed"
                        },
                        ago(r.started)
                    ),
                    None => println!("no release in the journal yet"),
                },
            }
            if !bad.is_empty() {
                println!("bad versions (never rolled back to): {}", bad.join(", "));
            }
            println!(
                "\n{:<12} {:<16} {:<22} directors",
                "host", "version", "real server"
            );
            let cur = currents(&ctx);
            let dstate: Vec<_> = ctx
                .cfg
                .directors
                .iter()
                .map(|d| (d, d.status().ok()))
                .collect();
            for h in &ctx.cfg.hosts {
                let v = match cur.get(&h.name) {
                    Some(Ok(Some(v))) => format!("{app}-{v}"),
                    Some(Ok(None)) => "(none)".into(),
                    Some(Err(e)) => format!("? ({e})"),
                    None => "?".into(),
                };
                let mut ds = Vec::new();
                for (d, st) in &dstate {
                    let rs = st.as_ref().and_then(|s| {
                        s["virtual_servers"]
                            .as_array()?
                            .iter()
                            .find(|v| v["id"] == h.virtual_server.as_str())?["real_servers"]
                            .as_array()?
                            .iter()
                            .find(|r| {
                                format!("{}:{}", r["address"].as_str().unwrap_or(""), r["port"])
                                    == h.rs
                            })
                            .cloned()
                    });
                    ds.push(match rs {
                        Some(r) => format!(
                            "{}: weight {}{}{}",
                            d.control,
                            r["weight"],
                            if r["maintenance"] == true {
                                ", DRAINED"
                            } else {
                                ""
                            },
                            if r["healthy"] == true {
                                ""
                            } else {
                                ", unhealthy"
                            }
                        ),
                        None => format!("{}: unreachable or unknown", d.control),
                    });
                }
                println!("{:<12} {:<16} {:<22} {}", h.name, v, h.rs, ds.join("; "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::History) => {
            if releases.is_empty() {
                println!(
                    "no release in the journal yet ({})",
                    dir.join("journal.jsonl").display()
                );
            }
            for r in &releases {
                let result = match &r.finished {
                    Some((true, _)) => "ok".to_string(),
                    Some((false, m)) => {
                        format!("FAILED: {}", m.chars().take(100).collect::<String>())
                    }
                    None => "unfinished".to_string(),
                };
                println!(
                    "{:<20} {app}-{:<10} {:<8} by {:<8} {}",
                    r.id,
                    r.version,
                    ago(r.started),
                    r.user,
                    result
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Unlock { force }) => {
            if !force {
                anyhow::bail!(
                    "unlock removes the lock of a release that may still run: say --force"
                );
            }
            match state::force_unlock(&dir)? {
                Some(l) => println!("removed the lock of {}", l.describe()),
                None => println!("there was no lock"),
            }
            if let Some(r) = &unfinished {
                Journal::open(&dir)?.write(&Entry::Finished {
                    id: r.id.clone(),
                    ok: false,
                    message: "abandoned by release unlock --force".into(),
                    ts: state::now(),
                })?;
                println!("abandoned the unfinished release {app}-{}; `release status` shows where each host is", r.version);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Resume) => {
            let Some(rel) = unfinished else {
                println!("nothing to resume: every release in the journal finished");
                return Ok(ExitCode::SUCCESS);
            };
            let _lock = take_lock(&dir, true)?;
            let left: Vec<&String> = rel
                .batches
                .iter()
                .flatten()
                .filter(|h| !rel.done.contains_key(*h))
                .collect();
            println!(
                "resuming {app}-{} ({}): {} host(s) left: {}",
                rel.version,
                rel.id,
                left.len(),
                left.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            confirm(cli.yes, &format!("resume {app}-{}", rel.version))?;
            let j = Journal::open(&dir)?;
            finish(&ctx, &j, &rel, &rel.done.clone())
        }
        Some(Cmd::Rollback { version }) => {
            let lock = if cli.plan {
                None
            } else {
                Some(take_lock(&dir, false)?)
            };
            if let Some(r) = &unfinished {
                anyhow::bail!("release {app}-{} did not finish: `release resume` first (or `release unlock --force`)", r.version);
            }
            let target = match version {
                Some(v) => {
                    let v = v.strip_prefix(&format!("{app}-")).unwrap_or(&v).to_string();
                    release::config::check_version(&v).map_err(anyhow::Error::msg)?;
                    v
                }
                None => {
                    let last_ok = releases
                        .iter()
                        .rev()
                        .find(|r| r.finished.as_ref().is_some_and(|f| f.0))
                        .context("no successful release in the journal to roll back from; give the version: `release rollback VERSION`")?;
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for v in last_ok.before.values().flatten() {
                        if *v != last_ok.version
                            && !bad.contains(v)
                            && release::config::check_version(v).is_ok()
                        {
                            *counts.entry(v.clone()).or_default() += 1;
                        }
                    }
                    counts
                        .into_iter()
                        .max_by_key(|(_, n)| *n)
                        .map(|(v, _)| v)
                        .context("the last release has no earlier good version to go back to; give one: `release rollback VERSION`")?
                }
            };
            if bad.contains(&target) {
                anyhow::bail!("{app}-{target} is marked bad (a release of it failed); roll back to another version");
            }
            start(&ctx, &cli.batch, &target, lock, cli.yes, "rollback")
        }
        None => {
            let Some(t) = cli.target.as_deref() else {
                anyhow::bail!("what to release? e.g. `release --batch 2 {app}-1.4` (or status, history, rollback, resume, unlock)");
            };
            let version = ctx.cfg.version_of(t)?;
            // the lock first: a running release is named as such, not as "unfinished"
            let lock = if cli.plan {
                None
            } else {
                Some(take_lock(&dir, false)?)
            };
            if let Some(r) = &unfinished {
                anyhow::bail!(
                    "release {app}-{} ({}) did not finish; run `release resume` to complete it, or `release unlock --force` to abandon it",
                    r.version,
                    r.id
                );
            }
            start(&ctx, &cli.batch, &version, lock, cli.yes, "release")
        }
    }
}

/// Plans and runs a release; without a lock (`--plan`) it prints the plan only.
fn start(
    ctx: &Ctx,
    spec: &str,
    version: &str,
    lock: Option<state::Lock>,
    yes: bool,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let app = &ctx.cfg.app.name;
    let steps = release::plan::parse(spec).map_err(|e| anyhow::anyhow!("--batch {spec}: {e}"))?;
    let names: Vec<String> = ctx.cfg.hosts.iter().map(|h| h.name.clone()).collect();
    let batches = release::plan::batches(&steps, &names);
    let total = names.len();
    println!("{verb} {app}-{version}: {} batch(es)", batches.len());
    for (i, b) in batches.iter().enumerate() {
        println!(
            "  batch {}: {:<30} ({})",
            i + 1,
            b.join(" "),
            release::plan::fraction(b.len(), total)
        );
    }
    let Some(_lock) = lock else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut before = BTreeMap::new();
    for (h, v) in currents(ctx) {
        let v = v.with_context(|| format!("cannot read the current release of {h}"))?;
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
    let j = Journal::open(&ctx.dir)?;
    let id = new_id();
    j.write(&Entry::Start {
        id: id.clone(),
        version: version.to_string(),
        batches: batches.clone(),
        before: before.clone(),
        command: command_line(),
        user: std::env::var("USER").unwrap_or_default(),
        ts: state::now(),
    })?;
    let rel = release::state::Release {
        id,
        version: version.to_string(),
        batches,
        before,
        ..Default::default()
    };
    finish(ctx, &j, &rel, &BTreeMap::new())
}

fn finish(
    ctx: &Ctx,
    j: &Journal,
    rel: &release::state::Release,
    done: &BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let app = &ctx.cfg.app.name;
    let (r, took) = release::run::timed(|| ctx.run_batches(j, rel, done));
    match r {
        Ok(()) => {
            j.write(&Entry::Finished {
                id: rel.id.clone(),
                ok: true,
                message: format!("{app}-{} on every host", rel.version),
                ts: state::now(),
            })?;
            ctx.out.say(&format!(
                "{app}-{} is on all {} hosts ({:.1}s)",
                rel.version,
                ctx.cfg.hosts.len(),
                took.as_secs_f64()
            ));
            ctx.cleanup(&rel.before, &rel.version);
            Ok(ExitCode::SUCCESS)
        }
        Err(msg) => {
            j.write(&Entry::Finished {
                id: rel.id.clone(),
                ok: false,
                message: msg.clone(),
                ts: state::now(),
            })?;
            eprintln!("release: {msg}");
            Ok(ExitCode::FAILURE)
        }
    }
}
