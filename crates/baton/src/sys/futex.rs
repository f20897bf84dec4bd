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
