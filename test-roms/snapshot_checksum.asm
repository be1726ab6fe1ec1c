; snapshot_checksum.asm - a long-running, timer-paced checksum for snapshot/restore tests.
;
; In 32-bit protected mode with a 32-bit IDT, the 8259A PIC (IRQ0 at vector 0x20) and the
; 8254 PIT at about 100 Hz, the ROM runs STEPS steps. Each step mixes a linear congruential
; sequence into a 4 KiB table in RAM and into a running checksum kept in registers (ESI, EDI,
; EBP), prints '.', and then sleeps (`sti; hlt`) until the next timer interrupt. Every 16 steps
; it prints the checksum so far. So a run lasts about STEPS / 100 seconds on any backend, and a
; snapshot taken at any moment catches the guest mid-way with live state everywhere: general
; registers, the table in RAM, the IDT and GDT, the PIC's mask and vector base, the PIT's
; programming and count. The result does not depend on timing, so a run that is snapshotted
; and restored (on either backend) must print exactly what an undisturbed run prints.

%include "common.inc"
        ROM_BEGIN

IRQ0_VECTOR equ 0x20

STEPS     equ 64                    ; timer-paced steps
MIXES     equ 400                   ; table mixes per step
TICKS     equ 0x600                 ; dword: timer interrupts seen
STEP      equ 0x604                 ; dword: steps done
IDT       equ 0x1000                ; 256 gates of 8 bytes
TABLE     equ SCRATCH               ; 1024 dwords mixed by every step
GATE_INT32 equ 0x8E                 ; present, DPL 0, 32-bit interrupt gate (SDM Vol. 3A 6.11)

start:
        REAL_MODE_INIT
        PRINT16 "snapshot checksum", 10
        ENTER_PM32 pm_start
        bits 32
pm_start:
        PM32_INIT
        ; Virtual wire mode for QEMU's local APIC (see timer_irq.asm); ignored without one.
        mov dword [LAPIC_SVR], LAPIC_SVR_ENABLE | 0xFF
        mov dword [LAPIC_LVT_LINT0], LVT_DM_EXTINT

        ; An IDT whose only present gate is the timer's.
        mov edi, IDT
        mov ecx, 256 * 2
        xor eax, eax
        rep stosd
        mov eax, ROMBASE + irq0_handler
        mov word [IDT + IRQ0_VECTOR * 8], ax
        mov word [IDT + IRQ0_VECTOR * 8 + 2], SEL_CODE32
        mov byte [IDT + IRQ0_VECTOR * 8 + 5], GATE_INT32
        shr eax, 16
        mov word [IDT + IRQ0_VECTOR * 8 + 6], ax
        lidt [ROMBASE + idt_desc]

        ; The table starts as 0, 1, 2, ...
        mov edi, TABLE
        xor eax, eax
.fill:  stosd
        inc eax
        cmp eax, 1024
        jb .fill

        PIC_INIT IRQ0_VECTOR, IRQ0_VECTOR + 8
        PIT_START_100HZ

        mov dword [TICKS], 0
        mov dword [STEP], 0
        mov ebx, 12345                  ; LCG state
        mov esi, 0x811C9DC5             ; checksum words
        mov edi, 0
        mov ebp, 0x9E3779B9

.step:
        mov ecx, MIXES
.mix:   imul ebx, ebx, 1664525          ; Numerical Recipes LCG
        add ebx, 1013904223
        mov eax, ebx
        shr eax, 22                     ; table index 0..1023
        mov edx, [TABLE + eax * 4]
        xor edx, ebx
        rol edx, 5
        mov [TABLE + eax * 4], edx
        add esi, edx
        xor edi, esi
        rol edi, 3
        sub ebp, edi
        loop .mix

        mov al, '.'
        out DEBUGCON_PORT, al
        inc dword [STEP]
        test dword [STEP], 15
        jnz .sleep
        mov al, ' '
        out DEBUGCON_PORT, al
        mov eax, esi
        xor eax, edi
        xor eax, ebp
        call puthex32_32
        mov al, 10
        out DEBUGCON_PORT, al

        ; Sleep until the next timer interrupt (sti's shadow covers the hlt, so a tick that is
        ; already pending wakes it).
.sleep: cli
        mov eax, [TICKS]
.wait:  cmp eax, [TICKS]
        jne .woke
        sti
        hlt
        cli
        jmp .wait
.woke:  cmp dword [STEP], STEPS
        jb .step

        ; The final checksum also covers the whole table.
        mov ecx, 1024
        xor edx, edx
.sum:   add edx, [TABLE + ecx * 4 - 4]
        rol edx, 1
        loop .sum
        PRINT32 "table "
        mov eax, edx
        call puthex32_32
        PRINT32 10, "checksum "
        mov eax, esi
        xor eax, edi
        xor eax, ebp
        xor eax, edx
        call puthex32_32
        mov al, 10
        out DEBUGCON_PORT, al
        mov al, 0xFF                    ; mask the timer again
        out PIC1_DATA, al
        jmp finish32

irq0_handler:
        push eax
        inc dword [TICKS]
        mov al, PIC_EOI                 ; non-specific EOI
        out PIC1_CMD, al
        pop eax
        iretd

idt_desc:
        dw 256 * 8 - 1
        dd IDT

        COMMON_CODE
        ROM_END
