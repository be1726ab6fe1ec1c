//! The way from Rust into translated code.
//!
//! A translated block leaves for its successor, when the successor's code is known (a linked
//! chain slot, a jump-cache hit), with a tail call: its frame is gone before the successor's is
//! built, and each exit branches from its own site, so the host's branch predictor learns each
//! transition. Returning the successor's address to a loop in the dispatcher instead cost a
//! return and an indirect call from one shared site, mispredicted whenever the next block
//! differs from the last one (`cargo bench -p jit --bench chain`).
//!
//! Tail calls need Cranelift's `tail` calling convention on both sides, which Rust cannot call.
//! [`TailEntry`] is a function in the host's own convention, compiled once per vCPU, that calls
//! a block and returns what the chain of blocks it continued into finally returned.

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

use crate::cache::{block_signature, host_isa, BlockFn, CacheError};
use crate::context::JitContext;

/// `enter(ctx, block) -> u64` in the host's C calling convention.
type EnterFn = unsafe extern "C" fn(*mut JitContext, *const u8) -> u64;

/// The compiled entry trampoline and the module owning its code.
pub struct TailEntry {
    /// Kept alive for the code; never freed before the vCPU goes.
    _module: JITModule,
    enter: EnterFn,
}

impl TailEntry {
    /// Compile the trampoline for the host.
    pub fn new() -> Result<Self, CacheError> {
        let codegen = |e: &dyn std::fmt::Display| CacheError::Codegen(e.to_string());
        let isa = host_isa()?;
        let ptr = isa.pointer_type();
        let mut module = JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names()));
        let mut sig = Signature::new(isa.default_call_conv());
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(ptr));
        sig.returns.push(AbiParam::new(types::I64));
        let id = module
            .declare_function("enter", Linkage::Local, &sig)
            .map_err(|e| codegen(&e))?;
        let mut cl = module.make_context();
        cl.func.signature = sig;
        cl.func.name = UserFuncName::user(0, id.as_u32());
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut cl.func, &mut fctx);
            let block_sig = b.import_signature(block_signature(ptr));
            let start = b.create_block();
            b.append_block_params_for_function_params(start);
            b.switch_to_block(start);
            let (ctx, code) = (b.block_params(start)[0], b.block_params(start)[1]);
            let call = b.ins().call_indirect(block_sig, code, &[ctx]);
            let result = b.inst_results(call)[0];
            b.ins().return_(&[result]);
            b.seal_all_blocks();
            b.finalize(isa.frontend_config());
        }
        module
            .define_function(id, &mut cl)
            .map_err(|e| codegen(&format!("{e:?}")))?;
        module.finalize_definitions().map_err(|e| codegen(&e))?;
        let code = module.get_finalized_function(id);
        // SAFETY: the function was just built with exactly this signature in the host's default
        // calling convention, which is what `extern "C"` means on every Cranelift host.
        let enter = unsafe { std::mem::transmute::<*const u8, EnterFn>(code) };
        Ok(Self {
            _module: module,
            enter,
        })
    }

    /// Run translated block `block` (and the blocks it continues into) on `ctx`; returns what
    /// the last one returned: 0, or a helper in the host's calling convention the dispatcher
    /// must call next (`translate::helpers::jit_resume_interp`).
    ///
    /// # Safety
    /// `block` must be live code compiled for `ctx`'s layout, with `ctx.runtime` set (see
    /// `JitVcpu::execute`).
    pub unsafe fn run(&self, ctx: *mut JitContext, block: BlockFn) -> u64 {
        // SAFETY: guaranteed by the caller; `enter` has the signature it was built with.
        unsafe { (self.enter)(ctx, block.addr() as usize as *const u8) }
    }
}
