//! Competing consumers: a shared lane has no owner; any number of consumers take its records
//! by compare-and-swap, and whoever holds the queue's sweep lock moves its head.
//!
//! # States of a record in a shared lane
//!
//! ```text
//!   RESERVED --commit--> COMMITTED --take--> TAKEN{slot} --ack--> ACKED --sweep--> freed
//!                            |                  |  ^
//!                            |          release |  | take again (flagged redelivered)
//!                            |       or reclaim v  |
//!                            +--purge--------> RETURNED
//! ```
//!
//! - *Take*: a consumer turns a `COMMITTED` (or `RETURNED`) stamp into `TAKEN` naming its slot
//!   by one compare-and-swap; the one that wins has the record, every other one moves on. No
//!   lock, no syscall.
//! - *Acknowledge*: `TAKEN{slot} -> ACKED`. A record is never freed before that: a slow but
//!   live consumer keeps what it took.
//! - *Give back*, and *reclaim* from a dead consumer: `TAKEN{slot} -> RETURNED`. The consumer
//!   itself gives back; a dead one's records are reclaimed by whoever takes its slot's
//!   liveness lock ([`Lane::reclaim_consumer`]), the kernel's word that it is gone.
//! - *Sweep*: [`sweep`] moves `head` over the acknowledged (and padding, cancelled, abandoned)
//!   records at the head, under a try-lock that nobody waits for ([`SweepLock`]).
//!
//! # Finding a record: the `read` cursor
//!
//! `read` is the first position of the lane that may hold a record nobody took yet: every
//! record before it has been taken (or is padding, cancelled, abandoned), except the
//! `RETURNED` ones, which the lane counts (`returned`). A consumer starts its walk at `read`,
//! or at `head` while the count is not zero, and moves `read` forward by compare-and-swap over
//! each record it finds taken or finished there (helping, as senders help move `tail`). A
//! record a selective consumer skipped stops the cursor, not the walk. A `RESERVED` record (its
//! sender still writing) stops the walk, as it stops an owner: stepping over it would break
//! the order per sender. The walk sees each stamp at its own moment, so it can see a sender's
//! record still reserved and, a moment later, that sender's next record committed, and take
//! the second before the first (the kill loop of `crates/baton/tests/consumer_kills.rs` caught
//! exactly that). A record taken by another consumer may be stepped over: if it comes back, it
//! comes flagged redelivered.
//!
//! # The sweep, and why it is never missed
//!
//! The consumer that acknowledges the record at `head` sweeps. If another holds the sweep lock,
//! it leaves the work to it: the holder, after unlocking, looks at the head again. Each side
//! writes (the stamp; the lock and `head`), then a `SeqCst` fence, then reads the other's word,
//! so at least one of them sees the other's write: the last acknowledgement at the head is
//! always swept (a loom model checks it, with a mutant without the fence).
//!
//! | SYNC POINT        | Release (writer)                          | Acquire (reader)                        |
//! |-------------------|-------------------------------------------|-----------------------------------------|
//! | record taken      | sender: commit (`RESERVED -> COMMITTED`)  | consumer: stamp load in the take's walk |
//! | record finished   | consumer: ack (`TAKEN -> ACKED`)          | sweeper: stamp load in `advance_head`   |
//! | record given back | consumer/reclaimer: `TAKEN -> RETURNED`   | next taker: take's compare-and-swap     |

use super::{stamp, Corrupt, Lane, RecordHeader, RecordRef, RECORD_HEADER};
use crate::sync::{fence, mutant, ord, racy_copy, racy_read_u64, Ordering};
use crate::wake::Waiter;

/// What a selective take makes of a waiting record's message type (see [`LaneConsumer::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Take this one now: the first record picked this way is taken.
    Now,
    /// A candidate: after the walk, the first record of the lowest rank is taken (System V's
    /// "lowest type not above |t|").
    Rank(u64),
    /// Not this one: it stays, in its place.
    Skip,
}

/// A record a consumer took and has neither acknowledged nor given back. It cannot be copied;
/// acknowledging or giving it back uses it up.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a taken record stays taken until it is acknowledged or given back, or its consumer's process goes"]
pub struct Taken {
    record: RecordRef,
    slot: u8,
    redelivered: bool,
}

impl Taken {
    /// The record: its position, cells and header.
    #[inline]
    pub fn record(&self) -> &RecordRef {
        &self.record
    }

    /// Whether it was delivered before (taken by a consumer that gave it back or died).
    #[inline]
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The `TAKEN` stamp its consumer wrote.
    #[inline]
    fn stamp(&self) -> u64 {
        stamp::pack(self.record.pos, self.record.cells, self.slot, stamp::TAKEN)
    }
}

/// The lock a shared queue's sweeper holds while it moves a lane's head (the `baton` crate's is
/// the queue's robust owner mutex, taken with `trylock`; after a sweeper died holding it, the
/// next one finishes its journaled head move before it gets the guard).
///
/// # Safety
///
/// At most one guard exists at a time, across every process that maps the lane, and a guard
/// returned is taken only once any move a dead holder left half done is finished
/// ([`super::LaneOwner::replay_journal`]).
pub unsafe trait SweepLock {
    /// What holding the lock looks like; dropping it unlocks.
    type Guard;
    /// Takes the lock if nobody holds it; never waits.
    fn try_lock(&self) -> Option<Self::Guard>;
}

/// Moves the head of a shared lane over what is finished there, if nobody else is doing it:
/// the consumer that acknowledged the record at the head calls this. Returns the cells freed.
///
/// # Errors
///
/// [`Corrupt`] if a stamp on the way is out of bounds.
pub fn sweep<L: SweepLock, W: Waiter>(
    lane: &Lane<'_>,
    lock: &L,
    waiter: &W,
) -> Result<u64, Corrupt> {
    let mut freed = 0;
    loop {
        // SYNC POINT: the sweep is never missed: after our write (an ACKED stamp, or the
        // unlock with `head` moved) and before we read the other side's word (the lock, or
        // the stamp at the new head). See the module documentation.
        if !mutant("sweep_no_fence") {
            fence(ord!(SeqCst));
        }
        if !lane.finished_at_head() {
            return Ok(freed);
        }
        let Some(guard) = lock.try_lock() else {
            return Ok(freed);
        };
        // SAFETY: the sweep lock is held (`SweepLock`'s contract: one holder across every
        // process), so this is the only view that moves the head; consumers never write the
        // words a head move writes except `read`, which the move raises atomically.
        let owner = unsafe { lane.owner() };
        let moved = owner.advance_head(waiter);
        drop(guard);
        freed += moved?;
    }
}

impl<'a> Lane<'a> {
    /// A shared lane's consumer view, for records taken under slot `slot`.
    ///
    /// # Safety
    ///
    /// The lane belongs to a shared queue (nobody owns it), and the calling process holds slot
    /// `slot`'s liveness lock for as long as it holds records taken through the view: a slot
    /// whose lock can be taken is taken for dead, and its records given to other consumers
    /// ([`Lane::reclaim_consumer`]).
    #[inline]
    pub unsafe fn consumer(self, slot: u8) -> LaneConsumer<'a> {
        LaneConsumer { lane: self, slot }
    }

    /// Whether the record at the head is finished (acknowledged, padding, cancelled or
    /// abandoned): a sweep would free it.
    #[inline]
    pub fn finished_at_head(&self) -> bool {
        let head = self.ctl.consumer.head.load(Ordering::Relaxed);
        let s = self.stamps[self.index(head)].load(Ordering::Relaxed);
        self.is_at(s, head)
            && matches!(
                stamp::state(s),
                stamp::ACKED | stamp::PAD | stamp::CANCELLED | stamp::ABANDONED
            )
    }

    /// Cells claimed past `read` (records nobody took yet, or still being written), or
    /// `u64::MAX` when records were given back (they lie behind `read`). A hint, for deciding
    /// whom to wake.
    #[inline]
    pub fn unread_cells(&self) -> u64 {
        if self.returned() > 0 {
            return u64::MAX;
        }
        self.ctl
            .producer
            .tail
            .load(Ordering::Relaxed)
            .saturating_sub(self.read_cursor())
    }

    /// Records given back or reclaimed and not yet taken again (an upper bound: see the
    /// lane's `returned` word).
    #[inline]
    pub fn returned(&self) -> u64 {
        self.ctl.consumer.returned.load(Ordering::Relaxed)
    }

    /// Gives back every record that consumer slot `slot` has taken and not acknowledged: they
    /// become `RETURNED`, to be taken again, flagged. Returns how many.
    ///
    /// # Safety
    ///
    /// The caller holds slot `slot`'s liveness lock, taken from a process that died or let
    /// the queue go, until this returns: then every record taken under the slot is a gone
    /// consumer's, and nobody reads it any more.
    pub unsafe fn reclaim_consumer(&self, slot: u8) -> u64 {
        let mut count = 0;
        self.walk_from_head(|p, s| {
            if stamp::state(s) == stamp::TAKEN
                && stamp::sender(s) == slot
                && self.give_back(p, s).is_ok()
            {
                count += 1;
            }
        });
        count
    }

    /// Calls `f(slot, taken)` for each record taken by a consumer (`taken`) or claimed by a
    /// sender and not committed, with the slot its stamp names: the slots whose liveness
    /// matters now.
    pub fn holders(&self, mut f: impl FnMut(u8, bool)) {
        self.walk_from_head(|_, s| match stamp::state(s) {
            stamp::TAKEN => f(stamp::sender(s), true),
            stamp::RESERVED => f(stamp::sender(s), false),
            _ => {}
        });
    }

    /// Removes every record waiting in a shared lane (committed or returned, not taken): each
    /// is acknowledged unread and counted as received, and freed by the next sweep. Safe while
    /// consumers take: a record is either purged or taken, by one compare-and-swap. Returns
    /// how many.
    pub fn purge_waiting(&self) -> u64 {
        self.purge_waiting_with(|_, _| {})
    }

    /// [`Lane::purge_waiting`], calling `gone(header, first)` for each record it purged, with
    /// its header and the first 8 bytes of its payload (0 if it has fewer): what the record
    /// said about itself (a tracked send's token). Both are read before the compare-and-swap
    /// that purges the record, and given only if it succeeded: the record was committed, so
    /// unchanged, all along.
    pub fn purge_waiting_with(&self, mut gone: impl FnMut(&RecordHeader, u64)) -> u64 {
        let mut count = 0;
        self.walk_from_head(|p, s| {
            let state = stamp::state(s);
            let mut first_cell = [0u8; super::CELL];
            if state == stamp::COMMITTED || state == stamp::RETURNED {
                let cell = self.index(p);
                racy_copy(&self.data[cell..cell + 1], 0, &mut first_cell);
            }
            // Relaxed: the purger reads nothing of the record; the sweeper's Acquire load of the
            // ACKED stamp still synchronises with the sender's commit, which heads the release
            // sequence this compare-and-swap continues.
            if (state == stamp::COMMITTED || state == stamp::RETURNED)
                && self.stamps[self.index(p)]
                    .compare_exchange(
                        s,
                        stamp::with_state(s, stamp::ACKED),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                if state == stamp::RETURNED {
                    self.count_taken_again();
                }
                count += 1;
                let mut h = [0u8; RECORD_HEADER];
                h.copy_from_slice(&first_cell[..RECORD_HEADER]);
                let header = RecordHeader::from_bytes(&h);
                let mut w = [0u8; 8];
                if header.len >= 8 {
                    w.copy_from_slice(&first_cell[RECORD_HEADER..RECORD_HEADER + 8]);
                }
                gone(&header, u64::from_ne_bytes(w));
            }
        });
        count
    }

    /// Copies the records waiting in the lane, oldest first, without taking them: in a shared
    /// lane those committed or returned (not taken), in an owned one those committed past the
    /// owner's `read` cursor (not delivered). `each(pos, header, payload, redelivered)` for
    /// each, until it returns false. A snapshot: a record taken while it is copied is left out
    /// (its copy is checked against its stamp, as a seqlock reader checks). Returns whether the
    /// walk reached the end.
    pub fn browse(
        &self,
        max_message: u32,
        mut each: impl FnMut(u64, &RecordHeader, &[u8], bool) -> bool,
    ) -> bool {
        let mut buf = Vec::new();
        let mut going = true;
        let read = self.read_cursor();
        self.walk_from_head(|p, s| {
            let state = stamp::state(s);
            let waiting = state == stamp::RETURNED || (state == stamp::COMMITTED && p >= read);
            if !going || !waiting {
                return;
            }
            let cell = self.index(p);
            let k = stamp::cells(s) as usize;
            buf.resize(k * super::CELL, 0);
            racy_copy(&self.data[cell..cell + k], 0, &mut buf);
            fence(Ordering::Acquire);
            // The first stamp unchanged is not enough: once the record is freed, a sender of
            // the next lap may write its other cells before the first one's stamp changes. A
            // sender writes them only after it saw `head` pass the record, so `head` not past
            // it (read after the copy) says no sender wrote them.
            if self.stamps[cell].load(Ordering::Relaxed) != s
                || self.ctl.consumer.head.load(Ordering::Relaxed) > p
            {
                return; // taken (and perhaps freed and reused) meanwhile
            }
            let mut h = [0u8; RECORD_HEADER];
            h.copy_from_slice(&buf[..RECORD_HEADER]);
            let header = RecordHeader::from_bytes(&h);
            let len = header.len as usize;
            if header.len > max_message || super::record_cells(len) != k as u64 {
                return; // a peer's scribble: not shown
            }
            going = each(
                p,
                &header,
                &buf[RECORD_HEADER..RECORD_HEADER + len],
                state == stamp::RETURNED,
            );
        });
        going
    }

    /// Calls `f(pos, stamp)` for each record from the head to the end of the claimed records.
    /// If the head passes the walk (its cells reused), the walk starts again from the new head.
    fn walk_from_head(&self, mut f: impl FnMut(u64, u64)) {
        let mut restarts = 0;
        'walk: loop {
            // Relaxed: a start from an old head meets stamps of a later lap and starts again.
            let first = self.ctl.consumer.head.load(Ordering::Relaxed);
            let mut p = first;
            while p - first < self.n {
                // not swept: Acquire for `browse`, whose copy of the record must see the
                // sender's writes; no loom model can run `browse` (loom reports every racy
                // read, validated or not). Reclaim and purge need no more than Relaxed here.
                let s = self.stamps[self.index(p)].load(ord!(Acquire));
                if !self.is_at(s, p) {
                    // Relaxed: a stamp of a later lap was claimed by a sender that had seen the
                    // head move past `p`; the Acquire load of it above makes this load see that.
                    if self.ctl.consumer.head.load(Ordering::Relaxed) > p && restarts < 1000 {
                        restarts += 1;
                        continue 'walk;
                    }
                    break 'walk;
                }
                let k = stamp::cells(s);
                if k == 0 || k > self.n - self.offset(p) || stamp::state(s) == stamp::MIDDLE {
                    break 'walk; // corrupt: the consumers report it
                }
                f(p, s);
                let Some(next) = p.checked_add(k) else {
                    break 'walk; // a scribbled head near the end of positions
                };
                p = next;
            }
            break;
        }
    }

    /// If `read` (seen as `at`) lies past the end of the records from `head`, where a peer's
    /// scribble can put it and nothing ever comes, moves it back to that end. Returns whether
    /// it did. (Never otherwise: `read` moves only over records that exist.)
    fn repair_read(&self, at: u64) -> bool {
        let mut end = self.ctl.consumer.head.load(Ordering::Relaxed);
        self.walk_from_head(|p, s| end = p + stamp::cells(s));
        end < at
            && self
                .ctl
                .consumer
                .read
                .compare_exchange(at, end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// `TAKEN` stamp `s` at `p` -> `RETURNED`, counted first (see `returned`).
    fn give_back(&self, p: u64, s: u64) -> Result<(), u64> {
        let c = &self.ctl.consumer;
        if !mutant("returned_uncounted") {
            c.returned.fetch_add(1, Ordering::Relaxed);
        }
        // SYNC POINT: record given back (Release side): the giver's reads of the record happen
        // before the next taker's acknowledgement lets its cells be reused.
        match self.stamps[self.index(p)].compare_exchange(
            s,
            stamp::with_state(s, stamp::RETURNED),
            ord!(Release),
            Ordering::Relaxed,
        ) {
            Ok(_) => Ok(()),
            Err(found) => {
                self.count_taken_again();
                Err(found)
            }
        }
    }

    /// One `RETURNED` record fewer (never below zero, whatever a peer wrote).
    fn count_taken_again(&self) {
        let _ =
            self.ctl
                .consumer
                .returned
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// The message type of the committed record at `pos` whose stamp was `s`, read by a
    /// consumer that has not taken it: kept only if the stamp is still `s` afterwards (a
    /// seqlock reader's read; see `Lane::sent_ns_if_unchanged`).
    fn type_if_unchanged(&self, pos: u64, s: u64) -> Option<i64> {
        let cell = self.index(pos);
        let word = racy_read_u64(&self.data[cell..cell + 1], 8);
        fence(Ordering::Acquire);
        (self.stamps[cell].load(Ordering::Relaxed) == s).then_some(word as i64)
    }
}

/// What a consumer of a shared lane may do: take records, acknowledge them, give them back.
/// Made by [`Lane::consumer`], with proof of the consumer's slot.
#[derive(Debug, Clone, Copy)]
pub struct LaneConsumer<'a> {
    lane: Lane<'a>,
    slot: u8,
}

/// What anyone may do with the lane a consumer may do too.
impl<'a> std::ops::Deref for LaneConsumer<'a> {
    type Target = Lane<'a>;

    #[inline]
    fn deref(&self) -> &Lane<'a> {
        &self.lane
    }
}

/// What a consumer's walk found.
enum Walked {
    /// It took this record.
    Taken(Taken),
    /// A record it would take (a walk that does not take).
    Takeable,
    /// Nothing to take now.
    Nothing,
}

impl<'a> LaneConsumer<'a> {
    /// Takes the first waiting record (`select` is `None`), or the one `select` picks by
    /// message type: the first it answers [`Pick::Now`] for, or else the first of the lowest
    /// [`Pick::Rank`]. Records it skips keep their places. `Ok(None)`: nothing to take now.
    ///
    /// Without `select`, a take is a walk from `read` (usually no step at all) and one
    /// compare-and-swap; with it, a walk over every waiting record until the pick, reading
    /// each one's type.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if a stamp on the way, or the header of the record taken, is out of bounds
    /// (the record then stays taken by this consumer, reported, not delivered).
    pub fn take(
        &self,
        max_message: u32,
        select: Option<&mut dyn FnMut(i64) -> Pick>,
    ) -> Result<Option<Taken>, Corrupt> {
        match self.walk(max_message, select, true)? {
            Walked::Taken(t) => Ok(Some(t)),
            Walked::Takeable | Walked::Nothing => Ok(None),
        }
    }

    /// Whether [`LaneConsumer::take`] with this `select` would take a record now, without
    /// taking it: the same walk (it stops where a take stops: at a record its sender is still
    /// writing), with no record changed (it may help `read` past finished records, as a take
    /// does). For a consumer's ready descriptor.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] as for [`LaneConsumer::take`].
    pub fn can_take(
        &self,
        max_message: u32,
        select: Option<&mut dyn FnMut(i64) -> Pick>,
    ) -> Result<bool, Corrupt> {
        Ok(matches!(
            self.walk(max_message, select, false)?,
            Walked::Takeable
        ))
    }

    /// The walk of [`LaneConsumer::take`]; with `take` false, it stops at the record it would
    /// take and says so.
    fn walk(
        &self,
        max_message: u32,
        mut select: Option<&mut dyn FnMut(i64) -> Pick>,
        take: bool,
    ) -> Result<Walked, Corrupt> {
        let lane = &self.lane;
        let c = &lane.ctl.consumer;
        let mut restarts = 0u32;
        'again: loop {
            restarts += 1;
            if restarts > 1_000_000 {
                return Err(Corrupt::TailStuck);
            }
            // SYNC POINT: walk start (Acquire side). A walk that starts past a record (at `read`,
            // or at `head`) starts after whoever moved it there had seen that record's stamp: so
            // it sees the stamps of a run's later records, which that record's commit published
            // (a Relaxed start could meet the MIDDLE stamps their claim wrote, or their bytes
            // unpublished). A start from an old head meets stamps of a later lap and starts again.
            // not swept: `head` moves only by a sweep that read the ACKED stamps it passes, after
            // the acknowledgements of records taken in turn through `read` (Release below), so
            // a start at `head` is also a start past `read`'s moves; no model tells them apart.
            let head = c.head.load(ord!(Acquire));
            let mut read = c.read.load(ord!(Acquire)).max(head);
            if read - head > lane.n {
                read = head; // a peer's scribble: `read` is never a lap ahead
            }
            let start = if lane.returned() > 0 { head } else { read };
            let mut pos = start;
            let mut best: Option<(u64, u64, u64)> = None;
            while pos - head < lane.n {
                // SYNC POINT: record taken (Acquire side, for the walk; the compare-and-swap
                // in `try_take` is the one that counts).
                let s = lane.stamps[lane.index(pos)].load(ord!(Acquire));
                if !lane.is_at(s, pos) {
                    // Relaxed: as in `walk_from_head`, the Acquire load of the stamp above
                    // makes this load see the head move that let its sender claim it.
                    if c.head.load(Ordering::Relaxed) > pos {
                        continue 'again; // the head passed us: these cells are a later lap's
                    }
                    break;
                }
                let k = stamp::cells(s);
                if k == 0 || k > lane.n - pos % lane.n {
                    return Err(Corrupt::BadSpan { pos, cells: k });
                }
                match stamp::state(s) {
                    stamp::COMMITTED | stamp::RETURNED => {
                        let pick = match select.as_deref_mut() {
                            None => Pick::Now,
                            Some(f) => match lane.type_if_unchanged(pos, s) {
                                Some(t) => f(t),
                                // Changed while read: look again.
                                None if c.head.load(Ordering::Relaxed) > pos => continue 'again,
                                None => continue,
                            },
                        };
                        match pick {
                            Pick::Now if !take => return Ok(Walked::Takeable),
                            Pick::Now => match self.try_take(pos, s, max_message)? {
                                Some(t) => {
                                    if pos == read {
                                        // SYNC POINT: walk start (Release side): the next walk
                                        // from here sees what this one saw (a run's later
                                        // stamps, published with its first record).
                                        let _ = c.read.compare_exchange(
                                            read,
                                            pos + k,
                                            ord!(Release),
                                            Ordering::Relaxed,
                                        );
                                    }
                                    return Ok(Walked::Taken(t));
                                }
                                // Someone else took it, or it was a record of a later lap
                                // (the head passed us): look again.
                                None if c.head.load(Ordering::Relaxed) > pos => continue 'again,
                                None => continue,
                            },
                            Pick::Rank(r) => {
                                if best.is_none_or(|(b, _, _)| r < b) {
                                    best = Some((r, pos, s));
                                }
                            }
                            Pick::Skip => {}
                        }
                        // It stays: `read` cannot pass it.
                        if pos >= read {
                            read = u64::MAX;
                        }
                    }
                    // Its sender is writing it: nothing after it is taken before it (see the
                    // module documentation).
                    stamp::RESERVED => break,
                    stamp::TAKEN
                    | stamp::ACKED
                    | stamp::PAD
                    | stamp::CANCELLED
                    | stamp::ABANDONED => {
                        if pos == read {
                            // Helping: nothing here for anyone. Release: as above, a walk
                            // that starts where this one moved `read` sees what it saw.
                            // not swept: the case needs a third consumer (one takes a run's
                            // first record, one helps `read` past it, one starts there), which
                            // no model can afford; the take's own move above is swept.
                            let _ = c.read.compare_exchange(
                                read,
                                pos + k,
                                ord!(Release),
                                Ordering::Relaxed,
                            );
                            read = pos + k;
                        }
                    }
                    stamp::MIDDLE => return Err(Corrupt::InsideRecord(pos)),
                    other => return Err(Corrupt::UnknownState { pos, state: other }),
                }
                let Some(next) = pos.checked_add(k) else {
                    break; // a scribbled head near the end of positions
                };
                pos = next;
            }
            if pos == start && start > head && best.is_none() && lane.repair_read(start) {
                // `read` pointed past the end of the records (a peer's scribble), where
                // nothing ever comes: it was moved back; look again.
                continue 'again;
            }
            if let Some((_, pos, s)) = best {
                if !take {
                    return Ok(Walked::Takeable);
                }
                match self.try_take(pos, s, max_message)? {
                    Some(t) => return Ok(Walked::Taken(t)),
                    None => continue 'again,
                }
            }
            return Ok(Walked::Nothing);
        }
    }

    /// Takes the record at `pos` whose stamp was `s` (committed or returned), if nobody took
    /// it first; then checks its header.
    fn try_take(&self, pos: u64, s: u64, max_message: u32) -> Result<Option<Taken>, Corrupt> {
        let lane = &self.lane;
        let k = stamp::cells(s);
        let taken = stamp::pack(pos, k, self.slot, stamp::TAKEN);
        // The walk's Acquire load of this very stamp value synchronised with its writer (the
        // sender's commit, or the consumer that gave it back). Acquire here too, for the check
        // below: a consumer stalled between its load and this compare-and-swap for 2^32
        // positions can find a record of a later lap with a stamp equal bit for bit (the same
        // sender, state and size); that record's sender saw `head` past `pos` before claiming,
        // and this Acquire (of its commit) makes the `head` load below see that. (Plain, not
        // swept: no loom model runs 2^32 positions; the unit test
        // `a_consumer_stalled_for_a_whole_tag_wrap_does_not_take_an_alias` plays the stall.)
        let cell = &lane.stamps[lane.index(pos)];
        if cell
            .compare_exchange(s, taken, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Ok(None);
        }
        if lane.ctl.consumer.head.load(Ordering::Relaxed) > pos {
            // Not the record we looked at: put its stamp back, untouched, and look again.
            let _ = cell.compare_exchange(taken, s, Ordering::Relaxed, Ordering::Relaxed);
            return Ok(None);
        }
        let redelivered = stamp::state(s) == stamp::RETURNED;
        if redelivered {
            lane.count_taken_again();
        }
        let header = lane.read_header(lane.index(pos));
        if header.len > max_message {
            return Err(Corrupt::LengthOverMaximum {
                pos,
                len: header.len,
                max: max_message,
            });
        }
        if super::record_cells(header.len as usize) != k {
            return Err(Corrupt::LengthMismatch {
                pos,
                len: header.len,
                cells: k,
            });
        }
        Ok(Some(Taken {
            record: RecordRef {
                pos,
                cells: k,
                header,
                lane: lane.id(),
            },
            slot: self.slot,
            redelivered,
        }))
    }

    /// Refuses a record taken on another lane or under another slot (a caller's mistake).
    fn check_taken(&self, taken: &Taken) {
        self.lane.check_record(&taken.record);
        assert_eq!(
            taken.slot, self.slot,
            "a record is used by the consumer that took it"
        );
    }

    /// Appends the payload of a record this consumer took to `out`.
    pub fn copy_payload(&self, taken: &Taken, out: &mut Vec<u8>) {
        self.check_taken(taken);
        let r = &taken.record;
        self.lane
            .append_out(self.lane.index(r.pos), r.header.len as usize, out);
    }

    /// The payload of a record this consumer took, in place.
    ///
    /// # Safety
    ///
    /// The caller must not keep the slice past acknowledging or giving back the record (then
    /// its cells may be freed and written again).
    pub unsafe fn payload(&self, taken: &Taken) -> &'a [u8] {
        self.check_taken(taken);
        let r = &taken.record;
        let first = self.lane.index(r.pos);
        assert!(
            first + r.cells as usize <= self.lane.data.len(),
            "record within the lane"
        );
        let base = crate::sync::cells_ptr(self.lane.data);
        // SAFETY: inside `data` (asserted; `try_take` checked the length against the cells);
        // taken by us and not yet acknowledged, so nobody frees or writes the cells.
        unsafe {
            std::slice::from_raw_parts(
                base.add(first * super::CELL + RECORD_HEADER),
                r.header.len as usize,
            )
        }
    }

    /// Acknowledges a record this consumer took: it leaves the queue. The caller then sweeps
    /// ([`sweep`]): the record, or padding or a cancelled claim before it, may be at the head.
    ///
    /// # Errors
    ///
    /// [`Corrupt::ChangedUnderOwner`] if its stamp is no longer this consumer's `TAKEN` (a
    /// peer wrote it).
    pub fn ack(&self, taken: Taken) -> Result<(), Corrupt> {
        self.check_taken(&taken);
        let lane = &self.lane;
        let pos = taken.record.pos;
        let s = taken.stamp();
        // SYNC POINT: record finished (Release side): our reads of the record happen before
        // the sweeper frees its cells.
        lane.stamps[lane.index(pos)]
            .compare_exchange(
                s,
                stamp::with_state(s, stamp::ACKED),
                ord!(Release),
                Ordering::Relaxed,
            )
            .map_err(|found| Corrupt::ChangedUnderOwner { pos, stamp: found })?;
        Ok(())
    }

    /// Gives a record back untouched: it is taken again (by any consumer), flagged
    /// redelivered. The caller then wakes a sleeping consumer.
    ///
    /// # Errors
    ///
    /// As [`LaneConsumer::ack`].
    pub fn release(&self, taken: Taken) -> Result<(), Corrupt> {
        self.check_taken(&taken);
        let pos = taken.record.pos;
        self.lane
            .give_back(pos, taken.stamp())
            .map_err(|found| Corrupt::ChangedUnderOwner { pos, stamp: found })
    }

    /// Wakes the senders a sweep left waiting, if it owes them (see
    /// [`super::LaneOwner::wake_owed`]): a consumer calls this when it runs out of records.
    #[inline]
    pub fn wake_owed<W: Waiter>(&self, waiter: &W) {
        self.lane.wake_owed(waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::HeapLane;
    use crate::wake::Yield;
    use std::sync::atomic::{AtomicBool, Ordering as Local}; // facade-exempt: a test's lock

    /// A sweep lock for tests: a flag.
    #[derive(Default)]
    struct Flag(AtomicBool); // facade-exempt

    struct FlagGuard<'a>(&'a AtomicBool); // facade-exempt

    impl Drop for FlagGuard<'_> {
        fn drop(&mut self) {
            self.0.store(false, Local::Release); // facade-exempt
        }
    }

    // SAFETY: a flag taken by compare-and-swap has one holder; test lanes have no dead sweepers.
    unsafe impl<'a> SweepLock for &'a Flag {
        type Guard = FlagGuard<'a>;
        fn try_lock(&self) -> Option<FlagGuard<'a>> {
            self.0
                .compare_exchange(false, true, Local::Acquire, Local::Relaxed) // facade-exempt
                .ok()
                .map(|_| FlagGuard(&self.0))
        }
    }

    fn send_typed(lane: &Lane<'_>, slot: u8, msg_type: i64, payload: &[u8]) -> bool {
        // SAFETY: a test thread plays sender slot `slot`.
        let tx = unsafe { lane.sender(slot) };
        let Ok(claim) = tx.try_claim(payload.len()) else {
            return false;
        };
        let header = RecordHeader {
            len: payload.len() as u32,
            msg_type,
            ..Default::default()
        };
        tx.write(&claim, &header, payload);
        tx.commit(claim).unwrap();
        true
    }

    fn consumer<'a>(lane: &Lane<'a>, slot: u8) -> LaneConsumer<'a> {
        // SAFETY: a test thread plays consumer slot `slot`.
        unsafe { lane.consumer(slot) }
    }

    /// Takes (by `select`), copies and acknowledges one record, sweeping.
    fn take_one(
        lane: &Lane<'_>,
        slot: u8,
        lock: &Flag,
        select: Option<&mut dyn FnMut(i64) -> Pick>,
    ) -> Option<(i64, Vec<u8>, bool)> {
        let c = consumer(lane, slot);
        let t = c.take(1 << 20, select).unwrap()?;
        let mut out = Vec::new();
        c.copy_payload(&t, &mut out);
        let got = (t.record().header().msg_type, out, t.redelivered());
        c.ack(t).unwrap();
        sweep(lane, &lock, &Yield).unwrap();
        Some(got)
    }

    /// System V's rule for msgrcv's type argument, as a pick.
    fn sysv(t: i64) -> impl FnMut(i64) -> Pick {
        move |ty| match t {
            0 => Pick::Now,
            t if t > 0 => {
                if ty == t {
                    Pick::Now
                } else {
                    Pick::Skip
                }
            }
            t => {
                if ty <= t.unsigned_abs() as i64 {
                    Pick::Rank((ty as i128 - i64::MIN as i128) as u64)
                } else {
                    Pick::Skip
                }
            }
        }
    }

    #[test]
    fn two_consumers_take_each_record_once_and_the_sweep_frees_the_lane() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let lock = Flag::default();
        for i in 0..6u8 {
            assert!(send_typed(&lane, 0, 1, &[i]));
        }
        let a = consumer(&lane, 1);
        let b = consumer(&lane, 2);
        let ta = a.take(64, None).unwrap().unwrap();
        let tb = b.take(64, None).unwrap().unwrap();
        assert_eq!((ta.record().pos(), tb.record().pos()), (0, 1));
        // Out of order: b's record is not at the head, so nothing is freed yet.
        b.ack(tb).unwrap();
        assert_eq!(sweep(&lane, &&lock, &Yield).unwrap(), 0);
        a.ack(ta).unwrap();
        assert_eq!(sweep(&lane, &&lock, &Yield).unwrap(), 2);
        let mut rest = Vec::new();
        while let Some((_, p, again)) = take_one(&lane, 1, &lock, None) {
            assert!(!again);
            rest.push(p[0]);
        }
        assert_eq!(rest, [2, 3, 4, 5]);
        assert_eq!(lane.head(), 6);
        assert_eq!(lane.counters(), (6, 0));
    }

    #[test]
    fn a_record_in_use_stays_taken_and_what_follows_it_is_taken_past_it() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let lock = Flag::default();
        for i in 0..3u8 {
            assert!(send_typed(&lane, 0, 1, &[i]));
        }
        let slow = consumer(&lane, 1);
        let held = slow.take(64, None).unwrap().unwrap();
        assert_eq!(take_one(&lane, 2, &lock, None).unwrap().1, [1]);
        assert_eq!(take_one(&lane, 2, &lock, None).unwrap().1, [2]);
        assert_eq!(take_one(&lane, 2, &lock, None), None);
        assert_eq!(lane.head(), 0, "the slow consumer's record pins the head");
        slow.ack(held).unwrap();
        sweep(&lane, &&lock, &Yield).unwrap();
        assert_eq!(lane.head(), 3);
    }

    /// A record its sender is still writing stops the walk: what follows is not taken before
    /// it (a walk that stepped over it could see it reserved, and a moment later its sender's
    /// next record committed, and deliver them out of order).
    #[test]
    fn a_reserved_record_stops_the_walk() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let lock = Flag::default();
        // SAFETY: the test plays sender slot 1.
        let tx = unsafe { lane.sender(1) };
        let claim = tx.try_claim(1).unwrap();
        assert!(send_typed(&lane, 2, 1, b"b"));
        assert_eq!(take_one(&lane, 3, &lock, None), None);
        tx.write(
            &claim,
            &RecordHeader {
                len: 1,
                msg_type: 1,
                ..Default::default()
            },
            b"a",
        );
        tx.commit(claim).unwrap();
        assert_eq!(take_one(&lane, 3, &lock, None).unwrap().1, b"a");
        assert_eq!(take_one(&lane, 3, &lock, None).unwrap().1, b"b");
    }

    #[test]
    fn a_record_given_back_is_taken_again_flagged_before_newer_ones() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let lock = Flag::default();
        for i in 0..3u8 {
            assert!(send_typed(&lane, 0, 1, &[i]));
        }
        let a = consumer(&lane, 1);
        let t0 = a.take(64, None).unwrap().unwrap();
        let t1 = a.take(64, None).unwrap().unwrap();
        a.release(t0).unwrap();
        assert_eq!(lane.returned(), 1);
        assert_eq!(take_one(&lane, 2, &lock, None).unwrap(), (1, vec![0], true));
        assert_eq!(lane.returned(), 0);
        assert_eq!(
            take_one(&lane, 2, &lock, None).unwrap(),
            (1, vec![2], false)
        );
        // The dead consumer's record comes back once its slot is reclaimed.
        // SAFETY: the test plays slot 1's death (nothing uses `t1` after this).
        assert_eq!(unsafe { lane.reclaim_consumer(1) }, 1);
        drop(t1); // the dead consumer's handle: nothing uses it any more
        assert_eq!(take_one(&lane, 2, &lock, None).unwrap(), (1, vec![1], true));
        assert_eq!(lane.head(), 3);
        assert_eq!(lane.counters(), (3, 0));
    }

    #[test]
    fn selective_takes_follow_system_v_and_leave_the_rest_in_order() {
        let heap = HeapLane::new(64);
        let lane = heap.lane();
        let lock = Flag::default();
        for (i, ty) in [5i64, 3, 9, 3, 1, 7].iter().enumerate() {
            assert!(send_typed(&lane, 0, *ty, &[i as u8]));
        }
        let take =
            |t: i64| take_one(&lane, 1, &lock, Some(&mut sysv(t))).map(|(ty, p, _)| (ty, p[0]));
        assert_eq!(take(3), Some((3, 1)), "exactly type 3: the first one");
        assert_eq!(take(-4), Some((1, 4)), "the lowest type not above 4");
        assert_eq!(take(-4), Some((3, 3)));
        assert_eq!(take(-4), None);
        assert_eq!(take(8), None);
        assert_eq!(take(0), Some((5, 0)), "type 0: the first waiting");
        let mut except7 = |ty: i64| if ty != 7 { Pick::Now } else { Pick::Skip };
        assert_eq!(
            take_one(&lane, 1, &lock, Some(&mut except7)).map(|(ty, p, _)| (ty, p[0])),
            Some((9, 2))
        );
        assert_eq!(take_one(&lane, 1, &lock, Some(&mut except7)), None);
        assert_eq!(
            take_one(&lane, 1, &lock, None).map(|(ty, _, _)| ty),
            Some(7)
        );
        assert_eq!(lane.head(), 6);
    }

    #[test]
    fn selective_takes_across_the_wrap_around_keep_exactly_once() {
        let heap = HeapLane::with_tag_bits(8, 8);
        let lane = heap.lane();
        let lock = Flag::default();
        let mut sent = 0u32;
        let mut got = Vec::new();
        for round in 0..400u32 {
            while send_typed(&lane, 0, (sent % 3) as i64, &sent.to_le_bytes()) {
                sent += 1;
            }
            let want = (round % 3) as i64;
            let mut only = |ty: i64| if ty == want { Pick::Now } else { Pick::Skip };
            while let Some((ty, p, _)) = take_one(&lane, 1, &lock, Some(&mut only)) {
                assert_eq!(ty, want);
                got.push(u32::from_le_bytes(p.try_into().unwrap()));
            }
        }
        while let Some((_, p, _)) = take_one(&lane, 1, &lock, None) {
            got.push(u32::from_le_bytes(p.try_into().unwrap()));
        }
        assert!(lane.head() > 1 << 8, "the tags wrapped");
        got.sort_unstable();
        assert_eq!(got, (0..sent).collect::<Vec<_>>());
    }

    #[test]
    fn browse_shows_what_waits_and_purge_removes_it_but_not_what_is_taken() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let lock = Flag::default();
        for i in 0..4u8 {
            assert!(send_typed(&lane, 0, i as i64, &[i]));
        }
        let a = consumer(&lane, 1);
        let held = a.take(64, None).unwrap().unwrap();
        let mut seen = Vec::new();
        assert!(lane.browse(64, |_, h, p, again| {
            seen.push((h.msg_type, p.to_vec(), again));
            true
        }));
        assert_eq!(
            seen,
            [
                (1, vec![1], false),
                (2, vec![2], false),
                (3, vec![3], false)
            ]
        );
        assert_eq!(lane.purge_waiting(), 3);
        assert_eq!(take_one(&lane, 2, &lock, None), None);
        a.ack(held).unwrap();
        sweep(&lane, &&lock, &Yield).unwrap();
        assert_eq!((lane.head(), lane.counters()), (4, (4, 0)));
    }

    #[test]
    fn many_consumer_threads_and_senders_deliver_each_message_exactly_once() {
        let heap = HeapLane::new(32);
        let lane = heap.lane();
        let lock = Flag::default();
        const SENDERS: u8 = 3;
        const EACH: u32 = 20_000;
        let taken: Vec<std::sync::Mutex<Vec<(u8, u32)>>> =
            (0..4).map(|_| Default::default()).collect();
        let done = AtomicBool::new(false); // facade-exempt
        std::thread::scope(|s| {
            for slot in 0..SENDERS {
                let lane = &lane;
                s.spawn(move || {
                    for i in 0..EACH {
                        let mut p = vec![slot];
                        p.extend_from_slice(&i.to_le_bytes());
                        while !send_typed(lane, slot, 0, &p) {
                            std::thread::yield_now();
                        }
                    }
                });
            }
            for (c, out) in taken.iter().enumerate() {
                let (lane, lock, done) = (&lane, &lock, &done);
                s.spawn(move || loop {
                    match take_one(lane, 10 + c as u8, lock, None) {
                        Some((_, p, _)) => out
                            .lock()
                            .unwrap()
                            .push((p[0], u32::from_le_bytes(p[1..5].try_into().unwrap()))),
                        None if done.load(Local::Acquire) => break, // facade-exempt
                        None => std::thread::yield_now(),
                    }
                });
            }
            while lane.counters().0 < (SENDERS as u64) * EACH as u64 {
                std::thread::yield_now();
            }
            done.store(true, Local::Release); // facade-exempt
        });
        let mut all = Vec::new();
        for out in &taken {
            let got = out.lock().unwrap();
            // Per sender, each consumer sees that sender's messages in order.
            for slot in 0..SENDERS {
                let mine: Vec<u32> = got.iter().filter(|m| m.0 == slot).map(|m| m.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-sender order");
            }
            all.extend(got.iter().copied());
        }
        all.sort_unstable();
        let want: Vec<(u8, u32)> = (0..SENDERS)
            .flat_map(|s| (0..EACH).map(move |i| (s, i)))
            .collect();
        assert_eq!(all, want);
        assert_eq!(lane.head(), lane.ctl.producer.tail.load(Ordering::Relaxed));
    }

    // ---- Review tests (adversarial): see the report. ----

    /// The owner's receive of the record at the head (test helper): peek, then acknowledge at
    /// the head, which frees it without writing its stamp.
    fn owner_recv(lane: &Lane<'_>) -> Option<Vec<u8>> {
        match lane.peek(1 << 20, &Yield).unwrap() {
            crate::lane::Peek::Record(r) => {
                let mut out = Vec::new();
                lane.copy_payload(&r, &mut out).unwrap();
                lane.release(r, &Yield).unwrap();
                Some(out)
            }
            _ => None,
        }
    }

    /// A stamp of a record's first cell unchanged after the copy does not prove the copy whole.
    /// Once the record is freed, the next lap's cells are claimed in order, but the record
    /// that covers the old first cell may start before it (a sender `A` whose claim straddles
    /// it writes that cell's MIDDLE stamp only after its compare-and-swap of `tail`), and a
    /// sender `B` claiming right after `A` may already have written into the old record's
    /// second cell. The first stamp is still the old one: a `browse` that checked only it
    /// showed the old header with `B`'s bytes in its payload (found in review); it also checks
    /// that `head` has not passed the record. Here the interleaving is played in
    /// the callback of the record before (an owned lane, whose acknowledgement at the head
    /// leaves the stamp as it was; in a shared lane the same happens to a browse preempted
    /// between its stamp load and its copy).
    #[test]
    fn browse_never_shows_bytes_of_a_later_lap() {
        let heap = HeapLane::new(8);
        let lane = heap.lane();
        assert!(send_typed(&lane, 0, 1, &[0xA0])); // R0: position 0, one cell
        let r1 = vec![0xA1u8; 150]; // R1: positions 1..4, three cells
        assert!(send_typed(&lane, 0, 1, &r1));
        let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut world_moved = false;
        lane.browse(1 << 20, |pos, _h, payload, _again| {
            seen.push((pos, payload.to_vec()));
            if !world_moved {
                world_moved = true;
                // The owner receives R0 and R1, then four one-cell records: head = 8.
                assert_eq!(owner_recv(&lane).unwrap(), [0xA0]);
                assert_eq!(owner_recv(&lane).unwrap(), r1);
                for i in 0..4u8 {
                    assert!(send_typed(&lane, 0, 1, &[i]));
                    assert_eq!(owner_recv(&lane).unwrap(), [i]);
                }
                assert_eq!(lane.head(), 8);
                // Sender A claims two cells at 8 (cells 0 and 1) and has moved `tail` past
                // them, but has not yet written the MIDDLE stamp of cell 1 (`cover`).
                lane.stamps[0].store(stamp::pack(8, 2, 5, stamp::RESERVED), Ordering::Relaxed);
                lane.ctl.producer.tail.store(10, Ordering::Relaxed);
                // Sender B claims at 10 (cell 2, inside old R1) and writes its record.
                assert!(send_typed(&lane, 6, 9, &[0xBB; 20]));
            }
            true
        });
        for (pos, payload) in &seen {
            if *pos == 1 {
                assert_eq!(
                    payload, &r1,
                    "peek showed R1 with another record's bytes in it"
                );
            }
        }
    }

    /// A consumer that stalls between its walk's load of a stamp and its compare-and-swap for
    /// exactly 2^32 positions finds a live record's stamp equal bit for bit (the sender's
    /// `try_claim` checks for this and puts the stamp back, and so does `try_take`). Without that it
    /// would take the later record under the old position: a `Taken` behind `head` (a stale
    /// message id), and that sender's earlier record still waiting: the consumer gets the
    /// sender's messages out of order, neither flagged. The stall is played in the selective
    /// take's type callback, which runs between the two.
    #[test]
    fn a_consumer_stalled_for_a_whole_tag_wrap_does_not_take_an_alias() {
        let heap = HeapLane::new(4);
        let lane = heap.lane();
        assert!(send_typed(&lane, 0, 1, &[0])); // position 0, sender slot 0
        let x = consumer(&lane, 1);
        let mut moved = false;
        let mut stall = |_ty: i64| {
            if !moved {
                moved = true;
                // Another consumer takes position 0; 2^32 positions pass. The last lap's
                // records are acknowledged and freed; head = read = tail = 2^32 - 1.
                let y = consumer(&lane, 2);
                let t = y.take(64, None).unwrap().unwrap();
                y.ack(t).unwrap();
                let base: u64 = (1 << 32) - 1;
                for c in 0..4u64 {
                    // cell c holds the last position below `base` that maps to it
                    let p = (base - 4..base).find(|p| p % 4 == c).unwrap();
                    lane.stamps[c as usize]
                        .store(stamp::pack(p, 1, 3, stamp::ACKED), Ordering::Relaxed);
                }
                let ctl = &lane.ctl;
                ctl.consumer.head.store(base, Ordering::Relaxed);
                ctl.consumer.read.store(base, Ordering::Relaxed);
                ctl.producer.tail.store(base, Ordering::Relaxed);
                // Sender slot 0 sends "a" at 2^32 - 1 (cell 3) and "b" at 2^32 (cell 0):
                // b's stamp is bit for bit the one the stalled consumer read for position 0.
                assert!(send_typed(&lane, 0, 1, b"a"));
                assert!(send_typed(&lane, 0, 1, b"b"));
            }
            Pick::Now
        };
        let first = x.take(64, Some(&mut stall)).unwrap().unwrap();
        let mut p1 = Vec::new();
        x.copy_payload(&first, &mut p1);
        let pos = first.record().pos();
        let head = lane.head();
        x.ack(first).unwrap();
        let second = x.take(64, None).unwrap();
        let p2 = second.map(|t| {
            let mut o = Vec::new();
            x.copy_payload(&t, &mut o);
            x.ack(t).unwrap();
            o
        });
        assert!(
            pos >= head,
            "took a record at position {pos}, behind head {head} (payload {p1:?})"
        );
        assert_eq!(
            (p1, p2),
            (b"a".to_vec(), Some(b"b".to_vec())),
            "one sender's messages to one consumer, in order"
        );
    }

    /// Bad bytes: a peer scribbles the shared `read` word past the end of the records. Every
    /// take started its walk there, found nothing, and the waiting messages were hidden for
    /// ever (found in review): a take that finds nothing at a `read` past the head now checks
    /// that `read` lies within the records, and moves it back if not.
    #[test]
    fn a_scribbled_read_cursor_does_not_hide_messages() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        assert!(send_typed(&lane, 0, 1, b"m"));
        lane.ctl.consumer.read.store(1 << 40, Ordering::Relaxed); // a peer's scribble
        let c = consumer(&lane, 1);
        match c.take(64, None) {
            Ok(Some(t)) => c.ack(t).unwrap(),
            Err(_) => {} // reported: fine
            Ok(None) => panic!(
                "a committed message is hidden by a read cursor past the tail (unread cells: {}), \
                 and nothing is reported",
                lane.unread_cells()
            ),
        }
    }
}
