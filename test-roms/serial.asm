; serial.asm - the 16550A UART at COM1 (0x3F8): divisor latch, line control, scratch and
; loopback registers, and transmission polled through the line status register. Text sent to
; the UART reaches the same output stream as the debug console, in program order.

%include "common.inc"
        ROM_BEGIN

COM1      equ 0x3F8
UART_THR  equ COM1 + 0                ; transmit holding / receive buffer (DLAB=0)
UART_DLL  equ COM1 + 0                ; divisor latch low (DLAB=1)
UART_DLM  equ COM1 + 1                ; divisor latch high (DLAB=1)
UART_IER  equ COM1 + 1
UART_FCR  equ COM1 + 2
UART_LCR  equ COM1 + 3
UART_MCR  equ COM1 + 4
UART_LSR  equ COM1 + 5
UART_SCR  equ COM1 + 7
LCR_DLAB  equ 0x80
LCR_8N1   equ 0x03
MCR_LOOP  equ 0x10
LSR_DR    equ 0x01
LSR_THRE  equ 0x20

%macro OUTB 2
        mov dx, %1
        mov al, %2
        out dx, al
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "serial tests", 10

        OUTB UART_IER, 0
        OUTB UART_LCR, LCR_DLAB
        OUTB UART_DLL, 1              ; 115200 baud
        OUTB UART_DLM, 0
        mov dx, UART_DLL
        in al, dx
        cmp al, 1
        REPORT16 "divisor latch"
        OUTB UART_LCR, LCR_8N1
        mov dx, UART_LCR
        in al, dx
        cmp al, LCR_8N1
        REPORT16 "line control"

        OUTB UART_SCR, 0xA5
        mov dx, UART_SCR
        in al, dx
        cmp al, 0xA5
        REPORT16 "scratch register"

        mov dx, UART_LSR
        in al, dx
        and al, LSR_THRE
        cmp al, LSR_THRE
        REPORT16 "transmitter empty"

        mov si, uart_text
        call uart_puts
        PRINT16 "debugcon after uart", 10
        mov si, uart_text2
        call uart_puts

        OUTB UART_MCR, MCR_LOOP       ; loopback: transmitted bytes come back as received
        OUTB UART_THR, 'Z'
        mov dx, UART_LSR
        in al, dx
        and al, LSR_DR
        cmp al, LSR_DR
        jne .loop_done
        mov dx, UART_THR
        in al, dx
        cmp al, 'Z'
.loop_done:
        REPORT16 "loopback"
        OUTB UART_MCR, 0x03           ; DTR RTS, loopback off
        mov si, uart_text3
        call uart_puts
        jmp finish16

; Send the NUL-terminated string at CS:SI, waiting for THRE before each byte.
uart_puts:
.next:  cs lodsb
        test al, al
        jz .done
        mov ah, al
        mov dx, UART_LSR
.wait:  in al, dx
        test al, LSR_THRE
        jz .wait
        mov al, ah
        mov dx, UART_THR
        out dx, al
        jmp .next
.done:  ret

uart_text:  db "hello from the uart", 10, 0
uart_text2: db "uart again", 10, 0
uart_text3: db "uart after loopback", 10, 0

        COMMON_CODE
        ROM_END
