; mem_ops.asm - memory operands in 32-bit protected mode: read-modify-write ALU ops and shifts
; on memory with their flags, bit-string instructions with negative and large bit offsets
; (SDM Vol. 2A "BT"), accesses that straddle a 4 KiB page boundary (data and stack), xchg,
; lock cmpxchg/xadd and cmpxchg8b on memory, push/pop of memory operands, setcc to memory,
; indirect call/jmp through memory, ret imm16 and 32-bit enter/leave.

%include "common.inc"
        ROM_BEGIN

M         equ 0x3000                ; scratch dwords
PAGE_EDGE equ 0x5000                ; a 4 KiB page boundary

start:
        REAL_MODE_INIT
        PRINT16 "memory operand tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT

        mov dword [M], 0xFFFFFFFF
        add dword [M], 1            ; 0: ZF CF AF PF
        pushfd
        pop eax
        and eax, EFLAGS_STATUS
        cmp eax, 0x055
        jne .add_done
        cmp dword [M], 0
.add_done:
        REPORT32 "add to memory with flags"

        mov dword [M], 0x00FF7F00
        inc byte [M + 1]            ; 0x7F -> 0x80: OF
        seto cl
        neg word [M + 2]            ; 0x00FF -> 0xFF01: CF
        setc ch
        cmp cx, 0x0101
        jne .rmw_done
        cmp dword [M], 0xFF018000
.rmw_done:
        REPORT32 "inc/neg on memory"

        mov dword [M], 0x80000001
        mov cl, 1
        rol dword [M], cl           ; 0x00000003, CF=1
        setc al
        shr dword [M], 1            ; 1, CF=1
        adc al, 0
        cmp al, 2
        jne .shm_done
        cmp dword [M], 1
.shm_done:
        REPORT32 "shifts on memory"

        mov dword [M + 0xFC], 0x80000000
        mov dword [M + 0x100], 0
        mov eax, -1                 ; bit -1 of M+0x100 is bit 31 of the dword before
        bt dword [M + 0x100], eax
        setc bl
        mov eax, 100                ; bit 100: byte +12, bit 4
        bts dword [M + 0x100], eax
        mov eax, -32
        btr dword [M + 0x100], eax  ; bit -32 is bit 0 of the dword at M+0xFC: CF=0
        setc bh
        cmp bx, 0x0001
        jne .bt_done
        cmp dword [M + 0x10C], 0x10
.bt_done:
        REPORT32 "bit strings in memory"

        mov dword [PAGE_EDGE - 2], 0x44332211
        cmp byte [PAGE_EDGE - 2], 0x11
        jne .edge_done
        cmp byte [PAGE_EDGE + 1], 0x44
        jne .edge_done
        cmp word [PAGE_EDGE], 0x4433
        jne .edge_done
        cmp dword [PAGE_EDGE - 2], 0x44332211
.edge_done:
        REPORT32 "dword across a page boundary"

        mov ebx, esp
        mov esp, PAGE_EDGE + 2
        push dword 0xCAFED00D       ; written across the boundary
        pop eax
        mov esp, ebx
        cmp eax, 0xCAFED00D
        REPORT32 "push/pop across a page boundary"

        mov dword [PAGE_EDGE - 2], 0x44332211
        mov esi, PAGE_EDGE - 6
        mov edi, M + 0x200
        mov ecx, 3
        rep movsd                   ; source straddles the boundary
        cmp dword [M + 0x204], 0x44332211
        REPORT32 "rep movsd across a page boundary"

        mov dword [M], 5
        mov eax, 9
        xchg [M], eax
        cmp eax, 5
        jne .xchg_done
        cmp dword [M], 9
.xchg_done:
        REPORT32 "xchg with memory"

        mov eax, 9
        mov ecx, 77
        lock cmpxchg [M], ecx       ; equal: stores 77
        jne .lcx_done
        mov eax, 1
        lock xadd [M], eax          ; eax = 77, mem = 78
        cmp eax, 77
        jne .lcx_done
        cmp dword [M], 78
.lcx_done:
        REPORT32 "lock cmpxchg/xadd on memory"

        mov dword [M], 0x11111111
        mov dword [M + 4], 0x22222222
        mov eax, 0x11111111
        mov edx, 0x22222222
        mov ebx, 0x33333333
        mov ecx, 0x44444444
        cmpxchg8b [M]               ; equal: stores ECX:EBX, ZF=1
        jne .c8_done
        mov eax, 0
        mov edx, 0
        cmpxchg8b [M]               ; not equal: loads EDX:EAX, ZF=0
        je .c8_bad
        cmp eax, 0x33333333
        jne .c8_done
        cmp edx, 0x44444444
        jmp .c8_done
.c8_bad:
        or eax, 1                   ; ZF=0
.c8_done:
        REPORT32 "cmpxchg8b"

        mov dword [M], 0xABCD1234
        push dword [M]
        pop dword [M + 8]
        cmp dword [M + 8], 0xABCD1234
        REPORT32 "push/pop memory operands"

        mov dword [M], 0xFFFFFFFF
        mov eax, 1
        cmp eax, 2
        setb byte [M]
        setg byte [M + 1]
        movsx ecx, word [M]         ; 0x0001 -> 1
        cmp dword [M], 0xFFFF0001
        jne .set_done
        cmp ecx, 1
.set_done:
        REPORT32 "setcc to memory"

        mov dword [M], ROMBASE + returns_7
        xor eax, eax
        call [M]
        mov ecx, 2
        jmp [ROMBASE + jump_table + ecx * 4]
.jt0:   mov ebx, 100
        jmp .jt_end
.jt1:   mov ebx, 101
        jmp .jt_end
.jt2:   mov ebx, 102
.jt_end:
        cmp eax, 7
        jne .ind_done
        cmp ebx, 102
.ind_done:
        REPORT32 "call/jmp through memory"

        mov ebx, esp
        push dword 1
        push dword 2
        call pops_two               ; ret 8
        cmp ebx, esp
        REPORT32 "ret imm16 32-bit"

        mov ebp, 0x5A5A5A5A
        mov ebx, esp
        enter 16, 0
        mov eax, ebx
        sub eax, esp                ; 4 (ebp) + 16
        leave
        cmp ebx, esp
        jne .ent_done
        cmp ebp, 0x5A5A5A5A
        jne .ent_done
        cmp eax, 20
.ent_done:
        REPORT32 "enter/leave 32-bit"

        jmp finish32

returns_7:
        mov eax, 7
        ret
pops_two:
        ret 8
jump_table:
        dd ROMBASE + pm_entry.jt0, ROMBASE + pm_entry.jt1, ROMBASE + pm_entry.jt2
        bits 16

        COMMON_CODE
        ROM_END
