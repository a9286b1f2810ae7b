//! Gray release by user (`release --users CIDR[,CIDR] APP-VERSION`): the first batch is the
//! canary; once it runs the new version, every director gets a gray route sending the chosen
//! client networks to the canary only (everyone else keeps the other hosts), and the release
//! waits in phase `gray`. `promote` rolls the remaining batches as a plain release does and
//! then removes the route; `abort` takes the canary out of the route (drained, so its clients
//! fall back to the pool), removes the route and rolls the canary back. Each phase is a
//! journal entry ([`Phase`]), so `resume` continues the one a crash interrupted.

use std::path::Path;

use opsflow_control::gray::{parse_networks, IpNet};

use crate::commands::{command_line, confirm, ReleaseReport};
use crate::config::Host;
use crate::decide;
use crate::exit::{coded, Kind};
use crate::run::{timed, Reached, Runner};
use crate::session::Session;
use crate::state::{Phase, Release};

/// The client networks of a gray release, as the journal recorded them.
pub fn clients(rel: &Release) -> anyhow::Result<Vec<IpNet>> {
    parse_networks(&rel.users.join(","))
        .map_err(|e| coded(Kind::Usage, format!("release {}: --users {e}", rel.id)))
}

/// The canary of a gray release: its first batch.
pub fn canary_of(rel: &Release) -> &[String] {
    rel.batches.first().map_or(&[], Vec::as_slice)
}

/// Per virtual server, the real servers of the canary hosts (the gray route's targets).
pub fn routes(canary: &[&Host]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for h in canary {
        match out.iter_mut().find(|(vs, _)| *vs == h.virtual_server) {
            Some((_, rss)) => rss.push(h.rs.clone()),
            None => out.push((h.virtual_server.clone(), vec![h.rs.clone()])),
        }
    }
    out
}

impl Runner<'_> {
    fn canary_hosts(&self, rel: &Release) -> Vec<&Host> {
        canary_of(rel).iter().filter_map(|n| self.host(n)).collect()
    }

    /// Adds (`on`) or removes the gray routes of `rel` on every director.
    fn set_routes(&self, rel: &Release, on: bool) -> anyhow::Result<()> {
        let nets = clients(rel)?;
        let users = rel.users.join(",");
        for (vs, rss) in routes(&self.canary_hosts(rel)) {
            for d in 0..self.directors.count() {
                self.directors
                    .gray(d, &vs, &nets, on.then_some(rss.as_slice()))
                    .map_err(|e| {
                        e.context(format!(
                            "cannot {} the gray route of {users} on director {}",
                            if on { "add" } else { "remove" },
                            self.directors.name(d)
                        ))
                    })?;
            }
            self.out.say(&if on {
                format!(
                    "gray route on every director: {users} -> {} ({vs})",
                    rss.join(" ")
                )
            } else {
                format!("gray route of {users} removed from every director ({vs})")
            });
        }
        Ok(())
    }

    /// `release --users` (and `resume` in phase canary): the route first, so that once the
    /// canary is back in rotation only the gray clients reach it (until then they fall back to
    /// the pool, which no longer holds the canary); then the canary batch, as a plain release
    /// runs a batch; then phase gray. A canary that fails is rolled back and the route goes.
    pub fn gray_canary(&self, session: &mut Session, rel: &Release) -> anyhow::Result<()> {
        clients(rel)?;
        let first = Release {
            batches: rel.batches.first().cloned().into_iter().collect(),
            ..rel.clone()
        };
        let r = self
            .set_routes(rel, true)
            .and_then(|()| self.run_batches(session, &first, &rel.done));
        if let Err(e) = r {
            return match self.set_routes(rel, false) {
                Ok(()) => Err(e),
                Err(w) => Err(e.context(format!(
                    "THE GRAY ROUTE IS STILL SET ({w:#}); remove it with `ha gray del`"
                ))),
            };
        }
        session.phase(&rel.id, Phase::Gray)
    }

    /// `release promote`: the remaining batches, then the route goes.
    pub fn gray_promote(&self, session: &mut Session, rel: &Release) -> anyhow::Result<()> {
        if rel.phase != Some(Phase::Promoting) {
            session.phase(&rel.id, Phase::Promoting)?;
        }
        self.run_batches(session, rel, &rel.done)?;
        self.set_routes(rel, false)
    }

    /// `release abort`: the canary leaves the route (drained: its clients fall back to the
    /// pool), the route goes, the canary goes back to what it had and into rotation.
    pub fn gray_abort(&self, session: &mut Session, rel: &Release) -> anyhow::Result<()> {
        if rel.phase != Some(Phase::Aborting) {
            session.phase(&rel.id, Phase::Aborting)?;
        }
        let hosts = self.canary_hosts(rel);
        for h in &hosts {
            self.out.step(&h.name, "drain");
            self.drain(h)?;
        }
        for h in &hosts {
            self.out.step(&h.name, "wait for connections");
            self.quiesce(h);
        }
        self.set_routes(rel, false)?;
        let mut problems = Vec::new();
        for h in &hosts {
            let to = decide::restore_version(rel, &h.name);
            if let Err(e) = self.roll_back(session, &rel.id, h, Reached::Stopped, &to) {
                problems.push(format!("{}: {e:#}", h.name));
            }
        }
        if !problems.is_empty() {
            return Err(coded(
                Kind::Failed,
                format!(
                    "the canary was not rolled back completely: {}; fix it and run `release resume`",
                    problems.join("; ")
                ),
            ));
        }
        Ok(())
    }
}

/// What `--plan` adds for a gray release.
pub fn plan(users: &[String], batches: &[Vec<String>]) -> String {
    let users = users.join(",");
    let rest = batches.len().saturating_sub(1);
    format!(
        "  then: gray route {users} -> batch 1 on every director; the release waits in state gray\n  \
         `release promote`: batches 2..{} ({rest} batch(es)) as above, then the route is removed\n  \
         `release abort`: batch 1 drained, the route removed, batch 1 rolled back\n",
        batches.len()
    )
}

/// `release status` while a gray release waits.
pub fn render_waiting(app: &str, r: &ReleaseReport) -> String {
    let canary = r.batches.first().map(|b| b.join(" ")).unwrap_or_default();
    format!(
        "release {app}-{} ({}) is in state GRAY since {} by {}: clients {} reach the canary ({canary}) only, everyone else the other hosts; `release promote` rolls the rest, `release abort` rolls the canary back\n",
        r.version,
        r.id,
        crate::run::ago(r.started),
        r.user,
        r.users.join(",")
    )
}

/// `release --users`: the route and the canary. A canary that fails is rolled back, its route
/// removed, and the release ends.
pub fn canary(runner: &Runner, session: &mut Session, rel: &Release) -> anyhow::Result<()> {
    let app = &runner.cfg.app.name;
    if let Err(e) = runner.gray_canary(session, rel) {
        let msg = format!("{e:#}");
        if let Err(w) = session.finish(&rel.id, false, &msg) {
            return Err(e.context(format!("{w:#}")));
        }
        return Err(e);
    }
    runner.out.say(&format!(
        "{app}-{} is on the canary ({}); {} see it, everyone else the other hosts. State: gray. Next: `release promote` or `release abort`",
        rel.version,
        canary_of(rel).join(" "),
        rel.users.join(",")
    ));
    Ok(())
}

/// The gray release waiting (or being promoted or aborted), for `promote` and `abort`.
fn waiting(session: &Session, app: &str, verb: &str) -> anyhow::Result<Release> {
    match session.unfinished() {
        Some(r) if r.phase.is_some() => Ok(r.clone()),
        Some(r) => Err(coded(
            Kind::LockBusy,
            format!(
                "release {app}-{} ({}) is not a gray release; `release resume` finishes it",
                r.version, r.id
            ),
        )),
        None => Err(coded(
            Kind::Usage,
            format!("nothing to {verb}: no gray release waits (start one with `release --users CIDR {app}-VERSION`)"),
        )),
    }
}

/// `release promote` (`promote`) or `release abort` of the gray release that waits.
pub fn promote_or_abort(
    runner: &Runner,
    dir: &Path,
    yes: bool,
    promote: bool,
) -> anyhow::Result<()> {
    let mut session = Session::open(dir, &command_line(), false)?;
    let verb = if promote { "promote" } else { "abort" };
    let rel = waiting(&session, &runner.cfg.app.name, verb)?;
    if promote {
        do_promote(runner, &mut session, &rel, yes)
    } else {
        do_abort(runner, &mut session, &rel, yes)
    }
}

fn do_promote(
    runner: &Runner,
    session: &mut Session,
    rel: &Release,
    yes: bool,
) -> anyhow::Result<()> {
    let app = &runner.cfg.app.name;
    match rel.phase {
        Some(Phase::Gray | Phase::Promoting) => {}
        other => {
            return Err(coded(
                Kind::Usage,
                format!(
                    "release {app}-{} is {}: `release resume` finishes that first",
                    rel.version,
                    other.map_or("not a gray release", Phase::name)
                ),
            ))
        }
    }
    confirm(yes, &format!("promote {app}-{} to every host", rel.version))?;
    let (r, took) = timed(|| runner.gray_promote(session, rel));
    if let Err(e) = r {
        return Err(e.context(format!(
            "promote of {app}-{} stopped; `release resume` continues it, `release status` shows every host",
            rel.version
        )));
    }
    session.finish(
        &rel.id,
        true,
        &format!("{app}-{} on every host (promoted from gray)", rel.version),
    )?;
    runner.out.say(&format!(
        "{app}-{} is on all {} hosts, gray route removed ({:.1}s)",
        rel.version,
        runner.cfg.hosts.len(),
        took.as_secs_f64()
    ));
    runner.cleanup(&rel.before, &rel.version);
    Ok(())
}

fn do_abort(
    runner: &Runner,
    session: &mut Session,
    rel: &Release,
    yes: bool,
) -> anyhow::Result<()> {
    let app = &runner.cfg.app.name;
    let moved: Vec<&str> = rel
        .done
        .keys()
        .map(String::as_str)
        .filter(|h| !canary_of(rel).iter().any(|c| c == h))
        .collect();
    if !moved.is_empty() {
        return Err(coded(
            Kind::Usage,
            format!(
                "promote already moved {} beyond the canary: `release resume` finishes the promote, then `release rollback` goes back",
                moved.join(" ")
            ),
        ));
    }
    confirm(
        yes,
        &format!("abort {app}-{} and roll the canary back", rel.version),
    )?;
    runner.gray_abort(session, rel)?;
    let back: Vec<String> = canary_of(rel)
        .iter()
        .map(|h| {
            format!(
                "{h}→{}",
                decide::restore_version(rel, h).map_or("(none)".into(), |v| format!("{app}-{v}"))
            )
        })
        .collect();
    let msg = format!(
        "aborted: gray route removed, canary rolled back ({})",
        back.join(", ")
    );
    session.finish(&rel.id, false, &msg)?;
    runner.out.say(&format!("{app}-{} {msg}", rel.version));
    Ok(())
}

/// `release resume` of a gray release: continues the phase it was in.
pub fn resume(
    runner: &Runner,
    session: &mut Session,
    rel: &Release,
    yes: bool,
) -> anyhow::Result<()> {
    let app = &runner.cfg.app.name;
    match rel.phase {
        Some(Phase::Canary) => {
            confirm(yes, &format!("resume the canary of {app}-{}", rel.version))?;
            canary(runner, session, rel)
        }
        Some(Phase::Gray) => {
            println!(
                "{app}-{} waits in state gray (canary {}, clients {}): `release promote` or `release abort`",
                rel.version,
                canary_of(rel).join(" "),
                rel.users.join(",")
            );
            Ok(())
        }
        Some(Phase::Promoting) => do_promote(runner, session, rel, yes),
        Some(Phase::Aborting) | None => do_abort(runner, session, rel, yes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_the_gray_states() {
        let b = vec![vec!["h1".to_string()], vec!["h2".into()], vec!["h3".into()]];
        let p = plan(&["10.1.0.0/16".into()], &b);
        assert!(p.contains("gray route 10.1.0.0/16 -> batch 1"), "{p}");
        assert!(
            p.contains("state gray") && p.contains("promote") && p.contains("abort"),
            "{p}"
        );
        assert!(p.contains("batches 2..3 (2 batch(es))"), "{p}");
    }
}
