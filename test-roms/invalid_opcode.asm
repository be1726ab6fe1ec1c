; invalid_opcode.asm - invalid and unimplemented instructions raise #UD (vector 6) in the
; guest, which its own handler catches: in real mode through the IVT and in 32-bit protected
; mode through the IDT. The handler checks the pushed return address is the faulting
; instruction (faults are restartable, SDM Vol. 3A 6.5) and skips it. The hint NOPs compilers
; emit (0F 1F multi-byte NOP, F3 0F 1E FB endbr32, 0F 18 prefetch) must not fault.

%include "common.inc"
        ROM_BEGIN

UD_COUNT  equ 0x600
UD_IP     equ 0x604
UD_SKIP   equ 0x608                 ; bytes the handler skips
IDT       equ 0x2000
GATE_INT32 equ 0x8E00

; Run the instruction bytes %2.. at a labelled site, expecting one #UD there. %1 = name.
%macro UD16 2+
        mov word [UD_SKIP], %%end - %%site
        mov dword [UD_COUNT], 0
%%site:
        db %2
%%end:
        cmp dword [UD_COUNT], 1
        jne %%out
        cmp word [UD_IP], %%site
%%out:  REPORT16 %1
%endmacro

%macro UD32 2+
        mov dword [UD_SKIP], %%end - %%site
        mov dword [UD_COUNT], 0
%%site:
        db %2
%%end:
        cmp dword [UD_COUNT], 1
        jne %%out
        cmp dword [UD_IP], ROMBASE + %%site
%%out:  REPORT32 %1
%endmacro

; Run the instruction bytes %2.. and expect no exception. %1 = name.
%macro NOUD32 2+
        mov dword [UD_SKIP], %%end - %%site
        mov dword [UD_COUNT], 0
%%site:
        db %2
%%end:
        cmp dword [UD_COUNT], 0
        REPORT32 %1
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "invalid opcode tests", 10
        mov word [6 * 4], ud_handler16
        mov word [6 * 4 + 2], ROMSEG

        UD16 "ud2 real mode", 0x0F, 0x0B
        UD16 "lock nop real mode", 0xF0, 0x90
        UD16 "lock on register add", 0xF0, 0x01, 0xD8
        UD16 "mov to cs real mode", 0x8E, 0xC8
        UD16 "0f ff real mode", 0x0F, 0xFF, 0xC0

        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        mov edi, IDT
        mov ecx, 256
.fill:  mov eax, ROMBASE + unexpected32
        mov [edi], ax
        shr eax, 16
        mov [edi + 6], ax
        mov word [edi + 2], SEL_CODE32
        mov word [edi + 4], GATE_INT32
        add edi, 8
        loop .fill
        mov eax, ROMBASE + ud_handler32
        mov [IDT + 6 * 8], ax
        shr eax, 16
        mov [IDT + 6 * 8 + 6], ax
        lidt [ROMBASE + idt_desc]

        UD32 "ud2 pm", 0x0F, 0x0B
        UD32 "lock nop pm", 0xF0, 0x90
        UD32 "lea with register operand", 0x8D, 0xC0
        UD32 "ud2 after 66 prefix", 0x66, 0x0F, 0x0B
        UD32 "0f ff pm", 0x0F, 0xFF, 0xC0
        mov eax, SCRATCH
        NOUD32 "multi-byte nop", 0x0F, 0x1F, 0x44, 0x00, 0x00
        NOUD32 "endbr32", 0xF3, 0x0F, 0x1E, 0xFB
        NOUD32 "prefetch hint", 0x0F, 0x18, 0x00
        jmp finish32

ud_handler32:
        inc dword [UD_COUNT]
        push eax
        mov eax, [esp + 4]
        mov [UD_IP], eax
        mov eax, [UD_SKIP]
        add [esp + 4], eax
        pop eax
        iretd

unexpected32:
        PRINT32 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

idt_desc:
        dw 256 * 8 - 1
        dd IDT
        bits 16

ud_handler16:
        push bp
        mov bp, sp
        push ax
        inc dword [ss:UD_COUNT]
        mov ax, [bp + 2]
        mov [ss:UD_IP], ax
        mov ax, [ss:UD_SKIP]
        add [bp + 2], ax
        pop ax
        pop bp
        iret

        COMMON_CODE
        ROM_END
