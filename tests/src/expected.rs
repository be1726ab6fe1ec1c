//! What every test ROM must print and how it must exit, written down independently of emu.
//!
//! For the ROMs made of named checks, the expected text is the ROM's banner, one "ok NAME"
//! line per check in source order (read off the `REPORT16`/`REPORT32` lines of the `.asm`
//! file), and "PASS". The checksum ROMs (`alu_flags`, `long_alu`, `c_program`) print values
//! computed by the program; their expected text lives in `test-roms/expected/*.txt` and was recorded by
//! running the image under `qemu-system-x86_64 -accel tcg` (see test-roms/README.md). The C
//! program additionally checks its well-known results (CRC-32 check values, SHA-256 test
//! vectors, prime counts) itself and prints FAIL if one is wrong.

/// Exit status of a ROM that passed: it writes 0x10 to the debug exit port, (0x10 << 1) | 1.
pub const STATUS_PASS: i32 = (0x10 << 1) | 1;
/// Exit status of a ROM whose own checks failed: 0x11 written, (0x11 << 1) | 1.
pub const STATUS_FAIL: i32 = (0x11 << 1) | 1;

/// Exit status of a guest that stopped for good (halt with interrupts off, triple fault).
pub const STATUS_STOPPED: i32 = 4;

/// The expectations of one ROM.
#[derive(Debug, Clone, Copy)]
pub struct Expectation {
    pub name: &'static str,
    /// What the ROM checks, for test messages.
    pub covers: &'static str,
    pub output: ExpectedOutput,
    /// How the run must end.
    pub end: ExpectedEnd,
    /// Registers and RAM end up holding values that depend on the host (CPUID vendor, TSC),
    /// so only output and status may be compared across backends, not the final state.
    pub machine_specific_state: bool,
    /// Bytes the host types into COM1 before the guest starts (QEMU gets them on stdin).
    pub serial_input: &'static [u8],
}

/// How a ROM's run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedEnd {
    /// The ROM writes this value to the debug exit port; QEMU ends the same way, so the ROM
    /// is compared with QEMU.
    DebugExit(u32),
    /// HLT with interrupts disabled (QEMU would wait forever: not compared).
    Halted,
    /// A triple fault (QEMU would reset: not compared).
    TripleFault,
}

impl ExpectedEnd {
    /// The exit status `emu run` returns for this end.
    pub fn status(self) -> i32 {
        match self {
            ExpectedEnd::DebugExit(v) => ((v << 1) | 1) as i32,
            ExpectedEnd::Halted | ExpectedEnd::TripleFault => STATUS_STOPPED,
        }
    }
    /// Whether QEMU ends the same way, so that its run is a reference for this ROM.
    pub fn qemu_comparable(self) -> bool {
        matches!(self, ExpectedEnd::DebugExit(_))
    }
}

/// The value a passing ROM writes to the debug exit port.
pub const EXIT_PASS: u32 = 0x10;
/// The value a ROM whose checks failed writes to the debug exit port.
pub const EXIT_FAIL: u32 = 0x11;
const PASS: ExpectedEnd = ExpectedEnd::DebugExit(EXIT_PASS);

/// How the expected output is given.
#[derive(Debug, Clone, Copy)]
pub enum ExpectedOutput {
    /// A banner line, "ok NAME" for every check, then "PASS".
    Checks {
        banner: &'static str,
        checks: &'static [&'static str],
    },
    /// Literal text.
    Text(&'static str),
}

impl ExpectedOutput {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ExpectedOutput::Checks { banner, checks } => {
                let mut s = format!("{banner}\n");
                for c in *checks {
                    s.push_str(&format!("ok {c}\n"));
                }
                s.push_str("PASS\n");
                s.into_bytes()
            }
            ExpectedOutput::Text(t) => t.as_bytes().to_vec(),
        }
    }
}

const REAL_MODE_CHECKS: &[&str] = &[
    "add16",
    "sub16",
    "adc16",
    "sbb16",
    "and16",
    "or16",
    "xor16",
    "inc16",
    "dec16",
    "neg16",
    "cmp16",
    "add8",
    "shl16",
    "shr16",
    "sar16",
    "rol16",
    "rcr16",
    "shl count 0",
    "mul16",
    "imul16",
    "imul8",
    "div16",
    "idiv8",
    "#DE divide by zero",
    "#DE quotient overflow",
    "int/iret",
    "far call/retf",
    "retf imm16",
    "far call mem",
    "far jmp cs base",
    "rep movsb",
    "repe cmpsb",
    "repne scasb",
    "rep stosw/lodsw",
    "std rep movsb",
    "loop",
    "jcxz",
    "loopne",
    "enter/leave",
    "enter nested",
    "xchg",
    "xadd",
    "cmpxchg equal",
    "cmpxchg not equal",
    "setcc",
    "cmov",
    "bt/bts/btr/btc",
    "bts mem bitstring",
    "bswap",
    "movzx/movsx",
    "pusha/popa",
    "pushf/popf",
    "in/out uart scratch",
];

const PMODE_CHECKS: &[&str] = &[
    "cs after far jmp",
    "cr0.pe",
    "ss loaded",
    "segment base from gdt",
    "es load and read",
    "sgdt",
    "lidt/sidt",
    "#DE through idt",
    "#DE idiv overflow",
    "#UD through idt",
    "int 0x30 / iretd",
    "far call/retf 32",
    "call/ret with frame",
    "rep movsd/cmpsd",
    "rom readable below 4 GiB",
    "code runs below 4 GiB",
    "back in real mode",
    "fs descriptor cache kept",
    "fs reload in real mode",
];

const PREFIXES_CHECKS: &[&str] = &[
    "o32 add in real mode",
    "o16 write keeps high half",
    "o32 push/pop",
    "a32 loop uses ecx",
    "jcxz vs jecxz",
    "a32 sib addressing",
    "a32 rep movsb",
    "o32 load via bx+si",
    "o32 div in real mode",
    "o16 add flags in pm",
    "o16 push in pm",
    "a16 addressing in pm",
    "a16 wraparound",
    "a16 rep stosb",
    "o16 rep movsw",
    "cwd/cwde/cdq",
    "a16 loop uses cx",
    "o16 imul imm",
    "movzx/movsx mem",
];

const INVALID_OPCODE_CHECKS: &[&str] = &[
    "ud2 real mode",
    "lock nop real mode",
    "lock on register add",
    "mov to cs real mode",
    "0f ff real mode",
    "ud2 pm",
    "lock nop pm",
    "lea with register operand",
    "ud2 after 66 prefix",
    "0f ff pm",
    "multi-byte nop",
    "endbr32",
    "prefetch hint",
];

const CPUID_RDTSC_CHECKS: &[&str] = &[
    "cpuid max leaf >= 1",
    "cpuid vendor printable",
    "cpuid.1 reports tsc",
    "cpuid writes eax",
    "rdtsc monotonic",
    "rdtsc advances",
];

const SMC_CHECKS: &[&str] = &[
    "run copied code",
    "run patched code",
    "patch in a loop",
    "patch next instruction",
    "run copied code pm",
    "run patched code pm",
    "patch next instruction pm",
    "overwrite with rep stosb",
];

const PAGING_PAE_CHECKS: &[&str] = &[
    "paging on with cr4.pae",
    "identity map through pdpt/pd/pt",
    "2 MiB page",
    "2 MiB page accessed",
    "2 MiB page dirty",
    "4 KiB page accessed on read",
    "4 KiB page dirty on write",
    "write reached the frame",
    "#PF read not present",
    "#PF write not present",
    "cr2 holds the address",
    "read-only page writable without wp",
    "#PF write read-only with wp",
    "#PF xd reserved without nxe",
    "xd page readable with nxe",
    "#PF fetch from xd page",
    "#PF fetch not present with nxe",
    "global page read",
    "invlpg drops a global page",
    "#PF after unmapping a global page",
    "cr3 load drops a non-global page",
    "sysexit to ring 3",
    "sysenter to ring 0",
    "paging off again",
];

const LONG_MODE_CHECKS: &[&str] = &[
    "efer.lma set",
    "64-bit operand size",
    "push is 8 bytes",
    "push imm sign-extended",
    "32-bit write zero-extends",
    "16-bit write merges",
    "r8-r15",
    "rex byte registers",
    "64-bit add carry",
    "cdqe/cqo/movsxd",
    "mul r64",
    "div r64",
    "idiv r64",
    "imul r64 imm",
    "64-bit shifts",
    "rip-relative lea",
    "rip-relative load",
    "call pushes 64-bit rip",
    "rep stosq/movsq, high alias",
    "high canonical address",
    "fs base msr",
    "gs base and swapgs",
    "ds base ignored",
    "addr32 effective address",
    "loop uses rcx",
    "4 KiB page under 4-level paging",
    "accessed flags on all four levels",
    "read leaves dirty clear",
    "write sets dirty",
    "invlpg in 4-level paging",
    "compatibility mode push is 4 bytes",
    "back in 64-bit mode",
    "paging off clears lma",
];

const LONG_MODE_IRQ_CHECKS: &[&str] = &[
    "ltr 64-bit tss",
    "cpuid lm nx syscall",
    "int3 through 64-bit idt, frame",
    "frame aligned to 16 bytes",
    "#GP non-canonical address",
    "#PF error code, cr2, ist stack",
    "#PF fetch from xd page",
    "cmpxchg16b",
    "sysret to ring 3",
    "ring 3 events",
    "syscall to ring 0",
    "retfq to ring 3",
    "sysret to compatibility mode, int from it",
    "iretq to compatibility mode",
    "timer interrupts in 64-bit mode",
];

const PM_FAULTS_CHECKS: &[&str] = &[
    "#GP selector past gdt limit",
    "ds unchanged after the fault",
    "#GP null ss",
    "#NP not-present segment",
    "#GP execute-only code into ds",
    "#GP read-only segment into ss",
    "read-only segment readable",
    "#BP int3 traps after",
    "#OF into traps after",
    "into without overflow",
];

const CALL_GATES_CHECKS: &[&str] = &[
    "call gate same privilege",
    "jmp through call gate",
    "ring 3 prints through the bitmap",
    "call gate to ring 0 with parameters",
    "retf imm16 back to ring 3",
    "retf to ring 3 nulls es",
    "retf to ring 3 keeps ds",
    "16-bit call gate word frame",
    "#GP call gate dpl below cpl",
    "#NP call gate not present",
    "#GP call gate to data segment",
    "#GP jmp through gate to ring 0",
    "#TS ss0 of wrong privilege",
    "out to a permitted port",
    "#GP out to a denied port",
    "#GP word access reaching a denied port",
    "#GP port beyond the bitmap",
    "#GP outsb to a denied port",
    "#GP cli at cpl 3",
    "back in ring 0",
];

const TASK_SWITCH_CHECKS: &[&str] = &[
    "registers restored after iret",
    "call to a tss runs the task",
    "new task registers from its tss",
    "tr loaded",
    "previous task link written",
    "nt set in the nested task",
    "cr0.ts set by the switch",
    "ldtr loaded from the tss",
    "segment from the new ldt",
    "tr back to the caller",
    "nt clear in the caller",
    "iret cleared the callee's busy bit",
    "caller still busy",
    "callee eip saved at iret",
    "call through a task gate",
    "jmp to a tss and back",
    "jmp does not nest",
    "jmp moves the busy bit",
    "#GP call to a busy tss",
    "#TS tss limit below 67h",
    "#NP tss not present",
    "int through a task gate",
    "16-bit tss",
    "double fault through a task gate",
    "#DF error code on the new task's stack",
    "handler task esp",
    "handler task linked to the faulting task",
    "faulting eip saved in the old tss",
    "resumed after the faulting instruction",
];

const PAGING_1G_SMEP_CHECKS: &[&str] = &[
    "cpuid page1gb",
    "cpuid smep",
    "cpuid smap",
    "1 GiB page write reaches the frame",
    "1 GiB page read",
    "1 GiB page accessed and dirty",
    "#PF reserved bits of a 1 GiB pdpte",
    "cr4.smep set",
    "#PF supervisor fetch from a user page",
    "smep allows supervisor reads",
    "user page runs without smep",
    "#PF smap supervisor read of a user page",
    "stac allows the access",
    "#PF smap write after clac",
];

const SEG_LIMITS_CHECKS: &[&str] = &[
    "read at the limit",
    "#GP dword read crossing the limit",
    "#GP write past the limit",
    "#GP rmw past the limit",
    "read through a read-only segment",
    "#GP write through a read-only segment",
    "#GP write through cs",
    "#GP read through a null segment",
    "expand-down above the limit",
    "#GP expand-down at the limit",
    "#GP expand-down below the limit",
    "stack read within the limit",
    "#SS esp-relative read past the limit",
    "#SS ebp-relative write past the limit",
    "#GP lodsw through a short segment",
    "esi kept by the faulting lodsw",
    "#GP rep stosb into a read-only segment",
    "ecx kept by the faulting rep stosb",
];

const TIMER_IRQ_CHECKS: &[&str] = &[
    "pic mask readback",
    "pit latched count",
    "irq0 pending in irr",
    "cli holds interrupts",
    "timer interrupts wake hlt",
];

const LAPIC_CHECKS: &[&str] = &[
    "cpuid reports an apic",
    "apic base msr: enabled bsp at fee00000",
    "integrated xapic version",
    "svr software enable",
    "esr clear",
    "self ipi waits in irr",
    "self ipi delivered",
    "in isr while its handler runs",
    "eoi clears isr",
    "ppr follows tpr",
    "tpr class 5 masks vector 45",
    "tpr class 4 masks vector 45",
    "masked vector stays in irr",
    "lower tpr delivers it",
    "higher vector first",
    "timer counts down from the initial count",
    "one-shot stops at 0",
    "one-shot fired once",
    "initial count 0 stops the timer",
    "ioapic version and 24 pins",
    "redirection entry reads back",
    "pit through ioapic pin 2, pic held off",
    "pit through the 8259A and lint0 extint",
    "no unexpected vectors",
];

/// `rep outsb` prints a line of its own between the checks.
const SNAPSHOT_CHECKSUM_OUTPUT: &str = "snapshot checksum
................ ac7482fa
................ 2abfe35a
................ 0ce0954a
................ 243236f3
table 4ddf2670
checksum 69ed1083
PASS
";

const RESET_OUTPUT: &str = "reset tests
boot 0: reset through 0xcf9
boot 1: fast reset through port 0x92
boot 2: reset pulse from the keyboard controller
boot 3: triple fault
boot 4
ok ram kept across resets
ok cr0 at reset
ok interrupts off at reset
PASS
";

const STRINGS_OUTPUT: &str = "string instruction tests
ok overlapping rep movsb
ok rep movsd with fs source
ok rep with ecx 0
ok std rep stosd
ok repe cmpsb stops at difference
ok repne scasb runs out
ok lodsd
printed by rep outsb
ok rep outsb
ok rep insb
PASS
";

/// The self-test of the reporting macros: two checks fail on purpose.
const HARNESS_SELFTEST_OUTPUT: &str = "harness self-test
ok zf set passes
FAIL zf clear fails
ok zf set passes pm
FAIL zf clear fails pm
failures 00000002
FAIL
";

const MEM_OPS_CHECKS: &[&str] = &[
    "add to memory with flags",
    "inc/neg on memory",
    "shifts on memory",
    "bit strings in memory",
    "dword across a page boundary",
    "push/pop across a page boundary",
    "rep movsd across a page boundary",
    "xchg with memory",
    "lock cmpxchg/xadd on memory",
    "cmpxchg8b",
    "push/pop memory operands",
    "setcc to memory",
    "call/jmp through memory",
    "ret imm16 32-bit",
    "enter/leave 32-bit",
];

/// The line typed into COM1 comes back through the debug console.
const SERIAL_ECHO_OUTPUT: &str = "serial echo test
got: ping
ok received ping
PASS
";

/// UART and debug console output interleave in program order on one stream.
const SERIAL_OUTPUT: &str = "serial tests
ok divisor latch
ok line control
ok scratch register
ok transmitter empty
hello from the uart
debugcon after uart
uart again
ok loopback
uart after loopback
PASS
";

/// Every ROM in test-roms/, with what it must do.
pub const EXPECTATIONS: &[Expectation] = &[
    Expectation {
        name: "real_mode",
        covers: "16-bit ALU flags, shifts, mul/div, #DE via IVT, int/iret, far calls, string ops, loop, enter/leave, xchg/xadd/cmpxchg, setcc/cmov, bt*, bswap, movzx/movsx, in/out",
        output: ExpectedOutput::Checks {
            banner: "real mode tests",
            checks: REAL_MODE_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "pmode",
        covers: "lgdt, mov cr0, far jmp, GDT segment loads, lidt, #DE/#UD/int via a 32-bit IDT, the ROM below 4 GiB, return to real mode with cached descriptors",
        output: ExpectedOutput::Checks {
            banner: "protected mode tests",
            checks: PMODE_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "prefixes",
        covers: "operand-size (66) and address-size (67) prefixes in real and protected mode",
        output: ExpectedOutput::Checks {
            banner: "prefix tests",
            checks: PREFIXES_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "invalid_opcode",
        covers: "invalid instructions raise #UD handled by the guest (IVT and IDT); hint NOPs do not",
        output: ExpectedOutput::Checks {
            banner: "invalid opcode tests",
            checks: INVALID_OPCODE_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "cpuid_rdtsc",
        covers: "cpuid vendor and leaf 1, rdtsc monotonic",
        output: ExpectedOutput::Checks {
            banner: "cpuid/rdtsc tests",
            checks: CPUID_RDTSC_CHECKS,
        },
        end: PASS,
        machine_specific_state: true,
        serial_input: b"",
    },
    Expectation {
        name: "serial",
        covers: "16550 UART registers, polled transmission, loopback; serial output on the same stream",
        output: ExpectedOutput::Text(SERIAL_OUTPUT),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "alu_flags",
        covers: "every ALU op over operand tables, result and defined flags hashed (golden from QEMU)",
        output: ExpectedOutput::Text(include_str!("../../test-roms/expected/alu_flags.txt")),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "x87",
        covers: "x87 FPU: detection, constants, loads, arithmetic under RC x PC, fprem/fscale, sqrt/frndint/fxtract, compares, stores to every format, fstenv/fsave/frstor, #NM and #MF (golden from QEMU)",
        output: ExpectedOutput::Text(include_str!("../../test-roms/expected/x87.txt")),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "c_program",
        covers: "gcc -m32 -O2 freestanding C: quicksort, sieve, CRC-32, SHA-256, 64-bit math, strings, jump tables, recursion",
        output: ExpectedOutput::Text(include_str!("../../test-roms/expected/c_program.txt")),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "smc",
        covers: "self-modifying code: copied, patched and overwritten code, a store to the next instruction",
        output: ExpectedOutput::Checks {
            banner: "self-modifying code tests",
            checks: SMC_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "pm_faults",
        covers: "segment-load protection faults (#GP, #NP) with error codes through the IDT; int3 and into traps",
        output: ExpectedOutput::Checks {
            banner: "protected mode fault tests",
            checks: PM_FAULTS_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "call_gates",
        covers: "far CALL/JMP through 32- and 16-bit call gates, to ring 0 from ring 3 with the TSS stack and parameter copy, RETF imm16 to ring 3 nulling ES; #GP/#NP/#TS for bad gates and stacks; the TSS I/O permission bitmap at CPL 3",
        output: ExpectedOutput::Checks {
            banner: "call gate and i/o bitmap tests",
            checks: CALL_GATES_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "task_switch",
        covers: "task switches: CALL/JMP to a 32-bit TSS and through a task gate, IRET through the back link, INT n through an IDT task gate, a 16-bit TSS, busy bits, NT, CR0.TS, LDTR from the TSS, #GP/#TS/#NP for bad TSSes, a double fault through a task gate",
        output: ExpectedOutput::Checks {
            banner: "task switch tests",
            checks: TASK_SWITCH_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "paging_1g_smep",
        covers: "4-level paging: CPUID Page1GB, SMEP and SMAP, a 1 GiB page with accessed/dirty flags, #PF for reserved bits of a 1 GiB PDPTE, SMEP fetch faults with I/D, SMAP read/write faults and STAC/CLAC",
        output: ExpectedOutput::Checks {
            banner: "1 GiB pages and smep tests",
            checks: PAGING_1G_SMEP_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "seg_limits",
        covers: "segment limit and type checks of data, stack and string accesses in protected mode (#GP(0), #SS(0)), expand-down segments; expected output from the SDM (QEMU's TCG does not check these), ends with HLT",
        output: ExpectedOutput::Checks {
            banner: "segment limit tests",
            checks: SEG_LIMITS_CHECKS,
        },
        end: ExpectedEnd::Halted,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "paging_pae",
        covers: "PAE paging: 4 KiB and 2 MiB pages, accessed/dirty, CR0.WP, XD as reserved bit and with NXE, #PF error codes and CR2, INVLPG of a global page, CR3 reload, SYSEXIT/SYSENTER between ring 0 and ring 3",
        output: ExpectedOutput::Checks {
            banner: "pae paging tests",
            checks: PAGING_PAE_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "long_mode",
        covers: "IA-32e mode from reset: PAE 4-level paging, LME/LMA, 64-bit code (REX, operand sizes, RIP-relative, stack, mul/div, shifts, strings), FS/GS bases and SWAPGS, compatibility mode, leaving long mode",
        output: ExpectedOutput::Checks {
            banner: "long mode tests",
            checks: LONG_MODE_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "long_mode_irq",
        covers: "IA-32e events: 64-bit IDT gates, the exact interrupt frame, IST and RSP0 stack switches, IRETQ, #GP/#PF with error codes, XD fetch, SYSCALL/SYSRET to ring 3 and back, RETFQ/SYSRET/IRETQ to 64-bit and compatibility-mode ring 3, ring-3 faults, CMPXCHG16B, PIT interrupts waking HLT, CPUID long-mode bits",
        output: ExpectedOutput::Checks {
            banner: "long mode interrupt tests",
            checks: LONG_MODE_IRQ_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "long_alu",
        covers: "64-bit and 32-bit-in-64-bit-mode ALU ops over 64-bit operand tables, result and defined flags hashed (golden from QEMU)",
        output: ExpectedOutput::Text(include_str!("../../test-roms/expected/long_alu.txt")),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "timer_irq",
        covers: "8259A PIC and 8254 PIT: timer interrupts through the IVT wake sti;hlt, IRR with cli",
        output: ExpectedOutput::Checks {
            banner: "timer interrupt tests",
            checks: TIMER_IRQ_CHECKS,
        },
        end: PASS,
        // The number of busy-loop iterations and the PIT count depend on host speed.
        machine_specific_state: true,
        serial_input: b"",
    },
    Expectation {
        name: "lapic",
        covers: "local APIC and I/O APIC: CPUID/IA32_APIC_BASE, SVR enable, self-IPI through IRR/ISR/EOI, TPR/PPR masking, priority order, timer one-shot and periodic, PIT through I/O APIC pin 2, the 8259A through LINT0 ExtINT (recorded under QEMU -cpu max)",
        output: ExpectedOutput::Checks {
            banner: "local apic tests",
            checks: LAPIC_CHECKS,
        },
        end: PASS,
        // Timer counts and busy-loop registers depend on host speed.
        machine_specific_state: true,
        serial_input: b"",
    },
    Expectation {
        name: "snapshot_checksum",
        covers: "a timer-paced checksum in protected mode (PIC, PIT, IDT, RAM table) that runs ~0.65 s; the snapshot tests stop and restore it mid-way",
        output: ExpectedOutput::Text(SNAPSHOT_CHECKSUM_OUTPUT),
        end: PASS,
        // The tick counter in RAM depends on host speed.
        machine_specific_state: true,
        serial_input: b"",
    },
    Expectation {
        name: "reset",
        covers: "system resets through 0xCF9, port 0x92, the i8042 pulse and a triple fault restart the machine with RAM and CMOS RAM kept",
        output: ExpectedOutput::Text(RESET_OUTPUT),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "strings",
        covers: "32-bit string ops: overlapping rep movsb, segment override, ecx 0, DF=1, repe/repne stops, rep outsb/insb",
        output: ExpectedOutput::Text(STRINGS_OUTPUT),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "mem_ops",
        covers: "memory operands: RMW ALU/shift flags, bit strings with negative offsets, page-straddling accesses, locked ops, cmpxchg8b, indirect call/jmp, ret imm, enter/leave",
        output: ExpectedOutput::Checks {
            banner: "memory operand tests",
            checks: MEM_OPS_CHECKS,
        },
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "serial_echo",
        covers: "UART receive: host input polled through LSR data-ready and read from RBR",
        output: ExpectedOutput::Text(SERIAL_ECHO_OUTPUT),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"ping\n",
    },
    Expectation {
        name: "harness_selftest",
        covers: "the reporting macros: failing checks print FAIL, are counted, and end with status 35",
        output: ExpectedOutput::Text(HARNESS_SELFTEST_OUTPUT),
        end: ExpectedEnd::DebugExit(EXIT_FAIL),
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "sse",
        covers: "MMX, SSE..SSE4.2: CR0/CR4 checks, FXSAVE/XSAVE, every instruction group over operand tables and MXCSR modes, hashed (golden from QEMU -cpu max)",
        output: ExpectedOutput::Text(include_str!("../../test-roms/expected/sse.txt")),
        end: PASS,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "halt",
        covers: "hlt with interrupts disabled ends the run as Halted",
        output: ExpectedOutput::Text("halting with interrupts off\n"),
        end: ExpectedEnd::Halted,
        machine_specific_state: false,
        serial_input: b"",
    },
    Expectation {
        name: "triple_fault",
        covers: "a fault with an empty IDT escalates to a triple fault",
        output: ExpectedOutput::Text("triple fault next\n"),
        end: ExpectedEnd::TripleFault,
        machine_specific_state: false,
        serial_input: b"",
    },
];
