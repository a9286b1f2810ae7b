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
/// Calendar dates from Unix time (UTC), without a date crate: the two formats the daemons
/// write (RFC 3339 in JSON and logs, ISC's lease-file form) need only the civil-date
/// conversion (Howard Hinnant's algorithm).
pub mod time {
    /// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
    pub fn civil(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    /// (year, month, day) to days since 1970-01-01.
    pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
        let doy = (153 * mp + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// RFC 3339 in UTC for Unix seconds: `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(t: u64) -> String {
        let days = (t / 86_400) as i64;
        let (y, m, d) = civil(days);
        let s = t % 86_400;
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    /// RFC 3339 for a `SystemTime` (before 1970 reads as 1970).
    pub fn rfc3339_system(t: std::time::SystemTime) -> String {
        rfc3339(
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_round_trip_and_format() {
            assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
            assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
            assert_eq!(rfc3339(1_796_036_400), "2026-11-30T11:00:00Z");
            for days in [-800_000i64, -1, 0, 11_016, 20_000, 2_000_000] {
                let (y, m, d) = civil(days);
                assert_eq!(days_from_civil(y, m, d), days);
            }
        }
    }
}

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
        /// `FILE:LINE:COL`, or `FILE` for the file as a whole (line 0).
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.line == 0 {
                write!(f, "{}", self.file)
            } else {
                write!(f, "{}:{}:{}", self.file, self.line, self.col)
            }
        }
    }

    impl Pos {
        /// The file as a whole (shown as just its name).
        pub fn file_only(file: &str) -> Pos {
            Pos {
                file: file.into(),
                line: 0,
                col: 0,
            }
        }
    }

    /// Why a config file could not be read, in words: where, for text that is not UTF-8
    /// (`line` 0 when it is the file as a whole).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Unreadable {
        pub line: usize,
        pub col: usize,
        pub reason: String,
        /// The file is not there (the caller may name the flag that gives it).
        pub missing: bool,
    }

    /// Reads a config file as UTF-8 text. The error says what is wrong in words ("no such
    /// file", "it is a directory", ...), and where the first byte that is not UTF-8 is.
    pub fn read_text(path: &std::path::Path) -> Result<String, Unreadable> {
        use std::io::ErrorKind;
        let whole = |reason: String, missing| Unreadable {
            line: 0,
            col: 0,
            reason,
            missing,
        };
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => whole("no such file".into(), true),
            ErrorKind::PermissionDenied => whole(
                "permission denied (run as a user who may read it, or change its mode)".into(),
                false,
            ),
            ErrorKind::IsADirectory => whole("it is a directory, not a file".into(), false),
            _ => whole(e.to_string(), false),
        })?;
        String::from_utf8(bytes).map_err(|e| {
            let b = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line_start = b[..at]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i + 1);
            Unreadable {
                line: b[..at].iter().filter(|&&c| c == b'\n').count() + 1,
                col: String::from_utf8_lossy(&b[line_start..at]).chars().count() + 1,
                reason: format!(
                    "byte 0x{:02x} is not UTF-8 text: save the file as UTF-8",
                    b[at]
                ),
                missing: false,
            }
        })
    }

    impl Unreadable {
        /// The diagnostic for `path` (shown as `file`): at the bad byte, or at `from` (the
        /// include that named it) or the file itself; `hint` follows a missing file's reason.
        pub fn diag(&self, file: &str, from: Option<&Pos>, hint: &str) -> Diag {
            let pos = if self.line > 0 {
                Pos {
                    file: file.into(),
                    line: self.line,
                    col: self.col,
                }
            } else {
                from.cloned().unwrap_or_else(|| Pos::file_only(file))
            };
            let mut message = if self.line > 0 || from.is_none() {
                format!("cannot read it: {}", self.reason)
            } else {
                format!("cannot read {file}: {}", self.reason)
            };
            if self.missing && !hint.is_empty() {
                message.push_str(&format!(" ({hint})"));
            }
            error(&pos, message)
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

    /// A TOML (serde) error message in a config file's words: `expected u32` becomes
    /// `expected a whole number`, `a sequence` a list, `missing field` a missing key; the
    /// message's later lines (the parser's hints) are joined with "; ".
    pub fn toml_message(msg: &str) -> String {
        let mut m = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        for (from, to) in [
            ("expected usize", "expected a whole number (0 or more)"),
            ("expected u8", "expected a whole number from 0 to 255"),
            ("expected u16", "expected a whole number from 0 to 65535"),
            ("expected u32", "expected a whole number (0 or more)"),
            ("expected u64", "expected a whole number (0 or more)"),
            ("expected i32", "expected a whole number"),
            ("expected i64", "expected a whole number"),
            ("expected f64", "expected a number"),
            ("expected f32", "expected a number"),
            (
                "expected a sequence",
                "expected a list, like [\"a\", \"b\"]",
            ),
            ("expected a map", "expected a table"),
            ("missing field", "missing key"),
            ("unknown field", "unknown key"),
        ] {
            m = m.replace(from, to);
        }
        m
    }

    /// Line/column lookup for byte offsets of one file's text (TOML spans, parser offsets).
    pub struct Lines {
        file: Arc<str>,
        starts: Vec<usize>,
    }

    impl Lines {
        pub fn new(file: &str, text: &str) -> Self {
            let mut starts = vec![0];
            starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
            Lines {
                file: file.into(),
                starts,
            }
        }

        /// The file name positions carry.
        pub fn file(&self) -> &Arc<str> {
            &self.file
        }

        /// The position of byte `offset` (clamped to the text).
        pub fn pos(&self, offset: usize) -> Pos {
            let line = self.starts.partition_point(|&s| s <= offset).max(1);
            Pos {
                file: self.file.clone(),
                line,
                col: offset.saturating_sub(self.starts[line - 1]) + 1,
            }
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
        fn lines_map_offsets_to_line_and_column() {
            let l = super::Lines::new("f.toml", "a = 1\nbb = 2\n\nc");
            assert_eq!(l.pos(0).to_string(), "f.toml:1:1");
            assert_eq!(l.pos(4).to_string(), "f.toml:1:5");
            assert_eq!(l.pos(6).to_string(), "f.toml:2:1");
            assert_eq!(l.pos(9).to_string(), "f.toml:2:4");
            assert_eq!(l.pos(13).to_string(), "f.toml:3:1");
            assert_eq!(l.pos(14).to_string(), "f.toml:4:1");
        }

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
            assert_eq!(super::Pos::file_only("k.conf").to_string(), "k.conf");
        }

        #[test]
        fn toml_messages_in_a_config_files_words() {
            assert_eq!(
                super::toml_message("invalid type: string \"an hour\", expected u32\n"),
                "invalid type: string \"an hour\", expected a whole number (0 or more)"
            );
            assert_eq!(
                super::toml_message("invalid type: string \"a-b\", expected a sequence"),
                "invalid type: string \"a-b\", expected a list, like [\"a\", \"b\"]"
            );
            assert_eq!(
                super::toml_message("missing field `server`"),
                "missing key `server`"
            );
            assert_eq!(
                super::toml_message("invalid table header\nexpected `.`, `]`\n"),
                "invalid table header; expected `.`, `]`"
            );
        }

        #[test]
        fn unreadable_files_say_why_in_words_and_where() {
            let dir = std::env::temp_dir().join(format!("diag-read-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let show = |name: &str, from: Option<&super::Pos>| {
                let p = dir.join(name);
                let u = super::read_text(&p).unwrap_err();
                u.diag(name, from, "give it with --config").to_string()
            };
            assert_eq!(
                show("none.conf", None),
                "none.conf: cannot read it: no such file (give it with --config)"
            );
            let inc = super::Pos {
                file: "main.conf".into(),
                line: 3,
                col: 9,
            };
            assert_eq!(
                show("none.conf", Some(&inc)),
                "main.conf:3:9: cannot read none.conf: no such file (give it with --config)"
            );
            std::fs::create_dir_all(dir.join("d.conf")).unwrap();
            assert_eq!(
                show("d.conf", None),
                "d.conf: cannot read it: it is a directory, not a file"
            );
            // the column counts characters: 'é' is two bytes and one column
            std::fs::write(dir.join("latin1.conf"), b"ok\n\xc3\xa9a\xe9t\xe9\n").unwrap();
            assert_eq!(
                show("latin1.conf", None),
                "latin1.conf:2:3: cannot read it: byte 0xe9 is not UTF-8 text: save the file as UTF-8"
            );
            let _ = std::fs::remove_dir_all(&dir);
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
