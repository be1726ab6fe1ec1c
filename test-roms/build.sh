#!/usr/bin/env bash
# Build every test ROM by hand into test-roms/build/ (the test suite builds its own copies into
# cargo's OUT_DIR through tests/build.rs with the same commands). Needs nasm, and gcc with
# 32-bit support (Debian: gcc-multilib) for the C ROM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
for src in "$here"/*.asm; do
    name=$(basename "$src" .asm)
    echo "nasm $name"
    nasm -f bin -I "$here/include/" -o "$out/$name.rom" "$src"
done
# The C ROM: compile, link at 0xF0000, flatten, wrap with the reset-vector stub.
# One flag a line in c/cflags, shared with tests/build.rs.
mapfile -t CFLAGS < "$here/c/cflags"
objs=()
for c in "$here"/c/*.c; do
    o="$out/c-$(basename "$c" .c).o"
    echo "gcc $(basename "$c")"
    gcc "${CFLAGS[@]}" -c -o "$o" "$c"
    objs+=("$o")
done
gcc -m32 -nostdlib -static -no-pie -Wl,--build-id=none -T "$here/c/link.ld" -o "$out/c_program.elf" "${objs[@]}" -lgcc
objcopy -O binary -j .text -j .rodata -j .data "$out/c_program.elf" "$out/c_program.bin"
nasm -f bin -I "$here/include/" -DCBIN="'$out/c_program.bin'" -o "$out/c_program.rom" "$here/c/reset.asm"
# The boot disk: a raw 2 MiB hard-disk image whose boot sector tests INT 13h (not a ROM).
echo "nasm disk/boot_disk"
nasm -f bin -I "$here/include/" -o "$out/boot_disk.img" "$here/disk/boot_disk.asm"
echo "ROMs in $out"
