#!/usr/bin/env bash
# Benchmark: failover of ha pairs and keepalived pairs, same run, same topology.
# For v2 at advert_int 1 and v3 at advert_int 0.1, and for kill -9 and SIGTERM of the master:
#   takeover  = from the last advert the backup heard from the master (kill -9; the protocol
#               minimum is the master-down interval) or from its priority-0 advert (SIGTERM;
#               the minimum is the skew time) to the VIP appearing on the backup;
#   outage    = the longest gap in answers to a client pinging the VIP every 10 ms (after a
#               kill -9 of the daemon the address stays on the dead daemon's host, which
#               keeps answering: the client sees only the ARP switch);
#   memory    = resident set of the daemon (keepalived: parent and VRRP child together).
# Run as root from the repository root. Environment: ROUNDS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/vrrp.sh: run as root" >&2; exit 1; }
for t in keepalived python3 ping; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
ROUNDS=${ROUNDS:-2}
cargo build --release --quiet -p ha
HA=$(pwd)/target/release/ha
P=ofv$$
WORK=$(mktemp -d /tmp/$P.XXXX); chmod 755 "$WORK"
cleanup() {
  set +e
  for n in n1 n2 cl sw; do ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$P-$n" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for n in n1 n2 cl sw; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
ip -n "$P-sw" link add br0 type bridge mcast_snooping 0; ip -n "$P-sw" link set br0 up
i=0
for n in n1 n2 cl; do
  i=$((i+1)); a=$i; [ $n = cl ] && a=9
  ip -n "$P-sw" link add "p$i" type veth peer name eth0 netns "$P-$n"
  ip -n "$P-sw" link set "p$i" master br0 up
  ip -n "$P-$n" addr add "10.81.0.$a/24" dev eth0; ip -n "$P-$n" link set eth0 up
done

conf() { # NODE PRIO STATE VERSION ADVERT
  cat >"$WORK/$1.conf" <<C
global_defs {
  router_id $1
  vrrp_version $4
}
vrrp_instance VI_1 {
  state $3
  interface eth0
  virtual_router_id 52
  priority $2
  advert_int $5
  virtual_ipaddress {
    10.81.0.100/24 dev eth0
  }
}
C
}
start() { # IMPL NODE
  if [ "$1" = ha ]; then
    ip netns exec "$P-$2" "$HA" --config "$WORK/$2.conf" --control "$WORK/$2.sock" >"$WORK/$2.log" 2>&1 &
  else
    local k="$WORK/$2.$RANDOM" # fresh pid files: a stale one stops keepalived from starting
    ip netns exec "$P-$2" keepalived --vrrp -f "$WORK/$2.conf" -p "$k.kp" -r "$k.kr" -c "$k.kc" -l -D -n >"$WORK/$2.log" 2>&1 &
  fi
  echo $!
}
descendants() { local p; echo "$1"; for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$p"; done; }
rss_kb() { local t=0 p; for p in $(descendants "$1"); do t=$(( t + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0) )); done; echo $t; }
vip_on() { ip -n "$P-$1" -4 addr show dev eth0 | grep -q "10.81.0.100/"; }
wait_vip() { local end=$(( $(date +%s) + $2 )); while [ "$(date +%s)" -lt "$end" ]; do vip_on "$1" && return 0; sleep 0.02; done; return 1; }

# sniffer in n2: time of each advert from n1 (priority too)
cat >"$WORK/sniff.py" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
SO_TIMESTAMPNS = 35  # kernel receive time, not the time Python got around to reading
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
out = open(sys.argv[1], "w", buffering=1)
while True:
    d, anc, _, a = s.recvmsg(2048, 256)
    if a[0] != "10.81.0.1": continue
    t = next((sec + ns / 1e9 for lvl, typ, v in anc if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS
              for sec, ns in [struct.unpack("qq", v[:16])]), None)
    ihl = (d[0] & 15) * 4
    out.write(f"{t:.6f} {d[ihl+2]}\n")
PY

declare -A R
run() { # IMPL VERSION ADVERT KIND ROUND
  local impl=$1 ver=$2 adv=$3 kind=$4 key="$1,$2,$4"
  conf n1 150 MASTER "$ver" "$adv"; conf n2 100 BACKUP "$ver" "$adv"
  local p1 p2 sn mon pg
  p1=$(start "$impl" n1); wait_vip n1 10 || { echo "$impl: n1 never became master" >&2; tail "$WORK/n1.log" >&2; exit 1; }
  p2=$(start "$impl" n2)
  sleep $(( ver == 2 ? 4 : 1 ))
  vip_on n2 && { echo "$impl: split brain at start" >&2; exit 1; }
  [ -z "${R[$impl,rss]:-}" ] && R[$impl,rss]=$(rss_kb "$p1")
  ip netns exec "$P-n2" python3 "$WORK/sniff.py" "$WORK/adverts" & sn=$!
  ip netns exec "$P-n2" ip -ts monitor address >"$WORK/mon" 2>&1 & mon=$!
  ip netns exec "$P-cl" ping -D -n -i 0.01 -W 0.05 10.81.0.100 >"$WORK/ping" 2>&1 & pg=$!
  sleep $(( ver == 2 ? 3 : 1 ))
  if [ "$kind" = kill ]; then kill -9 $(descendants "$p1"); else kill -TERM "$p1"; fi
  wait_vip n2 10 || { echo "$impl $ver $kind: no takeover" >&2; exit 1; }
  sleep 1
  kill "$sn" "$mon" "$pg" 2>/dev/null; wait "$sn" "$mon" "$pg" 2>/dev/null || true
  kill -9 $(descendants "$p1") $(descendants "$p2") 2>/dev/null; wait "$p1" "$p2" 2>/dev/null || true
  for n in n1 n2; do ip -n "$P-$n" addr del 10.81.0.100/24 dev eth0 2>/dev/null || true; done
  python3 - "$WORK/adverts" "$WORK/mon" "$WORK/ping" "$kind" >"$WORK/res" <<'PY'
import sys, re, datetime
adv = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
kind = sys.argv[4]
vip_t = None
for l in open(sys.argv[2]):
    if "10.81.0.100" in l and "Deleted" not in l:
        m = re.search(r"\[(\d{4}-\d\d-\d\dT[\d:.]+)", l)
        if m:
            vip_t = datetime.datetime.fromisoformat(m.group(1)).timestamp(); break
if kind == "kill":
    ref = [t for t, p in adv if p != 0 and (vip_t is None or t < vip_t)][-1]
else:
    ref = [t for t, p in adv if p == 0][0]
take = (vip_t - ref) * 1000
ts = [float(m.group(1)) for l in open(sys.argv[3]) for m in [re.match(r"\[(\d+\.\d+)\].*bytes from", l)] if m]
gaps = [b - a for a, b in zip(ts, ts[1:])]
print(f"{take:.1f} {max(gaps) * 1000:.0f}")
PY
  read -r take out <"$WORK/res"
  R[$key,take]="${R[$key,take]:-} $take"; R[$key,out]="${R[$key,out]:-} $out"
  printf '  %-10s v%s advert %-4s %-5s round %s: takeover %7s ms, client outage %5s ms\n' "$impl" "$ver" "$adv" "$kind" "$5" "$take" "$out" >&2
}

for r in $(seq 1 "$ROUNDS"); do
  for impl in ha keepalived; do
    for vk in "2 1" "3 0.1"; do
      set -- $vk
      for kind in kill term; do run "$impl" "$1" "$2" "$kind" "$r"; done
    done
  done
done

avg() { echo "$1" | tr ' ' '\n' | awk 'NF {s+=$1; n++} END {printf "%.1f", s/n}'; }
printf '\nVRRP benchmark (%s rounds, averages; backup priority 100)\n' "$ROUNDS"
printf '%-28s %12s %12s %12s %12s %12s\n' case "minimum ms" "ha ms" "keepalived" "ha outage" "ka outage"
for vk in "2,kill,3609.4" "2,term,609.4" "3,kill,360.9" "3,term,60.9"; do
  IFS=, read -r v k min <<<"$vk"
  printf '%-28s %12s %12s %12s %12s %12s\n' "v$v $([ $v = 2 ] && echo 'advert 1' || echo 'advert 0.1') $k" "$min" \
    "$(avg "${R[ha,$v,$k,take]}")" "$(avg "${R[keepalived,$v,$k,take]}")" "$(avg "${R[ha,$v,$k,out]}")" "$(avg "${R[keepalived,$v,$k,out]}")"
done
printf 'resident memory: ha %s KiB, keepalived %s KiB (ratio %s)\n' "${R[ha,rss]}" "${R[keepalived,rss]}" \
  "$(awk -v a="${R[ha,rss]}" -v b="${R[keepalived,rss]}" 'BEGIN { printf "%.2f", a / b }')"
