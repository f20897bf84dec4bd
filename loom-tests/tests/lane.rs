//! Loom models of baton's lane (`baton::lane::Lane`) over heap memory: publication across the
//! ring's wrap-around, reuse of freed cells, abandoned claims, and what a successor sees after
//! an owner stops between receiving and acknowledging. Payload bytes live in loom's tracked
//! cells, so a missing happens-before edge shows up as a data race.
//!
//! Each model has a mutant that it must catch (`loom-tests/mutants.sh`).
#![cfg(loom)]

use baton::lane::{HeapLane, Lane, Slot};
use baton::wait::LoomWaiter;
use baton_loom_tests::{header, send, successor_view, take, try_send};
use loom::sync::Arc;

/// Moves an empty lane's head and tail to `pos` by sending and taking one-cell messages.
fn advance_to(lane: &Lane<'_>, waiter: &LoomWaiter, pos: u64) {
    for _ in 0..pos {
        assert!(try_send(lane, 1, &[0]));
        assert_eq!(take(lane, waiter), Some(vec![0]));
    }
}

/// Two senders, one needing padding at the end of the ring, race while the receiver drains:
/// both messages arrive whole, each once. Catches `commit_relaxed` (the payload would be read
/// without a happens-before edge from its writer).
#[test]
fn two_senders_and_a_receiver_across_the_wrap_around() {
    // Three threads spinning on each other: two preemptions already cover every order of
    // claim, padding, commit and free, and keep the model short.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let heap = Arc::new(HeapLane::new(3));
        let waiter = Arc::new(LoomWaiter::default());
        advance_to(&heap.lane(), &waiter, 2);
        let big = [0xAAu8; 40]; // 72 bytes with its header: two cells, padding first
        let senders: Vec<_> = [(2u8, &big[..]), (3u8, &[0xBB][..])]
            .into_iter()
            .map(|(slot, msg)| {
                let heap = heap.clone();
                let msg = msg.to_vec();
                loom::thread::spawn(move || send(&heap.lane(), slot, &msg))
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 2 {
            match take(&heap.lane(), &waiter) {
                Some(m) => got.push(m),
                None => loom::thread::yield_now(),
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        got.sort();
        assert_eq!(got, vec![big.to_vec(), vec![0xBB]]);
    });
}

/// The receiver reads and frees the only cell while a sender waits to reuse it: the sender's
/// writes come after the receiver's reads. Catches `head_relaxed`.
#[test]
fn a_sender_reuses_cells_only_after_the_receiver_has_read_them() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(1));
        let waiter = Arc::new(LoomWaiter::default());
        assert!(try_send(&heap.lane(), 1, &[1]));
        let h2 = heap.clone();
        let w2 = waiter.clone();
        let receiver = loom::thread::spawn(move || {
            let lane = h2.lane();
            assert_eq!(take(&lane, &w2), Some(vec![1]));
        });
        send(&heap.lane(), 2, &[2]);
        receiver.join().unwrap();
        assert_eq!(take(&heap.lane(), &waiter), Some(vec![2]));
    });
}

/// A sender slow enough to be taken for dead races its commit against the abandonment of its
/// claim, and the receiver looks once the reclaimer is done: either the commit won and the
/// message is delivered, or the abandonment won, the receiver skips the claim and the commit
/// fails. Never a successful commit of a message nobody will see. Catches `commit_store`.
#[test]
fn a_claim_is_either_committed_and_delivered_or_abandoned_and_skipped() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(2));
        let waiter = LoomWaiter::default();
        let claim = heap.lane().try_claim(1, 7).unwrap();
        let h = heap.clone();
        let sender = loom::thread::spawn(move || {
            let lane = h.lane();
            lane.write(&claim, &header(1), &[7]);
            lane.commit(claim).is_ok()
        });
        let h = heap.clone();
        let reclaimer = loom::thread::spawn(move || h.lane().abandon_sender(7));
        let abandoned = reclaimer.join().unwrap();
        // The claim is settled now: committed, or abandoned. The receiver looks once, while the
        // sender may still be finishing.
        let delivered = match take(&heap.lane(), &waiter) {
            Some(m) => {
                assert_eq!(m, vec![7]);
                true
            }
            None => false,
        };
        let commit_ok = sender.join().unwrap();
        assert_eq!(
            abandoned == 1,
            !commit_ok,
            "a claim is committed or abandoned, not both"
        );
        assert_eq!(
            commit_ok, delivered,
            "a committed message is delivered, only then"
        );
    });
}

/// An owner hands a message out and stops before acknowledging it, while a sender adds
/// another. The successor sees the handed-out message as one to deliver again (in
/// `head..read`) and the new one as fresh. Catches `no_read_mark`.
#[test]
fn a_successor_redelivers_what_a_stopped_owner_handed_out_and_nothing_else() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(4));
        assert!(try_send(&heap.lane(), 1, &[1]));
        let h = heap.clone();
        let sender = loom::thread::spawn(move || send(&h.lane(), 2, &[2]));
        let h = heap.clone();
        let owner = loom::thread::spawn(move || {
            let lane = h.lane();
            // Receive: find the record, mark it delivered, hand it out ... and stop.
            let Slot::Record(r) = lane.at(lane.head(), 64).unwrap() else {
                panic!("the first message is committed");
            };
            lane.set_read_cursor(r.pos + r.cells);
            let mut out = Vec::new();
            lane.copy_payload(&r, &mut out);
            out
        });
        let handed_out = owner.join().unwrap();
        sender.join().unwrap();
        assert_eq!(handed_out, vec![1]);
        // The successor's view.
        let (again, fresh) = successor_view(&heap.lane());
        assert_eq!(
            again,
            vec![vec![1]],
            "what was handed out comes again, flagged"
        );
        assert_eq!(fresh, vec![vec![2]]);
    });
}
