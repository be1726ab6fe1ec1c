; x87.asm - the x87 FPU in 32-bit protected mode: the FPU detection sequence Linux uses, the
; constants under every rounding mode, loads from every memory format, the six arithmetic
; operations (P forms), FSCALE, FPREM and FPREM1 over a table of operand pairs under rounding
; control x precision control (exceptions masked), memory-operand forms, unary operations,
; comparisons with condition codes and EFLAGS, register moves and FCMOVcc, transcendentals,
; stores to every memory format, FXAM, FSTENV/FSAVE/FRSTOR, the MMX instructions and their
; x87 state transitions, and #NM (CR0.TS) and a deferred #MF (CR0.NE) through the IDT.
; Every result is printed in hex; the expected text is recorded under QEMU (TCG, whose x87
; arithmetic is exact 80-bit softfloat). Transcendentals are printed rounded to double
; precision only, on arguments inside their documented domains (QEMU's FSIN/FCOS/FPTAN are
; binary64 computations, and the last bits differ between implementations). Printed FSW
; values keep the exception flags, SF, ES and C0-C3 and drop TOP and B.

%include "common.inc"
        ROM_BEGIN

IDT        equ 0x2000
BUF        equ 0x3000               ; FNSAVE image / store buffer
CR0_MP     equ 1 << 1
CR0_EM     equ 1 << 2
CR0_TS     equ 1 << 3
CR0_NE     equ 1 << 5
GATE_INT32 equ 0x8E00
NM_COUNT   equ 0x2800
MF_COUNT   equ 0x2804
SHOW_MASK  equ 0x2808               ; word: the FSW bits printed
; QEMU (7.2) neither reports denormal operands (DE) nor sets C1 when a result was rounded up,
; both of which Intel processors do (SDM Vol. 1 8.1.3.3, 8.5.2): printed status words leave
; out DE, and C1 except where it reports a stack overflow or underflow.
FSW_SHOWN  equ 0x45fd               ; C3, C2, C0, ES, SF, PE, UE, OE, ZE, IE
FSW_SHOWN_C1 equ 0x47fd             ; the same and C1

start:
        REAL_MODE_INIT
        PRINT16 "x87 tests", 10
        ENTER_PM32 pm_entry

        bits 32
pm_entry:
        PM32_INIT
        mov eax, cr0
        and eax, ~(CR0_EM | CR0_TS)
        or eax, CR0_NE | CR0_MP
        mov cr0, eax
        mov word [SHOW_MASK], FSW_SHOWN

; --- Linux's FPU detection: fninit; fnstsw; fnstcw over 0xFFFF.
        mov dword [BUF], 0xffffffff
        fninit
        fnstsw [BUF]
        fnstcw [BUF + 2]
        PRINT32 "detect fsw "
        mov ax, [BUF]
        call puthex16
        PRINT32 " fcw "
        mov ax, [BUF + 2]
        call puthex16
        call newline

; --- Constants under each rounding control.
        PRINT32 "constants", 10
        mov ebp, ROMBASE + rc_modes
.const_mode:
        fninit
        fldcw [ebp]
        fld1
        fldl2t
        fldl2e
        fldpi
        fldlg2
        fldln2
        fldz
        call dump_stack7
        add ebp, 2
        cmp ebp, ROMBASE + rc_modes_end
        jb .const_mode

; --- Loads: m32 and m64 (with SNaN, denormal), m16/m32/m64 integers, BCD.
        PRINT32 "loads", 10
        mov esi, ROMBASE + load_m32
.ld32:  fninit
        fld dword [esi]
        call dump_st0
        add esi, 4
        cmp esi, ROMBASE + load_m32_end
        jb .ld32
        mov esi, ROMBASE + load_m64
.ld64:  fninit
        fld qword [esi]
        call dump_st0
        add esi, 8
        cmp esi, ROMBASE + load_m64_end
        jb .ld64
        fninit
        fild word [ROMBASE + int_values]
        call dump_st0
        fninit
        fild dword [ROMBASE + int_values + 2]
        call dump_st0
        fninit
        fild qword [ROMBASE + int_values + 6]
        call dump_st0
        fninit
        fbld [ROMBASE + bcd_value]
        call dump_st0

; --- Binary arithmetic: a op b for every pair and every control word.
%macro BINARY 3
        PRINT32 %1, 10
        mov ebx, ROMBASE + pairs
%%pair: mov ebp, ROMBASE + %3
%%mode: fninit
        fldcw [ebp]
        fld tword [ebx]
        fld tword [ebx + 10]
        %2
        call dump_st0
        add ebp, 2
        cmp ebp, ROMBASE + %3_end
        jb %%mode
        add ebx, 20
        cmp ebx, ROMBASE + pairs_end
        jb %%pair
%endmacro
        BINARY "fadd", faddp st1, modes
        BINARY "fsub", fsubp st1, modes
        BINARY "fsubr", fsubrp st1, modes
        BINARY "fmul", fmulp st1, modes
        BINARY "fdiv", fdivp st1, modes
        BINARY "fdivr", fdivrp st1, modes
        BINARY "fscale", fscale, modes
; FPREM/FPREM1 are exact and PC does not apply to them (SDM Vol. 1 8.1.5.2), but QEMU rounds
; their result to PC: only the rounding controls at 64 bits. QEMU reports FPREM1's quotient
; bits wrongly (C3 = Q1 stays 0), so FPREM1's condition codes are not printed.
        BINARY "fprem", fprem, rc_modes
        mov word [SHOW_MASK], FSW_SHOWN & ~0x4500
        BINARY "fprem1", fprem1, rc_modes
        mov word [SHOW_MASK], FSW_SHOWN

; --- Memory-operand forms: ST0 op m32/m64/m16int/m32int.
        PRINT32 "memory operands", 10
        mov ebx, ROMBASE + pairs
.mem_pair:
        fninit
        fld tword [ebx]
        fadd dword [ROMBASE + m32_three]
        fmul qword [ROMBASE + m64_tenth]
        fisub word [ROMBASE + int_values]
        fidivr dword [ROMBASE + int_values + 2]
        call dump_st0
        add ebx, 20
        cmp ebx, ROMBASE + pairs_end
        jb .mem_pair

; --- Unary operations on every table value under every control word.
%macro UNARY 3
        PRINT32 %1, 10
        mov ebx, ROMBASE + pairs
%%val:  mov ebp, ROMBASE + %3
%%mode: fninit
        fldcw [ebp]
        fld tword [ebx]
        %2
        call dump_st0
        add ebp, 2
        cmp ebp, ROMBASE + %3_end
        jb %%mode
        add ebx, 10
        cmp ebx, ROMBASE + pairs_end
        jb %%val
%endmacro
; C0, C2 and C3 are undefined after arithmetic (QEMU sets C2 for a negative FSQRT operand).
        mov word [SHOW_MASK], FSW_SHOWN & ~0x4500
        UNARY "fsqrt", fsqrt, modes
        ; PC does not apply to FRNDINT (SDM Vol. 1 8.1.5.2); QEMU rounds its result to PC.
        UNARY "frndint", frndint, rc_modes
        UNARY "fxtract", fxtract, modes
%macro CHS_ABS_CHS 0
        fchs
        fabs
        fchs
%endmacro
        UNARY "fchs fabs", CHS_ABS_CHS, modes
        mov word [SHOW_MASK], FSW_SHOWN

; --- Comparisons: FSW condition codes and EFLAGS.
        PRINT32 "compare", 10
        mov ebx, ROMBASE + pairs
.cmp_pair:
        fninit
        fld tword [ebx + 10]
        fld tword [ebx]             ; ST0 = a, ST1 = b
        fcom st1
        call print_fsw
        fucom st1
        call print_fsw
        ftst
        call print_fsw
        fxam
        call print_fsw
        xor eax, eax                ; flags to a known state
        fcomi st1
        call print_eflags
        fucomi st1
        call print_eflags
        ficom dword [ROMBASE + int_values + 2]
        call print_fsw
        fcompp
        call print_fsw
        call newline
        add ebx, 20
        cmp ebx, ROMBASE + pairs_end
        jb .cmp_pair

; --- Register moves: FCMOVcc under every CF/ZF/PF combination (SAHF), FLD/FST/FSTP ST(i),
; FXCH, FFREE and FXAM of an empty register, FINCSTP/FDECSTP.
%macro FCMOV_ALL 0
        fcmovb st0, st1
        call fcmov_step
        fcmove st0, st1
        call fcmov_step
        fcmovbe st0, st1
        call fcmov_step
        fcmovu st0, st1
        call fcmov_step
        fcmovnb st0, st1
        call fcmov_step
        fcmovne st0, st1
        call fcmov_step
        fcmovnbe st0, st1
        call fcmov_step
        fcmovnu st0, st1
        call fcmov_step
%endmacro
        PRINT32 "register moves", 10
        xor ecx, ecx
.fcmov_flags:
        mov eax, ecx                ; bit 0 -> CF, bit 1 -> PF (bit 2), bit 2 -> ZF (bit 6)
        and eax, 1
        test ecx, 2
        jz .no_pf
        or eax, 4
.no_pf: test ecx, 4
        jz .no_zf
        or eax, 0x40
.no_zf: mov ah, al
        fninit
        fld1
        fldz                        ; ST0 = 0, ST1 = 1
        sahf
        FCMOV_ALL
        call newline
        inc ecx
        cmp ecx, 8
        jb .fcmov_flags
        fninit
        fldpi
        fld1
        fldz                        ; ST0 = 0, ST1 = 1, ST2 = pi
        fld st2                     ; ST0 = pi
        fst st3
        fxch st2
        fstp st1
        ffree st3
        fincstp
        fincstp
        fincstp
        fxam                        ; the freed register: empty
        call print_fsw
        fdecstp
        fdecstp
        fdecstp
        fxam
        call print_fsw
        call newline
        call dump_stack7

; --- Transcendentals, rounded to double precision (FST m64) so that the last bits of the
; 64-bit significand, where implementations differ, do not show.
%macro TRANSC 3
        PRINT32 %1, " "
        mov ebx, ROMBASE + %2
%%a:    fninit
        fld qword [ebx + 8]
        fld qword [ebx]             ; ST0 = x, ST1 = y
        %3
        fst qword [BUF]
        mov eax, [BUF + 4]
        call puthex32_32
        mov eax, [BUF]
        call puthex32_32
        call space
        add ebx, 16
        cmp ebx, ROMBASE + %2_end
        jb %%a
        call newline
%endmacro
        PRINT32 "transcendentals", 10
        TRANSC "fsin", transc_args, fsin
        TRANSC "fcos", transc_args, fcos
        TRANSC "fptan", transc_args, fptan
%macro FPTAN_POP 0
        fptan
        fstp st0
%endmacro
        TRANSC "fptan-st1", transc_args, FPTAN_POP
        TRANSC "fsincos", transc_args, fsincos
        TRANSC "fpatan", transc_args, fpatan
        TRANSC "f2xm1", transc_small, f2xm1
        TRANSC "fyl2x", transc_args, fyl2x
        TRANSC "fyl2xp1", transc_small, fyl2xp1

; --- Stores to every memory format, per rounding control.
        PRINT32 "stores", 10
        mov ebx, ROMBASE + pairs
.st_val:
        mov ebp, ROMBASE + rc_modes
.st_mode:
        fninit
        fldcw [ebp]
        fld tword [ebx]
        fst dword [BUF]
        fst qword [BUF + 4]
        fist word [BUF + 12]
        fist dword [BUF + 14]
        fld st0
        fistp qword [BUF + 18]
        fld st0
        fisttp dword [BUF + 26]
        fld st0
        fbstp [BUF + 30]
        mov esi, BUF
        mov ecx, 40
        call dump_bytes
        call print_fsw
        call newline
        add ebp, 2
        cmp ebp, ROMBASE + rc_modes_end
        jb .st_mode
        add ebx, 10
        cmp ebx, ROMBASE + pairs_end
        jb .st_val

; (Stack overflow and underflow are not printed: QEMU 7.2 does not detect them.)

; --- FSTENV/FSAVE/FRSTOR layouts (without the instruction and data pointers).
        PRINT32 "env", 10
        fninit
        fldpi
        fldz
        fld1
        fchs
        fdecstp
        fnstenv [BUF]
        call dump_env32
        fldcw [ROMBASE + modes + 2]
        o16 fnstenv [BUF]
        mov ax, [BUF]
        call puthex16
        mov ax, [BUF + 2]
        and ax, FSW_SHOWN_C1 | 0x3800
        call puthex16
        mov ax, [BUF + 4]
        call puthex16
        call newline
        fnsave [BUF + 0x100]
        fnstcw [BUF]                ; FNSAVE reinitialised: 037F
        mov ax, [BUF]
        call puthex16
        call newline
        frstor [BUF + 0x100]
        fincstp
        call dump_st0
        fnstenv [BUF]
        call dump_env32

; --- MMX: every Pentium MMX operation over operand pairs (MM0 op= MM1), shifts by register
; and by immediate, a memory operand, MOVD to a general register, and the x87 view after MMX
; (TOP 0, tags from contents) and after EMMS (all empty).
%macro MMXOP 2+
        PRINT32 %1, " "
        mov ebx, ROMBASE + mmx_pairs
%%p:    movq mm0, [ebx]
        movq mm1, [ebx + 8]
        %2
        call print_mm0
        add ebx, 16
        cmp ebx, ROMBASE + mmx_pairs_end
        jb %%p
        call newline
%endmacro
        PRINT32 "mmx", 10
        MMXOP "paddb", paddb mm0, mm1
        MMXOP "paddw", paddw mm0, mm1
        MMXOP "paddd", paddd mm0, mm1
        MMXOP "paddsb", paddsb mm0, mm1
        MMXOP "paddsw", paddsw mm0, mm1
        MMXOP "paddusb", paddusb mm0, mm1
        MMXOP "paddusw", paddusw mm0, mm1
        MMXOP "psubb", psubb mm0, mm1
        MMXOP "psubw", psubw mm0, mm1
        MMXOP "psubd", psubd mm0, mm1
        MMXOP "psubsb", psubsb mm0, mm1
        MMXOP "psubsw", psubsw mm0, mm1
        MMXOP "psubusb", psubusb mm0, mm1
        MMXOP "psubusw", psubusw mm0, mm1
        MMXOP "pmullw", pmullw mm0, mm1
        MMXOP "pmulhw", pmulhw mm0, mm1
        MMXOP "pmaddwd", pmaddwd mm0, mm1
        MMXOP "pand", pand mm0, mm1
        MMXOP "pandn", pandn mm0, mm1
        MMXOP "por", por mm0, mm1
        MMXOP "pxor", pxor mm0, mm1
        MMXOP "pcmpeqb", pcmpeqb mm0, mm1
        MMXOP "pcmpeqw", pcmpeqw mm0, mm1
        MMXOP "pcmpeqd", pcmpeqd mm0, mm1
        MMXOP "pcmpgtb", pcmpgtb mm0, mm1
        MMXOP "pcmpgtw", pcmpgtw mm0, mm1
        MMXOP "pcmpgtd", pcmpgtd mm0, mm1
        MMXOP "packsswb", packsswb mm0, mm1
        MMXOP "packssdw", packssdw mm0, mm1
        MMXOP "packuswb", packuswb mm0, mm1
        MMXOP "punpcklbw", punpcklbw mm0, mm1
        MMXOP "punpcklwd", punpcklwd mm0, mm1
        MMXOP "punpckldq", punpckldq mm0, mm1
        MMXOP "punpckhbw", punpckhbw mm0, mm1
        MMXOP "punpckhwd", punpckhwd mm0, mm1
        MMXOP "punpckhdq", punpckhdq mm0, mm1
        MMXOP "psllw", psllw mm0, mm1
        MMXOP "pslld", pslld mm0, mm1
        MMXOP "psllq", psllq mm0, mm1
        MMXOP "psrlw", psrlw mm0, mm1
        MMXOP "psrld", psrld mm0, mm1
        MMXOP "psrlq", psrlq mm0, mm1
        MMXOP "psraw", psraw mm0, mm1
        MMXOP "psrad", psrad mm0, mm1
        MMXOP "psllw 3", psllw mm0, 3
        MMXOP "pslld 5", pslld mm0, 5
        MMXOP "psllq 17", psllq mm0, 17
        MMXOP "psrlw 3", psrlw mm0, 3
        MMXOP "psrld 31", psrld mm0, 31
        MMXOP "psrlq 40", psrlq mm0, 40
        MMXOP "psraw 7", psraw mm0, 7
        MMXOP "psrad 33", psrad mm0, 33
        MMXOP "punpcklbw m32", punpcklbw mm0, [ebx + 8]
        MMXOP "paddw m64", paddw mm0, [ebx + 8]
%macro MOVD_THROUGH_EAX 0
        movd eax, mm1
        movd mm0, eax
%endmacro
        MMXOP "movd r32", MOVD_THROUGH_EAX
        fnstenv [BUF]
        call dump_env32
        emms
        fnstenv [BUF]
        call dump_env32

; --- #NM with CR0.TS, #MF with CR0.NE through the IDT.
        PRINT32 "faults", 10
        mov edi, IDT
        mov ecx, 256
        mov ebx, ROMBASE + unexpected
.fill:  call write_gate
        add edi, 8
        loop .fill
        mov edi, IDT + 7 * 8
        mov ebx, ROMBASE + nm_handler
        call write_gate
        mov edi, IDT + 16 * 8
        mov ebx, ROMBASE + mf_handler
        call write_gate
        lidt [ROMBASE + idt_desc]
        mov dword [NM_COUNT], 0
        mov dword [MF_COUNT], 0
        fninit
        mov eax, cr0
        or eax, CR0_TS
        mov cr0, eax
        fld1                        ; #NM, the handler clears TS, fld1 runs again
        fldcw [ROMBASE + unmask_pe]
        fldpi
        fdivp st1                   ; 1 / pi: PE pending (unmasked), the result is delivered
        fnstsw ax                   ; non-waiting: no #MF
        and ax, [SHOW_MASK]
        call puthex16
        call newline
        fld1                        ; #MF; the handler does fnclex
        fwait
        mov eax, [NM_COUNT]
        call puthex32_32
        mov al, ' '
        out DEBUGCON_PORT, al
        mov eax, [MF_COUNT]
        call puthex32_32
        call newline
        call dump_st0

        jmp finish32

; --- Helpers.
nm_handler:
        clts
        inc dword [NM_COUNT]
        iretd
mf_handler:
        push eax
        fnstsw ax
        and ax, [SHOW_MASK]
        call puthex16
        call newline
        fnclex
        inc dword [MF_COUNT]
        pop eax
        iretd
unexpected:
        PRINT32 "unexpected interrupt", 10
        jmp finish32

write_gate:
        mov [edi], bx
        mov word [edi + 2], SEL_CODE32
        mov word [edi + 4], GATE_INT32
        push ebx
        shr ebx, 16
        mov [edi + 6], bx
        pop ebx
        ret

newline:
        push eax
        mov al, 10
        out DEBUGCON_PORT, al
        pop eax
        ret

space:
        push eax
        mov al, ' '
        out DEBUGCON_PORT, al
        pop eax
        ret

; Print AX as four hex digits.
puthex16:
        push eax
        xchg al, ah
        call puthex8_32
        xchg al, ah
        call puthex8_32
        pop eax
        ret

; Print the 80-bit value at ESI as "eeee:ssssssssssssssss".
put_f80:
        push eax
        mov ax, [esi + 8]
        call puthex16
        mov al, ':'
        out DEBUGCON_PORT, al
        mov eax, [esi + 4]
        call puthex32_32
        mov eax, [esi]
        call puthex32_32
        pop eax
        ret

; Print the (shown bits of the) status word, non-waiting.
print_fsw:
        push eax
        fnstsw ax
        and ax, [SHOW_MASK]
        call puthex16
        call space
        pop eax
        ret

; Print the status flags of EFLAGS.
; Print ZF, PF and CF of EFLAGS (QEMU leaves OF, SF and AF alone in FCOMI, which clears them).
print_eflags:
        push eax
        pushfd
        pop eax
        and eax, 0x45
        call puthex16
        call space
        pop eax
        ret

; Print ECX bytes at ESI in hex.
dump_bytes:
        push eax
.b:     mov al, [esi]
        call puthex8_32
        inc esi
        loop .b
        call space
        pop eax
        ret

; After one FCMOVcc (ST0 = 0, ST1 = 1 before it): print ST0's exponent, 3fff if it moved and
; 0000 if not, then set up ST0 = 0, ST1 = 1 and the flags from AH again for the next one.
fcmov_step:
        push eax
        fnsave [BUF + 0x200]        ; ST0 after the move
        mov ax, [BUF + 0x200 + 28 + 8]
        call puthex16
        call space
        fninit
        fld1
        fldz                        ; ST0 = 0, ST1 = 1 for the next probe
        pop eax
        sahf
        ret

; Print MM0 (through memory) as 16 hex digits.
print_mm0:
        push eax
        movq [BUF], mm0
        mov eax, [BUF + 4]
        call puthex32_32
        mov eax, [BUF]
        call puthex32_32
        call space
        pop eax
        ret

; FNSAVE (non-waiting, so unmasked exceptions do not fault) and print FSW, ST0 and ST1,
; then restore nothing: FNSAVE leaves the FPU initialised.
dump_st0:
        push esi
        push eax
        fnsave [BUF + 0x200]
        mov ax, [BUF + 0x200 + 4]
        and ax, [SHOW_MASK]
        call puthex16
        call space
        mov esi, BUF + 0x200 + 28
        call put_f80
        call space
        mov esi, BUF + 0x200 + 38
        call put_f80
        call newline
        pop eax
        pop esi
        ret

; Print the seven stack registers (constants) after FNSAVE.
dump_stack7:
        push esi
        push ecx
        fnsave [BUF + 0x200]
        mov esi, BUF + 0x200 + 28
        mov ecx, 7
.r:     call put_f80
        call space
        add esi, 10
        loop .r
        call newline
        pop ecx
        pop esi
        ret

; The 32-bit environment at BUF: FCW, FSW (shown bits and TOP), tag word.
dump_env32:
        push eax
        mov ax, [BUF]
        call puthex16
        call space
        mov ax, [BUF + 4]
        and ax, FSW_SHOWN_C1 | 0x3800
        call puthex16
        call space
        mov ax, [BUF + 8]
        call puthex16
        call newline
        pop eax
        ret

; --- Data.
idt_desc:
        dw 256 * 8 - 1
        dd IDT

unmask_pe:  dw 0x035f
; Rounding control x precision control: RN/RD/RU/RZ at 64 bits, RN at 53 and 24 bits,
; RU at 53, RZ at 24. (Unmasked responses are not printed: QEMU 7.2 stores the result of an
; unmasked invalid or zero-divide operation and does not bias the exponent of an unmasked
; overflow or underflow, unlike the SDM, Vol. 1 4.9.2 and 8.5.)
modes:      dw 0x037f, 0x077f, 0x0b7f, 0x0f7f, 0x027f, 0x007f, 0x0a7f, 0x0c7f
modes_end:
rc_modes:   dw 0x037f, 0x077f, 0x0b7f, 0x0f7f
rc_modes_end:

%macro F80 2
        dq %2
        dw %1
%endmacro
; Operand pairs (a, b), 80-bit.
pairs:
        F80 0x3fff, 0x8000000000000000     ; 1
        F80 0x4000, 0xc000000000000000     ; 3
        F80 0x4000, 0x8000000000000000     ; 2
        F80 0xc000, 0xc000000000000000     ; -3
        F80 0x4000, 0xc90fdaa22168c235     ; pi
        F80 0x4000, 0xadf85458a2bb4a9a     ; e
        F80 0x7ffe, 0xffffffffffffffff     ; max
        F80 0x7ffe, 0x8000000000000000     ; 2^16383
        F80 0x0001, 0x8000000000000000     ; min normal
        F80 0x3fff, 0xc000000000000000     ; 1.5
        F80 0x0000, 0x0000000000000123     ; denormal
        F80 0x3ffe, 0x8000000000000001     ; 0.5 + ulp
        F80 0x0000, 0x0000000000000000     ; +0
        F80 0x4001, 0xa000000000000000     ; 5
        F80 0x7fff, 0x8000000000000000     ; +inf
        F80 0x7fff, 0x8000000000000000     ; +inf
        F80 0x7fff, 0xc000000000001234     ; QNaN
        F80 0x3fff, 0x8000000000000000     ; 1
        F80 0x7fff, 0x8000000000000001     ; SNaN
        F80 0x4000, 0x8000000000000000     ; 2
        F80 0x3fff, 0x8000000000000000     ; 1
        F80 0x3fb9, 0x8000000000000000     ; 2^-70
        F80 0x8000, 0x0000000000000000     ; -0
        F80 0x0000, 0x0000000000000000     ; +0
        F80 0x3fff, 0xffffffffffffffff     ; 2 - ulp
        F80 0x3fc0, 0x8000000000000000     ; 2^-63
        F80 0x4002, 0xa000000000000000     ; 10
        F80 0x3ffb, 0xcccccccccccccccd     ; 0.1
        F80 0x403e, 0xfffffffffffffc00     ; 2^63 - 1024
        F80 0xbffe, 0xc000000000000000     ; -0.75
        F80 0x401d, 0xf000000000000001     ; 2^31 - 2^27 + tiny fraction
        F80 0xc00e, 0x8000800000000000     ; -32769
        F80 0x4050, 0x8000000000000000     ; 2^81
        F80 0x3ffd, 0xb000000000000000     ; 0.34375
pairs_end:

load_m32:   dd 0x3f800000, 0xc0490fdb, 0x00000001, 0x807fffff, 0x7f800000, 0x7fc00001
            dd 0x7f800001, 0x80000000
load_m32_end:
load_m64:   dq 0x400921fb54442d18, 0x0000000000000001, 0x7ff0000000000001, 0xfff8000000000000
            dq 0x8010000000000000
load_m64_end:
int_values: dw -12345
            dd 100000
            dq -1234567890123456789
bcd_value:  db 0x89, 0x67, 0x45, 0x23, 0x01, 0x89, 0x67, 0x45, 0x23, 0x80
; (x, y) pairs of doubles for the transcendentals.
transc_args:
        dq 0x3fe0000000000000, 0x3ff0000000000000     ; 0.5, 1
        dq 0x3ff0000000000000, 0x4004000000000000     ; 1, 2.5
        dq 0x3fd3333333333333, 0xbfe6666666666666     ; 0.3, -0.7
        dq 0xbfe6666666666666, 0x3fd3333333333333     ; -0.7, 0.3
        dq 0x4059000000000000, 0x3fb999999999999a     ; 100, 0.1
        dq 0x3e45798ee2308c3a, 0x400921fb54442d18     ; 1e-8, pi
transc_args_end:
; Arguments within F2XM1's (|x| <= 1) and FYL2XP1's (|x| < 1 - sqrt(2)/2) domains.
transc_small:
        dq 0x3fd0000000000000, 0x4004000000000000     ; 0.25, 2.5
        dq 0xbfd0000000000000, 0x3ff0000000000000     ; -0.25, 1
        dq 0x3fb999999999999a, 0xbfe6666666666666     ; 0.1, -0.7
        dq 0x3e45798ee2308c3a, 0x400921fb54442d18     ; 1e-8, pi
        dq 0xbfd1eb851eb851ec, 0x4059000000000000     ; -0.28, 100
transc_small_end:
mmx_pairs:  dq 0x0123456789abcdef, 0xfedcba9876543210
            dq 0x7fff80007f80ff01, 0x0001ffff7f8001ff
            dq 0x8000000000007fff, 0x8000000000000001
            dq 0x00000000000000ff, 0x0000000000000004
            dq 0xffffffffffffffff, 0x0000000000000041
mmx_pairs_end:
m32_three:  dd 0x40400000
m64_tenth:  dq 0x3fb999999999999a
        bits 16

        COMMON_CODE
        ROM_END
