//! Liveness: whether a peer is alive is never asked of its pid (`kill(pid, 0)` is wrong across
//! pid namespaces and after pid reuse). A live peer holds a robust mutex on a thread that lives
//! exactly as long as what it vouches for ([`super::robust`]); the kernel marks the lock when
//! that thread ends. What a process holds through one of its threads is not inherited by a
//! `fork`ed child, which has none of them: the child notices through its fork generation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the `fork`s this process came out of as a child: a process-local word that the child
/// bumps in a `pthread_atfork` handler. What a process holds in shared memory through one of
/// its threads (a slot lock) is not the child's: the child sees the count differ from the one
/// recorded with it and takes its own.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_fork_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation (see [`FORK_GENERATION`]). The first call registers the
/// `pthread_atfork` handler; call it before recording a generation.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic (async-signal-safe), for the
        // life of the process.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_fork_child)) };
        assert_eq!(rc, 0, "pthread_atfork: out of memory");
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Aborts the process if dropped during a panic (a thread that holds a robust lock for its process must not end by a panic: the kernel would release the lock while the process goes on).
pub(crate) struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("baton: a thread holding a robust lock for this process panicked; aborting so that the kernel never releases the lock while the process goes on");
            std::process::abort();
        }
    }
}
