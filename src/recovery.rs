//! What survives a dead process: the sender table, the standby table, and the one recovery
//! procedure a new owner runs when it acquires the owner lock from a dead holder.
//!
//! # Sender slots
//!
//! A process takes a slot in the queue's sender table at its first send (compare-and-swap of a
//! free word, 0, to its pid) and frees it when it unmaps the queue. Every claim it makes names
//! the slot in its stamp. A claim that stays `RESERVED` is resolved by looking at the slot:
//!
//! 1. the word holds the pid of a live process: it is still writing; wait;
//! 2. the word holds a dead pid (or 0, which no claim may name): *lock* the slot by
//!    compare-and-swap to `RECLAIMING | my pid`, so nobody can take it while we work;
//! 3. [`Lane::abandon_sender`] on every lane turns the slot's `RESERVED` stamps to `ABANDONED`;
//! 4. free the slot (0), or keep it for ourselves (a sender that found no free slot).
//!
//! If the reclaimer dies between 2 and 4, the word holds `RECLAIMING | dead pid`, which is a
//! dead pid like any other: the next one to look starts again at 2. Every step is idempotent.
//!
//! [`Lane::abandon_sender`]: crate::lane::Lane::abandon_sender

use crate::owner::process_alive;
use crate::queue::PRIORITIES;
use crate::segment::{Segment, SENDER_SLOTS};
use crate::sync::Ordering;

/// The top bit of a sender word: its claims are being abandoned by the pid in the low bits.
pub(crate) const RECLAIMING: u32 = 1 << 31;
const PID_MASK: u32 = RECLAIMING - 1;

/// Failpoints: with the `failpoints` feature, `BATON_FAILPOINT=<name>[@<hit>][:<action>]` makes
/// the process abort (default), pause forever (`pause`, to be killed), or panic (`panic`) when
/// it reaches `<name>` for the `<hit>`-th time (default 1). Without the feature they compile to
/// nothing.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicU64 as LocalCounter, Ordering as Local}; // facade-exempt: process-local
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<(String, u64, String)>> = OnceLock::new();
    static HITS: LocalCounter = LocalCounter::new(0);
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("BATON_FAILPOINT").ok()?;
        let (point, action) = v.split_once(':').unwrap_or((&v, "abort"));
        let (point, hit) = match point.split_once('@') {
            Some((p, h)) => (p, h.parse().ok()?),
            None => (point, 1),
        };
        Some((point.to_string(), hit, action.to_string()))
    });
    let Some((point, hit, action)) = spec else {
        return;
    };
    if point != name || HITS.fetch_add(1, Local::Relaxed) + 1 != *hit {
        return;
    }
    eprintln!("baton: failpoint {name}: {action}");
    match action.as_str() {
        "pause" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "panic" => panic!("failpoint {name}"),
        _ => std::process::abort(),
    }
}

/// Without the `failpoints` feature a failpoint is nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}

/// This process's slot in the sender table, taken on first use.
///
/// # Errors
///
/// A message naming the problem when all slots are held by live processes.
pub(crate) fn sender_slot(seg: &Segment) -> Result<u8, String> {
    if let Some(&slot) = seg.sender_slot.get() {
        return Ok(slot);
    }
    let me = std::process::id();
    let table = &seg.shared().senders;
    let taken = (1..SENDER_SLOTS)
        .find(|&i| {
            table[i]
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .or_else(|| {
            // No free slot: take over one whose holder died, after abandoning its claims.
            (1..SENDER_SLOTS).find(|&i| reclaim_if_dead(seg, i as u8, true).is_some())
        });
    match taken {
        Some(i) => {
            let slot = i as u8;
            if seg.sender_slot.set(slot).is_err() {
                // Another thread of ours won the race: give ours back.
                let _ = table[i].compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
            Ok(*seg.sender_slot.get().unwrap_or(&slot))
        }
        None => Err(format!(
            "all {} sender slots of the queue are held by live processes",
            SENDER_SLOTS - 1
        )),
    }
}

/// Frees this process's sender slot (when the segment is unmapped).
pub(crate) fn release_sender_slot(seg: &Segment) {
    if let Some(&slot) = seg.sender_slot.get() {
        // Compare with the current pid: a forked child holds a copy of its parent's slot
        // number and must not free the parent's slot.
        let _ = seg.shared().senders[slot as usize].compare_exchange(
            std::process::id(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// If the holder of sender slot `slot` is dead, abandons its unfinished claims and frees the
/// slot (or, with `keep`, takes it for this process). Returns how many claims were abandoned,
/// or `None` when the holder is alive or someone else changed the slot first.
pub(crate) fn reclaim_if_dead(seg: &Segment, slot: u8, keep: bool) -> Option<u64> {
    let word = &seg.shared().senders[slot as usize];
    let w = word.load(Ordering::Acquire);
    let pid = w & PID_MASK;
    if (w == 0 && !keep) || (pid != 0 && process_alive(pid)) {
        return None;
    }
    let me = std::process::id();
    word.compare_exchange(w, RECLAIMING | me, Ordering::AcqRel, Ordering::Relaxed)
        .ok()?;
    failpoint("slot.locked");
    let abandoned = (0..PRIORITIES)
        .map(|p| seg.lane(p).abandon_sender(slot))
        .sum();
    word.store(if keep { me } else { 0 }, Ordering::Release);
    Some(abandoned)
}

/// Registers this process as waiting to own the queue; returns the slot to clear, if any was
/// free (a full table only means a retention-0 close may not see this standby).
pub(crate) fn register_standby(seg: &Segment) -> Option<usize> {
    let me = std::process::id();
    let table = &seg.shared().standbys;
    (0..table.len()).find(|&i| {
        let w = table[i].load(Ordering::Relaxed);
        (w == 0 || !process_alive(w))
            && table[i]
                .compare_exchange(w, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    })
}

/// Clears a standby registration.
pub(crate) fn unregister_standby(seg: &Segment, slot: Option<usize>) {
    if let Some(i) = slot {
        let _ = seg.shared().standbys[i].compare_exchange(
            std::process::id(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// How many live processes are registered as standbys.
pub(crate) fn standbys(seg: &Segment) -> u32 {
    seg.shared()
        .standbys
        .iter()
        .filter(|w| {
            let pid = w.load(Ordering::Acquire);
            pid != 0 && process_alive(pid)
        })
        .count() as u32
}

/// Whether a live process (this one included: another of its threads) waits to own the queue.
pub(crate) fn standby_waiting(seg: &Segment) -> bool {
    standbys(seg) > 0
}

/// The one recovery procedure, run by whoever acquires the owner lock from a dead holder, with
/// the lock held and before `pthread_mutex_consistent`. Every step is idempotent, so a recoverer
/// that dies half way leaves the lock owner-dead and the next one simply runs it again.
///
/// 1. The receiver event's sleeper count: only an owner sleeps there, and the owner is dead.
/// 2. Each lane's head move, if the owner died in the middle of one, is finished from its
///    journal, so the counters count every record once.
/// 3. Each lane's `read` cursor must lie on a record boundary in `head..=end of records`; if
///    not (a peer scribbled on it), it is set back to `head`, so that everything unacknowledged
///    is redelivered rather than skipped.
/// 4. Every sender slot whose holder is dead is reclaimed: its unfinished claims are abandoned.
///
/// Unacknowledged messages need no repair: they are still in place, between `head` and `read`,
/// and the new owner delivers them first, flagged redelivered.
pub(crate) fn recover(seg: &Segment) {
    failpoint("recover.begin");
    seg.shared().data_event.reset_waiters();
    let max = seg.attributes().max_message;
    for p in 0..PRIORITIES {
        let lane = seg.lane(p);
        lane.replay_journal(&crate::wait::Futex);
        lane.repair_read_cursor(max);
    }
    failpoint("recover.lanes");
    for slot in 1..SENDER_SLOTS {
        let w = seg.shared().senders[slot].load(Ordering::Relaxed);
        if w != 0 {
            reclaim_if_dead(seg, slot as u8, false);
        }
    }
    failpoint("recover.senders");
}
