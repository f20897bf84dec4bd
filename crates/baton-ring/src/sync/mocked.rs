//! The facade in loom builds: loom's atomics and tracked cells, and the hooks of the mutants
//! and the ordering sweep (`loom-tests/mutants.sh`, `loom-tests/orderings.sh`).

pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::lane::CELL;

pub(crate) fn raw_fence(order: Ordering) {
    loom::sync::atomic::fence(order);
}

/// See `ord!`: the ordering of `site`, weakened to `Relaxed` if it is the one the sweep names.
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

/// Whether the deliberate bug `name` is switched on: the `BATON_MUTANT` environment variable
/// names one, and `loom-tests/mutants.sh` checks that a model catches it.
pub(crate) fn mutant(name: &str) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(|| std::env::var("BATON_MUTANT").ok())
        .as_deref()
        == Some(name)
}

/// Lets loom's scheduler run another thread.
#[inline]
pub fn spin_hint() {
    loom::thread::yield_now();
}

/// Gives the CPU away: loom's yield.
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

/// A cell of payload bytes: loom's tracked `UnsafeCell`, so an unsynchronised access to
/// payload bytes is reported as a data race.
#[derive(Debug)]
pub struct DataCell(loom::cell::UnsafeCell<[u8; CELL]>);

// SAFETY: as for the real `DataCell`; loom checks every access.
unsafe impl Sync for DataCell {}

impl DataCell {
    /// A zeroed cell.
    pub fn new() -> Self {
        DataCell(loom::cell::UnsafeCell::new([0; CELL]))
    }
}

impl Default for DataCell {
    fn default() -> Self {
        Self::new()
    }
}

/// Loom's cells are not contiguous bytes: handing payload out in place is not modelled (the
/// models copy in and out, which loom tracks byte by byte).
pub(crate) fn cells_ptr(_cells: &[DataCell]) -> *mut u8 {
    panic!("in-place payload access is not modelled under loom")
}

/// Copies `src` into `cells`, byte by byte through loom's tracked cells.
///
/// # Safety
///
/// As for the real one; loom checks the exclusivity.
pub(crate) unsafe fn copy_to_cells(cells: &[DataCell], offset: usize, src: &[u8]) {
    for (i, byte) in src.iter().enumerate() {
        let at = offset + i;
        // SAFETY: loom checks that nothing else accesses the cell meanwhile.
        cells[at / CELL]
            .0
            .with_mut(|cell| unsafe { (*cell)[at % CELL] = *byte });
    }
}

/// Copies bytes out of `cells`, byte by byte through loom's tracked cells.
///
/// # Safety
///
/// As for the real one; loom checks that nothing writes meanwhile.
pub(crate) unsafe fn copy_from_cells(cells: &[DataCell], offset: usize, dst: &mut [u8]) {
    for (i, byte) in dst.iter_mut().enumerate() {
        let at = offset + i;
        // SAFETY: loom checks the access is not racing.
        *byte = cells[at / CELL]
            .0
            .with(|cell| unsafe { (*cell)[at % CELL] });
    }
}

/// Appends `len` bytes from `offset` of `cells` to `out` (loom checks each byte's access).
///
/// # Safety
///
/// As [`copy_from_cells`].
pub(crate) unsafe fn append_from_cells(
    cells: &[DataCell],
    offset: usize,
    len: usize,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.resize(start + len, 0);
    // SAFETY: the caller's contract.
    unsafe { copy_from_cells(cells, offset, &mut out[start..]) }
}

/// The racy read of a seqlock reader: loom tracks the bytes read like any other access, so a
/// model that reads this way while a writer writes reports the race (the real read's value is
/// validated after it; loom's models cannot express that).
pub(crate) fn racy_read_u64(cells: &[DataCell], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: as for the real one.
    unsafe { copy_from_cells(cells, offset, &mut bytes) };
    u64::from_ne_bytes(bytes)
}

/// The racy copy of a seqlock reader (see `racy_read_u64`).
pub(crate) fn racy_copy(cells: &[DataCell], offset: usize, dst: &mut [u8]) {
    // SAFETY: as for the real one.
    unsafe { copy_from_cells(cells, offset, dst) }
}
