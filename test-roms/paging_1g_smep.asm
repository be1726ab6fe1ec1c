; paging_1g_smep.asm - 4-level paging additions (SDM Vol. 3A 4.5, 4.6.1): the CPUID bits
; (80000001H EDX.Page1GB, 7.0 EBX.SMEP and SMAP); a 1 GiB page (PDPTE.PS) aliasing physical memory, with
; its accessed and dirty flags; a #PF for reserved bits 29:13 of a 1 GiB PDPTE; SMEP: a
; supervisor fetch from a user page faults with P and I/D in the error code and CR2 at the
; target, supervisor reads of that page still work, and the same call succeeds once SMEP is
; off; SMAP (CR4 bit 21): a supervisor read of a user page faults, STAC allows it, a write
; after CLAC faults. (Reserved-bit faults check only RSVD: QEMU's TCG leaves P clear there.)

%include "common.inc"
%include "long.inc"
        ROM_BEGIN

IDT64      equ 0x4000
GATE_INT64 equ 0x8E
CR4_SMEP   equ 1 << 20
CR4_SMAP   equ 1 << 21
PTE_A      equ 0x20
PTE_D      equ 0x40
GIB        equ 0x40000000
USER_CODE  equ 0x200000             ; the 2 MiB page at 2 MiB stays a user page
PF_P       equ 1
PF_WR      equ 2
PF_RSVD    equ 8
PF_ID      equ 0x10

F_COUNT    equ 0x600
F_VEC      equ 0x608
F_ERR      equ 0x610
F_RIP      equ 0x618
F_CR2      equ 0x640
F_RESUME   equ 0x648

%macro ARM 1
        mov qword [F_COUNT], 0
        mov rax, %1
        mov [F_RESUME], rax
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "1 GiB pages and smep tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        ENTER_LONG long_entry, 0
        bits 64
long_entry:
        LONG_INIT
        mov edx, 0
.fill:  mov edi, edx
        shl edi, 4
        add edi, IDT64
        mov rax, ROMBASE + unexpected
        call write_gate64
        inc edx
        cmp edx, 256
        jne .fill
        mov rdi, IDT64 + 14 * 16
        mov rax, ROMBASE + stub_14
        call write_gate64
        lidt [rel idt64_desc]

        mov eax, 0x80000001
        cpuid
        test edx, 1 << 26
        setnz al
        cmp al, 1
        REPORT64 "cpuid page1gb"
        mov eax, 7
        xor ecx, ecx
        cpuid
        test ebx, 1 << 7
        setnz al
        cmp al, 1
        REPORT64 "cpuid smep"
        mov eax, 7
        xor ecx, ecx
        cpuid
        test ebx, 1 << 20
        setnz al
        cmp al, 1
        REPORT64 "cpuid smap"

        ; PDPT_LOW[1]: linear 1-2 GiB -> physical 0-1 GiB in one page.
        mov qword [PDPT_LOW + 8], PTE_P | PTE_RW | PTE_PS
        mov rax, cr3
        mov cr3, rax
        mov dword [SCRATCH + 0x100], 0
        mov dword [GIB + SCRATCH + 0x100], 0x1619A6E5
        cmp dword [SCRATCH + 0x100], 0x1619A6E5
        REPORT64 "1 GiB page write reaches the frame"
        mov eax, [GIB + SCRATCH + 0x100]
        cmp eax, 0x1619A6E5
        REPORT64 "1 GiB page read"
        mov rax, [PDPT_LOW + 8]
        and eax, PTE_A | PTE_D
        cmp eax, PTE_A | PTE_D
        REPORT64 "1 GiB page accessed and dirty"

        ; PDPT_LOW[2]: a 1 GiB page with bit 13 set.
        mov qword [PDPT_LOW + 16], 0x2000 | PTE_P | PTE_RW | PTE_PS
        ARM ROMBASE + .rsvd_done
        mov rbx, 2 * GIB
        mov eax, [rbx]
.rsvd_done:
        cmp qword [F_COUNT], 1
        jne .rsvd_out
        cmp qword [F_VEC], 14
        jne .rsvd_out
        test qword [F_ERR], PF_RSVD
        jz .rsvd_fail
        mov rax, 2 * GIB
        cmp [F_CR2], rax
        jmp .rsvd_out
.rsvd_fail:
        or al, 1                    ; ZF = 0
.rsvd_out:
        REPORT64 "#PF reserved bits of a 1 GiB pdpte"

        ; The first 2 MiB (ROM alias, stacks, tables) becomes supervisor-only; the page at
        ; 2 MiB stays a user page and gets a RET.
        and qword [PD_LOW], ~PTE_US
        mov rax, cr3
        mov cr3, rax
        mov byte [USER_CODE], 0xC3
        mov rax, cr4
        or eax, CR4_SMEP
        mov cr4, rax
        mov rax, cr4
        test eax, CR4_SMEP
        setnz al
        cmp al, 1
        REPORT64 "cr4.smep set"

        ARM ROMBASE + .smep_done
        mov eax, USER_CODE
        call rax
        jmp .smep_out               ; returned: no fault
.smep_done:
        add rsp, 8                  ; the return address of the call
        cmp qword [F_COUNT], 1
        jne .smep_out
        cmp qword [F_VEC], 14
        jne .smep_out
        cmp qword [F_ERR], PF_P | PF_ID
        jne .smep_out
        cmp qword [F_RIP], USER_CODE
        jne .smep_out
        cmp qword [F_CR2], USER_CODE
.smep_out:
        REPORT64 "#PF supervisor fetch from a user page"

        ARM 0
        mov al, [USER_CODE]
        cmp qword [F_COUNT], 0
        jne .read_out
        cmp al, 0xC3
.read_out:
        REPORT64 "smep allows supervisor reads"

        mov rax, cr4
        and eax, ~CR4_SMEP
        mov cr4, rax
        ARM 0
        mov eax, USER_CODE
        call rax
        cmp qword [F_COUNT], 0
        REPORT64 "user page runs without smep"

        ; SMAP: supervisor data accesses to the user page fault unless EFLAGS.AC is set.
        mov rax, cr4
        or eax, CR4_SMAP
        mov cr4, rax
        ARM ROMBASE + .smap_done
        mov al, [USER_CODE]
.smap_done:
        cmp qword [F_COUNT], 1
        jne .smap_out
        cmp qword [F_ERR], PF_P
        jne .smap_out
        cmp qword [F_CR2], USER_CODE
.smap_out:
        REPORT64 "#PF smap supervisor read of a user page"
        stac
        ARM 0
        mov al, [USER_CODE]
        cmp qword [F_COUNT], 0
        jne .stac_out
        cmp al, 0xC3
.stac_out:
        REPORT64 "stac allows the access"
        clac
        ARM ROMBASE + .clac_done
        mov byte [USER_CODE + 1], 0x90
.clac_done:
        cmp qword [F_COUNT], 1
        jne .clac_out
        cmp qword [F_ERR], PF_P | PF_WR
.clac_out:
        REPORT64 "#PF smap write after clac"
        mov rax, cr4
        and eax, ~CR4_SMAP
        mov cr4, rax
        jmp finish64

; rdi = gate, rax = handler: a 16-byte interrupt gate with CS = SEL64_CODE, no IST.
write_gate64:
        mov [rdi], ax
        mov word [rdi + 2], SEL64_CODE
        mov byte [rdi + 4], 0
        mov byte [rdi + 5], GATE_INT64
        shr rax, 16
        mov [rdi + 6], ax
        shr rax, 16
        mov [rdi + 8], eax
        mov dword [rdi + 12], 0
        ret

stub_14:
        push 14
; Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
        push rax
        inc qword [F_COUNT]
        mov rax, [rsp + 8]
        mov [F_VEC], rax
        mov rax, [rsp + 16]
        mov [F_ERR], rax
        mov rax, [rsp + 24]
        mov [F_RIP], rax
        mov rax, cr2
        mov [F_CR2], rax
        mov rax, [F_RESUME]
        test rax, rax
        jz .ret
        mov [rsp + 24], rax
.ret:   pop rax
        add rsp, 16
        iretq

unexpected:
        PRINT64 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

idt64_desc:
        dw 256 * 16 - 1
        dq IDT64
        bits 16

        COMMON_CODE
        LONG_CODE
        ROM_END
