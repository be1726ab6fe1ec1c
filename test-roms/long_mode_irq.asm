; long_mode_irq.asm - events and privilege changes in IA-32e mode (SDM Vol. 3A 6.14, 5.8.8):
; a 64-bit IDT with 16-byte gates, the exact interrupt stack frame (SS, RSP, RFLAGS, CS, RIP,
; error code as quadwords, also without a privilege change), IST stacks aligned to 16 bytes,
; RSP0 from the 64-bit TSS on a ring 3 -> 0 transition, IRETQ, #GP for a non-canonical
; address, #PF with error code and CR2 (on an IST stack), #PF for a fetch from an XD page,
; SYSCALL/SYSRET between ring 0 and ring 3 with STAR/LSTAR/SFMASK, RETFQ/SYSRET/IRETQ into
; 64-bit and compatibility-mode ring 3, timer interrupts (PIC, PIT) waking HLT, ring-3 faults
; (#GP for HLT, #PF on a supervisor page), CMPXCHG16B, and the CPUID bits of long mode.
; (#SS for a non-canonical stack is left out: QEMU's TCG raises #GP there.)

%include "common.inc"
%include "long.inc"
        ROM_BEGIN

IDT64      equ 0x4000               ; 256 16-byte gates
GATE_INT64 equ 0x8E                 ; present, DPL 0, 64-bit interrupt gate
GATE_INT64_DPL3 equ 0xEE
IST1_TOP   equ 0x60000
RSP0_TOP   equ 0x70000
USER_STACK equ 0x50000
KERNEL_PAGE equ 0x600000            ; the 2 MiB page at 6 MiB becomes supervisor-only

F_COUNT    equ 0x600
F_VEC      equ 0x608
F_ERR      equ 0x610
F_RIP      equ 0x618
F_CS       equ 0x620
F_RSP      equ 0x628
F_SS       equ 0x630
F_HRSP     equ 0x638                ; RSP at the common handler's entry
F_CR2      equ 0x640
F_RESUME   equ 0x648                ; non-zero: return there instead of to the saved RIP
F_RFLAGS   equ 0x650
K_RSP      equ 0x658                ; the kernel's RSP while ring 3 runs
U_CS       equ 0x660
U_SS       equ 0x668
S_RCX      equ 0x670
S_R11      equ 0x678
S_CS       equ 0x680
S_SS       equ 0x688
S_RFLAGS   equ 0x690
U_FAULTS   equ 0x698                ; ring-3 checks passed, counted by the user code
U_ESP      equ 0x6A0
CX16       equ 0x700                ; 16-byte aligned
TICKS      equ 0x710
K_CONT     equ 0x718                ; where `kernel_return` continues
R_RIP      equ 0x720                ; the frame `kernel_return` saw
R_CS       equ 0x728
R_SS       equ 0x730
RETURN_VECTOR equ 0x81              ; DPL 3 gate back to the kernel

IRQ0_VECTOR equ 0x20                ; the master PIC's vectors start here
WANTED_TICKS equ 3

; %1 vector, %2 label, %3 IST, %4 type byte.
%macro GATE 4
        mov rdi, IDT64 + %1 * 16
        mov rax, ROMBASE + %2
        mov bl, %3
        mov cl, %4
        call write_gate64
%endmacro

; Arm the handler: resume at %1 (0: return normally).
%macro ARM 1
        mov qword [F_COUNT], 0
        mov rax, %1
        mov [F_RESUME], rax
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "long mode interrupt tests", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        ; The PIC reaches the CPU through the local APIC's LINT0 in ExtINT mode, as a BIOS sets
        ; it up (QEMU needs it; a machine without a local APIC ignores the writes). Done before
        ; paging, which does not map the APIC.
        mov dword [LAPIC_SVR], 0x1FF
        mov dword [LAPIC_LVT_LINT0], 0x700
        ENTER_LONG long_entry, EFER_SCE | EFER_NXE
        bits 64
long_entry:
        LONG_INIT
        ; IDT: everything to `unexpected`, then the handlers.
        mov edx, 0
.fill:  mov edi, edx
        shl edi, 4
        add edi, IDT64
        mov rax, ROMBASE + unexpected
        xor ebx, ebx
        mov cl, GATE_INT64
        call write_gate64
        inc edx
        cmp edx, 256
        jne .fill
        GATE 3, stub_3, 0, GATE_INT64_DPL3
        GATE 13, stub_13, 0, GATE_INT64
        GATE 14, stub_14, 1, GATE_INT64
        GATE IRQ0_VECTOR, irq0_handler, 0, GATE_INT64
        GATE RETURN_VECTOR, kernel_return, 0, GATE_INT64_DPL3
        lidt [rel idt64_desc]
        ; TSS: RSP0 and IST1.
        mov rdi, TSS64
        mov ecx, 104 / 8
        xor eax, eax
        rep stosq
        mov qword [TSS64 + 4], RSP0_TOP
        mov qword [TSS64 + 0x24], IST1_TOP
        mov ax, SEL64_TSS
        ltr ax
        str ax
        cmp ax, SEL64_TSS
        REPORT64 "ltr 64-bit tss"

        mov eax, 0x80000001
        cpuid
        and edx, (1 << 29) | (1 << 20) | (1 << 11)
        cmp edx, (1 << 29) | (1 << 20) | (1 << 11)
        REPORT64 "cpuid lm nx syscall"

        ; INT3 at CPL 0: a trap, the full 64-bit frame without a stack switch.
        ARM 0
        mov rbx, rsp
        int3
.after_int3:
        cmp qword [F_VEC], 3
        jne .bp_out
        mov rax, ROMBASE + .after_int3
        cmp [F_RIP], rax
        jne .bp_out
        cmp qword [F_CS], SEL64_CODE
        jne .bp_out
        cmp qword [F_SS], SEL64_DATA
        jne .bp_out
        cmp [F_RSP], rbx
        jne .bp_out
        ; Same stack: the frame (6 quadwords with the stub's error code and vector) is below RSP.
        lea rax, [rbx - 7 * 8]
        cmp [F_HRSP], rax
.bp_out:
        REPORT64 "int3 through 64-bit idt, frame"

        ; The frame is 16-byte aligned even when RSP is not.
        ARM 0
        sub rsp, 8
        mov rbx, rsp
        int3
        add rsp, 8
        cmp [F_RSP], rbx
        jne .align_out
        lea rax, [rbx - 8 - 7 * 8]
        cmp [F_HRSP], rax
.align_out:
        REPORT64 "frame aligned to 16 bytes"

        ARM ROMBASE + .gp_done
        mov rax, 0x8000000000000000
.gp_site:
        mov rbx, [rax]
.gp_done:
        cmp qword [F_COUNT], 1
        jne .gp_out
        cmp qword [F_VEC], 13
        jne .gp_out
        cmp qword [F_ERR], 0
        jne .gp_out
        mov rax, ROMBASE + .gp_site
        cmp [F_RIP], rax
.gp_out:
        REPORT64 "#GP non-canonical address"

        ARM ROMBASE + .pf_done
        mov rax, 0x40000010             ; PDPT entry 1 is not present
.pf_site:
        mov [rax], rax
.pf_done:
        cmp qword [F_VEC], 14
        jne .pf_out
        cmp qword [F_ERR], 2            ; write, not present
        jne .pf_out
        cmp qword [F_CR2], 0x40000010
        jne .pf_out
        mov rax, ROMBASE + .pf_site
        cmp [F_RIP], rax
        jne .pf_out
        ; On IST1: the aligned top minus the 6-quadword frame and the stub's vector.
        cmp qword [F_HRSP], IST1_TOP - 7 * 8
.pf_out:
        REPORT64 "#PF error code, cr2, ist stack"

        mov rax, 0x123456789ABCDEF0     ; the fetch of a non-executable page
        mov rbx, KERNEL_PAGE
        mov byte [rbx], 0xC3
        mov rcx, PD_LOW + 3 * 8
        bts qword [rcx], 63             ; XD on the 2 MiB page at 6 MiB
        invlpg [rbx]
        ARM ROMBASE + .nx_done
        call rbx
.nx_done:
        add rsp, 8
        cmp qword [F_ERR], 0x11         ; present, instruction fetch
        jne .nx_out
        cmp [F_RIP], rbx
.nx_out:
        REPORT64 "#PF fetch from xd page"
        btr qword [PD_LOW + 3 * 8], 63
        invlpg [rbx]

        ; CMPXCHG16B: equal, then not equal.
        mov qword [CX16], 1
        mov qword [CX16 + 8], 2
        mov eax, 1
        mov edx, 2
        mov ebx, 3
        mov ecx, 4
        lock cmpxchg16b [CX16]
        jne .cx_out
        cmp qword [CX16], 3
        jne .cx_out
        cmp qword [CX16 + 8], 4
        jne .cx_out
        mov eax, 1
        lock cmpxchg16b [CX16]
        je .cx_bad
        cmp rax, 3
        jne .cx_out
        cmp rdx, 4
        jmp .cx_out
.cx_bad:
        cmp eax, -1                     ; ZF = 0
.cx_out:
        REPORT64 "cmpxchg16b"

        ; The page at 6 MiB becomes supervisor-only for the ring-3 tests.
        and qword [PD_LOW + 3 * 8], ~PTE_US
        invlpg [KERNEL_PAGE]

        ; SYSCALL/SYSRET: user base 0x20 (CS 0x33, SS 0x2B), kernel CS 0x10, SS 0x18.
        mov ecx, MSR_STAR
        xor eax, eax
        mov edx, (0x20 << 16) | SEL64_CODE
        wrmsr
        mov ecx, MSR_LSTAR
        mov rax, ROMBASE + syscall_entry
        mov rdx, rax
        shr rdx, 32
        wrmsr
        mov ecx, MSR_SFMASK
        mov eax, 0x400                  ; DF
        xor edx, edx
        wrmsr
        mov qword [U_FAULTS], 0
        mov [K_RSP], rsp
        mov rcx, ROMBASE + user_code
        mov r11, 0x202                  ; IF stays clear: no interrupts are set up
        and r11, ~0x200
        or r11, 2
        mov rsp, USER_STACK
        o64 sysret

syscall_entry:
        mov [S_RCX], rcx
        mov [S_R11], r11
        mov ax, cs
        mov [S_CS], ax
        mov ax, ss
        mov [S_SS], ax
        pushfq
        pop rax
        mov [S_RFLAGS], rax
        mov rsp, [K_RSP]
        cmp word [U_CS], SEL64_UCODE | 3
        jne .u_out
        cmp word [U_SS], SEL64_UDATA | 3
.u_out:
        REPORT64 "sysret to ring 3"
        cmp qword [U_FAULTS], 3
        REPORT64 "ring 3 events"
        mov rax, ROMBASE + user_syscall_next
        cmp [S_RCX], rax
        jne .s_out
        mov rax, [S_R11]
        and eax, 0x400
        cmp eax, 0x400                  ; DF was set in ring 3
        jne .s_out
        test qword [S_RFLAGS], 0x400    ; SFMASK cleared it
        jne .s_out
        cmp word [S_CS], SEL64_CODE
        jne .s_out
        cmp word [S_SS], SEL64_DATA
.s_out:
        REPORT64 "syscall to ring 0"

        ; RETFQ to 64-bit ring 3, back through a DPL 3 gate.
        mov [K_RSP], rsp
        mov rax, ROMBASE + .after_retf
        mov [K_CONT], rax
        push SEL64_UDATA | 3
        push USER_STACK
        push SEL64_UCODE | 3
        mov rax, ROMBASE + user_retf
        push rax
        retfq
.after_retf:
        cmp qword [R_CS], SEL64_UCODE | 3
        jne .retf_out
        cmp qword [R_SS], SEL64_UDATA | 3
        jne .retf_out
        mov rax, ROMBASE + user_retf_next
        cmp [R_RIP], rax
.retf_out:
        REPORT64 "retfq to ring 3"

        ; SYSRET without REX.W: 32-bit ring 3 (compatibility mode), CS = STAR[63:48] | 3.
        mov [K_RSP], rsp
        mov rax, ROMBASE + .after_sysretd
        mov [K_CONT], rax
        mov ecx, ROMBASE + user32_sysret
        mov r11d, 2
        mov rsp, USER_STACK
        sysret
.after_sysretd:
        cmp qword [R_CS], SEL64_UCODE32 | 3
        jne .sysretd_out
        cmp qword [R_SS], SEL64_UDATA | 3
        jne .sysretd_out
        cmp word [U_CS], SEL64_UCODE32 | 3
.sysretd_out:
        REPORT64 "sysret to compatibility mode, int from it"

        ; IRETQ to compatibility-mode ring 3.
        mov [K_RSP], rsp
        mov rax, ROMBASE + .after_iretq
        mov [K_CONT], rax
        mov word [U_CS], 0
        push SEL64_UDATA | 3
        push USER_STACK - 64
        push 2
        push SEL64_UCODE32 | 3
        mov rax, ROMBASE + user32_sysret
        push rax
        iretq
.after_iretq:
        cmp qword [R_CS], SEL64_UCODE32 | 3
        jne .iretq_out
        cmp word [U_CS], SEL64_UCODE32 | 3
        jne .iretq_out
        cmp dword [U_ESP], USER_STACK - 64
.iretq_out:
        REPORT64 "iretq to compatibility mode"

        ; External interrupts: PIC (IRQ0 at vector 0x20) and PIT at 100 Hz wake `sti; hlt` in
        ; 64-bit mode through the 64-bit IDT.
        mov qword [TICKS], 0
        PIC_INIT IRQ0_VECTOR, 0x28
        PIT_START_100HZ
        sti
.wait:  hlt
        cmp qword [TICKS], WANTED_TICKS
        jb .wait
        cli
        mov al, 0xFF
        out PIC1_DATA, al
        cmp qword [TICKS], WANTED_TICKS
        setae al                    ; a tick may land between the loop's check and CLI
        cmp al, 1
        REPORT64 "timer interrupts in 64-bit mode"
        jmp finish64

; Ring 3, 64-bit code.
user_code:
        mov ax, cs
        mov [U_CS], ax
        mov ax, ss
        mov [U_SS], ax
        ; INT3 from ring 3 (gate DPL 3): onto RSP0, SS/RSP of ring 3 in the frame.
        ARM 0
        mov rbx, rsp
        int3
        cmp qword [F_CS], SEL64_UCODE | 3
        jne .u1
        cmp qword [F_SS], SEL64_UDATA | 3
        jne .u1
        cmp [F_RSP], rbx
        jne .u1
        cmp qword [F_HRSP], RSP0_TOP - 7 * 8
        jne .u1
        inc qword [U_FAULTS]
.u1:
        ; A privileged instruction: #GP(0).
        ARM ROMBASE + .u2
        hlt
.u2:
        cmp qword [F_VEC], 13
        jne .u3
        cmp qword [F_ERR], 0
        jne .u3
        cmp qword [F_CS], SEL64_UCODE | 3
        jne .u3
        inc qword [U_FAULTS]
.u3:
        ; A write to a supervisor-only page: #PF with P, W/R and U/S.
        ARM ROMBASE + .u4
        mov rax, KERNEL_PAGE + 8
        mov [rax], rax
.u4:
        cmp qword [F_ERR], 7
        jne .u5
        cmp qword [F_CR2], KERNEL_PAGE + 8
        jne .u5
        inc qword [U_FAULTS]
.u5:
        std
        syscall
user_syscall_next:
        jmp user_syscall_next

user_retf:
        int RETURN_VECTOR
user_retf_next:
        jmp user_retf_next

        bits 32
user32_sysret:
        ; The RETFQ to ring 3 above nulled DS (it held a ring-0 segment); compatibility mode
        ; checks segments as protected mode does (SDM Vol. 3A 5.4.1), so load a usable one.
        mov dx, SEL64_UDATA | 3
        mov ds, dx
        mov ax, cs
        mov [U_CS], ax
        mov [U_ESP], esp
        int RETURN_VECTOR
.spin:  jmp .spin
        bits 64

; From ring 3 through the DPL 3 gate: record the frame, back to the kernel's stack and K_CONT.
kernel_return:
        mov rax, [rsp]
        mov [R_RIP], rax
        mov rax, [rsp + 8]
        mov [R_CS], rax
        mov rax, [rsp + 32]
        mov [R_SS], rax
        mov rsp, [K_RSP]
        jmp [K_CONT]

; rdi = gate, rax = handler, bl = IST, cl = type byte: a 16-byte gate with CS = SEL64_CODE.
write_gate64:
        mov [rdi], ax
        mov word [rdi + 2], SEL64_CODE
        mov [rdi + 4], bl
        mov [rdi + 5], cl
        shr rax, 16
        mov [rdi + 6], ax
        shr rax, 16
        mov [rdi + 8], eax
        mov dword [rdi + 12], 0
        ret

stub_3:
        push 0
        push 3
        jmp common64
stub_13:
        push 13
        jmp common64
stub_14:
        push 14
        jmp common64

irq0_handler:
        push rax
        inc qword [TICKS]
        mov al, PIC_EOI
        out PIC1_CMD, al
        pop rax
        iretq

; Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
common64:
        mov [F_HRSP], rsp
        push rax
        inc qword [F_COUNT]
        mov rax, [rsp + 8]
        mov [F_VEC], rax
        mov rax, [rsp + 16]
        mov [F_ERR], rax
        mov rax, [rsp + 24]
        mov [F_RIP], rax
        mov rax, [rsp + 32]
        mov [F_CS], rax
        mov rax, [rsp + 40]
        mov [F_RFLAGS], rax
        mov rax, [rsp + 48]
        mov [F_RSP], rax
        mov rax, [rsp + 56]
        mov [F_SS], rax
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
