//! A peer that can open the queue for writing may scribble on any word of it, `head` too. A
//! `head` moved past a record the owner is about to read (here one it released, which it
//! delivers again without walking the lane) gives `RecvError::Corrupt` naming the damage, never
//! a panic, whether the message is copied out or read in place.

mod common;
use baton::{Attributes, Queue};
use common::TestDomain;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Where lane `p`'s `head` word is in the file: the lane's control block offset (header word
/// at 104 + 8p, docs/design.md), then the producer's 128-byte `CachePadded`, then `head`.
fn head_offset(t: &TestDomain, p: u64) -> u64 {
    let f = std::fs::File::open(t.file("q")).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 104 + 8 * p).unwrap();
    u64::from_ne_bytes(b) + 128
}

fn scribble_head(t: &TestDomain, p: u64, value: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.file("q"))
        .unwrap();
    let at = head_offset(t, p);
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, at).unwrap();
    assert_eq!(
        u64::from_ne_bytes(b),
        0,
        "found lane {p}'s head (0 on a fresh lane)"
    );
    f.write_all_at(&value.to_ne_bytes(), at).unwrap();
}

#[test]
fn a_peer_moving_head_past_a_released_message_gives_an_error_not_a_panic() {
    let t = TestDomain::new("t-headcopy");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"hello").unwrap(); // lane 3, position 0
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    m.release().unwrap(); // in the receiver's `released` list now
    scribble_head(&t, 3, 1); // a peer's write: head past the released record
    let r = catch_unwind(AssertUnwindSafe(|| {
        rx.recv_timeout(Duration::from_millis(50))
            .map(|m| m.payload().to_vec())
    }));
    assert!(
        r.is_ok(),
        "a peer's write to `head` made the owner's recv panic (bad input must be an error)"
    );
    drop(rx);
}

#[test]
fn a_peer_moving_head_past_a_released_message_gives_an_error_not_a_panic_in_place() {
    let t = TestDomain::new("t-headinplace");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"hello").unwrap();
    let mut rx = q.receiver().unwrap();
    rx.recv_in_place().unwrap().release().unwrap();
    scribble_head(&t, 3, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        rx.try_recv_in_place().map(|m| {
            let v = m.payload().to_vec();
            let _ = m.release();
            v
        })
    }));
    assert!(
        r.is_ok(),
        "a peer's write to `head` made the owner's recv_in_place panic (bad input must be an error)"
    );
    drop(rx);
}
