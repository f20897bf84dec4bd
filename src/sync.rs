//! The one place baton takes its atomics, cells and spin hints from.
//!
//! Under `cfg(loom)` everything here is loom's, so the lane and the wake protocol can be
//! model-checked unchanged; otherwise it is `std`'s. Code elsewhere in the crate must not name
//! `std::sync::atomic` directly (see `clippy.toml`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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
