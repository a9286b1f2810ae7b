# Helpers to boot a throwaway Debian kernel under qemu (TCG) with a busybox initramfs.
# Nothing is installed: the .debs are fetched with `apt-get download` into a cache and
# unpacked with `dpkg -x`.
set -eu
VM_CACHE=${OPSFLOW_VM_CACHE:-/var/cache/opsflow/vm}

# vm_fetch PKG...: download the packages (once) and unpack them into $VM_CACHE/root
vm_fetch() {
  mkdir -p "$VM_CACHE/debs" "$VM_CACHE/root"
  local p have
  for p in "$@"; do
    have=$(ls "$VM_CACHE/debs/${p}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$have" ]; then
      (cd "$VM_CACHE/debs" && apt-get download -q "$p" >/dev/null 2>&1) || { echo "vm: cannot apt-get download $p" >&2; return 1; }
      have=$(ls "$VM_CACHE/debs/${p}_"*.deb | head -1)
      dpkg -x "$have" "$VM_CACHE/root"
    fi
  done
}

# vm_kernel_pkg: the versioned kernel package linux-image-amd64 points at
vm_kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

# vm_modules_dir: /lib/modules/VERSION inside the unpacked root
vm_modules_dir() { ls -d "$VM_CACHE/root/lib/modules/"*-amd64 | sort | tail -1; }
vm_vmlinuz() { ls "$VM_CACHE/root/boot/vmlinuz-"* | sort | tail -1; }

# vm_copy_bin DIR BINARY [LIBPATH]: a dynamic binary and the libraries ldd names
vm_copy_bin() {
  local dir=$1 bin=$2 lp=${3:-} lib
  mkdir -p "$dir/bin" "$dir/lib64" "$dir/lib/x86_64-linux-gnu"
  cp "$bin" "$dir/bin/"
  for lib in $(LD_LIBRARY_PATH="$lp" ldd "$bin" | grep -Eo '/[^ ]+\.so[^ ]*'); do
    case "$lib" in
      */ld-linux-x86-64.so.2) cp -L "$lib" "$dir/lib64/" ;;
      *) cp -L "$lib" "$dir/lib/x86_64-linux-gnu/" ;;
    esac
  done
}

# vm_initramfs DIR OUT: pack DIR as a gzipped newc cpio
vm_initramfs() { (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 >"$2"); }

# vm_boot INITRD LOG TIMEOUT [EXTRA-CMDLINE]: boot the cached kernel with INITRD, serial
# console to LOG
# (no_timer_check: on a starved host TCG's timer misses the kernel's IO-APIC check, which then
# panics "IO-APIC + timer doesn't work!"; seen under O's CPU hog)
vm_boot() {
  timeout "$3" qemu-system-x86_64 -accel tcg -m 768 -smp 1 -nographic -no-reboot -nic none \
    -kernel "$(vm_vmlinuz)" -initrd "$1" -append "console=ttyS0 quiet panic=-1 loglevel=3 no_timer_check ${4:-}" \
    </dev/null >"$2" 2>&1 || true
}
