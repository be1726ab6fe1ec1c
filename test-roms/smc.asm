; smc.asm - self-modifying code: code copied to RAM and run, patched and run again, patched
; from inside its own block (the next instruction), in real mode and in 32-bit protected mode.
; x86 processors notice stores to instructions they are about to run (SDM Vol. 3A 11.6), so a
; JIT must invalidate translations of written code pages.

%include "common.inc"
        ROM_BEGIN

CODE16    equ 0x3000                ; RAM copy of the real-mode routine
CODE32    equ 0x4000                ; RAM copy of the 32-bit routine

start:
        REAL_MODE_INIT
        PRINT16 "self-modifying code tests", 10

        ; Copy `ret_imm16` to RAM and call it: AX = 0x1111.
        push ds
        mov ax, ROMSEG
        mov ds, ax
        mov si, ret_imm16
        mov di, CODE16
        mov cx, ret_imm16_len
        rep movsb
        pop ds
        call 0x0000:CODE16
        cmp ax, 0x1111
        REPORT16 "run copied code"

        mov word [CODE16 + 1], 0x2222   ; patch the mov's immediate
        call 0x0000:CODE16
        cmp ax, 0x2222
        REPORT16 "run patched code"

        ; Loop over the same code, patching it each time round.
        xor bx, bx
        mov cx, 5
.again: mov [CODE16 + 1], cx
        call 0x0000:CODE16
        add bx, ax                      ; 5+4+3+2+1
        loop .again
        cmp bx, 15
        REPORT16 "patch in a loop"

        ; Patch the next instruction from inside the same block (runs from RAM).
        push ds
        mov ax, ROMSEG
        mov ds, ax
        mov si, patch_next16
        mov di, CODE16 + 0x100
        mov cx, patch_next16_len
        rep movsb
        pop ds
        call 0x0000:CODE16 + 0x100
        cmp ax, 0x5678
        REPORT16 "patch next instruction"

        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        mov esi, ROMBASE + ret_imm32
        mov edi, CODE32
        mov ecx, ret_imm32_len
        rep movsb
        mov ebx, CODE32
        call ebx
        cmp eax, 0x11111111
        REPORT32 "run copied code pm"

        mov dword [CODE32 + 1], 0x22222222
        call ebx
        cmp eax, 0x22222222
        REPORT32 "run patched code pm"

        mov esi, ROMBASE + patch_next32
        mov edi, CODE32 + 0x100
        mov ecx, patch_next32_len
        rep movsb
        mov ebx, CODE32 + 0x100
        call ebx
        cmp eax, 0x9ABCDEF0
        REPORT32 "patch next instruction pm"

        ; Code written with rep stosb over a page that held translated code.
        mov edi, CODE32
        mov ecx, 0x100
        mov al, 0x90                    ; nop sled
        rep stosb
        mov byte [CODE32 + 0xFF], 0xC3  ; ret
        mov eax, 0x77
        mov ebx, CODE32
        call ebx                        ; runs the nops, leaves EAX alone
        cmp eax, 0x77
        REPORT32 "overwrite with rep stosb"
        jmp finish32

; Templates, copied to RAM before they run.
ret_imm32:
        mov eax, 0x11111111
        ret
ret_imm32_len equ $ - ret_imm32

patch_next32:                           ; at CODE32 + 0x100
        mov dword [CODE32 + 0x100 + (.target - patch_next32) + 1], 0x9ABCDEF0
.target:
        mov eax, 0x12345678
        ret
patch_next32_len equ $ - patch_next32
        bits 16

ret_imm16:
        mov ax, 0x1111
        retf
ret_imm16_len equ $ - ret_imm16

patch_next16:                           ; at 0000:CODE16 + 0x100, DS = 0
        mov word [CODE16 + 0x100 + (.target - patch_next16) + 1], 0x5678
.target:
        mov ax, 0x1234
        retf
patch_next16_len equ $ - patch_next16

        COMMON_CODE
        ROM_END
