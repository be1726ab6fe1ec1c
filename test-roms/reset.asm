; reset.asm - system resets restart the machine: the Reset Control Register (0xCF9), System
; Control Port A's fast reset (0x92 bit 0), the keyboard controller's reset pulse (0xFE to 0x64)
; and a triple fault each bring the CPU back to the reset vector with RAM and CMOS RAM kept.
; A boot counter in CMOS RAM (battery-backed, so it survives) chooses what each boot does; a
; marker in RAM must survive too. After the fourth reset the CPU must be in its reset state
; (real mode, CR0 = 0x60000010, interrupts off) with the marker intact.
;
; Run by emu with --reboot (MachineConfig::reboot); QEMU reboots by default.

%include "common.inc"
        ROM_BEGIN

CMOS_INDEX   equ 0x70
CMOS_DATA    equ 0x71
CMOS_COUNTER equ 0x40               ; a CMOS RAM byte no firmware uses here
RCR_PORT     equ 0xCF9              ; Reset Control Register
RCR_SYS_RST  equ 0x02
RCR_RST_CPU  equ 0x04
PORT_A       equ 0x92
PORT_A_FAST_RESET equ 0x01
PORT_A_A20   equ 0x02
KBC_COMMAND  equ 0x64
KBC_PULSE_RESET equ 0xFE
MARKER       equ 0x7E00             ; dword in RAM kept across resets
MARKER_VALUE equ 0x5EB00710
CR0_RESET    equ 0x60000010         ; CD NW ET (SDM Vol. 3A 9.1.1, Table 9-1)

start:
        cli
        cld
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, STACK16
        ; FAILS (in RAM) must survive the resets too, so only the first boot clears it.
        mov al, CMOS_COUNTER
        out CMOS_INDEX, al
        in al, CMOS_DATA
        cmp al, 0
        je boot0
        cmp al, 1
        je boot1
        cmp al, 2
        je boot2
        cmp al, 3
        je boot3
        jmp boot4

; Store the next boot number in CMOS.
%macro NEXT_BOOT 1
        mov al, CMOS_COUNTER
        out CMOS_INDEX, al
        mov al, %1
        out CMOS_DATA, al
%endmacro

boot0:
        mov dword [FAILS], 0
        mov dword [MARKER], MARKER_VALUE
        PRINT16 "reset tests", 10, "boot 0: reset through 0xcf9", 10
        NEXT_BOOT 1
        mov dx, RCR_PORT
        mov al, RCR_SYS_RST
        out dx, al
        mov al, RCR_SYS_RST | RCR_RST_CPU
        out dx, al
        jmp not_reset

boot1:
        PRINT16 "boot 1: fast reset through port 0x92", 10
        NEXT_BOOT 2
        in al, PORT_A
        or al, PORT_A_FAST_RESET
        out PORT_A, al
        jmp not_reset

boot2:
        PRINT16 "boot 2: reset pulse from the keyboard controller", 10
        NEXT_BOOT 3
        mov al, KBC_PULSE_RESET
        out KBC_COMMAND, al
        jmp not_reset

boot3:
        PRINT16 "boot 3: triple fault", 10
        NEXT_BOOT 4
        ENTER_PM32 boot3_pm
        bits 32
boot3_pm:
        PM32_INIT
        lidt [ROMBASE + empty_idt]  ; no IDT: int3 faults, the #GP faults, the #DF faults
        int3
        jmp SEL_CODE16:not_reset
        bits 16

boot4:
        PRINT16 "boot 4", 10
        cmp dword [MARKER], MARKER_VALUE
        REPORT16 "ram kept across resets"
        mov eax, cr0
        cmp eax, CR0_RESET
        REPORT16 "cr0 at reset"
        pushf
        pop ax
        test ax, 0x200
        REPORT16 "interrupts off at reset"
        NEXT_BOOT 0
        jmp finish16

not_reset:
        PRINT16 "FAIL the reset did not happen", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

empty_idt:
        dw 0
        dd 0

        COMMON_CODE
        ROM_END
