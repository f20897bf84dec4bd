//! Queue ownership: the robust mutex, the keeper thread that holds it, and recovery.
//!
//! The kernel releases a robust mutex when the *thread* that locked it ends, not the process
//! (FIELD-NOTES). So the owner lock is locked, held and unlocked by one dedicated keeper thread
//! that lives exactly as long as the [`OwnerGuard`]: the lock cannot be lost while the process
//! still believes it owns the queue, and it is released when the process dies or execs.
//!
//! A process never unmaps a segment whose lock it holds: the keeper thread keeps its own
//! reference to the segment, and unlocks before that reference goes.

use crate::error::{LockDamage, OwnError};
use crate::recovery;
use crate::recovery::Attachment;
use crate::segment::{Segment, PRIORITIES};

const _: () = assert!(PRIORITIES == 4, "OwnerGuard::lanes names each lane");
use crate::sys::clock::monotonic_ns;
use crate::sys::liveness::{fork_generation, AbortOnUnwind};
use crate::sys::robust::{timed_lock, Holder, TryLock};
use baton_ring::lane::LaneOwner;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a process came to own a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    /// The ownership epoch this owner holds.
    pub(crate) epoch: u64,
    /// Whether the previous owner had died holding the lock (its recovery ran).
    pub(crate) took_over: bool,
}

/// Holds the owner lock until dropped, and is the proof of ownership: the owner's view of a
/// lane ([`OwnerGuard::lane`]) is had only from it.
#[derive(Debug)]
pub(crate) struct OwnerGuard {
    /// The owner's views of the four lanes, made once when the lock was taken (a receiver
    /// uses them several times per message). They borrow the mapping that `_attachment` keeps
    /// alive, so they are only ever lent out for as long as `&self` (see [`OwnerGuard::lanes`]); the
    /// `'static` is never seen outside this type.
    views: [LaneOwner<'static>; 4],
    /// The attachment whose mapping the views borrow: held, never read.
    _attachment: Arc<Attachment>,
    release: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
    /// The fork generation that took the lock: a forked child's copy of the guard has no
    /// keeper thread to wake or join (joining it would wait for ever), and holds nothing.
    generation: u64,
}

/// How long `receiver()` waits for the owner lock held by a process that does not own the queue
/// (one that checks whether it expired, or recovers it) before it answers `Busy`.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// How long to wait for the owner lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all: `Busy` if it is held.
    No,
    /// As a standby: until the lock is free or its holder dies, at most until the deadline.
    Until(Option<Instant>),
}

/// Takes the owner lock of `seg` on a keeper thread, which then holds it until the guard is
/// dropped.
pub(crate) fn acquire(
    seg: Arc<Attachment>,
    wait: Wait,
) -> Result<(OwnerGuard, Ownership), OwnError> {
    let generation = fork_generation();
    let held = seg.clone();
    let (result_tx, result_rx) = mpsc::channel::<Result<Ownership, OwnError>>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let keeper = std::thread::Builder::new()
        .name("baton-owner".into())
        .spawn(move || {
            let mutex = seg.shared().owner.mutex.raw();
            // A standby counts as one while it waits (a full sender table only means a
            // retention-0 close may not see it).
            let standby = matches!(wait, Wait::Until(_));
            if standby {
                let _ = recovery::standby_begin(&seg, recovery::StandbyKind::Wait);
            }
            // SAFETY (all calls below): the mutex was initialised robust + process-shared at
            // creation and lives in the mapping that `seg` keeps alive for this whole thread.
            let kind = seg.shared().owner.mutex.kind_intact();
            let rc = match wait {
                // Overwritten: not handed to pthread (see `RobustMutex::kind_intact`).
                _ if kind.is_err() => libc::EINVAL,
                // SAFETY: see above.
                Wait::No => match unsafe { libc::pthread_mutex_trylock(mutex) } {
                    // Held, but by nobody who owns the queue: a process looking whether the queue
                    // expired, or recovering it. That takes microseconds: wait a little rather
                    // than answer Busy with no owner.
                    libc::EBUSY if seg.shared().owner.pid.load(Ordering::Acquire) == 0 => {
                        match timed_lock(mutex, Instant::now() + PROBE_WAIT) {
                            libc::ETIMEDOUT => libc::EBUSY,
                            rc => rc,
                        }
                    }
                    rc => rc,
                },
                Wait::Until(Some(deadline)) => timed_lock(mutex, deadline),
                // SAFETY: see above.
                Wait::Until(None) => unsafe { libc::pthread_mutex_lock(mutex) },
            };
            if standby {
                recovery::standby_end(&seg, recovery::StandbyKind::Wait);
            }
            let (name, _) = seg.names();
            let outcome = match rc {
                // SAFETY: 0 and EOWNERDEAD: this thread holds the lock now.
                0 => Ok(unsafe { begin(&seg, false) }),
                libc::EOWNERDEAD => {
                    // SAFETY: as above.
                    let ownership = unsafe { begin(&seg, true) };
                    recovery::failpoint("recover.consistent");
                    // SAFETY: we hold the lock (EOWNERDEAD means it was granted to us).
                    let rc = unsafe { libc::pthread_mutex_consistent(mutex) };
                    if rc == 0 {
                        Ok(ownership)
                    } else {
                        Err(OwnError::Corrupt {
                            name: name.to_string(),
                            reason: LockDamage::ConsistentFailed(rc),
                        })
                    }
                }
                libc::EBUSY => {
                    let pid = seg.shared().owner.pid.load(Ordering::Relaxed);
                    Err(OwnError::Busy {
                        name: name.to_string(),
                        pid: (pid != 0).then_some(pid),
                    })
                }
                libc::ETIMEDOUT => Err(OwnError::Timeout {
                    name: name.to_string(),
                }),
                libc::ENOTRECOVERABLE => Err(OwnError::Corrupt {
                    name: name.to_string(),
                    reason: LockDamage::NotRecoverable,
                }),
                libc::EINVAL if kind.is_err() => {
                    let (found, expected) = kind.unwrap_err();
                    Err(OwnError::Corrupt {
                        name: name.to_string(),
                        reason: LockDamage::KindChanged { found, expected },
                    })
                }
                other => Err(OwnError::Corrupt {
                    name: name.to_string(),
                    reason: LockDamage::LockFailed(other),
                }),
            };
            let owned = outcome.is_ok();
            if result_tx.send(outcome).is_err() || !owned {
                if owned {
                    release(&seg);
                }
                return;
            }
            // From here the lock must never be released by this thread ending early: a panic
            // would end the thread, the kernel would hand the lock to a standby, and this process
            // would go on believing it owns the queue. So a panic here ends the process.
            let _abort_on_unwind = AbortOnUnwind;
            recovery::failpoint("keeper.hold");
            // Hold the lock until the guard is dropped (or the process ends).
            let _ = release_rx.recv();
            if seg.check_size().is_err() {
                // A peer truncated the segment: the lock's page may be gone, and touching it
                // would be a SIGBUS. The thread ends holding it; the kernel's robust-list walk
                // passes over memory it cannot reach.
                return;
            }
            release(&seg);
        })?;
    match result_rx.recv() {
        Ok(Ok(ownership)) => Ok((
            OwnerGuard {
                // SAFETY: the guard keeps `held` (as `_attachment`) and lends the views for no
                // longer than itself; its keeper thread holds the owner lock until it is dropped.
                views: unsafe { owner_views(&held) },
                _attachment: held,
                release: Some(release_tx),
                keeper: Some(keeper),
                generation,
            },
            ownership,
        )),
        Ok(Err(e)) => {
            let _ = keeper.join();
            Err(e)
        }
        Err(_) => {
            let _ = keeper.join();
            Err(OwnError::Io(std::io::Error::other(
                "the owner thread ended without an answer",
            )))
        }
    }
}

/// The one place a new owner starts: runs recovery when the previous holder died, then
/// publishes the new owner. Called with the lock held, before `pthread_mutex_consistent`.
/// Idempotent: if this process dies half way, the next one gets `EOWNERDEAD` again and redoes
/// all of it.
///
/// # Safety
///
/// The calling thread holds the owner lock.
unsafe fn begin(seg: &Segment, previous_owner_died: bool) -> Ownership {
    let owner = &seg.shared().owner;
    if previous_owner_died {
        owner.takeovers.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller holds the owner lock (this function's contract).
        unsafe { recovery::recover(seg) };
    }
    let epoch = owner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
    if previous_owner_died {
        recovery::failpoint("recover.epoch");
    }
    owner
        .owned_since_ns
        .store(monotonic_ns(), Ordering::Relaxed);
    owner.pid.store(std::process::id(), Ordering::Release);
    Ownership {
        epoch,
        took_over: previous_owner_died,
    }
}

/// Gives the lock up: the queue has no owner from now; a retention-0 queue with no standby
/// waiting is removed first.
fn release(seg: &Attachment) {
    let owner = &seg.shared().owner;
    owner.pid.store(0, Ordering::Release);
    owner
        .unowned_since_ns
        .store(monotonic_ns(), Ordering::Relaxed);
    if seg.retention() == Some(Duration::ZERO) && !recovery::standby_waiting_besides_own_marks(seg)
    {
        let _ = seg.remove();
    }
    // This thread locked the mutex and still holds it.
    let rc = owner.mutex.unlock();
    debug_assert_eq!(rc, 0, "unlock of the owner mutex by its keeper thread");
}

/// Whether the queue has no owner now, and since when (`CLOCK_MONOTONIC` ns). Takes and gives
/// back the lock on the calling thread; if the last owner died, this runs the recovery (it is
/// the next holder) and the queue counts as unowned from now.
pub(crate) fn unowned_since(seg: &Segment) -> Option<u64> {
    let owner = &seg.shared().owner;
    if owner.mutex.holder() == Holder::Alive {
        // Owned (or being taken): no need to touch the lock, and no reason to make a
        // concurrent `receiver()` wait for us.
        return None;
    }
    let since = match owner.mutex.try_lock() {
        TryLock::Acquired => owner.unowned_since_ns.load(Ordering::Relaxed),
        TryLock::OwnerDied => {
            // SAFETY: this thread holds the lock: `try_lock` just granted it.
            unsafe { begin(seg, true) };
            owner.pid.store(0, Ordering::Release);
            let now = monotonic_ns();
            owner.unowned_since_ns.store(now, Ordering::Relaxed);
            owner.mutex.consistent();
            now
        }
        _ => return None,
    };
    owner.mutex.unlock();
    Some(since)
}

/// Since when the queue has had no owner (`CLOCK_MONOTONIC` ns; 0: never owned yet), read
/// without taking the lock or changing anything: `None` while a live or a dead owner holds it
/// (a dead owner's queue counts as unowned from its recovery, see [`unowned_since`]).
pub(crate) fn unowned_since_unchanged(seg: &Segment) -> Option<u64> {
    let owner = &seg.shared().owner;
    (owner.mutex.holder() == Holder::Free).then(|| owner.unowned_since_ns.load(Ordering::Relaxed))
}

/// The owner as the owner lock tells it, without taking it: `(live owner, dead owner)` pids.
pub(crate) fn owner_pids(seg: &Segment) -> (Option<u32>, Option<u32>) {
    let owner = &seg.shared().owner;
    let pid = owner.pid.load(Ordering::Acquire);
    if pid == 0 {
        return (None, None);
    }
    match owner.mutex.holder() {
        Holder::Alive => (Some(pid), None),
        Holder::Died => (None, Some(pid)),
        // Released without clearing the pid: only a peer's scribble does that.
        Holder::Free => (None, None),
    }
}

impl OwnerGuard {
    /// The owner's view of lane `p`; `None` in a forked child's copy of the guard, which holds
    /// nothing.
    #[inline]
    pub(crate) fn lane(&self, p: usize) -> Option<&LaneOwner<'_>> {
        Some(&self.lanes()?[p])
    }

    /// The owner's views of every lane, priority 0 first; `None` as for [`OwnerGuard::lane`].
    #[inline]
    pub(crate) fn lanes(&self) -> Option<&[LaneOwner<'_>; 4]> {
        if self.generation != fork_generation() {
            return None;
        }
        // The views live as long as `self`, which keeps the mapping they borrow (see `views`).
        Some(&self.views)
    }
}

/// The owner's views of the lanes of `seg`, with a lifetime they do not have.
///
/// # Safety
///
/// The caller uses the views only while it holds `seg`'s `Arc` (whose pointee does not move)
/// and while the owner lock is held by this process (as an `OwnerGuard` does: it lends them
/// for no longer than itself, and checks the fork generation in `lanes`).
unsafe fn owner_views(seg: &Arc<Attachment>) -> [LaneOwner<'static>; 4] {
    // SAFETY: the caller's contract: the attachment outlives every use of the views.
    let seg: &'static Attachment = unsafe { &*Arc::as_ptr(seg) };
    std::array::from_fn(|p| {
        // SAFETY: the caller's contract: the owner lock is held while the views are used.
        unsafe { seg.lane(p).owner() }
    })
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        if self.generation != fork_generation() {
            // A forked child's copy: the keeper thread and the lock are the parent's.
            std::mem::forget(self.keeper.take());
            std::mem::forget(self.release.take());
            return;
        }
        // Closing the channel wakes the keeper, which unlocks; joining it means the lock is
        // released before the caller can unmap anything.
        drop(self.release.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}
