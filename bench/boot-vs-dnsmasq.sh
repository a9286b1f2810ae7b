#!/usr/bin/env bash
# Benchmark: the whole demo flow (./demo) with our dhcpd + tftpd against the same flow with
# dnsmasq as DHCP and TFTP server (OPSFLOW_DHCP=dnsmasq, given the same answers), interleaved
# (ours, dnsmasq, ours, ...) so that both see the same machine. Prints each run's stages
# (seconds since the VM's power-on) and, per stage, the median of each mode and ours - dnsmasq.
# The stages up to `kernel` are the ones our servers take part in (DHCP, TFTP, HTTP); from the
# kernel to the kickstart the VM boots its kernel under TCG, which only the machine's load moves.
# Run as root from the repository root. Environment: RUNS (3), FIRMWARE (ipxe | bios | uefi).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/boot-vs-dnsmasq.sh: run as root (./demo builds namespaces)" >&2; exit 1; }
command -v dnsmasq >/dev/null || { echo "missing dnsmasq (apt-get install dnsmasq-base)" >&2; exit 1; }
RUNS=${RUNS:-3}; FIRMWARE=${FIRMWARE:-ipxe}
cargo build --release --quiet -p dhcpd -p tftpd -p ha -p kickstart -p release
OUT=$(mktemp -d /tmp/boot-vs-dnsmasq.XXXX)
for i in $(seq "$RUNS"); do
  for mode in opsflow dnsmasq; do
    env OPSFLOW_BIN=target/release OPSFLOW_DHCP=$( [ $mode = dnsmasq ] && echo dnsmasq ) \
      ./demo --firmware "$FIRMWARE" --summary "$OUT/$mode-$i.json" >"$OUT/$mode-$i.log" 2>&1 \
      || { echo "run $i ($mode) failed: see $OUT/$mode-$i.log" >&2; exit 1; }
  done
  echo "pair $i done (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
stages = ["dhcp_ack", "tftp_done", "kernel", "kickstart", "ha_joined", "failover", "release"]
data = {m: [json.load(open(f"{out}/{m}-{i}.json"))["stages"] for i in range(1, runs + 1)]
        for m in ("opsflow", "dnsmasq")}
print(f"{'stage':<11} {'opsflow runs':<24} {'dnsmasq runs':<24} median ours / dnsmasq / diff")
for s in stages:
    a = [r[s] for r in data["opsflow"] if s in r]; b = [r[s] for r in data["dnsmasq"] if s in r]
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{s:<11} {' '.join(f'{x:5.1f}' for x in a):<24} {' '.join(f'{x:5.1f}' for x in b):<24} "
          f"{ma:5.1f} / {mb:5.1f} / {ma - mb:+.1f} s")
PY
echo "logs: $OUT"
