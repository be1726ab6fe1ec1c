//! The later SIMD extensions (SDM Vol. 2 per instruction): SSE3 (horizontal and add/sub
//! arithmetic, duplicating moves), SSSE3 (PSHUFB, PALIGNR, absolute value, horizontal integer
//! add/subtract, PMADDUBSW, PMULHRSW, PSIGN), SSE4.1 (min/max, PMULLD/PMULDQ, blends, PTEST,
//! insert/extract, PMOVSX/ZX, PHMINPOSUW, MPSADBW, ROUND*, DPPS/DPPD, INSERTPS) and SSE4.2
//! (PCMPGTQ, the PCMPxSTRx string compares) - plus the general-register instructions of these
//! extensions that do not touch SIMD state: POPCNT, CRC32, MOVNTI and CLFLUSH.

use std::cmp::Ordering;

use iced_x86::{Instruction, Mnemonic as M, OpKind};
use vcpu::state::{gpr, rflags};

use super::fp::{arith, commit, is_nan, is_snan, mx, Arith, Env, Fp, Rounding};
use super::int::pack;
use super::lanes::*;
use super::{imm8, mxcsr, read, write, xmm, xmm_of};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::interp::operand::{op_size, read_op, write_op};
use crate::interp::{Exec, Flow};
use crate::mem::{self, Access};
use crate::runtime::Runtime;

/// POPCNT, CRC32, MOVNTI, CLFLUSH: no CR0/CR4 checks apply (SDM Vol. 2 per instruction).
pub(super) fn execute_no_simd_state(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    let r = match m {
        M::Popcnt => popcnt(ctx, rt, insn),
        M::Crc32 => crc32(ctx, rt, insn),
        M::Movnti => (|| {
            let size = op_size(insn, 1, 4);
            let v = read_op(ctx, rt, insn, 1, size)?;
            write_op(ctx, rt, insn, 0, size, v)?;
            Ok(Flow::Next)
        })(),
        M::Clflush | M::Clflushopt => (|| {
            // A flush is checked like a byte read (SDM Vol. 2A CLFLUSH, Protected Mode
            // Exceptions); caches are not emulated.
            let la = super::mem_addr(ctx, insn, 1)?;
            mem::linear_to_phys(ctx, rt, la, Access::Read)?;
            Ok(Flow::Next)
        })(),
        _ => return None,
    };
    Some(r)
}

fn popcnt(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let v = read_op(ctx, rt, insn, 1, size)?;
    write_op(ctx, rt, insn, 0, size, u64::from(v.count_ones()))?;
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    ctx.cpu.rflags &= !rflags::STATUS;
    if v == 0 {
        ctx.cpu.rflags |= rflags::ZF;
    }
    Ok(Flow::Next)
}

/// CRC-32C (Castagnoli polynomial 11EDC6F41H, bit-reflected) of the source bytes, continuing
/// from the destination's low doubleword (SDM Vol. 2A CRC32).
pub fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    const POLY_REFLECTED: u32 = 0x82f6_3b78;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn crc32(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let dsize = op_size(insn, 0, 4);
    let ssize = op_size(insn, 1, 4);
    let src = read_op(ctx, rt, insn, 1, ssize)?;
    let old = read_op(ctx, rt, insn, 0, dsize)? as u32;
    let bytes = src.to_le_bytes();
    let r = crc32c(old, &bytes[..ssize as usize]);
    write_op(ctx, rt, insn, 0, dsize, u64::from(r))?;
    Ok(Flow::Next)
}

pub(super) fn handles(m: M) -> bool {
    two_op(m).is_some()
        || matches!(
            m,
            M::Movddup
                | M::Movshdup
                | M::Movsldup
                | M::Addsubps
                | M::Addsubpd
                | M::Haddps
                | M::Haddpd
                | M::Hsubps
                | M::Hsubpd
                | M::Pabsb
                | M::Pabsw
                | M::Pabsd
                | M::Palignr
                | M::Pblendw
                | M::Blendps
                | M::Blendpd
                | M::Pblendvb
                | M::Blendvps
                | M::Blendvpd
                | M::Ptest
                | M::Pextrb
                | M::Pextrd
                | M::Pextrq
                | M::Extractps
                | M::Pinsrb
                | M::Pinsrd
                | M::Pinsrq
                | M::Insertps
                | M::Pmovsxbw
                | M::Pmovsxbd
                | M::Pmovsxbq
                | M::Pmovsxwd
                | M::Pmovsxwq
                | M::Pmovsxdq
                | M::Pmovzxbw
                | M::Pmovzxbd
                | M::Pmovzxbq
                | M::Pmovzxwd
                | M::Pmovzxwq
                | M::Pmovzxdq
                | M::Phminposuw
                | M::Mpsadbw
                | M::Roundps
                | M::Roundpd
                | M::Roundss
                | M::Roundsd
                | M::Dpps
                | M::Dppd
                | M::Pcmpestri
                | M::Pcmpestri64
                | M::Pcmpestrm
                | M::Pcmpestrm64
                | M::Pcmpistri
                | M::Pcmpistrm
        )
}

/// Lane-wise SSSE3/SSE4 operations `dst = f(dst, src)`.
pub(super) fn two_op(m: M) -> Option<fn(u128, u128) -> u128> {
    let f: fn(u128, u128) -> u128 = match m {
        M::Pshufb => |a, b| {
            let (x, y) = (u8s(a), u8s(b));
            from_u8s(std::array::from_fn(|i| {
                if y[i] & 0x80 != 0 {
                    0
                } else {
                    x[usize::from(y[i] & 15)]
                }
            }))
        },
        M::Psignb => |a, b| {
            zip8(a, b, |x, y| {
                sign(i64::from(x as i8), i64::from(y as i8)) as u8
            })
        },
        M::Psignw => |a, b| {
            zip16(a, b, |x, y| {
                sign(i64::from(x as i16), i64::from(y as i16)) as u16
            })
        },
        M::Psignd => |a, b| {
            zip32(a, b, |x, y| {
                sign(i64::from(x as i32), i64::from(y as i32)) as u32
            })
        },
        M::Phaddw => |a, b| horizontal16(a, b, |x, y| x.wrapping_add(y)),
        M::Phsubw => |a, b| horizontal16(a, b, |x, y| x.wrapping_sub(y)),
        M::Phaddsw => |a, b| horizontal16(a, b, |x, y| (x as i16).saturating_add(y as i16) as u16),
        M::Phsubsw => |a, b| horizontal16(a, b, |x, y| (x as i16).saturating_sub(y as i16) as u16),
        M::Phaddd => |a, b| {
            let (x, y) = (u32s(a), u32s(b));
            from_u32s([
                x[0].wrapping_add(x[1]),
                x[2].wrapping_add(x[3]),
                y[0].wrapping_add(y[1]),
                y[2].wrapping_add(y[3]),
            ])
        },
        M::Phsubd => |a, b| {
            let (x, y) = (u32s(a), u32s(b));
            from_u32s([
                x[0].wrapping_sub(x[1]),
                x[2].wrapping_sub(x[3]),
                y[0].wrapping_sub(y[1]),
                y[2].wrapping_sub(y[3]),
            ])
        },
        M::Pmaddubsw => |a, b| {
            let (x, y) = (u8s(a), u8s(b));
            from_u16s(std::array::from_fn(|i| {
                let p = |j: usize| i64::from(x[j]) * i64::from(y[j] as i8);
                sat_signed(p(2 * i) + p(2 * i + 1), 16) as u16
            }))
        },
        M::Pmulhrsw => |a, b| {
            zip16(a, b, |x, y| {
                let p = i32::from(x as i16) * i32::from(y as i16);
                (((p >> 14) + 1) >> 1) as u16
            })
        },
        M::Pminsb => |a, b| zip8(a, b, |x, y| (x as i8).min(y as i8) as u8),
        M::Pmaxsb => |a, b| zip8(a, b, |x, y| (x as i8).max(y as i8) as u8),
        M::Pminuw => |a, b| zip16(a, b, std::cmp::min),
        M::Pmaxuw => |a, b| zip16(a, b, std::cmp::max),
        M::Pminsd => |a, b| zip32(a, b, |x, y| (x as i32).min(y as i32) as u32),
        M::Pmaxsd => |a, b| zip32(a, b, |x, y| (x as i32).max(y as i32) as u32),
        M::Pminud => |a, b| zip32(a, b, std::cmp::min),
        M::Pmaxud => |a, b| zip32(a, b, std::cmp::max),
        M::Pmulld => |a, b| zip32(a, b, u32::wrapping_mul),
        M::Pmuldq => |a, b| {
            zip64(a, b, |x, y| {
                (i64::from(x as u32 as i32) * i64::from(y as u32 as i32)) as u64
            })
        },
        M::Pcmpeqq => |a, b| zip64(a, b, |x, y| mask_if(x == y)),
        M::Pcmpgtq => |a, b| zip64(a, b, |x, y| mask_if((x as i64) > (y as i64))),
        M::Packusdw => |a, b| pack(a, b, 32, |v| sat_unsigned(v, 16)),
        _ => return None,
    };
    Some(f)
}

/// PSIGN: the destination element negated, zeroed or kept by the sign of the source element.
fn sign(d: i64, s: i64) -> i64 {
    match s.cmp(&0) {
        Ordering::Less => d.wrapping_neg(),
        Ordering::Equal => 0,
        Ordering::Greater => d,
    }
}

fn horizontal16(a: u128, b: u128, f: impl Fn(u16, u16) -> u16) -> u128 {
    let (x, y) = (u16s(a), u16s(b));
    from_u16s(std::array::from_fn(|i| {
        let v = if i < 4 { &x } else { &y };
        let j = 2 * (i % 4);
        f(v[j], v[j + 1])
    }))
}

pub(super) fn execute(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    Some(run(ctx, rt, insn, m))
}

fn set_dst(ctx: &mut JitContext, insn: &Instruction, v: u128) {
    super::set_xmm(ctx, xmm_of(insn, 0), v);
}

fn run(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    if let Some(f) = two_op(m) {
        let b = read(ctx, rt, insn, 1)?;
        let a = xmm(ctx, xmm_of(insn, 0));
        set_dst(ctx, insn, f(a, b));
        return Ok(Flow::Next);
    }
    let imm = imm8(insn);
    match m {
        M::Pextrb | M::Pextrd | M::Pextrq | M::Extractps => {
            let s = xmm(ctx, xmm_of(insn, 1));
            let v: u64 = match m {
                M::Pextrb => u64::from(u8s(s)[usize::from(imm & 15)]),
                M::Pextrq => u64s(s)[usize::from(imm & 1)],
                _ => u64::from(u32s(s)[usize::from(imm & 3)]),
            };
            write(ctx, rt, insn, 0, u128::from(v))?;
            return Ok(Flow::Next);
        }
        M::Pinsrb | M::Pinsrd | M::Pinsrq => {
            let v = read(ctx, rt, insn, 1)?;
            let d = xmm(ctx, xmm_of(insn, 0));
            let r = match m {
                M::Pinsrb => {
                    let mut a = u8s(d);
                    a[usize::from(imm & 15)] = v as u8;
                    from_u8s(a)
                }
                M::Pinsrd => {
                    let mut a = u32s(d);
                    a[usize::from(imm & 3)] = v as u32;
                    from_u32s(a)
                }
                _ => {
                    let mut a = u64s(d);
                    a[usize::from(imm & 1)] = v as u64;
                    from_u64s(a)
                }
            };
            set_dst(ctx, insn, r);
            return Ok(Flow::Next);
        }
        _ => {}
    }
    let b = read(ctx, rt, insn, 1)?;
    let a = xmm(ctx, xmm_of(insn, 0));
    let r = match m {
        M::Movddup => from_u64s([b as u64, b as u64]),
        M::Movshdup => {
            let s = u32s(b);
            from_u32s([s[1], s[1], s[3], s[3]])
        }
        M::Movsldup => {
            let s = u32s(b);
            from_u32s([s[0], s[0], s[2], s[2]])
        }
        M::Pabsb => zip8(b, 0, |x, _| (x as i8).unsigned_abs()),
        M::Pabsw => zip16(b, 0, |x, _| (x as i16).unsigned_abs()),
        M::Pabsd => zip32(b, 0, |x, _| (x as i32).unsigned_abs()),
        M::Palignr => {
            let n = u32::from(imm) * 8;
            // (dst:src) >> n, in 256 bits.
            match n {
                0 => b,
                1..=127 => (b >> n) | (a << (128 - n)),
                128 => a,
                129..=255 => a >> (n - 128),
                _ => 0,
            }
        }
        M::Pblendw => {
            let (x, y) = (u16s(a), u16s(b));
            from_u16s(std::array::from_fn(|i| {
                if imm >> i & 1 != 0 {
                    y[i]
                } else {
                    x[i]
                }
            }))
        }
        M::Blendps => {
            let (x, y) = (u32s(a), u32s(b));
            from_u32s(std::array::from_fn(|i| {
                if imm >> i & 1 != 0 {
                    y[i]
                } else {
                    x[i]
                }
            }))
        }
        M::Blendpd => {
            let (x, y) = (u64s(a), u64s(b));
            from_u64s(std::array::from_fn(|i| {
                if imm >> i & 1 != 0 {
                    y[i]
                } else {
                    x[i]
                }
            }))
        }
        M::Pblendvb | M::Blendvps | M::Blendvpd => {
            // The mask is the implicit XMM0: the top bit of each element selects the source.
            let mask = xmm(ctx, 0);
            let bits = match m {
                M::Pblendvb => 8,
                M::Blendvps => 32,
                _ => 64,
            };
            let mut r = a;
            for i in 0..128 / bits {
                let lane = (u128::MAX >> (128 - bits)) << (bits * i);
                if mask >> (bits * i + bits - 1) & 1 != 0 {
                    r = (r & !lane) | (b & lane);
                }
            }
            r
        }
        M::Ptest => {
            ctx.flags.materialize(&mut ctx.cpu.rflags);
            ctx.cpu.rflags &= !rflags::STATUS;
            if a & b == 0 {
                ctx.cpu.rflags |= rflags::ZF;
            }
            if !a & b == 0 {
                ctx.cpu.rflags |= rflags::CF;
            }
            return Ok(Flow::Next);
        }
        M::Insertps => {
            let count_s = usize::from(imm >> 6);
            let count_d = usize::from((imm >> 4) & 3);
            let t = if insn.op_kind(1) == OpKind::Memory {
                b as u32
            } else {
                u32s(b)[count_s]
            };
            let mut d = u32s(a);
            d[count_d] = t;
            for (i, e) in d.iter_mut().enumerate() {
                if imm >> i & 1 != 0 {
                    *e = 0;
                }
            }
            from_u32s(d)
        }
        M::Pmovsxbw
        | M::Pmovsxbd
        | M::Pmovsxbq
        | M::Pmovsxwd
        | M::Pmovsxwq
        | M::Pmovsxdq
        | M::Pmovzxbw
        | M::Pmovzxbd
        | M::Pmovzxbq
        | M::Pmovzxwd
        | M::Pmovzxwq
        | M::Pmovzxdq => pmov(m, b),
        M::Phminposuw => {
            let w = u16s(b);
            let (idx, min) = w
                .iter()
                .enumerate()
                .min_by_key(|&(i, &v)| (v, i))
                .map_or((0, 0), |(i, &v)| (i, v));
            u128::from(min) | ((idx as u128) << 16)
        }
        M::Mpsadbw => {
            let (x, y) = (u8s(a), u8s(b));
            let soff = usize::from(imm & 3) * 4;
            let doff = usize::from((imm >> 2) & 1) * 4;
            from_u16s(std::array::from_fn(|i| {
                (0..4)
                    .map(|j| u16::from(x[doff + i + j].abs_diff(y[soff + j])))
                    .sum()
            }))
        }
        M::Roundps | M::Roundpd | M::Roundss | M::Roundsd => {
            let mut env = Env::new(mxcsr(ctx));
            let r = match m {
                M::Roundps => {
                    super::fp::lanes(a, b, 32, false, |_, y| round::<f32>(&mut env, imm, y))
                }
                M::Roundpd => {
                    super::fp::lanes(a, b, 64, false, |_, y| round::<f64>(&mut env, imm, y))
                }
                M::Roundss => {
                    super::fp::lanes(a, b, 32, true, |_, y| round::<f32>(&mut env, imm, y))
                }
                _ => super::fp::lanes(a, b, 64, true, |_, y| round::<f64>(&mut env, imm, y)),
            };
            commit(ctx, &env)?;
            r
        }
        M::Dpps | M::Dppd => {
            let mut env = Env::new(mxcsr(ctx));
            let r = if m == M::Dpps {
                dot::<f32>(&mut env, a, b, imm, 4)
            } else {
                dot::<f64>(&mut env, a, b, imm, 2)
            };
            commit(ctx, &env)?;
            r
        }
        M::Addsubps | M::Addsubpd | M::Haddps | M::Haddpd | M::Hsubps | M::Hsubpd => {
            let mut env = Env::new(mxcsr(ctx));
            let r = if matches!(m, M::Addsubps | M::Haddps | M::Hsubps) {
                sse3_arith::<f32>(&mut env, m, a, b)
            } else {
                sse3_arith::<f64>(&mut env, m, a, b)
            };
            commit(ctx, &env)?;
            r
        }
        M::Pcmpestri
        | M::Pcmpestri64
        | M::Pcmpestrm
        | M::Pcmpestrm64
        | M::Pcmpistri
        | M::Pcmpistrm => {
            return pcmpstr(ctx, insn, m, a, b, imm);
        }
        _ => return Err(Fault::ud()),
    };
    set_dst(ctx, insn, r);
    Ok(Flow::Next)
}

/// Element views of a value in format `F`'s width.
fn elems<F: Fp>(v: u128) -> Vec<u64> {
    let bits = F::BITS;
    (0..128 / bits)
        .map(|i| ((v >> (bits * i)) as u64) & (u64::MAX >> (64 - bits)))
        .collect()
}

fn from_elems<F: Fp>(e: &[u64]) -> u128 {
    e.iter().enumerate().fold(0, |acc, (i, &x)| {
        acc | (u128::from(x) << (F::BITS * i as u32))
    })
}

fn sse3_arith<F: Fp>(env: &mut Env, m: M, a: u128, b: u128) -> u128 {
    let (x, y) = (elems::<F>(a), elems::<F>(b));
    let n = x.len();
    let r: Vec<u64> = match m {
        M::Addsubps | M::Addsubpd => (0..n)
            .map(|i| {
                let op = if i % 2 == 0 { Arith::Sub } else { Arith::Add };
                arith::<F>(env, op, x[i], y[i])
            })
            .collect(),
        _ => {
            let op = if matches!(m, M::Haddps | M::Haddpd) {
                Arith::Add
            } else {
                Arith::Sub
            };
            (0..n)
                .map(|i| {
                    let v = if i < n / 2 { &x } else { &y };
                    let j = 2 * (i % (n / 2));
                    arith::<F>(env, op, v[j], v[j + 1])
                })
                .collect()
        }
    };
    from_elems::<F>(&r)
}

/// DPPS/DPPD: products of the elements selected by imm[7:4], summed pairwise
/// ((p0 + p1) + (p2 + p3)), stored in the elements selected by imm[3:0].
fn dot<F: Fp>(env: &mut Env, a: u128, b: u128, imm: u8, n: usize) -> u128 {
    let (x, y) = (elems::<F>(a), elems::<F>(b));
    let p: Vec<u64> = (0..n)
        .map(|i| {
            if imm >> (4 + i) & 1 != 0 {
                arith::<F>(env, Arith::Mul, x[i], y[i])
            } else {
                0
            }
        })
        .collect();
    let sum = if n == 4 {
        let s1 = arith::<F>(env, Arith::Add, p[0], p[1]);
        let s2 = arith::<F>(env, Arith::Add, p[2], p[3]);
        arith::<F>(env, Arith::Add, s1, s2)
    } else {
        arith::<F>(env, Arith::Add, p[0], p[1])
    };
    let r: Vec<u64> = (0..n)
        .map(|i| if imm >> i & 1 != 0 { sum } else { 0 })
        .collect();
    from_elems::<F>(&r)
}

/// ROUND*: round to an integral value by imm[1:0], or MXCSR.RC when imm[2] is set; imm[3]
/// suppresses the precision exception. An SNaN is quieted with IE.
fn round<F: Fp>(env: &mut Env, imm: u8, b: u64) -> u64 {
    if is_nan::<F>(b) {
        if is_snan::<F>(b) {
            env.flags |= mx::IE;
        }
        return b | F::quiet_bit();
    }
    let b = if super::fp::is_denormal::<F>(b) && env.mxcsr & mx::DAZ != 0 {
        b & F::sign_bit()
    } else {
        b
    };
    let mode = if imm & 4 != 0 {
        env.rounding()
    } else {
        Rounding::from_rc(u32::from(imm & 3))
    };
    let x = F::from_u64(b).to_f64();
    let r = match mode {
        Rounding::Nearest => x.round_ties_even(),
        Rounding::Down => x.floor(),
        Rounding::Up => x.ceil(),
        Rounding::TowardZero => x.trunc(),
    };
    if r != x && imm & 8 == 0 {
        env.flags |= mx::PE;
    }
    // Integral values of F are exact in F, so the narrowing is exact; keep the sign of zero.
    let bits = if F::BITS == 32 {
        u64::from((r as f32).to_bits())
    } else {
        r.to_bits()
    };
    bits | (b & F::sign_bit())
}

fn pmov(m: M, b: u128) -> u128 {
    let (from, to, signed) = match m {
        M::Pmovsxbw => (8, 16, true),
        M::Pmovsxbd => (8, 32, true),
        M::Pmovsxbq => (8, 64, true),
        M::Pmovsxwd => (16, 32, true),
        M::Pmovsxwq => (16, 64, true),
        M::Pmovsxdq => (32, 64, true),
        M::Pmovzxbw => (8, 16, false),
        M::Pmovzxbd => (8, 32, false),
        M::Pmovzxbq => (8, 64, false),
        M::Pmovzxwd => (16, 32, false),
        M::Pmovzxwq => (16, 64, false),
        _ => (32, 64, false),
    };
    let mut r = 0u128;
    for i in 0..128 / to {
        let raw = ((b >> (from * i)) as u64) & ((1u64 << from) - 1);
        let v = if signed {
            let s = 64 - from;
            (((raw << s) as i64) >> s) as u64
        } else {
            raw
        };
        let m = u64::MAX >> (64 - to);
        r |= u128::from(v & m) << (to * i);
    }
    r
}

/// PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM (SDM Vol. 2B PCMPESTRI and 4.1, "Imm8 Control Byte
/// Operation for PCMPESTRI / PCMPESTRM / PCMPISTRI / PCMPISTRM").
fn pcmpstr(ctx: &mut JitContext, insn: &Instruction, m: M, a: u128, b: u128, imm: u8) -> Exec {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n: usize = if words { 8 } else { 16 };
    let elem = |v: u128, i: usize| -> i64 {
        if words {
            let x = (v >> (16 * i)) as u16;
            if signed {
                i64::from(x as i16)
            } else {
                i64::from(x)
            }
        } else {
            let x = (v >> (8 * i)) as u8;
            if signed {
                i64::from(x as i8)
            } else {
                i64::from(x)
            }
        }
    };
    let explicit = matches!(
        m,
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64
    );
    let length = |v: u128, reg: usize| -> usize {
        if explicit {
            let raw = if insn.code().op_code().operand_size() == 64 {
                ctx.cpu.gpr[reg] as i64
            } else {
                i64::from(ctx.cpu.gpr[reg] as u32 as i32)
            };
            (raw.unsigned_abs().min(n as u64)) as usize
        } else {
            (0..n).find(|&i| elem(v, i) == 0).unwrap_or(n)
        }
    };
    let la = length(a, gpr::RAX);
    let lb = length(b, gpr::RDX);
    let mut res1: u32 = 0;
    match (imm >> 2) & 3 {
        0 => {
            // Equal any: b[j] equals some valid a[i].
            for j in 0..lb {
                if (0..la).any(|i| elem(a, i) == elem(b, j)) {
                    res1 |= 1 << j;
                }
            }
        }
        1 => {
            // Ranges: a holds (low, high) pairs.
            for j in 0..lb {
                let bj = elem(b, j);
                if (0..la / 2).any(|k| elem(a, 2 * k) <= bj && bj <= elem(a, 2 * k + 1)) {
                    res1 |= 1 << j;
                }
            }
        }
        2 => {
            // Equal each: both invalid compares true, one invalid false.
            for i in 0..n {
                let t = match (i < la, i < lb) {
                    (true, true) => elem(a, i) == elem(b, i),
                    (false, false) => true,
                    _ => false,
                };
                if t {
                    res1 |= 1 << i;
                }
            }
        }
        _ => {
            // Equal ordered: the substring a starts at b[j].
            for j in 0..n {
                let t = (0..n - j).all(|k| {
                    if k >= la {
                        true
                    } else if j + k >= lb {
                        false
                    } else {
                        elem(a, k) == elem(b, j + k)
                    }
                });
                if t {
                    res1 |= 1 << j;
                }
            }
        }
    }
    let all = (1u32 << n) - 1;
    let valid_b = (1u32 << lb) - 1;
    let res2 = match (imm >> 4) & 3 {
        1 => !res1 & all,
        3 => (res1 ^ valid_b) & all,
        _ => res1,
    };
    if matches!(m, M::Pcmpestri | M::Pcmpestri64 | M::Pcmpistri) {
        let idx = if res2 == 0 {
            n as u32
        } else if imm & 0x40 != 0 {
            31 - res2.leading_zeros()
        } else {
            res2.trailing_zeros()
        };
        ctx.cpu.gpr[gpr::RCX] = u64::from(idx);
    } else {
        let mask = if imm & 0x40 != 0 {
            let bits = if words { 16 } else { 8 };
            (0..n).fold(0u128, |acc, i| {
                if res2 >> i & 1 != 0 {
                    acc | ((u128::MAX >> (128 - bits)) << (bits * i as u32))
                } else {
                    acc
                }
            })
        } else {
            u128::from(res2)
        };
        super::set_xmm(ctx, 0, mask);
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let mut f = 0;
    if res2 != 0 {
        f |= rflags::CF;
    }
    if lb < n {
        f |= rflags::ZF;
    }
    if la < n {
        f |= rflags::SF;
    }
    if res2 & 1 != 0 {
        f |= rflags::OF;
    }
    ctx.cpu.rflags = (ctx.cpu.rflags & !rflags::STATUS) | f;
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The CRC-32C check value of "123456789" is E3069283H (RFC 3720 B.4 / the Castagnoli
        // catalogue), with the conventional initial value and final XOR of all ones.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
    }

    #[test]
    fn pshufb_and_palignr() {
        let a = from_u8s(std::array::from_fn(|i| i as u8 + 0x10));
        // Select bytes 15, 0, and a zeroing index.
        let sel = from_u8s([15, 0, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let r = u8s(two_op(M::Pshufb).unwrap()(a, sel));
        assert_eq!(&r[..4], &[0x1f, 0x10, 0x00, 0x11]);
    }

    #[test]
    fn pmov_extends() {
        assert_eq!(pmov(M::Pmovsxbw, 0x80ff), 0xff80_ffff);
        assert_eq!(pmov(M::Pmovzxbw, 0x80ff), 0x0080_00ff);
        assert_eq!(pmov(M::Pmovsxdq, 0x8000_0000), 0xffff_ffff_8000_0000);
    }

    #[test]
    fn round_modes_and_sign_of_zero() {
        let mut e = Env::new(0x1f80);
        assert_eq!(
            round::<f32>(&mut e, 0, 2.5f32.to_bits().into()),
            u64::from(2f32.to_bits())
        );
        assert_eq!(
            round::<f32>(&mut e, 2, (-0.5f32).to_bits().into()),
            0x8000_0000
        );
        assert_eq!(
            round::<f64>(&mut e, 1, (-0.5f64).to_bits()),
            (-1f64).to_bits()
        );
        assert_eq!(e.flags, mx::PE);
        let mut e = Env::new(0x1f80);
        round::<f64>(&mut e, 8 | 3, 1.5f64.to_bits());
        assert_eq!(e.flags, 0, "imm[3] suppresses PE");
    }

    #[test]
    fn psign_and_horizontal_adds() {
        assert_eq!(
            two_op(M::Psignw).unwrap()(0x0005_0005_0005, 0x0000_ffff_0001),
            0x0000_fffb_0005
        );
        let a = from_u32s([1, 2, 3, 4]);
        let b = from_u32s([10, 20, 30, 40]);
        assert_eq!(two_op(M::Phaddd).unwrap()(a, b), from_u32s([3, 7, 30, 70]));
    }
}
