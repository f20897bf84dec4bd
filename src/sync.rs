//! The one place baton takes its atomics, cells and spin hints from.
//!
//! Under `cfg(loom)` everything here is loom's, so the lane and the wake protocol can be
//! model-checked unchanged; otherwise it is `std`'s. Code elsewhere in the crate must not name
//! `std::sync::atomic` or `std::cell::UnsafeCell` directly; a test below enforces it (clippy's
//! `disallowed-types` cannot, since it sees through the re-exports).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A memory fence; `Relaxed` is no fence at all (what the ordering sweep makes of a weakened
/// one: see [`ord!`]).
#[inline(always)]
pub(crate) fn fence(order: Ordering) {
    if order != Ordering::Relaxed {
        #[cfg(loom)]
        loom::sync::atomic::fence(order);
        #[cfg(not(loom))]
        std::sync::atomic::fence(order);
    }
}

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

/// See [`ord!`]: the ordering of `site`, weakened to `Relaxed` if it is the one the sweep
/// names.
#[cfg(loom)]
pub(crate) fn site_ordering(order: Ordering, site: &'static str) -> Ordering {
    static WEAKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static REACHED: std::sync::Once = std::sync::Once::new();
    match WEAKEN.get_or_init(|| std::env::var("BATON_WEAKEN").ok()) {
        Some(w) if w == site => {
            // Tells the sweep that a model ran this site (a misspelt one would weaken nothing).
            REACHED.call_once(|| eprintln!("baton: weakened the ordering at {site}"));
            Ordering::Relaxed
        }
        _ => order,
    }
}

/// See [`ord!`]: outside loom builds, the ordering itself.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn site_ordering(order: Ordering, _site: &'static str) -> Ordering {
    order
}

/// A cell of payload bytes that senders write and the receiver reads.
///
/// Under `std` this is a transparent wrapper over the bytes, so a region of shared memory can be
/// viewed as `[DataCell]`; under loom it is loom's tracked `UnsafeCell`, so an unsynchronised
/// access to payload bytes is reported as a data race.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct DataCell(
    #[cfg(not(loom))] std::cell::UnsafeCell<[u8; crate::lane::CELL]>,
    #[cfg(loom)] loom::cell::UnsafeCell<[u8; crate::lane::CELL]>,
);

// `with`/`with_mut` are how loom builds touch payload bytes; std builds copy through a pointer.
#[cfg_attr(not(loom), allow(dead_code))]

impl DataCell {
    pub(crate) fn new() -> Self {
        #[cfg(not(loom))]
        return DataCell(std::cell::UnsafeCell::new([0; crate::lane::CELL]));
        #[cfg(loom)]
        return DataCell(loom::cell::UnsafeCell::new([0; crate::lane::CELL]));
    }

    /// Runs `f` with a shared pointer to the cell's bytes.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const [u8; crate::lane::CELL]) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with(f);
    }

    /// Runs `f` with an exclusive pointer to the cell's bytes.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut [u8; crate::lane::CELL]) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with_mut(f);
    }
}

/// Whether the deliberate bug `name` is switched on. Only loom builds have mutants: there the
/// `BATON_MUTANT` environment variable names one, and `loom-tests/mutants.sh` checks that a
/// model catches it. In every other build this is `false` and compiles away.
#[cfg(loom)]
pub(crate) fn mutant(name: &str) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(|| std::env::var("BATON_MUTANT").ok())
        .as_deref()
        == Some(name)
}

/// Whether the deliberate bug `name` is switched on: never, outside loom builds.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn mutant(_name: &str) -> bool {
    false
}

/// Tells the CPU (or loom's scheduler) that this thread is spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

// SAFETY: a data cell is only written by the sender that holds a claim on it and only read by
// the receiver after the claim is committed (Release/Acquire on the stamp), and reused only
// after the receiver has freed it (Release/Acquire on `head`); see `lane`'s SYNC POINT table.
unsafe impl Sync for DataCell {}

#[cfg(all(test, not(loom)))]
mod tests {
    /// Everything the lane and wait code share between threads must come from this facade, or
    /// loom cannot see it. Only the owner lock (a pthread mutex, not an atomic) and process-local
    /// counters are exempt, each marked with `facade-exempt` on the line.
    #[test]
    fn only_the_facade_names_std_atomics_and_cells() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut offenders = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("sync.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let names_std = line.contains("std::sync::atomic")
                        || line.contains("std::cell::UnsafeCell");
                    if names_std && !line.contains("facade-exempt") {
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
