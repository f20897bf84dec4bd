//! The consumer on the lookout: of the competing consumers that sleep on one [`Event`], at
//! most one at a time is *looking* for messages — polling, back in a moment from its last
//! message, or woken and on its way — and while one is, a notifier wakes nobody: the one
//! looking takes the message without a system call. (Go's scheduler keeps at most one
//! "spinning" thread by the same rule.)
//!
//! The word is the moment the lookout ends, in nanoseconds of a clock every process shares,
//! with its kind in the two low bits:
//!
//! | kind      | set by                                        | lasts            |
//! |-----------|-----------------------------------------------|------------------|
//! | `POLLING` | a consumer that polls ([`Lookout::start_polling`]) | [`POLL_LIFE_NS`] |
//! | `GRACE`   | a consumer that took a message and will be back soon ([`Lookout::leave`]) | [`GRACE_NS`] |
//! | `HANDOFF` | a notifier that woke one sleeper ([`Lookout::should_wake`]) | [`HANDOFF_LIFE_NS`] |
//!
//! 0, or a moment past, is nobody; so is a mark that ends further ahead than its kind lasts (it
//! was made on another clock: a process in another time namespace). A mark outlives a dead
//! holder by at most its life.
//!
//! # Whom a notifier wakes
//!
//! After committing a message and the [`Event`]'s fence, and only when someone sleeps, a
//! notifier asks [`Lookout::should_wake`]: nobody looking means one sleeper is woken; a
//! sleeper already woken and on its way (`HANDOFF`) means none; a poller (or one back in a
//! moment) means none unless messages pile up past what it keeps up with. Waking one sets
//! `HANDOFF` first, by compare-and-swap, so notifiers that race wake one sleeper between
//! them, not one each. The consumer that arrives (takes a message) replaces the mark; one
//! woken for a message somebody else took clears it ([`Lookout::not_coming`]) before it looks
//! a last time and sleeps again.
//!
//! # No message left with everybody asleep
//!
//! A notifier skips the wake only on a live mark. Whoever holds one looks again after giving
//! it up, across a Dekker pair of `SeqCst` fences (notifier: commit, fence, read the mark;
//! consumer: clear the mark, fence, look): either the consumer's look sees the message, or the
//! notifier sees the mark gone and wakes. One delay remains: a message committed while a mark
//! is live, whose holder then stays away (died, or went to long work during its grace), waits
//! for the holder's return, the next notifier after the mark ends, or a sleeper's own tick (the
//! `baton` crate's: 2 ms while other processes' consumers hold records they took, 1 s while
//! other consumers are open). A consumer that
//! takes a message notifies for what waits in every lane, so this needs the holder gone.
//! `loom-tests/` checks the rest.
//!
//! [`Event`]: crate::wake::Event

use crate::sync::{fence, mutant, ord, AtomicU64, Ordering};

/// How long a polling consumer's mark lasts: polling lasts 50 µs by default, so an older mark
/// is a poller that died.
pub const POLL_LIFE_NS: u64 = 1_000_000;
/// How long a consumer that took a message still counts as looking: one with little to do per
/// message is back within it; one with more is not, and does not take the grace.
pub const GRACE_NS: u64 = 5_000;
/// How long a woken sleeper counts as on its way: a woken process normally runs within tens
/// of microseconds; one that has not by then is taken for gone, and the next notifier wakes
/// another.
pub const HANDOFF_LIFE_NS: u64 = 200_000;

const KIND: u64 = 3;
const POLLING: u64 = 0;
const HANDOFF: u64 = 1;
const GRACE: u64 = 2;

/// The word that says which consumer looks for messages; see the module documentation.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Lookout {
    mark: AtomicU64,
}

/// A mark of `kind` that ends at `until` (never 0, which is nobody).
fn mark(until: u64, kind: u64) -> u64 {
    (until.max(KIND + 1) & !KIND) | kind
}

/// Whether `seen` is nobody's mark at `now`: none, ended, or ending further ahead than its
/// kind lasts. That is a mark made on another clock: `CLOCK_MONOTONIC` is one clock across
/// pid namespaces but not across time namespaces, which offset it; without this a process
/// an hour ahead would leave marks that stop every wake-up for an hour. Across time
/// namespaces the lookout thus only costs wake-ups: each side takes the other's marks for
/// nobody's.
fn over(seen: u64, now: u64) -> bool {
    let life = match seen & KIND {
        POLLING => POLL_LIFE_NS,
        HANDOFF => HANDOFF_LIFE_NS,
        _ => GRACE_NS,
    };
    let until = seen & !KIND;
    seen == 0 || until <= now || until > now.saturating_add(life)
}

impl Lookout {
    /// A lookout with nobody looking.
    pub fn new() -> Self {
        Lookout {
            mark: AtomicU64::new(0),
        }
    }

    /// A consumer with nothing to take becomes the poller if nobody else looks (or the mark is
    /// `mine`, its own from its last message). Returns its new mark, or `None`: somebody
    /// looks, and this consumer may sleep at once.
    pub fn start_polling(&self, now: u64, mine: u64) -> Option<u64> {
        let seen = self.mark.load(Ordering::Relaxed);
        if seen != mine && !over(seen, now) {
            return None;
        }
        let new = mark(now + POLL_LIFE_NS, POLLING);
        // Relaxed: the mark orders nothing by itself; the fences of `should_wake`'s callers
        // and of `not_coming` make the Dekker pair.
        self.mark
            .compare_exchange(seen, new, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| new)
    }

    /// A consumer that took a message and goes to work with it: keeps looking for
    /// [`GRACE_NS`] if it will be `back_soon`, and otherwise gives the lookout up. Either way
    /// it replaces a `HANDOFF` mark (it is the sleeper that was on its way, or as good as one).
    /// Returns its new mark (0: none).
    ///
    /// A consumer that gives the lookout up must then let a notifier see messages waiting
    /// (its caller notifies for what piled up).
    pub fn leave(&self, mine: u64, now: u64, back_soon: bool) -> u64 {
        let seen = self.mark.load(Ordering::Relaxed);
        let ours = seen == mine && seen != 0;
        let handoff = seen & KIND == HANDOFF && seen != 0;
        if back_soon {
            if ours && seen & KIND == GRACE && seen & !KIND > now + GRACE_NS / 2 {
                return mine; // still fresh: no write on the hot path
            }
            if !(ours || handoff || over(seen, now)) {
                return 0; // another consumer looks
            }
            let new = mark(now + GRACE_NS, GRACE);
            match self
                .mark
                .compare_exchange(seen, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => new,
                Err(_) => 0,
            }
        } else {
            if ours || handoff {
                let _ = self
                    .mark
                    .compare_exchange(seen, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            0
        }
    }

    /// A polling consumer that found nothing stops looking (if the mark is still `mine`). It
    /// must look once more before it sleeps; the caller's sleep (`Event::wait_until`) does,
    /// after its fence.
    pub fn stop_polling(&self, mine: u64) {
        if mine != 0 {
            let _ = self
                .mark
                .compare_exchange(mine, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// A sleeper that found nothing: if a notifier woke a sleeper for a message (this one, or
    /// another that is not here yet), the message is gone or not visible yet, so clears the
    /// mark, then fences. Returns whether it cleared one: the caller must then look again
    /// before it sleeps (a notifier that saw the mark did not wake anybody).
    pub fn not_coming(&self) -> bool {
        let seen = self.mark.load(Ordering::Relaxed);
        if seen == 0 || seen & KIND != HANDOFF {
            return false;
        }
        if self
            .mark
            .compare_exchange(seen, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SYNC POINT: lookout Dekker pair (consumer side): the cleared mark before the look
        // that follows; partner is the notifier's fence before `should_wake`.
        if !mutant("lookout_no_fence") {
            fence(ord!(SeqCst));
        }
        true
    }

    /// A notifier that committed a message (and passed the `Event`'s fence) and found
    /// sleepers: whether to wake one of them, given the cells committed and not yet taken
    /// (`untaken`) and how many a looking consumer keeps up with (`keeps_up`). Sets the
    /// `HANDOFF` mark when it says yes, so that racing notifiers wake one sleeper between them.
    pub fn should_wake(&self, now: u64, untaken: u64, keeps_up: u64) -> bool {
        let mut seen = self.mark.load(Ordering::Relaxed);
        loop {
            let wake = if over(seen, now) {
                untaken > 0
            } else if seen & KIND == HANDOFF {
                false
            } else {
                untaken > keeps_up
            };
            if !wake {
                return false;
            }
            match self.mark.compare_exchange(
                seen,
                mark(now + HANDOFF_LIFE_NS, HANDOFF),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now_seen) => seen = now_seen,
            }
        }
    }

    /// Whether somebody looks at `now` (for status and tests).
    pub fn looking(&self, now: u64) -> bool {
        !over(self.mark.load(Ordering::Relaxed), now)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_poller_at_a_time_and_its_own_mark_is_its_own() {
        let l = Lookout::new();
        let a = l.start_polling(1_000, 0).expect("nobody looks");
        assert_eq!(l.start_polling(1_100, 0), None, "a second poller");
        let a = l.leave(a, 1_200, true);
        assert_ne!(a, 0);
        assert_eq!(l.start_polling(1_300, 0), None, "within the grace");
        assert!(l.start_polling(1_300, a).is_some(), "its own grace mark");
    }

    #[test]
    fn a_grace_mark_ends_and_then_anyone_polls() {
        let l = Lookout::new();
        let a = l.start_polling(1_000, 0).unwrap();
        let a = l.leave(a, 1_000, true);
        assert!(l.looking(1_000 + GRACE_NS - 8));
        assert!(!l.looking(1_000 + GRACE_NS + 8));
        assert!(l.start_polling(1_000 + GRACE_NS + 8, 0).is_some());
        assert_eq!(l.leave(a, 10_000, true), 0, "no longer its mark");
    }

    #[test]
    fn a_fresh_grace_is_not_rewritten() {
        let l = Lookout::new();
        let a = l.leave(0, 10_000, true);
        assert_eq!(l.leave(a, 10_100, true), a);
        assert_ne!(
            l.leave(a, 10_000 + GRACE_NS, true),
            a,
            "renewed near its end"
        );
    }

    #[test]
    fn notifiers_wake_one_sleeper_between_them() {
        let l = Lookout::new();
        assert!(l.should_wake(1_000, 1, 8), "nobody looks");
        assert!(!l.should_wake(1_001, 100, 8), "one is on its way");
        assert!(!l.should_wake(1_002, 1, 8));
        assert!(
            l.should_wake(1_000 + HANDOFF_LIFE_NS + 8, 1, 8),
            "it never came"
        );
    }

    #[test]
    fn a_poller_is_helped_only_when_messages_pile_up() {
        let l = Lookout::new();
        let a = l.start_polling(1_000, 0).unwrap();
        assert!(!l.should_wake(1_100, 8, 8));
        assert!(l.should_wake(1_100, 9, 8));
        assert!(!l.should_wake(1_150, 100, 8), "and then one is on its way");
        assert_ne!(
            l.leave(a, 1_200, true),
            0,
            "the poller arrives in its place"
        );
    }

    #[test]
    fn the_woken_one_arrives_or_clears_the_handoff() {
        let l = Lookout::new();
        assert!(l.should_wake(1_000, 1, 8));
        assert!(l.not_coming());
        assert!(!l.not_coming(), "cleared once");
        assert!(l.should_wake(1_100, 1, 8));
        assert_eq!(l.leave(0, 1_200, false), 0);
        assert!(!l.looking(1_200), "arrived and went to work");
        assert!(l.should_wake(1_300, 1, 8));
        assert_ne!(l.leave(0, 1_400, true), 0, "arrived and will be back soon");
        assert!(!l.should_wake(1_500, 1, 8));
    }

    #[test]
    fn a_mark_from_a_clock_an_hour_ahead_is_nobodys() {
        let l = Lookout::new();
        let here = 1_000_000_000;
        let ahead = here + 3_600_000_000_000;
        assert_ne!(l.leave(0, ahead, true), 0);
        assert!(
            !l.looking(here),
            "a dead holder's mark outlives it by an hour"
        );
        assert!(
            l.should_wake(here, 1, 8),
            "a sender wakes nobody for an hour"
        );
        assert!(
            !l.looking(ahead),
            "nor its handoff mark, seen from an hour ahead"
        );
        assert!(l.should_wake(ahead, 1, 8));
    }

    #[test]
    fn a_slow_consumer_gives_up_only_its_own_mark() {
        let l = Lookout::new();
        let a = l.start_polling(1_000, 0).unwrap();
        assert_eq!(l.leave(0, 1_100, false), 0);
        assert!(l.looking(1_100), "another consumer's poll is left alone");
        l.stop_polling(a);
        assert!(!l.looking(1_100));
    }
}
