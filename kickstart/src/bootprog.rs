//! The boot programs the TFTP root must hold: pxelinux and the modules its menu loads, a GRUB
//! network EFI image, iPXE's chain-loaders. Each comes from a distribution package's file (the
//! Debian paths below) or from `[server.boot_programs]` in the inventory, which names a file
//! for a TFTP path and wins over the package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::render::{Global, Site};

/// Where pxelinux's BIOS modules live (syslinux-common).
pub const SYSLINUX_BIOS_MODULES: &str = "/usr/lib/syslinux/modules/bios";
/// grub-efi-amd64-bin's module directory, which `grub-mkimage` builds an image from.
pub const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";
/// The modules of a GRUB netboot image built with `grub-mkimage -p /grub`.
pub const GRUB_NET_MODULES: &[&str] = &[
    "efinet",
    "tftp",
    "http",
    "net",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "regexp",
    "part_gpt",
    "fat",
    "efi_gop",
    "all_video",
];

/// Where one boot program comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file, copied as it is.
    File(PathBuf),
    /// A GRUB netboot image `grub-mkimage` builds from [`GRUB_EFI_MODULES`], prefix `/grub`.
    GrubMkimage,
}

/// One boot program: its path in the TFTP root and where it comes from, or why not.
#[derive(Clone, Debug)]
pub struct BootProgram {
    /// Relative to the TFTP root.
    pub tftp_path: String,
    pub origin: Result<Origin, String>,
}

struct Want {
    tftp_path: String,
    /// Package files, in order of preference.
    candidates: Vec<PathBuf>,
    /// What to install when none of them exists.
    package: &'static str,
    grub: bool,
}

fn dir_of(tftp_path: &str) -> String {
    match tftp_path.rfind('/') {
        Some(i) => tftp_path[..=i].to_string(),
        None => String::new(),
    }
}

fn base_of(tftp_path: &str) -> &str {
    tftp_path.rsplit('/').next().unwrap_or(tftp_path)
}

/// The `.c32` modules a pxelinux config loads (`DEFAULT`, `UI`, `KERNEL`, `COM32` lines), with
/// the libraries they need: every COM32 module needs libcom32.c32, the menus libutil.c32 too.
pub fn pxelinux_modules(config: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in config.lines() {
        let mut words = line.split_whitespace();
        let (Some(k), Some(v)) = (words.next(), words.next()) else {
            continue;
        };
        let k = k.to_ascii_lowercase();
        let v = v.to_ascii_lowercase();
        if !matches!(k.as_str(), "default" | "ui" | "kernel" | "com32") || !v.ends_with(".c32") {
            continue;
        }
        let m = base_of(&v).to_string();
        if m == "ldlinux.c32" {
            continue;
        }
        if m == "menu.c32" || m == "vesamenu.c32" {
            out.insert("libutil.c32".to_string());
        }
        out.insert("libcom32.c32".to_string());
        out.insert(m);
    }
    out
}

fn wanted(site: &Site) -> Vec<Want> {
    let server = &site.inv.server;
    let mut out = Vec::new();
    let bios = server.bios_boot_file.trim_start_matches('/').to_string();
    if !bios.contains("://") {
        let d = dir_of(&bios);
        let name = base_of(&bios).to_string();
        out.push(Want {
            candidates: vec![Path::new("/usr/lib/PXELINUX").join(&name)],
            tftp_path: bios,
            package: "pxelinux",
            grub: false,
        });
        let mut modules = BTreeSet::from(["ldlinux.c32".to_string()]);
        if let Ok(menu) = site.render_global(Global::PxeMenu) {
            modules.extend(pxelinux_modules(&menu));
        }
        for m in modules {
            out.push(Want {
                candidates: vec![Path::new(SYSLINUX_BIOS_MODULES).join(&m)],
                tftp_path: format!("{d}{m}"),
                package: "syslinux-common",
                grub: false,
            });
        }
    }
    let uefi = server.uefi_boot_file.trim_start_matches('/').to_string();
    if !uefi.contains("://") {
        out.push(Want {
            tftp_path: uefi,
            candidates: vec![PathBuf::from(
                "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
            )],
            package: "grub-efi-amd64-signed (or grub-efi-amd64-bin)",
            grub: true,
        });
    }
    for f in ["undionly.kpxe", "ipxe.efi"] {
        out.push(Want {
            tftp_path: f.to_string(),
            candidates: vec![Path::new("/usr/lib/ipxe").join(f)],
            package: "ipxe",
            grub: false,
        });
    }
    out
}

fn grub_mkimage_available() -> bool {
    Path::new(GRUB_EFI_MODULES).join("efinet.mod").is_file()
        && std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("grub-mkimage").is_file()))
}

/// Where `w` comes from: the inventory's file, the first package file there is, or a
/// `grub-mkimage` image when `mkimage` can build one; else what to install.
fn resolve(
    w: &Want,
    overrides: &BTreeMap<String, PathBuf>,
    mkimage: bool,
) -> Result<Origin, String> {
    if let Some(p) = overrides.get(&w.tftp_path) {
        return if p.is_file() {
            Ok(Origin::File(p.clone()))
        } else {
            Err(format!(
                "boot program {}: {} (server.boot_programs) is not a file",
                w.tftp_path,
                p.display()
            ))
        };
    }
    if let Some(p) = w.candidates.iter().find(|p| p.is_file()) {
        return Ok(Origin::File(p.clone()));
    }
    if w.grub && mkimage {
        return Ok(Origin::GrubMkimage);
    }
    let looked: Vec<String> = w
        .candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Err(format!(
        "boot program {}: {} not found: install the package {} (apt-get install {}), or name a file for it in [server.boot_programs]",
        w.tftp_path,
        looked.join(", "),
        w.package,
        w.package.split(' ').next().unwrap_or(w.package)
    ))
}

/// Every boot program the TFTP root needs and where each comes from.
pub fn programs(site: &Site) -> Vec<BootProgram> {
    let overrides = &site.inv.server.boot_programs;
    let mkimage = grub_mkimage_available();
    wanted(site)
        .into_iter()
        .map(|w| BootProgram {
            origin: resolve(&w, overrides, mkimage),
            tftp_path: w.tftp_path,
        })
        .collect()
}

/// `[server.boot_programs]` keys that name no boot program the site needs.
pub fn unknown_overrides(site: &Site) -> Vec<String> {
    let known: BTreeSet<String> = wanted(site).into_iter().map(|w| w.tftp_path).collect();
    site.inv
        .server
        .boot_programs
        .keys()
        .filter(|k| !known.contains(*k))
        .map(|k| {
            format!(
                "server.boot_programs: {k:?} is not a boot program of this site (one of: {})",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

/// Builds the GRUB netboot image into `out`.
pub fn grub_mkimage(out: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("grub-mkimage")
        .args([
            "-O",
            "x86_64-efi",
            "-p",
            "/grub",
            "-d",
            GRUB_EFI_MODULES,
            "-o",
        ])
        .arg(out)
        .args(GRUB_NET_MODULES)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run grub-mkimage: {e}"))?;
    if !status.success() {
        anyhow::bail!("grub-mkimage -o {} failed: {status}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_menu_needs_its_libraries() {
        let m = pxelinux_modules("DEFAULT menu.c32\nPROMPT 0\nLABEL x\n  KERNEL chain.c32\n");
        let m: Vec<&str> = m.iter().map(String::as_str).collect();
        assert_eq!(m, ["chain.c32", "libcom32.c32", "libutil.c32", "menu.c32"]);
    }

    fn grub_want() -> Want {
        Want {
            tftp_path: "grubx64.efi".into(),
            candidates: vec!["/nonexistent/grubnetx64.efi.signed".into()],
            package: "grub-efi-amd64-signed (or grub-efi-amd64-bin)",
            grub: true,
        }
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let e = resolve(&grub_want(), &BTreeMap::new(), false).unwrap_err();
        assert!(
            e.contains("grubx64.efi") && e.contains("apt-get install grub-efi-amd64-signed"),
            "{e}"
        );
        assert_eq!(
            resolve(&grub_want(), &BTreeMap::new(), true),
            Ok(Origin::GrubMkimage)
        );
        let over = BTreeMap::from([(
            "grubx64.efi".to_string(),
            PathBuf::from("/nonexistent/x.efi"),
        )]);
        let e = resolve(&grub_want(), &over, true).unwrap_err();
        assert!(
            e.contains("/nonexistent/x.efi (server.boot_programs) is not a file"),
            "{e}"
        );
    }

    #[test]
    fn a_config_without_modules_needs_none() {
        assert!(pxelinux_modules("DEFAULT install\nLABEL install\n  KERNEL vmlinuz\n").is_empty());
        assert!(pxelinux_modules("UI ldlinux.c32\n").is_empty());
    }
}
