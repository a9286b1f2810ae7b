//! `kickstart sync`: the TFTP tree and dhcpd.conf, written atomically and only when changed.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bootprog::Origin;
use crate::inventory::System;
use crate::render::{Global, RenderError, Site, What};
use crate::state::write_atomic;

/// Where a file's content comes from.
pub enum Source {
    Text(String),
    /// A copy of a local file (kernel, initrd, a boot program).
    Copy(PathBuf),
    /// A GRUB netboot image built by `grub-mkimage` ([`crate::bootprog::grub_mkimage`]).
    GrubMkimage,
}

/// One file `sync` maintains.
pub struct Planned {
    pub path: PathBuf,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created(PathBuf),
    Updated(PathBuf),
    Removed(PathBuf),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Created(p) => write!(f, "created {}", p.display()),
            Change::Updated(p) => write!(f, "updated {}", p.display()),
            Change::Removed(p) => write!(f, "removed {}", p.display()),
        }
    }
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    pub warnings: Vec<String>,
}

/// `root` + an absolute path from the inventory.
pub fn under(root: Option<&Path>, p: &Path) -> PathBuf {
    match root {
        Some(r) => r.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    }
}

fn boot_files(site: &Site, root: Option<&Path>, s: &System) -> Result<Vec<Planned>, RenderError> {
    let tftp = under(root, &site.inv.server.tftp_root);
    Ok(vec![
        Planned {
            path: tftp.join("pxelinux.cfg").join(s.mac_file()),
            source: Source::Text(site.render(s, What::Pxelinux)?),
        },
        Planned {
            path: tftp.join("grub").join(format!("grub.cfg-{}", s.mac_file())),
            source: Source::Text(site.render(s, What::Grub)?),
        },
    ])
}

/// Every file sync maintains, with its content. Kernel and initrd files that do not exist
/// yet are left out with a warning.
pub fn plan(
    site: &Site,
    root: Option<&Path>,
) -> Result<(Vec<Planned>, Vec<String>), Vec<RenderError>> {
    let inv = &site.inv;
    let tftp = under(root, &inv.server.tftp_root);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (g, path) in [
        (Global::Dhcpd, under(root, &inv.server.dhcpd_conf)),
        (Global::PxeMenu, tftp.join("pxelinux.cfg/default")),
        (Global::GrubMenu, tftp.join("grub/grub.cfg")),
        (Global::IpxeBoot, tftp.join(&inv.server.ipxe_boot_file)),
    ] {
        match site.render_global(g) {
            Ok(t) => out.push(Planned {
                path,
                source: Source::Text(t),
            }),
            Err(e) => errors.push(e),
        }
    }
    for s in &inv.systems {
        match boot_files(site, root, s) {
            Ok(f) => out.extend(f),
            Err(e) => errors.push(e),
        }
    }
    for p in crate::bootprog::programs(site) {
        match p.origin {
            Ok(o) => out.push(Planned {
                path: tftp.join(&p.tftp_path),
                source: match o {
                    Origin::File(f) => Source::Copy(f),
                    Origin::GrubMkimage => Source::GrubMkimage,
                },
            }),
            Err(e) => warnings.push(format!("{e}; {} not written", p.tftp_path)),
        }
    }
    for d in inv.distros.values() {
        for (src, dst) in [(&d.kernel, &d.tftp_kernel), (&d.initrd, &d.tftp_initrd)] {
            if src.starts_with("http://") || src.starts_with("https://") {
                warnings.push(format!(
                    "distro {}: {src} is a URL; iPXE and GRUB load it over HTTP, BIOS pxelinux clients cannot (put a local file in the inventory for them)",
                    d.name
                ));
                continue;
            }
            if Path::new(src).is_file() {
                out.push(Planned {
                    path: tftp.join(dst),
                    source: Source::Copy(PathBuf::from(src)),
                });
            } else {
                warnings.push(format!(
                    "distro {}: {src} does not exist; {} not written",
                    d.name,
                    tftp.join(dst).display()
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok((out, warnings))
    } else {
        Err(errors)
    }
}

fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (ma, mb) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// A temporary name in `path`'s directory (created if missing), to rename over `path`.
fn tmp_beside(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(format!(".copy.tmp.{}", std::process::id())))
}

/// Writes one planned file if its content differs; returns the change, if any.
pub fn apply(p: &Planned) -> anyhow::Result<Option<Change>> {
    let exists = p.path.exists();
    match &p.source {
        Source::Text(t) => {
            if exists && std::fs::read(&p.path).ok().as_deref() == Some(t.as_bytes()) {
                return Ok(None);
            }
            write_atomic(&p.path, t.as_bytes())?;
        }
        Source::Copy(src) => {
            if exists && same_file(src, &p.path).unwrap_or(false) {
                return Ok(None);
            }
            let tmp = tmp_beside(&p.path)?;
            std::fs::copy(src, &tmp)
                .with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
            std::fs::rename(&tmp, &p.path)
                .with_context(|| format!("cannot rename into {}", p.path.display()))?;
        }
        Source::GrubMkimage => {
            let tmp = tmp_beside(&p.path)?;
            let built = crate::bootprog::grub_mkimage(&tmp);
            if built.is_err() || (exists && same_file(&tmp, &p.path).unwrap_or(false)) {
                let _ = std::fs::remove_file(&tmp);
                return built.map(|()| None);
            }
            std::fs::rename(&tmp, &p.path)
                .with_context(|| format!("cannot rename into {}", p.path.display()))?;
        }
    }
    Ok(Some(if exists {
        Change::Updated(p.path.clone())
    } else {
        Change::Created(p.path.clone())
    }))
}

/// Files in our own directories that no system or distro wants any more: per-MAC configs of
/// removed systems, copies of removed distros. Nothing else is ever deleted.
fn stale(site: &Site, root: Option<&Path>, wanted: &[PathBuf]) -> Vec<PathBuf> {
    let tftp = under(root, &site.inv.server.tftp_root);
    let mut out = Vec::new();
    let ours = |dir: PathBuf, prefix: &str, out: &mut Vec<PathBuf>| {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(prefix) && !wanted.contains(&e.path()) && e.path().is_file() {
                    out.push(e.path());
                }
            }
        }
    };
    ours(tftp.join("pxelinux.cfg"), "01-", &mut out);
    ours(tftp.join("grub"), "grub.cfg-01-", &mut out);
    if let Ok(rd) = std::fs::read_dir(tftp.join("distros")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !site.inv.distros.contains_key(&n) {
                for f in ["vmlinuz", "initrd.img"] {
                    let p = e.path().join(f);
                    if p.is_file() {
                        out.push(p);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// The whole sync.
pub fn sync(site: &Site, root: Option<&Path>) -> anyhow::Result<Report> {
    let (plan, warnings) = plan(site, root).map_err(|errs| crate::render::all_errors(&errs))?;
    let mut report = Report {
        warnings,
        ..Report::default()
    };
    for p in &plan {
        match apply(p)? {
            Some(c) => report.changes.push(c),
            None => report.unchanged += 1,
        }
    }
    let wanted: Vec<PathBuf> = plan.iter().map(|p| p.path.clone()).collect();
    for p in stale(site, root, &wanted) {
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        report.changes.push(Change::Removed(p));
    }
    Ok(report)
}

/// Rewrites one system's boot configs (after its netboot changed), if the TFTP tree has been
/// synced to `root`; returns the changes.
pub fn sync_system(site: &Site, root: Option<&Path>, s: &System) -> anyhow::Result<Vec<Change>> {
    let tftp = under(root, &site.inv.server.tftp_root);
    if !tftp.join("pxelinux.cfg").is_dir() {
        return Ok(Vec::new());
    }
    let files = boot_files(site, root, s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for f in &files {
        if let Some(c) = apply(f)? {
            out.push(c);
        }
    }
    Ok(out)
}
