//! A process group's log: one lane that any member appends to and every member reads, each at
//! its own cursor, in the one order the lane's claims give (see `docs/groups.md`).
//!
//! - *Append*: as a queue's sender does ([`super::LaneSender`]): claim, write, commit. A claim
//!   whose writer died is abandoned, and every reader steps over the same cells.
//! - *Read*: a member looks at the position of its cursor with [`LogReader::at`], which only
//!   looks: it writes no stamp. A record is copied, then the cursor is moved past it (Release).
//!   So every member reads the same records in the same order: the lane's.
//! - *Free*: cells before every live member's cursor have been read by all of them. Whoever
//!   holds the log's sweep lock acknowledges the records there and moves `head` over them
//!   ([`LaneOwner::free_before`]), never past the slowest cursor; [`sweep_log`] runs it
//!   without ever missing the last cursor move.
//!
//! | SYNC POINT     | Release (writer)                        | Acquire (reader)                        |
//! |----------------|-----------------------------------------|-----------------------------------------|
//! | record read    | member: its cursor store, after a copy  | sweeper: the cursor load in `slowest`   |
//! | space freed    | sweeper: `head` store (the lane's)      | sender: `head` load in `try_claim`      |
//!
//! The cursors are the caller's words (the `baton` crate keeps one per member slot); this
//! module asks only for the slowest one.

use super::{Corrupt, Lane, LaneOwner, RecordRef, Slot, SweepLock};
use crate::sync::{fence, mutant, ord, Ordering};
use crate::wake::Waiter;

/// A member's view of a log: it reads at its own cursor and writes nothing in the lane.
#[derive(Debug, Clone, Copy)]
pub struct LogReader<'a> {
    lane: Lane<'a>,
}

impl<'a> Lane<'a> {
    /// A log member's view of this lane.
    ///
    /// # Safety
    ///
    /// The lane is a log (nobody owns it; cells are freed only by [`LaneOwner::free_before`]),
    /// and every position the caller reads through the view is at or after a cursor of its own
    /// that the log's sweepers see (published before the read, and not moved past it until the
    /// read is done): then no sweep frees the cells it reads.
    #[inline]
    pub unsafe fn reader(self) -> LogReader<'a> {
        LogReader { lane: self }
    }
}

impl<'a> LogReader<'a> {
    /// What is at position `pos` (see [`Slot`]); everything read is checked.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when the stamp or the header contradicts the lane.
    #[inline]
    pub fn at(&self, pos: u64, max_message: u32) -> Result<Slot, Corrupt> {
        self.lane.at(pos, max_message)
    }

    /// Appends a record's payload to `out`.
    ///
    /// # Errors
    ///
    /// [`Corrupt::BehindHead`] if the record lies behind `head`: a peer moved `head` over a
    /// cursor (the copy is then not to be trusted).
    #[inline]
    pub fn copy_payload(&self, record: &RecordRef, out: &mut Vec<u8>) -> Result<(), Corrupt> {
        self.lane.copy_payload(record, out)?;
        // Checked again after the copy: a `head` moved over the record meanwhile means the
        // bytes may be a later sender's.
        // Relaxed: a check against a peer's scribble; the protocol never gets here.
        let head = self.lane.ctl.consumer.head.load(Ordering::Relaxed);
        if record.pos() < head {
            return Err(Corrupt::BehindHead {
                pos: record.pos(),
                head,
            });
        }
        Ok(())
    }

    /// The first position not yet freed.
    #[inline]
    pub fn head(&self) -> u64 {
        self.lane.head()
    }

    /// The lane itself (its counters and events).
    #[inline]
    pub fn lane(&self) -> &Lane<'a> {
        &self.lane
    }
}

impl LaneOwner<'_> {
    /// Frees the records wholly before `upto` (the slowest live member's cursor, or `u64::MAX`
    /// when no member reads: then everything committed): acknowledges each committed record,
    /// and moves `head` over them and over the padding, cancelled and abandoned records among
    /// them, never past `upto` nor past a record still being written. Returns the cells freed.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when a stamp or header on the way contradicts the lane.
    pub fn free_before<W: Waiter>(
        &self,
        upto: u64,
        max_message: u32,
        waiter: &W,
    ) -> Result<u64, Corrupt> {
        let lane = &self.lane;
        let start = lane.head();
        let limit = if mutant("log_free_past_cursor") {
            u64::MAX // MUTANT: frees what a slow member has not read yet
        } else {
            upto
        };
        let mut pos = start;
        while pos < limit {
            match lane.at(pos, max_message)? {
                Slot::Record(r) => {
                    if pos + r.cells() > limit {
                        break;
                    }
                    pos += r.cells();
                    if lane.ack(&r)? {
                        // At the head: freed by the move (its stamp is left as it is).
                        lane.advance_head_until(Some(&r), limit, waiter)?;
                    }
                }
                Slot::Skip { cells } => pos += cells,
                Slot::InFlight { .. } | Slot::End => break,
            }
        }
        lane.advance_head_until(None, limit.min(pos), waiter)?;
        lane.wake_owed(waiter);
        Ok(lane.head() - start)
    }
}

/// Frees what every live member of a log has read, if nobody else is doing it: a member calls
/// this after moving its cursor, a sender before it waits for space. `slowest()` gives the
/// slowest live member's cursor (Acquire loads), or `None` when no member reads. Returns the
/// cells freed.
///
/// Never missed: a member writes its cursor, then a `SeqCst` fence, then tries the lock; the
/// sweeper unlocks, then a `SeqCst` fence, then reads the cursors again. So a cursor move
/// whose member found the lock held is seen by that holder's next look (a loom model checks
/// it, with a mutant without the fence).
///
/// # Errors
///
/// [`Corrupt`] as [`LaneOwner::free_before`].
pub fn sweep_log<L: SweepLock, W: Waiter>(
    lane: &Lane<'_>,
    lock: &L,
    slowest: impl Fn() -> Option<u64>,
    max_message: u32,
    waiter: &W,
) -> Result<u64, Corrupt> {
    let mut freed = 0;
    // The slowest cursor the last round freed up to: a look that finds it unchanged has
    // nothing new to free.
    let mut done_upto = None;
    loop {
        // SYNC POINT: the sweep is never missed (see above).
        if !mutant("log_sweep_no_fence") {
            fence(ord!(SeqCst));
        }
        let upto = slowest().unwrap_or(u64::MAX);
        if upto <= lane.head() || done_upto == Some(upto) {
            return Ok(freed);
        }
        let Some(guard) = lock.try_lock() else {
            return Ok(freed);
        };
        // The cursors are read again under the lock: a member that joined meanwhile set its
        // cursor under it.
        let upto = slowest().unwrap_or(u64::MAX);
        // SAFETY: the sweep lock is held (one holder across every process), so this is the
        // only view that moves the head; members and senders write no word a head move
        // writes.
        let owner = unsafe { lane.owner() };
        let moved = owner.free_before(upto, max_message, waiter);
        drop(guard);
        freed += moved?;
        done_upto = Some(upto);
    }
}
