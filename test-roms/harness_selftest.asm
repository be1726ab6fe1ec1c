; harness_selftest.asm - the reporting machinery itself must be able to fail: two checks pass
; and two fail (in real and in protected mode), so the ROM prints FAIL lines, the failure
; count, "FAIL", and exits with EXIT_FAIL (status 35). An emulator whose conditional jumps never
; jump would print "ok" everywhere in the other ROMs; here it cannot match the expected text.

%include "common.inc"
        ROM_BEGIN

start:
        REAL_MODE_INIT
        PRINT16 "harness self-test", 10
        xor ax, ax                  ; ZF=1
        REPORT16 "zf set passes"
        or ax, 1                    ; ZF=0
        REPORT16 "zf clear fails"
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        cmp eax, eax                ; ZF=1
        REPORT32 "zf set passes pm"
        mov eax, 1
        test eax, eax               ; ZF=0
        REPORT32 "zf clear fails pm"
        PRINT32 "failures "
        mov eax, [FAILS]
        call puthex32_32
        PRINT32 10
        jmp finish32
        bits 16

        COMMON_CODE
        ROM_END
