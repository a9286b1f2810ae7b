//! One instance per pid file, as keepalived and ISC dhcpd do it: an `flock`ed file under /run that
//! holds the pid, taken before any socket is bound, released (and removed) when the daemon ends.
//! The lock, not the file's existence, is what counts: a pid file left by a crash is taken over.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A held pid file: the lock lives as long as this value; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Holds the flock; closed (so released) after `drop` has unlinked the path.
    _lock: File,
}

/// Why a pid file could not be taken.
#[derive(Debug)]
pub enum PidFileError {
    /// Another process holds the lock.
    Held { path: PathBuf, pid: Option<u32> },
    /// The file or its directory could not be created, locked or written.
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::Held { path, pid } => {
                let who = match pid {
                    Some(p) => format!("pid {p}"),
                    None => "a process that has not written its pid yet".to_string(),
                };
                write!(
                    f,
                    "another instance is running: {} is held by {who} (stop it or use another --pid-file)",
                    path.display()
                )
            }
            PidFileError::Io { path, what, source } => {
                write!(f, "cannot {what} pid file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PidFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PidFileError::Held { .. } => None,
            PidFileError::Io { source, .. } => Some(source),
        }
    }
}

impl PidFile {
    /// Creates the parent directories (0755), opens `path` (close-on-exec), takes an exclusive
    /// non-blocking `flock` and writes `PID\n`. Fails with [`PidFileError::Held`] naming the
    /// holder's pid when another open file description holds the lock (another process, or this
    /// one through a second `acquire`).
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |what: &'static str| {
            move |source: std::io::Error| PidFileError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io("create the directory of"))?;
        }
        // A holder that exits unlinks the file while we may have it open: we would then lock a
        // file nobody else can find. Check after locking that the path still names our file.
        for _ in 0..10 {
            // std opens with O_CLOEXEC
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(io("open"))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(PidFileError::Held {
                        path: path.to_path_buf(),
                        pid: read_holder(&mut file),
                    });
                }
                return Err(io("lock")(e));
            }
            let ours = file.metadata().map_err(io("stat"))?;
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
                _ => continue, // unlinked or replaced under us: start over
            }
            file.set_len(0).map_err(io("truncate"))?;
            file.rewind().map_err(io("write"))?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io("write"))?;
            file.sync_data().map_err(io("write"))?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                _lock: file,
            });
        }
        Err(io("lock")(std::io::Error::other(
            "it kept being replaced while locking it",
        )))
    }

    /// The path this pid file was taken at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then close (which releases it).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The holder's pid from the file. The holder writes it right after locking: give it a moment.
fn read_holder(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        let mut s = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut s).is_ok() {
            if let Ok(pid) = s.trim().parse::<u32>() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// The default pid file of `program`: `/run/PROGRAM/PROGRAM.pid` for the plain instance in the
/// host's network namespace; otherwise `/run/PROGRAM/PROGRAM-INSTANCE[-netnsINODE].pid`, so
/// daemons of one kind with different listen addresses or control sockets (`instance`), or in
/// different network namespaces, do not refuse each other.
pub fn default_path(program: &str, instance: &str) -> PathBuf {
    default_path_in(program, instance, netns_suffix())
}

fn default_path_in(program: &str, instance: &str, netns: Option<u64>) -> PathBuf {
    let mut name = program.to_string();
    if !instance.is_empty() {
        name.push('-');
        name.push_str(&sanitize(instance));
    }
    if let Some(ino) = netns {
        name.push_str(&format!("-netns{ino}"));
    }
    PathBuf::from(format!("/run/{program}/{name}.pid"))
}

/// `instance` with every character outside `[A-Za-z0-9_.-]` replaced by `_`; longer than 48
/// characters, a prefix and a hash of the whole.
fn sanitize(instance: &str) -> String {
    let clean: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 48 {
        return clean;
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(instance.as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &clean[..31])
}

/// `None` in the initial network namespace, else the inode of ours. When the initial one cannot
/// be read (not root), ours is named: unique per namespace either way.
fn netns_suffix() -> Option<u64> {
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?;
    match std::fs::metadata("/proc/1/ns/net") {
        Ok(init) if init.ino() == ours.ino() && init.dev() == ours.dev() => None,
        _ => Some(ours.ino()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("opsflow-pidfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn second_acquire_is_refused_with_the_pid_and_drop_releases() {
        let d = tmpdir("second");
        let p = d.join("sub/dir/x.pid");
        let held = PidFile::acquire(&p).expect("first acquire");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            format!("{}\n", std::process::id())
        );
        let err = PidFile::acquire(&p).expect_err("second acquire must fail");
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "another instance is running: {} is held by pid {} (stop it or use another --pid-file)",
                p.display(),
                std::process::id()
            )
        );
        drop(held);
        assert!(!p.exists(), "drop removes the file");
        let again = PidFile::acquire(&p).expect("acquire after release");
        assert_eq!(again.path(), p);
        drop(again);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_lock_held_by_another_process_is_refused_with_the_pid_in_the_file() {
        // util-linux flock(1) takes the same flock(2) lock from another process
        let d = tmpdir("other");
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = d.join("o.pid");
        std::fs::write(&p, "4242\n").expect("write");
        let ready = d.join("locked");
        let mut holder = match std::process::Command::new("flock")
            .arg("--exclusive")
            .arg("--nonblock")
            .arg(&p)
            .args(["sh", "-c", "touch \"$0\"; sleep 30"])
            .arg(&ready)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipped: flock(1) (util-linux) not runnable: {e}");
                return;
            }
            Err(e) => panic!("flock(1) (util-linux) not runnable under CI: {e}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ready.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let r = PidFile::acquire(&p);
        let _ = holder.kill();
        let _ = holder.wait();
        match r {
            Err(PidFileError::Held { pid, .. }) => assert_eq!(pid, Some(4242)),
            other => panic!("want Held with pid 4242, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "4242\n",
            "the holder's file is untouched"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stale_file_without_a_lock_is_taken_over() {
        let d = tmpdir("stale");
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = d.join("y.pid");
        std::fs::write(&p, "999999999 and some junk that is longer than a pid\n").expect("write");
        let held = PidFile::acquire(&p).expect("stale file is not a lock");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            format!("{}\n", std::process::id())
        );
        drop(held);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_lock_is_not_inherited_by_children() {
        // O_CLOEXEC: a child started while we hold the lock must not keep it after we let go.
        let d = tmpdir("cloexec");
        let p = d.join("z.pid");
        let held = PidFile::acquire(&p).expect("acquire");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        drop(held);
        let r = PidFile::acquire(&p);
        let _ = child.kill();
        let _ = child.wait();
        assert!(r.is_ok(), "a child inherited the lock: {:?}", r.err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unwritable_place_is_an_io_error_naming_the_path() {
        let d = tmpdir("io");
        std::fs::create_dir_all(&d).expect("mkdir");
        let blocker = d.join("file");
        std::fs::write(&blocker, "").expect("write");
        let p = blocker.join("x.pid");
        let err = PidFile::acquire(&p).expect_err("a file as directory");
        assert!(matches!(err, PidFileError::Io { .. }));
        assert!(
            err.to_string().contains(&blocker.display().to_string()),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn default_paths_differ_by_instance_and_namespace() {
        assert_eq!(
            default_path_in("ha", "", None),
            PathBuf::from("/run/ha/ha.pid")
        );
        assert_eq!(
            default_path_in("tftpd", "10.0.0.1:69", None),
            PathBuf::from("/run/tftpd/tftpd-10.0.0.1_69.pid")
        );
        assert_eq!(
            default_path_in("ha", "/run/ha/control.sock", Some(4026532001)),
            PathBuf::from("/run/ha/ha-_run_ha_control.sock-netns4026532001.pid")
        );
        assert_eq!(
            default_path_in("ha", "", Some(7)),
            PathBuf::from("/run/ha/ha-netns7.pid")
        );
        let long_a = format!("/tmp/{}/a.sock", "x".repeat(80));
        let long_b = format!("/tmp/{}/b.sock", "x".repeat(80));
        let a = default_path_in("ha", &long_a, None);
        let b = default_path_in("ha", &long_b, None);
        assert_ne!(a, b, "long instances are told apart by their hash");
        let name = a.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.len() < 70, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
        // the real thing: this process is in some namespace; the path is stable across calls
        assert_eq!(default_path("ha", "x"), default_path("ha", "x"));
    }
}
