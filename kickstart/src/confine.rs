//! Files served from a tree (`/files/`, `/repo/DISTRO/`) are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the tree's directory, as
//! tftpd opens its root: no `..`, absolute symlink or symlink out of the tree reaches a file
//! outside it, even if the tree changes between two requests.
//!
//! tftpd has the same idea in `tftpd/src/fs.rs` with raw `libc::syscall`; this one uses
//! rustix's safe `openat2`. Moving one helper into opsflow-common would touch tftpd, which
//! another change owns; kept here for now.

use std::fs::File;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path in a tree cannot be served.
#[derive(Debug)]
pub enum OpenError {
    /// Nothing there (404).
    NotFound,
    /// Out of the tree or not allowed (403); the reason goes to the log.
    Denied(&'static str),
    Io(std::io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotFound => f.write_str("not found"),
            OpenError::Denied(why) => f.write_str(why),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

fn map_errno(e: Errno) -> OpenError {
    match e {
        Errno::NOENT | Errno::NOTDIR => OpenError::NotFound,
        Errno::XDEV => OpenError::Denied("the path leads out of the tree (symlink)"),
        Errno::LOOP => OpenError::Denied("too many symlinks"),
        Errno::ACCESS | Errno::PERM => OpenError::Denied("permission denied"),
        Errno::NOSYS => OpenError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this kernel lacks openat2 (Linux 5.6+), which kickstart needs to confine /files/ and /repo/",
        )),
        e => OpenError::Io(e.into()),
    }
}

/// Opens `rel` (relative, no `..`; empty for the tree itself) below `root` for reading: a
/// regular file or a directory, never anything outside `root`.
pub fn open_beneath(root: &Path, rel: &Path) -> Result<File, OpenError> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(map_errno)?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(map_errno)?;
    Ok(File::from(fd))
}

/// The entries of a directory opened by [`open_beneath`]: (name, is a directory), sorted,
/// without hidden names. A symlink is listed as what it is, not followed.
pub fn list(dir: &File) -> std::io::Result<Vec<(String, bool)>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        out.push((name, e.file_type() == rustix::fs::FileType::Directory));
    }
    out.sort();
    Ok(out)
}

/// `s` with `& < > " '` as HTML entities.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for one URL path segment (RFC 3986 unreserved characters stay).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn symlinks_out_of_the_tree_are_refused_and_inside_ones_followed() {
        let d = std::env::temp_dir().join(format!("ks-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let tree = d.join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(d.join("secret"), "secret").unwrap();
        std::fs::write(tree.join("sub/ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), tree.join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", tree.join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc", tree.join("etc")).unwrap();
        std::os::unix::fs::symlink("sub/ok.txt", tree.join("inside")).unwrap();
        let read = |p: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut open_beneath(&tree, Path::new(p))?, &mut s)
                .map_err(OpenError::Io)?;
            Ok::<_, OpenError>(s)
        };
        assert_eq!(read("sub/ok.txt").unwrap(), "ok");
        assert_eq!(read("inside").unwrap(), "ok");
        for p in ["abs", "rel", "etc/passwd", "../secret", "/etc/passwd"] {
            assert!(
                matches!(read(p), Err(OpenError::Denied(_))),
                "{p}: {:?}",
                read(p)
            );
        }
        assert!(matches!(read("nothing"), Err(OpenError::NotFound)));
        let root = open_beneath(&tree, Path::new("")).unwrap();
        let names = list(&root).unwrap();
        assert_eq!(
            names,
            vec![
                ("abs".to_string(), false),
                ("etc".to_string(), false),
                ("inside".to_string(), false),
                ("rel".to_string(), false),
                ("sub".to_string(), true),
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(percent_encode("a b/<c>.rpm"), "a%20b%2F%3Cc%3E.rpm");
    }
}
