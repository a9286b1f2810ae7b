//! A release session: the lock, the journal and what the journal says (the releases so far,
//! the bad versions, so the rollback target), owned together for the life of one command that
//! changes hosts. Every journal write is checked: an entry that cannot be written fails the
//! step that needed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::decide;
use crate::exit::{coded, Kind};
use crate::state::{self, Entry, Journal, Lock, Release, Taken};

pub struct Session {
    _lock: Lock,
    journal: Journal,
    dir: PathBuf,
    releases: Vec<Release>,
    bad: Vec<String>,
}

impl Session {
    /// Takes the lock in `dir` (a stale one only with `take_stale`, as `resume` does), then
    /// opens and replays the journal.
    pub fn open(dir: &Path, command: &str, take_stale: bool) -> anyhow::Result<Session> {
        let lock = match state::lock(dir, command, take_stale)? {
            Taken::Held(l) => l,
            Taken::Busy(o) => {
                return Err(coded(
                    Kind::LockBusy,
                    format!(
                        "another release holds the lock: {}; wait for it to finish (lock file {}/lock)",
                        o.describe(),
                        dir.display()
                    ),
                ))
            }
            Taken::Stale(o) => {
                return Err(coded(
                    Kind::LockBusy,
                    format!(
                        "stale lock: {} is gone; if that release is not running any more, `release resume` finishes it, or `release unlock --force` abandons it",
                        o.describe()
                    ),
                ))
            }
        };
        let journal = Journal::open(dir)?;
        let (releases, bad) = state::replay(&Journal::read(dir)?);
        Ok(Session {
            _lock: lock,
            journal,
            dir: dir.to_path_buf(),
            releases,
            bad,
        })
    }

    /// The same session writing to `journal` instead (tests make journal writes fail).
    pub fn with_journal(mut self, journal: Journal) -> Session {
        self.journal = journal;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    pub fn bad(&self) -> &[String] {
        &self.bad
    }

    /// The release that did not finish, if any.
    pub fn unfinished(&self) -> Option<&Release> {
        decide::unfinished(&self.releases)
    }

    /// Fails when a release did not finish: it must be resumed or abandoned first.
    pub fn refuse_unfinished(&self, app: &str) -> anyhow::Result<()> {
        match self.unfinished() {
            Some(r) if r.phase == Some(state::Phase::Gray) => Err(coded(
                Kind::LockBusy,
                format!(
                    "release {app}-{} ({}) waits in state gray (clients {}); `release promote` or `release abort` it first",
                    r.version,
                    r.id,
                    r.users.join(",")
                ),
            )),
            Some(r) => Err(coded(
                Kind::LockBusy,
                format!(
                    "release {app}-{} ({}) did not finish; run `release resume` to complete it, or `release unlock --force` to abandon it",
                    r.version, r.id
                ),
            )),
            None => Ok(()),
        }
    }

    /// The version a rollback goes to ([`decide::rollback_target`]).
    pub fn rollback_target(&self, app: &str, requested: Option<&str>) -> anyhow::Result<String> {
        decide::rollback_target(app, &self.releases, &self.bad, requested)
            .map_err(|e| coded(Kind::Usage, e))
    }

    /// Records the start of a release (gray by user when `users` is not empty) and returns it.
    pub fn start(
        &mut self,
        version: &str,
        batches: Vec<Vec<String>>,
        before: BTreeMap<String, Option<String>>,
        command: &str,
        user: &str,
        users: &[String],
    ) -> anyhow::Result<Release> {
        let id = format!("{}-{}", state::now(), std::process::id());
        let ts = state::now();
        self.journal.write(&Entry::Start {
            id: id.clone(),
            version: version.to_string(),
            batches: batches.clone(),
            before: before.clone(),
            command: command.to_string(),
            user: user.to_string(),
            ts,
            users: users.to_vec(),
        })?;
        let rel = Release {
            id,
            version: version.to_string(),
            batches,
            before,
            command: command.to_string(),
            user: user.to_string(),
            started: ts,
            users: users.to_vec(),
            phase: (!users.is_empty()).then_some(state::Phase::Canary),
            ..Release::default()
        };
        self.releases.push(rel.clone());
        Ok(rel)
    }

    pub fn step(&self, id: &str, host: &str, step: &str) -> anyhow::Result<()> {
        self.journal.write(&Entry::Step {
            id: id.into(),
            host: host.into(),
            step: step.into(),
            ts: state::now(),
        })
    }

    pub fn host_done(&self, id: &str, host: &str, version: &str) -> anyhow::Result<()> {
        self.journal.write(&Entry::HostDone {
            id: id.into(),
            host: host.into(),
            version: version.into(),
            ts: state::now(),
        })
    }

    pub fn rolled_back(&self, id: &str, host: &str, to: &Option<String>) -> anyhow::Result<()> {
        self.journal.write(&Entry::RolledBack {
            id: id.into(),
            host: host.into(),
            to: to.clone(),
            ts: state::now(),
        })
    }

    /// Records `version` as bad: never again a rollback target. Its failure fails the run.
    pub fn mark_bad(&mut self, id: &str, version: &str, reason: &str) -> anyhow::Result<()> {
        self.journal.write(&Entry::Bad {
            id: id.into(),
            version: version.into(),
            reason: reason.into(),
            ts: state::now(),
        })?;
        if !self.bad.iter().any(|b| b == version) {
            self.bad.push(version.to_string());
        }
        Ok(())
    }

    /// Records that a gray release reached `phase` (gray, promoting, aborting).
    pub fn phase(&mut self, id: &str, phase: state::Phase) -> anyhow::Result<()> {
        let ts = state::now();
        let e = match phase {
            state::Phase::Gray => Entry::Gray { id: id.into(), ts },
            state::Phase::Promoting => Entry::Promote { id: id.into(), ts },
            state::Phase::Aborting => Entry::Abort { id: id.into(), ts },
            state::Phase::Canary => anyhow::bail!("the canary phase starts with the release"),
        };
        self.journal.write(&e)?;
        if let Some(r) = self.releases.iter_mut().rev().find(|r| r.id == id) {
            r.phase = Some(phase);
        }
        Ok(())
    }

    pub fn finish(&mut self, id: &str, ok: bool, message: &str) -> anyhow::Result<()> {
        self.journal.write(&Entry::Finished {
            id: id.into(),
            ok,
            message: message.into(),
            ts: state::now(),
        })?;
        if let Some(r) = self.releases.iter_mut().rev().find(|r| r.id == id) {
            r.finished = Some((ok, message.to_string()));
        }
        Ok(())
    }
}
