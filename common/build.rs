//! Computes the short commit for `opsflow_common::VERSION` (`--version` of every binary), and tells
//! cargo exactly which git files to watch so a new commit rebuilds it and nothing else does: the
//! HEAD of this checkout (in a worktree, `.git` is a file naming a directory of its own) and the
//! branch it points to (a loose ref in the common directory, or packed-refs).
//! "unknown" when git or the repository is absent; OPSFLOW_BUILD_COMMIT overrides (for builds
//! from a source tarball).

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        // a checkout owned by another user (sudo builds) is still ours to read
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn watch(p: &Path) {
    println!("cargo:rerun-if-changed={}", p.display());
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OPSFLOW_BUILD_COMMIT");
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()));
    let commit = match std::env::var("OPSFLOW_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git(&here, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    if let Some(gitdir) = git(&here, &["rev-parse", "--absolute-git-dir"]) {
        let gitdir = PathBuf::from(gitdir);
        let common = git(
            &here,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .map(PathBuf::from)
        .unwrap_or_else(|| gitdir.clone());
        let head = gitdir.join("HEAD");
        watch(&head);
        let head_text = std::fs::read_to_string(&head).unwrap_or_default();
        if let Some(r) = head_text.trim().strip_prefix("ref: ") {
            let loose = common.join(r);
            if loose.exists() {
                watch(&loose);
            } else if let Some(dir) = loose.parent().filter(|d| d.exists()) {
                // the branch is packed (or unborn): its loose file appears on the next commit
                watch(dir);
            }
        }
        let packed = common.join("packed-refs");
        if packed.exists() {
            watch(&packed);
        }
    }
    println!("cargo:rustc-env=OPSFLOW_COMMIT={commit}");
}
