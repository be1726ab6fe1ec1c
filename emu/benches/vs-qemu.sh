#!/usr/bin/env bash
# Compare emu's JIT with QEMU's TCG on the same CPU-bound guest (guest/compute.asm).
#
#   emu/benches/vs-qemu.sh [ROUNDS] [RUNS]
#
# Builds emu in release mode, assembles the guest with ROUNDS rounds (default 1000, ~0.6 G guest
# instructions), runs it RUNS times (default 3) on each emulator, checks both print the same
# checksum and exit status, and reports the best wall-clock time of each and the ratio. QEMU's
# start-up time is measured with ROUNDS=1 and subtracted from both sides' totals alike.
set -euo pipefail
rounds=${1:-1000}
runs=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in nasm qemu-system-x86_64 python3; do
    command -v "$tool" >/dev/null || { echo "vs-qemu: $tool is not installed" >&2; exit 2; }
done
# EMU=PATH runs that emu binary instead of building one (e.g. an older build, for before/after).
if [ -z "${EMU:-}" ]; then
    (cd "$root" && cargo build --release -q -p emu)
fi
emu=${EMU:-"$root/target/release/emu"}

image() { # rounds -> path
    local out="$work/compute-$1.bin"
    nasm -f bin -o "$work/compute.bin" "$here/guest/compute.asm"
    python3 - "$work/compute.bin" "$out" "$1" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[0xFFE0:0xFFE4] = struct.pack('<I', int(sys.argv[3]))
open(sys.argv[2], 'wb').write(b)
PY
    echo "$out"
}

best() { # command... -> prints "seconds output status" of the fastest run
    local best_t="" out st t0 t1 t
    for _ in $(seq "$runs"); do
        t0=$(date +%s%N)
        set +e
        out=$("$@" 2>/dev/null)
        st=$?
        set -e
        t1=$(date +%s%N)
        t=$(( (t1 - t0) / 1000000 ))
        if [ -z "$best_t" ] || [ "$t" -lt "$best_t" ]; then best_t=$t; fi
    done
    echo "$best_t $out $st"
}

rom=$(image "$rounds")
tiny=$(image 1)
qemu=(qemu-system-x86_64 -accel tcg -display none -nodefaults -debugcon stdio
      -device isa-debug-exit,iobase=0xf4,iosize=4 -bios)

read -r q_ms q_out q_st < <(best "${qemu[@]}" "$rom")
read -r q0_ms _ _ < <(best "${qemu[@]}" "$tiny")
read -r e_ms e_out e_st < <(best "$emu" run --accel jit --bios "$rom")
read -r e0_ms _ _ < <(best "$emu" run --accel jit --bios "$tiny")

echo "guest: compute.asm, $rounds rounds; best of $runs runs"
echo "qemu tcg : ${q_ms} ms total, ${q0_ms} ms start-up; output $q_out, status $q_st"
echo "emu jit  : ${e_ms} ms total, ${e0_ms} ms start-up; output $e_out, status $e_st"
if [ "$q_out" != "$e_out" ] || [ "$q_st" != "$e_st" ]; then
    echo "MISMATCH: emu and qemu disagree" >&2
    exit 1
fi
python3 - "$q_ms" "$q0_ms" "$e_ms" "$e0_ms" <<'PY'
import sys
q, q0, e, e0 = map(float, sys.argv[1:])
qn, en = max(q - q0, 1.0), max(e - e0, 1.0)
print(f"net guest time: qemu {qn:.0f} ms, emu {en:.0f} ms -> emu is {qn / en:.2f}x QEMU TCG's speed")
PY
