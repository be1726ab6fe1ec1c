; long_mode.asm - IA-32e mode from the reset vector (SDM Vol. 3A 10.8.5): real mode, 32-bit
; protected mode, PAE 4-level identity map, EFER.LME, CR0.PG (EFER.LMA follows), a far jump to a
; 64-bit code segment; then 64-bit code: REX registers and operand sizes, 32-bit writes zeroing
; the upper half, RIP-relative addressing, 64-bit stack, sign extensions, 64-bit mul/div,
; shifts, string operations with 64-bit addresses through a high canonical alias, 4 KiB pages
; with accessed/dirty flags on all four levels and INVLPG, FS/GS bases
; from the MSRs and SWAPGS, ignored DS base, address-size override, compatibility mode and
; back, and leaving IA-32e mode for 32-bit protected mode.

%include "common.inc"
%include "long.inc"
        ROM_BEGIN

DATA64     equ 0x30000
PT_8M      equ 0x104000             ; a page table for 8-10 MiB (4 KiB pages)
LA_8M      equ 0x800000
PTE_A      equ 0x20
PTE_D      equ 0x40

start:
        REAL_MODE_INIT
        PRINT16 "long mode tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        ENTER_LONG long_entry, 0
        bits 64
long_entry:
        LONG_INIT
        mov ecx, MSR_EFER
        rdmsr
        and eax, EFER_LMA | EFER_LME
        cmp eax, EFER_LMA | EFER_LME
        REPORT64 "efer.lma set"

        mov rax, 1
        shl rax, 40
        shr rax, 39
        cmp rax, 2
        REPORT64 "64-bit operand size"

        mov rbx, rsp
        push rax
        sub rbx, rsp
        pop rax
        cmp rbx, 8
        REPORT64 "push is 8 bytes"

        push -5
        pop rax
        mov rcx, -5
        cmp rax, rcx
        REPORT64 "push imm sign-extended"

        mov rax, -1
        mov eax, 1
        cmp rax, 1
        REPORT64 "32-bit write zero-extends"

        mov rax, -1
        mov ax, 0
        mov rcx, 0xFFFFFFFFFFFF0000
        cmp rax, rcx
        REPORT64 "16-bit write merges"

        mov r8, 0x1111111111111111
        mov r9, 0x2222222222222222
        mov r15, r8
        add r15, r9
        mov r10, 0x3333333333333333
        cmp r15, r10
        REPORT64 "r8-r15"

        mov rsi, 0x1234
        mov dil, 0x56
        mov sil, 0x78
        mov r11b, sil
        mov r12d, 0xFFFFFFFF
        mov r12w, 0xABCD
        cmp r11, 0x78
        jne .rex8_out
        cmp rsi, 0x1278
        jne .rex8_out
        mov rax, 0xFFFFABCD
        cmp r12, rax
.rex8_out:
        REPORT64 "rex byte registers"

        mov rax, 0xFFFFFFFFFFFFFFFF
        mov rbx, 0
        add rax, 1
        adc rbx, 0
        jnz .carry_ok
        jmp .carry_out
.carry_ok:
        test rax, rax
.carry_out:
        REPORT64 "64-bit add carry"

        mov eax, 0x80000000
        cdqe
        mov rcx, 0xFFFFFFFF80000000
        cmp rax, rcx
        jne .ext_out
        cqo
        cmp rdx, -1
        jne .ext_out
        mov ebx, 0x7FFFFFFF
        movsxd rcx, ebx
        cmp rcx, 0x7FFFFFFF
        jne .ext_out
        mov ebx, -2
        movsxd rcx, ebx
        cmp rcx, -2
.ext_out:
        REPORT64 "cdqe/cqo/movsxd"

        mov rax, 0x123456789ABCDEF0
        mov rcx, 0xFEDCBA9876543210
        mul rcx
        mov rbx, 0x121FA00AD77D7422
        cmp rdx, rbx
        jne .mul_out
        mov rbx, 0x236D88FE5618CF00
        cmp rax, rbx
.mul_out:
        REPORT64 "mul r64"

        mov rdx, 1
        mov rax, 0x23456789ABCDEF01
        mov rcx, 0x1000000FF
        div rcx
        mov rbx, 0x123456667
        cmp rax, rbx
        jne .div_out
        mov rbx, 0x89ACEE68
        cmp rdx, rbx
.div_out:
        REPORT64 "div r64"

        mov rax, -1000000000000
        cqo
        mov rcx, 7
        idiv rcx
        mov rbx, 0xFFFFFFDEBD0CFDB7
        cmp rax, rbx
        jne .idiv_out
        cmp rdx, -1
.idiv_out:
        REPORT64 "idiv r64"

        mov rcx, 0x4000000000000001
        imul rax, rcx, -3
        jno .imul_out               ; the product overflows: OF = CF = 1
        mov rbx, 0x3FFFFFFFFFFFFFFD
        cmp rax, rbx
.imul_out:
        REPORT64 "imul r64 imm"

        mov rax, 0x8000000000000001
        shr rax, 1
        mov rbx, 0x4000000000000000
        cmp rax, rbx
        jne .shift_out
        mov rax, 0x8000000000000000
        sar rax, 63
        cmp rax, -1
        jne .shift_out
        mov rax, 0x8000000000000001
        rol rax, 4
        cmp rax, 0x18
        jne .shift_out
        mov rax, 0x00000000FFFFFFFF
        mov rbx, 0xF000000000000000
        shld rax, rbx, 4
        mov rcx, 0x0000000FFFFFFFFF
        cmp rax, rcx
        jne .shift_out
        mov cl, 36
        mov rax, 1
        shl rax, cl
        mov rbx, 0x1000000000
        cmp rax, rbx
.shift_out:
        REPORT64 "64-bit shifts"

        lea rax, [rel here]
here:
        mov rbx, ROMBASE + here
        cmp rax, rbx
        REPORT64 "rip-relative lea"

        mov rax, [rel qword_data]
        mov rbx, 0x0123456789ABCDEF
        cmp rax, rbx
        jne .riprel_out
        mov eax, [rel qword_data + 4]
        cmp eax, 0x01234567
.riprel_out:
        REPORT64 "rip-relative load"

        call .callee
.return_here:
        jmp .after_call
.callee:
        mov rax, [rsp]
        ret
.after_call:
        mov rbx, ROMBASE + .return_here
        cmp rax, rbx
        REPORT64 "call pushes 64-bit rip"

        ; Through the high alias: 64-bit addresses, rep stosq/movsq with RCX counts.
        mov rdi, HIGH_ALIAS + DATA64
        mov rax, 0x5555AAAA5555AAAA
        mov rcx, 16
        rep stosq
        cmp qword [DATA64 + 15 * 8], rax
        jne .str_out
        mov rsi, HIGH_ALIAS + DATA64
        mov rdi, DATA64 + 0x100
        mov rcx, 16
        rep movsq
        test rcx, rcx
        jne .str_out
        mov rbx, DATA64 + 0x180
        cmp rdi, rbx
        jne .str_out
        mov rax, [DATA64 + 0x178]
        mov rbx, 0x5555AAAA5555AAAA
        cmp rax, rbx
.str_out:
        REPORT64 "rep stosq/movsq, high alias"

        mov rax, HIGH_ALIAS + DATA64 + 0x100
        mov qword [rax], 42
        cmp qword [DATA64 + 0x100], 42
        REPORT64 "high canonical address"

        ; FS and GS bases from the MSRs.
        mov ecx, MSR_FS_BASE
        mov eax, DATA64 + 0x200
        xor edx, edx
        wrmsr
        mov rax, 0x0F0F0F0F
        mov [fs:8], rax
        cmp qword [DATA64 + 0x208], 0x0F0F0F0F
        REPORT64 "fs base msr"

        mov ecx, MSR_GS_BASE
        mov eax, DATA64 + 0x300
        xor edx, edx
        wrmsr
        mov ecx, MSR_KGS_BASE
        mov eax, DATA64 + 0x400
        wrmsr
        mov qword [gs:0], 1
        swapgs
        mov qword [gs:0], 2
        mov ecx, MSR_GS_BASE
        rdmsr
        cmp eax, DATA64 + 0x400
        jne .gs_out
        swapgs
        cmp qword [DATA64 + 0x300], 1
        jne .gs_out
        cmp qword [DATA64 + 0x400], 2
.gs_out:
        REPORT64 "gs base and swapgs"

        ; DS with a non-zero base: ignored in 64-bit mode.
        mov qword [DATA64 + 0x500], 77
        mov ax, SEL64_DATA_BASE
        mov ds, ax
        mov rax, [DATA64 + 0x500]
        mov cx, SEL64_DATA
        mov ds, cx
        cmp rax, 77
        REPORT64 "ds base ignored"

        ; Address-size override: 32-bit effective addresses wrap at 4 GiB.
        mov rbx, 0x100000000 + DATA64 + 0x500
        mov eax, [ebx]
        cmp eax, 77
        REPORT64 "addr32 effective address"

        mov rcx, 0x100000000
        xor eax, eax
.loop:  inc eax
        loop .loop_end              ; RCX 0x100000000 -> 0xFFFFFFFF: taken
        jmp .loop_out
.loop_end:
        mov rbx, 0xFFFFFFFF
        cmp rcx, rbx
.loop_out:
        REPORT64 "loop uses rcx"

        ; 4 KiB pages under 4-level paging: accessed and dirty flags on every level, INVLPG.
        mov rdi, PT_8M
        mov ecx, 512
        xor eax, eax
        rep stosq
        mov qword [PT_8M], DATA64 + 0x1000 | PTE_P | PTE_RW
        mov qword [PT_8M + 8], DATA64 + 0x2000 | PTE_P | PTE_RW
        mov qword [PD_LOW + 4 * 8], PT_8M | PTE_P | PTE_RW
        and qword [PML4], ~PTE_A
        and qword [PDPT_LOW], ~PTE_A
        mov rax, cr3
        mov cr3, rax
        mov qword [DATA64 + 0x1010], 0x1111
        mov qword [DATA64 + 0x2010], 0x2222
        mov rax, [LA_8M + 0x10]
        cmp rax, 0x1111
        REPORT64 "4 KiB page under 4-level paging"
        mov eax, PTE_A
        and rax, [PML4]
        and rax, [PDPT_LOW]
        and rax, [PD_LOW + 4 * 8]
        and rax, [PT_8M]
        cmp rax, PTE_A
        REPORT64 "accessed flags on all four levels"
        test qword [PT_8M], PTE_D
        REPORT64 "read leaves dirty clear"
        mov qword [LA_8M + 0x18], 5
        mov rax, [PT_8M]
        and eax, PTE_D
        cmp eax, PTE_D
        REPORT64 "write sets dirty"
        mov qword [PT_8M], DATA64 + 0x2000 | PTE_P | PTE_RW
        invlpg [LA_8M]
        mov rax, [LA_8M + 0x10]
        cmp rax, 0x2222
        REPORT64 "invlpg in 4-level paging"

        ; Compatibility mode: a 32-bit code segment under IA-32e mode.
        mov rbx, rsp
        push SEL64_CODE32
        mov rax, ROMBASE + compat_code
        push rax
        retfq
        bits 32
compat_code:
        mov edx, esp
        push eax
        sub edx, esp
        pop eax
        jmp dword SEL64_CODE:(ROMBASE + back_in_64)
        bits 64
back_in_64:
        cmp edx, 4
        REPORT64 "compatibility mode push is 4 bytes"
        cmp rsp, rbx
        REPORT64 "back in 64-bit mode"

        ; Leave IA-32e mode: to compatibility mode, paging off, LME off.
        push SEL64_CODE32
        mov rax, ROMBASE + leave_long
        push rax
        retfq
        bits 32
leave_long:
        mov eax, cr0
        and eax, ~CR0_PG
        mov cr0, eax
        mov ecx, MSR_EFER
        rdmsr
        mov ebx, eax
        and eax, ~EFER_LME
        wrmsr
        test ebx, EFER_LMA
        REPORT32 "paging off clears lma"
        jmp finish32

        align 8
qword_data:
        dq 0x0123456789ABCDEF
        bits 16

        COMMON_CODE
        LONG_CODE
        ROM_END
