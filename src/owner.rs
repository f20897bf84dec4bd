//! Queue ownership: the robust mutex, the keeper thread that holds it, and recovery.
//!
//! The kernel releases a robust mutex when the *thread* that locked it ends, not the process
//! (FIELD-NOTES). So the owner lock is locked, held and unlocked by one dedicated keeper thread
//! that lives exactly as long as the [`OwnerGuard`]: the lock cannot be lost while the process
//! still believes it owns the queue, and it is released when the process dies or execs.
//!
//! A process never unmaps a segment whose lock it holds: the keeper thread keeps its own
//! reference to the segment, and unlocks before that reference goes.

use crate::error::OwnError;
use crate::segment::Segment;
use crate::sync::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// How a process came to own a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    /// The ownership epoch this owner holds.
    pub(crate) epoch: u64,
    /// Whether the previous owner had died holding the lock (its recovery ran).
    pub(crate) took_over: bool,
}

/// Holds the owner lock until dropped.
#[derive(Debug)]
pub(crate) struct OwnerGuard {
    release: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

/// Tries to take the owner lock of `seg` without waiting.
pub(crate) fn try_acquire(seg: Arc<Segment>) -> Result<(OwnerGuard, Ownership), OwnError> {
    let (result_tx, result_rx) = mpsc::channel::<Result<Ownership, OwnError>>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let keeper = std::thread::Builder::new().name("baton-owner".into()).spawn(move || {
        let mutex = seg.shared().owner.mutex.get();
        // SAFETY: the mutex was initialised robust + process-shared at creation and lives in
        // the mapping that `seg` keeps alive for this whole thread.
        let rc = unsafe { libc::pthread_mutex_trylock(mutex) };
        let (name, _) = seg.names();
        let outcome = match rc {
            0 => Ok(begin(&seg, false)),
            libc::EOWNERDEAD => {
                let ownership = begin(&seg, true);
                // SAFETY: we hold the lock (EOWNERDEAD means it was granted to us).
                let rc = unsafe { libc::pthread_mutex_consistent(mutex) };
                if rc == 0 {
                    Ok(ownership)
                } else {
                    Err(OwnError::Corrupt { name: name.to_string(), reason: format!("consistent failed: errno {rc}") })
                }
            }
            libc::EBUSY => {
                let pid = seg.shared().owner.pid.load(Ordering::Relaxed);
                Err(OwnError::Busy { name: name.to_string(), pid: (pid != 0).then_some(pid) })
            }
            libc::ENOTRECOVERABLE => Err(OwnError::Corrupt {
                name: name.to_string(),
                reason: "the lock is not recoverable (a previous owner unlocked it without recovery)".into(),
            }),
            other => Err(OwnError::Corrupt {
                name: name.to_string(),
                reason: format!("pthread_mutex_trylock failed: {}", std::io::Error::from_raw_os_error(other)),
            }),
        };
        let owned = outcome.is_ok();
        if result_tx.send(outcome).is_err() || !owned {
            if owned {
                release(&seg);
            }
            return;
        }
        // Hold the lock until the guard is dropped (or the process ends).
        let _ = release_rx.recv();
        release(&seg);
    })?;
    match result_rx.recv() {
        Ok(Ok(ownership)) => Ok((
            OwnerGuard {
                release: Some(release_tx),
                keeper: Some(keeper),
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

/// The one place a new owner starts: runs recovery when the previous owner died, then publishes
/// the new owner. Called with the lock held, before `pthread_mutex_consistent`. Idempotent: if
/// this process dies half way, the next owner gets `EOWNERDEAD` again and redoes all of it.
fn begin(seg: &Segment, previous_owner_died: bool) -> Ownership {
    let owner = &seg.shared().owner;
    if previous_owner_died {
        recover(seg);
        owner.takeovers.fetch_add(1, Ordering::Relaxed);
    }
    let epoch = owner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
    owner.pid.store(std::process::id(), Ordering::Release);
    Ownership {
        epoch,
        took_over: previous_owner_died,
    }
}

/// Repairs what a dead owner can leave behind. Today that is the receiver event's sleeper count
/// (only the owner sleeps there). Unacknowledged messages and abandoned sends are handled here
/// too once the queue has them.
fn recover(seg: &Segment) {
    seg.shared().data_event.reset_waiters();
}

fn release(seg: &Segment) {
    seg.shared().owner.pid.store(0, Ordering::Release);
    // SAFETY: this thread locked the mutex and still holds it.
    let rc = unsafe { libc::pthread_mutex_unlock(seg.shared().owner.mutex.get()) };
    debug_assert_eq!(rc, 0, "unlock of the owner mutex by its keeper thread");
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        // Closing the channel wakes the keeper, which unlocks; joining it means the lock is
        // released before the caller can unmap anything.
        drop(self.release.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

/// Whether a process exists (a zombie counts as gone only once reaped).
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}
