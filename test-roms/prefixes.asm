; prefixes.asm - operand-size (66) and address-size (67) prefixes in 16-bit real mode and in
; 32-bit protected mode (SDM Vol. 1 3.6 and Vol. 2A 2.1.1).

%include "common.inc"
        ROM_BEGIN

MEM       equ 0x1000                ; scratch in low RAM

start:
        REAL_MODE_INIT
        PRINT16 "prefix tests", 10

; ---- 16-bit mode: 66 makes operations 32-bit ------------------------------------------------
        mov eax, 0x0000FFFF
        add eax, 1                  ; the carry reaches bit 16
        cmp eax, 0x00010000
        REPORT16 "o32 add in real mode"

        mov eax, 0x12345678
        mov ax, 0x9ABC              ; 16-bit write keeps the high half
        cmp eax, 0x12349ABC
        REPORT16 "o16 write keeps high half"

        mov bx, sp
        push eax                    ; 66 push: 4 bytes
        mov cx, bx
        sub cx, sp
        pop edx
        cmp cx, 4
        jne .push_done
        cmp edx, 0x12349ABC
.push_done:
        REPORT16 "o32 push/pop"

        xor ax, ax
        mov ecx, 3                  ; a32 loop counts with ECX
.l32:   inc ax
        a32 loop .l32
        cmp ax, 3
        REPORT16 "a32 loop uses ecx"

        mov ecx, 0x00010000         ; CX = 0 but ECX != 0
        mov ax, 1
        jcxz .jcxz_taken            ; 16-bit address size: tests CX
        mov ax, 0
.jcxz_taken:
        a32 jcxz .jecxz_wrong       ; jecxz: ECX is not zero
        cmp ax, 1
        jmp .jcx_done
.jecxz_wrong:
        or ax, 0xFFFF               ; ZF=0
.jcx_done:
        REPORT16 "jcxz vs jecxz"

        mov dword [MEM + 0x40], 0x0BADC0DE
        mov ebx, MEM
        mov esi, 0x10
        mov eax, [ebx + esi * 4]    ; 67: 32-bit addressing with SIB in real mode
        cmp eax, 0x0BADC0DE
        REPORT16 "a32 sib addressing"

        mov dword [MEM + 0x100], 0
        mov esi, MEM + 0x40
        mov edi, MEM + 0x100
        mov ecx, 4
        a32 rep movsb               ; ESI/EDI/ECX
        cmp dword [MEM + 0x100], 0x0BADC0DE
        jne .rep_done
        cmp edi, MEM + 0x104
.rep_done:
        REPORT16 "a32 rep movsb"

        mov bx, MEM
        mov si, 0x40
        mov eax, [bx + si]          ; 16-bit addressing, 32-bit operand
        cmp eax, 0x0BADC0DE
        REPORT16 "o32 load via bx+si"

        mov eax, 0xFFFFFFFF
        mov edx, 0
        mov ecx, 0x10
        div ecx                     ; o32 div in real mode: 0x0FFFFFFF r 0xF
        cmp eax, 0x0FFFFFFF
        jne .div_done
        cmp edx, 0xF
.div_done:
        REPORT16 "o32 div in real mode"

        ENTER_PM32 pm_entry

; ---- 32-bit mode: 66 makes operations 16-bit, 67 makes addressing 16-bit --------------------
        bits 32
pm_entry:
        PM32_INIT
        mov eax, 0x1234FFFF
        add ax, 1                   ; 16-bit add: ZF and CF, high half untouched
        pushfd
        pop ecx
        and ecx, 0x41
        cmp ecx, 0x41
        jne .add_done
        cmp eax, 0x12340000
.add_done:
        REPORT32 "o16 add flags in pm"

        mov ebx, esp
        push ax                     ; 66 push: 2 bytes
        mov ecx, ebx
        sub ecx, esp
        pop dx
        cmp ecx, 2
        REPORT32 "o16 push in pm"

        mov dword [MEM], 0x11112222
        mov dword [MEM + 0x10000], 0
        mov ebx, 0xFFFF0000 + MEM   ; only BX (= MEM) is used by 16-bit addressing
        mov eax, [bx]
        cmp eax, 0x11112222
        REPORT32 "a16 addressing in pm"

        mov bx, 0xFFF0
        mov si, MEM + 0x10          ; bx+si wraps at 64 KiB to MEM
        mov eax, [bx + si]
        cmp eax, 0x11112222
        REPORT32 "a16 wraparound"

        mov edi, 0xABCD0000 + MEM + 0x200
        mov ecx, 0x55550004
        mov al, 0x77
        a16 rep stosb               ; DI and CX only; the high halves stay
        cmp ecx, 0x55550000
        jne .stos_done
        cmp edi, 0xABCD0000 + MEM + 0x204
        jne .stos_done
        cmp dword [MEM + 0x200], 0x77777777
.stos_done:
        REPORT32 "a16 rep stosb"

        mov dword [MEM + 0x300], 0x89ABCDEF
        mov esi, MEM + 0x300
        mov edi, MEM + 0x310
        mov ecx, 2
        rep movsw                   ; 66 movs: 2-byte elements, ECX count
        cmp dword [MEM + 0x310], 0x89ABCDEF
        jne .movsw_done
        cmp esi, MEM + 0x304
.movsw_done:
        REPORT32 "o16 rep movsw"

        mov eax, 0xFFFF8000
        cwde                        ; from AX
        mov edx, eax
        mov ax, 0x8000
        cwd                         ; 16-bit: DX = 0xFFFF, high half of EDX kept
        cmp edx, 0xFFFFFFFF
        jne .cw_done
        mov eax, 0x80000000
        cdq
        cmp edx, 0xFFFFFFFF
.cw_done:
        REPORT32 "cwd/cwde/cdq"

        mov ecx, 0x12340001
        mov ax, 0
.l16:   inc ax
        a16 loop .l16               ; CX 1 -> 0: one iteration, ECX high half kept
        cmp ecx, 0x12340000
        jne .loop_done
        cmp ax, 1
.loop_done:
        REPORT32 "a16 loop uses cx"

        mov eax, 0x11111111
        mov ebx, 0xFFFF0002
        imul ax, bx, 3              ; 66 imul with immediate: AX = 6
        cmp eax, 0x11110006
        REPORT32 "o16 imul imm"

        movzx eax, byte [ROMBASE + byte_ff]
        movsx ebx, word [ROMBASE + word_8000]
        cmp eax, 0xFF
        jne .mov_done
        cmp ebx, 0xFFFF8000
.mov_done:
        REPORT32 "movzx/movsx mem"

        jmp finish32

byte_ff:   db 0xFF
word_8000: dw 0x8000
        bits 16

        COMMON_CODE
        ROM_END
