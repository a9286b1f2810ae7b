//! The lock and the journal, in the state directory.
//!
//! The lock is a file created with `O_EXCL`: owner, host, pid, start time, command. A lock
//! whose process is gone is *stale*: reported, never removed silently (only `unlock --force`,
//! or `resume`, which exists to finish what that process left). Failing to take the lock never
//! removes it.
//!
//! The journal is JSON lines, one per step, appended and synced: after a crash at any point,
//! replaying it says which release was running, what each host had before, and which hosts
//! finished.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub started: u64,
    pub command: String,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            format!("uid {}", unsafe { libc::getuid() })
        })
}

/// Whether `pid` is a live process. A zombie is not (a killed release whose parent is gone
/// may linger unreaped where PID 1 does not reap), and neither is a reused pid that runs
/// something other than release.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the state follows the last ')'
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let state = rest.trim_start().chars().next().unwrap_or('X');
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    !matches!(state, 'Z' | 'X') && comm.starts_with("release")
}

fn clock(t: u64) -> String {
    let s = t % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

impl LockInfo {
    pub fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}) since {}: `{}`",
            self.owner,
            self.host,
            self.pid,
            clock(self.started),
            self.command
        )
    }
    /// Whether its process is gone (only decidable on the same host).
    pub fn stale(&self) -> bool {
        self.host == hostname() && !alive(self.pid)
    }
}

/// A held lock; removed when dropped.
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub enum Taken {
    Held(Lock),
    /// Someone else's live lock.
    Busy(LockInfo),
    /// A lock whose process is gone.
    Stale(LockInfo),
}

/// Takes the lock in `dir`; with `take_stale`, a stale lock is taken over.
pub fn lock(dir: &Path, command: &str, take_stale: bool) -> anyhow::Result<Taken> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the state directory {}: {e}", dir.display()))?;
    let path = dir.join("lock");
    let me = LockInfo {
        owner: user(),
        host: hostname(),
        pid: std::process::id(),
        started: now(),
        command: command.to_string(),
    };
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(serde_json::to_string(&me)?.as_bytes())?;
                f.sync_all()?;
                return Ok(Taken::Held(Lock { path }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let Ok(other) = serde_json::from_str::<LockInfo>(&text) else {
                    anyhow::bail!(
                        "the lock {} exists but is unreadable; if no release runs, remove it with `release unlock --force`",
                        path.display()
                    );
                };
                if !other.stale() {
                    return Ok(Taken::Busy(other));
                }
                if !take_stale {
                    return Ok(Taken::Stale(other));
                }
                // take over: replace it atomically with ours, then retry the exclusive create
                std::fs::remove_file(&path)?;
            }
            Err(e) => anyhow::bail!("cannot create the lock {}: {e}", path.display()),
        }
    }
    anyhow::bail!(
        "the lock {} keeps reappearing; another release is starting",
        path.display()
    )
}

pub fn read_lock(dir: &Path) -> Option<LockInfo> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("lock")).ok()?).ok()
}

pub fn force_unlock(dir: &Path) -> anyhow::Result<Option<LockInfo>> {
    let info = read_lock(dir);
    match std::fs::remove_file(dir.join("lock")) {
        Ok(()) => Ok(info),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    Start {
        id: String,
        version: String,
        batches: Vec<Vec<String>>,
        /// The version each host had before (None: no current release).
        before: BTreeMap<String, Option<String>>,
        command: String,
        user: String,
        ts: u64,
        /// A gray release by user: the client networks that see the canary first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<String>,
    },
    Step {
        id: String,
        host: String,
        step: String,
        ts: u64,
    },
    HostDone {
        id: String,
        host: String,
        version: String,
        ts: u64,
    },
    RolledBack {
        id: String,
        host: String,
        to: Option<String>,
        ts: u64,
    },
    Bad {
        id: String,
        version: String,
        reason: String,
        ts: u64,
    },
    Finished {
        id: String,
        ok: bool,
        message: String,
        ts: u64,
    },
    /// The canary is done and the gray route is on every director: the release waits for
    /// `promote` or `abort`.
    Gray { id: String, ts: u64 },
    /// `release promote` began: the remaining batches, then the route goes.
    Promote { id: String, ts: u64 },
    /// `release abort` began: the route goes, the canary is rolled back.
    Abort { id: String, ts: u64 },
}

/// Where a gray release (`release --users`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The canary batch is being deployed (no route yet).
    Canary,
    /// Waiting, gray route in force.
    Gray,
    Promoting,
    Aborting,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Canary => "canary",
            Phase::Gray => "gray",
            Phase::Promoting => "promoting",
            Phase::Aborting => "aborting",
        }
    }
}

/// Where journal lines go: the file, synced after each line (tests use a sink that fails).
pub trait Sink: Write + Send {
    fn sync(&mut self) -> std::io::Result<()>;
}

impl Sink for std::fs::File {
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

pub struct Journal {
    path: PathBuf,
    file: Mutex<Box<dyn Sink>>,
}

impl Journal {
    pub fn open(dir: &Path) -> anyhow::Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the state directory {}: {e}", dir.display())
        })?;
        let path = dir.join("journal.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the journal {}: {e}", path.display()))?;
        // a crash mid-write leaves a torn last line: end it, so the next entry stands alone
        let text = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the journal {}: {e}", path.display()))?;
        if text.last().is_some_and(|c| *c != b'\n') {
            file.write_all(b"\n")
                .map_err(|e| anyhow::anyhow!("cannot write the journal {}: {e}", path.display()))?;
        }
        Ok(Journal::with_sink(path, Box::new(file)))
    }

    /// A journal writing to `sink`; `path` names it in messages.
    pub fn with_sink(path: PathBuf, sink: Box<dyn Sink>) -> Journal {
        Journal {
            path,
            file: Mutex::new(sink),
        }
    }

    pub fn write(&self, e: &Entry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(e)?;
        line.push('\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync())
            .map_err(|e| anyhow::anyhow!("cannot write the journal {}: {e}", self.path.display()))
    }

    /// Every entry (none when there is no journal yet); a torn last line (a crash mid-write)
    /// is skipped.
    pub fn read(dir: &Path) -> anyhow::Result<Vec<Entry>> {
        let path = dir.join("journal.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("cannot read the journal {}: {e}", path.display()),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

/// One release as the journal tells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Release {
    pub id: String,
    pub version: String,
    pub batches: Vec<Vec<String>>,
    pub before: BTreeMap<String, Option<String>>,
    pub command: String,
    pub user: String,
    pub started: u64,
    /// Last step per host.
    pub steps: BTreeMap<String, String>,
    pub done: BTreeMap<String, String>,
    pub rolled_back: BTreeMap<String, Option<String>>,
    /// None while unfinished.
    pub finished: Option<(bool, String)>,
    /// A gray release: its client networks, and its phase.
    pub users: Vec<String>,
    pub phase: Option<Phase>,
}

/// Replays the journal: every release in order, and the versions marked bad.
pub fn replay(entries: &[Entry]) -> (Vec<Release>, Vec<String>) {
    let mut out: Vec<Release> = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        match e {
            Entry::Start {
                id,
                version,
                batches,
                before,
                command,
                user,
                ts,
                users,
            } => out.push(Release {
                id: id.clone(),
                version: version.clone(),
                batches: batches.clone(),
                before: before.clone(),
                command: command.clone(),
                user: user.clone(),
                started: *ts,
                users: users.clone(),
                phase: (!users.is_empty()).then_some(Phase::Canary),
                ..Release::default()
            }),
            Entry::Step { id, host, step, .. } => {
                if let Some(r) = out.iter_mut().rev().find(|r| &r.id == id) {
                    r.steps.insert(host.clone(), step.clone());
                }
            }
            Entry::HostDone {
                id, host, version, ..
            } => {
                if let Some(r) = out.iter_mut().rev().find(|r| &r.id == id) {
                    r.done.insert(host.clone(), version.clone());
                    r.steps.insert(host.clone(), "done".into());
                }
            }
            Entry::RolledBack { id, host, to, .. } => {
                if let Some(r) = out.iter_mut().rev().find(|r| &r.id == id) {
                    r.rolled_back.insert(host.clone(), to.clone());
                    r.steps.insert(host.clone(), "rolled back".into());
                }
            }
            Entry::Bad { version, .. } => {
                if !bad.contains(version) {
                    bad.push(version.clone());
                }
            }
            Entry::Finished {
                id, ok, message, ..
            } => {
                if let Some(r) = out.iter_mut().rev().find(|r| &r.id == id) {
                    r.finished = Some((*ok, message.clone()));
                }
            }
            Entry::Gray { id, .. } | Entry::Promote { id, .. } | Entry::Abort { id, .. } => {
                let phase = match e {
                    Entry::Gray { .. } => Phase::Gray,
                    Entry::Promote { .. } => Phase::Promoting,
                    _ => Phase::Aborting,
                };
                if let Some(r) = out.iter_mut().rev().find(|r| &r.id == id) {
                    r.phase = Some(phase);
                }
            }
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_refuse_report_stale_and_take_over_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("rel-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = match lock(&dir, "release 1", false).unwrap() {
            Taken::Held(l) => l,
            _ => panic!("first lock not taken"),
        };
        // a live release process holds it: busy (the test binary is not named release, so
        // the lock names a pid whose process is a release: this test's own name is checked)
        let me_release = std::fs::read_to_string("/proc/self/stat")
            .map(|s| s.contains("(release"))
            .unwrap_or(false);
        let taken = lock(&dir, "release 2", true).unwrap();
        if me_release {
            assert!(matches!(taken, Taken::Busy(i) if i.command == "release 1"));
        } else {
            // a pid running something else is not a release holding the lock
            assert!(matches!(taken, Taken::Held(_)));
        }
        drop(held);
        assert!(read_lock(&dir).is_none());
        // a lock left by a dead process: stale, kept unless taken over
        let dead = LockInfo {
            owner: "x".into(),
            host: hostname(),
            pid: 999_999,
            started: 0,
            command: "old".into(),
        };
        std::fs::write(dir.join("lock"), serde_json::to_string(&dead).unwrap()).unwrap();
        assert!(matches!(lock(&dir, "new", false).unwrap(), Taken::Stale(_)));
        assert_eq!(read_lock(&dir).unwrap().command, "old");
        assert!(matches!(
            lock(&dir, "resume", true).unwrap(),
            Taken::Held(_)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_journal_replays_after_a_torn_write() {
        let dir = std::env::temp_dir().join(format!("rel-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open(&dir).unwrap();
        let mut before = BTreeMap::new();
        before.insert("h1".to_string(), Some("1.3".to_string()));
        j.write(&Entry::Start {
            id: "r1".into(),
            version: "1.4".into(),
            batches: vec![vec!["h1".into()]],
            before,
            command: "c".into(),
            user: "u".into(),
            ts: 1,
            users: vec![],
        })
        .unwrap();
        j.write(&Entry::Step {
            id: "r1".into(),
            host: "h1".into(),
            step: "drained".into(),
            ts: 2,
        })
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))
            .unwrap()
            .write_all(b"{\"event\":\"host_do")
            .unwrap();
        let (rs, bad) = replay(&Journal::read(&dir).unwrap());
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].steps["h1"], "drained");
        assert!(rs[0].finished.is_none());
        assert!(bad.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gray_release_replays_into_its_phase() {
        let start = |users: Vec<String>| Entry::Start {
            id: "g1".into(),
            version: "1.4".into(),
            batches: vec![vec!["h1".into()], vec!["h2".into()]],
            before: BTreeMap::new(),
            command: "c".into(),
            user: "u".into(),
            ts: 1,
            users,
        };
        // an old journal line (no users) is a plain release
        let old: Entry = serde_json::from_str(
            r#"{"event":"start","id":"o","version":"1.3","batches":[],"before":{},"command":"c","user":"u","ts":0}"#,
        )
        .unwrap();
        assert_eq!(replay(&[old]).0[0].phase, None);
        let mut entries = vec![start(vec!["10.1.0.0/16".into()])];
        assert_eq!(replay(&entries).0[0].phase, Some(Phase::Canary));
        entries.push(Entry::Gray {
            id: "g1".into(),
            ts: 2,
        });
        let (rs, _) = replay(&entries);
        assert_eq!((rs[0].phase, rs[0].users.len()), (Some(Phase::Gray), 1));
        entries.push(Entry::Promote {
            id: "g1".into(),
            ts: 3,
        });
        assert_eq!(replay(&entries).0[0].phase, Some(Phase::Promoting));
        let line = serde_json::to_string(&Entry::Abort {
            id: "g1".into(),
            ts: 4,
        })
        .unwrap();
        assert_eq!(line, r#"{"event":"abort","id":"g1","ts":4}"#);
    }
}
