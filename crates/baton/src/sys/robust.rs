//! Robust, process-shared mutexes: baton's one liveness signal.
//!
//! Whether a peer is alive is never asked of its pid (`kill(pid, 0)` is wrong across pid
//! namespaces, where the same number names another process or none, and after pid reuse).
//! Instead a live peer holds a robust mutex in the segment, on a thread that lives exactly as
//! long as what it vouches for: the queue's owner holds the owner lock, and a process that sends
//! or stands by holds the lock of its slot in the sender table. When the holding thread ends
//! (the process dies, is killed, or execs), the kernel walks that thread's robust list and marks
//! the lock word `FUTEX_OWNER_DIED`, whatever pid namespace anyone is in; the next locker gets
//! `EOWNERDEAD` and recovers. The pid next to a lock is kept for display only.
//!
//! Only NORMAL, non-PI robust mutexes behave across pid namespaces (FIELD-NOTES), so that is
//! the only kind made here. [`RobustMutex::holder`] reads the lock word without taking the lock,
//! for status reports; every decision that frees what a dead peer held takes the lock instead.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A robust, process-shared, NORMAL, non-PI pthread mutex in shared memory.
#[repr(transparent)]
pub(crate) struct RobustMutex(
    // Written through a pointer by pthread calls: not an atomic, so not from the loom facade.
    std::cell::UnsafeCell<libc::pthread_mutex_t>, // facade-exempt: pthread mutex
);

/// What [`RobustMutex::try_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryLock {
    /// The calling thread holds it now; nobody held it.
    Acquired,
    /// The calling thread holds it now; its previous holder died holding it. Recover, then
    /// [`RobustMutex::consistent`].
    OwnerDied,
    /// A live thread holds it.
    Busy,
    /// It can never be locked again (a holder unlocked it without recovering).
    NotRecoverable,
    /// Any other error number.
    Failed(i32),
}

/// Who holds a lock, read from its word without taking it (see [`RobustMutex::holder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody.
    Free,
    /// A live thread (of some process, in some pid namespace).
    Alive,
    /// Its holder died, and nobody has taken it since.
    Died,
}

/// The kernel's robust-futex bits (linux/futex.h).
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_WAITERS: u32 = 0x8000_0000;

/// Byte offset of the futex word inside `pthread_mutex_t`: glibc's `__lock` is its first int,
/// musl's `_m_lock` its second. The segment's ABI tag records which libc made the segment.
#[cfg(target_env = "musl")]
const LOCK_WORD_OFFSET: usize = 4;
#[cfg(not(target_env = "musl"))]
const LOCK_WORD_OFFSET: usize = 0;

/// Byte offset of the word that holds the mutex's type and flags: glibc's `__kind` (after
/// `__lock`, `__count`, `__owner`, `__nusers`), musl's `_m_type`.
#[cfg(target_env = "musl")]
const KIND_WORD_OFFSET: usize = 0;
#[cfg(not(target_env = "musl"))]
const KIND_WORD_OFFSET: usize = 16;

/// The type word of a mutex made by [`RobustMutex::init`], read from one made here once.
fn expected_kind() -> u32 {
    static KIND: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| {
        let mut m = Box::new(std::mem::MaybeUninit::<RobustMutex>::zeroed());
        // SAFETY: a zeroed, unused mutex of our own, initialised once, read, then destroyed.
        unsafe {
            let p = m.as_mut_ptr();
            match RobustMutex::init(p) {
                Ok(()) => {
                    let kind = (*p).kind();
                    libc::pthread_mutex_destroy((*p).raw());
                    kind
                }
                Err(_) => u32::MAX,
            }
        }
    })
}

impl RobustMutex {
    /// Initialises the mutex in place.
    ///
    /// # Safety
    ///
    /// `this` must point to writable memory for a mutex that no thread uses yet (zero-filled
    /// memory of a segment not yet linked under its name).
    pub(crate) unsafe fn init(this: *mut RobustMutex) -> io::Result<()> {
        let check = |rc: i32| {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(rc))
            }
        };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: standard pthread attribute life cycle on a local; `this` is valid and unused
        // per the contract, and initialised exactly once.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let a = attr.as_mut_ptr();
            let result = check(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|_| {
                check(libc::pthread_mutexattr_setrobust(
                    a,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|_| {
                check(libc::pthread_mutexattr_settype(
                    a,
                    libc::PTHREAD_MUTEX_NORMAL,
                ))
            })
            .and_then(|_| {
                check(libc::pthread_mutexattr_setprotocol(
                    a,
                    libc::PTHREAD_PRIO_NONE,
                ))
            })
            .and_then(|_| check(libc::pthread_mutex_init((*this).0.get(), a)));
            libc::pthread_mutexattr_destroy(a);
            result
        }
    }

    /// The pthread mutex, for the blocking and timed locks of the owner's keeper thread.
    pub(crate) fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.0.get()
    }

    /// The mutex's type word, as a snapshot.
    fn kind(&self) -> u32 {
        // SAFETY: an aligned 32-bit int inside the mutex (see KIND_WORD_OFFSET; the segment's
        // ABI tag pins the libc); a peer may write it, so it is read as an atomic.
        unsafe { &*(self.raw().cast::<u8>().add(KIND_WORD_OFFSET) as *const AtomicU32) }
            .load(Ordering::Relaxed)
    }

    /// Checks the mutex's type word before a pthread call uses it: a peer that overwrote it
    /// could make the call take another path (glibc's lock elision: a fault on a CPU without
    /// it; found by fuzzing). Returns the word found and the one baton makes when they differ.
    pub(crate) fn kind_intact(&self) -> Result<(), (u32, u32)> {
        let (found, expected) = (self.kind(), expected_kind());
        if found == expected {
            Ok(())
        } else {
            Err((found, expected))
        }
    }

    /// Tries to take the lock on the calling thread, without waiting. A lock whose type word
    /// was overwritten is not touched: `Failed(EINVAL)`.
    pub(crate) fn try_lock(&self) -> TryLock {
        if self.kind_intact().is_err() {
            return TryLock::Failed(libc::EINVAL);
        }
        // SAFETY: the mutex was initialised robust and process-shared at creation and lives in
        // a mapping the caller keeps for as long as it may hold the lock.
        match unsafe { libc::pthread_mutex_trylock(self.raw()) } {
            0 => TryLock::Acquired,
            libc::EOWNERDEAD => TryLock::OwnerDied,
            libc::EBUSY => TryLock::Busy,
            libc::ENOTRECOVERABLE => TryLock::NotRecoverable,
            rc => TryLock::Failed(rc),
        }
    }

    /// Marks the state the lock protects as recovered after [`TryLock::OwnerDied`]; returns the
    /// error number (0 on success). Only the holding thread calls this.
    pub(crate) fn consistent(&self) -> i32 {
        // SAFETY: as in `try_lock`; the calling thread holds the lock.
        unsafe { libc::pthread_mutex_consistent(self.raw()) }
    }

    /// Releases the lock; returns the error number (0 on success). Only the holding thread
    /// calls this, after `consistent` if it was taken from a dead holder.
    pub(crate) fn unlock(&self) -> i32 {
        // SAFETY: as in `try_lock`; the calling thread holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.raw()) }
    }

    /// Who holds the lock, from its futex word, without taking it: the kernel clears a dead
    /// holder's thread id and sets `FUTEX_OWNER_DIED`. A snapshot for status reports: a
    /// decision to free what a holder held takes the lock ([`RobustMutex::try_lock`]).
    pub(crate) fn holder(&self) -> Holder {
        // SYNC POINT: what the last holder wrote before unlocking.
        let word = self.word().load(Ordering::Acquire);
        if word & FUTEX_TID_MASK != 0 {
            Holder::Alive
        } else if word & FUTEX_OWNER_DIED != 0 {
            Holder::Died
        } else {
            Holder::Free
        }
    }
}

impl RobustMutex {
    /// The lock's futex word.
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the futex word is an aligned 32-bit int at this offset inside the mutex (see
        // LOCK_WORD_OFFSET; the segment's ABI tag pins the libc); pthread and the kernel only
        // change it atomically, so atomic accesses to it are valid. It lives as long as `self`.
        unsafe { &*(self.raw().cast::<u8>().add(LOCK_WORD_OFFSET) as *const AtomicU32) }
    }

    /// Prepares to be woken when the lock's holder dies: returns the futex word and the value
    /// to wait for, with `FUTEX_WAITERS` set in it, while a live thread holds the lock; or
    /// who holds it otherwise. When a holder dies with `FUTEX_WAITERS` set, the kernel marks
    /// the word owner-died and wakes one thread waiting on it (in any process, in any pid
    /// namespace: the key is the shared page, not a pid). This is what the lock's own waiters
    /// get; `FUTEX_WAITERS` also makes the holder's unlock wake a waiter, which only costs a
    /// look. The caller waits on the word with its expected value (`sys::futex::wait_any`),
    /// and a word changed meanwhile ends the wait at once.
    pub(crate) fn watch(&self) -> Result<(&AtomicU32, u32), Holder> {
        let word = self.word();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & FUTEX_TID_MASK == 0 {
                return Err(if w & FUTEX_OWNER_DIED != 0 {
                    Holder::Died
                } else {
                    Holder::Free
                });
            }
            if w & FUTEX_WAITERS != 0 {
                return Ok((word, w));
            }
            // Relaxed: only the kernel and pthread read the bit, and they take the word as a
            // whole; nothing else is published with it.
            match word.compare_exchange_weak(
                w,
                w | FUTEX_WAITERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok((word, w | FUTEX_WAITERS)),
                Err(now) => w = now,
            }
        }
    }
}

/// Locks `mutex`, giving up (`ETIMEDOUT`) at `deadline` on the monotonic clock.
/// `pthread_mutex_timedlock` takes a `CLOCK_REALTIME` deadline, and the wall clock may be
/// slewed or stepped meanwhile (seen here: 0.5% fast), which would end the wait early or late:
/// so it waits in slices of at most `TIMED_LOCK_SLICE`, and gives up only once the monotonic
/// deadline has passed.
pub(crate) fn timed_lock(mutex: *mut libc::pthread_mutex_t, deadline: Instant) -> libc::c_int {
    loop {
        let slice_end = deadline.min(Instant::now() + TIMED_LOCK_SLICE);
        let abs = realtime_deadline(slice_end);
        // SAFETY: `mutex` is a robust process-shared mutex in a live mapping (see `acquire`);
        // `abs` outlives the call.
        let rc = unsafe { libc::pthread_mutex_timedlock(mutex, &abs) };
        if rc != libc::ETIMEDOUT || Instant::now() >= deadline {
            return rc;
        }
    }
}

/// The longest a single `pthread_mutex_timedlock` waits (see [`timed_lock`]), so that a wall
/// clock running slow makes a wait end at most this late. (A step back of the wall clock
/// during a slice still delays it by the step: `pthread_mutex_clocklock` would not, but musl
/// has none.)
const TIMED_LOCK_SLICE: Duration = Duration::from_millis(100);

/// `pthread_mutex_timedlock` takes a `CLOCK_REALTIME` deadline.
fn realtime_deadline(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + left.subsec_nanos() as u64;
    libc::timespec {
        tv_sec: now
            .tv_sec
            .saturating_add(left.as_secs().min(i32::MAX as u64) as libc::time_t)
            .saturating_add((nanos / 1_000_000_000) as libc::time_t),
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}
