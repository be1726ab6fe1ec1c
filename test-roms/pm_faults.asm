; pm_faults.asm - protection checks of segment loads and accesses in 32-bit protected mode,
; delivered through the IDT with the right vector, error code and return address
; (SDM Vol. 3A 5.3-5.6 and 6.15): selectors beyond the GDT limit, a null SS, a not-present
; segment, execute-only code loaded into DS; and the traps int3 and into, which return after
; the instruction. Accesses through null, read-only or too-short segments are left out: QEMU's
; TCG, the reference these ROMs are compared with, does not check them.

%include "common.inc"
%include "faults.inc"
        ROM_BEGIN

IDT        equ 0x2000
GDT_RAM    equ 0x2800               ; the common GDT copied here and extended
GATE_INT32 equ 0x8E00

SEL_NOT_PRESENT equ 0x30            ; data, P=0
SEL_READ_ONLY   equ 0x38            ; data, read-only (loadable into DS/ES)
SEL_EXEC_ONLY   equ 0x40            ; code, execute-only
SEL_PAST_LIMIT  equ 0x80            ; beyond the GDT limit
GDT_RAM_LIMIT   equ 0x48 - 1

; %1 name, %2 vector, %3 the instruction; expects a trap reported after the instruction.
%macro EXPECT_TRAP 3+
        mov dword [F_SKIP], 0
        mov dword [F_COUNT], 0
        %3
%%end:
        cmp dword [F_COUNT], 1
        jne %%out
        cmp dword [F_VEC], %2
        jne %%out
        cmp dword [F_EIP], ROMBASE + %%end
%%out:  REPORT32 %1
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "protected mode fault tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        ; GDT in RAM: the common entries plus the three test descriptors.
        mov esi, ROMBASE + gdt
        mov edi, GDT_RAM
        mov ecx, gdt_end - gdt
        rep movsb
        mov esi, ROMBASE + extra_descriptors
        mov ecx, extra_descriptors_end - extra_descriptors
        rep movsb
        lgdt [ROMBASE + gdt_ram_desc]

        ; IDT: every vector to `unexpected`, then the stubs.
        FILL_IDT_UNEXPECTED
        SET_GATE 3
        SET_GATE 4
        SET_GATE 11
        SET_GATE 13
        lidt [ROMBASE + idt_desc]

        mov ax, SEL_PAST_LIMIT
        EXPECT_FAULT "#GP selector past gdt limit", 13, SEL_PAST_LIMIT, mov ds, ax
        mov ax, ds
        cmp ax, SEL_DATA32
        REPORT32 "ds unchanged after the fault"

        xor eax, eax
        EXPECT_FAULT "#GP null ss", 13, 0, mov ss, ax

        mov ax, SEL_NOT_PRESENT
        EXPECT_FAULT "#NP not-present segment", 11, SEL_NOT_PRESENT, mov es, ax

        mov ax, SEL_EXEC_ONLY
        EXPECT_FAULT "#GP execute-only code into ds", 13, SEL_EXEC_ONLY, mov ds, ax

        mov ax, SEL_READ_ONLY
        EXPECT_FAULT "#GP read-only segment into ss", 13, SEL_READ_ONLY, mov ss, ax
        mov dword [SCRATCH], 0x5EC0DA7A
        mov es, ax                  ; a read-only data segment is fine in ES
        mov eax, [es:SCRATCH]
        mov cx, SEL_DATA32
        mov es, cx
        cmp eax, 0x5EC0DA7A
        REPORT32 "read-only segment readable"

        EXPECT_TRAP "#BP int3 traps after", 3, int3

        mov al, 0x7F
        add al, 1                   ; OF=1
        EXPECT_TRAP "#OF into traps after", 4, into

        xor eax, eax                ; OF=0: into does nothing
        mov dword [F_COUNT], 0
        into
        cmp dword [F_COUNT], 0
        REPORT32 "into without overflow"

        jmp finish32

        WRITE_GATE_ROUTINE

        STUB_NOERR 3
        STUB_NOERR 4
        STUB_ERR 11
        STUB_ERR 13

        FAULT_COMMON

unexpected:
        PRINT32 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

extra_descriptors:                  ; at GDT_RAM + 0x30
        DESC 0, 0xFFFFF, 0x12, 0xC  ; 0x30 data, not present
        DESC 0, 0xFFFFF, 0x90, 0xC  ; 0x38 data, read-only
        DESC 0, 0xFFFFF, 0x98, 0xC  ; 0x40 code, execute-only
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
