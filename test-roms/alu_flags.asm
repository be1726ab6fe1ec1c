; alu_flags.asm - flag exhaustiveness for the integer ALU, in real mode and in 32-bit
; protected mode.
;
; Every operation runs over a table of operand pairs, each pair twice (with all status flags
; clear and all set on input). The result registers and the status flags the SDM defines for
; that operation (undefined flags are masked out, per the instruction's "Flags Affected"
; section in SDM Vol. 2) are folded into a 32-bit hash that is printed per operation as
; "name hhhhhhhh". The expected hashes come from running this image under QEMU (TCG); any
; emulator that follows the SDM prints the same lines.
;
; Handler contract: EAX = a, EBX = b, EBP = EFLAGS to start from; returns EAX, EDX (second
; result or 0) and ECX = the defined status flags after the operation.
;
; The same handlers are assembled twice and run twice: as 16-bit code in real mode (where the
; 32-bit operations carry 66/67 prefixes and the 16-bit ones none) and as 32-bit code in
; protected mode. The operations mean the same in both modes, so both halves print the same
; hashes.

%include "common.inc"
        ROM_BEGIN

HASH      equ 0x600
OPP       equ 0x604                 ; current operation record
AI        equ 0x608
BI        equ 0x60C
FI        equ 0x610
GOLDEN    equ 0x9E3779B9            ; hash step constant (2^32 / golden ratio)

ALL       equ EFLAGS_STATUS
NO_AF     equ EFLAGS_STATUS & ~0x10 ; logic ops: AF undefined
CF_OF     equ 0x801                 ; multiplies: only CF and OF defined
CF_ONLY   equ 0x001                 ; bt family: only CF defined
ZF_ONLY   equ 0x040                 ; bsf/bsr: only ZF defined
NONE      equ 0                     ; divides: every flag undefined

start:
        REAL_MODE_INIT
        PRINT16 "alu flag checksums", 10
        PRINT16 "real mode", 10
        jmp rm_driver

; ---- handler generators ----------------------------------------------------------------------
; Plain operation %2 (may mention eax/ebx and their narrower names), flags masked by %3.
%macro OPH 3
%[HP]h_%1:
        push ebp
        popfd
        %2
        pushfd
        pop ecx
        and ecx, %3
        ret
%endmacro

; Shift or rotate %2 by CL = b; %3 = operand width; %4 = rule bits:
;   1: CF undefined when the masked count >= width (SHL/SHR, SDM Vol. 2B "SAL/SAR/SHL/SHR")
;   2: AF undefined for a non-zero count (shifts; rotates leave AF alone)
; For every shift and rotate a masked count of 0 leaves all flags unchanged and OF is defined
; only for a masked count of 1.
%macro SHIFTH 4
%[HP]h_%1:
        mov ecx, ebx
        push ebp
        popfd
        %2
        pushfd
        pop ecx
        mov edx, ebx
        and edx, 31
        jz %%done
%if (%4) & 2
        and ecx, ~0x10
%endif
        cmp edx, 1
        je %%of_defined
        and ecx, ~0x800
%%of_defined:
%if (%4) & 1
        cmp edx, %3
        jb %%done
        and ecx, ~0x1
%endif
%%done:
        and ecx, ALL
        xor edx, edx
        ret
%endmacro

; a = input flags: every condition code, in encoding order (SDM Vol. 2 Table B-10), as one
; bit of EDX (setcc, jcc) or a chain of conditional moves (cmovcc).
%macro CC_ALL 1
        %1 o
        %1 no
        %1 b
        %1 ae
        %1 e
        %1 ne
        %1 be
        %1 a
        %1 s
        %1 ns
        %1 p
        %1 np
        %1 l
        %1 ge
        %1 le
        %1 g
%endmacro
%macro SETCC_BIT 1
        set%1 cl
        movzx ecx, cl
        lea edx, [edx * 2 + ecx]
%endmacro
%macro CMOV_STEP 1
        lea eax, [eax + 0x11]       ; new candidate, flags untouched
        cmov%1 ebx, eax
%endmacro
; Conditional jumps over an increment: bit = 1 where the jump is not taken.
%macro JCC_SHORT_BIT 1
        lea edx, [edx + edx]
        j%1 short %%skip
        lea edx, [edx + 1]
%%skip:
%endmacro
%macro JCC_NEAR_BIT 1
        lea edx, [edx + edx]
        j%1 near %%skip
        lea edx, [edx + 1]
%%skip:
%endmacro

; Every handler; labels get the prefix HP so the set can be assembled once per mode.
%macro ALU_HANDLERS 0
        OPH add8,   {add al, bl}, ALL
        OPH add16,  {add ax, bx}, ALL
        OPH add32,  {add eax, ebx}, ALL
        OPH addimm, {add eax, 0x7FFFFFFF}, ALL
        OPH adc8,   {adc al, bl}, ALL
        OPH adc16,  {adc ax, bx}, ALL
        OPH adc32,  {adc eax, ebx}, ALL
        OPH sub8,   {sub al, bl}, ALL
        OPH sub16,  {sub ax, bx}, ALL
        OPH sub32,  {sub eax, ebx}, ALL
        OPH sbb8,   {sbb al, bl}, ALL
        OPH sbb16,  {sbb ax, bx}, ALL
        OPH sbb32,  {sbb eax, ebx}, ALL
        OPH cmp8,   {cmp al, bl}, ALL
        OPH cmp16,  {cmp ax, bx}, ALL
        OPH cmp32,  {cmp eax, ebx}, ALL
        OPH and8,   {and al, bl}, NO_AF
        OPH and32,  {and eax, ebx}, NO_AF
        OPH or8,    {or al, bl}, NO_AF
        OPH or32,   {or eax, ebx}, NO_AF
        OPH xor16,  {xor ax, bx}, NO_AF
        OPH xor32,  {xor eax, ebx}, NO_AF
        OPH test32, {test eax, ebx}, NO_AF
        OPH test8,  {test al, bl}, NO_AF
        OPH inc8,   {inc al}, ALL
        OPH inc16,  {inc ax}, ALL
        OPH inc32,  {inc eax}, ALL
        OPH dec8,   {dec al}, ALL
        OPH dec16,  {dec ax}, ALL
        OPH dec32,  {dec eax}, ALL
        OPH neg8,   {neg al}, ALL
        OPH neg16,  {neg ax}, ALL
        OPH neg32,  {neg eax}, ALL
        OPH not32,  {not eax}, ALL

        SHIFTH shl8,   {shl al, cl}, 8, 3
        SHIFTH shl16,  {shl ax, cl}, 16, 3
        SHIFTH shl32,  {shl eax, cl}, 32, 3
        SHIFTH shr8,   {shr al, cl}, 8, 3
        SHIFTH shr16,  {shr ax, cl}, 16, 3
        SHIFTH shr32,  {shr eax, cl}, 32, 3
        SHIFTH sar8,   {sar al, cl}, 8, 2
        SHIFTH sar16,  {sar ax, cl}, 16, 2
        SHIFTH sar32,  {sar eax, cl}, 32, 2
        SHIFTH rol8,   {rol al, cl}, 8, 0
        SHIFTH rol16,  {rol ax, cl}, 16, 0
        SHIFTH rol32,  {rol eax, cl}, 32, 0
        SHIFTH ror8,   {ror al, cl}, 8, 0
        SHIFTH ror16,  {ror ax, cl}, 16, 0
        SHIFTH ror32,  {ror eax, cl}, 32, 0
        SHIFTH rcl8,   {rcl al, cl}, 8, 0
        SHIFTH rcl16,  {rcl ax, cl}, 16, 0
        SHIFTH rcl32,  {rcl eax, cl}, 32, 0
        SHIFTH rcr8,   {rcr al, cl}, 8, 0
        SHIFTH rcr16,  {rcr ax, cl}, 16, 0
        SHIFTH rcr32,  {rcr eax, cl}, 32, 0
        SHIFTH shld32, {shld eax, ebx, cl}, 32, 2
        SHIFTH shrd32, {shrd eax, ebx, cl}, 32, 2
        OPH shl32_1, {shl eax, 1}, NO_AF ; AF undefined for shifts
        OPH sar32_1, {sar eax, 1}, NO_AF ; AF undefined for shifts
        OPH rcr32_1, {rcr eax, 1}, ALL
        OPH shr32_7, {shr eax, 7}, NO_AF & ~0x800

        OPH mul8,    {mul bl}, CF_OF
        OPH mul16,   {mul bx}, CF_OF
        OPH mul32,   {mul ebx}, CF_OF
        OPH imul8,   {imul bl}, CF_OF
        OPH imul16,  {imul bx}, CF_OF
        OPH imul32,  {imul ebx}, CF_OF
        OPH imul32_2, {imul eax, ebx}, CF_OF
        OPH imul32_3, {imul eax, ebx, -1000}, CF_OF
        OPH imul16_2, {imul ax, bx}, CF_OF

%[HP]h_div8:                             ; AX / BL, skipped where it would raise #DE
        movzx eax, ax
        test bl, bl
        jz .skip
        cmp ah, bl
        jae .skip
        div bl
.skip:  xor ecx, ecx
        ret
%[HP]h_div16:                            ; (small DX):AX / BX
        test bx, bx
        jz .skip
        mov dx, ax
        shr dx, 12
        cmp dx, bx
        jb .go
        xor dx, dx
.go:    div bx
.skip:  xor ecx, ecx
        ret
%[HP]h_div32:                            ; (small EDX):EAX / EBX
        test ebx, ebx
        jz .skip
        mov edx, eax
        and edx, 0xFF
        cmp edx, ebx
        jb .go
        xor edx, edx
.go:    div ebx
.skip:  xor ecx, ecx
        ret
%[HP]h_idiv32:                           ; sign-extended EAX / EBX
        test ebx, ebx
        jz .skip
        cmp ebx, -1
        jne .go
        cmp eax, 0x80000000
        je .skip
.go:    cdq
        idiv ebx
.skip:  xor ecx, ecx
        ret
%[HP]h_idiv16:                           ; sign-extended AX / BX
        test bx, bx
        jz .skip
        cmp bx, -1
        jne .go
        cmp ax, 0x8000
        je .skip
.go:    cwd
        idiv bx
.skip:  xor ecx, ecx
        ret

%[HP]h_bsf32:                            ; destination undefined for a zero source: skipped
        test ebx, ebx
        jz .skip
        push ebp
        popfd
        bsf eax, ebx
        pushfd
        pop ecx
        and ecx, ZF_ONLY
        ret
.skip:  xor ecx, ecx
        ret
%[HP]h_bsr32:
        test ebx, ebx
        jz .skip
        push ebp
        popfd
        bsr eax, ebx
        pushfd
        pop ecx
        and ecx, ZF_ONLY
        ret
.skip:  xor ecx, ecx
        ret

        OPH bt32,    {bt eax, ebx}, CF_ONLY
        OPH bts32,   {bts eax, ebx}, CF_ONLY
        OPH btr32,   {btr eax, ebx}, CF_ONLY
        OPH btc32,   {btc eax, ebx}, CF_ONLY
        OPH bt16i,   {bt ax, 13}, CF_ONLY
        OPH bswap32, {bswap eax}, ALL
        OPH movsx8,  {movsx eax, bl}, ALL
        OPH movzx16, {movzx eax, bx}, ALL
        OPH movsx16, {movsx ax, bl}, ALL
        OPH xchg8,   {xchg al, bh}, ALL
        OPH lea32,   {lea eax, [eax + ebx * 4 + 0x1234]}, ALL

%[HP]h_xadd32:
        push ebp
        popfd
        xadd eax, ebx
        pushfd
        pop ecx
        and ecx, ALL
        mov edx, ebx
        ret

%[HP]h_xadd8:
        push ebp
        popfd
        xadd al, bl
        pushfd
        pop ecx
        and ecx, ALL
        mov edx, ebx
        ret

%[HP]h_cmpxchg32:                        ; dest EBX, comparand EAX, source 0x5A5A5A5A
        mov ecx, 0x5A5A5A5A
        push ebp
        popfd
        cmpxchg ebx, ecx
        pushfd
        pop ecx
        and ecx, ALL
        mov edx, ebx
        ret



%[HP]h_jcc:
        and eax, ALL
        or eax, 2
        push eax
        popfd
        xor edx, edx
        CC_ALL JCC_SHORT_BIT
        xor ecx, ecx
        xor eax, eax
        ret

%[HP]h_jcc_near:
        and eax, ALL
        or eax, 2
        push eax
        popfd
        xor edx, edx
        CC_ALL JCC_NEAR_BIT
        xor ecx, ecx
        xor eax, eax
        ret

%[HP]h_setcc:
        and eax, ALL
        or eax, 2
        push eax
        popfd
        xor edx, edx
        CC_ALL SETCC_BIT
        xor ecx, ecx
        xor eax, eax
        ret

%[HP]h_cmovcc:
        and eax, ALL
        or eax, 2
        push eax
        popfd
        xor eax, eax
        xor ebx, ebx
        CC_ALL CMOV_STEP
        mov eax, ebx
        xor ecx, ecx
        ret
%endmacro

; One record per operation: handler, a table, a count, b table, b count, name (12 bytes).
; 32-bit records hold linear addresses (dwords), 16-bit records offsets in ROMSEG (words).
%macro OP 3
%if __?BITS?__ == 32
        dd ROMBASE + %[HP]h_%1, ROMBASE + %2, (%2_end - %2) / 4, ROMBASE + %3, (%3_end - %3) / 4
%else
        dw %[HP]h_%1, %2, (%2_end - %2) / 4, %3, (%3_end - %3) / 4
%endif
%defstr %%name %1
%strlen %%len %%name
        db %%name
        times 12 - %%len db 0
%endmacro

%macro ALU_OPS 0
        OP add8, vals, vals
        OP add16, vals, vals
        OP add32, vals, vals
        OP addimm, vals, one
        OP adc8, vals, vals
        OP adc16, vals, vals
        OP adc32, vals, vals
        OP sub8, vals, vals
        OP sub16, vals, vals
        OP sub32, vals, vals
        OP sbb8, vals, vals
        OP sbb16, vals, vals
        OP sbb32, vals, vals
        OP cmp8, vals, vals
        OP cmp16, vals, vals
        OP cmp32, vals, vals
        OP and8, vals, vals
        OP and32, vals, vals
        OP or8, vals, vals
        OP or32, vals, vals
        OP xor16, vals, vals
        OP xor32, vals, vals
        OP test32, vals, vals
        OP test8, vals, vals
        OP inc8, vals, one
        OP inc16, vals, one
        OP inc32, vals, one
        OP dec8, vals, one
        OP dec16, vals, one
        OP dec32, vals, one
        OP neg8, vals, one
        OP neg16, vals, one
        OP neg32, vals, one
        OP not32, vals, one
        OP shl8, vals, counts
        OP shl16, vals, counts
        OP shl32, vals, counts
        OP shr8, vals, counts
        OP shr16, vals, counts
        OP shr32, vals, counts
        OP sar8, vals, counts
        OP sar16, vals, counts
        OP sar32, vals, counts
        OP rol8, vals, counts
        OP rol16, vals, counts
        OP rol32, vals, counts
        OP ror8, vals, counts
        OP ror16, vals, counts
        OP ror32, vals, counts
        OP rcl8, vals, counts
        OP rcl16, vals, counts
        OP rcl32, vals, counts
        OP rcr8, vals, counts
        OP rcr16, vals, counts
        OP rcr32, vals, counts
        OP shld32, vals, vals
        OP shrd32, vals, vals
        OP shl32_1, vals, one
        OP sar32_1, vals, one
        OP rcr32_1, vals, one
        OP shr32_7, vals, one
        OP mul8, vals, vals
        OP mul16, vals, vals
        OP mul32, vals, vals
        OP imul8, vals, vals
        OP imul16, vals, vals
        OP imul32, vals, vals
        OP imul32_2, vals, vals
        OP imul32_3, vals, one
        OP imul16_2, vals, vals
        OP div8, vals, vals
        OP div16, vals, vals
        OP div32, vals, vals
        OP idiv32, vals, vals
        OP idiv16, vals, vals
        OP bsf32, vals, vals
        OP bsr32, vals, vals
        OP bt32, vals, counts
        OP bts32, vals, counts
        OP btr32, vals, counts
        OP btc32, vals, counts
        OP bt16i, vals, one
        OP xadd32, vals, vals
        OP xadd8, vals, vals
        OP cmpxchg32, vals, vals
        OP bswap32, vals, one
        OP movsx8, vals, vals
        OP movzx16, vals, vals
        OP movsx16, vals, vals
        OP xchg8, vals, vals
        OP lea32, vals, vals
        OP setcc, flagsets, one
        OP cmovcc, flagsets, one
        OP jcc, flagsets, one
        OP jcc_near, flagsets, one
%endmacro

; ---- real mode: 16-bit driver and handlers ------------------------------------------------------
RM_RECORD equ 22                    ; 5 words + 12-byte name
rm_driver:
        mov word [OPP], rm_ops
.next_op:
        movzx esi, word [OPP]
        cmp si, rm_ops_end
        jae .all_done
        mov dword [HASH], 0x811C9DC5
        mov dword [AI], 0
.a_loop:
        mov dword [BI], 0
.b_loop:
        mov dword [FI], 0
.f_loop:
        movzx esi, word [OPP]
        movzx eax, word [cs:esi + 2]
        mov ecx, [AI]
        mov eax, [cs:eax + ecx * 4]
        movzx ebx, word [cs:esi + 6]
        mov ecx, [BI]
        mov ebx, [cs:ebx + ecx * 4]
        mov ecx, [FI]
        mov ebp, [cs:flag_inputs + ecx * 4]
        xor edx, edx
        call [cs:si]
        mov edi, [HASH]
        rol edi, 5
        xor edi, eax
        add edi, GOLDEN
        rol edi, 5
        xor edi, edx
        add edi, GOLDEN
        rol edi, 5
        xor edi, ecx
        add edi, GOLDEN
        mov [HASH], edi
        inc dword [FI]
        cmp dword [FI], 2
        jb .f_loop
        movzx esi, word [OPP]
        inc dword [BI]
        movzx eax, word [cs:esi + 8]
        cmp [BI], eax
        jb .b_loop
        inc dword [AI]
        movzx eax, word [cs:esi + 4]
        cmp [AI], eax
        jb .a_loop
        add si, 10
        call puts16
        mov al, ' '
        out DEBUGCON_PORT, al
        mov eax, [HASH]
        call puthex32_16
        mov al, 10
        out DEBUGCON_PORT, al
        add word [OPP], RM_RECORD
        jmp .next_op
.all_done:
        PRINT16 "protected mode", 10
        ENTER_PM32 pm_entry

%define HP r_
        ALU_HANDLERS
rm_ops:
        ALU_OPS
rm_ops_end:

; ---- protected mode: 32-bit driver and handlers -------------------------------------------------
        bits 32
pm_entry:
        PM32_INIT
        mov dword [OPP], ROMBASE + pm_ops
.next_op:
        mov esi, [OPP]
        cmp esi, ROMBASE + pm_ops_end
        jae .all_done
        mov dword [HASH], 0x811C9DC5
        mov dword [AI], 0
.a_loop:
        mov dword [BI], 0
.b_loop:
        mov dword [FI], 0
.f_loop:
        mov esi, [OPP]
        mov eax, [esi + 4]
        mov ecx, [AI]
        mov eax, [eax + ecx * 4]
        mov ebx, [esi + 12]
        mov ecx, [BI]
        mov ebx, [ebx + ecx * 4]
        mov ecx, [FI]
        mov ebp, [ROMBASE + flag_inputs + ecx * 4]
        xor edx, edx
        call [esi]
        mov edi, [HASH]
        rol edi, 5
        xor edi, eax
        add edi, GOLDEN
        rol edi, 5
        xor edi, edx
        add edi, GOLDEN
        rol edi, 5
        xor edi, ecx
        add edi, GOLDEN
        mov [HASH], edi
        inc dword [FI]
        cmp dword [FI], 2
        jb .f_loop
        mov esi, [OPP]
        inc dword [BI]
        mov eax, [BI]
        cmp eax, [esi + 16]
        jb .b_loop
        inc dword [AI]
        mov eax, [AI]
        cmp eax, [esi + 8]
        jb .a_loop
        lea esi, [esi + 20]
        call puts32
        mov al, ' '
        out DEBUGCON_PORT, al
        mov eax, [HASH]
        call puthex32_32
        mov al, 10
        out DEBUGCON_PORT, al
        add dword [OPP], 32
        jmp .next_op
.all_done:
        jmp finish32                ; no failures were counted: prints PASS

%define HP p_
        ALU_HANDLERS
        align 4
pm_ops:
        ALU_OPS
pm_ops_end:

; ---- tables ---------------------------------------------------------------------------------
flag_inputs:
        dd 0x002, ALL | 0x002

vals:   dd 0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF
        dd 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF, 0x12345678, 0xFEDCBA98
vals_end:
counts: dd 0, 1, 2, 3, 5, 7, 9, 15, 17, 31, 32, 33
counts_end:
one:    dd 0
one_end:
flagsets:                           ; every combination of OF SF ZF PF CF
%assign i 0
%rep 32
        dd ((i & 1) ? 0x001 : 0) | ((i & 2) ? 0x004 : 0) | ((i & 4) ? 0x040 : 0) | ((i & 8) ? 0x080 : 0) | ((i & 16) ? 0x800 : 0)
%assign i i + 1
%endrep
flagsets_end:

        bits 16

        COMMON_CODE
        ROM_END
