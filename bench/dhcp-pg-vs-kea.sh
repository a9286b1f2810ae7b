#!/usr/bin/env bash
# Benchmark, PostgreSQL lease store: our dhcpd (`lease-database { type postgresql; ... }`) and
# kea-dhcp4 (lease-database type postgresql, single-threaded, "dhcp-socket-type" udp) on one
# PostgreSQL 15 (initdb into a scratch dir, its own namespace on 10.90.0.5, databases `kea`
# (`kea-admin db-init pgsql`) and `opsflow` (`dhcpd db init --config F`), same settings for both).
# The server (namespace on 10.90.0.1) and PostgreSQL share CPU 1 (`taskset -c 1`: the server
# machine's core), perfdhcp runs on CPU 0 as a relay (`-g single`), as in bench/dhcp-vs-kea.sh.
# At each rate of RATES, in the same run (Kea then ours), a freshly started server on an empty
# lease table (both databases' lease tables are emptied before every trial) gets SECONDS_PER of
# load; the line gives DORAs completed, loss, the server's CPU time per completed DORA
# (user+system of all its threads, /proc/PID/stat), PostgreSQL's (user+system of every process
# in its namespace, plus the postmaster's cutime+cstime for the backends it reaped during the
# trial; checked against a cpuacct cgroup holding the cluster: within 2 %), their sum, how busy
# CPU 1 was (server + PostgreSQL), and where packets were dropped for a full socket receive
# buffer (the server's, or perfdhcp's when a burst of ACKs comes at once). It then counts the active
# leases in the table (state active, not expired; the start probe's excluded) against the
# clients perfdhcp's ACKs imply (it takes its CLIENTS (50000) MACs in turn, so up to CLIENTS
# DISCOVERs each ACK is a new client): fewer than 99 % shows "SHORT" (a server that ACKs
# without storing).
# The last lines print each server's highest passing rate (< 1 % loss) and, at every rate both
# ran, the CPU-per-DORA ratios (server only; server + PostgreSQL).
# With TWO_CORES=1 nothing is pinned (server, PostgreSQL and perfdhcp share both cores; "core"
# is then their CPU time as a share of one core).
# (Later figures, with the dhcpd of 2026-11-30 evening: README.md, Benchmarks.)
# Measured 2026-11-30 on the 2-core VM (virtio disk, ext4 without a journal, ~370 fsync/s),
# PostgreSQL 15.18, default ladder, two runs with each setting, load average 0.6-1.5
# before/after (the other jobs were light):
#   synchronous_commit=on:  highest passing rate Kea 1000 and 1500/s, ours 6000/s both times.
#     CPU per DORA where both passed, Kea / ours: 500/s server 288-324 / 132-136 us
#     (2.18-2.38x), with PostgreSQL 748-884 / 388-392 us (1.91-2.28x); 1000/s 278-280 /
#     90-96 us (2.90-3.11x), 690-698 / 222-234 us (2.95-3.14x); 1500/s 232 / 81 us (2.85x),
#     597 / 183 us (3.27x).
#   synchronous_commit=off: highest passing rate Kea 1500/s, ours 8000 and 6000/s. 500/s
#     server 1.59-2.57x, with PostgreSQL 1.51-2.29x; 1000/s 3.13-3.83x, 3.07-3.48x; 1500/s
#     249-253 / 77-83 us (3.06-3.22x), 581-584 / 175-180 us (3.23-3.34x).
#   Kea's losses are at its own socket, its core (Kea + PostgreSQL) 88-102 % busy from
#   1500-2000/s. Ours loses 1.3-1.7 % at 8000/s with the core 55 % busy: its ACKs leave in a
#   burst per batch commit and overflow perfdhcp's socket buffer ("rcvbuf drops perfdhcp").
#   Ours' CPU per DORA falls with the rate (136 us at 500/s, 40 us at 8000/s): it pays per
#   transaction (~100/s at 500/s, ~5 leases each), Kea per lease. At rates only ours passes
#   the ratios grow (4000/s: 4.4-5.9x server, 5.7-7.6x with PostgreSQL), but Kea's figure
#   then includes work for exchanges it never completed. Both stored every ACKed lease.
# Environment: RATES ("500 1000 1500 2000 4000 6000 8000 12000"), SECONDS_PER (5), ONLY (kea|ours),
# WARMUP (2: seconds of an unreported first trial of each server at the lowest rate; 0 = none),
# CLIENTS (50000, perfdhcp -R), PG_SYNC (on: PostgreSQL's synchronous_commit; off = commits acknowledged before the WAL fsync),
# PGBIN (/usr/lib/postgresql/15/bin), BIN_DIR (target/release; built when missing),
# GEN_RCVBUF=BYTES (net.core.rmem_default for the run: see bench/dhcp-lib.sh).
# Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/dhcp-pg-vs-kea.sh: run as root (it builds network namespaces)" >&2; exit 1; }
for t in perfdhcp kea-dhcp4 kea-admin psql setpriv taskset; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install kea-dhcp4-server kea-admin postgresql util-linux" >&2; exit 1; }
done
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if ! [ -x "$PGBIN/postgres" ] || ! [ -x "$PGBIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
  echo "no PostgreSQL server in $PGBIN or no postgres user: apt-get install postgresql" >&2; exit 1
fi
RATES=${RATES:-"500 1000 1500 2000 4000 6000 8000 12000"}
SECONDS_PER=${SECONDS_PER:-5}
WARMUP=${WARMUP:-2}
ONLY=${ONLY:-"kea ours"}
PG_SYNC=${PG_SYNC:-on}
case "$PG_SYNC" in on|off|local|remote_write|remote_apply) ;; *) echo "PG_SYNC must be on or off" >&2; exit 1;; esac
BIN_DIR=${BIN_DIR:-target/release}
[ -x "$BIN_DIR/dhcpd" ] || cargo build --release --quiet -p dhcpd
D=$(cd "$BIN_DIR" && pwd)/dhcpd
if [ "${TWO_CORES:-0}" = 1 ]; then PIN_S=(); PIN_C=(); else PIN_S=(taskset -c 1); PIN_C=(taskset -c 0); fi
CLIENTS=${CLIENTS:-50000} PROBE=02:bb:00:00:00:01

P=dpk$$
WORK=$(mktemp -d /tmp/$P.XXXX); chmod 755 "$WORK"
SPID='' PGPID=''
cleanup() {
  set +e
  ! declare -F rmem_restore >/dev/null || rmem_restore
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  [ -n "$PGPID" ] && kill -INT "$PGPID" 2>/dev/null && sleep 1
  for n in srv cli db; do ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$P-$n" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for n in srv cli db; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
ip -n "$P-srv" link add eth0 type veth peer name eth0 netns "$P-cli"
ip -n "$P-srv" addr add 10.90.0.1/16 dev eth0; ip -n "$P-srv" link set eth0 up
ip -n "$P-cli" addr add 10.90.0.2/16 dev eth0; ip -n "$P-cli" link set eth0 up
# the database on its own link from the server namespace: 10.90.0.5 routed there
ip -n "$P-srv" link add eth1 type veth peer name eth0 netns "$P-db"; ip -n "$P-srv" link set eth1 up
ip -n "$P-srv" route add 10.90.0.5/32 dev eth1 src 10.90.0.1
ip -n "$P-db" addr add 10.90.0.5/16 dev eth0; ip -n "$P-db" link set eth0 up

# PostgreSQL, as user postgres, data and socket in the scratch dir
PGPW="bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"   # a throwaway password
SOCK=$WORK/pg/sock
mkdir -p "$SOCK"; chown -R postgres:postgres "$WORK/pg"
ASP=(setpriv --reuid=postgres --regid=postgres --init-groups)
"${ASP[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 ||
  { tail -5 "$WORK/initdb.log" >&2; exit 1; }
printf 'local all postgres trust\nhost all all 10.90.0.0/16 scram-sha-256\n' >"$WORK/pg/data/pg_hba.conf"
# autovacuum_naptime=1: the lease table grows from empty within seconds; without a fresh
# ANALYZE, Kea's prepared statements seq-scan it
ip netns exec "$P-db" "${PIN_S[@]}" "${ASP[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" \
  -c listen_addresses=10.90.0.5 -c port=5432 -c unix_socket_directories="$SOCK" \
  -c synchronous_commit="$PG_SYNC" -c autovacuum_naptime=1 >"$WORK/postgres.log" 2>&1 &
PGPID=$!
pg() { psql -h "$SOCK" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 80); do pg -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.25; done
pg -d postgres -c "CREATE ROLE dhcp LOGIN PASSWORD '$PGPW'" -c "CREATE DATABASE kea OWNER dhcp" \
  -c "CREATE DATABASE opsflow OWNER dhcp" || { tail -5 "$WORK/postgres.log" >&2; exit 1; }
printf '%s\n' "$PGPW" >"$WORK/pg.pw"
ip netns exec "$P-db" kea-admin db-init pgsql -u dhcp -p "$PGPW" -n kea -h 10.90.0.5 >"$WORK/kea-admin.log" 2>&1 ||
  { tail -5 "$WORK/kea-admin.log" >&2; exit 1; }
cat >"$WORK/dhcpd.conf" <<CONF
authoritative;
default-lease-time 4000;
max-lease-time 4000;
lease-database {
  type postgresql;
  name "opsflow";
  host "10.90.0.5";
  user "dhcp";
  password-file "$WORK/pg.pw";
}
subnet 10.90.0.0 netmask 255.255.0.0 {
  range 10.90.1.0 10.90.255.254;
}
CONF
ip netns exec "$P-srv" "$D" db init --config "$WORK/dhcpd.conf" >"$WORK/dbinit.log" 2>&1 ||
  { tail -5 "$WORK/dbinit.log" >&2; exit 1; }

# empty both lease tables (and the statistics table that Kea's triggers keep). No ANALYZE
# here: statistics of an empty table make Kea's prepared statements seq-scan lease4 as it
# grows (9182 seq scans reading 6 M rows in a 4 s trial at 1000/s, +70 us PostgreSQL CPU per
# DORA); after TRUNCATE alone they use the indexes until autovacuum's ANALYZE (naptime 1 s).
empty() {
  pg -d kea -c "TRUNCATE lease4, lease4_stat"
  pg -d opsflow -c "TRUNCATE dhcpd_leases"
}
# active leases in SERVER's table, the probe's excluded
stored() {
  if [ "$1" = kea ]; then
    pg -d kea -At -c "SELECT count(*) FROM lease4 WHERE state = 0 AND expire > now()
      AND hwaddr <> '\\x${PROBE//:/}'::bytea"
  else
    pg -d opsflow -At -c "SELECT count(*) FROM dhcpd_leases WHERE state = 'active'
      AND ends > extract(epoch FROM now()) AND block NOT LIKE '%$PROBE%'"
  fi
}

KEA_DB='{ "type": "postgresql", "name": "kea", "host": "10.90.0.5", "user": "dhcp", "password": "'"$PGPW"'" }'
KEA_EXTRA='"authoritative": true,'
# shellcheck source=bench/dhcp-lib.sh
. bench/dhcp-lib.sh
# PostgreSQL's CPU ticks so far: every live process of its namespace, plus what the postmaster
# collected from the children it reaped (cutime+cstime; a backend that ends mid-trial moves from
# the first term to the second with its whole total, so the difference of two readings counts
# exactly its CPU time between them)
pgticks() {
  local t=0 p l f
  for p in $(ip netns pids "$P-db"); do t=$((t + $(ticks "$p"))); done
  l=$(cat "/proc/$PGPID/stat"); read -ra f <<<"${l##*) }"
  echo $((t + f[13] + f[14]))
}

declare -A US TOT PASS
trial() { # SERVER RATE
  empty >/dev/null
  start "$1" || return 1
  local out="$WORK/perf.txt" c0 c1 p0 p1 n b0 b1
  b0="$(rcvbuf srv) $(rcvbuf cli)"
  c0=$(ticks "$SPID"); p0=$(pgticks)
  ip netns exec "$P-cli" "${PIN_C[@]}" timeout $((SECONDS_PER + 30)) perfdhcp -4 -g single -l eth0 -r "$2" -R "$CLIENTS" \
    -p "$SECONDS_PER" -W 1500000 10.90.0.1 >"$out" 2>&1 || true
  c1=$(ticks "$SPID"); p1=$(pgticks)
  b1="$(rcvbuf srv) $(rcvbuf cli)"
  n=$(stored "$1")
  stop
  awk -v c="$((c1 - c0))" -v pc="$((p1 - p0))" -v hz="$(getconf CLK_TCK)" -v p="$SECONDS_PER" -v srv="$1" -v rate="$2" \
    -v n="$n" -v R="$CLIENTS" -v b0="$b0" -v b1="$b1" '
    /^sent packets:/ {s[++ns]=$3} /^received packets:/ {r[++nr]=$3}
    /^avg delay: [0-9.]+ ms/ {a[++na]=$3}
    END {
      ds=s[1]; o=r[1]; rs=s[2]; ar=r[2]
      loss = (ds>0 && rs>0) ? 100*(1-(o/ds)*(ar/rs)) : 100
      us = (ar>0) ? c/hz*1e6/ar : -1; pus = (ar>0) ? pc/hz*1e6/ar : -1
      want = (ds <= R) ? ar : ar*R/ds   # clients come in turn: past R, they start again
      split(b0, x, " "); split(b1, y, " ")
      printf "  %-4s %5d/s: DISCOVER %6d, ACK %6d, loss %6.2f%% (rcvbuf drops server %d, perfdhcp %d), D-O avg %s ms, CPU/DORA server %6.1f + PostgreSQL %6.1f = %6.1f us, core %3.0f%%; stored %d of ~%.0f clients %s => %s\n",
        srv, rate, ds, ar, loss, y[1]-x[1], y[2]-x[2], a[1], us, pus, us+pus, 100*(c+pc)/hz/p, n, want,
        (n+0 >= 0.99*want ? "ok" : "SHORT"), (loss < 1 ? "pass" : "fail")
      print (loss < 1 ? 1 : 0), us, us+pus > "/dev/stderr"
    }' "$out" 2>"$WORK/res"
  read -r PASS["$1:$2"] US["$1:$2"] TOT["$1:$2"] <"$WORK/res"
}

rmem_apply
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); $( [ "${TWO_CORES:-0}" = 1 ] && echo "unpinned: servers, PostgreSQL and perfdhcp share both cores" || echo "server + PostgreSQL on CPU 1, perfdhcp -g single on CPU 0"); PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}') synchronous_commit=$PG_SYNC; ${SECONDS_PER} s per trial, default socket receive buffer $(sysctl -n net.core.rmem_default) bytes"
# a warm-up trial of each server (not reported) so that the first one measured does not pay
# alone for PostgreSQL's cold caches
if [ "$WARMUP" != 0 ]; then
  for s in $ONLY; do SECONDS_PER=$WARMUP trial "$s" "${RATES%% *}" >/dev/null; done
fi
for r in $RATES; do
  for s in $ONLY; do trial "$s" "$r"; done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for s in $ONLY; do
  best=none
  for r in $RATES; do [ "${PASS[$s:$r]:-0}" = 1 ] && best="$r/s"; done
  echo "  $s: highest passing rate $best"
done
# CPU per completed DORA at every rate both ran (the ratio is the robust figure on a loaded
# machine: both servers measured alike in the same run)
for r in $RATES; do
  if [ -z "${US[kea:$r]:-}" ] || [ -z "${US[ours:$r]:-}" ]; then continue; fi
  awk -v r="$r" -v k="${US[kea:$r]}" -v o="${US[ours:$r]}" -v kt="${TOT[kea:$r]}" -v ot="${TOT[ours:$r]}" \
    -v pk="${PASS[kea:$r]}" -v po="${PASS[ours:$r]}" \
    'BEGIN{ if (k <= 0 || o <= 0) exit
      printf "  at %5d/s (Kea %s, ours %s): server CPU per DORA Kea %.1f us, ours %.1f us: ours is %.2fx as efficient; with PostgreSQL Kea %.1f us, ours %.1f us: ours is %.2fx as efficient\n",
        r, (pk ? "pass" : "lossy"), (po ? "pass" : "lossy"), k, o, k/o, kt, ot, kt/ot }'
done
