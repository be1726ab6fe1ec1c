; seg_limits.asm - segment limit and type checks on memory accesses in 32-bit protected mode
; (SDM Vol. 3A 5.3, 5.4): reads and writes past a byte-granular limit, at the limit, through a
; read-only data segment, a null segment and a code segment; an expand-down data segment (valid
; above its limit, #GP below); stack-segment accesses past the SS limit (#SS(0)); string
; instructions through a short segment and into a read-only one. Every violation is #GP(0) or
; #SS(0) at the instruction.
;
; QEMU's TCG does not check data segment limits or rights, so this ROM is not compared with
; QEMU: it ends with HLT (status 4) instead of the debug exit, and its expected output is the
; SDM's, written down by hand.

%include "common.inc"
%include "faults.inc"
        ROM_BEGIN

IDT        equ 0x2000
GDT_RAM    equ 0x2800
GATE_INT32 equ 0x8E00

SEL_READ_ONLY   equ 0x30        ; data, read-only, flat
SEL_EXPAND_DOWN equ 0x38        ; data, expand-down, base 0, limit 0xFFFF, B = 1
SEL_SHORT_STACK equ 0x40        ; data, base 0, limit 0xFFFFF (byte granular)
GDT_RAM_LIMIT   equ 0x48 - 1

; %1 name, %2 the instruction: no fault.
%macro EXPECT_NO_FAULT 2+
        mov dword [F_COUNT], 0
        %2
        cmp dword [F_COUNT], 0
        REPORT32 %1
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "segment limit tests", 10
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
        FILL_IDT_UNEXPECTED
        mov edi, IDT + 12 * 8
        mov ebx, ROMBASE + stub_12
        call write_gate
        mov edi, IDT + 13 * 8
        mov ebx, ROMBASE + stub_13
        call write_gate
        lidt [ROMBASE + idt_desc]

        ; FS: 64 KiB at SCRATCH (SEL_DATA_SCR, byte granular).
        mov ax, SEL_DATA_SCR
        mov fs, ax
        EXPECT_NO_FAULT "read at the limit", mov al, [fs:0xFFFF]
        EXPECT_FAULT "#GP dword read crossing the limit", 13, 0, mov eax, [fs:0xFFFE]
        EXPECT_FAULT "#GP write past the limit", 13, 0, mov byte [fs:0x10000], 1
        EXPECT_FAULT "#GP rmw past the limit", 13, 0, add dword [fs:0xFFFD], 1

        mov ax, SEL_READ_ONLY
        mov gs, ax
        EXPECT_NO_FAULT "read through a read-only segment", mov eax, [gs:SCRATCH]
        EXPECT_FAULT "#GP write through a read-only segment", 13, 0, mov [gs:SCRATCH], eax
        EXPECT_FAULT "#GP write through cs", 13, 0, mov [cs:SCRATCH], eax
        xor eax, eax
        mov gs, ax
        EXPECT_FAULT "#GP read through a null segment", 13, 0, mov eax, [gs:SCRATCH]

        mov ax, SEL_EXPAND_DOWN
        mov gs, ax
        EXPECT_NO_FAULT "expand-down above the limit", mov eax, [gs:SCRATCH]
        EXPECT_FAULT "#GP expand-down at the limit", 13, 0, mov eax, [gs:0xFFFF]
        EXPECT_FAULT "#GP expand-down below the limit", 13, 0, mov eax, [gs:0x100]

        ; SS with a 1 MiB limit: ESP-relative accesses beyond it are #SS(0).
        mov ax, SEL_SHORT_STACK
        mov ss, ax
        EXPECT_NO_FAULT "stack read within the limit", mov eax, [esp + 0x7FFFC]
        EXPECT_FAULT "#SS esp-relative read past the limit", 12, 0, mov eax, [esp + 0x80000]
        mov ebp, 0xFFFFE
        EXPECT_FAULT "#SS ebp-relative write past the limit", 12, 0, mov [ebp], eax
        mov ax, SEL_DATA32
        mov ss, ax

        mov esi, 0xFFFF
        EXPECT_FAULT "#GP lodsw through a short segment", 13, 0, fs lodsw
        cmp esi, 0xFFFF
        REPORT32 "esi kept by the faulting lodsw"
        mov ax, SEL_READ_ONLY
        mov es, ax
        mov edi, SCRATCH
        mov ecx, 4
        EXPECT_FAULT "#GP rep stosb into a read-only segment", 13, 0, rep stosb
        cmp ecx, 4
        REPORT32 "ecx kept by the faulting rep stosb"
        mov ax, SEL_DATA32
        mov es, ax

        ; The verdict, then HLT: QEMU would not agree with the checks above.
        cmp dword [FAILS], 0
        jne .failed
        PRINT32 "PASS", 10
        jmp .stop
.failed:
        PRINT32 "FAIL", 10
.stop:  cli
        hlt
        jmp .stop

        WRITE_GATE_ROUTINE

        STUB_ERR 12
        STUB_ERR 13

        FAULT_COMMON

unexpected:
        PRINT32 "unexpected exception", 10
        cli
        hlt

extra_descriptors:                      ; at GDT_RAM + 0x30
        DESC 0, 0xFFFFF, 0x90, 0xC      ; 0x30 data, read-only, flat
        DESC 0, 0xFFFF, 0x96, 0x4       ; 0x38 data, expand-down, writable, B = 1
        DESC 0, 0xFFFFF, 0x92, 0x4      ; 0x40 data, 1 MiB, byte granular
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
