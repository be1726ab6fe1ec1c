//! Which instructions translated blocks hand to the interpreter, weighted by execution count.
//!
//! Finding the next instructions worth translating inline needs the dynamic count of interpreter
//! fallbacks per instruction form, not the static count per block. Setting the environment
//! variable [`ENV_VAR`] (to anything but `0`) makes the interpreter helper count every call by
//! iced `Code` and print the most frequent forms to stderr every [`REPORT_EVERY`] fallbacks
//! (cumulative totals, so the last report of a run is the summary). When the variable is unset
//! the cost is one relaxed atomic load per fallback.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use iced_x86::{Code, Instruction};

/// The environment variable that turns counting on.
pub const ENV_VAR: &str = "EMU_JIT_FALLBACK_STATS";

/// Fallbacks between two reports.
pub const REPORT_EVERY: u64 = 1 << 22;

/// Forms listed in a report.
const REPORT_TOP: usize = 40;

/// 0 = not decided yet, 1 = off, 2 = on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// More than the number of iced `Code` values (4936 in iced-x86 1.22); larger codes share the
/// last counter.
const CODES: usize = 8192;

/// One counter per iced `Code`.
static COUNTS: [AtomicU64; CODES] = [const { AtomicU64::new(0) }; CODES];

static TOTAL: AtomicU64 = AtomicU64::new(0);

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var_os(ENV_VAR).is_some_and(|v| v != "0");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Count one interpreter fallback of `insn` (when enabled).
#[inline]
pub fn record(insn: &Instruction) {
    if STATE.load(Ordering::Relaxed) == 1 || !enabled() {
        return;
    }
    COUNTS[(insn.code() as usize).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
    let total = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
    if total.is_multiple_of(REPORT_EVERY) {
        eprint!("{}", report(REPORT_TOP));
    }
}

/// The `top` most frequent forms so far, one per line, with their share of all fallbacks.
pub fn report(top: usize) -> String {
    let total = TOTAL.load(Ordering::Relaxed).max(1);
    let mut rows: Vec<(u64, usize)> = COUNTS
        .iter()
        .enumerate()
        .map(|(i, c)| (c.load(Ordering::Relaxed), i))
        .filter(|&(c, _)| c > 0)
        .collect();
    rows.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = format!("jit fallbacks: {total} interpreted instructions\n");
    for &(c, i) in rows.iter().take(top) {
        let code = Code::values().nth(i).unwrap_or(Code::INVALID);
        out.push_str(&format!(
            "  {c:>12} {:5.2}% {code:?}\n",
            100.0 * c as f64 / total as f64
        ));
    }
    out
}
