//! Reuse of TLB probes along a straight path of generated code.
//!
//! Every inline guest access probes the softmmu TLB, and a miss leaves the function (see
//! [`super::emit::Tx::interp_unless`]), so the code after a probe's hit branch runs only when
//! the access's bytes lie in one page the TLB maps. Later accesses through the same address
//! value (`x + d` with the same SSA value `x` and a constant `d`, in flat 64-bit segments) need
//! not probe again while nothing can have changed the TLB: when their bytes lie in a range
//! already proved to be in the page they need no check at all, and when the range grown to
//! take them in still spans less than a page a compare with the proved page is enough (and,
//! for a write to a page proved only readable, a compare of that same TLB entry's write tag).
//! Constant addresses are decided at translation time.
//!
//! A proof holds only on the path its hit branch dominates, as long as no helper ran (a helper
//! may change the TLB: INVLPG, MOV CR3, a mode change). The cache therefore remembers the
//! Cranelift block it is valid in and follows only the hit continuations of out-of-line
//! interpreter exits (see [`ProbeCache::commit`]), the two sides of a region's conditional
//! branch, and the edge into a region block that no other edge reaches (see
//! [`ProbeCache::snapshot`]); any other change of block, any helper call and the start of any
//! other guest basic block forget everything. A range is recorded only when the branch on its
//! own hit value is emitted, never when it is probed, so no access can rely on a check that
//! has not run yet.

use cranelift_codegen::ir::{Block, Value};

use crate::context::PAGE_MASK;

/// At most this many proved ranges are kept (the oldest goes first).
const MAX_PROVED: usize = 8;
/// At most this many known truth values are kept (the oldest goes first).
const MAX_KNOWN_TRUE: usize = 16;

/// Bytes in a guest page.
const PAGE_BYTES: i128 = (!PAGE_MASK + 1) as i128;

/// What the offsets of a [`Proved`] range are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Base {
    /// An SSA value: the range's bytes are `x + lo ..= x + hi` (wrapping).
    Value(Value),
    /// Nothing: the offsets are linear addresses themselves.
    Absolute,
}

/// A range of guest linear addresses known to lie in one page that the TLB maps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Proved {
    pub base: Base,
    /// First and last byte, as offsets from `base`.
    pub lo: i128,
    pub hi: i128,
    /// Whether the page was proved writable (its write tag matched); it is readable anyway,
    /// since the softmmu never sets a write tag without the read tag.
    pub write: bool,
    /// The host address of offset 0 (`base + addend`, wrapping): byte `d` is at
    /// `host_base + d`.
    pub host_base: Value,
    /// The page's linear address (the tag that matched).
    pub page: Value,
    /// The address of the page's TLB entry.
    pub entry: Value,
}

impl Proved {
    /// Whether the bytes `lo ..= hi` lie inside the range.
    fn contains(&self, lo: i128, hi: i128) -> bool {
        self.lo <= lo && hi <= self.hi
    }

    /// The smallest range holding both this range and `lo ..= hi`.
    fn union(&self, lo: i128, hi: i128) -> (i128, i128) {
        (self.lo.min(lo), self.hi.max(hi))
    }

    /// Whether an access of the given kind may use the page.
    fn allows(&self, write: bool) -> bool {
        self.write || !write
    }
}

/// What the cache knows about an access.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lookup {
    /// Its bytes lie in a proved range that allows it: no check is needed.
    Inside(Proved),
    /// A proved range grown to take the access in still spans less than a page: the access
    /// is in the page when the ends in `check` (offsets from the base) are on it, and, for a
    /// write to a page proved only readable, when the entry's write tag is the page. `grown`
    /// holds once that is checked.
    Grow {
        proved: Proved,
        grown: Proved,
        check: [Option<i128>; 2],
        write_tag: bool,
    },
    /// Nothing useful: probe the TLB.
    Miss,
}

/// The ends of `p` grown to `l ..= h` (less than a page) that must be checked at run time to
/// be on `p`'s page; `None` when the grown range is known statically not to be in one page.
fn grown_ends(p: &Proved, l: i128, h: i128) -> Option<[Option<i128>; 2]> {
    match p.base {
        Base::Value(_) => Some([(l < p.lo).then_some(l), (h > p.hi).then_some(h)]),
        Base::Absolute => {
            let page = |a: i128| (a as u64) & PAGE_MASK;
            let same = page(l) == page(p.lo) && page(h) == page(p.lo) && h <= i128::from(u64::MAX);
            same.then_some([None, None])
        }
    }
}

/// The proved ranges valid in one Cranelift block (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct ProbeCache {
    /// The block the proved ranges and known truths hold in.
    block: Option<Block>,
    proved: Vec<Proved>,
    /// Ranges whose check (the value) has been emitted but not branched on yet.
    pending: Vec<(Value, Proved)>,
    /// Truth values whose out-of-line exit was taken when false on the path to `block`.
    known_true: Vec<Value>,
}

impl ProbeCache {
    /// Forget everything (a helper call, a new guest basic block).
    pub fn clear(&mut self) {
        self.block = None;
        self.proved.clear();
        self.pending.clear();
        self.known_true.clear();
    }

    /// Make the cache describe block `here`: what it knows holds only in its own block.
    fn enter(&mut self, here: Option<Block>) {
        if self.block != here {
            self.clear();
            self.block = here;
        }
    }

    /// What is known in block `here` about an access to the bytes `lo ..= hi` from `base`.
    pub fn lookup(
        &mut self,
        here: Option<Block>,
        base: Base,
        lo: i128,
        hi: i128,
        write: bool,
    ) -> Lookup {
        self.enter(here);
        let candidates = || self.proved.iter().rev().filter(move |p| p.base == base);
        if let Some(p) = candidates().find(|p| p.contains(lo, hi) && p.allows(write)) {
            return Lookup::Inside(*p);
        }
        // Among the ranges that can grow to a page, the one needing the fewest checks.
        let best = candidates()
            .filter_map(|p| {
                let (l, h) = p.union(lo, hi);
                if h - l >= PAGE_BYTES {
                    return None;
                }
                let check = grown_ends(p, l, h)?;
                let write_tag = !p.allows(write);
                let cost = usize::from(write_tag) + check.iter().flatten().count();
                Some((cost, h - l, *p, l, h, check, write_tag))
            })
            .min_by_key(|&(cost, span, ..)| (cost, span));
        let Some((_, _, proved, l, h, check, write_tag)) = best else {
            return Lookup::Miss;
        };
        let grown = Proved {
            lo: l,
            hi: h,
            write: proved.write || write,
            ..proved
        };
        if check == [None, None] && !write_tag {
            // Known statically (constant addresses): no check at all.
            self.replace(&proved, grown);
            return Lookup::Inside(grown);
        }
        Lookup::Grow {
            proved,
            grown,
            check,
            write_tag,
        }
    }

    /// Replace the proved range `old` by `new` (a widening of it).
    fn replace(&mut self, old: &Proved, new: Proved) {
        if let Some(slot) = self.proved.iter_mut().find(|p| {
            p.base == old.base && p.lo == old.lo && p.hi == old.hi && p.write == old.write
        }) {
            *slot = new;
        }
    }

    /// Record that `proved` holds once the truth value `hit` has been branched on in block
    /// `here` (see [`ProbeCache::commit`]).
    pub fn expect(&mut self, here: Option<Block>, hit: Value, proved: Proved) {
        self.enter(here);
        self.pending.push((hit, proved));
    }

    /// The proved ranges valid in block `here`, for a block that only `here` jumps to;
    /// `None` when there are none.
    pub fn snapshot(&self, here: Option<Block>) -> Option<Vec<Proved>> {
        (here.is_some() && self.block == here && !self.proved.is_empty())
            .then(|| self.proved.clone())
    }

    /// Start block `block`, whose only predecessor ended where `proved` was valid (see
    /// [`ProbeCache::snapshot`]).
    pub fn restore(&mut self, proved: Vec<Proved>, block: Block) {
        self.clear();
        self.block = Some(block);
        self.proved = proved;
    }

    /// Whether `v` is known to be true in block `here`.
    pub fn is_known_true(&self, here: Option<Block>, v: Value) -> bool {
        self.block == here && self.block.is_some() && self.known_true.contains(&v)
    }

    /// The code in block `from` left the function out of line on some condition and goes on
    /// in `to`, which only `from` leads to: what held in `from` holds in `to`, and so do `ok`
    /// (when the exit was taken unless `ok` held) and the ranges waiting for it.
    pub fn commit(&mut self, from: Option<Block>, ok: Option<Value>, to: Block) {
        self.enter(from);
        self.block = Some(to);
        let Some(ok) = ok else {
            return;
        };
        if self.known_true.len() >= MAX_KNOWN_TRUE {
            self.known_true.remove(0);
        }
        self.known_true.push(ok);
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 == ok {
                let (_, p) = self.pending.swap_remove(i);
                self.prove(p);
            } else {
                i += 1;
            }
        }
    }

    /// Add a proved range, replacing one it holds.
    fn prove(&mut self, new: Proved) {
        self.proved.retain(|p| {
            !(p.base == new.base && new.contains(p.lo, p.hi) && (new.write || !p.write))
        });
        if self.proved.len() >= MAX_PROVED {
            self.proved.remove(0);
        }
        self.proved.push(new);
    }
}

#[cfg(test)]
mod tests {
    use cranelift_codegen::entity::EntityRef;

    use super::*;

    fn v(n: usize) -> Value {
        Value::new(n)
    }

    fn block(n: usize) -> Block {
        Block::new(n)
    }

    /// A range `lo ..= hi` of `base` proved readable (or writable) with host values 100..,
    /// checked by truth value `10 + here` in block `here` and committed into block `here + 1`.
    fn prove(c: &mut ProbeCache, here: usize, base: Base, (lo, hi): (i128, i128), write: bool) {
        let p = Proved {
            base,
            lo,
            hi,
            write,
            host_base: v(100),
            page: v(101),
            entry: v(102),
        };
        c.expect(Some(block(here)), v(10 + here), p);
        c.commit(Some(block(here)), Some(v(10 + here)), block(here + 1));
    }

    #[test]
    fn a_range_holds_only_after_its_hit_branch_and_in_the_block_after_it() {
        let mut c = ProbeCache::default();
        let x = Base::Value(v(1));
        let p = Proved {
            base: x,
            lo: 0,
            hi: 7,
            write: false,
            host_base: v(100),
            page: v(101),
            entry: v(102),
        };
        c.expect(Some(block(0)), v(10), p);
        // Not branched on yet: nothing is known.
        assert!(matches!(
            c.lookup(Some(block(0)), x, 0, 7, false),
            Lookup::Miss
        ));
        // Another truth value's branch does not prove it.
        c.commit(Some(block(0)), Some(v(11)), block(1));
        assert!(matches!(
            c.lookup(Some(block(1)), x, 0, 7, false),
            Lookup::Miss
        ));
        c.commit(Some(block(1)), Some(v(10)), block(2));
        assert!(matches!(
            c.lookup(Some(block(2)), x, 0, 7, false),
            Lookup::Inside(_)
        ));
        assert!(c.is_known_true(Some(block(2)), v(10)));
        // Any other block forgets it.
        assert!(matches!(
            c.lookup(Some(block(7)), x, 0, 7, false),
            Lookup::Miss
        ));
        assert!(!c.is_known_true(Some(block(7)), v(10)));
    }

    #[test]
    fn growing_a_range_checks_its_new_ends_and_stops_at_a_page() {
        let mut c = ProbeCache::default();
        let x = Base::Value(v(1));
        prove(&mut c, 0, x, (16, 23), false);
        let here = Some(block(1));
        match c.lookup(here, x, 8, 31, false) {
            Lookup::Grow {
                grown,
                check,
                write_tag,
                ..
            } => {
                assert_eq!((grown.lo, grown.hi), (8, 31));
                assert_eq!(check, [Some(8), Some(31)]);
                assert!(!write_tag);
            }
            other => panic!("{other:?}"),
        }
        // Grown to a page or more: probe again.
        assert!(matches!(
            c.lookup(here, x, 16, 16 + 4096, false),
            Lookup::Miss
        ));
        assert!(matches!(
            c.lookup(here, x, 23 - 4096, 23 - 4096, false),
            Lookup::Miss
        ));
        // Another base knows nothing.
        assert!(matches!(
            c.lookup(here, Base::Value(v(2)), 16, 23, false),
            Lookup::Miss
        ));
    }

    #[test]
    fn a_write_needs_the_write_tag_of_a_page_proved_readable() {
        let mut c = ProbeCache::default();
        let x = Base::Value(v(1));
        prove(&mut c, 0, x, (0, 7), false);
        match c.lookup(Some(block(1)), x, 0, 3, true) {
            Lookup::Grow {
                grown,
                check,
                write_tag,
                ..
            } => {
                assert!(write_tag && grown.write);
                assert_eq!(check, [None, None]);
            }
            other => panic!("{other:?}"),
        }
        // A page proved writable is readable.
        prove(&mut c, 1, x, (0, 7), true);
        assert!(matches!(
            c.lookup(Some(block(2)), x, 4, 7, false),
            Lookup::Inside(_)
        ));
    }

    #[test]
    fn constant_addresses_are_decided_statically() {
        let mut c = ProbeCache::default();
        let a = Base::Absolute;
        prove(&mut c, 0, a, (0x8000, 0x8007), false);
        let here = Some(block(1));
        assert!(matches!(
            c.lookup(here, a, 0x8ff8, 0x8fff, false),
            Lookup::Inside(p) if (p.lo, p.hi) == (0x8000, 0x8fff)
        ));
        // The next page, or crossing into it.
        assert!(matches!(
            c.lookup(here, a, 0x9000, 0x9000, false),
            Lookup::Miss
        ));
        assert!(matches!(
            c.lookup(here, a, 0x8ffe, 0x9001, false),
            Lookup::Miss
        ));
    }

    #[test]
    fn a_helper_call_or_a_snapshot_restore_replaces_what_is_known() {
        let mut c = ProbeCache::default();
        let x = Base::Value(v(1));
        prove(&mut c, 0, x, (0, 7), false);
        let saved = c.snapshot(Some(block(1))).expect("one range");
        assert!(c.snapshot(Some(block(5))).is_none(), "not valid there");
        c.clear();
        assert!(matches!(
            c.lookup(Some(block(1)), x, 0, 7, false),
            Lookup::Miss
        ));
        c.restore(saved, block(3));
        assert!(matches!(
            c.lookup(Some(block(3)), x, 0, 7, false),
            Lookup::Inside(_)
        ));
    }
}
