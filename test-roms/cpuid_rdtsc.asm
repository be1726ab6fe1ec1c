; cpuid_rdtsc.asm - CPUID and RDTSC sanity: the vendor string is 12 printable characters, leaf
; 1 reports the TSC (SDM Vol. 2A CPUID, EDX bit 4), and the time-stamp counter never goes
; backwards and advances across work (SDM Vol. 3B 18.17). Values differ between machines, so
; only their properties are checked and nothing machine-specific is printed.

%include "common.inc"
        ROM_BEGIN

VENDOR    equ 0x600                 ; 12 bytes
CPUID_1_EDX_TSC equ 1 << 4

start:
        REAL_MODE_INIT
        PRINT16 "cpuid/rdtsc tests", 10
        ENTER_PM32 pm_entry

        bits 32
pm_entry:
        PM32_INIT
        xor eax, eax
        cpuid
        mov [VENDOR], ebx
        mov [VENDOR + 4], edx
        mov [VENDOR + 8], ecx
        cmp eax, 1
        jb .max_bad
        xor eax, eax                ; ZF=1
        jmp .max_done
.max_bad:
        or eax, 1
.max_done:
        REPORT32 "cpuid max leaf >= 1"

        mov esi, VENDOR
        mov ecx, 12
.vchar: lodsb
        cmp al, 0x20
        jb .vbad
        cmp al, 0x7E
        ja .vbad
        loop .vchar
        xor eax, eax
        jmp .vdone
.vbad:  or eax, 1
.vdone: REPORT32 "cpuid vendor printable"

        mov eax, 1
        cpuid
        and edx, CPUID_1_EDX_TSC
        cmp edx, CPUID_1_EDX_TSC
        REPORT32 "cpuid.1 reports tsc"

        mov eax, 0x12345678
        mov ecx, 0
        cpuid                       ; leaf 0 again: EAX overwritten with the max leaf
        cmp eax, 0x12345678
        je .leaf_bad
        xor eax, eax
        jmp .leaf_done
.leaf_bad:
        or eax, 1
.leaf_done:
        REPORT32 "cpuid writes eax"

; 100 back-to-back reads never decrease (64-bit compare).
        rdtsc
        mov esi, eax
        mov edi, edx
        mov ebp, 100
        xor ebx, ebx                ; count of decreases
.mono:  rdtsc
        cmp edx, edi
        jb .dec
        ja .ok
        cmp eax, esi
        jae .ok
.dec:   inc ebx
.ok:    mov esi, eax
        mov edi, edx
        dec ebp
        jnz .mono
        test ebx, ebx
        REPORT32 "rdtsc monotonic"

; Across a loop of 100000 iterations the counter strictly advances.
        rdtsc
        mov esi, eax
        mov edi, edx
        mov ecx, 100000
.work:  loop .work
        rdtsc
        sub eax, esi
        sbb edx, edi
        or eax, edx
        jz .adv_bad
        test edx, 0x80000000        ; not negative
        jnz .adv_bad
        xor eax, eax
        jmp .adv_done
.adv_bad:
        or eax, 1
.adv_done:
        REPORT32 "rdtsc advances"

        jmp finish32
        bits 16

        COMMON_CODE
        ROM_END
