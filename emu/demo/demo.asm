; emu's built-in demo ROM: what `emu run` runs when no image is given.
;
; A 64 KiB BIOS image. From the reset vector it loads a GDT, enters 32-bit flat protected mode,
; draws the Mandelbrot set in fixed-point integer arithmetic, lists the primes below 100 (a
; sieve), and powers the machine off through the ACPI PM1a control register (port 0x604, where
; emu and SeaBIOS-configured QEMU have it). Output goes to the 16550 UART at 0x3F8.
; If the poweroff is not honoured (plain `qemu-system-x86_64 -bios demo.bin`), it writes 0 to
; the isa-debug-exit port 0xF4 instead.
;
; Build: nasm -f bin -o demo.bin demo.asm

bits 16
org 0

%define ROM_LINEAR      0xF0000         ; where the image's last 64 KiB appear below 1 MiB
%define LIN(x)          (ROM_LINEAR + (x))
%define COM1            0x3F8
%define COM1_LSR        (COM1 + 5)
%define LSR_THRE        0x20            ; transmitter holding register empty
%define PM1A_CNT        0x604
%define SLP_EN          0x2000
%define DEBUG_EXIT      0xF4
%define STACK_TOP       0x90000
%define SIEVE           0x10000         ; 100 bytes of RAM for the sieve
%define FRAC            12              ; fixed point: 12 fractional bits
%define ONE             (1 << FRAC)
%define WIDTH           64
%define HEIGHT          24
%define MAX_ITER        36

start16:
        cli
        cld
        xor     ax, ax
        mov     ss, ax
        mov     sp, 0x7000
        lgdt    [cs:gdt_desc]
        mov     eax, cr0
        or      al, 1                   ; CR0.PE (SDM Vol. 3A 2.5)
        mov     cr0, eax
        jmp     dword 0x08:LIN(start32)

bits 32
start32:
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     fs, ax
        mov     gs, ax
        mov     esp, STACK_TOP

        mov     esi, LIN(msg_hello)
        call    puts

        ; ---- Mandelbrot: cr = -2.25 + x * 3/64, ci = -1.25 + y * 2.5/24 ----
        xor     edi, edi                ; y
.row:
        xor     ebx, ebx                ; x
.col:
        ; ci in ebp
        mov     eax, edi
        imul    eax, eax, (5 * ONE) / (2 * HEIGHT)
        sub     eax, (5 * ONE) / 4
        mov     ebp, eax
        ; cr in [cr]
        mov     eax, ebx
        imul    eax, eax, (3 * ONE) / WIDTH
        sub     eax, (9 * ONE) / 4
        mov     [cr], eax
        xor     ecx, ecx                ; zr
        xor     edx, edx                ; zi
        mov     dword [iter], 0
.iterate:
        mov     eax, ecx
        imul    eax, ecx
        sar     eax, FRAC               ; zr^2
        mov     esi, edx
        imul    esi, edx
        sar     esi, FRAC               ; zi^2
        lea     ebp, [eax + esi]
        cmp     ebp, 4 * ONE
        jg      .escaped
        sub     eax, esi                ; zr^2 - zi^2
        imul    edx, ecx
        sar     edx, FRAC - 1           ; 2 zr zi
        ; ci again (ebp was reused)
        push    eax
        mov     eax, edi
        imul    eax, eax, (5 * ONE) / (2 * HEIGHT)
        sub     eax, (5 * ONE) / 4
        add     edx, eax                ; zi = 2 zr zi + ci
        pop     eax
        add     eax, [cr]
        mov     ecx, eax                ; zr = zr^2 - zi^2 + cr
        inc     dword [iter]
        cmp     dword [iter], MAX_ITER
        jb      .iterate
.escaped:
        mov     eax, [iter]
        shr     eax, 2                  ; 0..8
        movzx   eax, byte [LIN(shades) + eax]
        call    putc
        inc     ebx
        cmp     ebx, WIDTH
        jb      .col
        mov     al, 10
        call    putc
        inc     edi
        cmp     edi, HEIGHT
        jb      .row

        ; ---- primes below 100 with a sieve ----
        mov     esi, LIN(msg_primes)
        call    puts
        mov     edi, SIEVE
        mov     ecx, 100
        mov     al, 1
        rep     stosb                   ; all candidates
        mov     ebx, 2
.sieve:
        cmp     byte [SIEVE + ebx], 0
        je      .next
        mov     eax, ebx
        call    putdec
        mov     al, ' '
        call    putc
        mov     eax, ebx
        imul    eax, ebx
.strike:
        cmp     eax, 100
        jae     .next
        mov     byte [SIEVE + eax], 0
        add     eax, ebx
        jmp     .strike
.next:
        inc     ebx
        cmp     ebx, 100
        jb      .sieve
        mov     al, 10
        call    putc

        mov     esi, LIN(msg_bye)
        call    puts
        mov     dx, PM1A_CNT
        mov     ax, SLP_EN              ; SLP_TYP 0 (S5) | SLP_EN: power off
        out     dx, ax
        mov     al, 0
        out     DEBUG_EXIT, al
.stop:
        cli
        hlt
        jmp     .stop

; putc: al -> COM1, waiting for the transmitter
putc:
        push    edx
        push    eax
        mov     dx, COM1_LSR
.wait:
        in      al, dx
        test    al, LSR_THRE
        jz      .wait
        pop     eax
        mov     dx, COM1
        out     dx, al
        pop     edx
        ret

; puts: NUL-terminated string at esi
puts:
        push    eax
.loop:
        lodsb
        test    al, al
        jz      .done
        call    putc
        jmp     .loop
.done:
        pop     eax
        ret

; putdec: eax (unsigned) in decimal
putdec:
        push    ebx
        push    ecx
        push    edx
        mov     ebx, 10
        xor     ecx, ecx
.divide:
        xor     edx, edx
        div     ebx
        push    edx
        inc     ecx
        test    eax, eax
        jnz     .divide
.emit:
        pop     eax
        add     al, '0'
        call    putc
        loop    .emit
        pop     edx
        pop     ecx
        pop     ebx
        ret

msg_hello:  db "emu demo: an x86 guest in 32-bit protected mode draws the Mandelbrot set", 10, 0
msg_primes: db "primes below 100: ", 0
msg_bye:    db "demo done; powering off", 10, 0
shades:     db " .:-=+*#%@"

align 8
gdt:
        dq      0                       ; null descriptor
        dq      0x00CF9A000000FFFF      ; 0x08: flat 4 GiB ring-0 code, 32-bit
        dq      0x00CF92000000FFFF      ; 0x10: flat 4 GiB ring-0 data
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      LIN(gdt)

; scratch variables live in RAM
cr      equ     0x20000
iter    equ     0x20004

        times   0xFFF0 - ($ - $$) db 0xFF
bits 16
reset_vector:                           ; F000:FFF0
        jmp     0xF000:start16
        times   0x10000 - ($ - $$) db 0xFF
