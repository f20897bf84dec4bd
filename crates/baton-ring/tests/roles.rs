//! What the safe methods of a lane's role views let the holder of a view do, used wrongly: a
//! claim or a record of one lane used on another, a payload longer than its claim (each a
//! panic at the misuse, like an index out of bounds), a record used after it was freed (an
//! error, as when a peer moved `head` over it). Each is refused before it touches a cell; none
//! ends with two writers on one cell or a write into a committed record. (A forged or copied `RecordRef`, and a safe `reset_waiters`, do not
//! compile: see the `compile_fail` examples on `RecordRef` and `Event::reset_waiters`.)
#![cfg(not(loom))]

use baton_ring::lane::{
    Corrupt, HeapLane, LaneOwner, LaneSender, Peek, RecordHeader, RecordRef, Slot,
};
use baton_ring::wake::Yield;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn header(len: usize) -> RecordHeader {
    RecordHeader {
        len: len as u32,
        ..Default::default()
    }
}

fn send(lane: &LaneSender<'_>, payload: &[u8]) {
    let claim = lane.try_claim(payload.len()).unwrap();
    lane.write(&claim, &header(payload.len()), payload);
    lane.commit(claim).unwrap();
}

fn record_at(owner: &LaneOwner<'_>, pos: u64) -> RecordRef {
    match owner.at(pos, 4096).unwrap() {
        Slot::Record(r) => r,
        other => panic!("no record at {pos}: {other:?}"),
    }
}

fn payload_of(owner: &LaneOwner<'_>, pos: u64) -> Result<Vec<u8>, String> {
    match owner.at(pos, 4096) {
        Ok(Slot::Record(r)) => {
            let mut out = Vec::new();
            owner.copy_payload(&r, &mut out).unwrap();
            Ok(out)
        }
        other => Err(format!("{other:?}")),
    }
}

/// `LaneSender::write_payload` is safe, but only a `debug_assert` checks that the payload fits
/// the claim: in a release build a 1-byte claim takes a 100-byte payload, and the bytes land in
/// the next record, one that is committed (and may be read in place by the owner right now).
#[test]
fn a_payload_longer_than_its_claim_is_refused_not_written_into_the_next_record() {
    let heap = HeapLane::new(8);
    // SAFETY: this thread plays sender slot 1 for the whole test, and the one owner.
    let (tx, owner) = unsafe { (heap.sender(1), heap.owner()) };
    let small = tx.try_claim(1).unwrap(); // cell 0
    send(&tx, &[0xAA; 20]); // cell 1: the victim, committed
    let _ = catch_unwind(AssertUnwindSafe(|| {
        tx.write_payload(&small, &[0x55; 100]); // safe call: bytes 32..132 of cell 0 onwards
    }));
    assert_eq!(
        payload_of(&owner, 1),
        Ok(vec![0xAA; 20]),
        "a safe write through a claim of cell 0 changed the committed record in cell 1"
    );
}

/// A `Claim` does not say which lane it was made on, and `write` does not check: a claim of
/// lane A written through lane B's sender view overwrites whatever lane B has at that position,
/// here a committed record.
#[test]
fn a_claim_of_one_lane_does_not_write_into_another_lane() {
    let (a, b) = (HeapLane::new(8), HeapLane::new(8));
    // SAFETY: this thread plays sender slot 1 of both lanes, and their one owner.
    let (tx_a, tx_b, owner_b) = unsafe { (a.sender(1), b.sender(1), b.owner()) };
    send(&tx_b, &[0xBB; 20]); // lane B, position 0: committed
    let claim_a = tx_a.try_claim(20).unwrap(); // lane A, position 0
    let _ = catch_unwind(AssertUnwindSafe(|| {
        tx_b.write(&claim_a, &header(20), &[0x11; 20]); // safe: lane A's claim, lane B's view
    }));
    tx_a.cancel(claim_a);
    assert_eq!(
        payload_of(&owner_b, 0),
        Ok(vec![0xBB; 20]),
        "lane A's claim wrote into lane B's committed record"
    );
}

/// Two lanes of a queue hold the very same stamps at the same positions (one slot, one
/// position): a claim of lane A committed through lane B's view would publish B's record while
/// B's writer still writes it. The claim knows its lane, and B refuses it.
#[test]
fn a_claim_of_one_lane_does_not_commit_another_lanes_unfinished_record() {
    let (a, b) = (HeapLane::new(8), HeapLane::new(8));
    // SAFETY: this thread plays sender slot 1 of both lanes, and lane B's owner.
    let (tx_a, tx_b, owner_b) = unsafe { (a.sender(1), b.sender(1), b.owner()) };
    let claim_a = tx_a.try_claim(8).unwrap();
    let claim_b = tx_b.try_claim(8).unwrap(); // B's writer: still writing
    let wrong = catch_unwind(AssertUnwindSafe(|| tx_b.commit(claim_a)));
    assert!(
        !matches!(wrong, Ok(Ok(()))),
        "lane A's claim committed on lane B"
    );
    assert!(
        matches!(owner_b.at(0, 4096).unwrap(), Slot::InFlight { .. }),
        "lane B's unfinished record was published"
    );
    tx_b.cancel(claim_b);
}

/// A record found on lane B, released through lane A's owner view (a priority mixed up): lane
/// A's record at that position is one cell, lane B's two. The record knows its lane, and A
/// refuses it: A's head does not jump over the live claim after its first record.
#[test]
fn a_record_of_another_lane_is_refused_by_release() {
    let (a, b) = (HeapLane::new(8), HeapLane::new(8));
    // SAFETY: this thread plays sender slots 1 and 2 of both lanes, and their one owner.
    let (tx_a, tx2_a, tx_b, owner_a, owner_b) =
        unsafe { (a.sender(1), a.sender(2), b.sender(1), a.owner(), b.owner()) };
    send(&tx_a, b"a, one cell"); // lane A, position 0, one cell
    let live = tx2_a.try_claim(8).unwrap(); // lane A, position 1
    send(&tx_b, &[0xBB; 40]); // lane B, position 0, two cells
    let from_b = record_at(&owner_b, 0);
    owner_a.set_read_cursor(1);
    let _ = catch_unwind(AssertUnwindSafe(|| owner_a.release(from_b, &Yield)));
    assert!(
        owner_a.head() <= 1,
        "lane A's head moved to {} over slot 2's live claim at position 1",
        owner_a.head()
    );
    assert_eq!(tx2_a.commit(live), Ok(()));
}

/// The owner finds one record twice (two `at` calls) and releases one of them: the other is
/// stale. Reading it, or freeing its cell again once a sender has claimed the cell anew, is
/// refused.
#[test]
fn a_record_found_twice_is_dead_once_the_other_is_released() {
    let heap = HeapLane::new(1);
    // SAFETY: this thread plays sender slots 1 and 2, and the one owner.
    let (tx1, tx2, owner) = unsafe { (heap.sender(1), heap.sender(2), heap.owner()) };
    send(&tx1, b"once");
    let (first, stale) = (record_at(&owner, 0), record_at(&owner, 0));
    owner.set_read_cursor(1);
    owner.release(first, &Yield).unwrap();
    let live = tx2.try_claim(8).unwrap(); // position 1, the same cell: being written
    let mut out = Vec::new();
    let read = owner.copy_payload(&stale, &mut out);
    assert!(
        matches!(read, Err(Corrupt::BehindHead { pos: 0, head: 1 })) && out.is_empty(),
        "a freed record was read: {read:?} {out:?}"
    );
    assert!(owner.advance_head_over(Some(&stale), &Yield).is_err());
    assert!(owner.ack(&stale).is_err());
    assert_eq!(owner.head(), 1, "the live claim's cell was not freed");
    assert_eq!(tx2.commit(live), Ok(()));
}

/// A record acknowledged and freed is not freed again.
#[test]
fn a_record_is_freed_once() {
    let heap = HeapLane::new(2);
    // SAFETY: this thread plays sender slot 1 and the one owner.
    let (tx, owner) = unsafe { (heap.sender(1), heap.owner()) };
    send(&tx, b"one");
    let r = record_at(&owner, 0);
    owner.set_read_cursor(1);
    assert!(owner.ack(&r).unwrap(), "at the head");
    assert_eq!(owner.advance_head_over(Some(&r), &Yield), Ok(1));
    assert!(
        owner.advance_head_over(Some(&r), &Yield).is_err(),
        "the same record freed twice"
    );
    assert_eq!(owner.peek(4096, &Yield).unwrap(), Peek::Empty);
}

/// Sanity: the helpers above behave on a lane used correctly.
#[test]
fn the_helpers_work_on_a_lane_used_correctly() {
    let heap = HeapLane::new(4);
    // SAFETY: this thread plays sender slot 1 and the one owner.
    let (tx, owner) = unsafe { (heap.sender(1), heap.owner()) };
    send(&tx, b"fine");
    assert_eq!(payload_of(&owner, 0), Ok(b"fine".to_vec()));
    owner.set_read_cursor(1);
    owner.release(record_at(&owner, 0), &Yield).unwrap();
    assert_eq!(owner.head(), 1);
}
