; serial_echo.asm - the UART's receive side: the host types "ping" and a newline (the test
; feeds them to the guest's COM1 before it starts, or to QEMU's stdin), the guest polls the
; line status register for data-ready, reads the receive buffer, and echoes the line back
; through the debug console.

%include "common.inc"
        ROM_BEGIN

COM1      equ 0x3F8
UART_RBR  equ COM1 + 0
UART_LCR  equ COM1 + 3
UART_LSR  equ COM1 + 5
LSR_DR    equ 0x01
LINE      equ 0x600                 ; the received line
MAX_LINE  equ 32
POLLS     equ 50000000              ; give up after this many empty polls

start:
        REAL_MODE_INIT
        PRINT16 "serial echo test", 10
        mov dx, UART_LCR
        mov al, 0x03                ; 8N1
        out dx, al

        xor di, di                  ; bytes received
.next:  mov ecx, POLLS
.poll:  mov dx, UART_LSR
        in al, dx
        test al, LSR_DR
        jnz .ready
        a32 loop .poll
        jmp .timeout
.ready: mov dx, UART_RBR
        in al, dx
        cmp al, 10
        je .line_done
        cmp al, 13
        je .next                    ; ignore CR
        mov [LINE + di], al
        inc di
        cmp di, MAX_LINE
        jb .next
.line_done:
        mov byte [LINE + di], 0
        PRINT16 "got: "
        xor si, si
.echo:  mov al, [LINE + si]
        test al, al
        jz .echoed
        out DEBUGCON_PORT, al
        inc si
        jmp .echo
.echoed:
        mov al, 10
        out DEBUGCON_PORT, al
        cmp dword [LINE], 'ping'
        REPORT16 "received ping"
        jmp finish16

.timeout:
        or ax, 1                    ; ZF=0
        REPORT16 "received ping"
        jmp finish16

        COMMON_CODE
        ROM_END
