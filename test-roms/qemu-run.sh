#!/usr/bin/env bash
# Run a test ROM under QEMU the way the integration tests do: debugcon (0xE9) and COM1 share
# stdout, stdin goes to COM1 (attached last, so the multiplexer gives it the input focus),
# isa-debug-exit at 0xF4 sets the exit status. Usage: qemu-run.sh ROM [extra qemu args]
# e.g. printf 'ping\n' | qemu-run.sh build/serial_echo.rom
set -euo pipefail
rom=$1; shift
exec timeout 60 qemu-system-x86_64 -accel ${QEMU_ACCEL:-tcg} -cpu max -bios "$rom" -m 128M -display none -nodefaults \
    -chardev stdio,id=out,mux=on -device isa-debugcon,iobase=0xe9,chardev=out \
    -device isa-serial,chardev=out -device isa-debug-exit,iobase=0xf4,iosize=4 "$@"
