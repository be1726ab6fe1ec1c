; task_switch.asm - hardware task switches in 32-bit protected mode (SDM Vol. 3A ch. 7): a far
; CALL to a 32-bit TSS (the new task's registers, TR and LDTR loaded from its TSS, the
; previous-task link written, NT set, CR0.TS set, both descriptors busy) and IRET back through
; the link (the old registers restored, the busy bit cleared, the callee's EIP saved); a CALL
; through a task gate in the GDT; JMP to a TSS and back (no nesting, busy bits moved); INT n
; through a task gate in the IDT; a 16-bit TSS; #GP for a busy TSS, #TS for a TSS limit below
; 67H, #NP for a not-present TSS; and a double fault through a task gate, whose handler task
; gets the error code on its own stack, finds the faulting EIP in the old TSS, moves it on and
; IRETs back. (A fault while loading the new task's segments is left out: QEMU 7.2 raises it
; in the new task but with the EIP of the old task's CALL, where the SDM says the new task's
; first instruction; the JIT follows the SDM, see the unit tests of jit/src/interp/task.rs.)

%include "common.inc"
%include "faults.inc"
        ROM_BEGIN

IDT        equ 0x2000
GDT_RAM    equ 0x2800
TSS_A      equ 0x3000
TSS_B      equ 0x3100
TSS_DF     equ 0x3200
TSS_C      equ 0x3300               ; 16-bit
LDT_RAM    equ 0x3400
STACK_B    equ 0x60000
STACK_DF   equ 0x58000
GATE_INT32 equ 0x8E00
EFLAGS_NT  equ 1 << 14
CR0_TS     equ 1 << 3
B_COUNT    equ 0x620                ; what task B saw
B_EAX      equ 0x624
B_FLAGS    equ 0x628
B_TR       equ 0x62C
B_LINK     equ 0x630
B_CR0      equ 0x634
B_LDTR     equ 0x638
B_LDTREAD  equ 0x63C
B_MODE     equ 0x640                ; 0: return with IRET, 1: JMP back to task A
C_AX       equ 0x650                ; what task C (16-bit TSS) saw
C_TR       equ 0x654
D_ERR      equ 0x660                ; what the double-fault task saw
D_ESP      equ 0x664
D_LINK     equ 0x668
D_EIP      equ 0x66C
D_COUNT    equ 0x670
LDT_MAGIC  equ 0x1D7DA7A0

SEL_TSS_A     equ 0x30
SEL_TSS_B     equ 0x38
SEL_TSS_DF    equ 0x40
SEL_TASKGATE  equ 0x48              ; task gate -> TSS B
SEL_TSS_C     equ 0x50              ; 16-bit TSS
SEL_LDT       equ 0x58
SEL_TSS_SMALL equ 0x60              ; limit 0x50
SEL_TSS_NP    equ 0x68              ; not present
SEL_CODE_ROM  equ 0x70              ; 32-bit code, base ROMBASE
SEL_LDT_DATA  equ 0x04              ; LDT entry 0, data at SCRATCH
GDT_RAM_LIMIT equ 0x78 - 1

; %1 TSS base, %2 EIP, %3 ESP: a ring-0 task with flat segments.
%macro INIT_TSS 3
        mov edi, %1
        mov eax, %2
        mov ebx, %3
        call init_tss32
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "task switch tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        mov esi, ROMBASE + gdt
        mov edi, GDT_RAM
        mov ecx, gdt_end - gdt
        rep movsb
        mov esi, ROMBASE + extra_descriptors
        mov ecx, extra_descriptors_end - extra_descriptors
        rep movsb
        lgdt [ROMBASE + gdt_ram_desc]
        mov dword [LDT_RAM], 0x0000FFFF
        mov dword [LDT_RAM + 4], 0x00409201 ; data at SCRATCH (0x10000), 64 KiB
        mov dword [SCRATCH], LDT_MAGIC

        INIT_TSS TSS_A, 0, STACK32
        INIT_TSS TSS_B, ROMBASE + task_b, STACK_B
        mov dword [TSS_B + 0x28], 0xB0B0B0B0    ; EAX
        mov word [TSS_B + 0x60], SEL_LDT
        INIT_TSS TSS_DF, ROMBASE + df_task, STACK_DF
        ; The 16-bit TSS of task C: IP, FLAGS, AX..DI, ES, CS, SS, DS, LDT.
        mov edi, TSS_C
        xor eax, eax
        mov ecx, 0x2C / 4
        rep stosd
        mov word [TSS_C + 0x0E], task_c
        mov word [TSS_C + 0x10], 2
        mov word [TSS_C + 0x12], 0xC0C0
        mov word [TSS_C + 0x1A], 0x7000
        mov word [TSS_C + 0x22], SEL_DATA32
        mov word [TSS_C + 0x24], SEL_CODE_ROM
        mov word [TSS_C + 0x26], SEL_DATA16
        mov word [TSS_C + 0x28], SEL_DATA32
        mov ax, SEL_TSS_A
        ltr ax

        FILL_IDT_UNEXPECTED
        SET_GATE 10
        SET_GATE 11
        SET_GATE 13
        ; Task gates: vector 8 -> the double-fault task, vector 0x40 -> task B.
        mov dword [IDT + 8 * 8], SEL_TSS_DF << 16
        mov dword [IDT + 8 * 8 + 4], 0x8500
        mov dword [IDT + 0x40 * 8], SEL_TSS_B << 16
        mov dword [IDT + 0x40 * 8 + 4], 0x8500
        lidt [ROMBASE + idt_desc]

        ; --- CALL to a TSS, IRET back ---
        mov dword [B_MODE], 0
        mov eax, 0xA0A0A0A0
        call SEL_TSS_B:0
        cmp eax, 0xA0A0A0A0
        REPORT32 "registers restored after iret"
        cmp dword [B_COUNT], 1
        REPORT32 "call to a tss runs the task"
        cmp dword [B_EAX], 0xB0B0B0B0
        REPORT32 "new task registers from its tss"
        cmp dword [B_TR], SEL_TSS_B
        REPORT32 "tr loaded"
        cmp dword [B_LINK], SEL_TSS_A
        REPORT32 "previous task link written"
        test dword [B_FLAGS], EFLAGS_NT
        setnz al
        cmp al, 1
        REPORT32 "nt set in the nested task"
        test dword [B_CR0], CR0_TS
        setnz al
        cmp al, 1
        REPORT32 "cr0.ts set by the switch"
        cmp dword [B_LDTR], SEL_LDT
        REPORT32 "ldtr loaded from the tss"
        cmp dword [B_LDTREAD], LDT_MAGIC
        REPORT32 "segment from the new ldt"
        str ax
        cmp ax, SEL_TSS_A
        REPORT32 "tr back to the caller"
        pushfd
        pop eax
        test eax, EFLAGS_NT
        REPORT32 "nt clear in the caller"
        cmp byte [GDT_RAM + SEL_TSS_B + 5], 0x89
        REPORT32 "iret cleared the callee's busy bit"
        cmp byte [GDT_RAM + SEL_TSS_A + 5], 0x8B
        REPORT32 "caller still busy"
        cmp dword [TSS_B + 0x20], ROMBASE + task_b.after_iret
        REPORT32 "callee eip saved at iret"
        clts

        call SEL_TASKGATE:0
        cmp dword [B_COUNT], 2
        REPORT32 "call through a task gate"

        mov dword [B_MODE], 1
        jmp SEL_TSS_B:0
        cmp dword [B_COUNT], 3
        REPORT32 "jmp to a tss and back"
        test dword [B_FLAGS], EFLAGS_NT
        REPORT32 "jmp does not nest"
        cmp byte [GDT_RAM + SEL_TSS_B + 5], 0x89
        jne .busy_out
        cmp byte [GDT_RAM + SEL_TSS_A + 5], 0x8B
.busy_out:
        REPORT32 "jmp moves the busy bit"
        mov dword [B_MODE], 0

        EXPECT_FAULT "#GP call to a busy tss", 13, SEL_TSS_A, call SEL_TSS_A:0
        EXPECT_FAULT "#TS tss limit below 67h", 10, SEL_TSS_SMALL, call SEL_TSS_SMALL:0
        EXPECT_FAULT "#NP tss not present", 11, SEL_TSS_NP, call SEL_TSS_NP:0

        int 0x40
        cmp dword [B_COUNT], 4
        REPORT32 "int through a task gate"

        call SEL_TSS_C:0
        cmp dword [C_AX], 0xC0C0
        jne .c_out
        cmp dword [C_TR], SEL_TSS_C
        jne .c_out
        cmp word [TSS_C], SEL_TSS_A
.c_out:
        REPORT32 "16-bit tss"

        ; Double fault: #GP with the #GP gate not present (#NP) is a contributory pair.
        and byte [IDT + 13 * 8 + 5], 0x7F
        mov ax, 0xFFF8
.df_site:
        mov ds, ax
.df_end:
        or byte [IDT + 13 * 8 + 5], 0x80
        cmp dword [D_COUNT], 1
        REPORT32 "double fault through a task gate"
        cmp dword [D_ERR], 0
        REPORT32 "#DF error code on the new task's stack"
        cmp dword [D_ESP], STACK_DF - 4
        REPORT32 "handler task esp"
        cmp dword [D_LINK], SEL_TSS_A
        REPORT32 "handler task linked to the faulting task"
        cmp dword [D_EIP], ROMBASE + .df_site
        REPORT32 "faulting eip saved in the old tss"
        mov ax, ds
        cmp ax, SEL_DATA32
        REPORT32 "resumed after the faulting instruction"
        clts
        jmp finish32

; Task B: record what it sees, then IRET (B_MODE 0) or JMP back to task A (B_MODE 1).
task_b:
        mov [B_EAX], eax
        inc dword [B_COUNT]
        pushfd
        pop dword [B_FLAGS]
        xor eax, eax
        str ax
        mov [B_TR], eax
        sldt ax
        mov [B_LDTR], eax
        mov ax, [TSS_B]
        mov [B_LINK], eax
        mov eax, cr0
        mov [B_CR0], eax
        mov ax, SEL_LDT_DATA
        mov fs, ax
        mov eax, [fs:0]
        mov [B_LDTREAD], eax
        cmp dword [B_MODE], 1
        je .jmp_back
        iretd
.after_iret:
        jmp task_b
.jmp_back:
        jmp SEL_TSS_A:0
        jmp task_b

; Task C (16-bit TSS; 32-bit code at ROMBASE).
task_c:
        movzx eax, ax
        mov [C_AX], eax
        xor eax, eax
        str ax
        mov [C_TR], eax
        iretd
        jmp task_c

; The double-fault task: the error code is on its stack; the faulting task's EIP is in the
; old TSS, moved past the faulting instruction before returning.
df_task:
        mov [D_ESP], esp
        pop dword [D_ERR]
        inc dword [D_COUNT]
        movzx eax, word [TSS_DF]
        mov [D_LINK], eax
        mov eax, [TSS_A + 0x20]
        mov [D_EIP], eax
        add dword [TSS_A + 0x20], pm_entry.df_end - pm_entry.df_site
        iretd
        jmp df_task

; edi = TSS base, eax = EIP, ebx = ESP: a ring-0 task with flat segments, EFLAGS = 2.
init_tss32:
        push edi
        push eax
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        pop eax
        pop edi
        mov [edi + 0x20], eax
        mov dword [edi + 0x24], 2
        mov [edi + 0x38], ebx
        mov dword [edi + 0x48], SEL_DATA32
        mov dword [edi + 0x4C], SEL_CODE32
        mov dword [edi + 0x50], SEL_DATA32
        mov dword [edi + 0x54], SEL_DATA32
        mov dword [edi + 0x58], SEL_DATA32
        mov dword [edi + 0x5C], SEL_DATA32
        mov word [edi + 0x66], 0x68
        ret

        WRITE_GATE_ROUTINE

        STUB_ERR 10
        STUB_ERR 11
        STUB_ERR 13

        FAULT_COMMON

unexpected:
        PRINT32 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
.stop:  jmp .stop

extra_descriptors:                  ; at GDT_RAM + 0x30
        DESC TSS_A, 0x67, 0x89, 0x0 ; 0x30 32-bit TSS
        DESC TSS_B, 0x67, 0x89, 0x0 ; 0x38
        DESC TSS_DF, 0x67, 0x89, 0x0 ; 0x40
        dw 0, SEL_TSS_B, 0x8500, 0  ; 0x48 task gate
        DESC TSS_C, 0x2B, 0x81, 0x0 ; 0x50 16-bit TSS
        DESC LDT_RAM, 7, 0x82, 0x0  ; 0x58 LDT
        DESC 0x3500, 0x50, 0x89, 0x0 ; 0x60 TSS with a short limit
        DESC 0x3500, 0x67, 0x09, 0x0 ; 0x68 TSS, not present
        DESC ROMBASE, 0xFFFF, 0x9A, 0x4 ; 0x70 32-bit code at ROMBASE
extra_descriptors_end:

gdt_ram_desc:
        dw GDT_RAM_LIMIT
        dd GDT_RAM
idt_desc:
        dw 256 * 8 - 1
        dd IDT
        bits 16

        COMMON_CODE
        ROM_END
