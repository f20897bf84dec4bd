//! Loom models live in tests/; this library holds what they share: sending and taking over a
//! heap lane, and what a successor owner would deliver.
#![cfg(loom)]

use baton_ring::lane::{
    record_cells, Claim, Lane, LaneOwner, LaneSender, Peek, RecordHeader, Slot,
};
use baton_ring::wake::Waiter;
use baton_ring::AtomicU32;
use std::time::Instant;

/// A [`Waiter`] for loom models: a loom mutex and condition variable stand in for the kernel's
/// futex hash bucket, so "check the word, then sleep" is atomic with respect to a wake-up, as it
/// is for a futex. Deadlines are ignored: a lost wake-up shows up as a deadlock.
#[derive(Debug, Default)]
pub struct LoomWaiter {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

impl Waiter for LoomWaiter {
    fn wait(&self, word: &AtomicU32, expected: u32, _deadline: Option<Instant>) {
        let guard = self.lock.lock().unwrap();
        if word.load(baton_ring::Ordering::Relaxed) == expected {
            drop(self.cond.wait(guard).unwrap());
        }
    }

    fn wake_all(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }

    fn wake_one(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_one();
    }
}

/// The sender's view of a model's lane, for slot `slot`.
pub fn sender_view<'a>(lane: &Lane<'a>, slot: u8) -> LaneSender<'a> {
    // SAFETY: in a model, each sender slot is played by one thread, whose claims nobody
    // abandons unless the model plays that sender's death.
    unsafe { lane.sender(slot) }
}

/// The owner's view of a model's lane.
pub fn owner_view<'a>(lane: &Lane<'a>) -> LaneOwner<'a> {
    // SAFETY: in a model, one thread at a time plays the owner (a successor starts after its
    // predecessor stopped, as the owner lock makes them).
    unsafe { lane.owner() }
}

/// A record header for a payload of `len` bytes.
pub fn header(len: usize) -> RecordHeader {
    RecordHeader {
        len: len as u32,
        ..Default::default()
    }
}

/// Sends `payload` from sender slot `slot` if there is room now.
pub fn try_send(lane: &Lane<'_>, slot: u8, payload: &[u8]) -> bool {
    let lane = sender_view(lane, slot);
    match lane.try_claim(payload.len()) {
        Ok(claim) => {
            lane.write(&claim, &header(payload.len()), payload);
            lane.commit(claim).unwrap();
            true
        }
        Err(_) => false,
    }
}

/// Writes `payloads` into a run claim and returns each record's cells, for `commit_run`.
pub fn write_run(lane: &LaneSender<'_>, claim: &Claim, payloads: &[&[u8]]) -> Vec<u64> {
    let mut at = 0;
    payloads
        .iter()
        .map(|p| {
            lane.write_in_run(claim, at, &header(p.len()), p);
            let cells = record_cells(p.len());
            at += cells;
            cells
        })
        .collect()
}

/// Sends `payloads` from slot `slot` as one run (they must all fit now).
pub fn send_run(lane: &Lane<'_>, slot: u8, payloads: &[&[u8]]) {
    let lane = sender_view(lane, slot);
    let rest: Vec<u64> = payloads[1..]
        .iter()
        .map(|p| record_cells(p.len()))
        .collect();
    let (claim, n) = lane.try_claim_run(payloads[0].len(), &rest).unwrap();
    assert_eq!(n, payloads.len(), "the whole run fits");
    let cells = write_run(&lane, &claim, payloads);
    lane.commit_run(claim, &cells).unwrap();
}

/// Sends, yielding until there is room.
pub fn send(lane: &Lane<'_>, slot: u8, payload: &[u8]) {
    while !try_send(lane, slot, payload) {
        loom::thread::yield_now();
    }
}

/// Takes the message at the head, if one is committed, and frees it.
pub fn take(lane: &Lane<'_>, waiter: &LoomWaiter) -> Option<Vec<u8>> {
    let lane = owner_view(lane);
    match lane.peek(64, waiter).unwrap() {
        Peek::Record(r) => {
            let mut out = Vec::new();
            lane.copy_payload(&r, &mut out).unwrap();
            lane.release(r, waiter).unwrap();
            Some(out)
        }
        Peek::Empty | Peek::InFlight => None,
    }
}

/// What a new owner would deliver: the committed records of `head..read` again (flagged
/// redelivered), then the rest fresh.
pub fn successor_view(lane: &Lane<'_>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let lane = owner_view(lane);
    let read = lane.read_cursor();
    let mut pos = lane.head();
    let (mut again, mut fresh) = (Vec::new(), Vec::new());
    while let Slot::Record(r) = lane.at(pos, 64).unwrap() {
        let mut out = Vec::new();
        lane.copy_payload(&r, &mut out).unwrap();
        if r.pos() < read {
            again.push(out);
        } else {
            fresh.push(out);
        }
        pos += r.cells();
    }
    (again, fresh)
}

/// A shared lane's consumer view, for slot `slot`.
pub fn consumer_view<'a>(lane: &Lane<'a>, slot: u8) -> baton_ring::lane::LaneConsumer<'a> {
    // SAFETY: in a model, each consumer slot is played by one thread, whose records nobody
    // reclaims unless the model plays that consumer's death.
    unsafe { lane.consumer(slot) }
}

/// The sweep lock of a model: a loom flag taken by compare-and-swap.
#[derive(Debug, Default)]
pub struct LoomSweepLock(loom::sync::atomic::AtomicBool);

/// Holding a [`LoomSweepLock`].
pub struct LoomSweepGuard<'a>(&'a loom::sync::atomic::AtomicBool);

impl Drop for LoomSweepGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, loom::sync::atomic::Ordering::Release);
    }
}

// SAFETY: a flag taken by compare-and-swap has one holder; no model kills a sweeper.
unsafe impl<'a> baton_ring::lane::SweepLock for &'a LoomSweepLock {
    type Guard = LoomSweepGuard<'a>;
    fn try_lock(&self) -> Option<LoomSweepGuard<'a>> {
        use loom::sync::atomic::Ordering::{Acquire, Relaxed};
        self.0
            .compare_exchange(false, true, Acquire, Relaxed)
            .ok()
            .map(|_| LoomSweepGuard(&self.0))
    }
}
