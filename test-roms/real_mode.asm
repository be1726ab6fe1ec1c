; real_mode.asm - 16-bit real-mode integer instructions: ALU with exact flags, shifts and
; rotates, mul/div and #DE through the IVT, string ops with rep, loop/jcxz, enter/leave,
; xchg/xadd/cmpxchg, setcc/cmov, bt*, bswap, movzx/movsx, int n/iret, far call/ret/jmp, in/out.
; Each check prints "ok NAME"; expected flag values are worked out by hand in the comments
; (SDM Vol. 1 3.4.3.1: CF=0x001 PF=0x004 AF=0x010 ZF=0x040 SF=0x080 OF=0x800).

%include "common.inc"
        ROM_BEGIN

DE_COUNT  equ 0x600                 ; word: #DE handler invocations
DE_IP     equ 0x602                 ; word: IP the last #DE pushed
INT40_HIT equ 0x604                 ; word: set by the int 0x40 handler
STR_DST   equ 0x1000                ; scratch buffer for string instructions
MEMVAR    equ 0x1200                ; scratch word/dword for memory-operand tests
NO_AF     equ EFLAGS_STATUS & ~0x10 ; AF is undefined after logic ops and shifts
SZPC      equ 0xC5                  ; SF ZF PF CF

; Check AX == %1 and (FLAGS & %3) == %2; leaves ZF for REPORT16. Uses DI.
%macro CHECK_AX_FLAGS 3
        pushf
        pop di
        and di, %3
        cmp di, %2
        jne %%out
        cmp ax, %1
%%out:
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "real mode tests", 10

; ---- 16-bit ALU with exact flags -----------------------------------------------------------
        mov ax, 0x7FFF
        add ax, 1                   ; 0x8000: OF SF AF PF(0x00 even)
        CHECK_AX_FLAGS 0x8000, 0x894, EFLAGS_STATUS
        REPORT16 "add16"

        xor ax, ax
        sub ax, 1                   ; 0xFFFF: CF AF SF PF
        CHECK_AX_FLAGS 0xFFFF, 0x095, EFLAGS_STATUS
        REPORT16 "sub16"

        stc
        mov ax, 0xFFFF
        adc ax, 0                   ; 0x0000: CF ZF AF PF
        CHECK_AX_FLAGS 0x0000, 0x055, EFLAGS_STATUS
        REPORT16 "adc16"

        stc
        mov ax, 0x8000
        sbb ax, 0                   ; 0x7FFF: OF AF PF
        CHECK_AX_FLAGS 0x7FFF, 0x814, EFLAGS_STATUS
        REPORT16 "sbb16"

        mov ax, 0xF0F0
        and ax, 0x0FF0              ; 0x00F0: PF (4 bits), CF=OF=0
        CHECK_AX_FLAGS 0x00F0, 0x004, NO_AF
        REPORT16 "and16"

        mov ax, 0x8000
        or ax, 0x0001               ; 0x8001: SF, PF=0 (0x01 odd)
        CHECK_AX_FLAGS 0x8001, 0x080, NO_AF
        REPORT16 "or16"

        stc
        mov ax, 0x1234
        xor ax, ax                  ; 0: ZF PF, CF cleared
        CHECK_AX_FLAGS 0x0000, 0x044, NO_AF
        REPORT16 "xor16"

        stc
        mov ax, 0xFFFF
        inc ax                      ; 0: ZF AF PF, CF preserved
        CHECK_AX_FLAGS 0x0000, 0x055, EFLAGS_STATUS
        REPORT16 "inc16"

        clc
        mov ax, 0x8000
        dec ax                      ; 0x7FFF: OF AF PF, CF preserved (0)
        CHECK_AX_FLAGS 0x7FFF, 0x814, EFLAGS_STATUS
        REPORT16 "dec16"

        mov ax, 1
        neg ax                      ; 0xFFFF: CF AF SF PF
        CHECK_AX_FLAGS 0xFFFF, 0x095, EFLAGS_STATUS
        REPORT16 "neg16"

        mov ax, 0x1234
        cmp ax, 0x1234              ; ZF PF
        CHECK_AX_FLAGS 0x1234, 0x044, EFLAGS_STATUS
        REPORT16 "cmp16"

        mov al, 0x7F
        add al, 0x01                ; 0x80: OF SF AF, PF=0 (0x80 odd)
        mov ah, 0
        CHECK_AX_FLAGS 0x0080, 0x890, EFLAGS_STATUS
        REPORT16 "add8"

; ---- shifts and rotates --------------------------------------------------------------------
        mov ax, 0x4001
        shl ax, 1                   ; 0x8002: OF (MSB^CF), SF, PF=0
        CHECK_AX_FLAGS 0x8002, 0x880, NO_AF
        REPORT16 "shl16"

        mov ax, 0x0018
        mov cl, 4
        shr ax, cl                  ; 0x0001: CF = bit 3 of 0x18; OF undefined
        CHECK_AX_FLAGS 0x0001, 0x001, SZPC
        REPORT16 "shr16"

        mov ax, 0x8000
        sar ax, 15                  ; 0xFFFF: CF = bit 14 = 0, SF PF
        CHECK_AX_FLAGS 0xFFFF, 0x084, SZPC
        REPORT16 "sar16"

        mov ax, 0x8001
        rol ax, 1                   ; 0x0003: CF=1, OF = MSB^CF = 1
        CHECK_AX_FLAGS 0x0003, 0x801, 0x801
        REPORT16 "rol16"

        stc
        mov ax, 0x0002
        rcr ax, 1                   ; 0x8001: CF=0, OF = bit15^bit14 = 1
        CHECK_AX_FLAGS 0x8001, 0x800, 0x801
        REPORT16 "rcr16"

        mov ax, 0x1234
        mov cl, 0
        stc
        shl ax, cl                  ; count 0: flags unchanged (CF stays 1)
        CHECK_AX_FLAGS 0x1234, 0x001, 0x001
        REPORT16 "shl count 0"

; ---- multiply and divide ----------------------------------------------------------------
        mov ax, 0x1234
        mov cx, 0x0100
        mul cx                      ; DX:AX = 0x0012:0x3400, CF=OF=1
        CHECK_AX_FLAGS 0x3400, 0x801, 0x801
        jne .mul_done
        cmp dx, 0x0012
.mul_done:
        REPORT16 "mul16"

        mov ax, -2
        mov cx, 3
        imul ax, cx                 ; -6, fits: CF=OF=0
        CHECK_AX_FLAGS 0xFFFA, 0x000, 0x801
        REPORT16 "imul16"

        mov al, 0x80
        mov cl, 2
        imul cl                     ; AX = -256, does not fit in AL: CF=OF=1
        CHECK_AX_FLAGS 0xFF00, 0x801, 0x801
        REPORT16 "imul8"

        mov dx, 1
        xor ax, ax
        mov cx, 3
        div cx                      ; 0x10000 / 3 = 0x5555 r 1
        cmp dx, 1
        jne .div_done
        cmp ax, 0x5555
.div_done:
        REPORT16 "div16"

        mov ax, -7
        mov cl, 2
        idiv cl                     ; AL = -3, AH = -1 (remainder has the dividend's sign)
        cmp ax, 0xFFFD
        REPORT16 "idiv8"

; ---- #DE through the IVT ---------------------------------------------------------------------
        mov word [0 * 4], de_handler
        mov word [0 * 4 + 2], ROMSEG
        mov word [DE_COUNT], 0
        mov ax, 5
        xor cl, cl
.de_zero:
        div cl                      ; divide by zero
        cmp word [DE_COUNT], 1
        jne .de1
        cmp word [DE_IP], .de_zero  ; the fault pushes the address of the div itself
.de1:   REPORT16 "#DE divide by zero"

        mov ax, 0x1000
        mov cl, 2
.de_ovf:
        div cl                      ; quotient 0x800 does not fit in AL
        cmp word [DE_COUNT], 2
        jne .de2
        cmp word [DE_IP], .de_ovf
.de2:   REPORT16 "#DE quotient overflow"

; ---- int n / iret ------------------------------------------------------------------------------
        mov word [0x40 * 4], int40_handler
        mov word [0x40 * 4 + 2], ROMSEG
        mov word [INT40_HIT], 0
        xor dx, dx
        sti
        stc
        int 0x40                    ; the handler clears CF and sees IF=0; iret restores both
        pushf
        cli
        pop ax
        and ax, 0x201               ; IF and CF restored from the pushed image
        cmp ax, 0x201
        jne .int_done
        cmp word [INT40_HIT], 0x200 ; handler saw IF=0 and IF=1 in the pushed FLAGS
        jne .int_done
        cmp dx, 0xBEEF
.int_done:
        REPORT16 "int/iret"

; ---- far call / ret / jmp -----------------------------------------------------------------------
        xor ax, ax
        call ROMSEG:far_func        ; returns CS in AX
        cmp ax, ROMSEG
        REPORT16 "far call/retf"

        push word 0x1111            ; sentinel
        push word 0x2222            ; argument
        call ROMSEG:far_func_imm    ; retf 2 drops the argument
        pop ax
        cmp ax, 0x1111
        REPORT16 "retf imm16"

        mov word [MEMVAR], far_func
        mov word [MEMVAR + 2], ROMSEG
        xor ax, ax
        call far [MEMVAR]
        cmp ax, ROMSEG
        REPORT16 "far call mem"

        jmp 0xF100:(alias_target - 0x1000)  ; same code, another CS base
alias_back:
        cmp ax, 0xF100
        REPORT16 "far jmp cs base"

; ---- string instructions with rep -----------------------------------------------------------
        push ds
        mov ax, ROMSEG
        mov ds, ax
        mov si, pattern
        mov di, STR_DST
        mov cx, pattern_len
        rep movsb
        pop ds
        cmp cx, 0
        jne .movs_done
        cmp di, STR_DST + pattern_len
.movs_done:
        REPORT16 "rep movsb"

        push ds
        mov ax, ROMSEG
        mov ds, ax
        mov si, pattern
        mov di, STR_DST
        mov cx, pattern_len
        repe cmpsb                  ; all equal: runs to the end with ZF=1
        pop ds
        jne .cmps_done
        cmp cx, 0
.cmps_done:
        REPORT16 "repe cmpsb"

        mov di, STR_DST
        mov cx, pattern_len
        mov al, 'q'
        repne scasb                 ; stops after the first 'q'
        jne .scas_done
        cmp di, STR_DST + pattern_q + 1
.scas_done:
        REPORT16 "repne scasb"

        mov di, STR_DST
        mov cx, 8
        mov ax, 0xA55A
        rep stosw
        mov si, STR_DST + 14
        lodsw
        cmp ax, 0xA55A
        jne .stos_done
        cmp word [STR_DST + 16], 0x6F66 ; "fo" (bytes 16-17 of the copied pattern) untouched
.stos_done:
        REPORT16 "rep stosw/lodsw"

        std
        mov si, STR_DST + 3
        mov di, STR_DST + 0x103
        mov cx, 4
        rep movsb                   ; backwards copy
        cld
        mov eax, [STR_DST + 0x100]
        cmp eax, 0xA55AA55A
        jne .std_done
        cmp si, STR_DST - 1
.std_done:
        REPORT16 "std rep movsb"

; ---- loop / jcxz ------------------------------------------------------------------------------
        xor ax, ax
        mov cx, 10
.lp:    add ax, cx
        loop .lp                    ; 10+9+...+1
        cmp ax, 55
        REPORT16 "loop"

        xor cx, cx
        mov ax, 1
        jcxz .jcxz_taken
        mov ax, 0
.jcxz_taken:
        cmp ax, 1
        REPORT16 "jcxz"

        mov cx, 5
        xor ax, ax
.lpe:   inc ax
        cmp ax, 3
        loopne .lpe                 ; exits when ax == 3 (ZF=1)
        cmp cx, 2
        REPORT16 "loopne"

; ---- enter / leave -----------------------------------------------------------------------------
        mov bp, 0x1234
        mov bx, sp
        enter 8, 0
        mov ax, bx
        sub ax, sp                  ; 2 (bp) + 8 locals
        mov dx, bx
        sub dx, bp                  ; 2
        leave
        cmp sp, bx
        jne .enter_done
        cmp bp, 0x1234
        jne .enter_done
        cmp ax, 10
        jne .enter_done
        cmp dx, 2
.enter_done:
        REPORT16 "enter/leave"

        mov bx, sp
        enter 4, 1                  ; pushes bp and the new frame pointer, then 4 bytes
        mov ax, bx
        sub ax, sp
        leave
        cmp ax, 8
        REPORT16 "enter nested"

; ---- exchange instructions ----------------------------------------------------------------
        mov ax, 0x1111
        mov bx, 0x2222
        xchg ax, bx
        cmp ax, 0x2222
        jne .xchg_done
        cmp bx, 0x1111
.xchg_done:
        REPORT16 "xchg"

        mov word [MEMVAR], 40
        mov ax, 2
        xadd [MEMVAR], ax           ; mem = 42, ax = 40
        cmp ax, 40
        jne .xadd_done
        cmp word [MEMVAR], 42
.xadd_done:
        REPORT16 "xadd"

        mov word [MEMVAR], 7
        mov ax, 7
        mov cx, 9
        cmpxchg [MEMVAR], cx        ; equal: mem = 9, ZF=1
        jne .cx1
        cmp word [MEMVAR], 9
.cx1:   REPORT16 "cmpxchg equal"

        mov ax, 1
        mov cx, 5
        cmpxchg [MEMVAR], cx        ; not equal: ax = mem (9), ZF=0
        je .cx2f
        cmp ax, 9
        jmp .cx2
.cx2f:  or ax, 1                    ; ZF=0 -> reported as failure
.cx2:   REPORT16 "cmpxchg not equal"

; ---- setcc / cmov ---------------------------------------------------------------------------
        mov ax, 3
        cmp ax, 5                   ; 3 < 5 signed and unsigned
        setl bl
        setb bh
        seta cl
        setge ch
        cmp bx, 0x0101
        jne .setcc_done
        cmp cx, 0
.setcc_done:
        REPORT16 "setcc"

        mov ax, -1
        cmp ax, 1                   ; signed less, unsigned above
        mov dx, 100
        mov cx, 200
        cmovl dx, cx                ; taken
        mov bx, 300
        cmovb bx, cx                ; not taken
        cmp dx, 200
        jne .cmov_done
        cmp bx, 300
.cmov_done:
        REPORT16 "cmov"

; ---- bit tests, bswap, movzx/movsx ---------------------------------------------------------
        mov ax, 0x0008
        bt ax, 3                    ; CF=1
        setc dl
        bts ax, 0                   ; CF=0, ax=9
        setc dh
        btr ax, 3                   ; CF=1, ax=1
        adc dl, 0
        btc ax, 15                  ; CF=0, ax=0x8001
        cmp dx, 0x0002
        jne .bt_done
        cmp ax, 0x8001
.bt_done:
        REPORT16 "bt/bts/btr/btc"

        mov dword [MEMVAR], 0
        mov cx, 20
        bts word [MEMVAR], cx       ; bit string: sets bit 4 of the word at MEMVAR+2
        cmp word [MEMVAR + 2], 0x0010
        REPORT16 "bts mem bitstring"

        mov eax, 0x11223344
        bswap eax
        cmp eax, 0x44332211
        REPORT16 "bswap"

        mov bl, 0x80
        movsx ax, bl
        movzx cx, bl
        cmp ax, 0xFF80
        jne .mov_done
        cmp cx, 0x0080
.mov_done:
        REPORT16 "movzx/movsx"

; ---- stack ------------------------------------------------------------------------------------
        mov bx, sp
        mov ax, 0xAAAA
        mov cx, 0xCCCC
        pusha
        xor ax, ax
        xor cx, cx
        popa
        cmp ax, 0xAAAA
        jne .pusha_done
        cmp cx, 0xCCCC
        jne .pusha_done
        cmp bx, sp
.pusha_done:
        REPORT16 "pusha/popa"

        push word 0x8D5 | 2         ; all status flags
        popf
        pushf
        pop ax
        and ax, EFLAGS_STATUS
        cmp ax, EFLAGS_STATUS
        REPORT16 "pushf/popf"

; ---- port I/O: the UART scratch register ------------------------------------------------
        mov dx, 0x3F8 + 7           ; 16550 SCR
        mov al, 0x5A
        out dx, al
        xor al, al
        in al, dx
        cmp al, 0x5A
        REPORT16 "in/out uart scratch"

        out 0x80, al                ; POST code port is accepted
        jmp finish16

; ---- handlers ---------------------------------------------------------------------------------
de_handler:
        push bp
        mov bp, sp
        inc word [ss:DE_COUNT]
        push ax
        mov ax, [bp + 2]            ; faulting IP
        mov [ss:DE_IP], ax
        pop ax
        add word [bp + 2], 2        ; skip the two-byte div
        pop bp
        iret

int40_handler:
        push bp
        mov bp, sp
        pushf
        pop dx
        and dx, 0x200               ; IF as seen inside the handler (must be 0)
        mov ax, [bp + 6]            ; pushed FLAGS
        and ax, 0x200
        or ax, dx
        mov [ss:INT40_HIT], ax
        mov dx, 0xBEEF
        clc
        pop bp
        iret

far_func:
        mov ax, cs
        retf

far_func_imm:
        retf 2

pattern:  db "the quick brown fox jumps over the lazy dog"
pattern_len equ $ - pattern
pattern_q equ 4                     ; offset of the first 'q'

        COMMON_CODE

        times 0x1800 - ($ - $$) db 0xF4
alias_target:                       ; reached as F100:0800, the same bytes as F000:1800
        mov ax, cs
        jmp ROMSEG:alias_back

        ROM_END
