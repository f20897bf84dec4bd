//! The facade in real builds: `std`'s atomics, and payload cells that are plain bytes.

pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::lane::CELL;
use std::cell::UnsafeCell;

#[inline(always)]
pub(crate) fn raw_fence(order: Ordering) {
    std::sync::atomic::fence(order);
}

/// See `ord!`: outside loom builds, the ordering itself.
#[inline(always)]
pub(crate) const fn site_ordering(order: Ordering, _site: &'static str) -> Ordering {
    order
}

/// Whether the deliberate bug `name` is switched on: never, outside loom builds.
#[inline(always)]
pub(crate) const fn mutant(_name: &str) -> bool {
    false
}

/// Tells the CPU that this thread is spinning.
#[inline]
pub fn spin_hint() {
    std::hint::spin_loop();
}

/// Gives the CPU away, for a reader that spun long enough for a writer to finish.
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// A cell of payload bytes that senders write and the receiver reads.
///
/// A transparent wrapper over the bytes, so a region of shared memory can be viewed as
/// `[DataCell]`; under loom it is loom's tracked `UnsafeCell`, so an unsynchronised access to
/// payload bytes is reported as a data race.
#[derive(Debug)]
#[repr(transparent)]
pub struct DataCell(UnsafeCell<[u8; CELL]>);

// SAFETY: a data cell is only written by the sender that holds a claim on it and only read by
// the receiver after the claim is committed (Release/Acquire on the stamp), and reused only
// after the receiver has freed it (Release/Acquire on `head`); see `lane`'s SYNC POINT table.
unsafe impl Sync for DataCell {}

impl DataCell {
    /// A zeroed cell.
    pub fn new() -> Self {
        DataCell(UnsafeCell::new([0; CELL]))
    }
}

impl Default for DataCell {
    fn default() -> Self {
        Self::new()
    }
}

/// The first byte of a run of cells, for a slice handed out in place (the cells are
/// contiguous bytes). Writing through it is allowed: the bytes are inside `UnsafeCell`s.
#[inline]
pub(crate) fn cells_ptr(cells: &[DataCell]) -> *mut u8 {
    cells.as_ptr() as *mut u8
}

/// Copies `src` into `cells`, starting `offset` bytes into the first.
///
/// # Safety
///
/// The caller has the only access to the bytes written (a claim on them), and
/// `offset + src.len() <= cells.len() * CELL`.
#[inline]
pub(crate) unsafe fn copy_to_cells(cells: &[DataCell], offset: usize, src: &[u8]) {
    debug_assert!(offset + src.len() <= cells.len() * CELL);
    // SAFETY: in bounds and exclusive (the caller's contract); the bytes are inside
    // `UnsafeCell`s, so writing through a pointer derived from a shared reference is allowed.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), cells_ptr(cells).add(offset), src.len()) }
}

/// Copies bytes out of `cells`, starting `offset` bytes into the first, into `dst`.
///
/// # Safety
///
/// Nobody writes the bytes read meanwhile (they are committed and not yet freed), and
/// `offset + dst.len() <= cells.len() * CELL`.
#[inline]
pub(crate) unsafe fn copy_from_cells(cells: &[DataCell], offset: usize, dst: &mut [u8]) {
    debug_assert!(offset + dst.len() <= cells.len() * CELL);
    // SAFETY: in bounds and not written meanwhile (the caller's contract).
    unsafe {
        std::ptr::copy_nonoverlapping(
            cells.as_ptr().cast::<u8>().add(offset),
            dst.as_mut_ptr(),
            dst.len(),
        )
    }
}

/// Appends `len` bytes from `offset` of `cells` to `out`, without zero-filling first.
///
/// # Safety
///
/// As [`copy_from_cells`].
#[inline]
pub(crate) unsafe fn append_from_cells(
    cells: &[DataCell],
    offset: usize,
    len: usize,
    out: &mut Vec<u8>,
) {
    assert!(
        offset + len <= cells.len() * CELL,
        "a copy within the cells"
    );
    out.reserve(len);
    let start = out.len();
    // SAFETY: the source is in bounds (asserted) and not written meanwhile (the caller's
    // contract); the destination is the vector's spare capacity, reserved above, and the
    // length is set only over the bytes just written.
    unsafe {
        std::ptr::copy_nonoverlapping(
            cells.as_ptr().cast::<u8>().add(offset),
            out.as_mut_ptr().add(start),
            len,
        );
        out.set_len(start + len);
    }
}

/// Reads the 8 bytes at `offset` of `cells` that a writer may be writing meanwhile, as a
/// seqlock reader does: a volatile read, whose value the caller keeps only after validating it
/// (see `Lane::census`).
#[inline]
pub(crate) fn racy_read_u64(cells: &[DataCell], offset: usize) -> u64 {
    assert!(offset + 8 <= cells.len() * CELL, "a read within the cells");
    // SAFETY: in bounds (asserted); the bytes are inside `UnsafeCell`s, any bit pattern is a
    // `u64`, and an unaligned read is allowed. A concurrent write can tear the value, which
    // the caller's validation discards.
    let bytes = unsafe { std::ptr::read_volatile(cells_ptr(cells).add(offset) as *const [u8; 8]) };
    u64::from_ne_bytes(bytes)
}

/// Copies `dst.len()` bytes at `offset` of `cells` that a writer may be writing meanwhile, as a
/// seqlock reader does (volatile reads, word by word); the caller keeps the copy only after
/// validating it (see `Lane::browse`).
#[inline]
pub(crate) fn racy_copy(cells: &[DataCell], offset: usize, dst: &mut [u8]) {
    assert!(
        offset + dst.len() <= cells.len() * CELL,
        "a read within the cells"
    );
    let base = cells_ptr(cells);
    for (i, chunk) in dst.chunks_mut(8).enumerate() {
        let mut word = [0u8; 8];
        for (j, b) in word.iter_mut().take(chunk.len()).enumerate() {
            // SAFETY: in bounds (asserted); the bytes are inside `UnsafeCell`s; a concurrent
            // write can tear the copy, which the caller's validation discards.
            *b = unsafe { std::ptr::read_volatile(base.add(offset + i * 8 + j)) };
        }
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}
