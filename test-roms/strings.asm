; strings.asm - 32-bit string instructions and their rep prefixes (SDM Vol. 2B "REP/REPE/
; REPZ/REPNE/REPNZ"): element-by-element semantics of overlapping copies, a source segment
; override, an ECX of zero, DF=1, where repe/repne stop, and string port I/O (outsb prints to
; the debug console, insb reads its detection byte 0xE9).

%include "common.inc"
        ROM_BEGIN

BUF       equ 0x3000

start:
        REAL_MODE_INIT
        PRINT16 "string instruction tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT

        ; rep movsb with dst = src + 1 copies one byte at a time: the first byte spreads.
        mov dword [BUF], 0x64636261     ; "abcd"
        mov dword [BUF + 4], 0x68676665 ; "efgh"
        mov esi, BUF
        mov edi, BUF + 1
        mov ecx, 7
        rep movsb
        cmp dword [BUF], 0x61616161
        jne .ov_done
        cmp dword [BUF + 4], 0x61616161
.ov_done:
        REPORT32 "overlapping rep movsb"

        ; fs: overrides the source segment (base SCRATCH); the destination is always ES.
        mov dword [SCRATCH + 0x40], 0x11223344
        mov dword [SCRATCH + 0x44], 0x55667788
        mov ax, SEL_DATA_SCR
        mov fs, ax
        mov esi, 0x40
        mov edi, BUF + 0x20
        mov ecx, 2
        fs rep movsd
        cmp dword [BUF + 0x20], 0x11223344
        jne .fs_done
        cmp dword [BUF + 0x24], 0x55667788
.fs_done:
        REPORT32 "rep movsd with fs source"

        mov dword [BUF + 0x30], 0xAAAAAAAA
        mov edi, BUF + 0x30
        xor ecx, ecx
        mov eax, 0x12345678
        rep stosd                       ; ECX = 0: nothing happens
        cmp dword [BUF + 0x30], 0xAAAAAAAA
        jne .zero_done
        cmp edi, BUF + 0x30
.zero_done:
        REPORT32 "rep with ecx 0"

        std
        mov edi, BUF + 0x4C
        mov ecx, 4
        mov eax, 0xDEADBEEF
        rep stosd                       ; fills BUF+0x40..0x4F downwards
        cld
        cmp edi, BUF + 0x3C
        jne .std_done
        cmp dword [BUF + 0x40], 0xDEADBEEF
.std_done:
        REPORT32 "std rep stosd"

        mov esi, ROMBASE + text_a
        mov edi, ROMBASE + text_b
        mov ecx, text_len
        repe cmpsb                      ; stops after the first difference (index 4)
        je .cmps_bad
        cmp ecx, text_len - 5
        jne .cmps_bad
        cmp esi, ROMBASE + text_a + 5
        jmp .cmps_done
.cmps_bad:
        or eax, 1
        test eax, eax                   ; ZF=0
.cmps_done:
        REPORT32 "repe cmpsb stops at difference"

        mov edi, ROMBASE + text_a
        mov ecx, text_len
        mov al, '#'
        repne scasb                     ; not present: runs out, ZF=0
        je .scas_bad
        test ecx, ecx
        jmp .scas_done
.scas_bad:
        or eax, 1
        test eax, eax
.scas_done:
        REPORT32 "repne scasb runs out"

        mov esi, ROMBASE + text_a
        lodsd
        cmp eax, 0x67697262             ; "brig"
        jne .lods_done
        cmp esi, ROMBASE + text_a + 4
.lods_done:
        REPORT32 "lodsd"

        mov esi, ROMBASE + out_text
        mov ecx, out_text_len
        mov dx, DEBUGCON_PORT
        rep outsb                       ; prints the line below
        test ecx, ecx
        REPORT32 "rep outsb"

        mov dword [BUF + 0x60], 0
        mov edi, BUF + 0x60
        mov ecx, 4
        mov dx, DEBUGCON_PORT
        rep insb                        ; the debug console reads back 0xE9
        cmp dword [BUF + 0x60], 0xE9E9E9E9
        REPORT32 "rep insb"

        jmp finish32

text_a: db "bright light"
text_len equ $ - text_a
text_b: db "brigHt light"
out_text: db "printed by rep outsb", 10
out_text_len equ $ - out_text
        bits 16

        COMMON_CODE
        ROM_END
