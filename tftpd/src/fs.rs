//! The served tree. Every open goes through `openat2(RESOLVE_BENEATH)` relative to the root
//! directory, so no name, `..` component or symlink can reach a file outside the root, even
//! if the tree changes while we look.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
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
    /// go, any `..` is refused, and an absolute name is accepted only when it lies under
    /// the root directory itself (`/srv/tftp/pxelinux.0`). Use a remap rule (`r ^/ `)
    /// to serve other absolute names relative to the root.
    pub fn relative(&self, name: &str) -> Result<PathBuf, OpenError> {
        let rest = if let Some(abs) = name.strip_prefix('/') {
            let root = self.canonical.to_string_lossy();
            let root_rel = root.trim_start_matches('/');
            match abs.strip_prefix(root_rel) {
                Some(r) if r.starts_with('/') || r.is_empty() => r,
                _ => return Err(OpenError::Denied("absolute path outside the root")),
            }
        } else {
            name
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

    /// Prepares a write: a temporary file beside the target, renamed over it by
    /// [`Upload::commit`]. A partial upload is never visible under the target name.
    pub fn create(&self, name: &str) -> Result<Upload, OpenError> {
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
        // refuse to replace something that is not a regular file (a directory, a device)
        if let Ok(existing) = openat2(
            &dir,
            Path::new(&file_name),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        ) {
            let meta = File::from(existing).metadata().map_err(OpenError::Io)?;
            if !meta.is_file() && !meta.file_type().is_symlink() {
                return Err(OpenError::Denied(
                    "the target exists and is not a regular file",
                ));
            }
        }
        let tmp = format!(
            ".{}.tftpd-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let fd = openat2(
            &dir,
            Path::new(&tmp),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o644,
        )
        .map_err(map_open_error)?;
        Ok(Upload {
            file: Some(File::from(fd)),
            dir,
            tmp: CString::new(tmp).map_err(|_| OpenError::Denied("bad name"))?,
            target: CString::new(file_name.as_bytes())
                .map_err(|_| OpenError::Denied("bad name"))?,
            done: false,
        })
    }
}

/// A file being received; removed unless committed.
#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    dir: OwnedFd,
    tmp: CString,
    target: CString,
    done: bool,
}

impl Upload {
    /// The temporary file to write into.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("upload file present until commit")
    }

    /// Flushes and renames the temporary file over the target.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        // SAFETY: both names are NUL-terminated and relative to our directory descriptor.
        let rc = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.tmp.as_ptr(),
                self.dir.as_raw_fd(),
                self.target.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: NUL-terminated name relative to our directory descriptor.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.tmp.as_ptr(), 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{symlink, PermissionsExt};

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
        for bad in [
            "../secret",
            "images/../../secret",
            "/etc/passwd",
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
        let mut up = r.create("images/new.bin").unwrap();
        up.file().write_all(b"data").unwrap();
        assert!(!r.path().join("images/new.bin").exists());
        up.commit().unwrap();
        assert_eq!(
            std::fs::read(r.path().join("images/new.bin")).unwrap(),
            b"data"
        );
        let mut up = r.create("aborted").unwrap();
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
        assert!(matches!(r.create("../outside"), Err(OpenError::Denied(_))));
        assert!(matches!(
            r.create("escape/x"),
            Err(OpenError::NotFound | OpenError::Denied(_))
        ));
        assert!(matches!(r.create("images"), Err(OpenError::Denied(_))));
        std::fs::remove_dir_all(base).unwrap();
    }
}
