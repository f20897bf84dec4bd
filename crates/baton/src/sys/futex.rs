//! The production [`Waiter`]: the futex syscall on shared words.

use baton_ring::wake::Waiter;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// The production [`Waiter`]: Linux futexes on shared (never `FUTEX_PRIVATE_FLAG`) words, so a
/// wake-up reaches sleepers in other processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Futex;

impl Waiter for Futex {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call; the
        // kernel only reads it. FUTEX_WAIT (relative timeout) without FUTEX_PRIVATE_FLAG, so the
        // key is the physical page and wakers in other processes find us.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                timeout_ptr,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // EAGAIN: the word changed already; ETIMEDOUT: deadline; EINTR: a signal. All are
            // ordinary early returns: the caller re-checks. Anything else is a bug in our use.
            debug_assert!(
                matches!(errno, libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR),
                "futex wait failed with errno {errno}"
            );
        }
    }

    fn wake_one(&self, word: &AtomicU32) {
        // SAFETY: as in `wait`; FUTEX_WAKE only uses the address as a key.
        let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
        debug_assert!(
            rc >= 0,
            "futex wake failed: {}",
            std::io::Error::last_os_error()
        );
    }

    fn wake_all(&self, word: &AtomicU32) {
        // SAFETY: as in `wait`; FUTEX_WAKE only uses the address as a key.
        let rc =
            unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
        debug_assert!(
            rc >= 0,
            "futex wake failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The most words one `futex_waitv` call waits on (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAITV_MAX: usize = 128;

/// One entry of `futex_waitv`'s vector (`struct futex_waitv` of linux/futex.h).
#[repr(C)]
struct WaitvEntry {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: a 32-bit word; without `FUTEX2_PRIVATE`, so the key is shared.
const FUTEX2_SIZE_U32: u32 = 0x02;

/// What [`wait_any`] returned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitAny {
    /// Woken on word `i` of the list.
    Woken(usize),
    /// A word did not hold its expected value, the deadline passed, or a signal came: an
    /// ordinary early return (the caller re-checks).
    Early,
    /// The kernel has no `futex_waitv` (before Linux 5.16) or a seccomp filter refuses it.
    Unsupported,
}

/// Sleeps while every `word == expected` of `words`, until one of them is woken (by
/// `FUTEX_WAKE` on its address, from any process) or `deadline` passes. At most
/// [`WAITV_MAX`] words.
pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> WaitAny {
    debug_assert!(!words.is_empty() && words.len() <= WAITV_MAX);
    let mut vector = [const {
        WaitvEntry {
            val: 0,
            uaddr: 0,
            flags: 0,
            reserved: 0,
        }
    }; WAITV_MAX];
    let n = words.len().min(WAITV_MAX);
    for (entry, (word, expected)) in vector.iter_mut().zip(words) {
        entry.val = u64::from(*expected);
        entry.uaddr = word.as_ptr() as u64;
        entry.flags = FUTEX2_SIZE_U32;
    }
    // futex_waitv takes an absolute deadline on the clock it is given: CLOCK_MONOTONIC, the
    // clock of `Instant`.
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        let now = crate::sys::clock::monotonic_ns();
        let at = now.saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
        libc::timespec {
            tv_sec: (at / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
            tv_nsec: (at % 1_000_000_000) as libc::c_long,
        }
    });
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `vector[..n]` holds valid, aligned 32-bit words that the caller keeps alive for
    // the call (the kernel only reads them); `timeout_ptr` is null or points to a live timespec.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            vector.as_ptr(),
            n as libc::c_uint,
            0u32,
            timeout_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if rc >= 0 {
        return WaitAny::Woken(rc as usize);
    }
    match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::ENOSYS | libc::EPERM => WaitAny::Unsupported,
        errno => {
            // EAGAIN: a word changed already; ETIMEDOUT: deadline; EINTR: a signal.
            debug_assert!(
                matches!(errno, libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR),
                "futex_waitv failed with errno {errno}"
            );
            WaitAny::Early
        }
    }
}
