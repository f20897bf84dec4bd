//! The one place the ring takes its atomics, cells, fences and spin hints from.
//!
//! Two whole modules stand behind this one, the way tokio's `loom/` facade does it: `real`
//! (the real thing) and, under `cfg(loom)`, `mocked` (loom's, so the lane and the wake protocol
//! can be model-checked unchanged). Nothing else in the crate names `cfg(loom)`,
//! `std::sync::atomic` or `std::cell::UnsafeCell`; a test below enforces it (clippy's
//! `disallowed-types` cannot, since it sees through the re-exports).
//!
//! Besides the primitives, both modules provide:
//! - [`DataCell`]: a cell of payload bytes, with the copies in and out of a run of cells;
//! - `site_ordering` (through [`ord!`]) and `mutant`: the hooks of the ordering sweep and the
//!   mutants of `loom-tests/`, constant in real builds.

#[cfg(not(loom))]
mod real;
#[cfg(not(loom))]
pub use self::real::*;

#[cfg(loom)]
mod mocked;
#[cfg(loom)]
pub use self::mocked::*;

/// The ordering `Ordering::$o`, at a site the ordering sweep can weaken. Every synchronising
/// ordering of the lane and the wake protocol is written this way. In loom builds,
/// `BATON_WEAKEN=<file>:<line>:<column>` (the site of one `ord!`) turns that one into
/// `Relaxed`, and `loom-tests/orderings.sh` runs the models against each site in turn: every
/// weakening must be caught by a model. In every other build this is the constant ordering.
macro_rules! ord {
    ($o:ident) => {
        $crate::sync::site_ordering(
            $crate::sync::Ordering::$o,
            concat!(file!(), ":", line!(), ":", column!()),
        )
    };
}
pub(crate) use ord;

/// A memory fence; `Relaxed` is no fence at all (what the ordering sweep makes of a weakened
/// one: see [`ord!`]).
#[inline(always)]
pub(crate) fn fence(order: Ordering) {
    if order != Ordering::Relaxed {
        raw_fence(order);
    }
}

#[cfg(test)]
mod tests {
    /// Everything the lane and the wake protocol share between threads must come from this
    /// facade, or loom cannot see it; and only the facade may depend on `cfg(loom)`. Process-
    /// local counters are exempt, marked `facade-exempt` on the line.
    #[test]
    fn only_the_facade_names_std_atomics_cells_and_loom() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let facade = std::path::Path::new(src).join("sync");
        let mut offenders = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(src)];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if p != facade {
                    stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let names = ["std::sync::atomic", "std::cell::UnsafeCell", "cfg(loom)"]
                        .iter()
                        .any(|n| line.contains(n));
                    if names && !line.contains("facade-exempt") {
                        offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "use crate::sync instead:\n{}",
            offenders.join("\n")
        );
    }
}
