//! Dead-load elimination on a translated block's IR.
//!
//! The translator loads guest state from the context eagerly: every register a block names is
//! loaded on entry (even one the block only overwrites), and every register is reloaded after an
//! interpreted instruction. Cranelift at `opt_level = "none"` runs no DCE, and its lowering
//! keeps every load, even a non-trapping one whose value nobody uses. This pass removes those
//! loads (and the pure instructions only they fed), which shortens both the generated code and
//! the compile.

use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::instructions::Opcode;
use cranelift_codegen::ir::{Function, Inst, InstructionData, Value};

/// Whether `inst` can go when none of its results is used: a `notrap` load, or an instruction
/// without side effects.
fn removable(func: &Function, inst: Inst) -> bool {
    let data = &func.dfg.insts[inst];
    let op = data.opcode();
    if op.is_call()
        || op.is_branch()
        || op.is_terminator()
        || op.is_return()
        || op.can_trap()
        || op.other_side_effects()
        || op.can_store()
    {
        return false;
    }
    if op.can_load() {
        return matches!(data, InstructionData::Load { flags, .. } if func.dfg.mem_flags[*flags].notrap())
            && op == Opcode::Load;
    }
    true
}

/// Remove the loads and pure instructions of `func` whose results are never used. Returns how
/// many instructions went.
pub(super) fn remove_dead_code(func: &mut Function) -> usize {
    let mut uses: Vec<u32> = vec![0; func.dfg.num_values()];
    let mut insts: Vec<Inst> = Vec::new();
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            insts.push(inst);
            for v in func.dfg.inst_values(inst) {
                uses[func.dfg.resolve_aliases(v).index()] += 1;
            }
        }
    }
    let mut removed = 0;
    // Definitions come before their uses in layout order (the translator switches to a block
    // before any block it dominates), so one backward sweep also removes chains.
    for &inst in insts.iter().rev() {
        if !removable(func, inst) {
            continue;
        }
        let dead = func
            .dfg
            .inst_results(inst)
            .iter()
            .all(|&r: &Value| uses[r.index()] == 0);
        if !dead {
            continue;
        }
        let args: Vec<Value> = func.dfg.inst_values(inst).collect();
        for v in args {
            let v = func.dfg.resolve_aliases(v);
            uses[v.index()] -= 1;
        }
        func.layout.remove_inst(inst);
        removed += 1;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::{
        types, AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName,
    };
    use cranelift_codegen::isa::CallConv;
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

    fn opcodes(func: &Function) -> Vec<Opcode> {
        let mut ops = Vec::new();
        for block in func.layout.blocks() {
            for inst in func.layout.block_insts(block) {
                ops.push(func.dfg.insts[inst].opcode());
            }
        }
        ops
    }

    #[test]
    fn unused_notrap_loads_and_their_pure_users_go_others_stay() {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        let mut func = Function::with_name_signature(UserFuncName::default(), sig);
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry)[0];
        let trusted = MemFlagsData::trusted();
        // Dead chain: load -> iadd_imm, both unused.
        let dead = b.ins().load(types::I64, trusted, p, 0);
        b.ins().iadd_imm_s(dead, 1);
        // A load that may trap stays even unused.
        b.ins().load(types::I64, MemFlagsData::new(), p, 8);
        // A used load stays, and so does the store using it.
        let live = b.ins().load(types::I64, trusted, p, 16);
        b.ins().store(trusted, live, p, 24);
        let r = b.ins().load(types::I64, trusted, p, 32);
        b.ins().return_(&[r]);
        b.seal_all_blocks();
        let isa = cranelift_native::builder()
            .expect("host ISA")
            .finish(cranelift_codegen::settings::Flags::new(
                cranelift_codegen::settings::builder(),
            ))
            .expect("host flags");
        b.finalize(isa.frontend_config());
        let before = opcodes(&func).len();
        let removed = remove_dead_code(&mut func);
        assert_eq!(before - removed, 5);
        assert_eq!(
            opcodes(&func),
            vec![
                Opcode::Load,
                Opcode::Load,
                Opcode::Store,
                Opcode::Load,
                Opcode::Return
            ]
        );
    }
}
