# shellcheck shell=bash
# Shared by bench/dhcp-vs-kea.sh and bench/dhcp-pg-vs-kea.sh (sourced, not run): one server
# at a time in namespace "$P-srv" (eth0, 10.90.0.1), perfdhcp in "$P-cli", the pool
# 10.90.1.0-10.90.255.254 of 10.90.0.0/16.
# The caller sets: P (namespace prefix), WORK (scratch dir holding dhcpd.conf), D (our dhcpd),
# PIN_S (array: the server's taskset prefix, maybe empty), KEA_DB (Kea's "lease-database"
# JSON object), KEA_EXTRA (more members of Dhcp4, each ending with a comma; may be empty),
# PROBE (the MAC of the start probe); KEA_MT (Kea's "multi-threading" JSON object) may be set,
# single-threaded when not. SPID is the running server's pid.

# start kea|ours: a fresh server with its own state dir $WORK/NAME; returns once it answered
# one DORA of the probe MAC
start() {
  local st="$WORK/$1"
  rm -rf "$st"; mkdir -p "$st"
  if [ "$1" = kea ]; then
    local mt=${KEA_MT:-'{ "enable-multi-threading": false }'}
    cat >"$st/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "eth0" ], "dhcp-socket-type": "udp" },
  "lease-database": $KEA_DB,
  "multi-threading": $mt,
  $KEA_EXTRA
  "valid-lifetime": 4000, "renew-timer": 1000, "rebind-timer": 2000,
  "subnet4": [ { "id": 1, "subnet": "10.90.0.0/16", "pools": [ { "pool": "10.90.1.0 - 10.90.255.254" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$st/kea.log" } ], "severity": "WARN" } ]
} }
JSON
    KEA_LOCKFILE_DIR="$st" KEA_PIDFILE_DIR="$st" ip netns exec "$P-srv" "${PIN_S[@]}" kea-dhcp4 -c "$st/kea.json" >"$st/out" 2>&1 &
  else
    ip netns exec "$P-srv" "${PIN_S[@]}" "$D" --config "$WORK/dhcpd.conf" --leases "$st/dhcpd.leases" \
      --pid-file "$st/pid" --interface eth0 >"$st/out" 2>&1 &
  fi
  SPID=$!
  for _ in $(seq 40); do
    { ip netns exec "$P-cli" timeout 5 perfdhcp -4 -l eth0 -r 10 -n 1 -W 500000 -b "mac=$PROBE" 10.90.0.1 2>/dev/null || true; } |
      awk '/^received packets:/ && !r {r=$3} END {exit !(r >= 1)}' && return 0
    sleep 0.25
  done
  echo "$1 did not answer" >&2; tail -5 "$st/out" >&2; return 1
}

stop() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true; SPID=; }

# ticks PID: user+system clock ticks of the process (all its threads) so far; stat fields after
# "(comm) ": utime stime cutime cstime are f[11..14]
ticks() { local l f; l=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }; read -ra f <<<"${l##*) }"; echo $((f[11] + f[12])); }

# rcvbuf srv|cli: UDP datagrams the kernel dropped for a full socket receive buffer in that
# namespace so far (srv: the server's socket; cli: perfdhcp's, e.g. for a burst of replies)
rcvbuf() {
  # shellcheck disable=SC2016 # an awk program
  ip netns exec "$P-$1" awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") f = i; h = 1 } else print $f }' /proc/net/snmp
}

# GEN_RCVBUF=BYTES: net.core.rmem_default while the benchmark runs (perfdhcp takes the default
# socket buffer; with Debian's 208 KiB it drops replies that come while it is busy sending, the
# "rcvbuf drops perfdhcp" of the trial lines). rmem_apply sets it, rmem_restore (from the
# caller's cleanup) puts back the value found when this file was read.
RMEM0=$(sysctl -n net.core.rmem_default)
rmem_apply() { [ -z "${GEN_RCVBUF:-}" ] || sysctl -qw net.core.rmem_default="$GEN_RCVBUF"; }
rmem_restore() { sysctl -qw net.core.rmem_default="$RMEM0"; }
