#!/usr/bin/env bash
# Builds what ./demo PXE-boots: Debian's kernel and a small installer initramfs (static
# busybox, the virtio and ip_vs modules, the C libraries our ha needs) that stands in for
# anaconda: DHCP, fetch the kickstart named by ks= on the kernel command line, run its %post
# (which downloads ha, keepalived.conf and notify.sh and calls the installed callback), then
# start ha. Writes OUTDIR/vmlinuz and OUTDIR/initrd.img (default /var/cache/opsflow/demo).
# Usage: tests/vm/installer.sh PATH/TO/ha TOKEN [OUTDIR]
. "$(dirname "$0")/lib.sh"
HA=$1; TOKEN=$2; OUT=${3:-/var/cache/opsflow/demo}
KPKG=$(vm_kernel_pkg); [ -n "$KPKG" ] || { echo "installer: no linux-image package known to apt" >&2; exit 2; }
vm_fetch "$KPKG" busybox-static
R="$VM_CACHE/root"; MODS=$(vm_modules_dir)
I=$(mktemp -d /tmp/installer.XXXX); trap 'rm -rf "$I"' EXIT
mkdir -p "$I"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules,usr/local/sbin,var/log}
cp "$R/bin/busybox" "$I/bin/busybox"
for a in $("$I/bin/busybox" --list); do [ -e "$I/bin/$a" ] || ln -s busybox "$I/bin/$a"; done
# the C libraries ha needs (it arrives later, from the kickstart server)
mkdir -p "$I/lib64" "$I/lib/x86_64-linux-gnu"
for lib in $(ldd "$HA" | grep -Eo '/[^ ]+\.so[^ ]*'); do
  case "$lib" in */ld-linux-x86-64.so.2) cp -L "$lib" "$I/lib64/" ;; *) cp -L "$lib" "$I/lib/x86_64-linux-gnu/" ;; esac
done
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net \
         nf_defrag_ipv4 nf_defrag_ipv6 crc32c_generic libcrc32c nf_conntrack ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc; do
  f=$(find "$MODS/kernel" -name "$m.ko" | head -1); [ -n "$f" ] || continue
  cp "$f" "$I/lib/modules/"; echo "$m" >>"$I/lib/modules/order"
done
printf '%s\n' "$TOKEN" >"$I/etc/ha-token"
cat >"$I/bin/udhcpc.script" <<'S'
#!/bin/sh
case "$1" in
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$router" ] && ip route add default via "${router%% *}" 2>/dev/null
  echo "installer: $ip on $interface (server $serverid)"
  ;;
esac
S
chmod +x "$I/bin/udhcpc.script"
cat >"$I/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/local/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
echo "installer: kernel up ($(cut -d' ' -f1 /proc/uptime) s)"
ip link set lo up; ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 20 -T 1 -s /bin/udhcpc.script
KS=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^ks=//p' | head -1)
wget -q -O /tmp/ks "$KS" || { echo "installer: cannot fetch $KS"; exec sh; }
echo "installer: kickstart $KS ($(wc -l </tmp/ks) lines)"
awk '/^%post/ {p=1; next} /^%end/ {p=0} p' /tmp/ks >/tmp/post.sh
sh /tmp/post.sh >/tmp/post.log 2>&1; rc=$?
echo "installer: %post exit $rc"; sed 's/^/  post| /' /tmp/post.log
echo "installer: starting ha"
/usr/local/sbin/ha --config /etc/keepalived/keepalived.conf --control 0.0.0.0:9100 \
  --control-token-file /etc/ha-token --state-file /tmp/ha.state --lvs-backend auto 2>&1 | sed 's/^/  ha| /' &
while :; do sleep 3600; done
INIT
chmod +x "$I/init"
mkdir -p "$OUT"
cp "$(vm_vmlinuz)" "$OUT/vmlinuz.new" && mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
vm_initramfs "$I" "$OUT/initrd.img.new" && mv "$OUT/initrd.img.new" "$OUT/initrd.img"
echo "installer: $OUT/vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes, $OUT/initrd.img $(stat -c %s "$OUT/initrd.img") bytes"
