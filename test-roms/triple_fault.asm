; triple_fault.asm - a guest that triple-faults: with an empty IDT (limit 0) an int3 cannot
; be delivered (#GP), neither can the #GP nor the double fault that follows, so the processor
; shuts down (SDM Vol. 3A 6.15, "Interrupt 8"). emu ends the run with
; RunOutcome::TripleFault (exit status 4); QEMU would reset instead, so no QEMU comparison.

%include "common.inc"
        ROM_BEGIN

start:
        REAL_MODE_INIT
        PRINT16 "triple fault next", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        lidt [ROMBASE + empty_idt]
        int3
        PRINT32 "FAIL: survived a fault with an empty IDT", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        jmp $

empty_idt:
        dw 0
        dd 0
        bits 16

        COMMON_CODE
        ROM_END
