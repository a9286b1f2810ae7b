//! The served tree. Every open goes through `openat2(RESOLVE_BENEATH)` relative to the root
//! directory, so no name, `..` component or symlink can reach a file outside the root, even
//! if the tree changes while we look.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a name cannot be served.
#[derive(Debug)]
pub enum OpenError {
    NotFound,
    /// Outside the root or not allowed; the reason goes to the log, the client sees
    /// "access violation".
    Denied(&'static str),
    Io(io::Error),
}

/// The TFTP root directory.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    canonical: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn openat2(dir: &OwnedFd, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let path = cpath(rel)?;
    // SAFETY: open_how is plain C data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, NUL-terminated path, and a correctly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn map_open_error(e: io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => OpenError::NotFound,
        Some(libc::EXDEV) => OpenError::Denied("the path leads outside the root (symlink)"),
        Some(libc::ELOOP) => OpenError::Denied("too many symlinks"),
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::Denied("permission denied"),
        Some(libc::EISDIR) => OpenError::Denied("is a directory"),
        _ => OpenError::Io(e),
    }
}

impl Root {
    /// Opens the root directory.
    pub fn open(path: &Path) -> io::Result<Root> {
        let canonical = path.canonicalize()?;
        let c = cpath(&canonical)?;
        // SAFETY: NUL-terminated path; we own the returned descriptor.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor from open(2).
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        // the kernel must support openat2; fail early and clearly if it does not
        match openat2(&dir, Path::new("."), libc::O_PATH, 0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kernel lacks openat2 (Linux 5.6+), which tftpd needs to confine paths to the root",
                ))
            }
            Err(e) => return Err(e),
        }
        Ok(Root { dir, canonical })
    }

    /// The canonical root path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Turns a requested name into a path relative to the root: `.` and empty components
    /// go, any `..` is refused. A leading `/` means the root, as tftp-hpa with `-s` and
    /// dnsmasq read it (GRUB asks for `/grub/grub.cfg`); a name that spells out the root
    /// directory itself (`/srv/tftp/pxelinux.0`) is accepted too. Confinement does not depend
    /// on this: every open is `RESOLVE_BENEATH` the root.
    pub fn relative(&self, name: &str) -> Result<PathBuf, OpenError> {
        let rest = match name.strip_prefix('/') {
            Some(abs) => {
                let root = self.canonical.to_string_lossy();
                match abs.strip_prefix(root.trim_start_matches('/')) {
                    Some(r) if r.starts_with('/') => r,
                    _ => abs,
                }
            }
            None => name,
        };
        let mut rel = PathBuf::new();
        for comp in rest.split('/') {
            match comp {
                "" | "." => {}
                ".." => return Err(OpenError::Denied("'..' in the path")),
                c => rel.push(c),
            }
        }
        if rel.as_os_str().is_empty() {
            return Err(OpenError::Denied("the name is the root directory"));
        }
        Ok(rel)
    }

    /// Opens a file for reading. It must be a regular, world-readable file (as tftp-hpa
    /// requires), so private files that happen to sit in the tree are not served.
    pub fn open_read(&self, name: &str) -> Result<(File, u64), OpenError> {
        let rel = self.relative(name)?;
        let fd = openat2(
            &self.dir,
            &rel,
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
            0,
        )
        .map_err(map_open_error)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::Denied("not a regular file"));
        }
        if meta.mode() & 0o004 == 0 {
            return Err(OpenError::Denied("the file is not world-readable"));
        }
        Ok((file, meta.len()))
    }

    /// Prepares a write as tftp-hpa allows it: an existing target must be a world-writable
    /// regular file (never a symlink); a missing one is created only when `create` is set
    /// (`--create`, tftp-hpa's `-c`), else [`OpenError::NotFound`]. The data goes to a
    /// temporary file beside the target, renamed over it by [`Upload::commit`], so a partial
    /// upload is never visible under the target name; a replaced file keeps its mode (and,
    /// when we may, its owner).
    pub fn create(&self, name: &str, create: bool) -> Result<Upload, OpenError> {
        let rel = self.relative(name)?;
        let file_name = rel
            .file_name()
            .ok_or(OpenError::Denied("no file name"))?
            .to_os_string();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent_rel = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent
        };
        let dir = openat2(&self.dir, &parent_rel, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(map_open_error)?;
        let existing = match openat2(
            &dir,
            Path::new(&file_name),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => Some(File::from(fd).metadata().map_err(OpenError::Io)?),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(map_open_error(e)),
        };
        match &existing {
            Some(m) if m.file_type().is_symlink() => {
                return Err(OpenError::Denied("the target is a symlink"))
            }
            Some(m) if !m.is_file() => {
                return Err(OpenError::Denied(
                    "the target exists and is not a regular file",
                ))
            }
            Some(m) if m.mode() & 0o002 == 0 => {
                return Err(OpenError::Denied(
                    "the target exists and is not world-writable",
                ))
            }
            Some(_) => {}
            None if !create => return Err(OpenError::NotFound),
            None => {}
        }
        let tmp = format!(
            ".{}.tftpd-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let target =
            CString::new(file_name.as_bytes()).map_err(|_| OpenError::Denied("bad name"))?;
        // a new file gets 0666 less the umask, as tftp-hpa creates it
        let fd = match openat2(
            &dir,
            Path::new(&tmp),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o666,
        ) {
            Ok(fd) => fd,
            // an unprivileged server may not write the directory of a world-writable file:
            // then the file is written in place, as tftp-hpa always does
            Err(e) if existing.is_some() && e.raw_os_error() == Some(libc::EACCES) => {
                let fd = openat2(
                    &dir,
                    Path::new(&file_name),
                    libc::O_WRONLY | libc::O_TRUNC | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(map_open_error)?;
                let file = File::from(fd);
                let m = file.metadata().map_err(OpenError::Io)?;
                if !m.is_file() || m.mode() & 0o002 == 0 {
                    return Err(OpenError::Denied("the target changed while it was opened"));
                }
                return Ok(Upload {
                    file: Some(file),
                    dir,
                    tmp: None,
                    target,
                    done: false,
                });
            }
            Err(e) => return Err(map_open_error(e)),
        };
        let upload = Upload {
            file: Some(File::from(fd)),
            dir,
            tmp: Some(CString::new(tmp).map_err(|_| OpenError::Denied("bad name"))?),
            target,
            done: false,
        };
        if let Some(m) = existing {
            let f = upload.file.as_ref().ok_or(OpenError::Denied("no file"))?;
            // the owner is kept only when we are allowed to give files away (root)
            let _ = std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid()));
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o777))
                .map_err(OpenError::Io)?;
        }
        Ok(upload)
    }
}

/// A file being received: a temporary file (removed unless committed), or the target itself
/// when only that could be written.
#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    dir: OwnedFd,
    tmp: Option<CString>,
    target: CString,
    done: bool,
}

impl Upload {
    /// The file to write into.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("upload file present until commit")
    }

    /// Flushes the data and renames the temporary file over the target.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let Some(tmp) = &self.tmp else {
            self.done = true;
            return Ok(());
        };
        // SAFETY: both names are NUL-terminated and relative to our directory descriptor.
        let rc = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                tmp.as_ptr(),
                self.dir.as_raw_fd(),
                self.target.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.done = true;
        // the rename itself must survive a crash
        if let Ok(d) = openat2(
            &self.dir,
            Path::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) {
            File::from(d).sync_all()?;
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let (false, Some(tmp)) = (self.done, &self.tmp) {
            // SAFETY: NUL-terminated name relative to our directory descriptor.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), tmp.as_ptr(), 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    fn tree() -> (PathBuf, Root) {
        let base = std::env::temp_dir().join(format!(
            "tftpd-fs-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::write(root.join("pxelinux.0"), b"boot").unwrap();
        std::fs::write(root.join("images/vmlinuz"), b"kernel").unwrap();
        std::fs::write(base.join("secret"), b"secret").unwrap();
        symlink(base.join("secret"), root.join("escape")).unwrap();
        symlink("../secret", root.join("escape-rel")).unwrap();
        symlink("images/vmlinuz", root.join("inside")).unwrap();
        std::fs::write(root.join("private"), b"p").unwrap();
        std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let r = Root::open(&root).unwrap();
        (base, r)
    }

    fn read(r: &Root, name: &str) -> Result<String, OpenError> {
        let (mut f, _) = r.open_read(name)?;
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        Ok(s)
    }

    #[test]
    fn serves_inside_refuses_outside() {
        let (base, r) = tree();
        assert_eq!(read(&r, "pxelinux.0").unwrap(), "boot");
        assert_eq!(read(&r, "./images//vmlinuz").unwrap(), "kernel");
        assert_eq!(read(&r, "inside").unwrap(), "kernel");
        let abs = format!("{}/images/vmlinuz", r.path().display());
        assert_eq!(read(&r, &abs).unwrap(), "kernel");
        // a leading slash is the root; nothing above it is reachable that way either
        assert_eq!(read(&r, "/images/vmlinuz").unwrap(), "kernel");
        assert_eq!(read(&r, "//pxelinux.0").unwrap(), "boot");
        assert!(matches!(read(&r, "/etc/passwd"), Err(OpenError::NotFound)));
        for bad in [
            "../secret",
            "images/../../secret",
            "/../secret",
            "/escape",
            "escape",
            "escape-rel",
            "private",
            "images",
            "/",
        ] {
            assert!(
                matches!(read(&r, bad), Err(OpenError::Denied(_))),
                "{bad} was not refused"
            );
        }
        assert!(matches!(read(&r, "no/such"), Err(OpenError::NotFound)));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn uploads_appear_only_when_committed() {
        let (base, r) = tree();
        let mut up = r.create("images/new.bin", true).unwrap();
        up.file().write_all(b"data").unwrap();
        assert!(!r.path().join("images/new.bin").exists());
        up.commit().unwrap();
        assert_eq!(
            std::fs::read(r.path().join("images/new.bin")).unwrap(),
            b"data"
        );
        let mut up = r.create("aborted", true).unwrap();
        up.file().write_all(b"x").unwrap();
        drop(up);
        let left: Vec<_> = std::fs::read_dir(r.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.iter()
                .all(|n| !n.to_string_lossy().contains("aborted")),
            "{left:?}"
        );
        assert!(matches!(
            r.create("../outside", true),
            Err(OpenError::Denied(_))
        ));
        assert!(matches!(
            r.create("escape/x", true),
            Err(OpenError::NotFound | OpenError::Denied(_))
        ));
        assert!(matches!(
            r.create("images", true),
            Err(OpenError::Denied(_))
        ));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn writes_follow_tftp_hpa_rules() {
        let (base, r) = tree();
        // an existing file that is not world-writable is never replaced
        assert!(matches!(
            r.create("pxelinux.0", true),
            Err(OpenError::Denied(
                "the target exists and is not world-writable"
            ))
        ));
        assert_eq!(std::fs::read(r.path().join("pxelinux.0")).unwrap(), b"boot");
        // a missing file is created only with `create`
        assert!(matches!(
            r.create("new.cfg", false),
            Err(OpenError::NotFound)
        ));
        assert!(r.create("new.cfg", true).is_ok());
        // symlinks are never written through, even to a world-writable file
        let open = r.path().join("open.log");
        std::fs::write(&open, b"old").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        symlink("open.log", r.path().join("link.log")).unwrap();
        assert!(matches!(
            r.create("link.log", true),
            Err(OpenError::Denied("the target is a symlink"))
        ));
        // a world-writable file is replaced and keeps its mode
        let mut up = r.create("open.log", false).unwrap();
        up.file().write_all(b"new").unwrap();
        up.commit().unwrap();
        assert_eq!(std::fs::read(&open).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o777, 0o666);
        std::fs::remove_dir_all(base).unwrap();
    }
}
