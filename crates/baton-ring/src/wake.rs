//! Sleeping and waking across processes: the [`Waiter`] trait and the [`Event`] protocol.
//!
//! The ring does not know how to sleep: the [`Waiter`] an operation is given does (the
//! `baton` crate's is a shared futex; loom models use a mutex and condition variable).
//!
//! An [`Event`] lives in shared memory next to the condition it announces ("a lane has a
//! message", "a lane has space"). It is an *event count*: a sequence word that sleepers wait on,
//! and a count of sleepers that lets the notifier skip the wake-up syscall when nobody sleeps.
//!
//! # The protocol
//!
//! | step | waiter                                   | notifier                                  |
//! |------|------------------------------------------|-------------------------------------------|
//! | 1    | `waiters += 1`                           | make the condition true (Release store)   |
//! | 2    | `fence(SeqCst)`                          | `fence(SeqCst)`                           |
//! | 3    | `s = seq` (Acquire)                      | read `waiters`; if 0, stop: no syscall    |
//! | 4    | re-check the condition; if true, leave   | `seq += 1` (Release)                      |
//! | 5    | sleep while `seq == s`                   | wake every sleeper on `seq`               |
//! | 6    | `waiters -= 1`, go to 1 if still false   |                                           |
//!
//! No lost wake-up: the two fences are ordered one way or the other. If the notifier's comes
//! first, the waiter's re-check (4) sees the condition. If the waiter's comes first, the notifier
//! sees `waiters > 0` and bumps `seq`; the waiter then either read `seq` before the bump, so its
//! sleep (5) returns at once or is woken, or read it after, in which case the Acquire load
//! synchronises with the bump and its re-check sees the condition. `loom-tests/` checks this.
//!
//! A sleeper that dies leaves `waiters` too high: notifiers then make a needless syscall, never
//! miss one. The queue's recovery resets the receiver's event.

use crate::sync::{fence, mutant, ord, AtomicU32, Ordering};
use std::time::Instant;

/// Waits on a 32-bit word in memory that other processes can see.
pub trait Waiter {
    /// Sleeps while `*word == expected`, until woken or `deadline` passes. May return early
    /// (spuriously); callers re-check their condition.
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>);
    /// Wakes every thread sleeping on `word`, in any process.
    fn wake_all(&self, word: &AtomicU32);
    /// Wakes one thread sleeping on `word` (any one), if there is one. By default, all of
    /// them: waking more than asked is always allowed.
    fn wake_one(&self, word: &AtomicU32) {
        self.wake_all(word);
    }
}

/// An event count in shared memory. See the module documentation for the protocol.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Event {
    /// Bumped by every notification that found a sleeper; the futex word.
    seq: AtomicU32,
    /// How many threads are between step 1 and step 6 of the waiter's side.
    waiters: AtomicU32,
}

impl Event {
    /// A new event with no sleepers.
    pub fn new() -> Self {
        Event {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Called after making the condition true: wakes sleepers, with no syscall when there are
    /// none.
    #[inline]
    pub fn notify<W: Waiter>(&self, waiter: &W) {
        // SYNC POINT: sleep/wake Dekker pair (notifier side), partner in `wait_until`.
        if !mutant("notify_no_fence") {
            fence(ord!(SeqCst));
        }
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(waiter);
        }
    }

    /// As [`Event::notify`], but wakes the sleepers only if `worth_it()` (called only when
    /// someone sleeps) says so; returns whether it woke them. A notifier that skips a wake-up
    /// this way must make it up later (the lane owes its senders one: `Lane::wake_owed`);
    /// sleepers also wake on their own at their deadline.
    #[inline]
    pub fn notify_if<W: Waiter>(&self, waiter: &W, worth_it: impl FnOnce() -> bool) -> bool {
        // SYNC POINT: sleep/wake Dekker pair (notifier side), partner in `wait_until`.
        if !mutant("notify_no_fence") {
            fence(ord!(SeqCst));
        }
        if self.waiters.load(Ordering::Relaxed) != 0 && worth_it() {
            self.notify_slow(waiter);
            return true;
        }
        false
    }

    /// As [`Event::notify_if`], waking one sleeper, not all: for one message that one of many
    /// competing consumers will take. A sleeper woken this way that finds nothing it can take
    /// goes back to sleep; one that was about to sleep sees the count change and looks again.
    /// `worth_it` is asked after the fence, only when someone sleeps.
    #[inline]
    pub fn notify_one_if<W: Waiter>(&self, waiter: &W, worth_it: impl FnOnce() -> bool) -> bool {
        if !mutant("notify_no_fence") {
            fence(ord!(SeqCst));
        }
        if self.waiters.load(Ordering::Relaxed) != 0 && worth_it() {
            self.seq.fetch_add(1, Ordering::Relaxed);
            waiter.wake_one(&self.seq);
            return true;
        }
        false
    }

    /// Wakes every sleeper, whether or not any sleeps, for a reason outside the condition
    /// (a receive cancelled): the count is bumped, so a sleeper about to sleep does not, and
    /// each re-checks. No fence of its own: the caller's reason is published before this by a
    /// Release (or stronger) store, and a sleeper that reads the bumped count (Acquire) sees
    /// it. Only atomics and one syscall: usable in a signal handler.
    pub fn poke<W: Waiter>(&self, waiter: &W) {
        // Release: pairs with the sleeper's Acquire load of `seq` (see `notify_slow`).
        self.seq.fetch_add(1, ord!(Release));
        waiter.wake_all(&self.seq);
    }

    #[cold]
    fn notify_slow<W: Waiter>(&self, waiter: &W) {
        // SYNC POINT: event bumped; partner is the Acquire load of `seq` in `wait_until`. Relaxed
        // is enough: the SeqCst fence the notifier passed just before makes this a release.
        self.seq.fetch_add(1, Ordering::Relaxed);
        waiter.wake_all(&self.seq);
    }

    /// Sleeps until `ready()` returns true or `deadline` passes. Returns whether it was ready.
    ///
    /// `ready` is called at least once; it is the caller's full re-check of the condition.
    pub fn wait_until<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        ready: impl FnMut() -> bool,
    ) -> bool {
        self.wait_until_mapped(waiter, deadline, || true, ready)
            .unwrap_or(false)
    }

    /// As [`Event::wait_until`], for an event in memory a peer can take away (a shared file it
    /// can shrink, making the next touch a SIGBUS): `mapped()` is asked after each sleep,
    /// before the event is touched again; once it says no, this returns `None` at once and
    /// touches nothing more (the sleeper stays counted in memory that is gone anyway).
    pub fn wait_until_mapped<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        mut mapped: impl FnMut() -> bool,
        mut ready: impl FnMut() -> bool,
    ) -> Option<bool> {
        loop {
            if mutant("wait_no_recheck") && ready() {
                // MUTANT: look before announcing, and not again after.
                return Some(true);
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // SYNC POINT: sleep/wake Dekker pair (waiter side), partner in `notify`.
            fence(ord!(SeqCst));
            // SYNC POINT: event bumped (Acquire side).
            let seen = self.seq.load(ord!(Acquire));
            if !mutant("wait_no_recheck") && ready() {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                return Some(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                return Some(false);
            }
            waiter.wait(&self.seq, seen, deadline);
            if !mapped() {
                return None;
            }
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets sleepers that can no longer exist (used by ownership recovery for the receiver's
    /// event, which only the owner sleeps on).
    ///
    /// # Safety
    ///
    /// No thread that announced itself is still between its announcement and its leaving: a
    /// live sleeper would not be woken by the next notification, and its leaving would wrap
    /// the count (every notification after that would take the slow path).
    ///
    /// ```compile_fail
    /// # let event = baton_ring::wake::Event::new();
    /// event.reset_waiters(); // error: unsafe: the caller must know every sleeper is gone
    /// ```
    pub unsafe fn reset_waiters(&self) {
        self.waiters.store(0, Ordering::Relaxed);
    }

    /// How many sleepers are announced (for status and tests).
    #[inline]
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}

/// A [`Waiter`] that never sleeps: `wait` yields the thread and returns (early, which the
/// trait allows), `wake_all` has nothing to wake. For lanes whose users poll, and for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Yield;

impl Waiter for Yield {
    fn wait(&self, _word: &AtomicU32, _expected: u32, _deadline: Option<Instant>) {
        std::thread::yield_now();
    }

    fn wake_all(&self, _word: &AtomicU32) {}
}
