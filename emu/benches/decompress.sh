#!/usr/bin/env bash
# The Linux kernel's decompressor phase under emu's JIT: time from start to the kernel's first
# line ("Linux version"), which is almost all compute-bound generated code (the xz/LZMA and CRC
# loops of the boot stub) plus the compiles it needs.
#
#   emu/benches/decompress.sh [RUNS] [EMU...]
#
# Runs each emu binary RUNS times (default 5), alternating between them so that machine load
# hits them alike, and prints the best and median wall time and the process's CPU time (user +
# system, all threads: the compile thread included) for each. Without EMU arguments it builds
# and runs this tree's release emu. KERNEL (default: the newest /boot/vmlinuz-*) selects the
# kernel; any initramfs works, since the run stops at the kernel's first line.
set -euo pipefail
runs=${1:-5}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kernel=${KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || { echo "decompress: no kernel" >&2; exit 2; }
command -v python3 >/dev/null || { echo "decompress: python3 is not installed" >&2; exit 2; }
if [ "$#" -eq 0 ]; then
    (cd "$root" && cargo build --release -q -p emu)
    set -- "$root/target/release/emu"
fi

python3 - "$runs" "$kernel" "$@" <<'PY'
import os, statistics, subprocess, sys, time

runs, kernel, emus = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def once(emu):
    """Wall and CPU milliseconds from start to the kernel's first line."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        [emu, "run", "--accel", "jit", "--kernel", kernel, "--append",
         "console=ttyS0 panic=-1 earlyprintk=serial", "--memory", "256M"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, wall = b"", None
    while True:
        chunk = p.stdout.read1(4096)
        if not chunk:
            break
        seen = seen[-64:] + chunk
        if b"Linux version" in seen:
            wall = (time.monotonic() - t0) * 1000
            break
    p.kill()
    _, _, usage = os.wait4(p.pid, 0)
    if wall is None:
        sys.exit(f"decompress: {emu} never printed 'Linux version'")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000

results = {e: [] for e in emus}
for _ in range(runs):
    for e in emus:
        results[e].append(once(e))
for e in emus:
    walls = sorted(w for w, _ in results[e])
    cpus = sorted(c for _, c in results[e])
    print(f"{e}: wall best {walls[0]:.0f} ms, median {statistics.median(walls):.0f} ms; "
          f"cpu best {cpus[0]:.0f} ms, median {statistics.median(cpus):.0f} ms ({runs} runs)")
PY
