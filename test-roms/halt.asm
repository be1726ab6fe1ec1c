; halt.asm - a guest that stops for good: it prints a line and executes HLT with interrupts
; disabled. emu ends the run with RunOutcome::Halted (exit status 4). QEMU would wait forever
; here, so this ROM is not compared with QEMU.

%include "common.inc"
        ROM_BEGIN

start:
        REAL_MODE_INIT
        PRINT16 "halting with interrupts off", 10
        cli
        hlt
        PRINT16 "FAIL: ran past hlt", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        jmp $

        COMMON_CODE
        ROM_END
