//! Loom models of a shared lane's competing consumers (`baton_ring::lane::LaneConsumer`):
//! taking by compare-and-swap, acknowledging out of order with the sweep that frees the head,
//! and reclaiming a dead consumer's records. Payload bytes live in loom's tracked cells, so a
//! record read after its cells were freed, or before its writer's commit, shows up as a race.
//!
//! Each model has a mutant that it must catch (`loom-tests/mutants.sh`).
#![cfg(loom)]

use baton_loom_tests::{consumer_view, send, send_run, try_send, LoomSweepLock, LoomWaiter};
use baton_ring::lane::{sweep, HeapLane, Lane};
use loom::sync::Arc;

/// Takes one record as consumer `slot`, copies it, acknowledges it and sweeps.
fn take_one(
    lane: &Lane<'_>,
    slot: u8,
    lock: &LoomSweepLock,
    waiter: &LoomWaiter,
) -> Option<(Vec<u8>, bool)> {
    let c = consumer_view(lane, slot);
    let t = c.take(64, None).unwrap()?;
    let mut out = Vec::new();
    c.copy_payload(&t, &mut out);
    let again = t.redelivered();
    c.ack(t).unwrap();
    sweep(lane, &lock, waiter).unwrap();
    Some((out, again))
}

/// Two consumers race for the messages of one sender in a two-cell lane (so the sender's next
/// messages reuse cells the consumers freed, one of them freed by the other consumer's sweep):
/// each message is taken once, read only after its commit and before its cells are reused, and
/// no acknowledgement at the head is left unswept, even one that lands while the other
/// consumer holds the sweep lock. Catches `sweep_no_fence`.
#[test]
fn two_consumers_take_each_message_once_and_every_ack_at_the_head_is_swept() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let heap = Arc::new(HeapLane::new(2));
        let waiter = Arc::new(LoomWaiter::default());
        let lock = Arc::new(LoomSweepLock::default());
        send(&heap.lane(), 0, &[0]);
        send(&heap.lane(), 0, &[1]);
        let consumers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|slot| {
                let (heap, waiter, lock) = (heap.clone(), waiter.clone(), lock.clone());
                loom::thread::spawn(move || {
                    let (m, again) = take_one(&heap.lane(), slot, &lock, &waiter).unwrap();
                    assert!(!again);
                    vec![m[0]]
                })
            })
            .collect();
        let sender = {
            let heap = heap.clone();
            loom::thread::spawn(move || {
                let mut sent = 2u8;
                for _ in 0..3 {
                    if sent < 4 && try_send(&heap.lane(), 0, &[sent]) {
                        sent += 1;
                    } else {
                        loom::thread::yield_now();
                    }
                }
                sent
            })
        };
        let sent = sender.join().unwrap();
        let mut all: Vec<u8> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert!(
            !heap.lane().finished_at_head(),
            "an acknowledged record at the head was left unswept"
        );
        while let Some((m, _)) = take_one(&heap.lane(), 1, &lock, &waiter) {
            all.push(m[0]);
        }
        all.sort();
        assert_eq!(all, (0..sent).collect::<Vec<_>>(), "each message once");
        assert_eq!(heap.lane().head(), sent as u64);
    });
}

/// A consumer takes both messages and dies with them; its slot is reclaimed while another
/// consumer looks for work: the second consumer gets both, flagged redelivered, each once.
/// Catches `returned_uncounted` (a record given back behind `read` would never be found).
#[test]
fn a_dead_consumers_records_are_taken_again_flagged_each_once() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(4));
        let waiter = Arc::new(LoomWaiter::default());
        let lock = Arc::new(LoomSweepLock::default());
        send(&heap.lane(), 0, &[1]);
        send(&heap.lane(), 0, &[2]);
        let dying = consumer_view(&heap.lane(), 1);
        let a = dying.take(64, None).unwrap().unwrap();
        let b = dying.take(64, None).unwrap().unwrap();
        std::mem::forget((a, b)); // the consumer dies holding them
        let other = {
            let (heap, waiter, lock) = (heap.clone(), waiter.clone(), lock.clone());
            loom::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..3 {
                    if let Some(m) = take_one(&heap.lane(), 2, &lock, &waiter) {
                        got.push(m);
                    }
                }
                got
            })
        };
        // SAFETY: slot 1's consumer is dead (it does nothing more), and the model plays the
        // process that took its liveness lock.
        let reclaimed = unsafe { heap.lane().reclaim_consumer(1) };
        assert_eq!(reclaimed, 2);
        let mut got = other.join().unwrap();
        while let Some(m) = take_one(&heap.lane(), 2, &lock, &waiter) {
            got.push(m);
        }
        got.sort();
        assert_eq!(got, [(vec![1], true), (vec![2], true)]);
        assert_eq!(heap.lane().head(), 2);
    });
}

/// A consumer reads a record and gives it back while another consumer takes it again,
/// acknowledges it, and a sender reuses its cell: the first consumer's read comes before the
/// reuse (the give-back is a Release the next taker's walk acquires).
#[test]
fn a_record_given_back_was_read_before_its_cell_is_reused() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(2));
        let waiter = Arc::new(LoomWaiter::default());
        let lock = Arc::new(LoomSweepLock::default());
        send(&heap.lane(), 0, &[0]);
        let taken = consumer_view(&heap.lane(), 1)
            .take(64, None)
            .unwrap()
            .unwrap();
        let giver = {
            let heap = heap.clone();
            loom::thread::spawn(move || {
                let c = consumer_view(&heap.lane(), 1);
                let mut out = Vec::new();
                c.copy_payload(&taken, &mut out);
                c.release(taken).unwrap();
                out
            })
        };
        let other = {
            let (heap, waiter, lock) = (heap.clone(), waiter.clone(), lock.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(m) = take_one(&heap.lane(), 2, &lock, &waiter) {
                        return Some(m);
                    }
                    loom::thread::yield_now();
                }
                None
            })
        };
        // The sender fills the other cell, then reuses the first once it is freed.
        send(&heap.lane(), 0, &[1]);
        let reused = try_send(&heap.lane(), 0, &[2]);
        assert_eq!(giver.join().unwrap(), [0]);
        let got = other.join().unwrap();
        if reused {
            assert_eq!(got, Some((vec![0], true)));
        }
    });
}

/// A consumer starts its walk at a `read` that another consumer moved into a run (past the
/// run's first record): it sees the run's later stamps and bytes, which the run's one commit
/// published, never the MIDDLE stamp the claim wrote there. (Found in review.)
#[test]
fn a_consumer_starting_at_a_read_moved_into_a_run_never_sees_its_middle_stamps() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let heap = Arc::new(HeapLane::new(4));
        let h = heap.clone();
        let sender = loom::thread::spawn(move || send_run(&h.lane(), 3, &[&[1], &[2]]));
        let h = heap.clone();
        let first = loom::thread::spawn(move || loop {
            let c = consumer_view(&h.lane(), 1);
            if let Some(t) = c.take(64, None).unwrap() {
                let pos = t.record().pos();
                let mut out = Vec::new();
                c.copy_payload(&t, &mut out);
                assert_eq!(out, [pos as u8 + 1]);
                std::mem::forget(t);
                return pos;
            }
            loom::thread::yield_now();
        });
        let second = consumer_view(&heap.lane(), 2);
        for _ in 0..2 {
            match second.take(64, None) {
                Ok(Some(t)) => {
                    let mut out = Vec::new();
                    second.copy_payload(&t, &mut out); // loom: a race if not published to us
                    assert_eq!(out, [t.record().pos() as u8 + 1]);
                    std::mem::forget(t);
                    break;
                }
                Ok(None) => loom::thread::yield_now(),
                Err(e) => panic!("a healthy lane reported corrupt: {e}"),
            }
        }
        sender.join().unwrap();
        first.join().unwrap();
    });
}
