#!/usr/bin/env bash
# Linux boot time to a userspace marker: emu's JIT beside QEMU's TCG, same kernel, same
# initramfs, same command line, same run (issue #5).
#
#   emu/benches/linux-boot.sh [KERNEL] [BUSYBOX]
#
# KERNEL defaults to the newest /boot/vmlinuz-* (Debian: linux-image-amd64), BUSYBOX to
# /bin/busybox (Debian: busybox-static). Builds a release emu and an initramfs whose /init prints
# EMU-USERSPACE-OK and powers off, then times each emulator from start to the marker and to its
# exit (both leave through ACPI poweroff). Needs root for the initramfs's /dev/console node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kernel=${1:-$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)}
busybox=${2:-/bin/busybox}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

die() { echo "linux-boot: $*" >&2; exit 2; }
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no kernel (apt-get install linux-image-amd64, or pass one)"
[ -x "$busybox" ] || die "no $busybox (apt-get install busybox-static, or pass one)"
for tool in cpio gzip qemu-system-x86_64; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || die "run as root (the initramfs needs a /dev/console device node)"

mkdir -p "$work/root/bin" "$work/root/dev" "$work/root/proc"
cp "$busybox" "$work/root/bin/busybox"
mknod -m 600 "$work/root/dev/console" c 5 1
cat >"$work/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo EMU-USERSPACE-OK
/bin/busybox poweroff -f
EOF
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$work/initrd.gz"

# EMU=PATH runs that emu binary instead of building one (e.g. an older build, for before/after).
if [ -z "${EMU:-}" ]; then
    (cd "$root" && cargo build --release -q -p emu)
fi
emu=${EMU:-"$root/target/release/emu"}
cmdline="console=ttyS0 panic=-1"

# Run a command, print "seconds-to-marker seconds-to-exit status".
timed() {
    local log="$work/out.$RANDOM" t0 t_marker="" t_end st=0
    : >"$log"
    t0=$(date +%s%N)
    "$@" </dev/null >"$log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$t_marker" ] && grep -q EMU-USERSPACE-OK "$log"; then
            t_marker=$(date +%s%N)
        fi
        sleep 0.05
    done
    wait "$pid" || st=$?
    t_end=$(date +%s%N)
    [ -n "$t_marker" ] || { grep -q EMU-USERSPACE-OK "$log" && t_marker=$t_end; }
    [ -n "$t_marker" ] || { tail -n 20 "$log" >&2; die "no marker from: $*"; }
    echo "$(( (t_marker - t0) / 1000000 )) $(( (t_end - t0) / 1000000 )) $st"
}

echo "kernel $kernel, initramfs $(stat -c %s "$work/initrd.gz") bytes, 256 MiB, \"$cmdline\""
read -r q_marker q_end q_st < <(timed timeout 1800 qemu-system-x86_64 -accel tcg -m 256M \
    -display none -nodefaults -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" -append "$cmdline")
read -r e_marker e_end e_st < <(timed timeout 1800 "$emu" run --accel jit --memory 256M \
    --kernel "$kernel" --initrd "$work/initrd.gz" --append "$cmdline")
printf '%-22s %12s %12s %7s\n' emulator "to marker" "to exit" status
printf '%-22s %10d ms %10d ms %7d\n' "qemu-system-x86_64 tcg" "$q_marker" "$q_end" "$q_st"
printf '%-22s %10d ms %10d ms %7d\n' "emu jit" "$e_marker" "$e_end" "$e_st"
python3 -c "print(f'emu/QEMU time to marker: {$e_marker / $q_marker:.2f}x')"
