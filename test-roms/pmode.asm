; pmode.asm - entering 32-bit flat protected mode: lgdt, mov cr0, far jmp, segment loads from
; the GDT (including a segment with a non-zero base), sgdt/sidt, a 32-bit IDT with #DE, #UD and
; software-interrupt handlers, 32-bit far call/ret, and the way back to real mode.

%include "common.inc"
        ROM_BEGIN

IDT       equ 0x2000                ; 256 gates * 8 bytes
IDT_GATES equ 256
GATE_INT32 equ 0x8E00               ; P=1 DPL=0 type 0xE: 32-bit interrupt gate (SDM 3A 6.14.1)
EXC_VEC   equ 0x600                 ; dword: last vector seen by a handler
EXC_EIP   equ 0x604                 ; dword: EIP the exception pushed
EXC_CS    equ 0x608                 ; dword: CS the exception pushed
EXC_COUNT equ 0x60C                 ; dword: handler invocations
TABLES    equ 0x700                 ; sgdt/sidt output
HIGH_ALIAS equ 0xFFFF0000           ; the 64 KiB image again at the top of the 4 GiB space

start:
        REAL_MODE_INIT
        PRINT16 "protected mode tests", 10
        ENTER_PM32 pm_entry

        bits 32
pm_entry:
        PM32_INIT
        mov ax, cs
        cmp ax, SEL_CODE32
        REPORT32 "cs after far jmp"

        mov eax, cr0
        and eax, CR0_PE
        cmp eax, CR0_PE
        REPORT32 "cr0.pe"

        mov ax, ss
        cmp ax, SEL_DATA32
        REPORT32 "ss loaded"

; A data segment with base SCRATCH: fs:0x10 is linear SCRATCH+0x10.
        mov ax, SEL_DATA_SCR
        mov fs, ax
        mov dword [SCRATCH + 0x10], 0
        mov dword [fs:0x10], 0xCAFEBABE
        cmp dword [SCRATCH + 0x10], 0xCAFEBABE
        REPORT32 "segment base from gdt"

        mov dword [SCRATCH + 0x20], 0x600DF00D
        mov ax, SEL_DATA_SCR
        mov es, ax
        mov eax, [es:0x20]
        mov cx, SEL_DATA32
        mov es, cx
        cmp eax, 0x600DF00D
        REPORT32 "es load and read"

        sgdt [TABLES]
        cmp word [TABLES], gdt_end - gdt - 1
        jne .sgdt_done
        cmp dword [TABLES + 2], ROMBASE + gdt
.sgdt_done:
        REPORT32 "sgdt"

; ---- IDT -------------------------------------------------------------------------------------
        xor eax, eax
        mov ebx, ROMBASE + unexpected_handler
.fill:  call set_gate
        inc eax
        cmp eax, IDT_GATES
        jne .fill
        mov eax, 0
        mov ebx, ROMBASE + de_handler
        call set_gate
        mov eax, 6
        mov ebx, ROMBASE + ud_handler
        call set_gate
        mov eax, 0x30
        mov ebx, ROMBASE + int30_handler
        call set_gate
        lidt [ROMBASE + idt_desc]

        sidt [TABLES]
        cmp word [TABLES], IDT_GATES * 8 - 1
        jne .sidt_done
        cmp dword [TABLES + 2], IDT
.sidt_done:
        REPORT32 "lidt/sidt"

        mov dword [EXC_COUNT], 0
        mov eax, 100
        xor edx, edx
        xor ecx, ecx
.de_site:
        div ecx                     ; #DE, vector 0
        cmp dword [EXC_COUNT], 1
        jne .de_done
        cmp dword [EXC_VEC], 0
        jne .de_done
        cmp dword [EXC_CS], SEL_CODE32
        jne .de_done
        cmp dword [EXC_EIP], ROMBASE + .de_site
.de_done:
        REPORT32 "#DE through idt"

        mov eax, 0x80000000
        mov edx, 0xFFFFFFFF
        mov ecx, -1
.de2_site:
        idiv ecx                    ; -2^31 / -1 overflows: #DE
        cmp dword [EXC_COUNT], 2
        jne .de2_done
        cmp dword [EXC_EIP], ROMBASE + .de2_site
.de2_done:
        REPORT32 "#DE idiv overflow"

.ud_site:
        ud2                         ; #UD, vector 6
        cmp dword [EXC_COUNT], 3
        jne .ud_done
        cmp dword [EXC_VEC], 6
        jne .ud_done
        cmp dword [EXC_EIP], ROMBASE + .ud_site
.ud_done:
        REPORT32 "#UD through idt"

        xor edx, edx
        sti
        stc
        int 0x30                    ; handler returns IF seen inside in EDX, sets EBX
        pushfd
        cli
        pop eax
        and eax, 0x201              ; IF and CF restored by iretd
        cmp eax, 0x201
        jne .int_done
        cmp edx, 0                  ; interrupt gate cleared IF
        jne .int_done
        cmp ebx, 0x30303030
.int_done:
        REPORT32 "int 0x30 / iretd"

; ---- 32-bit calls and stack -----------------------------------------------------------------
        mov ebx, esp
        call SEL_CODE32:ROMBASE + far32
        cmp ebx, esp
        jne .far_done
        cmp eax, SEL_CODE32
.far_done:
        REPORT32 "far call/retf 32"

        mov ebx, esp
        push dword 7
        push dword 5
        call add_args               ; cdecl: returns 12
        add esp, 8
        cmp ebx, esp
        jne .call_done
        cmp eax, 12
.call_done:
        REPORT32 "call/ret with frame"

        mov esi, ROMBASE + gdt
        mov edi, SCRATCH + 0x100
        mov ecx, (gdt_end - gdt) / 4
        rep movsd
        mov esi, ROMBASE + gdt
        mov edi, SCRATCH + 0x100
        mov ecx, (gdt_end - gdt) / 4
        repe cmpsd
        jne .movsd_done
        test ecx, ecx
.movsd_done:
        REPORT32 "rep movsd/cmpsd"

; ---- the BIOS is also mapped just below 4 GiB -----------------------------------------------
        mov eax, [ROMBASE + gdt + 8]
        cmp eax, [HIGH_ALIAS + gdt + 8]
        REPORT32 "rom readable below 4 GiB"

        jmp SEL_CODE32:HIGH_ALIAS + .high
.high:  call .here
.here:  pop eax                     ; where the code runs now
        jmp SEL_CODE32:ROMBASE + .low
.low:   cmp eax, HIGH_ALIAS + .here
        REPORT32 "code runs below 4 GiB"

; ---- back to real mode (SDM Vol. 3A 9.9.2) ---------------------------------------------------
        jmp SEL_CODE16:back16
        bits 16
back16:
        mov ax, SEL_DATA16          ; 64 KiB limits before leaving protected mode
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov eax, cr0
        and eax, ~CR0_PE
        mov cr0, eax
        jmp ROMSEG:real_again
real_again:
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, STACK16
        o32 lidt [cs:ivt_desc]
        mov ax, cs
        cmp ax, ROMSEG
        REPORT16 "back in real mode"

        ; FS still holds the protected-mode descriptor (base SCRATCH) in its hidden part: real
        ; mode uses the cached base until FS is reloaded (SDM Vol. 3A 9.9.2, "big real mode").
        cmp dword [fs:0x10], 0xCAFEBABE
        REPORT16 "fs descriptor cache kept"
        mov ax, SCRATCH >> 4
        mov fs, ax                  ; a real-mode load: base = selector << 4, same place
        cmp dword [fs:0x10], 0xCAFEBABE
        REPORT16 "fs reload in real mode"
        jmp finish16

        bits 32
; eax = vector, ebx = handler address: write a 32-bit interrupt gate.
set_gate:
        push ebx
        push edi
        lea edi, [IDT + eax * 8]
        mov [edi], bx
        mov word [edi + 2], SEL_CODE32
        mov word [edi + 4], GATE_INT32
        shr ebx, 16
        mov [edi + 6], bx
        pop edi
        pop ebx
        ret

; Records vector %1 and the pushed EIP/CS, then resumes after the 2-byte faulting instruction.
%macro EXC_HANDLER 1
        inc dword [EXC_COUNT]
        mov dword [EXC_VEC], %1
        push eax
        mov eax, [esp + 4]
        mov [EXC_EIP], eax
        mov eax, [esp + 8]
        mov [EXC_CS], eax
        pop eax
        add dword [esp], 2
        iretd
%endmacro

de_handler:
        EXC_HANDLER 0
ud_handler:
        EXC_HANDLER 6

int30_handler:
        pushfd
        pop edx
        and edx, 0x200
        mov ebx, 0x30303030
        clc
        iretd

unexpected_handler:
        PRINT32 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

far32:
        mov eax, cs
        retf

add_args:
        push ebp
        mov ebp, esp
        mov eax, [ebp + 8]
        add eax, [ebp + 12]
        pop ebp
        ret

idt_desc:
        dw IDT_GATES * 8 - 1
        dd IDT
ivt_desc:
        dw 0x3FF
        dd 0
        bits 16

        COMMON_CODE
        ROM_END
