//! The roster: a table of words (a queue group's members and policy) that one writer at a
//! time rewrites, that any number of readers read without a lock and never torn, and that a
//! writer dying half way leaves as it was.
//!
//! The table has two copies, each a stamp word and the table's words. The generation `g` says
//! which copy is current: copy `g % 2`, stamped `2g + 2` ("written for generation g"). A
//! writer (one at a time: the caller holds a lock, in `baton` a robust mutex) writes
//! generation `n = g + 1` into the other copy: stamps it `2n + 1` (writing), stores the words,
//! stamps it `2n + 2`, and only then publishes `n` as the generation. Readers never look at a
//! copy being written, except one that was current when they started and has since been
//! rewritten twice over: the stamp, looked at before and after (a seqlock), tells them to look
//! again. A writer that dies anywhere before publishing leaves the current copy untouched and
//! the generation as it was; the next writer overwrites the half-written copy. Nobody ever
//! waits for a writer.
//!
//! | SYNC POINT          | Release (writer)                       | Acquire (reader)                  |
//! |---------------------|----------------------------------------|-----------------------------------|
//! | generation published| writer: `gen` store in [`Roster::write`] | reader: `gen` load in [`Roster::read`] |
//! | copy being rewritten| writer: stamp `2n + 1` store, then a Release fence before the words | reader: Acquire fence after the words, then the second stamp load |
//! | no writer at it     | writer: stamp `2n + 1` store (after publishing `n - 1`) | reader: first stamp load, before it calls a stamp scribbled |
//!
//! Every word a reader takes is input: a stamp that matches no generation (scribbled by a
//! peer) is reported as [`Scribbled`], never waited on for ever.

use crate::failpoint::failpoint;
use crate::sync::{fence, mutant, ord, spin_hint, AtomicU64, Ordering};
use crate::wake::Event as WakeEvent;

/// The roster's control words: the generation, and the event that trackers of changes sleep
/// on, each on a line of its own.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct RosterControl {
    gen: AtomicU64,
    _pad: [u64; 15],
    changed: WakeEvent,
}

/// A view of a roster: its control words and its two copies, each a stamp word followed by
/// the table's words.
#[derive(Debug, Clone, Copy)]
pub struct Roster<'a> {
    ctl: &'a RosterControl,
    copies: [&'a [AtomicU64]; 2],
}

/// The current copy's stamp matches no generation while the generation stays put: a peer
/// wrote over the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scribbled {
    /// The generation.
    pub generation: u64,
    /// The stamp found in its copy.
    pub stamp: u64,
}

/// How many times a reader looks again while writers keep rewriting the copy it reads, before
/// it yields the CPU between looks.
const SPINS: u32 = 64;

impl<'a> Roster<'a> {
    /// A roster over its control words and two copies of equal length (at least the stamp).
    ///
    /// # Panics
    ///
    /// If the copies differ in length or are empty (a layout bug).
    pub fn new(ctl: &'a RosterControl, copy0: &'a [AtomicU64], copy1: &'a [AtomicU64]) -> Self {
        assert!(
            !copy0.is_empty() && copy0.len() == copy1.len(),
            "two copies of one length, each with its stamp"
        );
        Roster {
            ctl,
            copies: [copy0, copy1],
        }
    }

    /// Words in the table (a copy without its stamp).
    pub fn len(&self) -> usize {
        self.copies[0].len() - 1
    }

    /// Whether the table has no words.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a new roster's first table: generation 0, all words zero. Only for memory nobody
    /// else sees yet.
    pub fn init(&self) {
        // Relaxed: the memory is published later, by whatever makes it visible (a link).
        self.ctl.gen.store(0, Ordering::Relaxed);
        for copy in self.copies {
            for w in copy.iter() {
                w.store(0, Ordering::Relaxed);
            }
        }
        self.copies[0][0].store(2, Ordering::Relaxed);
    }

    /// The current generation: it changes with every [`Roster::write`]. A hint, to know
    /// whether a table read before is still current; the table itself is [`Roster::read`].
    pub fn generation(&self) -> u64 {
        // Relaxed: nothing is read on the strength of it (a stale answer means one more read,
        // or one later).
        self.ctl.gen.load(Ordering::Relaxed)
    }

    /// The trackers' event, to sleep on until the generation changes.
    pub fn changed(&self) -> &'a WakeEvent {
        &self.ctl.changed
    }

    /// Copies the current table into `out` (its length: [`Roster::len`]) and says which
    /// generation it is: a table that was whole and current at one moment of the call.
    ///
    /// # Errors
    ///
    /// [`Scribbled`] if the current copy's stamp is not its generation's while the generation
    /// stays the same (a peer wrote over it).
    ///
    /// # Panics
    ///
    /// If `out` is not [`Roster::len`] words long.
    pub fn read(&self, out: &mut [u64]) -> Result<u64, Scribbled> {
        assert_eq!(out.len(), self.len(), "a whole table");
        let mut looks = 0u32;
        loop {
            let g = self.ctl.gen.load(ord!(Acquire));
            let copy = self.copies[(g & 1) as usize];
            let written = g.wrapping_mul(2).wrapping_add(2);
            let stamp = copy[0].load(ord!(Acquire));
            if stamp == written {
                for (o, w) in out.iter_mut().zip(&copy[1..]) {
                    // Relaxed: the stamps around the copy say whether these are one table.
                    *o = w.load(Ordering::Relaxed);
                }
                fence(ord!(Acquire));
                // Relaxed: ordered after the words by the fence.
                if copy[0].load(Ordering::Relaxed) == written {
                    return Ok(g);
                }
            } else if self.ctl.gen.load(Ordering::Relaxed) == g {
                // A writer stamps this copy (Release) only after publishing g + 1: a stamp
                // loaded (Acquire) from one makes that generation visible here, so with the
                // generation still g, no writer is at it. (Relaxed: the stamp's Acquire did it.)
                return Err(Scribbled {
                    generation: g,
                    stamp,
                });
            }
            // Rewritten under us: the generation moved on at least twice. Look again.
            looks = looks.saturating_add(1);
            if looks < SPINS {
                spin_hint();
            } else {
                crate::sync::yield_now();
            }
        }
    }

    /// Writes `table` (its length: [`Roster::len`]) as the next generation and publishes it;
    /// returns the new generation. Then wake whoever tracks changes:
    /// `changed().notify(waiter)` (after letting the writers' lock go, so that they do not
    /// wake into it).
    ///
    /// The caller must be the only writer (it holds the roster's lock): two writers at once
    /// would write one copy together. Nothing unsound follows (every word is atomic), but
    /// readers could be handed a mix.
    ///
    /// # Panics
    ///
    /// If `table` is not [`Roster::len`] words long.
    pub fn write(&self, table: &[u64]) -> u64 {
        assert_eq!(table.len(), self.len(), "a whole table");
        // Relaxed: only writers store the generation, and the lock orders writers.
        let g = self.ctl.gen.load(Ordering::Relaxed);
        let n = g.wrapping_add(1);
        let copy = self.copies[(n & 1) as usize];
        // MUTANT roster_no_writing_stamp: the words are rewritten under the old stamp.
        if !mutant("roster_no_writing_stamp") {
            copy[0].store(n.wrapping_mul(2).wrapping_add(1), ord!(Release));
        }
        // A reader that sees any word below must see the stamp above (or a later one) after.
        fence(ord!(Release));
        for (w, v) in copy[1..].iter().zip(table) {
            // Relaxed: published by the stamp and the generation below.
            w.store(*v, Ordering::Relaxed);
        }
        failpoint("roster_written");
        // Relaxed: a reader comes to this copy only through the generation stored below
        // (Release), after this in program order, so it cannot see an older stamp here.
        copy[0].store(n.wrapping_mul(2).wrapping_add(2), Ordering::Relaxed);
        failpoint("roster_stamped");
        self.ctl.gen.store(n, ord!(Release));
        n
    }
}

/// A roster on the heap, for tests and loom models.
#[derive(Debug)]
pub struct HeapRoster {
    ctl: RosterControl,
    copies: [Box<[AtomicU64]>; 2],
}

impl HeapRoster {
    /// An empty roster (generation 0, zeros) of a table of `words` words.
    pub fn new(words: usize) -> Self {
        let copy = || (0..=words).map(|_| AtomicU64::new(0)).collect();
        let r = HeapRoster {
            ctl: RosterControl::default(),
            copies: [copy(), copy()],
        };
        r.roster().init();
        r
    }

    /// Its view.
    pub fn roster(&self) -> Roster<'_> {
        Roster::new(&self.ctl, &self.copies[0], &self.copies[1])
    }

    /// Writes `stamp` over copy `which`'s stamp, as a peer scribbling on it would.
    pub fn scribble_stamp(&self, which: usize, stamp: u64) {
        self.copies[which][0].store(stamp, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_new_roster_reads_as_generation_0_of_zeros() {
        let h = HeapRoster::new(3);
        let mut out = [9; 3];
        assert_eq!(h.roster().read(&mut out), Ok(0));
        assert_eq!(out, [0; 3]);
    }

    #[test]
    fn each_write_is_the_next_generation_and_reads_back_whole() {
        let h = HeapRoster::new(3);
        let r = h.roster();
        for n in 1..=5u64 {
            assert_eq!(r.write(&[n, n * 10, n * 100]), n);
            let mut out = [0; 3];
            assert_eq!(r.read(&mut out), Ok(n));
            assert_eq!(out, [n, n * 10, n * 100]);
        }
    }

    #[test]
    fn a_writer_that_stopped_before_publishing_leaves_the_table_as_it_was() {
        let h = HeapRoster::new(2);
        let r = h.roster();
        r.write(&[1, 1]);
        // Generation 2 half written into copy 0, then its writer died.
        h.scribble_stamp(0, 2 * 2 + 1);
        let mut out = [0; 2];
        assert_eq!(r.read(&mut out), Ok(1));
        assert_eq!(out, [1, 1]);
        // The next writer overwrites the half-written copy.
        assert_eq!(r.write(&[2, 2]), 2);
        assert_eq!(r.read(&mut out), Ok(2));
        assert_eq!(out, [2, 2]);
    }

    #[test]
    fn a_scribbled_current_stamp_is_reported_not_waited_on() {
        let h = HeapRoster::new(1);
        let r = h.roster();
        r.write(&[7]);
        h.scribble_stamp(1, 12345);
        let mut out = [0];
        assert_eq!(
            r.read(&mut out),
            Err(Scribbled {
                generation: 1,
                stamp: 12345
            })
        );
    }

    #[test]
    fn readers_racing_a_writer_see_only_whole_tables() {
        let h = std::sync::Arc::new(HeapRoster::new(64));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)); // facade-exempt: test flag
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (h, stop) = (h.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut out = vec![0; 64];
                    let mut last = 0;
                    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed); // facade-exempt: test flag
                    while !stopped() {
                        let g = h.roster().read(&mut out).unwrap();
                        assert!(g >= last, "generations go forward");
                        assert!(out.iter().all(|w| *w == g), "a torn table at {g}: {out:?}");
                        last = g;
                    }
                })
            })
            .collect();
        for n in 1..=20_000u64 {
            h.roster().write(&[n; 64]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed); // facade-exempt: test flag
        for r in readers {
            r.join().unwrap();
        }
    }
}
