//! Kernel event sources for tracking, where the kernel offers them: inotify for `track_file`
//! (each file's directory is watched, so a file created, replaced by a rename or deleted is
//! seen too) and the proc connector for `track_process` (fork, exec, comm and exit events,
//! as keepalived uses). Each returns `None` when unavailable, and the daemon then polls every
//! 100 ms as before. The proc connector exists only in the initial network namespace:
//! elsewhere the subscription fails with ECONNREFUSED (errno 111, keepalived's failure
//! too), and ha polls `/proc` instead.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info};

/// A running watcher: `changed` is notified (coalesced) when something may have changed.
pub struct Watcher {
    pub changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches the directories of `paths` with inotify; `None` when inotify is unavailable, a
/// directory does not exist (then polling finds the file when it appears) or a file lives in
/// /proc or /sys (which send no inotify events).
pub fn files<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<Watcher> {
    use inotify::{Inotify, WatchMask};
    let mut dirs = BTreeSet::new();
    let mut names: BTreeSet<OsString> = BTreeSet::new();
    for p in paths {
        // procfs and sysfs files change without inotify events: those are polled
        if p.starts_with("/proc/") || p.starts_with("/sys/") {
            return None;
        }
        let p = Path::new(p);
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        };
        dirs.insert(dir);
        names.insert(p.file_name()?.to_os_string());
    }
    if names.is_empty() {
        return None;
    }
    let ino = Inotify::init()
        .map_err(|e| debug!(error = %e, "no inotify: tracked files are polled"))
        .ok()?;
    let mask = WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::ATTRIB;
    for d in &dirs {
        if let Err(e) = ino.watches().add(d, mask) {
            debug!(dir = %d.display(), error = %e, "cannot watch; tracked files are polled");
            return None;
        }
    }
    // SAFETY: the Inotify owns its descriptor and keeps it open until it is dropped, which
    // only the AsyncFd does.
    let mut fd = unsafe { AsyncFd::register(ino) }.ok()?;
    let changed = Arc::new(Notify::new());
    let tell = changed.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(mut ready) = fd.readable_mut().await else {
                return;
            };
            let r = ready.try_io(|ino| {
                ino.get_mut().read_events(&mut buf).map(|evs| {
                    evs.filter(|e| {
                        e.mask.contains(inotify::EventMask::Q_OVERFLOW)
                            || e.name.is_some_and(|n| names.contains(n))
                    })
                    .count()
                })
            });
            match r {
                Ok(Ok(n)) if n > 0 => tell.notify_one(),
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(Err(_)) => {
                    // unreadable: say so once more and let the caller's poll take over
                    tell.notify_one();
                    return;
                }
            }
        }
    });
    info!(
        directories = dirs.len(),
        "tracked files are watched with inotify"
    );
    Some(Watcher { changed, task })
}

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One netlink message to the connector: `PROC_CN_MCAST_LISTEN`.
fn listen_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes()); // cn_msg.id.idx
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes()); // cn_msg.id.val
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

/// Whether a datagram from the connector holds an event that can change a process count:
/// fork, exec, comm or exit (UID, GID, SID, ptrace and coredump events cannot).
pub fn relevant(datagram: &[u8]) -> bool {
    let mut b = datagram;
    while b.len() >= 16 + 20 + 4 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let what = u32::from_ne_bytes([b[36], b[37], b[38], b[39]]);
        if what & (PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_COMM | PROC_EVENT_EXIT) != 0 {
            return true;
        }
        if len < 16 || len > b.len() {
            break;
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    false
}

/// The kernel's netlink address, with multicast `groups` (for bind) or none (to send).
fn kernel_addr(groups: u32) -> SockAddr {
    // SAFETY: a zeroed sockaddr_storage holding a sockaddr_nl whose family is set, given
    // with the sockaddr_nl's size.
    unsafe {
        let mut st: libc::sockaddr_storage = std::mem::zeroed();
        let nl = &mut st as *mut libc::sockaddr_storage as *mut libc::sockaddr_nl;
        (*nl).nl_family = libc::AF_NETLINK as u16;
        (*nl).nl_groups = groups;
        SockAddr::new(
            st,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    }
}

/// Subscribes to the proc connector; `Err` when the kernel refuses (another network
/// namespace: ECONNREFUSED; no CONFIG_PROC_EVENTS; no privilege).
fn subscribe() -> std::io::Result<Socket> {
    let s = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_CONNECTOR)),
    )?;
    s.set_nonblocking(true)?;
    s.bind(&kernel_addr(CN_IDX_PROC))?;
    s.send_to(&listen_message(), &kernel_addr(0))?;
    Ok(s)
}

/// Process events from the kernel's proc connector; `None` when it is unavailable (then
/// `/proc` is polled). Notifications are spaced at least 20 ms apart, so a fork storm
/// costs at most 50 scans a second (events that overflow the socket meanwhile are not
/// needed: the scan after them sees every process).
pub fn processes() -> Option<Watcher> {
    let fd = match subscribe() {
        Ok(fd) => fd,
        Err(e) => {
            info!(error = %e, "no proc connector here (it works in the initial network namespace only): tracked processes are polled from /proc");
            return None;
        }
    };
    // SAFETY: the Socket keeps its descriptor open until the AsyncFd drops it.
    let fd = unsafe { AsyncFd::register(fd) }.ok()?;
    let changed = Arc::new(Notify::new());
    let tell = changed.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return;
            };
            let r = ready.try_io(|s| {
                let mut s: &Socket = s.get_ref();
                s.read(&mut buf)
            });
            let hit = match r {
                Ok(Ok(n)) => relevant(&buf[..n]),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Ok(Err(_)) => {
                    tell.notify_one();
                    return;
                }
                Err(_) => false,
            };
            if hit {
                tell.notify_one();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    info!("tracked processes follow the kernel's proc connector");
    Some(Watcher { changed, task })
}

/// Waits for a watcher's notification; never returns without a watcher.
pub async fn changed(w: Option<Arc<Notify>>) {
    match w {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: u32) -> Vec<u8> {
        let mut m = listen_message();
        m.truncate(36);
        m[0..4].copy_from_slice(&(36u32 + 16).to_ne_bytes());
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m
    }

    #[test]
    fn only_events_that_change_a_count_matter() {
        for what in [
            PROC_EVENT_FORK,
            PROC_EVENT_EXEC,
            PROC_EVENT_COMM,
            PROC_EVENT_EXIT,
        ] {
            assert!(relevant(&event(what)), "{what:#x}");
        }
        for what in [0, 0x4, 0x40, 0x80, 0x100, 0x4000_0000] {
            assert!(!relevant(&event(what)), "{what:#x}");
        }
        // a UID event followed by an exit in one datagram
        let mut two = event(0x4);
        two.extend(event(PROC_EVENT_EXIT));
        assert!(relevant(&two));
        assert!(!relevant(&[0u8; 10]));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Waits for a notification, up to a generous deadline (a loaded machine is slow).
    async fn notified(w: &Watcher) -> bool {
        tokio::time::timeout(Duration::from_secs(10), w.changed.notified())
            .await
            .is_ok()
    }

    #[test]
    fn inotify_sees_a_tracked_file_written_created_and_replaced() {
        let dir = std::env::temp_dir().join(format!("ha-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("weight");
        let path = f.to_string_lossy().into_owned();
        runtime().block_on(async {
            let w = files([path.as_str()]).expect("inotify works here");
            // an unrelated file in the same directory wakes nobody
            std::fs::write(dir.join("other"), "1").unwrap();
            assert!(
                tokio::time::timeout(Duration::from_millis(300), w.changed.notified())
                    .await
                    .is_err(),
                "woken by an untracked file"
            );
            std::fs::write(&f, "5\n").unwrap(); // created
            assert!(notified(&w).await, "creation not seen");
            let tmp = dir.join("weight.tmp");
            std::fs::write(&tmp, "7\n").unwrap();
            std::fs::rename(&tmp, &f).unwrap(); // replaced, as editors and echo > do
            assert!(notified(&w).await, "replacement not seen");
            std::fs::remove_file(&f).unwrap();
            assert!(notified(&w).await, "removal not seen");
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            files(["/nonexistent-ha-dir/weight"]).is_none(),
            "a missing directory must fall back to polling"
        );
        assert!(
            files(["/sys/class/net/lo/carrier"]).is_none(),
            "sysfs is polled"
        );
    }

    /// In the initial network namespace the proc connector reports a new process; in
    /// another one it refuses (ECONNREFUSED, errno 111) and the caller polls.
    #[test]
    fn proc_connector_or_its_fallback() {
        if !opsflow_tests::require(&[]) {
            return;
        }
        runtime().block_on(async {
            let Some(w) = processes() else {
                let msg = "no proc connector: this test must run in the initial network namespace";
                assert!(!opsflow_tests::in_ci(), "{msg}");
                eprintln!("SKIP (connector part): {msg}");
                return;
            };
            let mut child = std::process::Command::new("true").spawn().unwrap();
            assert!(notified(&w).await, "no event for a new process");
            let _ = child.wait();
        });
        let refused = std::thread::spawn(|| {
            // SAFETY: unshare in a thread of our own, which then only opens a socket.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(subscribe().err().and_then(|e| e.raw_os_error()))
        })
        .join()
        .unwrap()
        .expect("unshare(CLONE_NEWNET)");
        assert_eq!(refused, Some(libc::ECONNREFUSED));
        let none = std::thread::spawn(|| {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            runtime().block_on(async { processes().is_none() })
        })
        .join()
        .unwrap();
        assert!(
            none,
            "inside a network namespace ha must fall back to polling"
        );
    }

    #[test]
    fn listen_message_layout() {
        let m = listen_message();
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u32::from_ne_bytes(m[36..40].try_into().unwrap()), 1);
    }
}
