//! The event log: a broadcast ring of fixed-size events that any process appends to and any
//! number of readers follow, each at its own cursor, without slowing the writers.
//!
//! A slot is a run of 64-bit words: a stamp, the event's body (its sequence number among
//! them), and the body's checksum. A writer takes the next sequence number `s` with one
//! `fetch_add` on `next`, claims slot `s % n` by a compare-and-swap of its stamp from anything
//! older to `2s + 1` (writing), stores the body and its checksum (Relaxed atomics: a reader may
//! read them at any time), and publishes by a Release compare-and-swap of the stamp to
//! `2s + 2`. A writer that finds a later lap's stamp in its slot drops its event: it would be
//! overwritten at once.
//!
//! A reader at cursor `c` loads the stamp (Acquire): `2c + 2` is event `c`; it loads the body
//! and keeps it only if the body says `c` and its checksum is right. A stamp of a later lap
//! means the reader fell more than a ring behind: it is told how many events it missed and
//! jumps ahead. A stamp of an earlier lap, or `2c + 1`, means not yet written. Two writers a
//! whole ring apart in one slot (one stalled for `n` events, or dead half way) can leave the
//! words of both, or the stalled one's whole body, under the later one's stamp: the checksum
//! catches the first, the sequence number the second, and the reader counts the event as
//! missed rather than show a torn or a wrong one. (No second look at the stamp, as a seqlock
//! reader takes: the body checks itself. The Release/Acquire pair only keeps a reader from
//! taking a stale body for a torn one, and so from missing an event that is there.)
//!
//! | SYNC POINT      | Release (writer)                 | Acquire (reader)             |
//! |-----------------|----------------------------------|------------------------------|
//! | event published | writer: stamp `2s + 1 -> 2s + 2` | reader: stamp load in [`EventLog::read`] |
//!
//! Every word a reader takes from the log is checked (stamp, checksum, length): a peer that
//! scribbles on it produces missed events, never a panic.

use crate::sync::{mutant, ord, AtomicU64, Ordering};
use crate::wake::{Event as WakeEvent, Waiter};

/// Words of a slot in a shared log: a stamp, [`HEAD_WORDS`] words, [`SUBJECT_WORDS`] words of
/// subject, a checksum (464 bytes).
pub const SLOT_WORDS: usize = 2 + HEAD_WORDS + SUBJECT_WORDS;
/// The body's fixed words: `kind | subject length << 16 | pid << 32`, `time_ns`, `a`, `b`, and
/// the event's sequence number (so that a stalled writer's whole body, checksum included, left
/// under a later lap's stamp is not taken for that lap's event).
pub const HEAD_WORDS: usize = 5;
/// Words of subject in a shared log's slot: 408 bytes, room for two names of 200 bytes and a
/// separator (a queue group's event names the group and the member).
pub const SUBJECT_WORDS: usize = 51;

/// One event, as written and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What happened (the `baton` crate's numbering; 16 bits).
    pub kind: u16,
    /// The process that wrote it, in its own pid namespace.
    pub pid: u32,
    /// When: `CLOCK_MONOTONIC` nanoseconds.
    pub time_ns: u64,
    /// Two numbers whose meaning depends on `kind` (an epoch, a count...).
    pub a: u64,
    /// The second number.
    pub b: u64,
    /// What it happened to: a queue's name, cut to what a slot holds.
    pub subject: Vec<u8>,
}

/// The log's words: the sequence allocator, and the readers' event on a line of its own.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct LogControl {
    next: AtomicU64,
    _pad: [u64; 15],
    /// Readers sleep here; writers notify after publishing.
    readers: WakeEvent,
}

/// What a reader finds at its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The event at the cursor; the cursor moves one on.
    Event(Record),
    /// Nothing written there yet.
    NotYet,
    /// The reader fell behind (or an event was torn): this many were lost, and the cursor
    /// moved past them.
    Missed(u64),
}

/// A view of a log: its control words and its slots, `words.len() / stride` of them (a power
/// of two), each `stride` words.
#[derive(Debug, Clone, Copy)]
pub struct EventLog<'a> {
    ctl: &'a LogControl,
    words: &'a [AtomicU64],
    stride: usize,
    slots: usize,
}

/// The checksum of an event's body: FNV-1a over its words, never 0 (a zeroed slot is no
/// event).
fn checksum(words: &[u64]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in words {
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | 1
}

impl<'a> EventLog<'a> {
    /// A log over its control words and its slots' words, `stride` words a slot.
    ///
    /// # Panics
    ///
    /// If the slots are not a power of two in number, or a slot has no room for a body (a
    /// layout bug).
    pub fn new(ctl: &'a LogControl, words: &'a [AtomicU64], stride: usize) -> Self {
        assert!(
            stride >= 2 + HEAD_WORDS,
            "a slot holds a stamp, a body and a checksum"
        );
        let slots = words.len() / stride;
        assert!(slots.is_power_of_two(), "a power of two of slots");
        EventLog {
            ctl,
            words,
            stride,
            slots,
        }
    }

    /// The sequence number the next event will get: where a reader that wants only what
    /// happens from now on starts.
    pub fn tail(&self) -> u64 {
        // Relaxed: a starting point; the stamps say what is written.
        self.ctl.next.load(Ordering::Relaxed)
    }

    /// The readers' event, to sleep on.
    pub fn readers(&self) -> &'a WakeEvent {
        &self.ctl.readers
    }

    /// Bytes of subject a slot holds.
    pub fn subject_capacity(&self) -> usize {
        (self.stride - 2 - HEAD_WORDS) * 8
    }

    /// Slot `s`'s words: the stamp first, the checksum last.
    fn slot(&self, s: u64) -> &'a [AtomicU64] {
        let i = (s as usize) & (self.slots - 1);
        &self.words[i * self.stride..(i + 1) * self.stride]
    }

    /// Appends an event and wakes the readers that sleep. Returns its sequence number, or
    /// `None` if it was dropped (its slot already belongs to a later lap).
    pub fn append<W: Waiter>(&self, e: &Record, waiter: &W) -> Option<u64> {
        // Relaxed: the number only has to be unique; the stamp publishes.
        let s = self.ctl.next.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(s);
        let (stamp, body) = (&slot[0], &slot[1..]);
        // Wrapping: `next` is a peer's word (a scribble near 2^63 must not panic); 2^63 events
        // are not reached otherwise.
        let writing = s.wrapping_mul(2).wrapping_add(1);
        let mut cur = stamp.load(Ordering::Relaxed);
        loop {
            if cur >= writing {
                return None; // a later lap has the slot
            }
            // Relaxed: a reader checks the body itself (its sequence number and checksum), so
            // nothing it reads needs ordering after the claim.
            match stamp.compare_exchange_weak(cur, writing, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let n = body.len() - 1;
        let mut words = vec![0u64; n];
        let subject = &e.subject[..e.subject.len().min(self.subject_capacity())];
        words[0] = e.kind as u64 | (subject.len() as u64) << 16 | (e.pid as u64) << 32;
        words[1] = e.time_ns;
        words[2] = e.a;
        words[3] = e.b;
        words[4] = if mutant("event_no_seq") { 0 } else { s }; // MUTANT: no sequence number
        for (i, chunk) in subject.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            words[HEAD_WORDS + i] = u64::from_le_bytes(w);
        }
        for (cell, &w) in body.iter().zip(&words) {
            cell.store(w, Ordering::Relaxed);
        }
        body[n].store(checksum(&words), Ordering::Relaxed);
        // SYNC POINT: event published (Release side). Without it a reader could see the stamp
        // and a stale body, and count as missed an event that is there.
        let _ = stamp.compare_exchange(
            writing,
            writing.wrapping_add(1),
            ord!(Release),
            Ordering::Relaxed,
        );
        self.ctl.readers.notify(waiter);
        Some(s)
    }

    /// What is at `cursor`; moves it past what it returns (one event, or the missed ones).
    pub fn read(&self, cursor: &mut u64) -> Read {
        let c = *cursor;
        let slot = self.slot(c);
        let (stamp, body) = (&slot[0], &slot[1..]);
        let done = c.wrapping_mul(2).wrapping_add(2);
        // SYNC POINT: event published (Acquire side).
        let first = stamp.load(ord!(Acquire));
        if first < done {
            return Read::NotYet;
        }
        if first > done {
            // A later lap: the reader is more than a ring behind. Jump to the oldest event a
            // ring can still hold (the writers' `next` minus the ring), at least one on.
            let next = self.ctl.next.load(Ordering::Relaxed);
            let to = next
                .saturating_sub(self.slots as u64)
                .max(c.wrapping_add(1));
            *cursor = to;
            return Read::Missed(to.wrapping_sub(c));
        }
        let n = body.len() - 1;
        let words: Vec<u64> = body[..n]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        let sum = body[n].load(Ordering::Relaxed);
        *cursor = c.wrapping_add(1);
        // A body with another sequence number (a stalled writer of an earlier lap wrote it
        // whole over this one, or a later lap has begun) or a bad checksum (a mix of two
        // writers', or a peer's scribble) is not event `c`.
        let torn = sum != checksum(&words) && !mutant("event_no_checksum"); // MUTANT: unchecked
        let other = words[4] != c && !mutant("event_no_seq"); // MUTANT: any number goes
        if torn || other {
            return Read::Missed(1);
        }
        let len = ((words[0] >> 16) as u16 as usize).min(self.subject_capacity());
        let mut subject = Vec::with_capacity(len);
        for w in &words[HEAD_WORDS..] {
            subject.extend_from_slice(&w.to_le_bytes());
        }
        subject.truncate(len);
        Read::Event(Record {
            kind: words[0] as u16,
            pid: (words[0] >> 32) as u32,
            time_ns: words[1],
            a: words[2],
            b: words[3],
            subject,
        })
    }
}

impl EventLog<'_> {
    /// Whether the event at `cursor` has been claimed and not published while a later one has
    /// been published: its writer is slow, or died half way (its slot would otherwise hold
    /// every follower up until a lap later overwrote it). The caller decides how long to wait
    /// before it counts the event as missed and moves on.
    pub fn stalled(&self, cursor: u64) -> bool {
        // Relaxed: a look, not a read of the event.
        let claimed = cursor.wrapping_mul(2).wrapping_add(1);
        let writing = self.slot(cursor)[0].load(Ordering::Relaxed) == claimed;
        let later = cursor.wrapping_add(1);
        writing
            && self.slot(later)[0].load(Ordering::Relaxed) >= later.wrapping_mul(2).wrapping_add(2)
    }
}

/// A log on the heap, for tests and loom models.
#[derive(Debug)]
pub struct HeapEventLog {
    ctl: LogControl,
    words: Box<[AtomicU64]>,
    stride: usize,
}

impl HeapEventLog {
    /// An empty log of `slots` slots (a power of two), each with room for `subject_words`
    /// words of subject (a shared log has [`SUBJECT_WORDS`]; models use fewer).
    pub fn new(slots: usize, subject_words: usize) -> Self {
        let stride = 2 + HEAD_WORDS + subject_words;
        HeapEventLog {
            ctl: LogControl::default(),
            words: (0..slots * stride).map(|_| AtomicU64::new(0)).collect(),
            stride,
        }
    }

    /// Its view.
    pub fn log(&self) -> EventLog<'_> {
        EventLog::new(&self.ctl, &self.words, self.stride)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::wake::Yield;

    fn ev(kind: u16, subject: &str) -> Record {
        Record {
            kind,
            pid: 42,
            time_ns: 7,
            a: 1,
            b: u64::MAX,
            subject: subject.as_bytes().to_vec(),
        }
    }

    #[test]
    fn events_are_read_in_order_whole_from_any_starting_point() {
        let heap = HeapEventLog::new(8, SUBJECT_WORDS);
        let log = heap.log();
        let mut from_start = 0;
        assert_eq!(log.read(&mut from_start), Read::NotYet);
        for k in 0..5 {
            let e = ev(k, &"q".repeat(k as usize * 50));
            assert_eq!(log.append(&e, &Yield), Some(k as u64));
        }
        let mut late = log.tail();
        assert_eq!(log.read(&mut late), Read::NotYet);
        for k in 0..5 {
            let e = ev(k, &"q".repeat(k as usize * 50));
            assert_eq!(log.read(&mut from_start), Read::Event(e));
        }
        assert_eq!(log.read(&mut from_start), Read::NotYet);
    }

    #[test]
    fn a_subject_longer_than_a_slot_holds_is_cut_not_overflowed() {
        let heap = HeapEventLog::new(2, SUBJECT_WORDS);
        let log = heap.log();
        log.append(&ev(1, &"x".repeat(500)), &Yield);
        let mut c = 0;
        match log.read(&mut c) {
            Read::Event(e) => assert_eq!(e.subject.len(), SUBJECT_WORDS * 8),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reader_a_ring_behind_is_told_how_many_it_missed_and_goes_on() {
        let heap = HeapEventLog::new(4, 1);
        let log = heap.log();
        for k in 0..11 {
            log.append(&ev(k, "q"), &Yield);
        }
        let mut c = 1;
        assert_eq!(log.read(&mut c), Read::Missed(6)); // 1..7 are gone; 7..11 are there
        for k in 7..11 {
            assert_eq!(log.read(&mut c), Read::Event(ev(k, "q")));
        }
        assert_eq!(log.read(&mut c), Read::NotYet);
    }

    #[test]
    fn a_torn_or_scribbled_event_is_missed_not_shown() {
        let heap = HeapEventLog::new(4, 1);
        let log = heap.log();
        log.append(&ev(1, "queue"), &Yield);
        log.append(&ev(2, "queue"), &Yield);
        let stride = heap.stride;
        heap.words[1 + 2].store(99, Ordering::Relaxed); // event 0's `a`, torn by a stalled writer
        heap.words[stride + 1].store(u64::MAX, Ordering::Relaxed); // event 1's first word: a scribble
        let mut c = 0;
        assert_eq!(log.read(&mut c), Read::Missed(1));
        assert_eq!(log.read(&mut c), Read::Missed(1));
        assert_eq!(c, 2);
    }

    #[test]
    fn a_writer_whose_slot_a_later_lap_took_drops_its_event() {
        let heap = HeapEventLog::new(2, 1);
        let log = heap.log();
        // Sequence 0's writer stalls after taking its number; 1 and 2 are written (2 in slot
        // 0, a lap later).
        heap.ctl.next.store(1, Ordering::Relaxed);
        log.append(&ev(1, "a"), &Yield);
        log.append(&ev(2, "b"), &Yield);
        // The stalled writer of 0 goes on: it finds the later lap's stamp and drops its event.
        heap.ctl.next.store(0, Ordering::Relaxed);
        assert_eq!(log.append(&ev(0, "late"), &Yield), None);
        let mut c = 2;
        assert_eq!(log.read(&mut c), Read::Event(ev(2, "b")));
    }

    #[test]
    fn an_event_claimed_and_never_published_is_seen_stalled_once_a_later_one_is_out() {
        let heap = HeapEventLog::new(4, 1);
        let log = heap.log();
        // The writer of event 0 claims its slot and dies.
        heap.ctl.next.store(1, Ordering::Relaxed);
        heap.words[0].store(1, Ordering::Relaxed);
        let mut c = 0;
        assert_eq!(log.read(&mut c), Read::NotYet);
        assert!(!log.stalled(0), "nothing later yet: maybe just slow");
        log.append(&ev(1, "q"), &Yield);
        assert!(log.stalled(0));
        assert!(!log.stalled(1));
    }

    #[test]
    fn a_scribbled_next_near_the_end_of_the_numbers_panics_neither_writer_nor_reader() {
        let heap = HeapEventLog::new(4, 1);
        let log = heap.log();
        heap.ctl.next.store(1 << 63, Ordering::Relaxed);
        let _ = log.append(&ev(1, "q"), &Yield);
        let mut c = u64::MAX / 2 + 7;
        let _ = log.read(&mut c);
        let _ = log.stalled(u64::MAX);
        let mut c = u64::MAX;
        let _ = log.read(&mut c);
    }

    #[test]
    fn a_shared_logs_slot_is_464_bytes() {
        assert_eq!(SLOT_WORDS * 8, 464);
        assert_eq!(std::mem::size_of::<LogControl>(), 256);
    }
}
