; lapic.asm - the local APIC and the I/O APIC in 32-bit protected mode (SDM Vol. 3A chapter 11;
; 82093AA I/O APIC): CPUID and IA32_APIC_BASE report an enabled xAPIC at 0xFEE00000; software
; enable through the SVR; a self-IPI waits in the IRR with interrupts off, is in the ISR while
; its handler runs and leaves it on EOI; the TPR holds back a vector whose class is not above
; it (PPR follows); two pending vectors are delivered highest first; the APIC timer fires once
; in one-shot mode and repeatedly in periodic mode, and stops at initial count 0; the PIT's
; IRQ 0 arrives through I/O APIC pin 2 (the PC's wiring, with the 8259A masked off by LINT0)
; and then through the 8259A in virtual wire mode (LINT0 = ExtINT). Every wait is `sti; hlt`,
; so no result depends on timing.

%include "common.inc"
        ROM_BEGIN

LAPIC           equ 0xFEE00000
APIC_ID         equ LAPIC + 0x020
APIC_VERSION    equ LAPIC + 0x030
APIC_TPR        equ LAPIC + 0x080
APIC_PPR        equ LAPIC + 0x0A0
APIC_EOI        equ LAPIC + 0x0B0
APIC_ISR        equ LAPIC + 0x100           ; + 0x10 per 32 vectors
APIC_IRR        equ LAPIC + 0x200
APIC_ESR        equ LAPIC + 0x280
APIC_ICR_LOW    equ LAPIC + 0x300
APIC_ICR_HIGH   equ LAPIC + 0x310
APIC_LVT_TIMER  equ LAPIC + 0x320
APIC_TIMER_INIT equ LAPIC + 0x380
APIC_TIMER_CUR  equ LAPIC + 0x390
APIC_TIMER_DIV  equ LAPIC + 0x3E0
ICR_SELF        equ 0x40000                 ; destination shorthand "self", fixed delivery
LVT_MASKED      equ 0x10000
LVT_PERIODIC    equ 0x20000
MSR_APIC_BASE   equ 0x1B
IOAPIC          equ 0xFEC00000
IOREGSEL        equ IOAPIC
IOWIN           equ IOAPIC + 0x10

VEC_IPI         equ 0x41
VEC_IPI_LOW     equ 0x45
VEC_IPI_HIGH    equ 0x61
VEC_ONESHOT     equ 0x50
VEC_PERIODIC    equ 0x52
VEC_IOAPIC_PIT  equ 0x30
VEC_PIC_IRQ0    equ 0x20

IDT             equ 0x2000                  ; 256 gates
COUNTS          equ 0x3000                  ; dword per vector: interrupts taken
ISR_SEEN        equ 0x3400                  ; dword: the ISR word for VEC_IPI inside its handler
ORDER_POS       equ 0x3404                  ; dword: bytes in ORDER
ORDER           equ 0x3410                  ; vectors in delivery order
UNEXPECTED      equ 0x3408

start:
        REAL_MODE_INIT
        PRINT16 "local apic tests", 10
        ENTER_PM32 pm32
        bits 32
pm32:
        PM32_INIT
        ; Clear the counters, fill the IDT: every vector goes to `unexpected`, then the ones
        ; the tests use get their handlers.
        mov edi, COUNTS
        mov ecx, 0x420 / 4
        xor eax, eax
        rep stosd
        xor ecx, ecx
.fill:  mov eax, ROMBASE + unexpected
        call set_gate
        inc ecx
        cmp ecx, 256
        jb .fill
%macro GATE 1
        mov ecx, %1
        mov eax, ROMBASE + handler_%1
        call set_gate
%endmacro
        GATE VEC_IPI
        GATE VEC_IPI_LOW
        GATE VEC_IPI_HIGH
        GATE VEC_ONESHOT
        GATE VEC_PERIODIC
        GATE VEC_IOAPIC_PIT
        GATE VEC_PIC_IRQ0
        lidt [ROMBASE + idt_desc]
        ; The 8259A at vectors 0x20/0x28, everything masked for now.
        PIC_INIT VEC_PIC_IRQ0, 0x28
        mov al, 0xFF
        out PIC1_DATA, al

        mov eax, 1
        cpuid
        test edx, 1 << 9
        setnz al
        cmp al, 1
        REPORT32 "cpuid reports an apic"

        mov ecx, MSR_APIC_BASE
        rdmsr
        and eax, 0xFFFFF900
        cmp eax, 0xFEE00900
        REPORT32 "apic base msr: enabled bsp at fee00000"

        mov eax, [APIC_VERSION]
        and eax, 0xFF
        cmp eax, 0x14
        REPORT32 "integrated xapic version"

        mov dword [LAPIC_SVR], LAPIC_SVR_ENABLE | 0xFF
        mov eax, [LAPIC_SVR]
        and eax, 0x1FF
        cmp eax, 0x1FF
        REPORT32 "svr software enable"

        mov dword [APIC_ESR], 0
        cmp dword [APIC_ESR], 0
        REPORT32 "esr clear"

        ; Self-IPI with interrupts off: it waits in the IRR.
        mov dword [APIC_ICR_LOW], ICR_SELF | VEC_IPI
        mov eax, [APIC_IRR + 0x20]
        and eax, 1 << (VEC_IPI - 64)
        cmp eax, 1 << (VEC_IPI - 64)
        REPORT32 "self ipi waits in irr"
        sti
        hlt
        cli
        cmp dword [COUNTS + VEC_IPI * 4], 1
        REPORT32 "self ipi delivered"
        cmp dword [ISR_SEEN], 1 << (VEC_IPI - 64)
        REPORT32 "in isr while its handler runs"
        cmp dword [APIC_ISR + 0x20], 0
        REPORT32 "eoi clears isr"

        ; TPR: class 5 holds back vector 0x45 (class 4); so does class 4 (not above).
        mov dword [APIC_TPR], 0x50
        mov eax, [APIC_PPR]
        and eax, 0xFF
        cmp eax, 0x50
        REPORT32 "ppr follows tpr"
        mov dword [APIC_ICR_LOW], ICR_SELF | VEC_IPI_LOW
        sti
        mov ecx, 200000
.spin1: loop .spin1
        cli
        cmp dword [COUNTS + VEC_IPI_LOW * 4], 0
        REPORT32 "tpr class 5 masks vector 45"
        mov dword [APIC_TPR], 0x40
        sti
        mov ecx, 200000
.spin2: loop .spin2
        cli
        cmp dword [COUNTS + VEC_IPI_LOW * 4], 0
        REPORT32 "tpr class 4 masks vector 45"
        mov eax, [APIC_IRR + 0x20]
        and eax, 1 << (VEC_IPI_LOW - 64)
        cmp eax, 1 << (VEC_IPI_LOW - 64)
        REPORT32 "masked vector stays in irr"
        mov dword [APIC_TPR], 0x30
        sti
        hlt
        cli
        cmp dword [COUNTS + VEC_IPI_LOW * 4], 1
        REPORT32 "lower tpr delivers it"
        mov dword [APIC_TPR], 0

        ; Priority: two pending vectors arrive highest first.
        mov dword [ORDER_POS], 0
        mov dword [APIC_ICR_LOW], ICR_SELF | VEC_IPI_LOW
        mov dword [APIC_ICR_LOW], ICR_SELF | VEC_IPI_HIGH
        sti
        hlt
        mov ecx, 200000
.spin3: loop .spin3
        cli
        cmp word [ORDER], VEC_IPI_HIGH | (VEC_IPI_LOW << 8)
        REPORT32 "higher vector first"

        ; Timer, one-shot: divide by 16, vector 0x50.
        mov dword [APIC_TIMER_DIV], 3
        mov dword [APIC_LVT_TIMER], VEC_ONESHOT
        mov dword [APIC_TIMER_INIT], 200000
        mov eax, [APIC_TIMER_CUR]
        cmp eax, 200000
        setbe al
        cmp al, 1
        REPORT32 "timer counts down from the initial count"
        sti
.wait1: hlt
        cmp dword [COUNTS + VEC_ONESHOT * 4], 0
        je .wait1
        cli
        cmp dword [APIC_TIMER_CUR], 0
        REPORT32 "one-shot stops at 0"

        ; Periodic: vector 0x52 five times; the one-shot stayed at one interrupt.
        mov dword [APIC_LVT_TIMER], VEC_PERIODIC | LVT_PERIODIC
        mov dword [APIC_TIMER_INIT], 100000
        sti
.wait2: hlt
        cmp dword [COUNTS + VEC_PERIODIC * 4], 5
        jb .wait2
        cli
        mov dword [APIC_TIMER_INIT], 0
        cmp dword [COUNTS + VEC_ONESHOT * 4], 1
        REPORT32 "one-shot fired once"
        cmp dword [APIC_TIMER_CUR], 0
        REPORT32 "initial count 0 stops the timer"
        mov dword [APIC_LVT_TIMER], LVT_MASKED

        ; I/O APIC: version 0x20 with 24 entries; PIT IRQ 0 on pin 2, vector 0x30.
        mov dword [IOREGSEL], 1
        mov eax, [IOWIN]
        cmp eax, 0x00170020
        REPORT32 "ioapic version and 24 pins"
        mov dword [IOREGSEL], 0x10 + 2 * 2 + 1
        mov dword [IOWIN], 0                    ; destination: APIC ID 0
        mov dword [IOREGSEL], 0x10 + 2 * 2
        mov dword [IOWIN], VEC_IOAPIC_PIT       ; fixed, physical, edge, high, unmasked
        mov eax, [IOWIN]
        cmp eax, VEC_IOAPIC_PIT
        REPORT32 "redirection entry reads back"
        mov al, 0xFE                            ; 8259A IRQ 0 unmasked: LINT0 keeps it out
        out PIC1_DATA, al
        PIT_START_100HZ
        sti
.wait3: hlt
        cmp dword [COUNTS + VEC_IOAPIC_PIT * 4], 3
        jb .wait3
        cli
        mov dword [IOWIN], VEC_IOAPIC_PIT | LVT_MASKED
        cmp dword [COUNTS + VEC_PIC_IRQ0 * 4], 0
        REPORT32 "pit through ioapic pin 2, pic held off"

        ; Virtual wire: LINT0 in ExtINT mode lets the 8259A through.
        mov dword [LAPIC_LVT_LINT0], LVT_DM_EXTINT
        sti
.wait4: hlt
        cmp dword [COUNTS + VEC_PIC_IRQ0 * 4], 3
        jb .wait4
        cli
        mov al, 0xFF
        out PIC1_DATA, al
        mov dword [LAPIC_LVT_LINT0], LVT_DM_EXTINT | LVT_MASKED
        REPORT32 "pit through the 8259A and lint0 extint"

        cmp dword [UNEXPECTED], 0
        REPORT32 "no unexpected vectors"
        jmp finish32

; IDT gate ECX -> handler EAX: 32-bit interrupt gate, DPL 0.
set_gate:
        mov [IDT + ecx * 8], ax
        mov word [IDT + ecx * 8 + 2], SEL_CODE32
        mov word [IDT + ecx * 8 + 4], 0x8E00
        shr eax, 16
        mov [IDT + ecx * 8 + 6], ax
        ret

; A handler that counts its vector, logs the delivery order and ends with an APIC EOI.
%macro HANDLER 1
handler_%1:
        push eax
        inc dword [COUNTS + %1 * 4]
        mov eax, [ORDER_POS]
        and eax, 0x0F
        mov byte [ORDER + eax], %1
        inc dword [ORDER_POS]
%ifidn %1, VEC_IPI
        mov eax, [APIC_ISR + 0x20]
        mov [ISR_SEEN], eax
%endif
        mov dword [APIC_EOI], 0
        pop eax
        iretd
%endmacro
        HANDLER VEC_IPI
        HANDLER VEC_IPI_LOW
        HANDLER VEC_IPI_HIGH
        HANDLER VEC_ONESHOT
        HANDLER VEC_PERIODIC
        HANDLER VEC_IOAPIC_PIT

; The 8259A's IRQ 0 (ExtINT): the EOI goes to the 8259A.
handler_VEC_PIC_IRQ0:
        push eax
        inc dword [COUNTS + VEC_PIC_IRQ0 * 4]
        mov al, PIC_EOI
        out PIC1_CMD, al
        pop eax
        iretd

unexpected:
        inc dword [UNEXPECTED]
        mov dword [APIC_EOI], 0
        iretd

idt_desc:
        dw 256 * 8 - 1
        dd IDT

        COMMON_CODE
        ROM_END
