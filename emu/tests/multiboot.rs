//! `emu run --kernel` with Multiboot v1 kernels, as kvm-unit-tests and GRUB users boot them:
//! test-roms/multiboot/kernel.asm built as an ELF32 and as a flat a.out-kludge image, with a
//! command line and a module, on the JIT and on KVM, against the output QEMU's own Multiboot
//! loader gives the same kernel (written down below, and compared live when QEMU is installed).

mod common;

use common::kvm_usable;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// What the kernel prints under `qemu-system-x86_64 -m 128M -kernel K -append "hello
/// multiboot" -initrd "mod.txt with arg"`, with "KERNEL" for the kernel's path.
const EXPECTED: &str = "multiboot kernel
ok eax holds the boot magic
ok protected mode, paging off
ok interrupts off
ok memory, command line, modules and memory map present
ok mem_lower is 600-640 KiB
ok mem_upper is 124-127 MiB
cmdline KERNEL hello multiboot
modules 00000001
ok module is page aligned
module string mod.txt with arg
module text module text here
ok memory map has RAM from 1 MiB to 16 MiB
ok flat data segment
PASS
";
const PASS_STATUS: i32 = 33;

struct Built {
    dir: PathBuf,
    elf: PathBuf,
    aout: PathBuf,
}

fn run_tool(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install nasm and binutils)"));
    assert!(status.success(), "{cmd:?} failed");
}

/// Both builds of the kernel, and the module file, in a scratch directory.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-roms/multiboot/kernel.asm");
        let dir = std::env::temp_dir().join(format!("emu-multiboot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (obj, elf, aout) = (dir.join("k.o"), dir.join("k.elf"), dir.join("k-aout.bin"));
        run_tool(
            Command::new("nasm")
                .args(["-f", "elf32", "-o"])
                .arg(&obj)
                .arg(&src),
        );
        run_tool(
            Command::new("ld")
                .args(["-m", "elf_i386", "-Ttext=0x100000", "-e", "start", "-o"])
                .arg(&elf)
                .arg(&obj),
        );
        run_tool(
            Command::new("nasm")
                .args(["-f", "bin", "-DAOUT", "-o"])
                .arg(&aout)
                .arg(&src),
        );
        std::fs::write(dir.join("mod.txt"), "module text here\n").unwrap();
        Built { dir, elf, aout }
    })
}

fn expected_for(kernel: &Path) -> String {
    EXPECTED.replace("KERNEL", kernel.file_name().unwrap().to_str().unwrap())
}

/// Run emu in the scratch directory (so the kernel and module paths are relative, as written).
fn emu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emu"))
        .current_dir(&built().dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn boot(kernel: &Path, accel: &str) -> Output {
    let name = kernel.file_name().unwrap().to_str().unwrap();
    emu(&[
        "run",
        "--accel",
        accel,
        "--memory",
        "128M",
        "--time-limit",
        "60",
        "--kernel",
        name,
        "--append",
        "hello multiboot",
        "--initrd",
        "mod.txt with arg",
    ])
}

fn check(kernel: &Path, accel: &str) {
    let out = boot(kernel, accel);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected_for(kernel),
        "{} on {accel}; stderr: {}",
        kernel.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(PASS_STATUS));
}

#[test]
fn elf32_kernel_boots_on_the_jit() {
    check(&built().elf, "jit");
}

#[test]
fn aout_kludge_kernel_boots_on_the_jit() {
    check(&built().aout, "jit");
}

#[test]
fn multiboot_kernels_boot_on_kvm() {
    if kvm_usable() {
        check(&built().elf, "kvm");
        check(&built().aout, "kvm");
    }
}

/// The written-down expectation is QEMU's output: check it still is, when QEMU is here.
#[test]
fn qemu_prints_the_same() {
    let b = built();
    let probe = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        return;
    }
    for kernel in [&b.elf, &b.aout] {
        let name = kernel.file_name().unwrap().to_str().unwrap();
        let out = Command::new("timeout")
            .current_dir(&b.dir)
            .args(["60", "qemu-system-x86_64", "-accel", "tcg", "-m", "128M"])
            .args(["-display", "none", "-nodefaults", "-kernel", name])
            .args(["-append", "hello multiboot", "-initrd", "mod.txt with arg"])
            .args(["-chardev", "stdio,id=out", "-device"])
            .args(["isa-debugcon,iobase=0xe9,chardev=out", "-device"])
            .arg("isa-debug-exit,iobase=0xf4,iosize=4")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected_for(kernel));
        assert_eq!(out.status.code(), Some(PASS_STATUS));
    }
}

#[test]
fn bad_kernels_and_arguments_are_clear_errors() {
    let dir = &built().dir;
    // Not a kernel at all.
    std::fs::write(dir.join("junk.bin"), vec![0x90u8; 10000]).unwrap();
    let out = emu(&["run", "--accel", "jit", "--kernel", "junk.bin"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Multiboot header"), "{err}");
    // A Linux bzImage goes to the Linux loader, which names what is wrong with this one.
    let mut bz = vec![0u8; 0x1000];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(dir.join("bzImage"), bz).unwrap();
    let out = emu(&["run", "--accel", "jit", "--kernel", "bzImage"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("boot protocol 0.00 is too old"), "{err}");
    // Missing files are named.
    let out = emu(&["run", "--kernel", "nonexistent.elf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent.elf"));
    let name = built()
        .elf
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out = emu(&["run", "--kernel", &name, "--initrd", "missing-module.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing-module.txt"));
    // --append needs --kernel; --kernel and --bios exclude each other.
    assert_eq!(emu(&["run", "--append", "x"]).status.code(), Some(2));
    assert_eq!(
        emu(&["run", "--kernel", &name, "--bios", "x.bin"])
            .status
            .code(),
        Some(2)
    );
}
