; boot_disk.asm - a 2 MiB raw hard-disk image whose boot sector tests the BIOS disk services.
;
; Boot it with a BIOS that boots from the first hard disk (SeaBIOS on emu's or QEMU's IDE
; primary master): the BIOS loads sector 0 at 0000:7C00 and jumps there with DL = the drive.
; Stage 1 (sector 0) loads stage 2 (sectors 1-7) with INT 13h AH=02h (CHS read) and jumps to it.
; Stage 2 checks the INT 13h services a boot loader uses: AH=08h (drive parameters), AH=02h and
; AH=03h (CHS read and write), AH=41h/42h/43h/48h (EDD: extensions check, extended read and
; write, drive parameters), AH=15h (disk type), and an extended read past the end of the disk.
; Each result is printed to port 0xE9 ("ok NAME" / "FAIL NAME" and the raw values the BIOS
; returned, so a run can be compared byte for byte with another BIOS or emulator); the verdict
; goes to port 0xE9 and to COM1, and the run ends through the debug exit port (status 33 for
; PASS, 35 for FAIL), as the test ROMs do.
;
; Sectors 8 to 4095 hold a pattern: the sector's LBA as a dword, then 508 copies of its low
; byte. The disk has no partition table, so QEMU and emu both give it 4 cylinders of 16 heads
; and 63 sectors (4032 sectors reachable through CHS) and no CHS translation.
;
; Build: nasm -f bin -I test-roms/include/ -o boot_disk.img test-roms/disk/boot_disk.asm
; The tests write sectors 63, 3000 and 3001; run a copy of the image.

%include "common.inc"

SECTOR          equ 512
DISK_SECTORS    equ 4096            ; 2 MiB
STAGE2_SECTORS  equ 7
DATA_FIRST      equ 1 + STAGE2_SECTORS
HEADS           equ 16              ; the geometry the BIOS is expected to report
SPT             equ 63
BUF_SEG         equ 0x1000          ; read buffers at 0x10000, write buffers at 0x20000
WBUF_SEG        equ 0x2000
COM1            equ 0x3F8
COM1_LSR        equ COM1 + 5
LSR_THRE        equ 0x20            ; transmitter holding register empty

        bits 16
        org 0x7C00

; ---------------------------------------------------------------- stage 1: sector 0
boot:
        REAL_MODE_INIT
        jmp 0:.flat                 ; CS = 0, whatever CS:IP the BIOS jumped with
.flat:  mov [boot_drive], dl
        sti
        mov ax, 0x0200 | STAGE2_SECTORS  ; AH=02h read, AL = sector count
        mov cx, 0x0002              ; cylinder 0, sector 2
        xor dh, dh                  ; head 0
        mov bx, stage2              ; ES:BX = 0000:7E00
        int 0x13
        jc .failed
        jmp stage2
.failed:
        mov al, '!'
        out DEBUGCON_PORT, al
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
.stop:  cli
        hlt
        jmp .stop

boot_drive: db 0
        times 446 - ($ - $$) db 0
        times 64 db 0               ; an empty partition table
        dw 0xAA55

; ---------------------------------------------------------------- stage 2: sectors 1-7
stage2:
        PRINT16 "stage 2 loaded by INT 13h AH=02h", 10
        cmp byte [boot_drive], 0x80
        REPORT16 "booted from drive 0x80"

        ; AH=08h: drive parameters.
        mov ah, 0x08
        mov dl, [boot_drive]
        xor di, di
        mov es, di
        int 0x13
        pushf
        PRINT16 "AH=08h: ax="
        call puthex_ax
        PRINT16 " cx="
        mov ax, cx
        call puthex_ax
        PRINT16 " dx="
        mov ax, dx
        call puthex_ax
        PRINT16 10
        popf
        jc .geom_bad
        cmp dl, 1                   ; one hard disk
        jne .geom_bad
        cmp dh, HEADS - 1
        jne .geom_bad
        mov al, cl
        and al, 0x3F
        cmp al, SPT
        jmp .geom_report
.geom_bad:
        test sp, sp                 ; ZF=0
.geom_report:
        REPORT16 "AH=08h reports one disk of 16 heads and 63 sectors"

        ; AH=02h: two sectors at C/H/S 1/3/5 = LBA (1 * 16 + 3) * 63 + 4 = 1201.
        mov ax, BUF_SEG
        mov es, ax
        xor bx, bx
        mov ax, 0x0202
        mov cx, 0x0105              ; cylinder 1, sector 5
        mov dh, 3
        mov dl, [boot_drive]
        int 0x13
        call print_ax_cf
        jc .chs_bad
        mov eax, 1201
        xor si, si
        call check_sector
        jne .chs_bad
        mov eax, 1202
        mov si, SECTOR
        call check_sector
        jmp .chs_report
.chs_bad:
        test sp, sp
.chs_report:
        REPORT16 "AH=02h reads C/H/S 1/3/5 (LBA 1201) and the next sector"

        ; AH=41h: EDD present?
        mov ah, 0x41
        mov bx, 0x55AA
        mov dl, [boot_drive]
        int 0x13
        pushf
        PRINT16 "AH=41h: ax="
        call puthex_ax
        PRINT16 " bx="
        mov ax, bx
        call puthex_ax
        PRINT16 " cx="
        mov ax, cx
        call puthex_ax
        PRINT16 10
        popf
        jc .edd_bad
        cmp bx, 0xAA55
        jne .edd_bad
        test cl, 1                  ; fixed disk access subset (AH=42h-44h, 47h, 48h)
        jz .edd_bad
        cmp al, al
        jmp .edd_report
.edd_bad:
        test sp, sp
.edd_report:
        REPORT16 "AH=41h: extensions present"

        ; AH=42h: three sectors from LBA 4090, beyond what CHS reaches.
        mov word [dap.count], 3
        mov dword [dap.lba], 4090
        mov word [dap.segment], BUF_SEG
        mov ah, 0x42
        call edd_call
        jc .ext_bad
        mov eax, 4090
        xor si, si
        call check_sector
        jne .ext_bad
        mov eax, 4092
        mov si, 2 * SECTOR
        call check_sector
        jmp .ext_report
.ext_bad:
        test sp, sp
.ext_report:
        REPORT16 "AH=42h reads LBA 4090-4092"

        ; AH=03h: write a sector at C/H/S 0/1/1 (LBA 63), then read it back with AH=02h.
        mov eax, 0xC0DE0063
        mov bl, 0x63
        call fill_write_buffer
        mov ax, WBUF_SEG
        mov es, ax
        xor bx, bx
        mov ax, 0x0301
        mov cx, 0x0001
        mov dh, 1
        mov dl, [boot_drive]
        int 0x13
        call print_ax_cf
        jc .wr_bad
        call clear_read_buffer
        mov ax, BUF_SEG
        mov es, ax
        xor bx, bx
        mov ax, 0x0201
        mov cx, 0x0001
        mov dh, 1
        mov dl, [boot_drive]
        int 0x13
        jc .wr_bad
        mov cx, SECTOR
        call compare_buffers
        jmp .wr_report
.wr_bad:
        test sp, sp
.wr_report:
        REPORT16 "AH=03h writes C/H/S 0/1/1 and AH=02h reads it back"

        ; AH=43h: write two sectors at LBA 3000, then read them back with AH=42h.
        mov eax, 0xC0DE3000
        mov bl, 0x30
        call fill_write_buffer
        mov word [dap.count], 2
        mov dword [dap.lba], 3000
        mov word [dap.segment], WBUF_SEG
        mov ax, 0x4300              ; AL=0: no verify
        call edd_call
        jc .xw_bad
        call clear_read_buffer
        mov word [dap.count], 2
        mov word [dap.segment], BUF_SEG
        mov ah, 0x42
        call edd_call
        jc .xw_bad
        mov cx, 2 * SECTOR
        call compare_buffers
        jmp .xw_report
.xw_bad:
        test sp, sp
.xw_report:
        REPORT16 "AH=43h writes LBA 3000-3001 and AH=42h reads them back"

        ; AH=48h: EDD drive parameters.
        mov word [edd_params], 0x1A
        mov si, edd_params
        mov ah, 0x48
        mov dl, [boot_drive]
        int 0x13
        call print_ax_cf
        jc .p_bad
        PRINT16 "AH=48h: sectors="
        mov eax, [edd_params + 16]
        call puthex32_16
        PRINT16 " bytes/sector="
        mov ax, [edd_params + 24]
        call puthex_ax
        PRINT16 10
        cmp dword [edd_params + 16], DISK_SECTORS
        jne .p_bad
        cmp dword [edd_params + 20], 0
        jne .p_bad
        cmp word [edd_params + 24], SECTOR
        jmp .p_report
.p_bad:
        test sp, sp
.p_report:
        REPORT16 "AH=48h reports 4096 sectors of 512 bytes"

        ; AH=42h past the end of the disk must fail.
        mov word [dap.count], 1
        mov dword [dap.lba], DISK_SECTORS
        mov word [dap.segment], BUF_SEG
        mov ah, 0x42
        call edd_call
        jc .end_failed
        test sp, sp                 ; ZF=0: the read succeeded
        jmp .end_done
.end_failed:
        cmp al, al
.end_done:
        REPORT16 "AH=42h past the end of the disk fails"

        ; AH=15h: disk type.
        mov ah, 0x15
        mov dl, [boot_drive]
        int 0x13
        mov bl, ah                  ; the type, kept from the printing below
        pushf
        PRINT16 "AH=15h: ah="
        mov al, ah
        call puthex8_16
        PRINT16 " cx:dx="
        mov ax, cx
        call puthex_ax
        mov ax, dx
        call puthex_ax
        PRINT16 10
        popf
        cmp bl, 3                   ; fixed disk
        REPORT16 "AH=15h: a fixed disk"

        ; The verdict, on COM1 too.
        mov si, msg_serial_pass
        cmp dword [FAILS], 0
        je .say
        mov si, msg_serial_fail
.say:   call serial_puts
        jmp finish16

; Extended read/write (AH in AH, AL flags) with the DAP below; prints the result.
edd_call:
        mov si, dap
        mov dl, [boot_drive]
        int 0x13
        ; fall through
; Print "ax=XXXX cf=N" for the call just made; flags and registers preserved.
print_ax_cf:
        pushf
        push ax
        push bp
        PRINT16 "  -> ax="
        call puthex_ax
        PRINT16 " cf="
        mov bp, sp
        mov al, [bp + 4]            ; the saved FLAGS' low byte
        and al, 1
        add al, '0'
        out DEBUGCON_PORT, al
        mov al, 10
        out DEBUGCON_PORT, al
        pop bp
        pop ax
        popf
        ret

; Print AX as four hex digits (AX preserved).
puthex_ax:
        xchg al, ah
        call puthex8_16
        xchg al, ah
        call puthex8_16
        ret

; ZF=1 when the sector at BUF_SEG:SI holds the pattern of LBA EAX.
check_sector:
        push ds
        push cx
        push si
        mov cx, BUF_SEG
        mov ds, cx
        cmp [si], eax
        jne .done
        add si, 4
        mov cx, SECTOR - 4
.byte:  cmp [si], al
        jne .done
        inc si
        loop .byte
        cmp al, al
.done:  pop si
        pop cx
        pop ds
        ret

; Fill two sectors at WBUF_SEG:0 with: dword EAX, bytes BL, dword EAX+1, bytes BL+1.
fill_write_buffer:
        push es
        mov cx, WBUF_SEG
        mov es, cx
        xor di, di
        call .sector
        inc eax
        inc bl
        call .sector
        pop es
        ret
.sector:
        stosd
        push eax
        mov al, bl
        mov cx, SECTOR - 4
        rep stosb
        pop eax
        ret

; Zero the read buffer's first two sectors.
clear_read_buffer:
        push es
        mov ax, BUF_SEG
        mov es, ax
        xor di, di
        xor ax, ax
        mov cx, SECTOR
        rep stosw
        pop es
        ret

; ZF=1 when the first CX bytes of the read and write buffers are equal.
compare_buffers:
        push ds
        push es
        mov ax, BUF_SEG
        mov ds, ax
        mov ax, WBUF_SEG
        mov es, ax
        xor si, si
        xor di, di
        repe cmpsb
        pop es
        pop ds
        ret

; Print the NUL-terminated string at DS:SI on COM1.
serial_puts:
        mov dx, COM1_LSR
.wait:  in al, dx
        test al, LSR_THRE
        jz .wait
        lodsb
        test al, al
        jz .done
        mov dx, COM1
        out dx, al
        jmp serial_puts
.done:  ret

msg_serial_pass: db "disk boot: PASS", 13, 10, 0
msg_serial_fail: db "disk boot: FAIL", 13, 10, 0

        align 4
dap:                                ; EDD disk address packet
.size:    db 16
          db 0
.count:   dw 0
.offset:  dw 0
.segment: dw 0
.lba:     dq 0

        COMMON_CODE

edd_params: times 0x1A db 0         ; AH=48h result buffer

%if $ - $$ > DATA_FIRST * SECTOR
%error "stage 2 does not fit in its sectors"
%endif
        times DATA_FIRST * SECTOR - ($ - $$) db 0

; ---------------------------------------------------------------- the pattern sectors
%assign lba DATA_FIRST
%rep DISK_SECTORS - DATA_FIRST
        dd lba
        times SECTOR - 4 db (lba & 0xFF)
%assign lba lba + 1
%endrep
