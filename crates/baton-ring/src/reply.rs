//! Reply boxes: where the one reply to a request is written, in memory its requester holds.
//!
//! A queue has a fixed number of boxes. A requester *claims* a free box, sends its request with
//! the box's [`Token`] (the box's index and the claim's sequence number), and waits on the
//! box's [`Event`]. A replier (the queue's owner, or a consumer of a shared queue) *wins* the
//! box by a compare-and-swap from `WAITING` to `REPLYING` under its own sender slot, writes the
//! reply into the box's cells, and *publishes* it by a Release compare-and-swap to `REPLIED`.
//! The requester reads it and *frees* the box by a Release compare-and-swap back to `FREE`.
//!
//! # The state word
//!
//! | bits   | field     |                                                                 |
//! |--------|-----------|-----------------------------------------------------------------|
//! | 63..26 | seq       | which claim of this box (38 bits; bumped by every claim; a new queue's boxes start at random ones) |
//! | 25..20 | wins      | bumped by every win and every reopening: a word seen again after a slot was settled and won again is not the same word (no ABA on a slot number) |
//! | 19..12 | replier   | the slot writing (`REPLYING`) or that wrote (`REPLIED`, and `FREE` after a reply) the reply; 0 none |
//! | 11..4  | requester | the slot waiting (`WAITING`, `REPLYING`, `REPLIED`); 0 once it is gone (an orphaned reply) |
//! | 3..0   | state     | 0 `FREE`, 1 `WAITING`, 2 `REPLYING`, 3 `REPLIED`; other values are damage |
//!
//! A `FREE` box keeps the seq of its last claim and, if that claim got its reply, the
//! replier's slot: so a second reply to that request is told "already replied", not "gone",
//! for as long as nobody claims the box again.
//!
//! # Why exactly one reply reaches the requester
//!
//! Only the compare-and-swap from `WAITING` (of the token's seq) wins a box, and it names the
//! winner; the winner alone writes the cells and publishes. A second replier (a redelivered
//! request answered again) finds `REPLYING` or `REPLIED` or a later seq and is refused. A
//! replier that dies while `REPLYING` leaves its slot's lock to the kernel: whoever next takes
//! or reclaims that slot puts the box back to `WAITING` ([`ReplyBox::settle`]), and a replier
//! that finds the box `REPLYING` under a slot with no live holder takes it over directly. A
//! live replier is never taken for dead (its slot's lock is held by a keeper thread until its
//! process lets the queue go), so two live repliers never write one box.
//!
//! # Why a box is never written while its last reply is read
//!
//! The requester frees the box (Release) after reading the reply; the next reply can only be
//! written after a new claim and a win (Acquire) that read-from that free, through the release
//! sequence of the state word. A requester that gives up (`WAITING` to `FREE`) reads nothing.
//!
//! | SYNC POINT      | Release (writer)                         | Acquire (reader)                      |
//! |-----------------|------------------------------------------|---------------------------------------|
//! | reply published | replier: `REPLYING -> REPLIED`           | requester: state load in [`ReplyBox::poll`] |
//! | box reusable    | requester: `REPLIED -> FREE` in [`ReplyBox::free`] | replier: the win, `WAITING -> REPLYING` |
//!
//! Everything read from a box is checked: a peer that scribbles on it makes a request fail or
//! a reply be refused, never an out-of-bounds access.

use crate::lane::CELL;
use crate::sync::{
    copy_from_cells, copy_to_cells, mutant, ord, AtomicU32, AtomicU64, DataCell, Ordering,
};
use crate::wake::{Event, Waiter};

/// The packed state word of a box (see the module documentation).
pub mod state {
    /// Nobody's: may be claimed.
    pub const FREE: u64 = 0;
    /// Claimed by a requester waiting for the reply.
    pub const WAITING: u64 = 1;
    /// A replier has won the box and is writing the reply.
    pub const REPLYING: u64 = 2;
    /// The reply is written: the requester may read it.
    pub const REPLIED: u64 = 3;
    /// The seq field's width.
    pub const SEQ_BITS: u32 = 38;
    /// The wins field's width.
    pub const WIN_BITS: u32 = 6;

    /// Packs a state word.
    #[inline]
    pub fn pack(seq: u64, wins: u64, requester: u8, replier: u8, state: u64) -> u64 {
        (seq & ((1 << SEQ_BITS) - 1)) << 26
            | (wins & ((1 << WIN_BITS) - 1)) << 20
            | (replier as u64) << 12
            | (requester as u64) << 4
            | state
    }
    /// The claim's sequence number.
    #[inline]
    pub fn seq(s: u64) -> u64 {
        s >> 26
    }
    /// How many times the box was won or reopened since it was made (mod 64).
    #[inline]
    pub fn wins(s: u64) -> u64 {
        (s >> 20) & ((1 << WIN_BITS) - 1)
    }
    /// The replier's slot.
    #[inline]
    pub fn replier(s: u64) -> u8 {
        (s >> 12) as u8
    }
    /// The requester's slot.
    #[inline]
    pub fn requester(s: u64) -> u8 {
        (s >> 4) as u8
    }
    /// The state.
    #[inline]
    pub fn state(s: u64) -> u64 {
        s & 0xf
    }
    /// The same word with other fields (`None`: keep).
    #[inline]
    pub fn with(s: u64, requester: Option<u8>, replier: Option<u8>, st: u64) -> u64 {
        pack(
            seq(s),
            wins(s),
            requester.unwrap_or(self::requester(s)),
            replier.unwrap_or(self::replier(s)),
            st,
        )
    }
    /// The same word, won or reopened once more.
    #[inline]
    pub fn bumped(s: u64) -> u64 {
        pack(seq(s), wins(s) + 1, requester(s), replier(s), state(s))
    }
}

/// Names one claim of one box: what a request carries so that its reply finds the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// The box's index among the queue's boxes.
    pub index: u16,
    /// The claim's sequence number (38 bits).
    pub seq: u64,
}

impl Token {
    /// The token as the 8 bytes a request carries.
    #[inline]
    pub fn to_word(self) -> u64 {
        (self.seq & ((1 << state::SEQ_BITS) - 1)) << 16 | self.index as u64
    }
    /// The token a request carried (any word is a token; a box checks it against its state).
    #[inline]
    pub fn from_word(w: u64) -> Token {
        Token {
            index: w as u16,
            seq: (w >> 16) & ((1 << state::SEQ_BITS) - 1),
        }
    }
}

/// The metadata a reply carries besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyMeta {
    /// The replier's message type.
    pub msg_type: i64,
    /// The replier's message version.
    pub version: u32,
    /// The replying process, in its own pid namespace.
    pub replier_pid: u32,
    /// When the reply was written: `CLOCK_MONOTONIC` nanoseconds (the replier's clock read;
    /// this crate reads none).
    pub sent_ns: u64,
}

/// A box's words, on one cache line; its cells follow it.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct ReplyBoxControl {
    state: AtomicU64,
    msg_type: AtomicU64,
    sent_ns: AtomicU64,
    len: AtomicU32,
    version: AtomicU32,
    replier_pid: AtomicU32,
    /// The requester sleeps here; the replier notifies after publishing.
    event: Event,
}

/// Why a reply was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The request already has its reply.
    AlreadyReplied,
    /// Another replier, whose slot has a live holder, is writing a reply to this request. (Also
    /// what a replier sees for the few microseconds in which a dead replier's slot is being
    /// settled by another process: worth a short wait and a second try.)
    BeingReplied {
        /// That replier's slot.
        replier: u8,
    },
    /// The requester is no longer waiting for this reply: it gave up, or died, or (when the
    /// box has been claimed again since) already had a reply.
    RequesterGone,
    /// The reply is longer than a box holds.
    TooBig {
        /// The reply's length.
        len: usize,
        /// What a box holds.
        max: usize,
    },
    /// The box's state changed under the replier in a way only a scribbling peer causes.
    Corrupt {
        /// The state word found.
        found: u64,
    },
}

/// A box won for a reply: [`ReplyBox::write`] into it, then [`ReplyBox::publish`] it. A
/// replier that stops holding one (it died) leaves the box to be taken over.
#[derive(Debug)]
pub struct Won {
    token: Token,
    word: u64,
}

/// What a requester finds in its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// No reply yet (`replier` is writing one, if not 0).
    Pending {
        /// The slot writing a reply, or 0.
        replier: u8,
    },
    /// The reply is there: read it, then free the box.
    Replied,
    /// The box is no longer this claim's (a peer scribbled on it, or a process that took this
    /// requester for dead settled it): no reply will come through it.
    Lost,
}

/// What [`ReplyBox::give_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The requester no longer holds the box: it is free again, or a live replier that is
    /// writing into it frees it when it publishes. A reply that comes later is refused.
    Released,
    /// The reply arrived first: read it and free the box as usual.
    Replied,
}

/// What [`ReplyBox::settle`] did for a slot found gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Boxes of the slot's requests freed.
    pub freed: u32,
    /// Of them, replies written that nobody will read (dropped).
    pub dropped: u32,
    /// Boxes the slot was replying into, put back to waiting for another reply.
    pub reopened: u32,
}

/// One reply box: its words and its cells.
#[derive(Debug, Clone, Copy)]
pub struct ReplyBox<'a> {
    ctl: &'a ReplyBoxControl,
    cells: &'a [DataCell],
}

impl<'a> ReplyBox<'a> {
    /// A box over its control line and its cells (as a segment lays them out).
    pub fn new(ctl: &'a ReplyBoxControl, cells: &'a [DataCell]) -> Self {
        ReplyBox { ctl, cells }
    }

    /// The most bytes a reply may have.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cells.len() * CELL
    }

    /// The state word, for status reports and tests.
    #[inline]
    pub fn state_word(&self) -> u64 {
        // Relaxed: a snapshot; nothing is read on the strength of it.
        self.ctl.state.load(Ordering::Relaxed)
    }

    /// The event the requester sleeps on.
    #[inline]
    pub fn event(&self) -> &'a Event {
        &self.ctl.event
    }

    /// Claims the box (the queue's box number `index`) for a request of sender slot
    /// `requester`, if it is free.
    #[inline]
    pub fn try_claim(&self, index: u16, requester: u8) -> Option<Token> {
        let s = self.ctl.state.load(Ordering::Relaxed);
        if state::state(s) != state::FREE {
            return None;
        }
        let seq = (state::seq(s) + 1) & ((1 << state::SEQ_BITS) - 1);
        let claimed = state::pack(seq, state::wins(s), requester, 0, state::WAITING);
        // Relaxed: the claim writes nothing but the word. The reply that follows is ordered
        // after the last reader of the cells by the release sequence of this word: the free
        // (Release) this claim read-from, then this claim, then the win (Acquire).
        self.ctl
            .state
            .compare_exchange(s, claimed, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| Token { index, seq })
    }

    /// Replies to the request of `token` (its `index` is the caller's business) as sender slot
    /// `replier`: [`ReplyBox::win`], [`ReplyBox::write`], [`ReplyBox::publish`].
    ///
    /// # Errors
    ///
    /// [`Refused`]: the reply is not delivered (and nothing was written that anyone reads).
    pub fn reply<W: Waiter>(
        &self,
        token: Token,
        replier: u8,
        meta: ReplyMeta,
        bytes: &[u8],
        is_dead: impl Fn(u8) -> bool,
        waiter: &W,
    ) -> Result<(), Refused> {
        self.check_size(bytes.len())?;
        let won = self.win(token, replier, is_dead)?;
        self.write(&won, meta, bytes)?;
        self.publish(won, waiter)
    }

    /// Whether a reply of `len` bytes fits.
    ///
    /// # Errors
    ///
    /// [`Refused::TooBig`].
    #[inline]
    pub fn check_size(&self, len: usize) -> Result<(), Refused> {
        if len > self.capacity() {
            return Err(Refused::TooBig {
                len,
                max: self.capacity(),
            });
        }
        Ok(())
    }

    /// Wins the box for a reply to `token` as sender slot `replier`. `is_dead(slot)` says
    /// whether no live process holds a sender slot (the replier found writing, or the
    /// requester found waiting).
    ///
    /// # Errors
    ///
    /// [`Refused`]: another reply has it, or nobody waits for one.
    pub fn win(
        &self,
        token: Token,
        replier: u8,
        is_dead: impl Fn(u8) -> bool,
    ) -> Result<Won, Refused> {
        loop {
            let s = self.ctl.state.load(Ordering::Relaxed);
            if state::seq(s) != token.seq {
                return Err(Refused::RequesterGone);
            }
            let requester = state::requester(s);
            match state::state(s) {
                state::WAITING if requester == 0 || is_dead(requester) => {
                    // Nobody will read it: free the box now rather than write into it.
                    if self.cas(s, state::with(s, Some(0), Some(0), state::FREE)) {
                        return Err(Refused::RequesterGone);
                    }
                    continue;
                }
                state::WAITING => {}
                // A reply nobody waits for any more: refused (and the box freed if its
                // replier is gone).
                state::REPLYING if requester == 0 => {
                    if is_dead(state::replier(s)) {
                        self.cas(s, state::with(s, Some(0), Some(0), state::FREE));
                    }
                    return Err(Refused::RequesterGone);
                }
                // Its replier died: take over. (The word includes the wins count, so if the
                // slot was settled and won again meanwhile, the compare-and-swap fails.)
                state::REPLYING if is_dead(state::replier(s)) => {}
                state::REPLYING => {
                    return Err(Refused::BeingReplied {
                        replier: state::replier(s),
                    })
                }
                state::REPLIED => return Err(Refused::AlreadyReplied),
                state::FREE if state::replier(s) != 0 => return Err(Refused::AlreadyReplied),
                state::FREE => return Err(Refused::RequesterGone),
                _ => return Err(Refused::Corrupt { found: s }),
            }
            let mine = state::bumped(state::with(s, None, Some(replier), state::REPLYING));
            if mutant("reply_win_store") {
                // MUTANT: win by a store, not a compare-and-swap.
                self.ctl.state.store(mine, Ordering::Relaxed);
                return Ok(Won { token, word: mine });
            }
            // SYNC POINT: box reusable (Acquire side): the cells are written only after the
            // last reader of the previous reply freed them, and after a dead replier's writes
            // (ordered by whoever found it dead and settled its slot, or by our look at its
            // slot's lock).
            if self
                .ctl
                .state
                .compare_exchange(s, mine, ord!(Acquire), Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Won { token, word: mine });
            }
        }
    }

    /// Writes the reply into a box won by [`ReplyBox::win`].
    ///
    /// # Errors
    ///
    /// [`Refused::TooBig`], before anything is written.
    pub fn write(&self, won: &Won, meta: ReplyMeta, bytes: &[u8]) -> Result<(), Refused> {
        self.check_size(bytes.len())?;
        debug_assert_eq!(state::seq(won.word), won.token.seq);
        // SAFETY: the box is the winner's to write (nobody else writes the cells of a box in
        // REPLYING under a live replier, and the requester reads only after REPLIED); `bytes`
        // fits (checked above).
        unsafe { copy_to_cells(self.cells, 0, bytes) };
        // Relaxed: published with the cells by the Release of `publish`.
        self.ctl.len.store(bytes.len() as u32, Ordering::Relaxed);
        self.ctl
            .msg_type
            .store(meta.msg_type as u64, Ordering::Relaxed);
        self.ctl.version.store(meta.version, Ordering::Relaxed);
        self.ctl
            .replier_pid
            .store(meta.replier_pid, Ordering::Relaxed);
        self.ctl.sent_ns.store(meta.sent_ns, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes the reply written into a won box, and wakes the requester.
    ///
    /// # Errors
    ///
    /// [`Refused::RequesterGone`] if the requester was found gone meanwhile (the box is freed:
    /// nobody reads the reply); [`Refused::Corrupt`] if a peer scribbled on the state.
    pub fn publish<W: Waiter>(&self, won: Won, waiter: &W) -> Result<(), Refused> {
        let done = state::with(won.word, None, None, state::REPLIED);
        let publish = if mutant("reply_publish_relaxed") {
            Ordering::Relaxed // MUTANT: no Release
        } else {
            ord!(Release)
        };
        // SYNC POINT: reply published (Release side).
        match self
            .ctl
            .state
            .compare_exchange(won.word, done, publish, Ordering::Relaxed)
        {
            Ok(_) => {
                self.ctl.event.notify(waiter);
                Ok(())
            }
            // The requester was found gone (or gave up) while we wrote: nobody reads it. The
            // box is freed with Release, so the next reply's writes come after ours.
            Err(now) if now == state::with(won.word, Some(0), None, state::REPLYING) => {
                self.cas(now, state::with(now, Some(0), Some(0), state::FREE));
                Err(Refused::RequesterGone)
            }
            Err(now) => Err(Refused::Corrupt { found: now }),
        }
    }

    /// What the requester of `token` (sender slot `requester`) finds in its box.
    #[inline]
    pub fn poll(&self, token: Token, requester: u8) -> Poll {
        // SYNC POINT: reply published (Acquire side).
        let s = self.ctl.state.load(ord!(Acquire));
        if state::seq(s) != token.seq || state::requester(s) != requester {
            return Poll::Lost;
        }
        match state::state(s) {
            state::WAITING => Poll::Pending { replier: 0 },
            state::REPLYING => Poll::Pending {
                replier: state::replier(s),
            },
            state::REPLIED => Poll::Replied,
            _ => Poll::Lost,
        }
    }

    /// Appends the reply to `out` and returns its metadata, after [`ReplyBox::poll`] said
    /// `Replied`; `None` if its length word is out of bounds (a peer's scribble).
    pub fn read(&self, out: &mut Vec<u8>) -> Option<ReplyMeta> {
        // Relaxed: published by the replier's Release, which the caller's poll acquired.
        let len = self.ctl.len.load(Ordering::Relaxed) as usize;
        if len > self.capacity() {
            return None;
        }
        let start = out.len();
        out.resize(start + len, 0);
        // SAFETY: in bounds (checked); nobody writes the cells of a REPLIED box until its
        // requester (the caller) frees it.
        unsafe { copy_from_cells(self.cells, 0, &mut out[start..]) };
        Some(ReplyMeta {
            msg_type: self.ctl.msg_type.load(Ordering::Relaxed) as i64,
            version: self.ctl.version.load(Ordering::Relaxed),
            replier_pid: self.ctl.replier_pid.load(Ordering::Relaxed),
            sent_ns: self.ctl.sent_ns.load(Ordering::Relaxed),
        })
    }

    /// Frees the box after its requester read the reply. Returns false if the box was no
    /// longer this claim's (a peer's scribble).
    pub fn free(&self, token: Token, requester: u8) -> bool {
        let s = self.ctl.state.load(Ordering::Relaxed);
        if state::seq(s) != token.seq
            || state::requester(s) != requester
            || state::state(s) != state::REPLIED
        {
            return false;
        }
        let release = if mutant("reply_free_relaxed") {
            Ordering::Relaxed // MUTANT: no Release
        } else {
            ord!(Release)
        };
        // SYNC POINT: box reusable (Release side): the reads of the reply happen before.
        self.ctl
            .state
            .compare_exchange(
                s,
                state::with(s, Some(0), None, state::FREE),
                release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The requester of `token` stops waiting (its deadline passed). A reply that is already
    /// there is the caller's to take. A reply being written by a live replier is left to it:
    /// the box is marked requester-less, and that replier frees it when it publishes
    /// (`RequesterGone`); so a stopped replier never holds a requester past its deadline.
    pub fn give_up(&self, token: Token, requester: u8, is_dead: impl Fn(u8) -> bool) -> GiveUp {
        loop {
            let s = self.ctl.state.load(Ordering::Relaxed);
            if state::seq(s) != token.seq || state::requester(s) != requester {
                return GiveUp::Released; // not ours any more: nothing to give back
            }
            let to = match state::state(s) {
                state::REPLIED => return GiveUp::Replied,
                state::REPLYING if !is_dead(state::replier(s)) => {
                    state::with(s, Some(0), None, state::REPLYING)
                }
                state::WAITING | state::REPLYING => state::with(s, Some(0), Some(0), state::FREE),
                _ => return GiveUp::Released,
            };
            if self.cas(s, to) {
                return GiveUp::Released;
            }
        }
    }

    /// Resolves what sender slot `slot`, found gone (its lock taken free or from a dead
    /// holder, or given up by its process), left in this box: its requests' boxes are freed
    /// (a written reply counted dropped), a reply it was writing is reopened for another
    /// replier, a reply being written for it by a live replier is marked requester-less (the
    /// replier then frees the box). Idempotent.
    pub fn settle(&self, slot: u8) -> Settled {
        if slot == 0 {
            return Settled::default(); // 0 is nobody: never a holder's slot
        }
        let mut done = Settled::default();
        loop {
            let s = self.ctl.state.load(Ordering::Relaxed);
            let (req, rep) = (state::requester(s), state::replier(s));
            let to = match state::state(s) {
                state::WAITING | state::REPLIED if req == slot => {
                    if state::state(s) == state::REPLIED {
                        done.dropped = 1;
                    }
                    done.freed = 1;
                    state::with(s, Some(0), None, state::FREE)
                }
                // The replier is gone, and nobody waits (the requester is gone too): free.
                state::REPLYING if rep == slot && (req == slot || req == 0) => {
                    done.freed = 1;
                    state::with(s, Some(0), Some(0), state::FREE)
                }
                // The replier is gone: the request's next replier may have the box.
                state::REPLYING if rep == slot => {
                    done.reopened = 1;
                    state::bumped(state::with(s, None, Some(0), state::WAITING))
                }
                // The requester is gone: the replier frees the box when it publishes.
                state::REPLYING if req == slot => state::with(s, Some(0), None, state::REPLYING),
                _ => return done,
            };
            if self.cas(s, to) {
                return done;
            }
            done = Settled::default();
        }
    }

    /// Frees the box if it holds a request or reply nobody will ever take: requester-less
    /// (`WAITING` or `REPLIED` with requester 0, or `REPLYING` with requester 0 under a replier
    /// `is_dead` says is gone), or a state no protocol step writes (a peer's scribble).
    /// Returns whether it did.
    pub fn free_orphan(&self, is_dead: impl Fn(u8) -> bool) -> bool {
        let s = self.ctl.state.load(Ordering::Relaxed);
        let orphan = match state::state(s) {
            state::FREE => false,
            state::WAITING | state::REPLIED => state::requester(s) == 0,
            state::REPLYING => state::requester(s) == 0 && is_dead(state::replier(s)),
            _ => true,
        };
        orphan && self.cas(s, state::with(s, Some(0), Some(0), state::FREE))
    }

    /// A compare-and-swap of the state word for the steps that free, reopen, orphan or take
    /// back a box. Release: a box freed or reopened after a replier wrote into it (and then
    /// died, or found its requester gone) hands those writes, in order, to the next winner's
    /// Acquire (review: a Relaxed free let the next reply's writes race the dropped one's).
    /// Not swept: the loom model that would catch it needs a settle racing a publish and a
    /// new claim, `reply::a_reply_dropped_for_a_gone_requester_comes_before_the_next_reply`,
    /// and it is written once here for all of them.
    #[inline]
    fn cas(&self, from: u64, to: u64) -> bool {
        let order = if mutant("reply_cas_relaxed") {
            Ordering::Relaxed // MUTANT: frees and reopenings without Release
        } else {
            Ordering::Release
        };
        self.ctl
            .state
            .compare_exchange(from, to, order, Ordering::Relaxed)
            .is_ok()
    }

    /// Sets the claim sequence number of a free box: a new queue's boxes start at random
    /// ones, so that a token of another queue (or of an earlier queue of the same name) is
    /// refused rather than taken for one of this queue's.
    pub fn set_first_seq(&self, seq: u64) {
        // Relaxed: before the segment is visible to anyone.
        self.ctl
            .state
            .store(state::pack(seq, 0, 0, 0, state::FREE), Ordering::Relaxed);
    }
}

/// A box on the heap, for tests and loom models.
#[derive(Debug)]
pub struct HeapReplyBox {
    ctl: ReplyBoxControl,
    cells: Box<[DataCell]>,
}

impl HeapReplyBox {
    /// A free box of `cells` cells.
    pub fn new(cells: usize) -> Self {
        HeapReplyBox {
            ctl: ReplyBoxControl::default(),
            cells: (0..cells).map(|_| DataCell::new()).collect(),
        }
    }

    /// Its view.
    pub fn view(&self) -> ReplyBox<'_> {
        ReplyBox::new(&self.ctl, &self.cells)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::wake::Yield;

    const ALIVE: fn(u8) -> bool = |_| false;

    fn reply(b: &ReplyBox<'_>, t: Token, replier: u8, bytes: &[u8]) -> Result<(), Refused> {
        b.reply(t, replier, ReplyMeta::default(), bytes, ALIVE, &Yield)
    }

    fn read(b: &ReplyBox<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        b.read(&mut out).unwrap();
        out
    }

    #[test]
    fn a_request_gets_its_reply_and_the_box_is_claimed_again() {
        let heap = HeapReplyBox::new(2);
        let b = heap.view();
        for round in 1..=3u64 {
            let t = b.try_claim(7, 3).unwrap();
            assert_eq!((t.index, t.seq), (7, round));
            assert!(
                b.try_claim(7, 4).is_none(),
                "a claimed box is nobody else's"
            );
            assert_eq!(b.poll(t, 3), Poll::Pending { replier: 0 });
            let meta = ReplyMeta {
                msg_type: -5,
                version: 9,
                replier_pid: 1234,
                sent_ns: 77,
            };
            b.reply(t, 9, meta, b"pong", ALIVE, &Yield).unwrap();
            assert_eq!(b.poll(t, 3), Poll::Replied);
            let mut out = vec![1];
            assert_eq!(b.read(&mut out), Some(meta));
            assert_eq!(out, b"\x01pong");
            assert!(b.free(t, 3));
        }
    }

    #[test]
    fn a_second_reply_is_refused_and_the_first_is_what_the_requester_reads() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        reply(&b, t, 2, b"first").unwrap();
        assert_eq!(reply(&b, t, 5, b"second"), Err(Refused::AlreadyReplied));
        assert_eq!(read(&b), b"first");
        assert!(b.free(t, 1));
        // Freed after the reply: a late second reply is still told "already replied"...
        assert_eq!(reply(&b, t, 5, b"third"), Err(Refused::AlreadyReplied));
        // ...until the box is claimed again.
        let t2 = b.try_claim(0, 1).unwrap();
        assert_eq!(reply(&b, t, 5, b"fourth"), Err(Refused::RequesterGone));
        assert_eq!(b.poll(t2, 1), Poll::Pending { replier: 0 });
    }

    #[test]
    fn a_reply_after_the_requester_gave_up_is_refused() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        assert_eq!(b.give_up(t, 1, ALIVE), GiveUp::Released);
        assert_eq!(reply(&b, t, 2, b"late"), Err(Refused::RequesterGone));
        assert!(b.try_claim(0, 1).is_some(), "the box is free again");
    }

    #[test]
    fn giving_up_after_the_reply_came_leaves_the_reply_to_read() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        reply(&b, t, 2, b"just in time").unwrap();
        assert_eq!(b.give_up(t, 1, ALIVE), GiveUp::Replied);
        assert_eq!(read(&b), b"just in time");
        assert!(b.free(t, 1));
    }

    #[test]
    fn a_reply_to_a_dead_requester_frees_the_box_instead() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 4).unwrap();
        let dead = |s: u8| s == 4;
        assert_eq!(
            b.reply(t, 2, ReplyMeta::default(), b"x", dead, &Yield),
            Err(Refused::RequesterGone)
        );
        assert_eq!(state::state(b.state_word()), state::FREE);
    }

    #[test]
    fn a_replier_dying_mid_reply_is_replaced_by_the_next_one() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        // Replier 2 wins, writes and "dies" before publishing.
        let died = std::cell::Cell::new(false);
        let won = b.win(t, 2, ALIVE).unwrap();
        b.write(&won, ReplyMeta::default(), b"partial").unwrap();
        let _dies = won;
        died.set(true);
        assert_eq!(b.poll(t, 1), Poll::Pending { replier: 2 });
        // While 2 lives, another reply is refused; once it is dead, 3 takes over.
        assert_eq!(
            reply(&b, t, 3, b"whole"),
            Err(Refused::BeingReplied { replier: 2 })
        );
        let dead = |s: u8| s == 2 && died.get();
        b.reply(t, 3, ReplyMeta::default(), b"whole", dead, &Yield)
            .unwrap();
        assert_eq!(read(&b), b"whole");
    }

    #[test]
    fn settling_a_dead_repliers_slot_reopens_the_box_and_a_dead_requesters_frees_it() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let _dies = b.win(t, 2, ALIVE).unwrap(); // replier 2 wins and dies
        assert_eq!(b.settle(9), Settled::default(), "another slot's: untouched");
        assert_eq!(
            b.settle(2),
            Settled {
                reopened: 1,
                ..Default::default()
            }
        );
        assert_eq!(b.settle(2), Settled::default(), "idempotent");
        reply(&b, t, 3, b"again").unwrap();
        // Now the requester is found gone with the reply unread: dropped, counted, freed.
        assert_eq!(
            b.settle(1),
            Settled {
                freed: 1,
                dropped: 1,
                reopened: 0
            }
        );
        assert_eq!(state::state(b.state_word()), state::FREE);
        assert_eq!(b.poll(t, 1), Poll::Lost);
    }

    #[test]
    fn a_requester_found_gone_while_its_reply_is_written_leaves_a_free_box() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let won = b.win(t, 2, ALIVE).unwrap();
        b.write(&won, ReplyMeta::default(), b"nobody reads this")
            .unwrap();
        assert_eq!(b.settle(1), Settled::default()); // the requester is found gone
        assert_eq!(b.publish(won, &Yield), Err(Refused::RequesterGone));
        assert_eq!(state::state(b.state_word()), state::FREE);
        assert!(b.try_claim(0, 5).is_some());
    }

    #[test]
    fn a_reply_too_big_for_the_box_is_refused_before_anything_is_written() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        assert_eq!(
            reply(&b, t, 2, &[0; 65]),
            Err(Refused::TooBig { len: 65, max: 64 })
        );
        assert_eq!(b.poll(t, 1), Poll::Pending { replier: 0 });
        reply(&b, t, 2, &[7; 64]).unwrap();
        assert_eq!(read(&b), [7; 64]);
    }

    #[test]
    fn the_sequence_number_wraps_at_thirty_eight_bits_and_tokens_round_trip() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let last = (1u64 << state::SEQ_BITS) - 1;
        heap.ctl.state.store(
            state::pack(last - 1, 0, 0, 0, state::FREE),
            Ordering::Relaxed,
        );
        let t = b.try_claim(513, 1).unwrap();
        assert_eq!(t.seq, last);
        assert_eq!(Token::from_word(t.to_word()), t);
        reply(&b, t, 2, b"a").unwrap();
        assert!(b.free(t, 1));
        let t = b.try_claim(513, 1).unwrap();
        assert_eq!(t.seq, 0);
        assert_eq!(Token::from_word(t.to_word()), t);
    }

    #[test]
    fn a_scribbled_box_fails_a_request_and_refuses_a_reply_without_reading_out_of_bounds() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        reply(&b, t, 2, b"ok").unwrap();
        heap.ctl.len.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(b.read(&mut Vec::new()), None);
        heap.ctl
            .state
            .store(state::pack(t.seq, 0, 1, 2, 0xc), Ordering::Relaxed);
        assert_eq!(b.poll(t, 1), Poll::Lost);
        assert!(matches!(
            reply(&b, t, 2, b"x"),
            Err(Refused::Corrupt { .. })
        ));
        assert_eq!(b.give_up(t, 1, ALIVE), GiveUp::Released);
    }

    #[test]
    fn a_box_whose_requester_and_then_replier_are_found_gone_ends_free() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let won = b.win(t, 2, ALIVE).unwrap();
        b.write(&won, ReplyMeta::default(), b"half").unwrap();
        b.settle(1); // the requester is found gone
        let _dies = won; // then the replier dies before publishing
        b.settle(2);
        assert_eq!(
            state::state(b.state_word()),
            state::FREE,
            "review: the box leaked"
        );
    }

    /// Review: replier 3 finds the box REPLYING under slot 2 and asks whether 2 is dead: yes.
    /// Before its compare-and-swap, a new process takes slot 2 (settling it reopens the box)
    /// and, as slot 2, wins the box for the same request: the word has the same fields again.
    /// The wins count makes it another word, so replier 3 does not win too.
    #[test]
    fn a_takeover_never_gives_the_box_to_two_live_repliers() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let _old = b.win(t, 2, ALIVE).unwrap(); // the replier in slot 2 wins and dies
        let second = std::cell::Cell::new(None);
        let played = std::cell::Cell::new(false);
        let is_dead = |slot: u8| {
            if slot == 2 && !played.replace(true) {
                b.settle(2);
                second.set(Some(
                    b.win(t, 2, ALIVE).expect("the new slot-2 holder wins"),
                ));
                return true; // what replier 3 saw before all that
            }
            false
        };
        let third = b.win(t, 3, is_dead);
        assert_eq!(third.unwrap_err(), Refused::BeingReplied { replier: 2 });
        let second = second.take().unwrap();
        b.write(&second, ReplyMeta::default(), b"slot 2's").unwrap();
        b.publish(second, &Yield).unwrap();
        assert_eq!(read(&b), b"slot 2's");
    }

    /// Review: the requester gives up while the box is REPLYING under a slot that looks dead;
    /// before its compare-and-swap the slot is retaken and wins the box again. The requester
    /// must not free a box a live replier writes: it is released to that replier, which frees
    /// it when it publishes, and no other request gets it meanwhile.
    #[test]
    fn giving_up_never_frees_a_box_a_live_replier_is_writing() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let _old = b.win(t, 2, ALIVE).unwrap();
        let live = std::cell::Cell::new(None);
        let played = std::cell::Cell::new(false);
        let is_dead = |slot: u8| {
            if slot == 2 && !played.replace(true) {
                b.settle(2);
                live.set(Some(b.win(t, 2, ALIVE).unwrap()));
                return true;
            }
            false
        };
        assert_eq!(b.give_up(t, 1, is_dead), GiveUp::Released);
        let live = live.take().unwrap();
        assert!(
            b.try_claim(0, 5).is_none(),
            "the live replier still holds the box"
        );
        b.write(&live, ReplyMeta::default(), b"late").unwrap();
        assert_eq!(b.publish(live, &Yield), Err(Refused::RequesterGone));
        assert_eq!(state::state(b.state_word()), state::FREE);
        assert!(b.try_claim(0, 5).is_some());
    }

    #[test]
    fn a_requester_giving_up_on_a_stopped_live_replier_is_not_held_and_the_box_comes_back() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        let t = b.try_claim(0, 1).unwrap();
        let won = b.win(t, 2, ALIVE).unwrap(); // then stopped (SIGSTOP), alive
        assert_eq!(b.give_up(t, 1, ALIVE), GiveUp::Released);
        assert_eq!(b.poll(t, 1), Poll::Lost);
        // A second reply to the request is refused; the box is freed by the replier's
        // publish, or (if it dies first) when its slot is settled, or by an orphan sweep.
        assert_eq!(reply(&b, t, 3, b"x"), Err(Refused::RequesterGone));
        let _dies = won;
        assert!(!b.free_orphan(ALIVE), "its replier may still publish");
        assert!(b.free_orphan(|s| s == 2));
        assert_eq!(state::state(b.state_word()), state::FREE);
    }

    #[test]
    fn a_box_scribbled_to_a_state_nobody_writes_is_freed_as_an_orphan() {
        let heap = HeapReplyBox::new(1);
        let b = heap.view();
        heap.ctl
            .state
            .store(state::pack(5, 0, 200, 0, 7), Ordering::Relaxed);
        assert!(b.try_claim(0, 1).is_none());
        assert!(b.free_orphan(ALIVE));
        assert!(b.try_claim(0, 1).is_some());
    }
}
