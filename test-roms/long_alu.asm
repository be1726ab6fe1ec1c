; long_alu.asm - flag exhaustiveness for 64-bit operand sizes (and 32-bit ones in 64-bit mode,
; which zero the upper half), in the manner of alu_flags.asm: every operation runs over all
; pairs of a table of 64-bit operands, each pair with all status flags clear and all set on
; input (so CMOVcc moves once and not once; shifts by a masked count of 0 still write a 32-bit
; register, clearing its upper half); the results and the status flags the SDM defines for the operation (undefined ones
; masked per each instruction's "Flags Affected", SDM Vol. 2) are folded into a 64-bit FNV-1a
; style hash printed as "name hhhhhhhhhhhhhhhh". The expected text comes from QEMU (TCG).
;
; Handler contract: RAX = a, RBX = b, RBP = RFLAGS to start from, RDX = RCX = 0; returns RAX,
; RDX (second result or 0) and RCX = the defined status flags. R8-R15 belong to the driver.

%include "common.inc"
%include "long.inc"
        ROM_BEGIN

ALL       equ EFLAGS_STATUS
NO_AF     equ EFLAGS_STATUS & ~0x10 ; logic ops and shifts: AF undefined
CF_OF     equ 0x801                 ; multiplies
CF_ONLY   equ 0x001                 ; bt family
ZF_ONLY   equ 0x040                 ; bsf/bsr
NONE      equ 0                     ; divides; instructions that touch no flag are hashed whole
FLAGS_SET equ EFLAGS_STATUS | 2
VALUES    equ 16

; The operations: OP name, instruction, defined flags; OPM name, defined flags, three
; instructions; SH name, instruction using CL = b,
; count mask, 2 if AF is undefined for a non-zero count (shifts, not rotates); SP name for a
; handler written out below. (CMPXCHG with a 32-bit register destination is left to the jit
; unit tests: the build hosts' software KVM clears the destination's upper half when the
; comparison fails, where processors and QEMU leave the register alone.)
%macro OP_LIST 0
        OP add64,    {add rax, rbx}, ALL
        OP addimm64, {add rax, -0x789}, ALL
        OP adc64,    {adc rax, rbx}, ALL
        OP sub64,    {sub rax, rbx}, ALL
        OP sbb64,    {sbb rax, rbx}, ALL
        OP cmp64,    {cmp rax, rbx}, ALL
        OP cmpimm64, {cmp rax, 0x7FFFFFFF}, ALL
        OP and64,    {and rax, rbx}, NO_AF
        OP andimm64, {and rax, -16}, NO_AF
        OP or64,     {or rax, rbx}, NO_AF
        OP xor64,    {xor rax, rbx}, NO_AF
        OP test64,   {test rax, rbx}, NO_AF
        OP inc64,    {inc rax}, ALL
        OP dec64,    {dec rax}, ALL
        OP neg64,    {neg rax}, ALL
        OP not64,    {not rax}, ALL
        OP add32,    {add eax, ebx}, ALL
        OP sub32,    {sub eax, ebx}, ALL
        OP neg32,    {neg eax}, ALL
        OP xor32,    {xor eax, ebx}, NO_AF
        OPM addr9,   ALL, {mov r9, rax}, {add r9, rbx}, {mov rax, r9}
        OPM subr15d, ALL, {mov r15, rax}, {sub r15d, ebx}, {mov rax, r15}
        OPM addsil,  ALL, {mov rsi, rax}, {add sil, bl}, {mov rax, rsi}
        OP shl64_1,  {shl rax, 1}, NO_AF
        OP sar64_1,  {sar rax, 1}, NO_AF
        OP shr64_7,  {shr rax, 7}, NO_AF & ~0x800
        OP rcr64_1,  {rcr rax, 1}, ALL
        SH shl64,    {shl rax, cl}, 63, 2
        SH shr64,    {shr rax, cl}, 63, 2
        SH sar64,    {sar rax, cl}, 63, 2
        SH rol64,    {rol rax, cl}, 63, 0
        SH ror64,    {ror rax, cl}, 63, 0
        SH rcl64,    {rcl rax, cl}, 63, 0
        SH rcr64,    {rcr rax, cl}, 63, 0
        SH shld64,   {shld rax, rbx, cl}, 63, 2
        SH shrd64,   {shrd rax, rbx, cl}, 63, 2
        SH shl32,    {shl eax, cl}, 31, 2
        SH sar32,    {sar eax, cl}, 31, 2
        SH rol32,    {rol eax, cl}, 31, 0
        SH shld32,   {shld eax, ebx, cl}, 31, 2
        OP mul64,    {mul rbx}, CF_OF
        OP imul64,   {imul rbx}, CF_OF
        OP imul2_64, {imul rax, rbx}, CF_OF
        OP imul3_64, {imul rax, rbx, -3}, CF_OF
        OP imul32,   {imul eax, ebx}, CF_OF
        OP bt64,     {bt rax, rbx}, CF_ONLY
        OP bts64,    {bts rax, rbx}, CF_ONLY
        OP btr64,    {btr rax, rbx}, CF_ONLY
        OP btc64,    {btc rax, rbx}, CF_ONLY
        OP btsimm64, {bts rax, 45}, CF_ONLY
        OP cqo,      {cqo}, ALL
        OP cdqe,     {cdqe}, ALL
        OP movsxd,   {movsxd rax, ebx}, ALL
        OP bswap64,  {bswap rax}, ALL
        OP lea64,    {lea rax, [rax + rbx * 8 - 0x12345678]}, ALL
        OP lea32,    {lea eax, [rax + rbx * 2 + 5]}, ALL
        OP movzx64,  {movzx rax, bx}, ALL
        OP cmovb64,  {cmovb rax, rbx}, ALL
        OP cmovb32,  {cmovb eax, ebx}, ALL
        OPM xchg64,  ALL, {xchg rax, rbx}, {mov rdx, rbx}, {nop}
        OPM adcmem64,  ALL, {mov [SCRATCH], rax}, {adc qword [SCRATCH], rbx}, {mov rax, [SCRATCH]}
        OPM negmem32,  ALL, {mov [SCRATCH], rax}, {neg dword [SCRATCH]}, {mov rax, [SCRATCH]}
        OPM imulmem64, CF_OF, {mov [SCRATCH], rbx}, {imul rax, [SCRATCH], 77}, {nop}
        OPM cmovmem32, ALL, {mov [SCRATCH], rbx}, {cmovb eax, [SCRATCH]}, {nop}
        OPM movsxdmem, ALL, {mov [SCRATCH], rbx}, {movsxd rax, dword [SCRATCH]}, {nop}
        OPM movabs64,  ALL, {mov [SCRATCH], rbx}, {db 0x48, 0xA1, 0, 0, 1, 0, 0, 0, 0, 0}, {nop}
        OPM bswap32,   ALL, {bswap eax}, {nop}, {nop}
        OPM xchg32,    ALL, {xchg eax, ebx}, {mov rdx, rbx}, {nop}
        OPM xadd32,    ALL, {xadd eax, ebx}, {mov rdx, rbx}, {nop}
        OPM setlsil,   ALL, {mov rsi, rax}, {setl sil}, {mov rax, rsi}
        OPM scasq,     ALL, {mov rdi, SCRATCH}, {mov [rdi], rbx}, {scasq}
        OPM a32stosd,  ALL, {mov rdi, 0x100000000 + SCRATCH}, {a32 stosd}, {mov rdx, rdi}
        OPM a32lodsd,  ALL, {mov rsi, 0xFFFFFFFF00000000 + SCRATCH}, {a32 lodsd}, {mov rdx, rsi}
        OPM pushfs,    ALL, {push fs}, {pop rdx}, {nop}
        OPM pushimm,   ALL, {push -0x80}, {pop rdx}, {nop}
        OPM pushfq,    ALL, {pushfq}, {pop rdx}, {nop}
        OPM enter64,   ALL, {enter 24, 0}, {mov rdx, rsp}, {leave}
        OPM leariprel, ALL, {lea rax, [rel values]}, {nop}, {nop}
        SP bsf64
        SP bsr64
        SP div64
        SP idiv64
        SP xadd64
        SP cmpxchg64
        OPM cmpxchg32m, ALL, {mov [SCRATCH], rbx}, {cmpxchg [SCRATCH], ebx}, {mov rdx, [SCRATCH]}
%endmacro

start:
        REAL_MODE_INIT
        PRINT16 "long mode alu checksums", 10
        ENTER_PM32 pm_entry
        bits 32
pm_entry:
        PM32_INIT
        ENTER_LONG long_entry, 0
        bits 64
long_entry:
        LONG_INIT
        lea r12, [rel op_table]
.op:
        mov r13, [r12]
        test r13, r13
        jz .end
        mov r8, 0xCBF29CE484222325
        xor r14d, r14d
.i:     xor r15d, r15d
.j:     mov rbp, 2
        call .one
        mov rbp, FLAGS_SET
        call .one
        inc r15
        cmp r15, VALUES
        jb .j
        inc r14
        cmp r14, VALUES
        jb .i
        mov rsi, [r12 + 8]
        call puts64
        mov al, ' '
        out DEBUGCON_PORT, al
        mov rax, r8
        call puthex64
        mov al, 10
        out DEBUGCON_PORT, al
        add r12, 16
        jmp .op
.end:
        jmp finish64

; One handler run and the fold of RAX, RDX, RCX into R8.
.one:
        lea r10, [rel values]
        mov rax, [r10 + r14 * 8]
        mov rbx, [r10 + r15 * 8]
        push r15
        xor edx, edx
        xor ecx, ecx
        call r13
        pop r15
        mov r11, 0x100000001B3
        xor r8, rax
        imul r8, r11
        xor r8, rdx
        imul r8, r11
        xor r8, rcx
        imul r8, r11
        ret

; ---- handlers ----------------------------------------------------------------------------------
%macro OP 3
h_%1:
        push rbp
        popfq
        %2
        pushfq
        pop rcx
        and rcx, %3
        ret
%endmacro
; A masked count of 0 leaves every flag as it was (all defined); OF is defined only for a
; count of 1; AF is undefined for a non-zero count of a shift.
%macro SH 4
h_%1:
        mov rcx, rbx
        push rbp
        popfq
        %2
        pushfq
        pop rcx
        mov rdx, rbx
        and edx, %3
        jz %%done
%if (%4) & 2
        and ecx, ~0x10
%endif
        cmp edx, 1
        je %%done
        and ecx, ~0x800
%%done:
        and ecx, ALL
        xor edx, edx
        ret
%endmacro
%macro OPM 5
h_%1:
        push rbp
        popfq
        %3
        %4
        %5
        pushfq
        pop rcx
        and rcx, %2
        ret
%endmacro
%macro SP 1
%endmacro
        OP_LIST

; BSF/BSR: only ZF defined; the destination is undefined for a zero source.
h_bsf64:
        push rbp
        popfq
        bsf rax, rbx
        pushfq
        pop rcx
        and ecx, ZF_ONLY
        jmp bitscan_tail
h_bsr64:
        push rbp
        popfq
        bsr rax, rbx
        pushfq
        pop rcx
        and ecx, ZF_ONLY
bitscan_tail:
        test rbx, rbx
        jnz .ret
        xor eax, eax
.ret:   ret

; DIV/IDIV: every flag undefined; divisors that would raise #DE are skipped.
h_div64:
        test rbx, rbx
        jz .skip
        xor edx, edx
        div rbx
        xor ecx, ecx
        ret
.skip:  xor eax, eax
        ret
h_idiv64:
        test rbx, rbx
        jz .skip
        cmp rbx, -1
        je .skip
        cqo
        idiv rbx
        xor ecx, ecx
        ret
.skip:  xor eax, eax
        xor edx, edx
        ret

h_xadd64:
        push rbp
        popfq
        xadd rax, rbx
        pushfq
        pop rcx
        and ecx, ALL
        mov rdx, rbx
        ret

; CMPXCHG RDX, RBX with RDX = b: equal (RDX keeps b) when a == b, else RAX = b.
h_cmpxchg64:
        mov rdx, rbx
        push rbp
        popfq
        cmpxchg rdx, rbx
        pushfq
        pop rcx
        and ecx, ALL
        ret

; ---- tables -----------------------------------------------------------------------------------
        align 8
values:
        dq 0, 1, 2, 63, 64, 0x7F, 0x80, 0xFF
        dq 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000
        dq 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0x0123456789ABCDEF

%unmacro OP 3
%unmacro OPM 5
%unmacro SH 4
%unmacro SP 1
%macro OP 3
        dq ROMBASE + h_%1, ROMBASE + n_%1
%endmacro
%macro OPM 5
        dq ROMBASE + h_%1, ROMBASE + n_%1
%endmacro
%macro SH 4
        dq ROMBASE + h_%1, ROMBASE + n_%1
%endmacro
%macro SP 1
        dq ROMBASE + h_%1, ROMBASE + n_%1
%endmacro
op_table:
        OP_LIST
        dq 0, 0

%unmacro OP 3
%unmacro OPM 5
%unmacro SH 4
%unmacro SP 1
%macro OP 3
n_%1:   db %str(%1), 0
%endmacro
%macro OPM 5
n_%1:   db %str(%1), 0
%endmacro
%macro SH 4
n_%1:   db %str(%1), 0
%endmacro
%macro SP 1
n_%1:   db %str(%1), 0
%endmacro
        OP_LIST
        bits 16

        COMMON_CODE
        LONG_CODE
        ROM_END
