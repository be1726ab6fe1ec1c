//! What CPUID a guest really reads on a backend, and the Linux option that masks what KVM shows
//! beyond the JIT.
//!
//! A KVM machine gives its vCPU a CPUID table capped by the JIT's (`accel::CpuidLimit`), so that
//! a guest sees one processor on both backends. Some KVMs do not answer every leaf from that
//! table: this project's CI host has a software-emulated KVM that reports its own leaves 01H,
//! 07H and 0DH (SSSE3, AVX, XSAVES...) whatever KVM_SET_CPUID2 said, and runs that SSE code
//! about a hundred times slower than scalar code. Such features cannot be masked in CPUID, so a
//! Linux boot on KVM probes what the guest reads ([`guest_cpuid`]) and asks the kernel to ignore
//! the extras with `clearcpuid=` ([`linux_extras`], [`clearcpuid_value`]), saying so in the log.

use devices::Buses;
use vcpu::state::cr0;
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Vcpu, VcpuError, VmExit};

use crate::boot_gdt::FlatGdt;

/// Where the probe guest keeps its code, its (leaf, subleaf) list and its results.
const CODE: u64 = 0x1000;
const TABLE: u64 = 0x2000;
const OUT: u64 = 0x3000;
/// The probe guest's memory: the first MiB.
const PROBE_RAM: u64 = 1 << 20;
/// The most queries one probe answers (its results fill one page from `OUT`).
pub const MAX_QUERIES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("at most {MAX_QUERIES} CPUID queries per probe, not {0}")]
    TooManyQueries(usize),
    #[error("cannot set up the probe guest's memory: {0}")]
    Memory(#[from] vcpu::MemoryError),
    #[error("cannot create the probe guest's vCPU: {0}")]
    Vcpu(String),
    #[error("the probe guest failed: {0}")]
    Run(#[from] VcpuError),
    #[error("the probe guest stopped with {0:?} instead of halting")]
    Exit(VmExit),
}

/// The probe program, 32-bit protected mode, flat segments:
/// `mov esi, TABLE; mov edi, OUT; mov ebp, n;
///  l: mov eax, [esi]; mov ecx, [esi+4]; cpuid; mov [edi], eax; mov [edi+4], ebx;
///     mov [edi+8], ecx; mov [edi+12], edx; add esi, 8; add edi, 16; dec ebp; jnz l; hlt`.
fn program(n: usize) -> Vec<u8> {
    let mut code = vec![0xbe];
    code.extend_from_slice(&(TABLE as u32).to_le_bytes());
    code.push(0xbf);
    code.extend_from_slice(&(OUT as u32).to_le_bytes());
    code.push(0xbd);
    code.extend_from_slice(&(n as u32).to_le_bytes());
    let body: &[u8] = &[
        0x8b, 0x06, 0x8b, 0x4e, 0x04, 0x0f, 0xa2, 0x89, 0x07, 0x89, 0x5f, 0x04, 0x89, 0x4f, 0x08,
        0x89, 0x57, 0x0c, 0x83, 0xc6, 0x08, 0x83, 0xc7, 0x10, 0x4d,
    ];
    code.extend_from_slice(body);
    code.push(0x75);
    code.push((-(body.len() as i8 + 2)) as u8);
    code.push(0xf4);
    code
}

/// Run CPUID for each (leaf, subleaf) of `queries` inside a small guest on the vCPU `make`
/// builds (given the probe's memory and its initial state), and return EAX..EDX of each.
pub fn guest_cpuid<E: std::fmt::Display>(
    queries: &[(u32, u32)],
    make: impl FnOnce(&GuestRam, &CpuState) -> Result<Box<dyn Vcpu>, E>,
) -> Result<Vec<[u32; 4]>, ProbeError> {
    if queries.len() > MAX_QUERIES {
        return Err(ProbeError::TooManyQueries(queries.len()));
    }
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: PROBE_RAM,
        kind: RegionKind::Ram,
    }])?;
    ram.write_host(CODE, &program(queries.len()))?;
    let table: Vec<u8> = queries
        .iter()
        .flat_map(|&(l, s)| [l.to_le_bytes(), s.to_le_bytes()].concat())
        .collect();
    ram.write_host(TABLE, &table)?;
    let gdt = FlatGdt {
        base: 0x500,
        code_selector: 0x08,
        data_selector: 0x10,
        long: false,
    };
    gdt.write(&ram)?;
    let mut s = gdt.cpu_state();
    s.cr0 |= cr0::PE;
    s.rip = CODE;
    let mut v = make(&ram, &s).map_err(|e| ProbeError::Vcpu(e.to_string()))?;
    match v.run(&mut Buses::new())? {
        VmExit::Halted { .. } => {}
        other => return Err(ProbeError::Exit(other)),
    }
    let mut out = vec![0u8; queries.len() * 16];
    ram.read(OUT, &mut out)?;
    Ok(out
        .chunks(16)
        .map(|c| {
            let w =
                |i: usize| u32::from_le_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
            [w(0), w(1), w(2), w(3)]
        })
        .collect())
}

/// A CPUID feature word: (leaf, subleaf, register 0=EAX..3=EDX), Linux's number for it and
/// Linux's names of its bits (arch/x86/include/asm/cpufeatures.h: word `linux_word` holds
/// features `32 * linux_word + bit`; names as /proc/cpuinfo shows them, "" where Linux has none).
struct NamedWord {
    leaf: u32,
    subleaf: u32,
    reg: usize,
    linux_word: u32,
    names: [&'static str; 32],
}

/// The feature words Linux reads from CPUID and names bit by bit, the instruction-set words
/// first: [`linux_extras`] lists features in this order, and what does not fit in the
/// kernel's option buffer is dropped from the end.
const NAMED_WORDS: [NamedWord; 8] = [
    NamedWord {
        leaf: 1,
        subleaf: 0,
        reg: 2,
        linux_word: 4,
        names: [
            "pni",
            "pclmulqdq",
            "dtes64",
            "monitor",
            "ds_cpl",
            "vmx",
            "smx",
            "est",
            "tm2",
            "ssse3",
            "cid",
            "sdbg",
            "fma",
            "cx16",
            "xtpr",
            "pdcm",
            "",
            "pcid",
            "dca",
            "sse4_1",
            "sse4_2",
            "x2apic",
            "movbe",
            "popcnt",
            "tsc_deadline_timer",
            "aes",
            "xsave",
            "",
            "avx",
            "f16c",
            "rdrand",
            "hypervisor",
        ],
    },
    NamedWord {
        leaf: 0xd,
        subleaf: 1,
        reg: 0,
        linux_word: 10,
        names: [
            "xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd", "", "", "", "", "", "", "", "", "",
            "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "",
        ],
    },
    NamedWord {
        leaf: 7,
        subleaf: 0,
        reg: 1,
        linux_word: 9,
        names: [
            "fsgsbase",
            "tsc_adjust",
            "sgx",
            "bmi1",
            "hle",
            "avx2",
            "",
            "smep",
            "bmi2",
            "erms",
            "invpcid",
            "rtm",
            "cqm",
            "",
            "mpx",
            "rdt_a",
            "avx512f",
            "avx512dq",
            "rdseed",
            "adx",
            "smap",
            "avx512ifma",
            "",
            "clflushopt",
            "clwb",
            "intel_pt",
            "avx512pf",
            "avx512er",
            "avx512cd",
            "sha_ni",
            "avx512bw",
            "avx512vl",
        ],
    },
    NamedWord {
        leaf: 7,
        subleaf: 0,
        reg: 2,
        linux_word: 16,
        names: [
            "",
            "avx512vbmi",
            "umip",
            "pku",
            "ospke",
            "waitpkg",
            "avx512_vbmi2",
            "",
            "gfni",
            "vaes",
            "vpclmulqdq",
            "avx512_vnni",
            "avx512_bitalg",
            "tme",
            "avx512_vpopcntdq",
            "",
            "la57",
            "",
            "",
            "",
            "",
            "",
            "rdpid",
            "",
            "bus_lock_detect",
            "cldemote",
            "",
            "movdiri",
            "movdir64b",
            "enqcmd",
            "sgx_lc",
            "",
        ],
    },
    NamedWord {
        leaf: 0x8000_0001,
        subleaf: 0,
        reg: 2,
        linux_word: 6,
        names: [
            "lahf_lm",
            "cmp_legacy",
            "svm",
            "extapic",
            "cr8_legacy",
            "abm",
            "sse4a",
            "misalignsse",
            "3dnowprefetch",
            "osvw",
            "ibs",
            "xop",
            "skinit",
            "wdt",
            "",
            "lwp",
            "fma4",
            "tce",
            "",
            "nodeid_msr",
            "",
            "tbm",
            "topoext",
            "perfctr_core",
            "perfctr_nb",
            "",
            "bpext",
            "ptsc",
            "perfctr_llc",
            "mwaitx",
            "",
            "",
        ],
    },
    NamedWord {
        leaf: 1,
        subleaf: 0,
        reg: 3,
        linux_word: 0,
        names: [
            "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "", "sep",
            "mtrr", "pge", "mca", "cmov", "pat", "pse36", "pn", "clflush", "", "dts", "acpi",
            "mmx", "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64", "pbe",
        ],
    },
    NamedWord {
        leaf: 7,
        subleaf: 0,
        reg: 3,
        linux_word: 18,
        names: [
            "",
            "",
            "avx512_4vnniw",
            "avx512_4fmaps",
            "fsrm",
            "",
            "",
            "",
            "avx512_vp2intersect",
            "",
            "md_clear",
            "",
            "",
            "",
            "serialize",
            "",
            "tsxldtrk",
            "",
            "pconfig",
            "arch_lbr",
            "ibt",
            "",
            "amx_bf16",
            "avx512_fp16",
            "amx_tile",
            "amx_int8",
            "",
            "",
            "flush_l1d",
            "arch_capabilities",
            "",
            "",
        ],
    },
    NamedWord {
        leaf: 0x8000_0001,
        subleaf: 0,
        reg: 3,
        linux_word: 1,
        names: [
            "", "", "", "", "", "", "", "", "", "", "", "syscall", "", "", "", "", "", "", "",
            "mp", "nx", "", "mmxext", "", "", "fxsr_opt", "pdpe1gb", "rdtscp", "", "lm",
            "3dnowext", "3dnow",
        ],
    },
];

/// The (leaf, subleaf) queries [`linux_extras`] needs answered.
pub fn named_queries() -> Vec<(u32, u32)> {
    let mut q: Vec<(u32, u32)> = Vec::new();
    for w in &NAMED_WORDS {
        if !q.contains(&(w.leaf, w.subleaf)) {
            q.push((w.leaf, w.subleaf));
        }
    }
    q
}

/// A CPU feature as Linux numbers it (`32 * word + bit`, arch/x86/include/asm/cpufeatures.h),
/// with its /proc/cpuinfo name ("" for bits Linux does not name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxFeature {
    pub number: u32,
    pub name: &'static str,
}

impl std::fmt::Display for LinuxFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            write!(f, "feature {}", self.number)
        } else {
            f.write_str(self.name)
        }
    }
}

/// The features a Linux guest on KVM would see beyond the JIT's CPUID, and those named in
/// `also` that it sees at all: `seen` answers [`named_queries`] (in that order) as the KVM guest
/// read them, `limit` is the JIT's (`jit::interp::cpuid_limit`). In [`NAMED_WORDS`] order.
pub fn linux_extras(
    seen: &[[u32; 4]],
    limit: impl Fn(u32, u32) -> [u32; 4],
    also: &[&str],
) -> Vec<LinuxFeature> {
    let queries = named_queries();
    let mut out = Vec::new();
    for w in &NAMED_WORDS {
        let Some(i) = queries.iter().position(|&q| q == (w.leaf, w.subleaf)) else {
            continue;
        };
        let Some(regs) = seen.get(i) else {
            continue;
        };
        let shown = regs[w.reg];
        let beyond = shown & !limit(w.leaf, w.subleaf)[w.reg];
        for (bit, &name) in w.names.iter().enumerate() {
            let asked = !name.is_empty() && also.contains(&name);
            if beyond & (1 << bit) != 0 || (asked && shown & (1 << bit) != 0) {
                out.push(LinuxFeature {
                    number: 32 * w.linux_word + bit as u32,
                    name,
                });
            }
        }
    }
    out
}

/// The longest `clearcpuid=` value Linux reads: cpu_parse_early_param() copies the option into
/// a 128-byte buffer (arch/x86/kernel/cpu/common.c, Linux 5.19 and later) and ignores the rest.
pub const CLEARCPUID_MAX_CHARS: usize = 127;

/// The `clearcpuid=` value that masks `features`, as Linux's feature numbers (shorter than
/// names, and every bit has one): as many as fit in [`CLEARCPUID_MAX_CHARS`], in order. Also
/// returns the features that did not fit.
pub fn clearcpuid_value(features: &[LinuxFeature]) -> (String, Vec<LinuxFeature>) {
    let mut value = String::new();
    let mut left = Vec::new();
    for f in features {
        let item = if value.is_empty() {
            f.number.to_string()
        } else {
            format!(",{}", f.number)
        };
        if left.is_empty() && value.len() + item.len() <= CLEARCPUID_MAX_CHARS {
            value.push_str(&item);
        } else {
            left.push(*f);
        }
    }
    (value, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up JIT: SSE2, SSE3 and CX16 in leaf 1, SMEP in leaf 7, XSAVEOPT in 0DH.1.
    fn jit(leaf: u32, subleaf: u32) -> [u32; 4] {
        match (leaf, subleaf) {
            (1, _) => [0, 0, 1 | 1 << 13, 1 << 25 | 1 << 26],
            (7, 0) => [0, 1 << 7, 0, 0],
            (0xd, 1) => [1, 0, 0, 0],
            _ => [0; 4],
        }
    }

    fn seen_with(words: &[((u32, u32), usize, u32)]) -> Vec<[u32; 4]> {
        named_queries()
            .iter()
            .map(|&q| {
                let mut r = [0; 4];
                for &(wq, reg, v) in words {
                    if wq == q {
                        r[reg] |= v;
                    }
                }
                r
            })
            .collect()
    }

    #[test]
    fn only_features_beyond_the_jit_are_listed_with_linux_numbers() {
        // KVM shows SSSE3 (1:ECX[9]) and AVX (1:ECX[28]) beside the JIT's SSE3 and CX16,
        // AVX2 (7:EBX[5]) beside SMEP, XSAVES (0DH.1:EAX[3]) beside XSAVEOPT, and the
        // unnamed 1:ECX[16].
        let seen = seen_with(&[
            ((1, 0), 2, 1 | 1 << 13 | 1 << 9 | 1 << 28 | 1 << 16),
            ((1, 0), 3, 1 << 25 | 1 << 26),
            ((7, 0), 1, 1 << 7 | 1 << 5),
            ((0xd, 1), 0, 1 | 1 << 3),
        ]);
        let extras = linux_extras(&seen, jit, &[]);
        let names: Vec<String> = extras.iter().map(|f| f.to_string()).collect();
        assert_eq!(names, ["ssse3", "feature 144", "avx", "xsaves", "avx2"]);
        // X86_FEATURE_SSSE3 is (4*32+ 9), XSAVES (10*32+ 3), AVX2 (9*32+ 5).
        let numbers: Vec<u32> = extras.iter().map(|f| f.number).collect();
        assert_eq!(numbers, [137, 144, 156, 323, 293]);
    }

    #[test]
    fn features_asked_for_are_listed_only_where_the_guest_sees_them() {
        // SSE3 and CX16 are within the JIT's limit but asked for; AES is asked for, not shown.
        let seen = seen_with(&[((1, 0), 2, 1 | 1 << 13)]);
        let extras = linux_extras(&seen, jit, &["pni", "cx16", "aes"]);
        let names: Vec<&str> = extras.iter().map(|f| f.name).collect();
        assert_eq!(names, ["pni", "cx16"]);
    }

    #[test]
    fn nothing_to_mask_when_kvm_shows_what_the_jit_has() {
        let seen = seen_with(&[((1, 0), 2, 1), ((7, 0), 1, 1 << 7)]);
        assert_eq!(linux_extras(&seen, jit, &[]), vec![]);
    }

    #[test]
    fn the_clearcpuid_value_stops_at_the_kernels_buffer() {
        let feature = |number| LinuxFeature { number, name: "" };
        let (value, left) = clearcpuid_value(&[feature(137), feature(1), feature(603)]);
        assert_eq!((value.as_str(), left), ("137,1,603", vec![]));
        // 31 three-digit numbers take 31 * 4 - 1 = 123 characters; a 32nd would make 127 and
        // fits, a 33rd does not, nor does anything after it.
        let many: Vec<LinuxFeature> = (300..334).map(feature).collect();
        let (value, left) = clearcpuid_value(&many);
        assert_eq!(value.len(), 127);
        assert!(value.ends_with(",331"));
        assert_eq!(left, vec![feature(332), feature(333)]);
        assert_eq!(clearcpuid_value(&[]), (String::new(), vec![]));
    }

    #[test]
    fn every_word_has_its_linux_number() {
        // cpufeatures.h: word 0 is CPUID 1 EDX, 1 is 80000001H EDX, 4 is 1 ECX, 6 is
        // 80000001H ECX, 9 is 7.0 EBX, 10 is 0DH.1 EAX, 16 is 7.0 ECX, 18 is 7.0 EDX.
        let word = |leaf: u32, subleaf: u32, reg: usize| {
            NAMED_WORDS
                .iter()
                .find(|w| (w.leaf, w.subleaf, w.reg) == (leaf, subleaf, reg))
                .map(|w| w.linux_word)
        };
        assert_eq!(word(1, 0, 3), Some(0));
        assert_eq!(word(0x8000_0001, 0, 3), Some(1));
        assert_eq!(word(1, 0, 2), Some(4));
        assert_eq!(word(0x8000_0001, 0, 2), Some(6));
        assert_eq!(word(7, 0, 1), Some(9));
        assert_eq!(word(0xd, 1, 0), Some(10));
        assert_eq!(word(7, 0, 2), Some(16));
        assert_eq!(word(7, 0, 3), Some(18));
        assert_eq!(
            named_queries().len(),
            4,
            "each (leaf, subleaf) is probed once"
        );
    }

    #[test]
    fn names_sit_at_the_manual_bit_positions() {
        // Spot checks against the SDM's CPUID tables (Vol. 2A, Table 3-10, 3-11 and leaf 07H).
        let name = |leaf: u32, reg: usize, bit: usize| {
            NAMED_WORDS
                .iter()
                .find(|w| w.leaf == leaf && w.reg == reg)
                .map(|w| w.names[bit])
        };
        assert_eq!(name(1, 3, 26), Some("sse2"));
        assert_eq!(name(1, 2, 9), Some("ssse3"));
        assert_eq!(name(1, 2, 19), Some("sse4_1"));
        assert_eq!(name(1, 2, 28), Some("avx"));
        assert_eq!(name(7, 1, 5), Some("avx2"));
        assert_eq!(name(7, 1, 16), Some("avx512f"));
        assert_eq!(name(7, 1, 29), Some("sha_ni"));
        assert_eq!(name(7, 2, 9), Some("vaes"));
        assert_eq!(name(0x8000_0001, 3, 29), Some("lm"));
        assert_eq!(name(0xd, 0, 3), Some("xsaves"));
    }

    #[test]
    fn too_many_queries_is_an_error() {
        let q = vec![(0, 0); MAX_QUERIES + 1];
        let r = guest_cpuid(&q, |_, _| -> Result<Box<dyn Vcpu>, String> {
            unreachable!("no vCPU is built for a rejected probe")
        });
        assert!(matches!(r, Err(ProbeError::TooManyQueries(n)) if n == MAX_QUERIES + 1));
    }
}
