//! Self-modifying code at byte granularity: which bytes of a guest-physical page the live blocks
//! were decoded from.
//!
//! A guest that patches its own text (a Linux kernel applying alternatives, static calls, jump
//! labels and ftrace NOPs while it boots) writes a few bytes into pages that also hold code it
//! has already run, but rarely into the instructions of a block that is still alive. Dropping
//! every block of a page on any write to it costs a re-decode, 256 interpreted runs and a
//! recompile per block, each time. As QEMU's per-page code bitmap
//! (`tb_invalidate_phys_page_fast`), the softmmu keeps a bitmap of the bytes that live blocks
//! cover on every code page: a write that misses them is just done, one that hits them is
//! recorded and drops only the blocks it overlaps. The processor's own guarantee is the same:
//! a write to an instruction that has not been fetched yet is seen when it is executed (SDM
//! Vol. 3A 8.1.3, "Handling Self- and Cross-Modifying Code").

use crate::context::{PAGE_MASK, PAGE_SHIFT};

/// Bytes per guest page.
pub const PAGE_BYTES: u64 = 1 << PAGE_SHIFT;

/// Guest-physical bytes `start..end`, inside one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// The `len` bytes from `start`, which must not leave `start`'s page.
    pub fn new(start: u64, len: u64) -> Self {
        debug_assert!(
            len <= PAGE_BYTES - (start & !PAGE_MASK),
            "range leaves its page"
        );
        Self {
            start,
            end: start + len,
        }
    }

    /// The page the range lies in.
    #[inline]
    pub fn page(&self) -> u64 {
        self.start & PAGE_MASK
    }

    /// Whether the two ranges share a byte.
    #[inline]
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Offsets of the first and one-past-the-last byte inside the page.
    fn offsets(&self) -> (usize, usize) {
        let first = (self.start & !PAGE_MASK) as usize;
        (first, first + (self.end - self.start) as usize)
    }
}

/// The ranges `len` bytes from physical `start` occupy when they continue on page `next_page`
/// after the end of `start`'s page (a block running into the next page): one range per page.
pub fn split_at_page(start: u64, len: u64, next_page: Option<u64>) -> Vec<PhysRange> {
    let in_page = (PAGE_BYTES - (start & !PAGE_MASK)).min(len);
    let mut ranges = vec![PhysRange::new(start, in_page)];
    if let Some(p) = next_page.filter(|_| len > in_page) {
        ranges.push(PhysRange::new(
            p & PAGE_MASK,
            (len - in_page).min(PAGE_BYTES),
        ));
    }
    ranges
}

/// Words of a [`PageBytes`] bitmap.
const WORDS: usize = (PAGE_BYTES / 64) as usize;

/// One bit per byte of a page: the byte belongs to a live block.
#[derive(Clone, PartialEq, Eq)]
pub struct PageBytes([u64; WORDS]);

impl std::fmt::Debug for PageBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        write!(f, "PageBytes({set} bytes)")
    }
}

impl PageBytes {
    /// No byte covered.
    pub const EMPTY: PageBytes = PageBytes([0; WORDS]);
    /// Every byte covered.
    pub const FULL: PageBytes = PageBytes([u64::MAX; WORDS]);

    /// The mask of bits `from..to` (both within one word, `from < to <= 64`) of a word.
    fn word_mask(from: usize, to: usize) -> u64 {
        let high = if to == 64 { u64::MAX } else { (1u64 << to) - 1 };
        high & !((1u64 << from) - 1)
    }

    /// Calls `f(word index, mask)` for the words and bits of bytes `first..end` of the page.
    fn for_words(first: usize, end: usize, mut f: impl FnMut(usize, u64) -> bool) -> bool {
        let mut at = first;
        while at < end {
            let w = at / 64;
            let to = end.min((w + 1) * 64);
            if f(w, Self::word_mask(at % 64, to - w * 64)) {
                return true;
            }
            at = to;
        }
        false
    }

    /// Mark the bytes of `r` (a range of this page).
    pub fn set(&mut self, r: &PhysRange) {
        let (first, end) = r.offsets();
        Self::for_words(first, end, |w, m| {
            self.0[w] |= m;
            false
        });
    }

    /// Whether any byte of `r` (a range of this page) is marked.
    pub fn any(&self, r: &PhysRange) -> bool {
        let (first, end) = r.offsets();
        Self::for_words(first, end, |w, m| self.0[w] & m != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_only_when_they_share_a_byte() {
        let a = PhysRange::new(0x1010, 0x10);
        assert!(a.overlaps(&PhysRange::new(0x101f, 1)));
        assert!(a.overlaps(&PhysRange::new(0x1000, 0x11)));
        assert!(!a.overlaps(&PhysRange::new(0x1020, 4)));
        assert!(!a.overlaps(&PhysRange::new(0x100c, 4)));
        assert_eq!(a.page(), 0x1000);
    }

    #[test]
    fn blocks_running_into_the_next_page_split_there() {
        assert_eq!(
            split_at_page(0x1ffc, 10, Some(0x8000)),
            vec![PhysRange::new(0x1ffc, 4), PhysRange::new(0x8000, 6)]
        );
        assert_eq!(
            split_at_page(0x1f00, 10, Some(0x8000)),
            vec![PhysRange::new(0x1f00, 10)]
        );
        // The next page is unknown: only the first part is tracked.
        assert_eq!(
            split_at_page(0x1ffc, 10, None),
            vec![PhysRange::new(0x1ffc, 4)]
        );
    }

    #[test]
    fn page_bytes_mark_and_test_ranges_across_words() {
        let mut b = PageBytes::EMPTY;
        b.set(&PhysRange::new(0x3038, 0x50));
        assert!(b.any(&PhysRange::new(0x3038, 1)));
        assert!(b.any(&PhysRange::new(0x3087, 1)));
        assert!(b.any(&PhysRange::new(0x3000, 0x1000)));
        assert!(!b.any(&PhysRange::new(0x3037, 1)));
        assert!(!b.any(&PhysRange::new(0x3088, 8)));
        assert!(!b.any(&PhysRange::new(0x3000, 0x38)));
        b.set(&PhysRange::new(0x3fff, 1));
        assert!(b.any(&PhysRange::new(0x3ff8, 8)));
        assert!(!b.any(&PhysRange::new(0x3ff0, 8)));
        assert!(PageBytes::FULL.any(&PhysRange::new(0x3123, 1)));
        assert!(!PageBytes::EMPTY.any(&PhysRange::new(0x3000, 0x1000)));
    }
}
