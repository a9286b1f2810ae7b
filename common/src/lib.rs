//! What two or more opsflow components really share: the hardened HTTP server loop ([`http`],
//! also behind the Prometheus endpoint), pid files ([`pidfile`]), sd_notify ([`notify`]), log
//! rate limiting ([`ratelimit`]), the logging setup (journald priorities when stderr is the
//! journal), atomic writes, the version string and config diagnostics. Nothing
//! protocol-specific lives here.

use std::path::Path;

pub mod http;
pub mod notify;
pub mod pidfile;
pub mod ratelimit;

pub use http::serve_metrics;

/// `0.1.0 (commit abc123def456)`: what every binary passes to clap's `version`; the commit is
/// the build's `git rev-parse --short=12 HEAD` ("unknown" outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OPSFLOW_COMMIT"),
    ")"
);

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old or the new content, never a part. Creates parent directories.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let named =
        |what: String, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| named(format!("cannot create directory {}", dir.display()), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(format!("cannot write {}", path.display()), e));
    }
    // The rename is only durable once the directory is: without this a crash can bring the old
    // content back after we acted on the new one.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| named(format!("cannot sync directory {}", dir.display()), e))
}

/// Installs the tracing subscriber: filter from the environment variable `env_var` (default
/// `info`), text or JSON lines on stderr. When stderr is the journal (systemd sets
/// `JOURNAL_STREAM` to its device and inode), lines carry their syslog priority as a `<N>`
/// prefix (journald's convention: error 3, warn 4, info 6, debug and trace 7) and no timestamp.
pub fn init_logging(env_var: &str, format: &str) {
    use tracing_subscriber::fmt::format::{format as fmt_format, JsonFields};
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match (logging::stderr_is_journal(), format == "json") {
        (true, true) => b
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(logging::Journal(fmt_format().json().without_time()))
            .try_init(),
        (true, false) => b
            .with_ansi(false)
            .event_format(logging::Journal(
                fmt_format().without_time().with_level(false),
            ))
            .try_init(),
        (false, true) => b.json().try_init(),
        (false, false) => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

mod logging;

/// IPv4 addresses of this host's interfaces, loopback excluded: (name, address, prefix
/// length), in the kernel's order (an interface's primary address first).
pub fn ipv4_interfaces() -> Vec<(String, std::net::Ipv4Addr, u8)> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || (*ifa.ifa_addr).sa_family as i32 != libc::AF_INET {
                continue;
            }
            if ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let addr = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                u32::from_be(m.sin_addr.s_addr).count_ones() as u8
            };
            out.push((name, addr, prefix));
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Positions and diagnostics for the config languages (dhcpd.conf, keepalived.conf):
/// `FILE:LINE:COL: [warning: ]message`.
pub mod diag {
    use std::fmt;
    use std::sync::Arc;

    /// Where something starts: file, 1-based line and column.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Pos {
        pub file: Arc<str>,
        pub line: usize,
        pub col: usize,
    }

    impl fmt::Display for Pos {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }

    /// A problem with its position.
    #[derive(Clone, Debug)]
    pub struct Diag {
        pub pos: Pos,
        pub message: String,
        pub warning: bool,
    }

    impl fmt::Display for Diag {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let kind = if self.warning { "warning: " } else { "" };
            write!(f, "{}: {kind}{}", self.pos, self.message)
        }
    }

    impl std::error::Error for Diag {}

    pub fn error(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: true,
        }
    }

    /// Levenshtein distance, for "did you mean" hints.
    pub fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn distance_and_display() {
            assert_eq!(
                super::distance("virtual_router_idd", "virtual_router_id"),
                1
            );
            assert_eq!(super::distance("", "abc"), 3);
            let p = super::Pos {
                file: "k.conf".into(),
                line: 4,
                col: 3,
            };
            assert_eq!(
                super::warning(&p, "x").to_string(),
                "k.conf:4:3: warning: x"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_commit_of_this_checkout() {
        let v = super::VERSION;
        let commit = v
            .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " (commit "))
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("bad VERSION {v:?}"));
        let git = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
        match git {
            Ok(o) if o.status.success() => {
                assert_eq!(commit, String::from_utf8_lossy(&o.stdout).trim())
            }
            _ => assert_eq!(commit, "unknown"),
        }
    }

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temporary() {
        let d = std::env::temp_dir().join(format!("opsflow-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("a/b/state.json");
        super::write_atomic(&p, b"one").expect("first write");
        super::write_atomic(&p, b"two").expect("second write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        let err = super::write_atomic(&p.join("under-a-file"), b"x").expect_err("not a dir");
        assert!(err.to_string().contains("state.json"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
