; call_gates.asm - call gates and the I/O permission bitmap in 32-bit protected mode
; (SDM Vol. 3A 5.8.3-5.8.6, Vol. 1 19.5): a far CALL and JMP through a 32-bit call gate at
; the same privilege; from ring 3, a CALL through a 32-bit gate to ring 0 (stack from the TSS,
; two parameters copied, the caller's SS:ESP and CS:EIP pushed) and RETF imm16 back, which
; nulls ES because it holds a ring-0 segment; a CALL through a 16-bit gate (word pushes);
; #GP/#NP for a gate of too low DPL, a not-present gate, a gate to a data segment and a JMP to
; an inner ring; #TS for a bad SS0 in the TSS. Ring 3 runs with IOPL 0, so its port accesses
; go through the TSS bitmap: ports 0x80, 0xE9 and 0xF4-0xF7 are allowed (that is how it prints),
; others raise #GP(0), as do accesses straddling a denied port and ports beyond the bitmap.

%include "common.inc"
%include "faults.inc"
        ROM_BEGIN

IDT        equ 0x2000
GDT_RAM    equ 0x2800
TSS        equ 0x3000
IO_MAP     equ 0x68                 ; bitmap offset in the TSS: ports 0-0x3FF
TSS_LIMIT  equ IO_MAP + 0x80        ; the bitmap's last byte and the all-ones byte after it
STACK3     equ 0x70000              ; ring-3 stack top
GATE_INT32 equ 0x8E00
G_EIP      equ 0x620                ; what the gate handlers saw
G_CS       equ 0x624
G_P0       equ 0x628
G_P1       equ 0x62C
G_ESP      equ 0x630
G_SS       equ 0x634
G_MYESP    equ 0x638
G_MYCS     equ 0x63C
G_MYSS     equ 0x640
G_R3ESP    equ 0x644
G_JMP      equ 0x648

SEL_CODE3     equ 0x30              ; flat code, DPL 3
SEL_DATA3     equ 0x38              ; flat data, DPL 3
SEL_TSS       equ 0x40
SEL_GATE32    equ 0x48              ; 32-bit call gate, DPL 3 -> 0x08:gate_inner, 2 params
SEL_GATE16    equ 0x50              ; 16-bit call gate, DPL 3 -> 0x58:gate16_inner, 1 param
SEL_CODE_ROM  equ 0x58              ; 32-bit code, DPL 0, base ROMBASE
SEL_GATE_DPL0 equ 0x60              ; call gate, DPL 0
SEL_GATE_NP   equ 0x68              ; call gate, not present
SEL_GATE_DATA equ 0x70              ; call gate to a data segment
SEL_GATE_DONE equ 0x78              ; call gate, DPL 3 -> 0x08:ring0_done
SEL_CONFORM   equ 0x80              ; conforming code, DPL 0 (the #TS handler runs at CPL 3)
SEL_GATE_JMP  equ 0x88              ; call gate, DPL 0 -> 0x08:jmp_landing
GDT_RAM_LIMIT equ 0x90 - 1

; edi = descriptor address, ebx = offset, ax = selector, ecx = (attribute byte << 8) | params.
%macro CALL_GATE 4
        mov edi, GDT_RAM + %1
        mov ebx, %2
        mov ax, %3
        mov ecx, %4
        call write_call_gate
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "call gate and i/o bitmap tests", 10
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
        CALL_GATE SEL_GATE32, ROMBASE + gate_inner, SEL_CODE32, 0xEC02
        CALL_GATE SEL_GATE16, gate16_inner, SEL_CODE_ROM, 0xE401
        CALL_GATE SEL_GATE_DPL0, ROMBASE + gate_inner, SEL_CODE32, 0x8C00
        CALL_GATE SEL_GATE_NP, ROMBASE + gate_inner, SEL_CODE32, 0x6C00
        CALL_GATE SEL_GATE_DATA, ROMBASE + gate_inner, SEL_DATA32, 0xEC00
        CALL_GATE SEL_GATE_DONE, ROMBASE + ring0_done, SEL_CODE32, 0xEC00
        CALL_GATE SEL_GATE_JMP, ROMBASE + jmp_landing, SEL_CODE32, 0x8C00
        lgdt [ROMBASE + gdt_ram_desc]

        ; The TSS: SS0:ESP0 and the I/O bitmap (all ports denied but 0x80, 0xE9, 0xF4-0xF7).
        mov edi, TSS
        xor eax, eax
        mov ecx, IO_MAP / 4
        rep stosd
        mov dword [TSS + 4], STACK32
        mov dword [TSS + 8], SEL_DATA32
        mov word [TSS + 0x66], IO_MAP
        mov edi, TSS + IO_MAP
        mov al, 0xFF
        mov ecx, 0x81
        rep stosb
        and byte [TSS + IO_MAP + 0x80 / 8], ~(1 << (0x80 & 7))
        and byte [TSS + IO_MAP + 0xE9 / 8], ~(1 << (0xE9 & 7))
        and byte [TSS + IO_MAP + 0xF4 / 8], 0x0F
        mov ax, SEL_TSS
        ltr ax

        FILL_IDT_UNEXPECTED
        SET_GATE 11
        SET_GATE 13
        ; #TS goes to a conforming segment: its handler runs at the CPL of the fault, so it
        ; needs no TSS stack (the test breaks SS0 on purpose).
        SET_GATE 10
        mov word [IDT + 10 * 8 + 2], SEL_CONFORM
        lidt [ROMBASE + idt_desc]

        ; --- ring 0 ---
        push dword 0x1111
        push dword 0x2222
        mov ebp, esp
        call SEL_GATE32:0
.same_ret:
        lea eax, [ebp + 8]          ; RETF 8 dropped the parameters
        cmp esp, eax
        jne .same_out
        cmp dword [G_EIP], ROMBASE + .same_ret
        jne .same_out
        cmp dword [G_CS], SEL_CODE32
        jne .same_out
        cmp dword [G_P0], 0x2222
        jne .same_out
        cmp dword [G_MYCS], SEL_CODE32
        jne .same_out
        lea eax, [ebp - 8]
        cmp [G_MYESP], eax
.same_out:
        REPORT32 "call gate same privilege"

        mov dword [G_JMP], 0
        jmp SEL_GATE_JMP:0
jmp_back:
        cmp dword [G_JMP], SEL_CODE32
        REPORT32 "jmp through call gate"

        ; --- ring 3 (IOPL 0) ---
        push dword SEL_DATA3 | 3
        push dword STACK3
        pushfd
        and dword [esp], ~0x3200    ; IF = 0, IOPL = 0
        push dword SEL_CODE3 | 3
        push dword ROMBASE + ring3
        mov ax, SEL_DATA3 | 3
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        iretd

ring3:
        mov ax, cs
        cmp ax, SEL_CODE3 | 3
        REPORT32 "ring 3 prints through the bitmap"

        push dword 0x1111
        push dword 0x2222
        mov ebp, esp
        call SEL_GATE32 | 3:0
.inner_ret:
        lea eax, [ebp + 8]          ; RETF 8 released the parameters on both stacks
        cmp esp, eax
        jne .inner_out
        cmp dword [G_EIP], ROMBASE + .inner_ret
        jne .inner_out
        cmp dword [G_CS], SEL_CODE3 | 3
        jne .inner_out
        cmp dword [G_P0], 0x2222
        jne .inner_out
        cmp dword [G_P1], 0x1111
        jne .inner_out
        cmp [G_ESP], ebp
        jne .inner_out
        cmp dword [G_SS], SEL_DATA3 | 3
        jne .inner_out
        cmp dword [G_MYCS], SEL_CODE32
        jne .inner_out
        cmp dword [G_MYSS], SEL_DATA32
        jne .inner_out
        cmp dword [G_MYESP], STACK32 - 24
.inner_out:
        REPORT32 "call gate to ring 0 with parameters"
        mov ax, cs
        cmp ax, SEL_CODE3 | 3
        REPORT32 "retf imm16 back to ring 3"
        mov ax, es
        cmp ax, 0
        REPORT32 "retf to ring 3 nulls es"
        mov ax, ds
        cmp ax, SEL_DATA3 | 3
        REPORT32 "retf to ring 3 keeps ds"
        mov ax, SEL_DATA3 | 3
        mov es, ax

        push word 0x4444
        mov [G_R3ESP], esp
        call SEL_GATE16 | 3:0
after16:
        add esp, 2
        cmp dword [G_CS], SEL_CODE3 | 3
        jne .g16_out
        cmp dword [G_P0], 0x4444
        jne .g16_out
        cmp dword [G_SS], SEL_DATA3 | 3
        jne .g16_out
        cmp dword [G_MYCS], SEL_CODE_ROM
        jne .g16_out
        mov eax, [G_R3ESP]
        cmp [G_ESP], ax
        jne .g16_out
        cmp dword [G_MYESP], STACK32 - 10
.g16_out:
        REPORT32 "16-bit call gate word frame"

        EXPECT_FAULT "#GP call gate dpl below cpl", 13, SEL_GATE_DPL0, call SEL_GATE_DPL0 | 3:0
        EXPECT_FAULT "#NP call gate not present", 11, SEL_GATE_NP, call SEL_GATE_NP | 3:0
        EXPECT_FAULT "#GP call gate to data segment", 13, SEL_DATA32, call SEL_GATE_DATA | 3:0
        EXPECT_FAULT "#GP jmp through gate to ring 0", 13, SEL_CODE32, jmp SEL_GATE32 | 3:0
        mov dword [TSS + 8], SEL_DATA3 | 3
        EXPECT_FAULT "#TS ss0 of wrong privilege", 10, SEL_DATA3, call SEL_GATE32 | 3:0
        mov dword [TSS + 8], SEL_DATA32

        mov dword [F_COUNT], 0
        mov al, 0x55
        out 0x80, al
        cmp dword [F_COUNT], 0
        REPORT32 "out to a permitted port"
        EXPECT_FAULT "#GP out to a denied port", 13, 0, out 0x70, al
        EXPECT_FAULT "#GP word access reaching a denied port", 13, 0, out 0x80, ax
        mov dx, 0x400
        EXPECT_FAULT "#GP port beyond the bitmap", 13, 0, in al, dx
        mov dx, 0x70
        mov esi, SCRATCH
        EXPECT_FAULT "#GP outsb to a denied port", 13, 0, outsb
        EXPECT_FAULT "#GP cli at cpl 3", 13, 0, cli

        call SEL_GATE_DONE | 3:0

ring0_done:
        mov ax, SEL_DATA32
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, STACK32
        mov ax, cs
        cmp ax, SEL_CODE32
        REPORT32 "back in ring 0"
        jmp finish32

; The 32-bit gate's target: record the frame, put a ring-0 segment in ES, return with RETF 8.
gate_inner:
        mov eax, [esp]
        mov [G_EIP], eax
        mov eax, [esp + 4]
        mov [G_CS], eax
        mov eax, [esp + 8]
        mov [G_P0], eax
        mov eax, [esp + 12]
        mov [G_P1], eax
        mov eax, [esp + 16]
        mov [G_ESP], eax
        mov eax, [esp + 20]
        mov [G_SS], eax
        mov [G_MYESP], esp
        xor eax, eax
        mov ax, cs
        mov [G_MYCS], eax
        mov ax, ss
        mov [G_MYSS], eax
        mov ax, SEL_DATA32
        mov es, ax
        retf 8

; The 16-bit gate's target (CS base ROMBASE): record the word frame, then back to ring 3 with
; a 32-bit far return built by hand.
gate16_inner:
        movzx eax, word [esp + 2]
        mov [G_CS], eax
        movzx eax, word [esp + 4]
        mov [G_P0], eax
        movzx eax, word [esp + 6]
        mov [G_ESP], eax
        movzx eax, word [esp + 8]
        mov [G_SS], eax
        mov [G_MYESP], esp
        xor eax, eax
        mov ax, cs
        mov [G_MYCS], eax
        push dword SEL_DATA3 | 3
        push dword [G_R3ESP]
        push dword SEL_CODE3 | 3
        push dword ROMBASE + after16
        retf

jmp_landing:
        xor eax, eax
        mov ax, cs
        mov [G_JMP], eax
        jmp jmp_back

        WRITE_GATE_ROUTINE

write_call_gate:
        mov [edi], bx
        mov [edi + 2], ax
        mov [edi + 4], cx
        shr ebx, 16
        mov [edi + 6], bx
        ret

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
        DESC 0, 0xFFFFF, 0xFA, 0xC  ; 0x30 code, DPL 3
        DESC 0, 0xFFFFF, 0xF2, 0xC  ; 0x38 data, DPL 3
        DESC TSS, TSS_LIMIT, 0x89, 0x0 ; 0x40 32-bit TSS, available
        dq 0                        ; 0x48 call gate (written at run time)
        dq 0                        ; 0x50 call gate
        DESC ROMBASE, 0xFFFF, 0x9A, 0x4 ; 0x58 32-bit code at ROMBASE
        dq 0                        ; 0x60 call gate
        dq 0                        ; 0x68 call gate
        dq 0                        ; 0x70 call gate
        dq 0                        ; 0x78 call gate
        DESC 0, 0xFFFFF, 0x9E, 0xC  ; 0x80 conforming code, DPL 0
        dq 0                        ; 0x88 call gate
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
