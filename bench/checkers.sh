#!/usr/bin/env bash
# 10,000 real servers with HTTP_GET at delay_loop 1: the CPU ha's checkers use.
# One namespace holds 10,000 addresses on lo and one HTTP listener on 0.0.0.0:80 (python
# asyncio); ha (nftables backend) checks every address once a second. CPU is read from
# /proc/PID/stat over a 30 s window after a 10 s warm-up. keepalived is tried side by side
# with the same config; its checker process needs IPVS, which this kernel lacks, and the
# script says so when it cannot run.
set -eu
cd "$(dirname "$0")/.."
N=${N:-10000}; WINDOW=${WINDOW:-30}
cargo build --release -q -p ha
NS=ofl-bench-chk-$$; DIR=$(mktemp -d /tmp/bench-chk.XXXX)
cleanup() { ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$NS" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
addrs() { local i=0 a b; for a in $(seq 0 255); do for b in $(seq 1 250); do [ $i -lt "$N" ] || return 0; echo "10.3.$a.$b"; i=$((i+1)); done; done; }
addrs | sed 's|.*|addr add &/32 dev lo|' | ip -n "$NS" -batch -
cat >"$DIR/sink.py" <<'PY'
import asyncio
async def h(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(h, "0.0.0.0", 80, backlog=4096)
    await s.serve_forever()
asyncio.run(main())
PY
ip netns exec "$NS" python3 "$DIR/sink.py" & 
{ echo "global_defs {"; echo " router_id bench"; echo "}"; echo "virtual_server 10.3.255.1 80 {"; echo " delay_loop 1"; echo " lb_algo rr"; echo " lb_kind NAT"
  addrs | while read -r a; do printf ' real_server %s 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 200\n   }\n   connect_timeout 3\n   retry 1\n  }\n }\n' "$a"; done; echo "}"; } >"$DIR/ka.conf"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # PID LABEL
  sleep 10; local c0 c1 hz; hz=$(getconf CLK_TCK); c0=$(cpu "$1") || return 1; sleep "$WINDOW"; c1=$(cpu "$1") || return 1
  awk -v a="$c0" -v b="$c1" -v hz="$hz" -v w="$WINDOW" -v l="$2" 'BEGIN { printf "%s: %.1f%% of one core\n", l, (b - a) / hz / w * 100 }'
}
ip netns exec "$NS" target/release/ha --config "$DIR/ka.conf" --control "$DIR/ha.sock" --state-file "$DIR/st.json" --lvs-backend nftables >"$DIR/ha.log" 2>&1 &
HAPID=$!
ours=$(measure $HAPID "ha, $N HTTP_GET checks per second")
healthy=$(target/release/ha status --control "$DIR/ha.sock" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for v in d["virtual_servers"] for r in v["real_servers"] if r["healthy"]))')
kill $HAPID; wait $HAPID 2>/dev/null || true
echo "$ours ($healthy of $N healthy at the end)"
if command -v keepalived >/dev/null; then
  ip netns exec "$NS" keepalived -n -l -D -C -f "$DIR/ka.conf" -p "$DIR/k.pid" -c "$DIR/c.pid" >"$DIR/k.log" 2>&1 &
  sleep 3
  CPID=$(cat "$DIR/c.pid" 2>/dev/null || true)
  if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null && theirs=$(measure "$CPID" "keepalived checker, same config" 2>/dev/null); then
    echo "$theirs"
  else
    echo "keepalived: its checker process does not keep running here ($(grep -m1 -i 'ipvs\|error\|exit' "$DIR/k.log" || echo 'exited')); no side-by-side figure on a kernel without IPVS"
  fi
  pkill -f "keepalived -n -l -D -C -f $DIR" 2>/dev/null || true
fi
