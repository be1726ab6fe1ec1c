; kernel.asm - a Multiboot v1 test kernel: checks the machine state and boot information a
; Multiboot loader must provide (Multiboot Specification 0.6.96, 3.2 and 3.3) and prints what
; it was given on the debug console (port 0xE9), then exits through port 0xF4 with 0x10
; (PASS, status 33) or 0x11 (FAIL, status 35).
;
; Two builds from this one source:
;   ELF32:      nasm -f elf32 kernel.asm && ld -m elf_i386 -Ttext=0x100000 -e start
;   a.out kludge (flat, addresses in the header): nasm -f bin -DAOUT kernel.asm
; Run with 128 MiB of RAM, the command line "hello multiboot" appended and one module whose name carries an
; argument; QEMU's -kernel/-append/-initrd give the same output.

        bits 32
MB_MAGIC        equ 0x1BADB002
MB_PAGE_ALIGN   equ 1 << 0
MB_MEMORY_INFO  equ 1 << 1
MB_AOUT_KLUDGE  equ 1 << 16
%ifdef AOUT
MB_FLAGS        equ MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_AOUT_KLUDGE
%else
MB_FLAGS        equ MB_PAGE_ALIGN | MB_MEMORY_INFO
%endif
BOOT_MAGIC      equ 0x2BADB002
LOAD_ADDR       equ 0x100000
DEBUGCON        equ 0xE9
DEBUG_EXIT      equ 0xF4
; Boot information fields (spec 3.3).
INFO_FLAGS      equ 0
INFO_MEM_LOWER  equ 4
INFO_MEM_UPPER  equ 8
INFO_CMDLINE    equ 16
INFO_MODS_COUNT equ 20
INFO_MODS_ADDR  equ 24
INFO_MMAP_LEN   equ 44
INFO_MMAP_ADDR  equ 48
NEEDED_FLAGS    equ (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6)   ; mem, cmdline, mods, mmap
CR0_PE          equ 1
CR0_PG          equ 1 << 31
EFLAGS_IF       equ 1 << 9

%ifdef AOUT
        org LOAD_ADDR
%endif
        section .text
        global start
        align 4
mb_header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
%ifdef AOUT
        dd mb_header, LOAD_ADDR, load_end, bss_end, start
%endif

start:
        mov esp, stack_top
        mov [magic], eax
        mov [info], ebx
        mov esi, banner
        call puts

        cmp dword [magic], BOOT_MAGIC
        call report
        db "eax holds the boot magic", 0

        mov eax, cr0
        and eax, CR0_PE | CR0_PG
        cmp eax, CR0_PE
        call report
        db "protected mode, paging off", 0

        pushfd
        pop eax
        test eax, EFLAGS_IF
        call report
        db "interrupts off", 0

        mov ebx, [info]
        mov eax, [ebx + INFO_FLAGS]
        and eax, NEEDED_FLAGS
        cmp eax, NEEDED_FLAGS
        call report
        db "memory, command line, modules and memory map present", 0

        ; Firmware may keep the top of each area for itself (an EBDA below 640 KiB, ACPI
        ; tables at the top of RAM), so only ranges are checked: run with 128 MiB.
        mov eax, [ebx + INFO_MEM_LOWER]
        sub eax, 600
        cmp eax, 640 - 600
        setbe al
        cmp al, 1
        call report
        db "mem_lower is 600-640 KiB", 0
        mov eax, [ebx + INFO_MEM_UPPER]
        sub eax, 124 * 1024
        cmp eax, 3 * 1024
        setbe al
        cmp al, 1
        call report
        db "mem_upper is 124-127 MiB", 0

        mov esi, msg_cmdline
        call puts
        mov esi, [ebx + INFO_CMDLINE]
        call puts
        call newline

        mov esi, msg_mods
        call puts
        mov eax, [ebx + INFO_MODS_COUNT]
        call puthex
        call newline
        cmp dword [ebx + INFO_MODS_COUNT], 1
        jne .mmap
        mov edi, [ebx + INFO_MODS_ADDR]
        test dword [edi], 0xFFF
        call report
        db "module is page aligned", 0
        mov esi, msg_modname
        call puts
        mov esi, [edi + 8]
        call puts
        call newline
        mov esi, msg_modtext
        call puts
        mov esi, [edi]              ; the module's bytes, up to mod_end
.modbyte:
        cmp esi, [edi + 4]
        jae .moddone
        lodsb
        out DEBUGCON, al
        jmp .modbyte
.moddone:

.mmap:  ; Some available entry must cover [1 MiB, 16 MiB).
        mov esi, [ebx + INFO_MMAP_ADDR]
        mov ecx, esi
        add ecx, [ebx + INFO_MMAP_LEN]
        xor edx, edx
.entry: cmp esi, ecx
        jae .mmap_done
        cmp dword [esi + 20], 1      ; type: available
        jne .next
        cmp dword [esi + 8], 0       ; base high
        jne .next
        cmp dword [esi + 4], 0x100000
        ja .next
        mov eax, [esi + 4]
        add eax, [esi + 12]          ; end (low dword; entries below 4 GiB here)
        cmp eax, 0x1000000
        jb .next
        mov edx, 1
.next:  add esi, [esi]
        add esi, 4
        jmp .entry
.mmap_done:
        cmp edx, 1
        call report
        db "memory map has RAM from 1 MiB to 16 MiB", 0

        ; Flat data segments: a store at 16 MiB - 4 reads back.
        mov dword [0xFFFFFC], 0x600DF00D
        cmp dword [0xFFFFFC], 0x600DF00D
        call report
        db "flat data segment", 0

        cmp dword [fails], 0
        jne .failed
        mov esi, msg_pass
        call puts
        mov al, 0x10
        out DEBUG_EXIT, al
        jmp .stop
.failed:
        mov esi, msg_fail
        call puts
        mov al, 0x11
        out DEBUG_EXIT, al
.stop:  cli
        hlt
        jmp .stop

; ZF=1 -> "ok NAME", else "FAIL NAME" (and a failure counted); NAME follows the call.
report:
        pushfd
        pushad
        mov esi, msg_ok
        jz .print
        inc dword [fails]
        mov esi, msg_bad
.print: call puts
        mov esi, [esp + 36]
        call puts
        mov [esp + 36], esi
        call newline
        popad
        popfd
        ret

; Print the NUL-terminated string at ESI; ESI ends past the NUL.
puts:
        push eax
.next:  lodsb
        test al, al
        jz .done
        out DEBUGCON, al
        jmp .next
.done:  pop eax
        ret

newline:
        push eax
        mov al, 10
        out DEBUGCON, al
        pop eax
        ret

puthex:
        pushad
        mov ecx, 8
.dig:   rol eax, 4
        mov edx, eax
        and dl, 0x0F
        add dl, '0'
        cmp dl, '9'
        jbe .out
        add dl, 'a' - '9' - 1
.out:   xchg eax, edx
        out DEBUGCON, al
        xchg eax, edx
        loop .dig
        popad
        ret

banner:      db "multiboot kernel", 10, 0
msg_ok:      db "ok ", 0
msg_bad:     db "FAIL ", 0
msg_cmdline: db "cmdline ", 0
msg_mods:    db "modules ", 0
msg_modname: db "module string ", 0
msg_modtext: db "module text ", 0
msg_pass:    db "PASS", 10, 0
msg_fail:    db "FAIL", 10, 0

        align 4
fails:  dd 0
magic:  dd 0
info:   dd 0
load_end:

        section .bss
        alignb 16
stack:  resb 4096
stack_top:
bss_end:
