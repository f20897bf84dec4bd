//! Loom models of baton's lane (`baton_ring::lane::Lane`) over heap memory: publication across the
//! ring's wrap-around, reuse of freed cells, abandoned claims, and what a successor sees after
//! an owner stops between receiving and acknowledging. Payload bytes live in loom's tracked
//! cells, so a missing happens-before edge shows up as a data race.
//!
//! Each model has a mutant that it must catch (`loom-tests/mutants.sh`).
#![cfg(loom)]

use baton_loom_tests::LoomWaiter;
use baton_loom_tests::{
    header, owner_view, send, send_run, sender_view, successor_view, take, try_send, write_run,
};
use baton_ring::lane::{Claim, HeapLane, Lane, LaneSender, Slot};
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
        let claim = sender_view(&heap.lane(), 7).try_claim(1).unwrap();
        let h = heap.clone();
        let sender = loom::thread::spawn(move || {
            let lane = sender_view(&h.lane(), 7);
            lane.write(&claim, &header(1), &[7]);
            lane.commit(claim).is_ok()
        });
        let h = heap.clone();
        // SAFETY: the model plays slot 7's death: its writer is the thread above, whose commit must
        // then fail, and the reclaimer holds the slot (nobody takes it meanwhile).
        let reclaimer = loom::thread::spawn(move || unsafe { h.lane().abandon_sender(7) });
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

/// A sender publishes a run of two records by one commit while the receiver polls: the
/// receiver gets both, whole and in order, and never lands inside the run before it is
/// published. Catches `run_stamps_late`.
#[test]
fn a_run_is_published_by_one_commit_and_read_record_by_record() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(4));
        let waiter = LoomWaiter::default();
        let h = heap.clone();
        let sender = loom::thread::spawn(move || send_run(&h.lane(), 3, &[&[1], &[2]]));
        let mut got = Vec::new();
        while got.len() < 2 {
            match take(&heap.lane(), &waiter) {
                Some(m) => got.push(m),
                None => loom::thread::yield_now(),
            }
        }
        sender.join().unwrap();
        assert_eq!(got, vec![vec![1], vec![2]]);
    });
}

/// A run's sender taken for dead races its commit against the abandonment of its claim: the
/// run is delivered whole (commit won) or skipped whole (abandonment won, the commit fails),
/// never in part. (Also catches `commit_store`, which the commit of one record shares.)
#[test]
fn a_run_is_delivered_whole_or_skipped_whole() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(2));
        let waiter = LoomWaiter::default();
        let (claim, n) = sender_view(&heap.lane(), 7).try_claim_run(1, &[1]).unwrap();
        assert_eq!(n, 2);
        let h = heap.clone();
        let sender = loom::thread::spawn(move || {
            let lane = sender_view(&h.lane(), 7);
            let cells = write_run(&lane, &claim, &[&[1], &[2]]);
            lane.commit_run(claim, &cells).is_ok()
        });
        let h = heap.clone();
        // SAFETY: the model plays slot 7's death (see
        // `a_claim_is_either_committed_and_delivered_or_abandoned_and_skipped`).
        let reclaimer = loom::thread::spawn(move || unsafe { h.lane().abandon_sender(7) });
        let abandoned = reclaimer.join().unwrap();
        let commit_ok = sender.join().unwrap();
        let mut got = Vec::new();
        while let Some(m) = take(&heap.lane(), &waiter) {
            got.push(m);
        }
        assert_eq!(
            abandoned == 1,
            !commit_ok,
            "a run is committed or abandoned"
        );
        let want = if commit_ok {
            vec![vec![1], vec![2]]
        } else {
            vec![]
        };
        assert_eq!(got, want, "a run is delivered whole or not at all");
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
            let lane = owner_view(&h.lane());
            // Receive: find the record, mark it delivered, hand it out ... and stop.
            let Slot::Record(r) = lane.at(lane.head(), 64).unwrap() else {
                panic!("the first message is committed");
            };
            lane.set_read_cursor(r.pos() + r.cells());
            let mut out = Vec::new();
            lane.copy_payload(&r, &mut out).unwrap();
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

/// Stamps are compared on their tag's bits only, which is exact because a sender never sees a
/// stamp older than a few laps (module documentation of `baton::lane`, rule 2). Here the tag
/// has 8 bits and the lane starts two positions before the tag wraps, its cell 0 holding a
/// stamp of position 0 (the tag of 256). One sender writes a two-cell record at 254 while
/// another sends one cell and the receiver takes what comes: a sender that sees tail 256 must
/// see the first sender's stamp in cell 0, not the ancient one (which would look like a claim
/// at 256), and each message comes out exactly once. Catches a weakened ordering on the chain
/// that keeps stamps fresh: the first sender's claim, its commit, the receiver's free, the
/// second sender's loads of head and tail.
#[test]
fn a_sender_never_sees_a_stamp_from_a_lap_long_gone() {
    loom::model(|| {
        let ancient = |pos: u64| (pos << 32) | (1 << 12) | (1 << 4) | 2; // committed, one cell
        let heap = Arc::new(HeapLane::after(8, 254, &[ancient(0), ancient(1)]));
        let waiter = Arc::new(LoomWaiter::default());
        // Each thread tries once: every outcome is allowed except a wrong one.
        let first = {
            let heap = heap.clone();
            loom::thread::spawn(move || try_send(&heap.lane(), 2, &[0xAA; 40]))
        };
        let receiver = {
            let (heap, waiter) = (heap.clone(), waiter.clone());
            loom::thread::spawn(move || take(&heap.lane(), &waiter))
        };
        let second = {
            let heap = heap.clone();
            loom::thread::spawn(move || try_send(&heap.lane(), 3, &[0xBB]))
        };
        let lane = heap.lane();
        let second = second.join().unwrap();
        let first = first.join().unwrap();
        let mut got: Vec<Vec<u8>> = receiver.join().unwrap().into_iter().collect();
        while let Some(m) = take(&lane, &waiter) {
            got.push(m);
        }
        got.sort();
        let mut sent = Vec::new();
        if first {
            sent.push(vec![0xAA; 40]);
        }
        if second {
            sent.push(vec![0xBB]);
        }
        assert_eq!(got, sent, "each message once, and no ancient record");
        // And the lane is whole: an empty lane takes a message and gives it back.
        assert!(try_send(&lane, 3, &[0xCC]), "the empty lane has room");
        assert_eq!(take(&lane, &waiter), Some(vec![0xCC]));
    });
}

/// Sender threads of one process share its cached view of `head`. One of them refreshes the
/// cache (and finds no room for its own, bigger, message); another then claims on the strength
/// of the cached value alone, in the cell the receiver just read: its writes must come after
/// the receiver's reads, through the cache. Catches a weakened load or refresh of the cache.
#[test]
fn a_sender_trusting_the_process_head_cache_reuses_cells_only_after_they_were_read() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(2));
        let waiter = Arc::new(LoomWaiter::default());
        let lane = heap.lane();
        assert!(try_send(&lane, 1, &[0]));
        assert!(try_send(&lane, 1, &[1]));
        let receiver = {
            let (heap, waiter) = (heap.clone(), waiter.clone());
            loom::thread::spawn(move || take(&heap.lane(), &waiter))
        };
        let refresher = {
            let heap = heap.clone();
            // Two cells: never fits while message 1 is in the lane; it only refreshes the cache.
            loom::thread::spawn(move || try_send(&heap.lane(), 2, &[2; 40]))
        };
        let trusting = {
            let heap = heap.clone();
            loom::thread::spawn(move || try_send(&heap.lane(), 3, &[3]))
        };
        assert!(!refresher.join().unwrap());
        let sent = trusting.join().unwrap();
        let mut got: Vec<Vec<u8>> = receiver.join().unwrap().into_iter().collect();
        while let Some(m) = take(&lane, &waiter) {
            got.push(m);
        }
        let mut want = vec![vec![0], vec![1]];
        if sent {
            want.push(vec![3]);
        }
        assert_eq!(got, want);
    });
}

/// A record given up without being committed (a dropped loan: cancelled; or a claim its own
/// process abandons as it lets the queue go) after its payload was written: the owner frees
/// it, and the next sender writes into its cells. Its writes must come after the given-up ones.
/// The given-up record spans cells 1 and 2 of a three-cell lane, and the next sender's record
/// cells 0 and 1: that sender's compare-and-swap is on cell 0's stamp, not on the given-up one,
/// so the order can only come through the owner (its look at the given-up stamp, its store of
/// `head`). Catches a weakened cancel or abandonment, or a weakened look by the owner.
fn given_up_cells_are_reused_only_after_the_writes_into_them(
    give_up: fn(&LaneSender<'_>, u8, Claim),
) {
    loom::model(move || {
        let heap = Arc::new(HeapLane::new(3));
        let waiter = Arc::new(LoomWaiter::default());
        advance_to(&heap.lane(), &waiter, 1);
        let writer = {
            let heap = heap.clone();
            loom::thread::spawn(move || {
                let lane = sender_view(&heap.lane(), 1);
                if let Ok(claim) = lane.try_claim(40) {
                    lane.write(&claim, &header(40), &[0xEE; 40]);
                    give_up(&lane, 1, claim);
                }
            })
        };
        let owner = {
            let (heap, waiter) = (heap.clone(), waiter.clone());
            loom::thread::spawn(move || take(&heap.lane(), &waiter))
        };
        let lane = heap.lane();
        let sent = try_send(&lane, 2, &[0x11; 40]);
        writer.join().unwrap();
        let mut got: Vec<Vec<u8>> = owner.join().unwrap().into_iter().collect();
        while let Some(m) = take(&lane, &waiter) {
            got.push(m);
        }
        assert_eq!(got, if sent { vec![vec![0x11; 40]] } else { vec![] });
    });
}

#[test]
fn a_cancelled_records_cells_are_reused_only_after_the_writes_into_them() {
    given_up_cells_are_reused_only_after_the_writes_into_them(|lane, _, claim| lane.cancel(claim));
}

#[test]
fn an_abandoned_records_cells_are_reused_only_after_the_writes_into_them() {
    given_up_cells_are_reused_only_after_the_writes_into_them(|lane, slot, claim| {
        let _leaked = claim; // as a leaked loan: never committed nor cancelled, and its process
                             // lets the queue go
                             // SAFETY: the claim was leaked and its process let the queue go: nothing writes
                             // through it any more.
        unsafe { lane.abandon_sender(slot) };
    });
}

/// The receiving thread reads a message and hands it to another thread, which acknowledges
/// it; a sender then reuses its cell. The sender's writes come after the receiving thread's
/// reads, through the hand-over and the acknowledging thread's store of `head`.
#[test]
fn an_acknowledgement_from_another_thread_frees_cells_only_after_they_were_read() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(1));
        let waiter = Arc::new(LoomWaiter::default());
        let lane = heap.lane();
        assert!(try_send(&lane, 1, &[7]));
        let (tx, rx) = loom::sync::mpsc::channel::<Option<baton_ring::lane::RecordRef>>();
        let receiving = {
            let (heap, waiter) = (heap.clone(), waiter.clone());
            loom::thread::spawn(move || {
                let lane = owner_view(&heap.lane());
                let found = match lane.peek(64, &*waiter).unwrap() {
                    baton_ring::lane::Peek::Record(r) => {
                        let mut out = Vec::new();
                        lane.copy_payload(&r, &mut out).unwrap();
                        assert_eq!(out, vec![7]);
                        Some(r)
                    }
                    _ => None,
                };
                tx.send(found).unwrap();
            })
        };
        let acking = {
            let (heap, waiter) = (heap.clone(), waiter.clone());
            loom::thread::spawn(move || {
                if let Some(r) = rx.recv().unwrap() {
                    owner_view(&heap.lane()).release(r, &*waiter).unwrap();
                }
            })
        };
        let sent = try_send(&lane, 2, &[8]);
        receiving.join().unwrap();
        acking.join().unwrap();
        if sent {
            assert_eq!(take(&lane, &waiter), Some(vec![8]));
        }
        assert_eq!(take(&lane, &waiter), None);
    });
}
