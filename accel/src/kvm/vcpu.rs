//! [`KvmVcpu`]: the `vcpu::Vcpu` trait on a KVM vCPU.
//!
//! `run` loops on KVM_RUN and serves port and MMIO exits through the shared [`Buses`]; it
//! returns only for what the machine must see (HLT, a device request, a triple fault, a kick).
//! Exit decoding is the free function [`handle_exit`], so tests can feed it made-up exits.
//!
//! Two pieces of state live here rather than in KVM:
//! - HLT: without an in-kernel irqchip KVM refuses `KVM_MP_STATE_HALTED`, so a halted CPU is a
//!   flag of this struct. `run` on a halted vCPU returns `Halted` again without entering KVM
//!   (nothing can wake it until interrupt injection exists).
//! - Port and MMIO exits are only complete once KVM_RUN is entered again (the IN value reaches
//!   RAX, RIP moves past the instruction; Documentation/virt/kvm/api.rst, "KVM_RUN"). Before
//!   `run` returns after such an exit it re-enters with `immediate_exit` set, so `state()`
//!   always sees the finished instruction, as it would under the JIT.
//!
//! Exits the run cannot continue from (KVM_EXIT_INTERNAL_ERROR, FAIL_ENTRY, anything unknown)
//! end it with `VcpuError::EmulationFailure` naming the guest rip and the bytes there. One
//! internal error is not an end: where KVM's instruction emulator runs every instruction (a
//! software-emulated KVM), it reports UD0/UD1/UD2 as "cannot emulate"; a processor raises #UD
//! for them, so the guest gets the #UD.
//!
//! Kicks: see `kick.rs`. The tick timer runs only while `run` does.

use kvm_bindings::{
    kvm_run, kvm_xcr, kvm_xcrs, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_SIMUL_EX, KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vcpu::state::{cr0, rflags};
use vcpu::{Buses, CpuState, GuestRam, Kicker, RegionKind, Vcpu, VcpuError, VmExit};
use vmm_sys_util::ioctl::ioctl_with_ref;

use super::kick::{current_tid, ThreadTimer, TICK};
use super::syscall_check::{self, Verdict};
use super::vm::KvmVm;
use super::{convert, msr};
use crate::{AccelError, CpuidLimit};

// KVM_INTERRUPT: _IOW(KVMIO, 0x86, struct kvm_interrupt) (linux/kvm.h); kvm-ioctls has no
// wrapper for it because it is only used without an in-kernel irqchip.
vmm_sys_util::ioctl_iow_nr!(
    KVM_INTERRUPT,
    kvm_bindings::KVMIO,
    0x86,
    kvm_bindings::kvm_interrupt
);

/// XCR0 is extended control register 0 (SDM Vol. 1 13.3).
const XCR_XFEATURE_ENABLED_MASK: u32 = 0;
/// How far the TSC may move between a write and the probe's read (2^36 cycles: over 10 s at
/// any clock rate in use; a host counter that ignored the write is far beyond it unless the
/// host booted seconds ago).
const TSC_PROBE_TOLERANCE: u64 = 1 << 36;
/// The invalid-opcode exception (SDM Vol. 3A 6.15, "Interrupt 6").
const UD_VECTOR: u8 = 6;
/// The longest x86 instruction (SDM Vol. 2A 2.3.11).
const MAX_INSTRUCTION_BYTES: usize = 15;

/// A KVM vCPU in its own single-vCPU VM over the machine's guest memory.
pub struct KvmVcpu {
    fd: VcpuFd,
    vm: KvmVm,
    kicker: Kicker,
    halted: bool,
    /// The tick timer of the thread that last called `run`.
    timer: Option<ThreadTimer>,
    has_xcrs: bool,
    has_xsave: bool,
    has_immediate_exit: bool,
    /// The missing A20 mask has been reported for this vCPU.
    warned_a20: bool,
    /// Whether KVM_SET_MSRS really sets the guest TSC (probed at creation).
    tsc_settable: bool,
    /// A port, MMIO or MSR exit was served but KVM has not been re-entered to finish it.
    io_unfinished: bool,
    /// Guest writes of IA32_LSTAR exit to emu, which then ends the run: this KVM's SYSCALL is
    /// broken (see `syscall_check`).
    lstar_filtered: bool,
    /// On such a KVM, a state given with IA32_LSTAR already set (a restored snapshot): the
    /// next `run` ends at once, naming this rip and LSTAR.
    lstar_given: Option<(u64, u64)>,
    /// The CR8 value last handed to KVM in `kvm_run.cr8`, and IA32_APIC_BASE as KVM last
    /// reported it in `kvm_run.apic_base` (see [`KvmVcpu::sync_apic_in`] and `enter`).
    cr8_in: u64,
    apic_base_seen: Option<u64>,
}

impl std::fmt::Debug for KvmVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmVcpu")
            .field("halted", &self.halted)
            .finish_non_exhaustive()
    }
}

/// What the run loop does after one exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Served (port or MMIO access); enter the guest again.
    Resume,
    /// Served, and a device posted a platform request.
    DeviceRequest,
    /// KVM returned without a guest event (signal, interrupt window): check the kick flag.
    Interrupted,
    Halted,
    TripleFault,
    /// KVM_EXIT_INTERNAL_ERROR: details are in `kvm_run.internal`.
    InternalError,
    /// The guest wrote a filtered MSR (IA32_LSTAR, see `syscall_check`); KVM has not written it.
    MsrWrite {
        index: u32,
        value: u64,
    },
    /// The run cannot continue; the text says which exit and why.
    Failure(String),
}

/// Serve one exit. `io_size` is the width of one port access (`kvm_run.io.size`): a string
/// instruction (`REP OUTSB`) arrives as `count` accesses in one exit and is served one access
/// at a time, as the devices expect.
pub fn handle_exit(exit: VcpuExit<'_>, io_size: usize, buses: &mut Buses, ram: &GuestRam) -> Step {
    let io_size = io_size.max(1);
    match exit {
        VcpuExit::IoOut(port, data) => {
            let mut request = false;
            for chunk in data.chunks(io_size) {
                request |= buses.io_write(port, chunk);
            }
            if request || buses.request_pending() {
                Step::DeviceRequest
            } else {
                Step::Resume
            }
        }
        VcpuExit::IoIn(port, data) => {
            for chunk in data.chunks_mut(io_size) {
                buses.io_read(port, chunk);
            }
            Step::Resume
        }
        VcpuExit::MmioRead(gpa, data) => {
            buses.mmio_read(gpa, data);
            Step::Resume
        }
        VcpuExit::MmioWrite(gpa, data) => {
            if ram
                .region_of(gpa)
                .is_some_and(|r| r.kind == RegionKind::Rom)
            {
                log::debug!("guest write to ROM at {gpa:#x} ignored: {data:02x?}");
                return Step::Resume;
            }
            if buses.mmio_write(gpa, data) || buses.request_pending() {
                Step::DeviceRequest
            } else {
                Step::Resume
            }
        }
        VcpuExit::Hlt => Step::Halted,
        VcpuExit::Shutdown => Step::TripleFault,
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => Step::Interrupted,
        // The guest wrote CR8; `KvmVcpu::sync_apic_out` hands the value to the local APIC.
        VcpuExit::SetTpr => Step::Resume,
        VcpuExit::InternalError => Step::InternalError,
        VcpuExit::X86Wrmsr(w) => Step::MsrWrite {
            index: w.index,
            value: w.data,
        },
        VcpuExit::FailEntry(reason, cpu) => Step::Failure(format!(
            "KVM_EXIT_FAIL_ENTRY: the host CPU {cpu} refused VM entry, hardware reason {reason:#x}"
        )),
        other => Step::Failure(format!("unexpected KVM exit {other:?}")),
    }
}

/// Whether `code` starts with an opcode defined to raise #UD: UD0 (0F FF), UD1 (0F B9) or UD2
/// (0F 0B), after any legacy prefixes (SDM Vol. 2B "UD"; prefixes, Vol. 2A 2.1.1).
pub fn is_undefined_opcode(code: &[u8]) -> bool {
    let is_prefix = |b: &u8| {
        matches!(
            b,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
        )
    };
    let rest: Vec<u8> = code.iter().skip_while(|b| is_prefix(b)).copied().collect();
    matches!(rest.as_slice(), [0x0f, 0x0b | 0xb9 | 0xff, ..])
}

/// The end of a run on a KVM whose SYSCALL is broken, once the guest has a 64-bit system-call
/// entry point (IA32_LSTAR = `lstar`).
fn syscall_unsupported(rip: u64, lstar: u64) -> VcpuError {
    VcpuError::Unsupported {
        rip,
        what: format!(
            "the guest has set its 64-bit system-call entry point (IA32_LSTAR = {lstar:#x}), and \
             this KVM runs SYSCALL from ring 3 without entering ring 0"
        ),
    }
}

/// Name an internal-error sub-code (include/uapi/linux/kvm.h). For an emulation failure the
/// data words repeat the instruction bytes the error names anyway, so they are left out.
fn internal_error_text(suberror: u32, data: &[u64]) -> String {
    let what = match suberror {
        KVM_INTERNAL_ERROR_EMULATION => {
            return "KVM_EXIT_INTERNAL_ERROR: KVM's instruction emulator cannot emulate it".into()
        }
        KVM_INTERNAL_ERROR_SIMUL_EX => "an exception occurred while delivering another",
        KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
        KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected hardware exit reason",
        _ => "unknown sub-error",
    };
    format!("KVM_EXIT_INTERNAL_ERROR sub-error {suberror} ({what}), data {data:x?}")
}

fn backend(op: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> VcpuError {
    move |e| VcpuError::Backend(format!("{op}: {e}"))
}

fn invalid(op: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> VcpuError {
    move |e| VcpuError::InvalidState(format!("KVM refused {op}: {e}"))
}

impl KvmVcpu {
    /// A vCPU over `ram` (every region becomes a KVM memory slot), starting in `initial`, with
    /// the CPUID KVM supports on this host (less x2APIC and the TSC-deadline timer).
    pub fn new(ram: &GuestRam, initial: &CpuState) -> Result<KvmVcpu, AccelError> {
        Self::create(ram, initial, None, true)
    }

    /// Like [`KvmVcpu::new`], with the guest's CPUID capped by another backend's (see
    /// [`super::vm::guest_cpuid`]): the machine then looks the same on both.
    pub fn with_cpuid_limit(
        ram: &GuestRam,
        initial: &CpuState,
        limit: CpuidLimit,
    ) -> Result<KvmVcpu, AccelError> {
        Self::create(ram, initial, Some(limit), true)
    }

    /// `check_syscall`: consult (and on first use run) the SYSCALL probe, and where SYSCALL is
    /// broken have guest writes of IA32_LSTAR end the run (the probe's own vCPU does not).
    fn create(
        ram: &GuestRam,
        initial: &CpuState,
        limit: Option<CpuidLimit>,
        check_syscall: bool,
    ) -> Result<KvmVcpu, AccelError> {
        let vm = KvmVm::new(ram)?;
        let fd = vm.create_vcpu(limit)?;
        let mut v = KvmVcpu {
            fd,
            lstar_filtered: check_syscall
                && syscall_check::verdict() == Verdict::Broken
                && syscall_check::filter_lstar_writes(vm.vm_fd()),
            lstar_given: None,
            has_xcrs: vm.has_xcrs(),
            has_xsave: vm.has_xsave(),
            has_immediate_exit: vm.has_immediate_exit(),
            vm,
            kicker: Kicker::new(),
            halted: false,
            timer: None,
            io_unfinished: false,
            cr8_in: 0,
            apic_base_seen: None,
            tsc_settable: true,
            warned_a20: false,
        };
        v.set_state(initial)?;
        v.tsc_settable = v.tsc_follows(initial.tsc)?;
        if !v.tsc_settable {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::info!(
                    "this KVM ignores writes to the TSC: guests see the host's time-stamp counter"
                )
            });
        }
        Ok(v)
    }

    /// Make `kicker` the handle that gets this vCPU out of `run`, in place of its own: a machine
    /// that moves a guest here from another backend keeps the kicker its controls already hold.
    pub fn share_kicker(&mut self, kicker: Kicker) {
        self.kicker = kicker;
    }

    /// Whether the guest TSC reads as `written` (plus the time since): the probe of whether KVM
    /// honours TSC writes, made with the initial state's own value so that no extra write can
    /// trip KVM's TSC synchronisation heuristics.
    fn tsc_follows(&mut self, written: u64) -> Result<bool, AccelError> {
        let mut read = msr::to_entries(&[msr::IA32_TIME_STAMP_COUNTER], None);
        self.fd.get_msrs(&mut read).map_err(|e| AccelError::Kvm {
            op: "KVM_GET_MSRS (TSC)",
            errno: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let drift = read.as_slice()[0].data.wrapping_sub(written);
        Ok(drift < TSC_PROBE_TOLERANCE)
    }

    /// Whether `set_state` can set the guest TSC. The software-emulated KVM of our build hosts
    /// ignores TSC writes (KVM_SET_MSRS and the TSC offset attribute alike): its guests always
    /// read the host's counter.
    pub fn tsc_is_settable(&self) -> bool {
        self.tsc_settable
    }

    /// The tick timer aimed at the calling thread, made on first use from each thread.
    fn thread_timer(&mut self) -> Result<&ThreadTimer, VcpuError> {
        if self.timer.as_ref().is_none_or(|t| t.tid() != current_tid()) {
            self.timer = Some(
                ThreadTimer::for_current_thread().map_err(|e| VcpuError::Backend(e.to_string()))?,
            );
        }
        Ok(self.timer.as_ref().expect("timer was just made"))
    }

    /// Finish a served port/MMIO exit inside KVM without running guest code.
    fn finish_io(&mut self) -> Result<(), VcpuError> {
        if !self.io_unfinished {
            return Ok(());
        }
        self.io_unfinished = false;
        if !self.has_immediate_exit {
            log::debug!("KVM lacks immediate_exit: the last port access completes on the next run");
            return Ok(());
        }
        self.fd.set_kvm_immediate_exit(1);
        let r = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Ok(()) => Ok(()),
            Err(e) => Err(VcpuError::Backend(format!("KVM_RUN (completing I/O): {e}"))),
        }
    }

    /// Before KVM_RUN: without an in-kernel local APIC, KVM loads CR8 from `kvm_run.cr8` at
    /// every entry (KVM API, "kvm_run": cr8 is "in (pre_kvm_run), out (post_kvm_run)"), so it
    /// gets the user-space APIC's TPR[7:4] (SDM Vol. 3A 11.8.6.1).
    fn sync_apic_in(&mut self, buses: &Buses) {
        if let Some(tpr) = buses.task_priority() {
            self.cr8_in = u64::from(tpr >> 4);
            self.fd.get_kvm_run().cr8 = self.cr8_in;
        }
    }

    /// Enter KVM once. Returns the step and whether it was a port/MMIO exit.
    fn enter(&mut self, buses: &mut Buses) -> Result<Step, VcpuError> {
        self.sync_apic_in(buses);
        let run_ptr: *const kvm_run = self.fd.get_kvm_run();
        let ram = self.vm.ram();
        let result = self.fd.run();
        // After the exit, a CR8 the guest wrote (KVM_EXIT_SET_TPR, or any change since entry)
        // goes to the local APIC's TPR, and a changed IA32_APIC_BASE (KVM holds the MSR) to
        // the local APIC's global enable.
        // SAFETY: `run_ptr` points into the kvm_run mapping owned by `self.fd`; cr8 and
        // apic_base are plain fields KVM wrote before returning, read here without a reference
        // that could alias the exit data `result` borrows.
        let (cr8, apic_base) = unsafe {
            (
                std::ptr::addr_of!((*run_ptr).cr8).read(),
                std::ptr::addr_of!((*run_ptr).apic_base).read(),
            )
        };
        if buses.task_priority().is_some() && cr8 != self.cr8_in {
            buses.set_task_priority(((cr8 & 0xf) as u8) << 4);
            self.cr8_in = cr8;
        }
        if self.apic_base_seen != Some(apic_base) {
            self.apic_base_seen = Some(apic_base);
            buses.set_apic_base(apic_base);
        }
        let exit = match result {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.io_unfinished = false;
                return Ok(Step::Interrupted);
            }
            Err(e) => return Err(VcpuError::Backend(format!("KVM_RUN: {e}"))),
        };
        let is_io = matches!(
            exit,
            VcpuExit::IoIn(..)
                | VcpuExit::IoOut(..)
                | VcpuExit::MmioRead(..)
                | VcpuExit::MmioWrite(..)
                | VcpuExit::X86Wrmsr(..)
        );
        // SAFETY: `run_ptr` points into the kvm_run mapping owned by `self.fd`, alive for this
        // whole function. `io.size` lies in the exit union at the start of the page, apart from
        // the port data (at `io.data_offset`, a later page) that `exit` borrows; it is only
        // meaningful, and only used, for port exits.
        let io_size = unsafe { std::ptr::addr_of!((*run_ptr).__bindgen_anon_1.io.size).read() };
        let step = handle_exit(exit, usize::from(io_size), buses, ram);
        self.io_unfinished = is_io;
        Ok(step)
    }

    /// The error for an exit the run cannot continue from: names the guest rip and the bytes
    /// there.
    fn failure(&self, reason: String) -> VcpuError {
        match self.code_at_rip() {
            Ok((rip, bytes)) => {
                log::debug!("KVM cannot continue at rip {rip:#x} (bytes {bytes:02x?}): {reason}");
                VcpuError::EmulationFailure { rip, bytes, reason }
            }
            Err(e) => VcpuError::EmulationFailure {
                rip: 0,
                bytes: Vec::new(),
                reason: format!("{reason} (guest registers unreadable: {e})"),
            },
        }
    }

    /// KVM_EXIT_INTERNAL_ERROR. When KVM's instruction emulator met an architecturally
    /// undefined opcode (it does on hosts where it runs every instruction, not only the
    /// exits of hardware virtualisation), the guest gets the #UD a processor raises and the run
    /// goes on; anything else ends the run. Returns `Ok(())` when the guest may continue.
    fn internal_error(&mut self) -> Result<(), VcpuError> {
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the union member
        // the kernel filled.
        let internal = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal };
        let n = (internal.ndata as usize).min(internal.data.len());
        let reason = internal_error_text(internal.suberror, &internal.data[..n]);
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
            if let Ok((rip, bytes)) = self.code_at_rip() {
                if is_undefined_opcode(&bytes) {
                    log::debug!("undefined opcode {bytes:02x?} at rip {rip:#x}: #UD to the guest");
                    let mut events = self
                        .fd
                        .get_vcpu_events()
                        .map_err(backend("KVM_GET_VCPU_EVENTS"))?;
                    events.exception.injected = 1;
                    events.exception.nr = UD_VECTOR;
                    events.exception.has_error_code = 0;
                    events.exception.error_code = 0;
                    events.flags = 0;
                    self.fd
                        .set_vcpu_events(&events)
                        .map_err(backend("KVM_SET_VCPU_EVENTS (#UD)"))?;
                    return Ok(());
                }
            }
        }
        Err(self.failure(reason))
    }

    /// RIP and up to 15 bytes of guest code at CS.base + RIP (through the guest page tables
    /// when paging is on).
    fn code_at_rip(&self) -> Result<(u64, Vec<u8>), VcpuError> {
        let regs = self.fd.get_regs().map_err(backend("KVM_GET_REGS"))?;
        let sregs = self.fd.get_sregs().map_err(backend("KVM_GET_SREGS"))?;
        let linear = sregs.cs.base.wrapping_add(regs.rip);
        let ram = self.vm.ram();
        let mut bytes = Vec::with_capacity(MAX_INSTRUCTION_BYTES);
        for i in 0..MAX_INSTRUCTION_BYTES as u64 {
            let la = linear.wrapping_add(i);
            let gpa = if sregs.cr0 & cr0::PG != 0 {
                match self.fd.translate_gva(la) {
                    Ok(t) if t.valid != 0 => t.physical_address,
                    _ => break,
                }
            } else {
                la
            };
            let mut b = [0u8];
            if ram.read(gpa, &mut b).is_err() {
                break;
            }
            bytes.push(b[0]);
        }
        Ok((regs.rip, bytes))
    }

    /// The guest wrote filtered MSR `index`: write it for the guest (KVM_SET_MSRS is not
    /// filtered), or have KVM raise the #GP(0) a refused WRMSR raises (SDM Vol. 2B, "WRMSR").
    /// A written IA32_LSTAR ends the run: the guest may run user programs from now on, whose
    /// system calls this KVM cannot run (`syscall_check`).
    fn msr_write(&mut self, index: u32, value: u64) -> Result<(), VcpuError> {
        let mut entries = msr::to_entries(&[index], None);
        entries.as_mut_slice()[0].data = value;
        let written = self
            .fd
            .set_msrs(&entries)
            .map_err(backend("KVM_SET_MSRS"))?;
        if written != 1 {
            log::debug!("guest WRMSR {index:#x} = {value:#x} refused by KVM: #GP to the guest");
            // The exit being finished is KVM_EXIT_X86_WRMSR, so `msr` is the union member in
            // use; `error` is the field user space sets (KVM API, "KVM_EXIT_X86_WRMSR").
            self.fd.get_kvm_run().__bindgen_anon_1.msr.error = 1;
            return Ok(());
        }
        if index != msr::IA32_LSTAR || !self.lstar_filtered {
            return Ok(());
        }
        let rip = self.fd.get_regs().map_err(backend("KVM_GET_REGS"))?.rip;
        Err(syscall_unsupported(rip, value))
    }

    /// Run the SYSCALL probe guest (`syscall_check::probe_guest`) on a vCPU of its own.
    pub(super) fn probe_syscall() -> Verdict {
        match Self::run_probe() {
            Ok(v) => v,
            Err(e) => {
                log::debug!("the SYSCALL probe failed: {e}");
                Verdict::Unknown
            }
        }
    }

    fn run_probe() -> Result<Verdict, String> {
        let (memory, state) = syscall_check::probe_guest();
        let ram = GuestRam::new(&[vcpu::RegionSpec {
            base: 0,
            size: syscall_check::PROBE_MEMORY,
            kind: RegionKind::Ram,
        }])
        .map_err(|e| e.to_string())?;
        for (addr, bytes) in &memory {
            ram.write_host(*addr, bytes).map_err(|e| e.to_string())?;
        }
        let mut v = Self::create(&ram, &state, None, false).map_err(|e| e.to_string())?;
        // A few tries: a signal may interrupt KVM_RUN before the guest gets anywhere.
        for _ in 0..4 {
            match v.fd.run() {
                Ok(VcpuExit::IoOut(port, _)) if port == syscall_check::PROBE_PORT => {
                    let sregs = v.fd.get_sregs().map_err(|e| e.to_string())?;
                    return Ok(syscall_check::judge_probe(sregs.cs.selector, sregs.cs.dpl));
                }
                Ok(VcpuExit::Intr) => {}
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Ok(other) => return Err(format!("its guest stopped with {other:?}")),
                Err(e) => return Err(format!("KVM_RUN: {e}")),
            }
        }
        Err("KVM_RUN kept being interrupted".into())
    }

    fn rflags_if(&self) -> Result<bool, VcpuError> {
        let regs = self.fd.get_regs().map_err(backend("KVM_GET_REGS"))?;
        Ok(regs.rflags & rflags::IF != 0)
    }

    /// Sample the machine's INTR line (letting its timers raise what is due). With no
    /// in-kernel irqchip, user space injects external interrupts itself (KVM API, "KVM_INTERRUPT"):
    /// when KVM says the guest can take one now (`ready_for_interrupt_injection` and IF), the
    /// vector is acknowledged and queued; otherwise KVM is asked to exit as soon as the
    /// interrupt window opens.
    fn offer_interrupt(&mut self, buses: &mut Buses) -> Result<(), VcpuError> {
        let pending = buses.poll_interrupt();
        let run = self.fd.get_kvm_run();
        if !pending {
            run.request_interrupt_window = 0;
            return Ok(());
        }
        if run.ready_for_interrupt_injection == 0 || run.if_flag == 0 {
            run.request_interrupt_window = 1;
            return Ok(());
        }
        run.request_interrupt_window = 0;
        if let Some(vector) = buses.acknowledge_interrupt() {
            let irq = kvm_bindings::kvm_interrupt {
                irq: u32::from(vector),
            };
            // SAFETY: KVM_INTERRUPT reads one `struct kvm_interrupt` from the pointer, which
            // refers to a live local of exactly that type; the fd is this vCPU's.
            let ret = unsafe { ioctl_with_ref(&self.fd, KVM_INTERRUPT(), &irq) };
            if ret != 0 {
                return Err(VcpuError::Backend(format!(
                    "KVM_INTERRUPT({vector:#x}): {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        Ok(())
    }

    fn run_loop(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        loop {
            if self.kicker.take() {
                return Ok(VmExit::Kicked);
            }
            if !buses.a20.enabled() && !self.warned_a20 {
                // KVM has no A20 mask; emulating it would mean re-mapping the second megabyte
                // as an alias of the first whenever the gate moves.
                log::warn!(
                    "the guest turned the A20 gate off; KVM does not mask address bit 20, \
                     so the 1 MiB wrap-around of the 8086 does not happen under KVM"
                );
                self.warned_a20 = true;
            }
            self.offer_interrupt(buses)?;
            match self.enter(buses)? {
                Step::Resume | Step::Interrupted => {}
                Step::DeviceRequest => return Ok(VmExit::DeviceRequest),
                Step::Halted => {
                    self.halted = true;
                    return Ok(VmExit::Halted {
                        interrupts_enabled: self.rflags_if()?,
                    });
                }
                Step::TripleFault => {
                    let rip = self.fd.get_regs().map_err(backend("KVM_GET_REGS"))?.rip;
                    log::info!("guest triple fault (KVM_EXIT_SHUTDOWN) at rip {rip:#x}");
                    return Ok(VmExit::TripleFault { rip });
                }
                Step::InternalError => self.internal_error()?,
                Step::MsrWrite { index, value } => self.msr_write(index, value)?,
                Step::Failure(reason) => return Err(self.failure(reason)),
            }
        }
    }
}

impl Vcpu for KvmVcpu {
    fn backend_name(&self) -> &'static str {
        "kvm"
    }

    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        if let Some((rip, lstar)) = self.lstar_given.take() {
            return Err(syscall_unsupported(rip, lstar));
        }
        if self.halted {
            let interrupts_enabled = self.rflags_if()?;
            if !(interrupts_enabled && buses.poll_interrupt()) {
                return Ok(VmExit::Halted { interrupts_enabled });
            }
            // An interrupt wakes the CPU; `run_loop` injects it.
            self.halted = false;
        }
        self.thread_timer()?
            .arm(TICK, TICK)
            .map_err(|e| VcpuError::Backend(e.to_string()))?;
        let result = self.run_loop(buses);
        let finished = self.finish_io();
        if let Some(t) = &self.timer {
            t.disarm().map_err(|e| VcpuError::Backend(e.to_string()))?;
        }
        let exit = result?;
        finished?;
        Ok(exit)
    }

    fn state(&mut self) -> Result<CpuState, VcpuError> {
        self.finish_io()?;
        let mut s = CpuState::reset();
        let regs = self.fd.get_regs().map_err(backend("KVM_GET_REGS"))?;
        convert::regs_from_kvm(&regs, &mut s);
        let sregs = self.fd.get_sregs().map_err(backend("KVM_GET_SREGS"))?;
        convert::sregs_from_kvm(&sregs, &mut s);
        s.fx = if self.has_xsave {
            convert::fpu_from_xsave(&self.fd.get_xsave().map_err(backend("KVM_GET_XSAVE"))?)
        } else {
            convert::fpu_from_kvm(&self.fd.get_fpu().map_err(backend("KVM_GET_FPU"))?)
        };
        let mut msrs = msr::to_entries(&msr::CARRIED, None);
        let n = self
            .fd
            .get_msrs(&mut msrs)
            .map_err(backend("KVM_GET_MSRS"))?;
        if n != msr::CARRIED.len() {
            return Err(VcpuError::Backend(format!(
                "KVM_GET_MSRS read {n} of {} MSRs; MSR {:#x} is not readable",
                msr::CARRIED.len(),
                msr::CARRIED[n]
            )));
        }
        msr::apply(msrs.as_slice(), &mut s);
        let dr = self
            .fd
            .get_debug_regs()
            .map_err(backend("KVM_GET_DEBUGREGS"))?;
        convert::debugregs_from_kvm(&dr, &mut s);
        if self.has_xcrs {
            let xcrs = self.fd.get_xcrs().map_err(backend("KVM_GET_XCRS"))?;
            let n = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
            if let Some(x) = xcrs.xcrs[..n]
                .iter()
                .find(|x| x.xcr == XCR_XFEATURE_ENABLED_MASK)
            {
                s.xcr0 = x.value;
            }
        }
        let events = self
            .fd
            .get_vcpu_events()
            .map_err(backend("KVM_GET_VCPU_EVENTS"))?;
        convert::events_from_kvm(&events, convert::bitmap_interrupt(&sregs), &mut s);
        s.halted = u8::from(self.halted);
        Ok(s)
    }

    fn set_state(&mut self, s: &CpuState) -> Result<(), VcpuError> {
        self.finish_io()?;
        self.fd
            .set_sregs(&convert::sregs_to_kvm(s))
            .map_err(invalid(
                "KVM_SET_SREGS (segments, control registers, EFER, APIC base)",
            ))?;
        self.fd
            .set_regs(&convert::regs_to_kvm(s))
            .map_err(invalid("KVM_SET_REGS"))?;
        if self.has_xsave {
            let mut x = self.fd.get_xsave().map_err(backend("KVM_GET_XSAVE"))?;
            convert::fpu_into_xsave(&s.fx, &mut x);
            // SAFETY: `has_xsave` checked that KVM's XSAVE area fits in `kvm_xsave`
            // (KVM_CAP_XSAVE2), so KVM reads no further than `x`.
            unsafe { self.fd.set_xsave(&x) }.map_err(invalid("KVM_SET_XSAVE"))?;
        } else {
            self.fd
                .set_fpu(&convert::fpu_to_kvm(&s.fx))
                .map_err(invalid("KVM_SET_FPU"))?;
        }
        let msrs = msr::to_entries(&msr::CARRIED, Some(s));
        let n = self.fd.set_msrs(&msrs).map_err(invalid("KVM_SET_MSRS"))?;
        if n != msr::CARRIED.len() {
            let e = &msrs.as_slice()[n];
            return Err(VcpuError::InvalidState(format!(
                "KVM refused MSR {:#x} = {:#x}",
                e.index, e.data
            )));
        }
        self.fd
            .set_debug_regs(&convert::debugregs_to_kvm(s))
            .map_err(invalid("KVM_SET_DEBUGREGS"))?;
        if self.has_xcrs {
            let mut xcrs = kvm_xcrs {
                nr_xcrs: 1,
                ..kvm_xcrs::default()
            };
            xcrs.xcrs[0] = kvm_xcr {
                xcr: XCR_XFEATURE_ENABLED_MASK,
                reserved: 0,
                value: s.xcr0,
            };
            self.fd.set_xcrs(&xcrs).map_err(invalid("KVM_SET_XCRS"))?;
        } else if s.xcr0 != 1 {
            return Err(VcpuError::InvalidState(format!(
                "XCR0 = {:#x} but this KVM has no XSAVE support (only x87, XCR0 = 1)",
                s.xcr0
            )));
        }
        self.fd
            .set_vcpu_events(&convert::events_to_kvm(s))
            .map_err(invalid("KVM_SET_VCPU_EVENTS"))?;
        self.halted = s.halted != 0;
        self.apic_base_seen = None;
        self.lstar_given = (self.lstar_filtered && s.lstar != 0).then_some((s.rip, s.lstar));
        Ok(())
    }

    fn kicker(&self) -> Kicker {
        self.kicker.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::{DebugCon, DebugExit, SharedBuffer};
    use vcpu::RegionSpec;

    fn ram_and_rom() -> GuestRam {
        GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: 0x1000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: 0xf0000,
                size: 0x1000,
                kind: RegionKind::Rom,
            },
        ])
        .unwrap()
    }

    fn buses_with_debug_ports(out: &SharedBuffer) -> Buses {
        let mut buses = Buses::new();
        buses
            .io
            .insert(0xe9, 1, Box::new(DebugCon::new(Box::new(out.clone()))))
            .unwrap();
        let req = buses.requests();
        buses
            .io
            .insert(0xf4, 4, Box::new(DebugExit::new(req)))
            .unwrap();
        buses
    }

    #[test]
    fn string_port_output_is_served_one_access_at_a_time() {
        let out = SharedBuffer::new();
        let mut buses = buses_with_debug_ports(&out);
        let ram = ram_and_rom();
        let step = handle_exit(VcpuExit::IoOut(0xe9, b"ok"), 1, &mut buses, &ram);
        assert_eq!(step, Step::Resume);
        assert_eq!(out.contents(), b"ok");
        let step = handle_exit(VcpuExit::IoOut(0xf4, &[3, 0, 0, 0]), 4, &mut buses, &ram);
        assert_eq!(step, Step::DeviceRequest);
    }

    #[test]
    fn port_input_fills_every_access() {
        let out = SharedBuffer::new();
        let mut buses = buses_with_debug_ports(&out);
        let mut data = [0u8; 4];
        let step = handle_exit(
            VcpuExit::IoIn(0xe9, &mut data),
            2,
            &mut buses,
            &ram_and_rom(),
        );
        assert_eq!(step, Step::Resume);
        assert_eq!(data, [0xe9, 0, 0xe9, 0]);
    }

    #[test]
    fn rom_and_unclaimed_mmio_writes_are_dropped() {
        let mut buses = Buses::new();
        let ram = ram_and_rom();
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0xf0010, &[1]), 0, &mut buses, &ram),
            Step::Resume
        );
        let mut data = [0u8; 2];
        assert_eq!(
            handle_exit(
                VcpuExit::MmioRead(0xfee0_0000, &mut data),
                0,
                &mut buses,
                &ram
            ),
            Step::Resume
        );
        assert_eq!(data, [0xff, 0xff]);
    }

    #[test]
    fn ending_exits_map_to_their_steps() {
        let mut buses = Buses::new();
        let ram = ram_and_rom();
        let mut step = |e| handle_exit(e, 0, &mut buses, &ram);
        assert_eq!(step(VcpuExit::Hlt), Step::Halted);
        assert_eq!(step(VcpuExit::Shutdown), Step::TripleFault);
        assert_eq!(step(VcpuExit::Intr), Step::Interrupted);
        assert_eq!(step(VcpuExit::InternalError), Step::InternalError);
        match step(VcpuExit::FailEntry(0x21, 1)) {
            Step::Failure(text) => assert!(text.contains("FAIL_ENTRY") && text.contains("0x21")),
            other => panic!("{other:?}"),
        }
        match step(VcpuExit::Unknown) {
            Step::Failure(text) => assert!(text.contains("Unknown"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_vcpu_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<KvmVcpu>();
    }

    #[test]
    fn undefined_opcodes_are_recognised_after_prefixes() {
        assert!(is_undefined_opcode(&[0x0f, 0x0b, 0x90]));
        assert!(is_undefined_opcode(&[0x66, 0xf0, 0x0f, 0xb9, 0xc0]));
        assert!(is_undefined_opcode(&[0x0f, 0xff]));
        assert!(!is_undefined_opcode(&[0x0f, 0x05]));
        assert!(!is_undefined_opcode(&[0xf3, 0x0f, 0xb8, 0xc1]));
        assert!(!is_undefined_opcode(&[0x0f]));
    }
}
