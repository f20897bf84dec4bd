//! A process group's log and membership table, below the API (`queue::process_group`): the
//! group lock, the one journaled way to change the membership (a JOIN, LEAVE or PROCDOWN
//! record and its table change as one step, finished or undone by whoever takes the lock from
//! a dead holder), and freeing what every member has read. The sender-slot recovery calls
//! [`member_gone`] from here, so that a dead member's PROCDOWN is written before its slot is
//! free again. See the module documentation of `queue::process_group` for the whole design.

use super::Segment;
use crate::error::{Damage, ProcessGroupError, SendError};
use crate::sys::clock::{deadline_after, monotonic_ns};
use crate::sys::futex::Futex;
use crate::sys::robust::{timed_lock, TryLock};
use baton_ring::failpoint::failpoint;
use baton_ring::lane::{sweep_log, ClaimError, Corrupt, RecordHeader, Slot, SweepLock};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Aborts the process if a panic starts while it lives (a holder of the group lock must not
/// end by a panic with its process alive: see `change`). Made during an unwind (a member
/// dropped by a panicking thread leaves), it lets that unwind go on.
struct AbortOnPanicHere(bool);

impl AbortOnPanicHere {
    fn new() -> Self {
        AbortOnPanicHere(std::thread::panicking())
    }
}

impl Drop for AbortOnPanicHere {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.0 {
            eprintln!("baton: a thread holding a process group's lock panicked; aborting so that the kernel never releases the lock while the process goes on");
            std::process::abort();
        }
    }
}

/// How often a wait for the group lock or for room looks again (a removed or damaged group
/// frees nothing).
const IDLE_TICK: Duration = Duration::from_millis(100);

/// The lane that holds the log (the others are unused).
pub(crate) const LOG: usize = 0;

/// Record types (a record header's `msg_type`).
pub(crate) mod record {
    /// A member's message.
    pub(crate) const MESSAGE: i64 = 0;
    /// A member joined: `slot, member, n, n × (slot, member)` (the members then, itself too).
    pub(crate) const JOIN: i64 = 1;
    /// A member left: `slot, member`.
    pub(crate) const LEAVE: i64 = 2;
    /// A member's process went without leaving: `slot, member`.
    pub(crate) const DOWN: i64 = 3;
}

/// Bytes of one `(slot, member)` pair in a membership record.
pub(crate) const PAIR: usize = 9;
/// The smallest maximum message a group may have: a JOIN lists every member.
pub(crate) const MIN_MAX_MESSAGE: u32 = (PAIR * (super::SENDER_SLOTS + 1) + 2) as u32;

/// `(slot, member, rest)` from the start of a membership record.
pub(crate) fn pair(b: &[u8]) -> Option<(u8, u64, &[u8])> {
    let slot = *b.first()?;
    let member = u64::from_le_bytes(b.get(1..PAIR)?.try_into().ok()?);
    Some((slot, member, &b[PAIR..]))
}

/// How long a join or leave waits for the group lock and for room in the log.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The slowest cursor of the members in the table but `gone` (Acquire: what each has read is
/// done before a sweep frees it), or `None` when there are none. A member whose slot no live
/// process holds (its holder died, or let it go with its DOWN not yet written) reads nothing
/// more: its cursor does not count (else two dead members would each keep the log too full
/// for the other's DOWN: found in review).
pub(crate) fn slowest(seg: &Segment, gone: Option<u8>) -> Option<u64> {
    let slots = &seg.shared().slots;
    members(seg)
        .iter()
        .enumerate()
        .filter(|&(i, m)| {
            Some(i as u8) != gone
                && m.state.load(Ordering::Acquire) != 0
                && slots[i].lock.holder() == crate::sys::robust::Holder::Alive
        })
        // SYNC POINT: record read (Acquire side).
        .map(|(_, m)| m.cursor.load(Ordering::Acquire))
        .min()
}

/// The part of the member table any member was ever in (see `MembershipJournal::high`; a
/// peer's scribble there can only make the scan longer or shorter, never out of bounds).
pub(crate) fn members(seg: &Segment) -> &[super::layout::MemberEntry] {
    let all = &seg.shared().members;
    // Relaxed: a member's entry is published by its state (Acquire where it matters); a
    // scan that misses a member joining right now misses one whose cursor the lock pins.
    let high = seg.shared().membership.high.load(Ordering::Relaxed);
    &all[..(high as usize).min(all.len())]
}

/// The group lock (the segment's robust owner mutex), for sweeps: never waited for.
struct GroupLock<'a>(&'a Segment);

/// Holding the group lock; dropping it unlocks.
struct GroupGuard<'a>(&'a Segment);

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        self.0.shared().owner.mutex.unlock();
    }
}

// SAFETY: the robust mutex has one holder across every process that maps the group; a guard
// taken from a dead holder is returned only after its journaled head move and membership
// change are finished or undone (`repair`).
unsafe impl<'a> SweepLock for GroupLock<'a> {
    type Guard = GroupGuard<'a>;

    fn try_lock(&self) -> Option<GroupGuard<'a>> {
        match self.0.shared().owner.mutex.try_lock() {
            TryLock::Acquired => Some(GroupGuard(self.0)),
            TryLock::OwnerDied => recovered(self.0),
            _ => None,
        }
    }
}

/// Takes the group lock, waiting until `deadline`.
fn lock_group(
    seg: &Segment,
    deadline: Option<Instant>,
) -> Result<GroupGuard<'_>, ProcessGroupError> {
    let mutex = &seg.shared().owner.mutex;
    let far = Instant::now() + Duration::from_secs(3600);
    loop {
        seg.check_size().map_err(ProcessGroupError::Corrupt)?;
        if seg.is_removed() {
            return Err(ProcessGroupError::Removed);
        }
        match timed_lock(
            mutex.raw(),
            deadline.unwrap_or(far).min(Instant::now() + IDLE_TICK),
        ) {
            0 => return Ok(GroupGuard(seg)),
            libc::EOWNERDEAD => {
                if let Some(g) = recovered(seg) {
                    return Ok(g);
                }
            }
            libc::ETIMEDOUT => {}
            rc => {
                return Err(ProcessGroupError::Corrupt(Damage::Lane(
                    Corrupt::UnknownState {
                        pos: 0,
                        state: rc as u64,
                    },
                )))
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ProcessGroupError::Timeout);
        }
    }
}

/// The group lock was taken from a dead holder: finishes or undoes what it left, then makes
/// the lock usable again. `None` if it cannot be (it was unlocked).
fn recovered(seg: &Segment) -> Option<GroupGuard<'_>> {
    failpoint("pgroup.recover");
    repair(seg);
    let mutex = &seg.shared().owner.mutex;
    if mutex.consistent() != 0 {
        mutex.unlock();
        return None;
    }
    Some(GroupGuard(seg))
}

/// Finishes a dead lock holder's work: its journaled head move, and the membership change it
/// was making. The change is applied if its record was committed, and undone otherwise (a claim
/// left reserved is abandoned by whoever takes its writer's slot; the writer is gone: a holder
/// of the group lock that panics ends its process). No sweep ran since (sweeps take this lock),
/// so the record is still in the log. Idempotent: a repairer that dies leaves the journal for
/// the next.
fn repair(seg: &Segment) {
    // SAFETY: the group lock is held: the one view that moves the head.
    let owner = unsafe { seg.lane(LOG).owner() };
    owner.replay_journal(&Futex);
    let shared = seg.shared();
    let j = &shared.membership;
    let kind = j.kind.load(Ordering::Relaxed) as i64;
    if kind == 0 {
        return;
    }
    let slot = j.slot.load(Ordering::Relaxed) as usize;
    let member = j.member.load(Ordering::Relaxed);
    let claimed = j.claimed.load(Ordering::Relaxed);
    let committed = claimed != 0
        && matches!(
            owner.at(claimed - 1, seg.attributes().max_message),
            Ok(Slot::Record(_))
        );
    if let Some(entry) = shared.members.get(slot) {
        match (kind, committed) {
            (record::JOIN, false) => {
                let _ =
                    entry
                        .state
                        .compare_exchange(member, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            (record::LEAVE | record::DOWN, true) => {
                let _ =
                    entry
                        .state
                        .compare_exchange(member, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    j.kind.store(0, Ordering::Relaxed);
    seg.announce_message(None);
}

/// Makes one membership change under the group lock: a JOIN of `member` at `slot` (this
/// process's), its LEAVE, or the DOWN of whoever holds `slot`'s membership (`member` ignored).
/// The record is claimed under sender slot `writer`. Returns whether a record was written (a
/// LEAVE or DOWN of a member not in the table is none).
///
/// # Safety
///
/// The calling process holds sender slot `writer` (this process's own, or a dead one's whose
/// lock it holds) until this returns, and not the group lock.
pub(crate) unsafe fn change(
    seg: &Segment,
    writer: u8,
    kind: i64,
    slot: u8,
    member: u64,
    deadline: Option<Instant>,
    wait_room: bool,
) -> Result<bool, ProcessGroupError> {
    let shared = seg.shared();
    let entry = &shared.members[slot as usize];
    let max = seg.attributes().max_message;
    loop {
        let guard = lock_group(seg, deadline)?;
        // A panic from here on would leave the lock to the kernel with this process alive,
        // and a claim of its slot that nobody would abandon: the process ends instead.
        let _abort = AbortOnPanicHere::new();
        let now = entry.state.load(Ordering::Relaxed);
        let member = match kind {
            record::JOIN if now != 0 => {
                // A membership left in this slot by a process that held it before: its
                // process is gone (we hold the slot), and taking the slot wrote its DOWN.
                // Anything else is a scribble: refuse to overwrite it.
                return Err(ProcessGroupError::Corrupt(Damage::Lane(
                    Corrupt::UnknownState {
                        pos: u64::from(slot),
                        state: now,
                    },
                )));
            }
            record::JOIN => member,
            record::LEAVE if now != member => return Ok(false),
            record::DOWN if now == 0 => return Ok(false),
            _ => now,
        };
        let mut payload = Vec::with_capacity(PAIR * 2 + 2);
        payload.push(slot);
        payload.extend_from_slice(&member.to_le_bytes());
        if kind == record::JOIN {
            let others: Vec<(u8, u64)> = shared
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (i as u8, m.state.load(Ordering::Relaxed)))
                .filter(|&(i, m)| m != 0 && i != slot)
                .collect();
            payload.extend_from_slice(&(others.len() as u16).to_le_bytes());
            for (i, m) in others {
                payload.push(i);
                payload.extend_from_slice(&m.to_le_bytes());
            }
        }
        debug_assert!(payload.len() <= max as usize);
        let j = &shared.membership;
        // Relaxed: the journal is read by the next holder of the lock, after its hand-over.
        j.slot.store(u64::from(slot), Ordering::Relaxed);
        j.member.store(member, Ordering::Relaxed);
        j.claimed.store(0, Ordering::Relaxed);
        j.kind.store(kind as u64, Ordering::Relaxed);
        // SAFETY: the caller holds `writer` (this function's contract).
        let lane = unsafe { seg.lane(LOG).sender(writer) };
        // A DOWN's member reads nothing more: its cursor does not hold the log.
        let gone = (kind == record::DOWN).then_some(slot);
        if kind == record::JOIN {
            j.high.fetch_max(u64::from(slot) + 1, Ordering::Relaxed);
            // Under the lock no sweep runs: nothing from `head` on is freed before this
            // cursor is seen by the next sweep, which takes the lock.
            entry.cursor.store(lane.head(), Ordering::Relaxed);
            entry.state.store(member, Ordering::Release);
        }
        failpoint("pgroup.journaled");
        let mut claim = lane.try_claim(payload.len());
        if matches!(claim, Err(ClaimError::Full)) {
            // SAFETY: the group lock is held: the one view that moves the head.
            let owner = unsafe { seg.lane(LOG).owner() };
            if let Err(c) = owner.free_before(slowest(seg, gone).unwrap_or(u64::MAX), max, &Futex) {
                // Undone, as below: a JOIN left in the table without its record would be in
                // later joiners' lists and in no older member's view.
                if kind == record::JOIN {
                    entry.state.store(0, Ordering::Relaxed);
                }
                j.kind.store(0, Ordering::Relaxed);
                return Err(c.into());
            }
            claim = lane.try_claim(payload.len());
        }
        let claim = match claim {
            Ok(c) => c,
            Err(ClaimError::Full) => {
                // A member is behind: undo, let the lock go, and wait for room.
                if kind == record::JOIN {
                    entry.state.store(0, Ordering::Relaxed);
                }
                j.kind.store(0, Ordering::Relaxed);
                drop(guard);
                if !wait_room {
                    return Err(ProcessGroupError::Timeout);
                }
                wait_for_room(seg, gone, deadline)?;
                continue;
            }
            Err(ClaimError::Corrupt(c)) => {
                if kind == record::JOIN {
                    entry.state.store(0, Ordering::Relaxed);
                }
                j.kind.store(0, Ordering::Relaxed);
                return Err(c.into());
            }
        };
        j.claimed.store(claim.pos() + 1, Ordering::Relaxed);
        failpoint("pgroup.claimed");
        let header = RecordHeader {
            len: payload.len() as u32,
            flags: 0,
            msg_type: kind,
            version: 0,
            sender_pid: std::process::id(),
            sent_ns: monotonic_ns(),
        };
        lane.write_payload(&claim, &payload);
        lane.write_header(&claim, &header);
        if let Err(e) = lane.commit(claim) {
            // Not in the log: undone (a stale journal would be replayed by a later recovery
            // against whatever then lies at `claimed - 1`).
            if kind == record::JOIN {
                entry.state.store(0, Ordering::Relaxed);
            }
            j.kind.store(0, Ordering::Relaxed);
            return Err(match e {
                baton_ring::lane::CommitError::Abandoned => {
                    ProcessGroupError::Send(SendError::Abandoned)
                }
                baton_ring::lane::CommitError::Corrupt(c) => c.into(),
            });
        }
        failpoint("pgroup.committed");
        if kind != record::JOIN {
            entry.state.store(0, Ordering::Relaxed);
        }
        j.kind.store(0, Ordering::Relaxed);
        drop(guard);
        seg.announce_message(None);
        return Ok(true);
    }
}

/// Waits (without the group lock) until the log may have room, or the deadline; `gone`: a
/// member whose cursor does not count.
fn wait_for_room(
    seg: &Segment,
    gone: Option<u8>,
    deadline: Option<Instant>,
) -> Result<(), ProcessGroupError> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(ProcessGroupError::Timeout);
    }
    let max = seg.attributes().max_message;
    let _ = sweep_log(
        &seg.lane(LOG),
        &GroupLock(seg),
        || slowest(seg, gone),
        max,
        &Futex,
    );
    let lane = seg.lane(LOG);
    let until = Instant::now() + IDLE_TICK;
    let _ = lane.space_event().wait_until_mapped(
        &Futex,
        Some(deadline.map_or(until, |d| d.min(until))),
        || seg.check_size().is_ok(),
        || lane.used_cells() < lane.capacity_cells() / 2,
    );
    Ok(())
}

/// Called with a dead (or departing) process's slot lock held, before the slot is free
/// again: writes the PROCDOWN of the member that process was, if it was one and has not left.
/// The record is claimed under that slot, whose holder the caller is now (if the caller dies
/// too, the next taker of the slot abandons the claim and writes the PROCDOWN again: the table
/// still has the member). It does not wait for room (its caller may be the one member whose
/// reading would make it): a PROCDOWN that does not fit is left in the table, marked owed,
/// and the next sweep writes it (`owed_downs`).
pub(crate) fn member_gone(seg: &Segment, slot: u8) {
    if !seg.is_process_group() {
        return;
    }
    let state = seg.shared().members[slot as usize]
        .state
        .load(Ordering::Relaxed);
    if state == 0 {
        return;
    }
    // SAFETY: the caller holds `slot`'s lock, and not the group lock (see `recovery`).
    let written = unsafe {
        change(
            seg,
            slot,
            record::DOWN,
            slot,
            0,
            deadline_after(JOIN_TIMEOUT),
            false,
        )
    };
    if written.is_err() {
        seg.shared().membership.owed.store(1, Ordering::Relaxed);
    }
}

/// Whether a PROCDOWN could not be written for lack of room (see [`member_gone`]): a member
/// that reads looks, and sweeps.
pub(crate) fn owed_downs(seg: &Segment) -> bool {
    seg.shared().membership.owed.load(Ordering::Relaxed) != 0
}

/// The slots whose member no live process holds (it died, or let its slot go with its
/// PROCDOWN owed): their PROCDOWN is to be written by whoever takes the slot's lock.
pub(crate) fn unheld_members(seg: &Segment) -> Vec<u8> {
    // Cleared first: a PROCDOWN that fails again marks it again.
    seg.shared().membership.owed.store(0, Ordering::Relaxed);
    let slots = &seg.shared().slots;
    members(seg)
        .iter()
        .enumerate()
        // Slot 0 is never handed out: a member there is a scribble, not one to reclaim.
        .skip(1)
        .filter(|&(i, m)| {
            m.state.load(Ordering::Relaxed) != 0
                && slots[i].lock.holder() != crate::sys::robust::Holder::Alive
        })
        .map(|(i, _)| i as u8)
        .collect()
}

/// Frees what every member of the group has read, if nobody else is doing it; returns the
/// cells freed.
pub(crate) fn free_read(seg: &Segment) -> u64 {
    let max = seg.attributes().max_message;
    sweep_log(
        &seg.lane(LOG),
        &GroupLock(seg),
        || slowest(seg, None),
        max,
        &Futex,
    )
    .unwrap_or(0)
}
