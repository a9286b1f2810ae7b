//! The packages' maintainer scripts (packaging/maintainer-scripts.sh), run as dpkg runs them,
//! as root, with the real adduser/deluser, in a mount namespace where /etc is a copy and /srv,
//! /run and /var/lib are empty: the machine keeps its users and directories.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::process::Command;

use opsflow_tests::require;

/// Runs `script` with bash in a private mount namespace prepared as above, `W` a scratch
/// directory and the working directory the repository root; returns (success, output).
fn in_scratch_root(tag: &str, script: &str) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let w = std::env::temp_dir().join(format!("opsflow-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&w);
    std::fs::create_dir_all(&w).unwrap();
    let prelude = r#"set -eu
fail() { echo "FAIL: $*"; exit 1; }
cp -a /etc "$W/etc"
mkdir -p "$W/empty-run" "$W/empty-lib" "$W/empty-srv"
mount --bind "$W/etc" /etc
mount --bind "$W/empty-srv" /srv
mount --bind "$W/empty-run" /run
mount --bind "$W/empty-lib" /var/lib
. packaging/maintainer-scripts.sh
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c"])
        .arg(format!("{prelude}{script}"))
        .env("W", &w)
        .current_dir(root)
        .output()
        .expect("run unshare");
    let _ = std::fs::remove_dir_all(&w);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn tftpd_postinst_makes_the_served_tree_and_purge_removes_it_only_when_empty() {
    if !require(&["unshare", "adduser", "deluser", "getent", "mount"]) {
        return;
    }
    let (ok, out) = in_scratch_root(
        "pkg-tftpd",
        r#"
maintainer_scripts "$W/t" opsflow-tftpd opsflow-tftpd opsflow-tftpd
maintainer_scripts "$W/d" opsflow-dhcpd opsflow-dhcpd opsflow-dhcpd
[ ! -e /srv/tftp ] || fail "/srv/tftp exists before the test"
"$W/d/DEBIAN/postinst" configure
[ ! -e /srv/tftp ] || fail "opsflow-dhcpd's postinst made /srv/tftp"
"$W/t/DEBIAN/postinst" configure
[ -d /srv/tftp ] || fail "postinst configure made no /srv/tftp"
[ "$(stat -c '%U %a' /srv/tftp)" = "root 755" ] || fail "/srv/tftp is $(stat -c '%U %a' /srv/tftp), want root 755"
getent passwd opsflow-tftpd >/dev/null || fail "postinst made no user opsflow-tftpd"
chmod 0750 /srv/tftp
"$W/t/DEBIAN/postinst" configure 1.0
[ "$(stat -c %a /srv/tftp)" = 750 ] || fail "a second configure changed the operator's mode 750 to $(stat -c %a /srv/tftp)"
echo boot >/srv/tftp/pxelinux.0
"$W/t/DEBIAN/prerm" remove
"$W/t/DEBIAN/postrm" remove
[ -f /srv/tftp/pxelinux.0 ] || fail "remove touched /srv/tftp"
"$W/t/DEBIAN/postrm" purge
[ -f /srv/tftp/pxelinux.0 ] || fail "purge removed a /srv/tftp that holds files"
! getent passwd opsflow-tftpd >/dev/null || fail "purge left the user opsflow-tftpd"
rm /srv/tftp/pxelinux.0
"$W/t/DEBIAN/postrm" purge
[ ! -e /srv/tftp ] || fail "purge left an empty /srv/tftp"
# a symlink to a data disk (or a dangling one) is the operator's: configure and purge pass
ln -s /nonexistent/tftp /srv/tftp
"$W/t/DEBIAN/postinst" configure || fail "configure failed on a dangling /srv/tftp symlink"
mkdir "$W/disk"; ln -sfn "$W/disk" /srv/tftp
"$W/t/DEBIAN/postinst" configure || fail "configure failed on a /srv/tftp symlink"
"$W/t/DEBIAN/postrm" purge || fail "purge failed on a /srv/tftp symlink"
[ -L /srv/tftp ] && [ -d "$W/disk" ] || fail "purge removed the operator's /srv/tftp symlink or its target"
echo "maintainer scripts ok"
"#,
    );
    assert!(
        ok && out.contains("maintainer scripts ok"),
        "the maintainer scripts misbehaved:\n{out}"
    );
}
