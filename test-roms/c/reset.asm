; reset.asm - the reset-vector stub of the C test ROM.
;
; Assembled with -DCBIN="path/to/c.bin": the flat binary of the C program, linked to run at
; ROMBASE (0xF0000) with its entry point `_start` at its first byte. The stub sits behind it
; in the same 64 KiB image: from the reset vector it enters 32-bit flat protected mode, sets up
; the stack and jumps to `_start`, which copies .data to RAM, zeroes .bss and calls main().

%include "common.inc"
        ROM_BEGIN

C_MAX_SIZE equ 0xE000               ; the C program may use the first 56 KiB of the image

c_image:
        incbin CBIN
c_image_end:
%if c_image_end - c_image > C_MAX_SIZE
%error "the C program does not fit in the first 56 KiB of the ROM"
%endif
        times C_MAX_SIZE - ($ - $$) db 0

start:
        REAL_MODE_INIT
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        jmp SEL_CODE32:ROMBASE + c_image
        bits 16

        COMMON_CODE
        ROM_END
