; paging_pae.asm - PAE paging in 32-bit protected mode (SDM Vol. 3A 4.4): a 4-entry PDPT,
; 4 KiB and 2 MiB pages, accessed and dirty flags, CR0.WP, the execute-disable bit (a reserved
; bit without EFER.NXE, an instruction-fetch fault with it), page faults with their exact error
; code and CR2 (SDM Vol. 3A 4.7), and INVLPG of a global page (CR4.PGE). Which stale
; translations a TLB keeps is not architectural, so only what must be seen after INVLPG or a
; CR3 load is checked. The paging structures live above 1 MiB, outside the RAM the tests
; compare across backends.

%include "common.inc"
        ROM_BEGIN

IDT        equ 0x2000
GATE_INT32 equ 0x8E00
F_COUNT    equ 0x600
F_ERR      equ 0x604
F_EIP      equ 0x608
F_CR2      equ 0x60C
F_RESUME   equ 0x610
K_ESP      equ 0x620
U_CS       equ 0x624
U_SS       equ 0x628
S_ESP      equ 0x62C
S_CS       equ 0x630
S_SS       equ 0x634
S_EFLAGS   equ 0x638
MSR_SYSENTER_CS  equ 0x174
MSR_SYSENTER_ESP equ 0x175
MSR_SYSENTER_EIP equ 0x176
SYSENTER_STACK   equ 0x7F000
USER_STACK       equ 0x6F000

PDPT       equ 0x100000             ; 32-byte aligned
PD0        equ 0x101000             ; 0-1 GiB
PT0        equ 0x102000             ; 0-2 MiB, identity
PT2        equ 0x103000             ; 4-6 MiB, the test pages

P          equ 1
RW         equ 2
US         equ 4
PS         equ 0x80
G          equ 0x100
A_BIT      equ 0x20
D_BIT      equ 0x40
XD_HIGH    equ 0x80000000           ; bit 63, in the entry's high dword

CR4_PAE    equ 1 << 5
CR4_PGE    equ 1 << 7
CR0_PG     equ 1 << 31
CR0_WP     equ 1 << 16
MSR_EFER   equ 0xC0000080
EFER_NXE   equ 1 << 11

; Test pages in PT2 (linear 0x400000 + 0x1000 * n).
LA_XD      equ 0x400000             ; XD, -> 0x30000
LA_RO      equ 0x401000             ; read-only, -> 0x31000
LA_NP      equ 0x402000             ; not present
LA_GLOBAL  equ 0x403000             ; global, -> 0x32000, later 0x33000
LA_DIRTY   equ 0x404000             ; read/write, -> 0x34000
LA_BIG     equ 0x200000             ; the 2 MiB page -> 0x600000

; %1 name, %2 error code, %3 CR2, then the instruction: expects #PF at the instruction.
%macro EXPECT_PF 4+
        mov dword [F_RESUME], ROMBASE + %%end
        mov dword [F_COUNT], 0
%%site:
        %4
%%end:
        cmp dword [F_COUNT], 1
        jne %%out
        cmp dword [F_ERR], %2
        jne %%out
        cmp dword [F_CR2], %3
        jne %%out
        cmp dword [F_EIP], ROMBASE + %%site
%%out:  REPORT32 %1
%endmacro

; %1 name, %2 error code, %3 target: a near call to %3 faults on the fetch there (EIP = CR2 = %3).
%macro EXPECT_FETCH_PF 3
        mov dword [F_RESUME], ROMBASE + %%faulted
        mov dword [F_COUNT], 0
        mov eax, %3
        call eax
        jmp %%check
%%faulted:
        add esp, 4                  ; the return address of the faulting call
%%check:
        cmp dword [F_COUNT], 1
        jne %%out
        cmp dword [F_ERR], %2
        jne %%out
        cmp dword [F_CR2], %3
        jne %%out
        cmp dword [F_EIP], %3
%%out:  REPORT32 %1
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "pae paging tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        mov edi, IDT
        mov ecx, 256
        mov ebx, ROMBASE + unexpected
.fill:  call write_gate
        add edi, 8
        loop .fill
        mov edi, IDT + 14 * 8
        mov ebx, ROMBASE + pf_handler
        call write_gate
        lidt [ROMBASE + idt_desc]

        ; Clear the paging structures.
        mov edi, PDPT
        mov ecx, 4 * 4096 / 4
        xor eax, eax
        rep stosd
        mov dword [PDPT], PD0 | P
        mov dword [PD0], PT0 | P | RW | US
        mov dword [PD0 + 8], 0x600000 | P | RW | PS      ; 2-4 MiB -> 6-8 MiB
        mov dword [PD0 + 16], PT2 | P | RW
        ; PT0: identity map of the first 2 MiB.
        mov edi, PT0
        mov eax, P | RW | US
        mov ecx, 512
.id:    mov [edi], eax
        add eax, 0x1000
        add edi, 8
        loop .id
        mov dword [PT2 + 0 * 8], 0x30000 | P | RW
        mov dword [PT2 + 0 * 8 + 4], XD_HIGH
        mov dword [PT2 + 1 * 8], 0x31000 | P
        mov dword [PT2 + 3 * 8], 0x32000 | P | RW | G
        mov dword [PT2 + 4 * 8], 0x34000 | P | RW

        ; Data behind the test pages.
        mov byte [0x30000], 0xC3                        ; ret
        mov dword [0x31000], 0x0DDBA11
        mov dword [0x32000], 0x11111111
        mov dword [0x33000], 0x22222222
        mov dword [0x600010], 0xB16B00B5

        mov eax, PDPT
        mov cr3, eax
        mov eax, cr4
        or eax, CR4_PAE | CR4_PGE
        mov cr4, eax
        mov eax, cr0
        or eax, CR0_PG
        mov cr0, eax
        jmp .paged
.paged:
        mov eax, cr0
        test eax, CR0_PG
        setnz al
        cmp al, 1
        REPORT32 "paging on with cr4.pae"

        mov eax, [0xF0000 + signature]
        cmp eax, 'PAE!'
        REPORT32 "identity map through pdpt/pd/pt"

        mov eax, [LA_BIG + 0x10]
        cmp eax, 0xB16B00B5
        REPORT32 "2 MiB page"

        ; The PD entry of the 2 MiB page: accessed, not dirty; then a write sets dirty.
        mov eax, [PD0 + 8]
        and eax, A_BIT | D_BIT
        cmp eax, A_BIT
        REPORT32 "2 MiB page accessed"
        mov dword [LA_BIG + 0x20], 1
        mov eax, [PD0 + 8]
        and eax, A_BIT | D_BIT
        cmp eax, A_BIT | D_BIT
        REPORT32 "2 MiB page dirty"

        mov eax, [LA_DIRTY]
        mov eax, [PT2 + 4 * 8]
        and eax, A_BIT | D_BIT
        cmp eax, A_BIT
        REPORT32 "4 KiB page accessed on read"
        mov dword [LA_DIRTY + 8], 5
        mov eax, [PT2 + 4 * 8]
        and eax, A_BIT | D_BIT
        cmp eax, A_BIT | D_BIT
        REPORT32 "4 KiB page dirty on write"
        cmp dword [0x34008], 5
        REPORT32 "write reached the frame"

        EXPECT_PF "#PF read not present", 0, LA_NP, mov eax, [LA_NP + 0]
        EXPECT_PF "#PF write not present", 2, LA_NP + 0x10, mov dword [LA_NP + 0x10], 1
        mov eax, cr2
        cmp eax, LA_NP + 0x10
        REPORT32 "cr2 holds the address"

        ; A supervisor write to a read-only page passes without CR0.WP and faults with it.
        mov dword [LA_RO], 0xFEEDF00D
        cmp dword [0x31000], 0xFEEDF00D
        REPORT32 "read-only page writable without wp"
        mov eax, cr0
        or eax, CR0_WP
        mov cr0, eax
        EXPECT_PF "#PF write read-only with wp", 3, LA_RO + 4, mov dword [LA_RO + 4], 1

        ; XD without EFER.NXE is a reserved bit: RSVD, no I/D bit. Hardware also sets P (the
        ; SDM's "Bad pagetable" faults are 9), QEMU's TCG does not: only RSVD is checked.
        mov dword [F_RESUME], ROMBASE + .rsvd_done
        mov dword [F_COUNT], 0
        mov eax, [LA_XD]
.rsvd_done:
        cmp dword [F_COUNT], 1
        jne .rsvd_out
        mov eax, [F_ERR]
        and eax, ~1
        cmp eax, 8
        jne .rsvd_out
        cmp dword [F_CR2], LA_XD
.rsvd_out:
        REPORT32 "#PF xd reserved without nxe"

        mov ecx, MSR_EFER
        rdmsr
        or eax, EFER_NXE
        wrmsr
        mov eax, [LA_XD]
        cmp al, 0xC3
        REPORT32 "xd page readable with nxe"
        EXPECT_FETCH_PF "#PF fetch from xd page", 0x11, LA_XD
        EXPECT_FETCH_PF "#PF fetch not present with nxe", 0x10, LA_NP

        ; A global page: remap, INVLPG, the new frame shows.
        mov eax, [LA_GLOBAL]
        cmp eax, 0x11111111
        REPORT32 "global page read"
        mov dword [PT2 + 3 * 8], 0x33000 | P | RW | G
        invlpg [LA_GLOBAL]
        mov eax, [LA_GLOBAL]
        cmp eax, 0x22222222
        REPORT32 "invlpg drops a global page"
        ; Unmap it: after INVLPG the access faults.
        mov dword [PT2 + 3 * 8], 0
        invlpg [LA_GLOBAL]
        EXPECT_PF "#PF after unmapping a global page", 0, LA_GLOBAL, mov eax, [LA_GLOBAL]
        ; A non-global page remapped: a CR3 load is enough.
        mov dword [PT2 + 4 * 8], 0x33000 | P | RW
        mov eax, cr3
        mov cr3, eax
        mov eax, [LA_DIRTY]
        cmp eax, 0x22222222
        REPORT32 "cr3 load drops a non-global page"

        ; SYSEXIT to ring 3 (CS = SYSENTER_CS + 16, SS = + 24) and SYSENTER back to ring 0
        ; (CS = SYSENTER_CS, SS = + 8, ESP/EIP from the MSRs, IF cleared).
        xor edx, edx
        mov ecx, MSR_SYSENTER_CS
        mov eax, SEL_CODE32
        wrmsr
        mov ecx, MSR_SYSENTER_ESP
        mov eax, SYSENTER_STACK
        wrmsr
        mov ecx, MSR_SYSENTER_EIP
        mov eax, ROMBASE + sysenter_entry
        wrmsr
        mov [K_ESP], esp
        mov edx, ROMBASE + user32
        mov ecx, USER_STACK
        sti                         ; no interrupt sources are set up; SYSENTER clears IF
        sysexit
user32:
        mov ax, cs
        mov [U_CS], ax
        mov ax, ss
        mov [U_SS], ax
        sysenter
sysenter_entry:
        mov [S_ESP], esp
        mov ax, cs
        mov [S_CS], ax
        mov ax, ss
        mov [S_SS], ax
        pushfd
        pop eax
        mov [S_EFLAGS], eax
        mov esp, [K_ESP]
        cmp word [U_CS], SEL_CODE32 + 16 + 3
        jne .sysexit_out
        cmp word [U_SS], SEL_CODE32 + 24 + 3
.sysexit_out:
        REPORT32 "sysexit to ring 3"
        cmp dword [S_ESP], SYSENTER_STACK
        jne .sysenter_out
        cmp word [S_CS], SEL_CODE32
        jne .sysenter_out
        cmp word [S_SS], SEL_CODE32 + 8
        jne .sysenter_out
        test dword [S_EFLAGS], 0x200
.sysenter_out:
        REPORT32 "sysenter to ring 0"

        ; Turning paging off and on again.
        mov eax, cr0
        and eax, ~CR0_PG
        mov cr0, eax
        mov eax, [0x30000]
        cmp al, 0xC3
        REPORT32 "paging off again"

        jmp finish32

; edi = gate address, ebx = handler: a 32-bit interrupt gate.
write_gate:
        mov [edi], bx
        mov word [edi + 2], SEL_CODE32
        mov word [edi + 4], GATE_INT32
        push ebx
        shr ebx, 16
        mov [edi + 6], bx
        pop ebx
        ret

; Stack: error code, EIP, CS, EFLAGS. Record them and CR2, resume at F_RESUME.
pf_handler:
        push eax
        inc dword [F_COUNT]
        mov eax, [esp + 4]
        mov [F_ERR], eax
        mov eax, [esp + 8]
        mov [F_EIP], eax
        mov eax, cr2
        mov [F_CR2], eax
        mov eax, [F_RESUME]
        mov [esp + 8], eax
        pop eax
        add esp, 4                  ; error code
        iretd

unexpected:
        PRINT32 "unexpected exception", 10
        mov al, EXIT_FAIL
        out DEBUG_EXIT_PORT, al
        cli
        hlt

signature:
        db "PAE!"
idt_desc:
        dw 256 * 8 - 1
        dd IDT
        bits 16

        COMMON_CODE
        ROM_END
