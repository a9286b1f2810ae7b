#!/usr/bin/env bash
# Benchmark: our tftpd against tftp-hpa's in.tftpd, same run, same topology.
#   client ns ── veth ── [netdelay: +DELAY_US server→client] ── veth ── server ns
# (a) one SIZE_MB file at blksize 1468 (curl, lock-step)
# (b) the same with windowsize 16 (atftp; tftp-hpa ignores windowsize, so it runs lock-step)
# (c) CONC clients at once, each fetching a CONC_MB file at blksize 1468 (curl)
# Prints throughput per server and the ratio ours/tftp-hpa. Run as root from the repository root.
# Environment: SIZE_MB (64), CONC (50), CONC_MB (4), DELAY_US (1000), LOSS (0, percent).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/tftp.sh: run as root (it builds network namespaces)" >&2; exit 1; }
for t in curl atftp ethtool nft sha256sum; do command -v $t >/dev/null || { echo "missing $t (apt-get install it)" >&2; exit 1; }; done
SIZE_MB=${SIZE_MB:-64}; CONC=${CONC:-50}; CONC_MB=${CONC_MB:-4}; DELAY_US=${DELAY_US:-1000}; LOSS=${LOSS:-0}

cargo build --release --quiet -p tftpd -p opsflow-tests --bin tftpd --bin netdelay
CACHE=target/bench-cache; mkdir -p "$CACHE"
HPA="$CACHE/hpa/usr/sbin/in.tftpd"
if [ ! -x "$HPA" ]; then
  (cd "$CACHE" && apt-get download tftpd-hpa >/dev/null && dpkg -x tftpd-hpa_*.deb hpa) || { echo "cannot fetch tftpd-hpa" >&2; exit 1; }
fi

P=ofb$$
WORK=$(mktemp -d /tmp/$P.XXXX); chmod 755 "$WORK"
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  for n in srv mid cl; do ip netns del "$P-$n" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for n in srv mid cl; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
ip -n "$P-srv" link add eth0 type veth peer name a0 netns "$P-mid"
ip -n "$P-cl" link add eth0 type veth peer name b0 netns "$P-mid"
ip -n "$P-srv" addr add 10.72.0.1/24 dev eth0; ip -n "$P-cl" addr add 10.72.0.2/24 dev eth0
for n in srv cl; do ip -n "$P-$n" link set eth0 up; ip netns exec "$P-$n" ethtool -K eth0 tx off >/dev/null 2>&1; done
ip -n "$P-mid" link set a0 up; ip -n "$P-mid" link set b0 up
ip netns exec "$P-mid" target/release/netdelay a0 b0 "$DELAY_US" 0 2>"$WORK/netdelay.log" & PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$WORK/netdelay.log" 2>/dev/null && break; sleep 0.05; done
if [ "$LOSS" != 0 ]; then
  ip netns exec "$P-srv" nft add table inet benchloss
  ip netns exec "$P-srv" nft "add chain inet benchloss out { type filter hook output priority 0; }"
  ip netns exec "$P-srv" nft add rule inet benchloss out numgen random mod 100 "<" "$LOSS" drop
fi
ip netns exec "$P-cl" ping -c 5 -i 0.2 -q 10.72.0.1 | tail -1 | sed 's/^/rtt through the delay bridge: /'

ROOT="$WORK/root"; mkdir -p "$ROOT"
head -c $((SIZE_MB * 1048576)) /dev/urandom >"$ROOT/big.img"
head -c $((CONC_MB * 1048576)) /dev/urandom >"$ROOT/f.img"
chmod 644 "$ROOT"/*
BIG_SUM=$(sha256sum <"$ROOT/big.img"); F_SUM=$(sha256sum <"$ROOT/f.img")
ms() { echo $(( $(date +%s%N) / 1000000 )); }
cl() { ip netns exec "$P-cl" "$@"; }

declare -A R
run_server() { # NAME CMD...
  local name=$1; shift
  ip netns exec "$P-srv" "$@" >"$WORK/$name.log" 2>&1 & local spid=$!; PIDS+=($spid)
  for _ in $(seq 100); do ip netns exec "$P-srv" ss -Hlun | grep -q ':69 ' && break; sleep 0.05; done
  local t0 t1 i
  t0=$(ms); cl curl -s --max-time 900 --tftp-blksize 1468 -o "$WORK/a.out" tftp://10.72.0.1/big.img; t1=$(ms)
  [ "$(sha256sum <"$WORK/a.out")" = "$BIG_SUM" ] || { echo "$name (a): download differs" >&2; exit 1; }
  R[$name,a]=$((t1 - t0))
  t0=$(ms); cl atftp --option "blksize 1468" --option "windowsize 16" -g -r big.img -l "$WORK/b.out" 10.72.0.1 >/dev/null 2>&1; t1=$(ms)
  [ "$(sha256sum <"$WORK/b.out")" = "$BIG_SUM" ] || { echo "$name (b): download differs" >&2; exit 1; }
  R[$name,b]=$((t1 - t0))
  t0=$(ms)
  local cp=()
  for i in $(seq 1 "$CONC"); do cl curl -s --max-time 900 --tftp-blksize 1468 -o "$WORK/c$i.out" tftp://10.72.0.1/f.img & cp+=($!); done
  wait "${cp[@]}"; t1=$(ms)
  for i in $(seq 1 "$CONC"); do [ "$(sha256sum <"$WORK/c$i.out")" = "$F_SUM" ] || { echo "$name (c): download $i differs" >&2; exit 1; }; done
  R[$name,c]=$((t1 - t0))
  kill "$spid"; wait "$spid" 2>/dev/null || true
}
run_server ours target/release/tftpd --root "$ROOT" --listen 10.72.0.1:69
run_server hpa "$HPA" -L -s "$ROOT" -a 10.72.0.1:69

mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f", b / 1048576 / (t / 1000) }'; }
ratio() { awk -v o="$1" -v h="$2" 'BEGIN { printf "%.2fx", h / o }'; }
printf '\nTFTP benchmark: +%s us delay server->client, loss %s%%\n' "$DELAY_US" "$LOSS"
printf '%-44s %12s %12s %8s\n' test "ours MB/s" "tftp-hpa MB/s" ratio
printf '%-44s %12s %12s %8s\n' "(a) ${SIZE_MB} MiB, blksize 1468, lock-step" "$(mbps $((SIZE_MB*1048576)) ${R[ours,a]})" "$(mbps $((SIZE_MB*1048576)) ${R[hpa,a]})" "$(ratio ${R[ours,a]} ${R[hpa,a]})"
printf '%-44s %12s %12s %8s\n' "(b) ${SIZE_MB} MiB, windowsize 16 (hpa: lock-step)" "$(mbps $((SIZE_MB*1048576)) ${R[ours,b]})" "$(mbps $((SIZE_MB*1048576)) ${R[hpa,b]})" "$(ratio ${R[ours,b]} ${R[hpa,b]})"
printf '%-44s %12s %12s %8s\n' "(c) ${CONC} clients x ${CONC_MB} MiB, aggregate" "$(mbps $((CONC*CONC_MB*1048576)) ${R[ours,c]})" "$(mbps $((CONC*CONC_MB*1048576)) ${R[hpa,c]})" "$(ratio ${R[ours,c]} ${R[hpa,c]})"
printf 'wall ms: ours a=%s b=%s c=%s; tftp-hpa a=%s b=%s c=%s\n' "${R[ours,a]}" "${R[ours,b]}" "${R[ours,c]}" "${R[hpa,a]}" "${R[hpa,b]}" "${R[hpa,c]}"
