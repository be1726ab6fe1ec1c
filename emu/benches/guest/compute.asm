; A CPU-bound benchmark guest: compiler-shaped integer code in 32-bit flat protected mode.
;
; Each round runs a bitwise CRC-32 over a 4 KiB buffer, a sieve of Eratosthenes up to 32768,
; and an insertion sort of 512 LCG words; a checksum of all results is printed in hex on the
; debug console (0xE9) and the guest exits through isa-debug-exit (0xF4) with value 0x10.
; The number of rounds is the dword at image offset 0xFFE0 (patched by the bench script).
;
; Build: nasm -f bin -o compute.bin compute.asm

bits 16
org 0

%define LIN(x)          (0xF0000 + (x))
%define BUF             0x100000        ; 4 KiB CRC input
%define SIEVE           0x110000        ; 32 KiB sieve
%define SORT            0x120000        ; 512 dwords
%define STACK_TOP       0x90000
%define ROUNDS_OFFSET   0xFFE0

start16:
        cli
        cld
        lgdt    [cs:gdt_desc]
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     dword 0x08:LIN(start32)

bits 32
start32:
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, STACK_TOP

        ; fill the CRC buffer with a pattern
        mov     edi, BUF
        xor     eax, eax
.fill:
        mov     [edi], al
        add     al, 37
        inc     edi
        cmp     edi, BUF + 4096
        jb      .fill

        xor     ebp, ebp                ; checksum
        mov     ecx, [LIN(ROUNDS_OFFSET)]
.round:
        push    ecx

        ; ---- CRC-32 (reflected, poly 0xEDB88320), bit at a time ----
        mov     esi, BUF
        mov     eax, 0xFFFFFFFF
.crc_byte:
        movzx   edx, byte [esi]
        xor     eax, edx
        mov     ecx, 8
.crc_bit:
        shr     eax, 1
        jnc     .no_poly
        xor     eax, 0xEDB88320
.no_poly:
        dec     ecx
        jnz     .crc_bit
        inc     esi
        cmp     esi, BUF + 4096
        jb      .crc_byte
        not     eax
        add     ebp, eax
        rol     ebp, 5

        ; ---- sieve up to 32768 ----
        mov     edi, SIEVE
        mov     ecx, 32768 / 4
        mov     eax, 0x01010101
        rep     stosd
        xor     edx, edx                ; prime count
        mov     ebx, 2
.sieve:
        cmp     byte [SIEVE + ebx], 0
        je      .sieve_next
        inc     edx
        mov     eax, ebx
        imul    eax, ebx
.strike:
        cmp     eax, 32768
        jae     .sieve_next
        mov     byte [SIEVE + eax], 0
        add     eax, ebx
        jmp     .strike
.sieve_next:
        inc     ebx
        cmp     ebx, 32768
        jb      .sieve
        add     ebp, edx
        rol     ebp, 7

        ; ---- insertion sort of 512 LCG dwords ----
        mov     eax, [esp]              ; seed from the round counter
        mov     edi, SORT
        mov     ecx, 512
.gen:
        imul    eax, eax, 1103515245
        add     eax, 12345
        mov     [edi], eax
        add     edi, 4
        dec     ecx
        jnz     .gen
        mov     ebx, 1
.outer:
        mov     eax, [SORT + ebx*4]
        mov     ecx, ebx
.inner:
        mov     edx, [SORT + ecx*4 - 4]
        cmp     edx, eax
        jbe     .place
        mov     [SORT + ecx*4], edx
        dec     ecx
        jnz     .inner
.place:
        mov     [SORT + ecx*4], eax
        inc     ebx
        cmp     ebx, 512
        jb      .outer
        add     ebp, [SORT + 256*4]
        xor     ebp, [SORT]

        pop     ecx
        dec     ecx
        jnz     .round

        ; print the checksum as 8 hex digits and a newline
        mov     ecx, 8
.hex:
        rol     ebp, 4
        mov     eax, ebp
        and     eax, 0xF
        movzx   eax, byte [LIN(hexdigits) + eax]
        out     0xE9, al
        dec     ecx
        jnz     .hex
        mov     al, 10
        out     0xE9, al
        mov     al, 0x10
        out     0xF4, al
.stop:
        cli
        hlt
        jmp     .stop

hexdigits: db "0123456789abcdef"

align 8
gdt:
        dq      0
        dq      0x00CF9A000000FFFF
        dq      0x00CF92000000FFFF
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      LIN(gdt)

        times   ROUNDS_OFFSET - ($ - $$) db 0xFF
rounds: dd      1
        times   0xFFF0 - ($ - $$) db 0xFF
bits 16
        jmp     0xF000:start16
        times   0x10000 - ($ - $$) db 0xFF
