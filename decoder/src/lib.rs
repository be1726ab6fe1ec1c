//! Guest code to decoded blocks.
//!
//! This is the one place emu decodes x86 (with iced-x86). A block is a run of instructions that
//! ends at a control transfer, at an instruction that changes how the following code must be
//! decoded or executed (CR0, EFER, a segment load that changes CS or SS, STI and POPF), at the
//! end of the page it started in, or at a length cap. Backends translate or interpret blocks;
//! they never call iced-x86's decoder themselves.

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic};

pub use iced_x86;

/// The longest x86 instruction (SDM Vol. 2A 2.3.11).
pub const MAX_INSN_LEN: usize = 15;

/// Why a block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEnd {
    /// The last instruction transfers control (jump, call, return, interrupt, HLT...).
    ControlFlow,
    /// The last instruction changes processor mode or interrupt state; decoding stops after it.
    StateChange,
    /// The next instruction would start in the following page.
    PageEnd,
    /// The block reached the instruction cap.
    Length,
    /// The last instruction is invalid in this mode (the backend raises #UD when it is reached).
    Invalid,
    /// The code ran out of bytes before the next instruction was complete (the backend fetches
    /// it separately, so that a fault lands on the right instruction).
    Truncated,
}

/// A decoded block.
#[derive(Debug, Clone)]
pub struct DecodedBlock {
    /// Guest instruction pointer (offset inside CS) of the first instruction.
    pub start_ip: u64,
    pub insns: Vec<Instruction>,
    pub end: BlockEnd,
    /// Bytes covered by the block's instructions.
    pub byte_len: usize,
}

impl DecodedBlock {
    /// The ip just after the last instruction.
    pub fn next_ip(&self) -> u64 {
        self.insns.last().map_or(self.start_ip, |i| i.next_ip())
    }
}

/// Limits for one block.
#[derive(Debug, Clone, Copy)]
pub struct BlockLimits {
    /// Most instructions in one block.
    pub max_insns: usize,
    /// Instructions must start within this many bytes of `code[0]` (the rest of the page).
    pub page_bytes: usize,
}

/// Whether an instruction must end its block even though it falls through: it changes how the
/// following code is decoded or when interrupts are taken.
pub fn ends_block_after(insn: &Instruction) -> bool {
    if insn.flow_control() != FlowControl::Next {
        return true;
    }
    match insn.mnemonic() {
        Mnemonic::Sti
        | Mnemonic::Cli
        | Mnemonic::Popf
        | Mnemonic::Lmsw
        | Mnemonic::Clts
        | Mnemonic::Wrmsr
        | Mnemonic::Lgdt
        | Mnemonic::Lidt
        | Mnemonic::Lldt
        | Mnemonic::Ltr
        | Mnemonic::Invlpg
        | Mnemonic::Xsetbv
        | Mnemonic::Rsm => true,
        Mnemonic::Mov | Mnemonic::Pop => {
            // MOV to a control register, MOV/POP SS (interrupt shadow), MOV to a segment that
            // may change CS/SS attributes.
            let op0 = insn.op0_register();
            op0.is_cr() || op0 == iced_x86::Register::SS || op0.is_dr()
        }
        _ => false,
    }
}

/// Decode one block from `code`, which starts at guest ip `ip`. `bitness` is 16, 32 or 64.
pub fn decode_block(code: &[u8], ip: u64, bitness: u32, limits: BlockLimits) -> DecodedBlock {
    let mut decoder = Decoder::with_ip(bitness, code, ip, DecoderOptions::NONE);
    let mut insns = Vec::new();
    let mut end = BlockEnd::Length;
    let mut pos = 0usize;
    while insns.len() < limits.max_insns {
        if pos >= limits.page_bytes {
            end = BlockEnd::PageEnd;
            break;
        }
        if !decoder.can_decode() {
            end = BlockEnd::Truncated;
            break;
        }
        let insn = decoder.decode();
        if insn.code() == Code::INVALID {
            if decoder.last_error() == DecoderError::NoMoreBytes {
                end = BlockEnd::Truncated;
            } else {
                insns.push(insn);
                pos += insn.len();
                end = BlockEnd::Invalid;
            }
            break;
        }
        pos += insn.len();
        insns.push(insn);
        if insn.flow_control() != FlowControl::Next {
            end = BlockEnd::ControlFlow;
            break;
        }
        if ends_block_after(&insn) {
            end = BlockEnd::StateChange;
            break;
        }
    }
    DecodedBlock {
        start_ip: ip,
        insns,
        end,
        byte_len: pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BlockLimits = BlockLimits {
        max_insns: 64,
        page_bytes: 4096,
    };

    #[test]
    fn block_ends_at_jump() {
        // mov ax, 1; add ax, bx; jmp $; nop
        let code = [0xb8, 0x01, 0x00, 0x01, 0xd8, 0xeb, 0xfe, 0x90];
        let b = decode_block(&code, 0x100, 16, LIMITS);
        assert_eq!(b.insns.len(), 3);
        assert_eq!(b.end, BlockEnd::ControlFlow);
        assert_eq!(b.next_ip(), 0x107);
        assert_eq!(b.byte_len, 7);
    }

    #[test]
    fn block_ends_after_mov_cr0_and_at_page_end() {
        // mov cr0, eax; nop
        let code = [0x0f, 0x22, 0xc0, 0x90];
        let b = decode_block(&code, 0, 32, LIMITS);
        assert_eq!((b.insns.len(), b.end), (1, BlockEnd::StateChange));
        let nops = [0x90u8; 8];
        let limits = BlockLimits {
            page_bytes: 3,
            ..LIMITS
        };
        let b = decode_block(&nops, 0, 32, limits);
        assert_eq!((b.insns.len(), b.end), (3, BlockEnd::PageEnd));
    }

    #[test]
    fn invalid_and_truncated_are_told_apart() {
        // nop; push es, which does not exist in 64-bit mode
        let b = decode_block(&[0x90, 0x06, 0x90, 0x90], 0, 64, LIMITS);
        assert_eq!((b.insns.len(), b.end), (2, BlockEnd::Invalid));
        // nop; the first byte of a mov imm32 without its immediate.
        let b = decode_block(&[0x90, 0xb8, 0x01], 0, 32, LIMITS);
        assert_eq!((b.insns.len(), b.end), (1, BlockEnd::Truncated));
    }
}
