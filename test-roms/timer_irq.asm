; timer_irq.asm - hardware interrupts in real mode: the 8259A PIC is initialised as a BIOS
; does (IRQ0-7 at vectors 8-15), the 8254 PIT channel 0 runs in rate-generator mode at about
; 100 Hz, and `sti; hlt` waits for its interrupts, which arrive through the IVT and are
; acknowledged with a non-specific EOI. Also checks the PIT's latched count, and that with
; CLI a timer request waits in the PIC's IRR instead of being delivered.

%include "common.inc"
        ROM_BEGIN

IRQ0_VECTOR equ 8
TICKS     equ 0x600                 ; word: timer interrupts seen
WANTED_TICKS equ 5

start:
        REAL_MODE_INIT
        PRINT16 "timer interrupt tests", 10

        ; Route the PIC through the local APIC as a BIOS does (virtual wire mode, SDM Vol. 3A
        ; 10.5.1, MP spec 3.6.2.2): LINT0 delivers ExtINT. Needs 32-bit addressing, so a short
        ; trip through protected mode. A machine without a local APIC ignores the writes.
        ENTER_PM32 apic_setup
        bits 32
apic_setup:
        PM32_INIT
        mov dword [LAPIC_SVR], LAPIC_SVR_ENABLE | 0xFF
        mov dword [LAPIC_LVT_LINT0], LVT_DM_EXTINT
        jmp SEL_CODE16:.back16
        bits 16
.back16:
        mov ax, SEL_DATA16
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov eax, cr0
        and eax, ~CR0_PE
        mov cr0, eax
        jmp ROMSEG:.real
.real:  xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, STACK16
        o32 lidt [cs:ivt_desc]

        mov word [IRQ0_VECTOR * 4], irq0_handler
        mov word [IRQ0_VECTOR * 4 + 2], ROMSEG
        mov word [TICKS], 0

        PIC_INIT IRQ0_VECTOR, 0x70  ; the BIOS vector bases; only IRQ0 unmasked
        in al, PIC1_DATA
        cmp al, 0xFE
        REPORT16 "pic mask readback"

        PIT_START_100HZ

        mov al, 0x00                ; counter latch command, channel 0
        out PIT_MODE, al
        in al, PIT_CH0
        mov ah, al
        in al, PIT_CH0
        xchg al, ah
        cmp ax, PIT_DIVISOR
        ja .latch_bad
        xor ax, ax                  ; ZF=1: the count is within the divisor
        jmp .latch_done
.latch_bad:
        or ax, 1
.latch_done:
        REPORT16 "pit latched count"

        ; With interrupts disabled the request waits in the IRR (OCW3 "read IRR") and is not
        ; delivered.
        mov al, 0x0A
        out PIC1_CMD, al
        mov ecx, 50000000
.poll:  in al, PIC1_CMD
        test al, 1
        jnz .pending
        a32 loop .poll
.pending:
        and al, 1
        cmp al, 1
        REPORT16 "irq0 pending in irr"
        cmp word [TICKS], 0
        REPORT16 "cli holds interrupts"

        sti
.wait:  hlt
        cmp word [TICKS], WANTED_TICKS
        jb .wait
        cli
        cmp word [TICKS], WANTED_TICKS
        REPORT16 "timer interrupts wake hlt"

        mov al, 0xFF                ; mask everything again
        out PIC1_DATA, al
        jmp finish16

irq0_handler:
        push ax
        inc word [ss:TICKS]
        mov al, PIC_EOI             ; non-specific EOI
        out PIC1_CMD, al
        pop ax
        iret

ivt_desc:
        dw 0x3FF
        dd 0

        COMMON_CODE
        ROM_END
