//! Loom models live in tests/; this library holds what they share: sending and taking over a
//! heap lane, and what a successor owner would deliver.
#![cfg(loom)]

use baton::lane::{Lane, Peek, RecordHeader, Slot};
use baton::wait::LoomWaiter;

/// A record header for a payload of `len` bytes.
pub fn header(len: usize) -> RecordHeader {
    RecordHeader {
        len: len as u32,
        ..Default::default()
    }
}

/// Sends `payload` from sender slot `slot` if there is room now.
pub fn try_send(lane: &Lane<'_>, slot: u8, payload: &[u8]) -> bool {
    match lane.try_claim(payload.len(), slot) {
        Ok(claim) => {
            lane.write(&claim, &header(payload.len()), payload);
            lane.commit(claim).unwrap();
            true
        }
        Err(_) => false,
    }
}

/// Sends, yielding until there is room.
pub fn send(lane: &Lane<'_>, slot: u8, payload: &[u8]) {
    while !try_send(lane, slot, payload) {
        loom::thread::yield_now();
    }
}

/// Takes the message at the head, if one is committed, and frees it.
pub fn take(lane: &Lane<'_>, waiter: &LoomWaiter) -> Option<Vec<u8>> {
    match lane.peek(64, waiter).unwrap() {
        Peek::Record(r) => {
            let mut out = Vec::new();
            lane.copy_payload(&r, &mut out);
            lane.release(r, waiter).unwrap();
            Some(out)
        }
        Peek::Empty | Peek::InFlight => None,
    }
}

/// What a new owner would deliver: the committed records of `head..read` again (flagged
/// redelivered), then the rest fresh.
pub fn successor_view(lane: &Lane<'_>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let read = lane.read_cursor();
    let mut pos = lane.head();
    let (mut again, mut fresh) = (Vec::new(), Vec::new());
    while let Slot::Record(r) = lane.at(pos, 64).unwrap() {
        let mut out = Vec::new();
        lane.copy_payload(&r, &mut out);
        if r.pos < read {
            again.push(out);
        } else {
            fresh.push(out);
        }
        pos += r.cells;
    }
    (again, fresh)
}
