# Sourced by packaging/build-debs (and by tests/tests/packaging.rs, which runs the scripts in a
# mount namespace): maintainer_scripts DIR PACKAGE NAME USER writes DIR/DEBIAN/{postinst,prerm,
# postrm} for package PACKAGE, whose program is NAME and whose unit runs as USER (- for root).
# Run from the repository root (it looks for packaging/systemd/NAME.service).
#
# postinst creates the system user; the service is not enabled or started on install: its
# config is a commented example, and a DHCP server started on an unknown network is harmful.
# opsflow-tftpd's unit serves /srv/tftp, so postinst makes it (root's, mode 0755: the daemon
# only reads it) when it is missing, as tftpd-hpa does: Debian packages ship nothing under
# /srv, and without it the unit would fail at its first start. Purge removes it only if empty.
# A symlink there (to a data disk), even a dangling one, is the operator's: left alone.
maintainer_scripts() {
  local d=$1 p=$2 name=$3 user=$4 unit= tree=
  [ -e "packaging/systemd/$name.service" ] && unit="$name.service"
  case $name in opsflow-tftpd) tree=/srv/tftp ;; esac
  mkdir -p "$d/DEBIAN"
  cat >"$d/DEBIAN/postinst" <<S
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
  if [ "$user" != - ] && ! getent passwd "$user" >/dev/null; then
    adduser --system --group --no-create-home --home /nonexistent --quiet "$user"
  fi
  if [ -n "$tree" ] && [ ! -e "$tree" ] && [ ! -L "$tree" ]; then
    mkdir -p "$tree"
    chmod 0755 "$tree"
  fi
  if [ -n "$unit" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
fi
exit 0
S
  cat >"$d/DEBIAN/prerm" <<S
#!/bin/sh
set -e
if [ -n "$unit" ] && [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop "$unit" >/dev/null 2>&1 || true
fi
exit 0
S
  cat >"$d/DEBIAN/postrm" <<S
#!/bin/sh
set -e
if [ -n "$unit" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "\$1" = purge ]; then
  if [ "$user" != - ] && getent passwd "$user" >/dev/null; then
    deluser --system --quiet "$user" >/dev/null 2>&1 || true
  fi
  rm -rf "/var/lib/$name"
  if [ -n "$tree" ] && [ -d "$tree" ] && [ ! -L "$tree" ]; then
    rmdir --ignore-fail-on-non-empty "$tree" || true
  fi
fi
exit 0
S
  chmod 0755 "$d/DEBIAN/postinst" "$d/DEBIAN/prerm" "$d/DEBIAN/postrm"
}
