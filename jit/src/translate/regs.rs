//! Mapping iced-x86 register names onto `CpuState` slots.

use iced_x86::Register;

/// Where a general register operand lives in `CpuState::gpr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GprInfo {
    /// Index into `gpr` (encoding order, SDM Vol. 2A Table 2-2).
    pub index: usize,
    /// Operand size in bytes.
    pub size: u32,
    /// AH, CH, DH or BH: bits 8..16 of the register.
    pub high8: bool,
}

/// The slot of a general register, `None` for anything else (segment, control, vector...).
pub(super) fn gpr_info(r: Register) -> Option<GprInfo> {
    if r.is_gpr8() {
        let n = r.number();
        // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L
        let (index, high8) = match n {
            0..=3 => (n, false),
            4..=7 => (n - 4, true),
            _ => (n - 4, false),
        };
        return Some(GprInfo {
            index,
            size: 1,
            high8,
        });
    }
    let size = if r.is_gpr16() {
        2
    } else if r.is_gpr32() {
        4
    } else if r.is_gpr64() {
        8
    } else {
        return None;
    };
    Some(GprInfo {
        index: r.number(),
        size,
        high8: false,
    })
}

/// The `CpuState::seg` index of a segment register.
pub(super) fn segment_index(r: Register) -> Option<usize> {
    Some(match r {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::DS => 3,
        Register::FS => 4,
        Register::GS => 5,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_registers_map_to_their_slots() {
        assert_eq!(
            gpr_info(Register::AH),
            Some(GprInfo {
                index: 0,
                size: 1,
                high8: true
            })
        );
        assert_eq!(
            gpr_info(Register::SIL).map(|i| (i.index, i.high8)),
            Some((6, false))
        );
        assert_eq!(gpr_info(Register::R9L).map(|i| i.index), Some(9));
        assert_eq!(
            gpr_info(Register::BX).map(|i| (i.index, i.size)),
            Some((3, 2))
        );
        assert_eq!(
            gpr_info(Register::R15).map(|i| (i.index, i.size)),
            Some((15, 8))
        );
        assert_eq!(gpr_info(Register::DS), None);
    }
}
