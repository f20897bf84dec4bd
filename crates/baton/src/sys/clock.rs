//! The clock every process on the machine shares.

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock every process on the machine shares.
///
/// # Examples
///
/// ```
/// let before = baton::monotonic_ns();
/// let after = baton::monotonic_ns();
/// assert!(after >= before); // the same clock in every process: `sent_ns` is on it
/// ```
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// When a wait ends, fixed when the wait begins: a call that finds what it wants at once
/// reads no clock (a clock read costs about as much as a send here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Wait this long from when the wait begins.
    After(std::time::Duration),
    /// Wait until this instant (a deadline fixed earlier, for several waits in a row).
    At(std::time::Instant),
}

impl Deadline {
    /// The wait begins: the instant it ends (`None`: never).
    pub(crate) fn start(self) -> Option<std::time::Instant> {
        match self {
            Deadline::Never => None,
            Deadline::After(d) => deadline_after(d),
            Deadline::At(i) => Some(i),
        }
    }
}

/// The instant `timeout` from now, or `None` (no deadline: wait as long as it takes) when that
/// lies beyond what `Instant` can hold: a caller's `Duration::MAX` means "for ever", not a
/// panic.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}
