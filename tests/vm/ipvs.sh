#!/usr/bin/env bash
# Real IPVS in a real kernel: boots Debian's kernel under qemu (TCG) with the ip_vs modules and
# runs our `ha` inside with virtual servers of every kind (NAT, DR, TUN, fwmark, persistence),
# checking the result with ipvsadm -Ln and /proc/net/ip_vs; drain, enable, weight change by
# reload, removal by a failing check, a gray route (fwmark service and nftables mark rule,
# added and removed together), a foreign service left alone, cleanup at shutdown;
# keepalived's IPVS extras (lvs_flush, lvs_flush_onstop, lvs_timeouts, ops, persistence_engine
# sip, thresholds, lvs_sync_daemon following a VRRP instance's state); then
# with --bench, programs 10,000 real servers and times it against ipvsadm -R.
# Usage: tests/vm/ipvs.sh PATH/TO/ha [WORKDIR] [--bench]. Prints the VM's report; exits 0 when every
# check passed. Needs root, qemu-system-x86_64, cpio, apt-get (network for the first run).
. "$(dirname "$0")/lib.sh"
HA=$1
WORK=${2:-$(mktemp -d /tmp/ipvs-vm.XXXX)}
KPKG=$(vm_kernel_pkg); [ -n "$KPKG" ] || { echo "vm: no linux-image package known to apt" >&2; exit 2; }
vm_fetch "$KPKG" busybox-static ipvsadm libnl-3-200 libnl-genl-3-200 libpopt0
R="$VM_CACHE/root"; MODS=$(vm_modules_dir)
I="$WORK/initramfs"; rm -rf "$I"; mkdir -p "$I"/{proc,sys,dev,tmp,run,etc,lib/modules}
cp "$R/bin/busybox" "$I/bin.busybox"; mkdir -p "$I/bin"; mv "$I/bin.busybox" "$I/bin/busybox"
for a in sh mount insmod ip sleep cat grep echo poweroff kill seq sed awk wc test rm touch mkdir head tr date; do ln -sf busybox "$I/bin/$a"; done
vm_copy_bin "$I" "$HA"
vm_copy_bin "$I" "$R/sbin/ipvsadm" "$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu"
vm_copy_bin "$I" "$(command -v nft)"   # the host's nft: gray routes mark their clients with it
for m in netfilter/nf_defrag_ipv4 netfilter/nf_defrag_ipv6 crc32c_generic libcrc32c nf_conntrack nfnetlink nf_tables nft_ct \
         ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_dh ip_vs_sed ip_vs_nq ip_vs_lblc ip_vs_lblcr ip_vs_fo ip_vs_ovf ip_vs_mh; do
  f=$(find "$MODS/kernel" -name "$(basename $m).ko" | head -1); cp "$f" "$I/lib/modules/"
  echo "$(basename $m)" >>"$I/lib/modules/order"
done
# keepalived's IPVS extras: dummy interfaces for a VRRP instance, the SIP persistence engine
for m in drivers/net/dummy nf_conntrack_sip ip_vs_pe_sip; do
  cp "$(find "$MODS/kernel" -name "$(basename $m).ko" | head -1)" "$I/lib/modules/"; echo "$(basename $m)" >>"$I/lib/modules/order"
done
cat >"$I/etc/ha-x.conf" <<'C'
global_defs {
  router_id vmx
  lvs_flush
  lvs_flush_onstop
  lvs_timeouts tcp 7200 tcpfin 120 udp 30
  lvs_sync_daemon d0 VI_X id 7 maxlen 1400 port 8849 ttl 2 group 224.0.0.82
}
vrrp_instance VI_X {
  state MASTER
  interface d0
  virtual_router_id 51
  priority 150
  advert_int 1
  track_interface {
    d1
  }
  virtual_ipaddress {
    10.7.0.100/24
  }
}
virtual_server 10.0.0.20 5060 {
  lb_algo rr
  lb_kind NAT
  protocol UDP
  persistence_timeout 60
  persistence_engine sip
  ops
  real_server 10.0.1.1 5060 {
    weight 1
    uthreshold 100
    lthreshold 10
  }
}
virtual_server 10.0.0.21 80 {
  lb_algo rr
  lb_kind DR
  protocol TCP
  sorry_server 10.0.1.9 80
  sorry_server_inhibit
  sorry_server_lvs_method NAT
  real_server 10.0.1.1 80 {
    weight 1
  }
  real_server 10.0.1.2 80 {
    weight 1
    lvs_method TUN
  }
}
C
cat >"$I/etc/ha.conf" <<'C'
global_defs {
  router_id vm
}
virtual_server 10.0.0.1 80 {
  delay_loop 1
  lb_algo rr
  lb_kind NAT
  protocol TCP
  real_server 10.0.1.1 80 {
    weight 1
  }
  real_server 10.0.1.2 80 {
    weight 2
  }
  real_server 10.0.1.3 80 {
    weight 1
    MISC_CHECK {
      misc_path "test -f /tmp/up3"
      misc_timeout 1
    }
  }
}
virtual_server 10.0.0.1 443 {
  lb_algo wlc
  lb_kind DR
  protocol TCP
  persistence_timeout 300
  persistence_granularity 255.255.255.0
  real_server 10.0.1.1 443 {
    weight 3
  }
}
virtual_server 10.0.0.2 53 {
  lb_algo sh
  lb_kind TUN
  protocol UDP
  real_server 10.0.1.4 53 {
    weight 1
  }
}
virtual_server_group mail {
  10.0.0.3-4 25
}
virtual_server group mail {
  lb_algo lc
  lb_kind NAT
  protocol TCP
  real_server 10.0.1.6 25 {
    weight 1
  }
}
virtual_server fwmark 7 {
  lb_algo wrr
  lb_kind DR
  real_server 10.0.1.5 0 {
    weight 5
  }
}
C
cat >"$I/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
ip link set lo up
fails=0
echo "UPTIME start $(cat /proc/uptime)"
check() { if eval "$2" >/dev/null 2>&1; then echo "CHECK ok   $1"; else echo "CHECK FAIL $1"; fails=$((fails+1)); fi; }
lvs() { ipvsadm -Ln; }
# waitfor CMD: until CMD succeeds, at most 600 polls (60 s of guest time: TCG on a starved host is slow)
waitfor() { i=0; while [ $i -lt 600 ]; do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; i=$((i+1)); done; return 1; }
ipvsadm -A -t 10.9.9.9:80 -s rr && ipvsadm -a -t 10.9.9.9:80 -r 10.9.9.10:80 -m
touch /tmp/up3
HA_LOG=info ha --config /etc/ha.conf --control /run/ha.sock --state-file /tmp/st.json --lvs-backend ipvs >/tmp/ha.log 2>&1 &
HAPID=$!
check "ha programs the services" "waitfor 'lvs | grep -q 10.0.0.1:80'"
waitfor "lvs | grep -q 10.0.1.3:80"
lvs
check "NAT service, rr"              "lvs | grep -Eq 'TCP  10.0.0.1:80 rr'"
check "NAT destinations and weights" "lvs | grep -Eq '10.0.1.1:80 +Masq +1 ' && lvs | grep -Eq '10.0.1.2:80 +Masq +2 '"
check "DR, wlc, persistence 300 /24" "lvs | grep -Eq 'TCP  10.0.0.1:443 wlc persistent 300 mask 255.255.255.0' && lvs | grep -Eq '10.0.1.1:443 +Route +3 '"
check "virtual_server_group: one service per member" "lvs | grep -Eq 'TCP  10.0.0.3:25 lc' && lvs | grep -Eq 'TCP  10.0.0.4:25 lc' && [ \$(lvs | grep -c '10.0.1.6:25') -eq 2 ]"
check "TUN over UDP, sh"             "lvs | grep -Eq 'UDP  10.0.0.2:53 sh' && lvs | grep -Eq '10.0.1.4:53 +Tunnel +1 '"
check "fwmark service, wrr"          "lvs | grep -Eq 'FWM  7 wrr' && lvs | grep -Eq '10.0.1.5:0 +Route +5 '"
check "/proc/net/ip_vs agrees"       "grep -q 'TCP  0A000001:0050 rr' /proc/net/ip_vs && grep -q 'FWM  00000007 wrr' /proc/net/ip_vs"
check "foreign service untouched"    "lvs | grep -q '10.9.9.9:80' && lvs | grep -q '10.9.9.10:80'"
ha drain 10.0.0.1:80 10.0.1.2:80 --control /run/ha.sock >/dev/null
check "drain: weight 0, still listed" "lvs | grep -Eq '10.0.1.2:80 +Masq +0 '"
ha status --control /run/ha.sock | grep drained >/dev/null && echo "CHECK ok   ha status shows the drain" || { echo "CHECK FAIL ha status shows the drain"; fails=$((fails+1)); }
ha enable 10.0.0.1:80 10.0.1.2:80 --control /run/ha.sock >/dev/null
check "enable: weight back to 2"     "lvs | grep -Eq '10.0.1.2:80 +Masq +2 '"
sed -i 's/weight 3/weight 4/' /etc/ha.conf
kill -HUP $HAPID
check "reload changes a weight"      "waitfor \"ipvsadm -Ln | grep -Eq '10.0.1.1:443 +Route +4 '\""
check "reload deletes no service"    "! grep -q DelService /tmp/ha.log"
rm /tmp/up3
check "failing check removes 10.0.1.3" "waitfor '! ipvsadm -Ln | grep -q 10.0.1.3:80'"
touch /tmp/up3
check "passing check adds it back"   "waitfor 'ipvsadm -Ln | grep -q 10.0.1.3:80'"
# a gray route: an fwmark service (0x47520000 = 1196556288) with the gray real server, a mark
# rule for the client network, and the pool without it; removed together
ha gray add 10.0.0.1:80 --clients 10.5.0.0/16 --real-servers 10.0.1.1:80 --control /run/ha.sock >/dev/null
lvs
nft list table ip ha_gray
check "gray: fwmark service, the pool without its real server" "lvs | grep -Eq 'FWM  1196556288 rr' && ipvsadm -Ln -f 1196556288 | grep -Eq '10.0.1.1:0 +Masq +1 ' && ! ipvsadm -Ln -t 10.0.0.1:80 | grep -q 10.0.1.1:80"
check "gray: nftables marks the clients" "nft list table ip ha_gray | grep 'ip saddr 10.5.0.0/16 ip daddr 10.0.0.1 tcp dport 80' | grep -q 'meta mark set 0x47520000'"
ha gray del 10.0.0.1:80 --clients 10.5.0.0/16 --control /run/ha.sock >/dev/null
check "gray del: service and mark rule gone, pool whole" "! lvs | grep -q FWM.*1196556288 && ! nft list tables | grep -q ha_gray && ipvsadm -Ln -t 10.0.0.1:80 | grep -Eq '10.0.1.1:80 +Masq +1 '"
kill -TERM $HAPID; wait $HAPID
check "shutdown removes our services" "! lvs | grep -q 10.0.0."
check "and leaves the foreign one"    "lvs | grep -q 10.9.9.9:80"
ipvsadm -C
# --- keepalived's IPVS extras (issue 13). Without lvs_flush / lvs_flush_onstop a foreign
# service stays (checked above); with them it goes at start and at stop.
ip link add d0 type dummy; ip link set d0 multicast on; ip addr add 10.7.0.1/24 dev d0; ip link set d0 up
ip link add d1 type dummy; ip link set d1 up
ipvsadm --set 900 120 300
ipvsadm -A -t 10.9.9.9:80 -s rr
daemon() { ipvsadm -Ln --daemon; }
HA_LOG=info ha --config /etc/ha-x.conf --control /run/hax.sock --state-file /tmp/stx.json --lvs-backend ipvs >/tmp/hax.log 2>&1 &
HAX=$!
check "extras: ha programs the service"   "waitfor 'lvs | grep -q 10.0.0.20:5060'"
check "lvs_flush removes a foreign service at start" "! lvs | grep -q 10.9.9.9:80"
ipvsadm -A -t 10.9.9.8:80 -s rr
lvs; ipvsadm -Ln --thresholds; ipvsadm -Ln --timeout
check "lvs_timeouts (ipvsadm -Ln --timeout)" "ipvsadm -Ln --timeout | grep -q 'Timeout (tcp tcpfin udp): 7200 120 30'"
check "ops: one-packet scheduling"       "lvs | grep -Eq 'UDP  10.0.0.20:5060 rr .*ops'"
check "persistence_engine sip"           "lvs | grep -Eq 'UDP  10.0.0.20:5060 rr .*persistent 60.* pe sip'"
check "uthreshold/lthreshold"            "ipvsadm -Ln --thresholds | grep -Eq '10.0.1.1:5060 +100 +10'"
check "real server's own lvs_method, sorry_server_lvs_method" "lvs | grep -Eq '10.0.1.1:80 +Route +1 ' && lvs | grep -Eq '10.0.1.2:80 +Tunnel +1 ' && lvs | grep -Eq '10.0.1.9:80 +Masq +0 '"
check "sync daemon: master once the instance is MASTER" "waitfor \"daemon | grep -q 'master sync daemon (mcast=d0, syncid=7'\" && ! daemon | grep -q backup"
daemon
check "sync daemon: maxlen, group, port, ttl" "daemon | grep master | grep -q 'maxlen=1400, group=224.0.0.82, port=8849, ttl=2'"
ip link set d1 down
check "FAULT: the backup sync daemon instead" "waitfor \"daemon | grep -q 'backup sync daemon (mcast=d0, syncid=7'\" && ! daemon | grep -q master"
ip link set d1 up
check "MASTER again: the master sync daemon" "waitfor \"daemon | grep -q 'master sync daemon'\" && ! daemon | grep -q backup"
sed -i 's/uthreshold 100/uthreshold 200/' /etc/ha-x.conf
kill -HUP $HAX
check "reload edits a threshold"         "waitfor \"ipvsadm -Ln --thresholds | grep -Eq '10.0.1.1:5060 +200 +10'\""
check "own methods: no edit on reload"   "! grep -q 'EditDest(Addr(10.0.0.21' /tmp/hax.log"
kill -TERM $HAX; wait $HAX
check "shutdown stops the sync daemons"  "[ -z \"\$(daemon)\" ]"
check "lvs_flush_onstop empties the whole table" "! lvs | grep -q 10.9.9.8:80 && ! lvs | grep -q 10.0.0.20"
echo "--- ha extras log (last lines)"; tail -5 /tmp/hax.log
ipvsadm -C
. /ipv6.sh
if grep -q bench /proc/cmdline; then
# 10,000 real servers in one service
{ echo "virtual_server 10.0.0.9 80 {"; echo " lb_algo wrr"; echo " lb_kind DR";
  for a in $(seq 0 39); do for b in $(seq 1 250); do echo " real_server 10.1.$a.$b 80 {"; echo "  weight 1"; echo " }"; done; done; echo "}"; } >/tmp/big.conf
ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
t0=$(ms)
ha --config /tmp/big.conf --control /run/big.sock --state-file /tmp/st2.json --lvs-backend ipvs >/tmp/big.log 2>&1 &
BIG=$!
# wait for ha's own report (polling ipvsadm would compete for the one CPU)
i=0; while [ $i -lt 1200 ] && ! grep -q 'data plane programmed' /tmp/big.log; do sleep 0.1; i=$((i+1)); done; t1=$(ms)
n=$(ipvsadm -Ln | grep -c '10\.1\.')
echo "BENCH ha start to 10,000 real servers in IPVS: $((t1 - t0)) ms (TCG, one vCPU)"
grep -o 'changes=[0-9]* ms=[0-9]*' /tmp/big.log | sed 's/^/BENCH ha: netlink programming alone: /'
t2=$(ms); ha --config /tmp/big.conf --check >/dev/null 2>&1; echo "BENCH reading the 30,000-line config: $(( $(ms) - t2 )) ms"
kill -TERM $BIG; wait $BIG
check "10,000 real servers programmed" "[ $n -eq 10000 ]"
# the same table with ipvsadm -R (one process, libnl, one netlink request per line)
ipvsadm -C
{ echo "-A -t 10.0.0.9:80 -s wrr"; for a in $(seq 0 39); do for b in $(seq 1 250); do echo "-a -t 10.0.0.9:80 -r 10.1.$a.$b:80 -g -w 1"; done; done; } >/tmp/big.rules
t3=$(ms); ipvsadm -R </tmp/big.rules; echo "BENCH ipvsadm -R of the same 10,001 entries: $(( $(ms) - t3 )) ms"
ipvsadm -C
fi
echo "--- ha log (last lines)"; tail -5 /tmp/ha.log
echo "UPTIME end $(cat /proc/uptime)"
echo "RESULT fails=$fails"
poweroff -f
INIT
chmod +x "$I/init"

# ---- IPv6 (issue 18): inet6 services (NAT with traffic, DR, TUN). A client and two real
# servers in namespaces joined to the VM's root namespace (the director) by veth pairs; the
# real servers are busybox httpd, the client busybox nc. iproute2 replaces busybox's ip for
# veth and netns.
rm -f "$I/bin/ip"; vm_copy_bin "$I" "$(command -v ip)"
cp "$(find "$MODS/kernel" -name veth.ko | head -1)" "$I/lib/modules/"
for a in httpd nc; do ln -sf busybox "$I/bin/$a"; done
for n in 1 2; do mkdir -p "$I/www$n"; echo "r$n" >"$I/www$n/who"; done
cat >"$I/etc/ha6.conf" <<'C'
global_defs {
  router_id vm6
}
virtual_server 2001:db8:f::100 80 {
  delay_loop 1
  lb_algo rr
  lb_kind NAT
  protocol TCP
  real_server 2001:db8:1::11 80 {
    weight 1
    TCP_CHECK {
      connect_timeout 1
    }
  }
  real_server 2001:db8:2::12 80 {
    weight 1
    TCP_CHECK {
      connect_timeout 1
    }
  }
}
virtual_server 2001:db8:f::101 443 {
  lb_algo wlc
  lb_kind DR
  protocol TCP
  persistence_timeout 60
  real_server 2001:db8:1::11 443 {
    weight 3
  }
}
virtual_server 2001:db8:f::102 53 {
  lb_algo sh
  lb_kind TUN
  protocol UDP
  real_server 2001:db8:2::12 53 {
    weight 2
  }
}
virtual_server fwmark 8 {
  ip_family inet6
  lb_algo rr
  lb_kind DR
  real_server 2001:db8:1::11 0 {
    weight 4
  }
}
C
cat >"$I/ipv6.sh" <<'V6'
# busybox sh runs its own applet for a bare `ip`: iproute2 is /bin/ip
insmod /lib/modules/veth.ko || echo "insmod veth failed"
echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad
echo 1 >/proc/sys/net/ipv6/conf/all/forwarding
mkdir -p /run/netns /var; ln -sf /run /var/run
for n in c 1 2; do
  /bin/ip netns add ns$n
  /bin/ip link add v6$n type veth peer name eth0 netns ns$n
  /bin/ip link set v6$n up
  /bin/ip addr add 2001:db8:$n::1/64 dev v6$n nodad
  /bin/ip -n ns$n link set lo up
  /bin/ip -n ns$n link set eth0 up
  /bin/ip -n ns$n addr add 2001:db8:$n::1$n/64 dev eth0 nodad
  /bin/ip -n ns$n -6 route add default via 2001:db8:$n::1
done
/bin/ip addr add 2001:db8:f::100/128 dev lo
/bin/ip netns exec ns1 httpd -f -p 80 -h /www1 & R1=$!
/bin/ip netns exec ns2 httpd -f -p 80 -h /www2 & R2=$!
# get6 NS ADDR: GET /who from namespace NS (busybox-static's wget crashes here; nc does not)
get6() { printf 'GET /who HTTP/1.0\r\n\r\n' | /bin/ip netns exec $1 nc -w 2 $2 80 2>/dev/null | tail -1; }
check "IPv6: the real servers answer in their namespaces" "waitfor '[ \"\$(get6 nsc 2001:db8:2::12)\" = r2 ]' && [ \"\$(get6 nsc 2001:db8:1::11)\" = r1 ]"
HA_LOG=info ha --config /etc/ha6.conf --control /run/ha6.sock --state-file /tmp/st6.json --lvs-backend ipvs >/tmp/ha6.log 2>&1 &
HA6=$!
# spread6 N: N requests from the client to the VIP; sets ANS (the answers) and N1, N2, NF
spread6() {
  ANS=""; N1=0; N2=0; NF=0; k=0
  while [ $k -lt $1 ]; do
    a=$(get6 nsc 2001:db8:f::100)
    case "$a" in r1) N1=$((N1+1));; r2) N2=$((N2+1));; *) NF=$((NF+1)); a=fail;; esac
    ANS="$ANS $a"; k=$((k+1))
  done
  echo "IPv6 answers:$ANS"
}
check "IPv6: inet6 NAT service, rr" "waitfor \"ipvsadm -Ln | grep -q 'TCP  \\[2001:db8:f::100\\]:80 rr'\""
waitfor "ipvsadm -Ln | grep -q '2001:db8:2::12\]:80'"
lvs
check "IPv6: NAT destinations"      "lvs | grep -Eq '\[2001:db8:1::11\]:80 +Masq +1 ' && lvs | grep -Eq '\[2001:db8:2::12\]:80 +Masq +1 '"
check "IPv6: DR, wlc, persistent"   "lvs | grep -Eq 'TCP  \[2001:db8:f::101\]:443 wlc persistent 60' && lvs | grep -Eq '\[2001:db8:1::11\]:443 +Route +3 '"
check "IPv6: TUN over UDP"          "lvs | grep -Eq 'UDP  \[2001:db8:f::102\]:53 sh' && lvs | grep -Eq '\[2001:db8:2::12\]:53 +Tunnel +2 '"
check "IPv6: inet6 fwmark service"  "lvs | grep -Eq 'FWM  8 ' && ipvsadm -Ln -f 8 -6 | grep -Eq '\[2001:db8:1::11\]:0 +Route +4 '"
spread6 6
check "IPv6: traffic reaches both real servers" "[ $N1 -ge 1 ] && [ $N2 -ge 1 ] && [ $NF = 0 ]"
check "IPv6: ha status names it in brackets" "ha status --control /run/ha6.sock | grep -q '\[2001:db8:f::100\]:80'"
ha drain '[2001:db8:f::100]:80' '[2001:db8:1::11]:80' --control /run/ha6.sock >/dev/null
check "IPv6: drain by bracketed name" "lvs | grep -Eq '\[2001:db8:1::11\]:80 +Masq +0 '"
spread6 4
check "IPv6: a drained server gets no new connection" "[ $N2 = 4 ]"
ha enable '[2001:db8:f::100]:80' '[2001:db8:1::11]:80' --control /run/ha6.sock >/dev/null
kill $R2
check "IPv6: TCP_CHECK removes the stopped server" "waitfor \"! ipvsadm -Ln | grep -q '2001:db8:2::12\\]:80'\""
spread6 4
check "IPv6: then all traffic on r1" "[ $N1 = 4 ]"
kill -TERM $HA6; wait $HA6; kill $R1
check "IPv6: shutdown removes the inet6 services" "! lvs | grep -q 2001:db8:f:: && ! lvs | grep -q 'FWM  8 '"
echo "--- ha (IPv6) log (last lines)"; tail -3 /tmp/ha6.log
V6
vm_initramfs "$I" "$WORK/initrd.gz"
vm_boot "$WORK/initrd.gz" "$WORK/serial.log" 300 "${3:-}"
grep -E '(CHECK|BENCH|RESULT|UPTIME|insmod)|ha:|error|panic' "$WORK/serial.log" || true
grep -q '^RESULT fails=0' "$WORK/serial.log"
