#!/usr/bin/env bash
# Programming 10,000 real servers into IPVS: ha vs ipvsadm -R, in one VM run (Debian kernel
# under qemu TCG, one vCPU; this machine's kernel has no IPVS). Prints both times and the ratio.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p ha
out=$(bash tests/vm/ipvs.sh target/release/ha "$(mktemp -d /tmp/ipvs-bench.XXXX)" --bench)
echo "$out" | grep -E 'BENCH|RESULT'
ha=$(echo "$out" | grep -o 'netlink programming alone: changes=[0-9]* ms=[0-9]*' | grep -o 'ms=[0-9]*' | cut -d= -f2)
peer=$(echo "$out" | grep -o 'ipvsadm -R of the same 10,001 entries: [0-9]*' | grep -o '[0-9]*$')
[ -n "$ha" ] && [ -n "$peer" ] && awk -v a="$ha" -v b="$peer" 'BEGIN { printf "ha / ipvsadm -R = %.2f (lower is better)\n", a / b }'
