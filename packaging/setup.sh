# packaging/setup.sh: what ./demo and ./run-tests share to work on a fresh Debian machine with
# only Rust: install missing Debian packages by name (saying which first, with a policy-rc.d so
# no installed service starts), find the invoking user's cargo when run through sudo, and build
# as that user so target/ never becomes root's. Sourced, not run. Functions print with $SETUP_TAG.
SETUP_TAG=${SETUP_TAG:-setup}

# setup_missing PKG...: prints the packages that are not installed, one per line
setup_missing() {
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || echo "$p"
  done
}

# setup_packages PKG...: installs those not installed (as root). SETUP_DRY_RUN=1 only prints.
setup_packages() {
  local missing policy_added= rc=0
  mapfile -t missing < <(setup_missing "$@")
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "$SETUP_TAG: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  [ "${SETUP_DRY_RUN:-}" = 1 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "$SETUP_TAG: run as root to install them (sudo)" >&2; return 1; }
  command -v apt-get >/dev/null || { echo "$SETUP_TAG: apt-get is missing: install ${missing[*]} by hand" >&2; return 1; }
  # packages must not start their services (dhcpd, sshd, keepalived, bind9, kea) on this machine
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_added=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || rc=$?
  [ $rc = 0 ] && { apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?; }
  [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { echo "$SETUP_TAG: apt-get failed ($rc) installing: ${missing[*]}" >&2; return $rc; }
  mapfile -t missing < <(setup_missing "$@")
  [ ${#missing[@]} = 0 ] || { echo "$SETUP_TAG: still not installed: ${missing[*]}" >&2; return 1; }
}

# setup_user: the user to build as: SUDO_USER when run through sudo by a non-root user, else
# the current one. Sets SETUP_USER and SETUP_HOME.
setup_user() {
  SETUP_USER=$(id -un); SETUP_HOME=$HOME
  if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    SETUP_USER=$SUDO_USER
    SETUP_HOME=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  fi
}

# setup_cargo: finds cargo for SETUP_USER (PATH, ~/.cargo/bin, rustup's env file); sets
# SETUP_PATH (a PATH with it) and SETUP_CARGO_HOME / SETUP_RUSTUP_HOME.
setup_cargo() {
  setup_user
  SETUP_CARGO_HOME=${CARGO_HOME:-$SETUP_HOME/.cargo}
  SETUP_RUSTUP_HOME=${RUSTUP_HOME:-$SETUP_HOME/.rustup}
  SETUP_PATH="$SETUP_CARGO_HOME/bin:$PATH"
  if [ "$SETUP_USER" != "$(id -un)" ]; then
    # the invoking user's toolchain, not root's PATH (sudo's secure_path has no ~/.cargo/bin)
    SETUP_CARGO_HOME=$SETUP_HOME/.cargo; SETUP_RUSTUP_HOME=$SETUP_HOME/.rustup
    SETUP_PATH="$SETUP_CARGO_HOME/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
  fi
  if [ -r "$SETUP_CARGO_HOME/env" ]; then
    SETUP_PATH=$(HOME=$SETUP_HOME CARGO_HOME=$SETUP_CARGO_HOME bash -c '. "$CARGO_HOME/env"; echo "$PATH"')
  fi
  # a root build of the past (`sudo cargo build`) left root's files in target/: give them back
  if [ "$SETUP_USER" != "$(id -un)" ] && [ -d target ]; then
    chown -R --from=0:0 "$SETUP_USER:$(id -gn "$SETUP_USER")" target
  fi
  if ! PATH=$SETUP_PATH command -v cargo >/dev/null; then
    echo "$SETUP_TAG: cargo not found for $SETUP_USER (not on PATH, not in $SETUP_CARGO_HOME/bin)." >&2
    echo "$SETUP_TAG: install Rust as $SETUP_USER with rustup (https://rustup.rs), then run this again." >&2
    return 1
  fi
}

# as_user CMD...: runs CMD as SETUP_USER with that user's cargo (root: directly)
as_user() {
  if [ "$SETUP_USER" = "$(id -un)" ]; then
    PATH=$SETUP_PATH CARGO_HOME=$SETUP_CARGO_HOME RUSTUP_HOME=$SETUP_RUSTUP_HOME "$@"
  else
    runuser -u "$SETUP_USER" -- env HOME="$SETUP_HOME" PATH="$SETUP_PATH" \
      CARGO_HOME="$SETUP_CARGO_HOME" RUSTUP_HOME="$SETUP_RUSTUP_HOME" "$@"
  fi
}

# as_root_with_cargo CMD...: runs CMD as root with SETUP_USER's toolchain (tests that need
# namespaces); afterwards, whatever root created in target/ is given back to SETUP_USER.
as_root_with_cargo() {
  local rc=0
  PATH=$SETUP_PATH CARGO_HOME=$SETUP_CARGO_HOME RUSTUP_HOME=$SETUP_RUSTUP_HOME "$@" || rc=$?
  if [ "$SETUP_USER" != root ] && [ "$SETUP_USER" != "$(id -un)" ]; then
    chown -R --from=0:0 "$SETUP_USER:$(id -gn "$SETUP_USER")" target "$SETUP_CARGO_HOME" 2>/dev/null || true
  fi
  return $rc
}
