//! What survives a dead process: the sender table, standbys, and the one recovery procedure a
//! new owner runs when it acquires the owner lock from a dead holder.
//!
//! # Sender slots
//!
//! A process takes a slot in the queue's sender table at its first send (or when it starts to
//! wait as a standby) and keeps it until it unmaps the queue. Every claim it makes names the
//! slot in its stamp. A slot is *held* by a keeper thread of the process that locks the slot's
//! robust mutex and sleeps until the process lets the queue go ([`SlotHolder`]); the kernel
//! releases the lock, marked owner-died, when that process dies or execs, in whatever pid
//! namespace (see `sys::robust`). Three rules keep every claim resolved:
//!
//! 1. *Whoever takes a slot's lock owns what the slot left behind.* Taking a slot (free, or from
//!    a dead holder) abandons every claim still `RESERVED` under its number before the new
//!    holder makes claims of its own: those can only be a previous holder's.
//! 2. *A slot is freed only once no claim of it can remain.* A process that lets a queue go
//!    abandons its own leftover claims (loans leaked with `mem::forget`: nothing can write
//!    through them any more) before its keeper unlocks.
//! 3. *A claim naming a slot whose lock nobody holds is abandoned like a dead sender's.* The
//!    receiver, finding a claim that stays uncommitted, tries the slot's lock: if it gets it
//!    (free, or owner-died), the claim's writer is gone, and [`Lane::abandon_sender`] turns the
//!    slot's `RESERVED` stamps to `ABANDONED` while the lock keeps anyone from taking the slot.
//!
//! In a shared queue a slot also names its process's consumers: the records they took carry
//! it in their `TAKEN` stamps, and the same three rules give those back (`RETURNED`, taken
//! again flagged redelivered) exactly when they abandon claims: on taking a slot, on letting
//! one go, and when a consumer finds a record taken under a slot whose lock it can take.
//!
//! So a claim is abandoned only when the lock of its slot could be taken: never while the
//! process that made it lives and maps the queue, so an abandoned claim's writer can never
//! write into cells that were freed and reused. A `fork`ed child does not inherit the keeper
//! thread, so it does not hold its parent's slot: it notices (a fork generation bumped by a
//! `pthread_atfork` handler) and takes its own. Every step is idempotent: a process that dies
//! half way leaves the lock owner-died, and the next taker does it all again.
//!
//! [`Lane::abandon_sender`]: baton_ring::lane::Lane::abandon_sender

use crate::error::SlotError;
use crate::segment::PRIORITIES;
use crate::segment::{Segment, SENDER_SLOTS};
use crate::sys::futex::{self, Futex, WaitAny, WAITV_MAX};
use crate::sys::liveness::{fork_generation, AbortOnUnwind};
use crate::sys::robust::{Holder, TryLock};
use baton_ring::lane::LaneSender;
use baton_ring::wake::Waiter;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) use baton_ring::failpoint::failpoint;

/// One process's attachment to a queue: the mapped segment, and what the process holds in it
/// (its sender slot, its standby registrations). What the process holds is let go before the
/// segment is unmapped: dropping the attachment releases the sender slot (rule 2), then the
/// segment unmaps. Every handle of the API shares one through an `Arc`.
pub(crate) struct Attachment {
    seg: Segment,
    /// This process's slot in the sender table, taken at the first send.
    slot: SlotHolder,
    /// This process's standby marks and waits on this mapping (see [`StandbyState`]).
    standby: StandbyState,
}

impl Attachment {
    /// Attaches to a mapped segment, holding nothing in it yet.
    pub(crate) fn new(seg: Segment) -> Attachment {
        Attachment {
            seg,
            slot: SlotHolder::default(),
            standby: StandbyState::default(),
        }
    }
}

/// What anyone attached may do with the segment.
impl std::ops::Deref for Attachment {
    type Target = Segment;

    fn deref(&self) -> &Segment {
        &self.seg
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.seg.fmt(f)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        release_sender_slot(self);
    }
}

/// This process's slot in a queue's sender table: a cached `fork generation << 8 | slot` for
/// the send path, and the keeper thread that holds the slot's lock.
pub(crate) struct SlotHolder {
    /// `generation << 8 | slot` while this process holds a slot, [`NO_SLOT`] otherwise.
    cached: AtomicU64,
    keeper: Mutex<Option<SlotKeeper>>,
}

const NO_SLOT: u64 = u64::MAX;

struct SlotKeeper {
    slot: u8,
    /// The fork generation that took the slot: in a forked child the keeper is not there.
    generation: u64,
    /// `false`: let the lock's thread end without unlocking (its page may be gone).
    release: mpsc::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Default for SlotHolder {
    fn default() -> Self {
        SlotHolder {
            cached: AtomicU64::new(NO_SLOT),
            keeper: Mutex::new(None),
        }
    }
}

/// A raw pointer to a lock in the segment, for the keeper thread: valid because the segment
/// stays mapped until [`release_sender_slot`] has joined the keeper.
struct LockPtr(*const crate::sys::robust::RobustMutex);
// SAFETY: the pointee is a process-shared mutex in a mapping that outlives the keeper thread
// (see `LockPtr`); pthread mutexes may be used from any thread.
unsafe impl Send for LockPtr {}

/// This process's slot in the sender table, taken on first use.
///
/// # Errors
///
/// A message naming the problem when all slots are held by live processes.
#[inline]
pub(crate) fn sender_slot(seg: &Attachment) -> Result<u8, SlotError> {
    let c = seg.slot.cached.load(Ordering::Acquire);
    if c != NO_SLOT && c >> 8 == fork_generation() {
        return Ok(c as u8);
    }
    take_sender_slot(seg)
}

#[cold]
fn take_sender_slot(seg: &Attachment) -> Result<u8, SlotError> {
    let mut keeper = seg.slot.keeper.lock().unwrap_or_else(|e| e.into_inner());
    let generation = fork_generation();
    if let Some(k) = keeper.as_ref() {
        if k.generation == generation {
            return Ok(k.slot);
        }
    }
    if let Some(parents) = keeper.take() {
        // A forked child: the keeper thread and its lock are the parent's. Touch neither.
        std::mem::forget(parents);
    }
    let (answer_tx, answer_rx) = mpsc::channel::<Option<u8>>();
    let (release_tx, release_rx) = mpsc::channel::<bool>();
    let locks: Vec<LockPtr> = seg.shared().slots[1..]
        .iter()
        .map(|s| LockPtr(&s.lock))
        .collect();
    let thread = std::thread::Builder::new()
        .name("baton-slot".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // SAFETY: see `LockPtr`: the segment stays mapped until this thread is joined.
            let lock = |i: usize| unsafe { &*locks[i].0 };
            let taken = (0..locks.len()).find(|&i| match lock(i).try_lock() {
                TryLock::Acquired => true,
                TryLock::OwnerDied => {
                    lock(i).consistent() == 0 || {
                        lock(i).unlock();
                        false
                    }
                }
                _ => false,
            });
            let _ = answer_tx.send(taken.map(|i| i as u8 + 1));
            let Some(i) = taken else { return };
            // From here the lock must be released only on purpose: a panic would end this
            // thread, the kernel would release the lock, and the process's live claims would
            // be taken for a dead one's. So a panic here ends the process.
            let _abort = AbortOnUnwind;
            // Closed: unlock. `false`: a peer truncated the segment; the lock's page may be
            // gone, and the thread ends holding it (the kernel passes over what it cannot
            // reach).
            if release_rx.recv().unwrap_or(true) {
                lock(i).unlock();
            }
        })
        .map_err(|e| SlotError::NoThread(e.kind()))?;
    let Ok(Some(slot)) = answer_rx.recv() else {
        let _ = thread.join();
        return Err(SlotError::AllHeld(SENDER_SLOTS - 1));
    };
    failpoint("slot.locked");
    // Rule 1: what the slot's earlier holders left is ours to resolve before we claim.
    settle_leftovers(seg, slot, true);
    let s = &seg.shared().slots[slot as usize];
    s.standbys.store(0, Ordering::Relaxed);
    s.pid.store(std::process::id(), Ordering::Release);
    *keeper = Some(SlotKeeper {
        slot,
        generation,
        release: release_tx,
        thread,
    });
    seg.slot
        .cached
        .store(generation << 8 | slot as u64, Ordering::Release);
    // Sleepers watch the slots held when they went to sleep (see `DeathWatch`): they look
    // again, so that they watch this one too before it makes a claim.
    seg.wake_sleepers();
    Ok(slot)
}

/// Resolves what slot `slot` left in every lane: each claim still `RESERVED` under it is
/// abandoned, and (in a shared queue) each record a consumer of it took and did not
/// acknowledge is given back, to be taken again flagged. The caller holds the slot's lock, so
/// none of them can be a live process's. Returns how many records it resolved.
fn settle_leftovers(seg: &Segment, slot: u8, died: bool) -> u64 {
    let shared = seg.attributes().shared;
    let mut resolved = 0;
    let mut returned = 0;
    for p in 0..PRIORITIES {
        let lane = seg.lane(p);
        // SAFETY: the caller holds `slot`'s lock, taken free or from a dead holder (or about
        // to be freed by this process, whose claims and taken records nothing uses any more).
        resolved += unsafe { lane.abandon_sender(slot) };
        if shared {
            // SAFETY: as above.
            returned += unsafe { lane.reclaim_consumer(slot) };
        }
    }
    if shared {
        let open = seg.shared().consumers[slot as usize].swap(0, Ordering::Relaxed);
        if open > 0 {
            // Consumers its holder never closed: it died (or let the queue go with consumers
            // leaked by `mem::forget`).
            seg.emit(
                crate::segment::events::kind::CONSUMER_LEFT,
                0,
                u64::from(died),
            );
        }
    }
    settle_reply_boxes(seg, slot);
    // A process group's member that went without leaving: its PROCDOWN, claimed under this
    // slot (after its own claims were abandoned above).
    crate::segment::membership::member_gone(seg, slot);
    if resolved + returned > 0 {
        // The records given back are for the consumers that sleep; an abandoned claim may
        // have held back the messages behind it.
        seg.announce_message(None);
    }
    resolved + returned
}

/// Resolves what slot `slot` left in the reply boxes (see `ReplyBox::settle`): its requests'
/// boxes are freed (a reply written and never read counted dropped), replies it was writing are
/// reopened for the request's next replier. The caller holds the slot's lock, as above.
fn settle_reply_boxes(seg: &Segment, slot: u8) {
    let (mut freed, mut dropped) = (0, 0);
    for i in 0..seg.reply_box_count() {
        if let Some(b) = seg.reply_box(i) {
            let done = b.settle(slot);
            freed += done.freed;
            dropped += done.dropped;
        }
    }
    if dropped > 0 {
        seg.shared()
            .stats
            .replies_dropped
            .fetch_add(u64::from(dropped), Ordering::Relaxed);
    }
    if freed > 0 {
        seg.shared().reply_free.notify(&Futex);
    }
}

/// The sender's view of lane `p`, under this process's sender slot (taken on first use).
///
/// # Errors
///
/// [`SlotError`] when this process cannot have a slot.
#[inline]
pub(crate) fn sender_lane(seg: &Attachment, p: usize) -> Result<LaneSender<'_>, SlotError> {
    let slot = sender_slot(seg)?;
    // SAFETY: this process holds `slot` (its keeper thread holds the slot's lock) until the
    // attachment is dropped, and the view borrows the attachment.
    Ok(unsafe { seg.lane(p).sender(slot) })
}

/// Lets this process's sender slot go (when the segment is unmapped): abandons what loans
/// leaked with `mem::forget` left (rule 2), then the keeper unlocks and ends.
pub(crate) fn release_sender_slot(seg: &Attachment) {
    let c = seg.slot.cached.load(Ordering::Acquire);
    if c == NO_SLOT || c >> 8 != fork_generation() {
        // Nothing held by this process: no slot, or a forked child's copy of its parent's.
        // Not even a look under the keeper's mutex, which a child may have inherited locked
        // (a thread of the parent taking the slot at the fork). The one who drops the last
        // handle is alone with it, so no slot is being taken meanwhile.
        return;
    }
    let mut keeper = seg.slot.keeper.lock().unwrap_or_else(|e| e.into_inner());
    seg.slot.cached.store(NO_SLOT, Ordering::Release);
    let Some(k) = keeper.take() else { return };
    if k.generation != fork_generation() {
        std::mem::forget(k); // a forked child's copy of its parent's keeper: not ours
        return;
    }
    if seg.check_size().is_err() {
        // A peer truncated the segment: touching it would be a SIGBUS.
        let _ = k.release.send(false);
        let _ = k.thread.join();
        return;
    }
    settle_leftovers(seg, k.slot, false);
    let s = &seg.shared().slots[k.slot as usize];
    s.pid.store(0, Ordering::Release);
    s.standbys.store(0, Ordering::Relaxed);
    drop(k.release);
    let _ = k.thread.join();
}

/// If nobody holds the lock of sender slot `slot` (its holder died, or let the queue go while
/// a claim of it remained), abandons the slot's unfinished claims and gives back the records
/// its consumers took (rule 3), and leaves the slot free. Returns how many records it
/// resolved, or `None` when a live process holds the slot.
pub(crate) fn reclaim_if_dead(seg: &Segment, slot: u8) -> Option<u64> {
    let s = seg.shared().slots.get(slot as usize)?;
    let died = match s.lock.try_lock() {
        TryLock::Acquired => false,
        TryLock::OwnerDied => {
            failpoint("slot.locked");
            s.lock.consistent();
            true
        }
        _ => return None,
    };
    let abandoned = settle_leftovers(seg, slot, true);
    if died && abandoned == 0 {
        // A dead sender may have committed a message and died before announcing it. The
        // kernel woke one watcher of its lock word (perhaps this one, perhaps one that cannot
        // take the message: a selective consumer), so announce it to all. (What `settle`
        // resolved, it announced.)
        seg.announce_message(None);
    }
    s.pid.store(0, Ordering::Release);
    s.standbys.store(0, Ordering::Relaxed);
    s.lock.unlock();
    Some(abandoned)
}

/// This process's standbys on one mapping of a queue: the marks it holds
/// ([`crate::Queue::standby_mark`]) and the standby waits under way. Together they count as one
/// standby in the shared table, registered when the first of them begins and cleared when the
/// last ends, so that no wait is ever uncounted while another one or a mark is dropped, and
/// the process counts once.
#[derive(Default)]
pub(crate) struct StandbyState {
    inner: Mutex<Standbys>,
}

#[derive(Default)]
struct Standbys {
    /// The fork generation these counts belong to: a forked child's copy is not its own.
    generation: u64,
    /// The slot whose `standbys` counter holds our registration, if registered.
    slot: Option<u8>,
    marks: u32,
    waits: u32,
}

/// A mark or a wait, for [`standby_begin`] and [`standby_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StandbyKind {
    Mark,
    Wait,
}

/// Begins a mark or a wait. Returns whether this process is counted as a standby in the shared
/// table, or why not (it could not have a sender slot).
pub(crate) fn standby_begin(seg: &Attachment, kind: StandbyKind) -> Result<(), SlotError> {
    // The slot first, without the state's lock: taking one can take a while (a keeper thread,
    // every lane walked), and a fork meanwhile must not leave the child a locked mutex. (A
    // process that already has its slot gets it from the cache.)
    let slot = sender_slot(seg);
    let mut st = seg.standby.inner.lock().unwrap_or_else(|e| e.into_inner());
    let generation = fork_generation();
    if st.generation != generation {
        // A forked child: the counts and the registration are the parent's. Start afresh.
        *st = Standbys {
            generation,
            ..Standbys::default()
        };
    }
    let mut registered = Ok(());
    if st.slot.is_none() {
        match slot {
            Ok(slot) => {
                seg.shared().slots[slot as usize]
                    .standbys
                    .fetch_add(1, Ordering::AcqRel);
                st.slot = Some(slot);
            }
            Err(e) => registered = Err(e),
        }
    }
    match kind {
        StandbyKind::Mark => st.marks += 1,
        StandbyKind::Wait => st.waits += 1,
    }
    registered
}

/// Ends a mark or a wait begun by [`standby_begin`] (in this fork generation: a forked child's
/// copy of its parent's mark ends nothing).
pub(crate) fn standby_end(seg: &Attachment, kind: StandbyKind) {
    let mut st = seg.standby.inner.lock().unwrap_or_else(|e| e.into_inner());
    if st.generation != fork_generation() {
        return;
    }
    match kind {
        StandbyKind::Mark => st.marks = st.marks.saturating_sub(1),
        StandbyKind::Wait => st.waits = st.waits.saturating_sub(1),
    }
    if st.marks == 0 && st.waits == 0 {
        if let Some(slot) = st.slot.take() {
            let _ = seg.shared().slots[slot as usize].standbys.fetch_update(
                Ordering::AcqRel,
                Ordering::Relaxed,
                |n| n.checked_sub(1),
            );
        }
    }
}

/// Whether a standby other than this handle's marks waits to own the queue: what an owner's
/// close asks before removing a retention-0 queue. A mark on the closing owner's own handle
/// with no wait under way is not a standby coming to take over (its holder is the owner, or
/// about to stop waiting), so it does not keep the queue.
pub(crate) fn standby_waiting_besides_own_marks(seg: &Attachment) -> bool {
    // The state's lock is held across the count, so that a mark ending meanwhile cannot make
    // us subtract a registration that is gone (the count itself reads only atomics).
    let st = seg.standby.inner.lock().unwrap_or_else(|e| e.into_inner());
    let own_marks_only = st.generation == fork_generation() && st.slot.is_some() && st.waits == 0;
    let waiting = standbys(seg) > u32::from(own_marks_only);
    drop(st);
    waiting
}

/// How many threads of live processes wait to own the queue.
pub(crate) fn standbys(seg: &Segment) -> u32 {
    seg.shared()
        .slots
        .iter()
        .filter(|s| s.lock.holder() == Holder::Alive)
        .map(|s| s.standbys.load(Ordering::Acquire))
        .sum()
}

/// Whether a live process (this one included: another of its threads) waits to own the queue.
pub(crate) fn standby_waiting(seg: &Segment) -> bool {
    standbys(seg) > 0
}

/// How many sender slots live processes hold.
pub(crate) fn live_senders(seg: &Segment) -> u32 {
    seg.shared().slots[1..]
        .iter()
        .filter(|s| s.lock.holder() == Holder::Alive)
        .count() as u32
}

/// The live processes holding sender slots, as `(pid, standbys)`: the pid they recorded (for
/// display only) and how many standbys each counts.
pub(crate) fn attached(seg: &Segment) -> Vec<(u8, u32, u32)> {
    seg.shared()
        .slots
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, s)| s.lock.holder() == Holder::Alive)
        .map(|(i, s)| {
            (
                i as u8,
                s.pid.load(Ordering::Acquire),
                s.standbys.load(Ordering::Acquire),
            )
        })
        .collect()
}

/// The one recovery procedure, run by whoever acquires the owner lock from a dead holder, with
/// the lock held and before `pthread_mutex_consistent`. Every step is idempotent, so a recoverer
/// that dies half way leaves the lock owner-dead and the next one simply runs it again.
///
/// 1. The receiver event's sleeper count: only an owner sleeps there, and the owner is dead.
/// 2. Each lane's head move, if the owner died in the middle of one, is finished from its
///    journal, so the counters count every record once.
/// 3. Each lane's `read` cursor must lie on a record boundary in `head..=end of records`; if
///    not (a peer scribbled on it), it is moved forward to the next boundary (or back to the end
///    of the records, if it pointed past them), so that nothing is skipped and everything that
///    may have been delivered is flagged when it is delivered again.
/// 4. Every sender slot whose holder died is reclaimed: its unfinished claims are abandoned.
///
/// Unacknowledged messages need no repair: they are still in place, between `head` and `read`,
/// and the new owner delivers them first, flagged redelivered.
///
/// # Safety
///
/// The calling thread holds the owner lock (granted with `EOWNERDEAD`): recovery does the
/// owner's work on the lanes.
pub(crate) unsafe fn recover(seg: &Segment) {
    failpoint("recover.begin");
    // SAFETY: only the owner sleeps on the receiver's event, and the owner is dead (this runs
    // because its lock came back owner-died); the caller holds the lock, so no new owner sleeps.
    unsafe { seg.shared().data_event.reset_waiters() };
    let max = seg.attributes().max_message;
    for p in 0..PRIORITIES {
        // SAFETY: the caller holds the owner lock (this function's contract).
        let lane = unsafe { seg.lane(p).owner() };
        lane.replay_journal(&crate::sys::futex::Futex);
        lane.repair_read_cursor(max);
    }
    failpoint("recover.lanes");
    for (slot, s) in seg.shared().slots.iter().enumerate().skip(1) {
        // A look at the lock word first: live holders are the rule, and taking their locks
        // one by one would slow the takeover down.
        if s.lock.holder() == Holder::Died {
            reclaim_if_dead(seg, slot as u8);
        }
    }
    failpoint("recover.senders");
}

/// The [`Waiter`] of receivers and consumers: a futex wait on the event that also ends when a
/// process holding a sender slot dies, so that what it left (a message committed but not
/// announced, a claim it will never commit, records it took) is looked at at once, and a
/// sleeper needs no tick to find it.
///
/// Before it sleeps it reads every slot's lock word: a live holder's is watched (see
/// [`RobustMutex::watch`]: the kernel wakes a waiter when the holder dies), a dead holder's
/// slot nobody has reclaimed yet is reclaimed now, and the wait returns for a look. A
/// process that takes a slot after the scan wakes the sleepers (`Segment::wake_sleepers`),
/// which then watch it too; its fence and the sleeper's announcement on the event make one of
/// them see the other. The kernel wakes only one waiter of a dead holder's word: the one it
/// wakes reclaims the slot, and the reclaim announces what it resolved to the others.
///
/// Without `futex_waitv` (Linux before 5.16, or refused by a seccomp filter) a sleeper wakes
/// every [`UNWATCHED_TICK`] instead; with more live slots than one call can watch, every
/// [`PARTLY_WATCHED_TICK`].
///
/// [`RobustMutex::watch`]: crate::sys::robust::RobustMutex::watch
pub(crate) struct DeathWatch<'a>(pub(crate) &'a Attachment);

/// How often a sleeper looks when it cannot watch for deaths at all.
pub(crate) const UNWATCHED_TICK: Duration = Duration::from_millis(100);
/// How often a sleeper looks when more slots are held than it can watch.
pub(crate) const PARTLY_WATCHED_TICK: Duration = Duration::from_secs(1);

/// Cleared when the kernel refuses `futex_waitv`, so that later sleeps do not ask again.
static WAITV_WORKS: AtomicBool = AtomicBool::new(true);

impl Waiter for DeathWatch<'_> {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
        let tick = |d: Duration| {
            let t = Instant::now() + d;
            Some(deadline.map_or(t, |d| d.min(t)))
        };
        if !WAITV_WORKS.load(Ordering::Relaxed) {
            return Futex.wait(word, expected, tick(UNWATCHED_TICK));
        }
        let slots = &self.0.shared().slots;
        // Not this process's own slot: its holder's death is this sleeper's too, and a sleeper
        // of a dying process must not be the one the kernel wakes for that death.
        let own = match self.0.slot.cached.load(Ordering::Acquire) {
            c if c != NO_SLOT && c >> 8 == fork_generation() => c as u8 as usize,
            _ => 0,
        };
        let mut words = [(word, expected); WAITV_MAX];
        let mut watched = [0u8; WAITV_MAX];
        let mut n = 1;
        let mut partly = false;
        let mut reclaimed = false;
        for (i, s) in slots.iter().enumerate().skip(1) {
            if i == own {
                continue;
            }
            match s.lock.watch() {
                Ok(w) if n < WAITV_MAX => {
                    words[n] = w;
                    watched[n] = i as u8;
                    n += 1;
                }
                Ok(_) => partly = true,
                Err(Holder::Died) => reclaimed |= reclaim_if_dead(self.0, i as u8).is_some(),
                Err(_) => {}
            }
        }
        if reclaimed {
            return; // the caller looks at what the dead left
        }
        let until = if partly {
            tick(PARTLY_WATCHED_TICK)
        } else {
            deadline
        };
        match futex::wait_any(&words[..n], until) {
            WaitAny::Woken(i) if i > 0 => {
                // A holder died (or let its slot go): resolve what it left, if nobody has.
                if slots[watched[i] as usize].lock.holder() == Holder::Died {
                    let _ = reclaim_if_dead(self.0, watched[i]);
                }
            }
            WaitAny::Unsupported => {
                WAITV_WORKS.store(false, Ordering::Relaxed);
                Futex.wait(word, expected, tick(UNWATCHED_TICK));
            }
            WaitAny::Woken(_) | WaitAny::Early => {}
        }
    }

    fn wake_all(&self, word: &AtomicU32) {
        Futex.wake_all(word);
    }

    fn wake_one(&self, word: &AtomicU32) {
        Futex.wake_one(word);
    }
}
