//! Interrupting blocked receives from another thread, or from a signal handler (SA-Forum's
//! `saMsgMessageCancel`).

use crate::recovery::Attachment;
use crate::sys::futex::Futex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Interrupts the receives blocked on one [`Receiver`](crate::Receiver) or
/// [`Consumer`](crate::Consumer): each returns [`RecvError::Interrupted`](crate::RecvError)
/// at once, having taken nothing. Made by `Receiver::canceller` or `Consumer::canceller`.
///
/// A cancel interrupts the receives under way when it is made (blocked, or about to block);
/// a receive that begins after it waits as usual. Cheap to clone, usable from any thread,
/// and async-signal-safe: [`Canceller::cancel`] is an atomic add and a futex wake, with no
/// lock and no allocation, so a signal handler may call it.
#[derive(Clone)]
pub struct Canceller {
    pub(super) seg: Arc<Attachment>,
    pub(super) cancels: Arc<AtomicU64>,
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller")
            .field("queue", &self.seg.names().0)
            .finish()
    }
}

impl Canceller {
    /// Interrupts every receive blocked on the handle this canceller was made from.
    pub fn cancel(&self) {
        // Published before the events' counts are bumped (Release), which the sleepers read
        // (Acquire) before they look at it.
        self.cancels.fetch_add(1, Ordering::Release);
        let shared = self.seg.shared();
        shared.data_event.poke(&Futex);
        shared.select_event.poke(&Futex);
    }

    /// A point in this canceller's history, for [`Receiver::recv_timeout_since`]
    /// (crate::Receiver::recv_timeout_since) and [`Canceller::cancelled_since`]: a caller that
    /// looks for its own reasons to stop (a handle closed) before it waits takes one first, so
    /// that a cancel between its look and its wait still interrupts the wait.
    pub fn point(&self) -> CancelPoint {
        CancelPoint::now(&self.cancels)
    }

    /// Whether [`Canceller::cancel`] was called since `point`.
    ///
    /// # Panics
    ///
    /// If `point` is of another handle's cancellers (a point only means something in the
    /// history it was taken of).
    pub fn cancelled_since(&self, point: CancelPoint) -> bool {
        point.check_of(&self.cancels);
        point.passed(&self.cancels)
    }
}

/// A point in a [`Canceller`]'s history ([`Canceller::point`]): a receive given one is
/// interrupted by every cancel after it, even one made before the receive began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelPoint {
    /// The count it was taken of (its address: the counter is shared by the handle's
    /// cancellers and lives as long as any of them).
    of: usize,
    at: u64,
}

impl CancelPoint {
    pub(super) fn now(cancels: &AtomicU64) -> CancelPoint {
        CancelPoint {
            of: std::ptr::from_ref(cancels) as usize,
            at: cancels.load(Ordering::Acquire),
        }
    }

    pub(super) fn passed(self, cancels: &AtomicU64) -> bool {
        cancels.load(Ordering::Acquire) != self.at
    }

    /// Panics unless this point was taken of `cancels` (as `Condvar::wait` given a second
    /// mutex): another handle's point would read as a cancel that never came, or hide one.
    pub(super) fn check_of(self, cancels: &AtomicU64) {
        assert!(
            self.of == std::ptr::from_ref(cancels) as usize,
            "a CancelPoint of another handle's Canceller"
        );
    }
}
