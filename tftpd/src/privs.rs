//! Dropping root after binding, as tftp-hpa's `-u` does: the supplementary groups of the
//! user (initgroups), then its group, then its uid; verified afterwards, including that root
//! cannot be taken back.

use anyhow::{bail, Context};
use nix::unistd::{self, Gid, Uid, User};

/// Looks a user up in the password database.
pub fn lookup(name: &str) -> anyhow::Result<User> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => bail!("no such user (create it, e.g. `adduser --system {name}`)"),
        Err(e) => Err(e).context("cannot read the password database"),
    }
}

/// Becomes `user` for good. Call before any thread is started; glibc applies the changes to
/// every thread anyway.
pub fn drop_to(user: &User) -> anyhow::Result<()> {
    let cname = std::ffi::CString::new(user.name.as_bytes())
        .with_context(|| format!("user name {:?} has a NUL byte", user.name))?;
    unistd::initgroups(&cname, user.gid)
        .with_context(|| format!("cannot set the groups of {}", user.name))?;
    unistd::setgid(user.gid).with_context(|| format!("cannot set gid {}", user.gid))?;
    unistd::setuid(user.uid).with_context(|| format!("cannot set uid {}", user.uid))?;
    verify(user.uid, user.gid)
        .with_context(|| format!("privileges were not dropped to {}", user.name))
}

fn verify(uid: Uid, gid: Gid) -> anyhow::Result<()> {
    let (ruid, euid) = (unistd::getuid(), unistd::geteuid());
    let (rgid, egid) = (unistd::getgid(), unistd::getegid());
    if (ruid, euid, rgid, egid) != (uid, uid, gid, gid) {
        bail!("running as uid {ruid}/{euid} gid {rgid}/{egid}, want {uid} and {gid}");
    }
    if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("setuid(0) still succeeds");
    }
    Ok(())
}
